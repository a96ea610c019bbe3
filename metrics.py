"""Prometheus metrics: an optional HTTP endpoint (`metrics_port`, loopback by default).

Owns: `Metrics` (the registry: a collector that reads the engine's shared arrays at scrape
time, the per-status and latency series fed from report records) and `Metrics.server` (a
WSGI server from the standard library serving prometheus-client's exposition).

Threads: run.py starts `Metrics.serve` on its own thread ("metrics"; docs/design.md 11) and
adds `Metrics.observe` to the log thread's listeners. A scrape runs on the metrics thread:
it reads `counters` (pipeline.HOT_COUNTERS), `book_state`, `slots`, `rate_backoff_ns` with
plain numpy reads (each cell has one writer; a read may see one update early or late), the
session summary's PnL and holdings (dict copies, taken under the GIL), and values them with
holdings.Valuer at the best prices of the moment. Nothing here is called by the hot thread
or on the order path; it only competes for the GIL like any thread, a few hundred
microseconds per scrape (README, "Metrics" has the measured effect on tick-to-fire).

Names: `triarb_<hot counter>_total` for every hot counter; `triarb_triangles_total{status}`
(any status, including ones added later: KILLED, UNWOUND ...); `triarb_books{state}`,
`triarb_book_snapshots{when}` (start-up / resync); `triarb_pnl{currency}` and
`triarb_pnl_ref{ref}` (the total in the reference currency); `triarb_held{currency}`,
`triarb_held_value_ref{ref}`; `triarb_slots_busy`, `triarb_links_up`,
`triarb_rate_limit_remaining`, `triarb_rate_backoff`; histograms `triarb_tick_to_fire_seconds`
and `triarb_leg_gap_seconds`.
"""
from __future__ import annotations

import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# tick-to-fire and leg gaps: tens of us to tens of ms (seconds, Prometheus' unit)
LATENCY_BUCKETS = (25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 500e-6, 1e-3, 2e-3,
                   5e-3, 10e-3, 50e-3, 0.25, 1.0)


class _EngineCollector:
    """Reads the shared state at scrape time (the metrics thread)."""

    def __init__(self, engine):
        self.eng = engine

    def collect(self):
        import books
        import console
        import pipeline
        import rings
        eng = self.eng
        sh = eng.sh
        c = sh.counters.copy()
        for name, i in pipeline.C.items():
            yield CounterMetricFamily(f"triarb_{name}", f"hot counter {name} (pipeline.HOT_COUNTERS)",
                                      value=int(c[i]))
        st = sh.book_state["status"].copy()
        g = GaugeMetricFamily("triarb_books", "books by state", labels=["state"])
        for label, code in (("synced", books.BOOK_SYNCED), ("resyncing", books.BOOK_RESYNCING),
                            ("empty", books.BOOK_EMPTY)):
            g.add_metric([label], int((st == code).sum()))
        yield g
        first, again = console.book_syncs(sh.book_state)
        g = GaugeMetricFamily("triarb_book_snapshots", "snapshots synced: the first of each book at "
                              "start-up, and resyncs after it (gaps, dead links, refills)", labels=["when"])
        g.add_metric(["start-up"], first)
        g.add_metric(["resync"], again)
        yield g
        busy = int((sh.slots["acquired_seq"] != sh.slots["released_seq"]).sum())
        yield GaugeMetricFamily("triarb_slots_busy", "executor slots with a triangle in flight", value=busy)
        yield GaugeMetricFamily("triarb_slots", "executor slots", value=len(sh.slots))
        ups = int(c[pipeline.C["link_ups"]]) - int(c[pipeline.C["reconnects"]])
        yield GaugeMetricFamily("triarb_links_up", "WebSocket links up", value=max(0, ups))
        yield GaugeMetricFamily("triarb_links_expected", "WebSocket links the engine keeps",
                                value=eng.links_expected)
        now = rings.monotonic_ns()
        yield GaugeMetricFamily("triarb_rate_backoff", "1 while an order's 429 holds every signal "
                                "back (docs/kucoin.md 7.1)", value=int((sh.rate_backoff_ns > now).any()))
        rem = [r.get("remaining") for r in sh.client.rate_limits() if r.get("remaining", -1) >= 0]
        if rem:
            yield GaugeMetricFamily("triarb_rate_limit_remaining", "lowest gw-ratelimit-remaining "
                                    "of the REST pools last seen", value=min(rem))
        ref = eng.cfg.ref_currency
        s = eng.summary
        pnl, held = dict(s.pnl), dict(s.held)
        g = GaugeMetricFamily("triarb_pnl", "session PnL per start currency", labels=["currency"])
        for ccy, v in pnl.items():
            g.add_metric([ccy], v)
        yield g
        total, _missing = console.pnl_total(pnl, eng.valuer, ref)
        g = GaugeMetricFamily("triarb_pnl_ref", "session PnL valued in the reference currency at the "
                              "best bids now (currencies without a price left out)", labels=["ref"])
        g.add_metric([ref], total if total is not None else float("nan"))
        yield g
        g = GaugeMetricFamily("triarb_held", "coins left outside the start currencies", labels=["currency"])
        for ccy, v in held.items():
            g.add_metric([ccy], v)
        yield g
        hv, _ = console.pnl_total(held, eng.valuer, ref)
        g = GaugeMetricFamily("triarb_held_value_ref", "value of the held coins in the reference "
                              "currency at the best bids now", labels=["ref"])
        g.add_metric([ref], hv if hv is not None else float("nan"))
        yield g
        yield GaugeMetricFamily("triarb_session_start_seconds", "session start, Unix time",
                                value=eng.started_unix)


class Metrics:
    def __init__(self, engine, host: str, port: int):
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(engine))
        self.triangles = Counter("triarb_triangles", "report records by status", ["status"],
                                 registry=self.registry)
        self.tick_to_fire = Histogram("triarb_tick_to_fire_seconds", "frame received -> leg 0's bytes "
                                      "written", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.leg_gap = Histogram("triarb_leg_gap_seconds", "event completing a leg -> the next leg's "
                                 "bytes written", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.server = make_server(host, port, make_wsgi_app(self.registry), WSGIServer, _QuietHandler)
        self.port = self.server.server_port

    def observe(self, rec) -> None:
        """A report record (the log thread, after writing it)."""
        status = getattr(rec, "status", None) or "FOLLOWUP"
        self.triangles.labels(status).inc()
        legs = getattr(rec, "legs", None) or []
        if legs and rec.recv_ns and legs[0].written_ns:
            self.tick_to_fire.observe((legs[0].written_ns - rec.recv_ns) / 1e9)
        for a, b in zip(legs, legs[1:]):
            if a.last_fill_ns and b.written_ns:
                self.leg_gap.observe((b.written_ns - a.last_fill_ns) / 1e9)

    def serve(self) -> None:
        """The metrics thread's loop (run.py); returns after close()."""
        self.server.serve_forever(poll_interval=0.5)

    def close(self) -> None:
        """From another thread: stop serve() and release the port."""
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):      # no line per scrape on stderr
        pass


def scrape_time_s(url: str) -> float:
    """Seconds one GET of the endpoint takes (profiles, tests)."""
    import urllib.request
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=5) as r:
        r.read()
    return time.perf_counter() - t
