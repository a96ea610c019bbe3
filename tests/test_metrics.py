"""Tests of metrics.py: the Prometheus endpoint of a running engine, scraped while it trades.

An engine against its simulator with metrics_port set and planted mispricings: the endpoint
answers on 127.0.0.1 with every hot counter, the books by state, triangles by status, PnL in
the reference currency and the latency histograms, and the values move with the engine's own
counters. It is served by the thread named "metrics" and stops with the session.

Run: python -m pytest -q tests/test_metrics.py
"""
from __future__ import annotations

import re
import socket
import threading
import urllib.request

import pipeline
from engine_harness import EngineRun
from test_executor import idle, plant, quiesce, wait_synced


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict:
    """{'name{labels}': value} of one scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_metrics_when_engine_trades_then_endpoint_reports_counters_outcomes_pnl_and_latency():
    port = free_port()
    with EngineRun(slots=1, metrics_port=port, sim={"mispricing_rate": 0}) as er:
        wait_synced(er)
        m0 = scrape(port)
        n_books = len(er.sh.book_state)
        assert m0['triarb_books{state="synced"}'] == n_books
        assert m0['triarb_book_snapshots{when="start-up"}'] == n_books
        assert m0["triarb_links_up"] == m0["triarb_links_expected"] == 2
        for name in pipeline.HOT_COUNTERS:
            assert f"triarb_{name}_total" in m0, name
        for _ in range(3):
            plant(er)
            er.wait_for(lambda: len(er.records) >= 1, 10)
            idle(er)
        assert er.records, "no triangle traded"
        quiesce(er)                # no new signal: the counters stand still while compared
        er.wait_for(lambda: sum(v for k, v in scrape(port).items()
                                if k.startswith("triarb_triangles_total{")) == len(er.records), 5)
        m1 = scrape(port)
        assert m1["triarb_msgs_total"] > m0["triarb_msgs_total"]
        assert m1["triarb_msgs_total"] <= er.counters()["msgs"]      # read from the same cells
        assert m1["triarb_signals_total"] == er.counters()["signals"] >= 1
        by_status = {k: v for k, v in m1.items() if k.startswith("triarb_triangles_total{")}
        assert sum(by_status.values()) == len(er.records)
        assert m1['triarb_tick_to_fire_seconds_count'] == sum(1 for r in er.records if r.legs)
        assert m1['triarb_tick_to_fire_seconds_bucket{le="+Inf"}'] == m1['triarb_tick_to_fire_seconds_count']
        assert m1['triarb_leg_gap_seconds_count'] >= 1
        pnl = {k: v for k, v in m1.items() if k.startswith("triarb_pnl{")}
        assert pnl and 'triarb_pnl_ref{ref="USDT"}' in m1
        assert m1["triarb_slots"] == 1
        assert [t.name for t in threading.enumerate() if t.name == "metrics"] == ["metrics"]
        assert er.stop() == 0
    assert not [t for t in threading.enumerate() if t.name == "metrics"]
    with socket.socket() as s:                     # nothing listens there any more
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_metrics_when_host_default_then_loopback_only():
    import config
    cfg = config.parse_config("[engine]\nmetrics_port = 9108\n")
    assert cfg.metrics_host == "127.0.0.1" and cfg.metrics_port == 9108
    assert config.parse_config("").metrics_port == 0            # off unless asked for
    text = open(config.__file__.replace("config.py", "sim.ini")).read()
    assert re.search(r"(?m)^metrics_port = 0$", text)
