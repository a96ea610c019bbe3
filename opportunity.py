"""The opportunity journal: every edge above a floor, from the frame that showed it to the
frame that removed it, whether we signalled it, and how that ended.

Owns: OPP_STATE_DTYPE (one row per triangle: the opportunity open on it), OPP_DTYPE (a
closed opportunity, hot -> "opp" thread through an SPSC ring), OPP_CTL_* cells, `alloc`
(every array, called by run.allocate), the kernel `track`, and `Journal` (the thread that
turns ring records into journal lines and the session's opportunity table), `table` and
`render_table`.

What an opportunity is: triangle t opens when its best start volume over the book depth
(triangles.evaluate_triangle: the engine's own execution model, increments, minimums and
taker fees; our balance and max_start ignored: `cap` is huge) makes at least
`opportunity_floor_bps` after fees, at the receipt of the first frame that showed it. It
stays open while the exact top-of-book bound of the cycle after fees (screen_triangle)
stays at or above the floor, and closes at the receipt of the frame that took it below (or
when a book it needs stops being tradable: not synced, stale, crossed; `end` says which).
The depth search runs again only when the bound rises above every bound seen in this
opportunity: peak bps, size and profit are the best of those searches. `n_sig` counts our
signals on that triangle while it was open (slots.py: each signal sets tri_last_ns[t] to
its evaluation time).

Cost (docs/design.md 9): `track` runs after a frame's own decision, in the same kernel call
(hotctx.process_chunk): when the frame staged a signal it runs only once leg 0 is out, at
the next call. It reads each triangle's top-of-book bound where the frame's evaluation left
it (pipeline.evaluate_best writes tri_bound as it screens: one store per triangle), so per
frame it is a pass of loads and compares over the triangles evaluated, plus a depth search
when an opportunity opens or peaks: O(triangles evaluated), no allocation. One writer
per array: the hot thread (the main thread writes params/cap/ctl before the threads start).
Measured: README "Recording, replay and the opportunity table".
"""
from __future__ import annotations

import collections
import json
import time

import numpy as np
from numba import njit

import rings
import triangles
from books import BOOK_SYNCED

OPP_STATE_DTYPE = np.dtype([
    ("open", "i4"), ("n_frames", "i4"),
    ("start_ns", "i8"), ("last_ns", "i8"), ("peak_ns", "i8"),
    ("first_bps", "f8"), ("peak_bps", "f8"), ("peak_vol", "f8"), ("peak_profit", "f8"),
    ("sig_ns", "i8"), ("last_sig_ns", "i8"), ("n_sig", "i4"), ("edge", "i4"),
    ("start_ts_ms", "i8"),
    ("bound", "f8"),        # the top-of-book bound of the last depth search (NaN: none)
], align=True)

OPP_DTYPE = np.dtype([
    ("tri", "i4"), ("n_frames", "i4"),
    ("start_ns", "i8"), ("end_ns", "i8"), ("peak_ns", "i8"),
    ("first_bps", "f8"), ("peak_bps", "f8"), ("peak_vol", "f8"), ("peak_profit", "f8"),
    ("sig_ns", "i8"), ("n_sig", "i4"), ("end", "i4"),      # end: EVC_* that closed it, or END_*
    ("start_ts_ms", "i8"),
], align=True)

END_SESSION = -1        # still open when the session (or the replay) ended
END_BOOK = -2           # a book of the triangle could not be traded (stale, crossed, empty)

# ctl cells (int64): [ENABLED] main thread before start; the rest hot thread
OPP_CTL_ENABLED = 0
OPP_CTL_OPENED = 1
OPP_CTL_CLOSED = 2
OPP_CTL_DROPPED = 3      # the ring was full: the record is lost (counted)
OPP_CTL_LEN = 8

RING_CAP = 4096
HUGE = 1e30              # "no balance or max_start limit": the market's size, not ours


def alloc(ntri: int, nccy: int, floor_bps: float, max_book_age_ms: float, max_levels: int,
          enabled: bool = True, flags: int = 0, **search):
    """(state, params, cand, cap, ring_buf, ring_ctrl, ctl) for run.allocate. `search`
    (max_scan, search_tol_bps; triangles.alloc_params's defaults otherwise) is the engine's
    (docs/design.md 5.2), so an opportunity's size is the one the engine would have picked."""
    state = np.zeros(max(1, ntri), OPP_STATE_DTYPE)
    state["bound"] = np.nan
    params = triangles.alloc_params(floor_bps, max_book_age_ms, max_levels, flags=flags, **search)
    cand = triangles.alloc_candidates(1)
    cap = np.full(max(1, nccy), HUGE)
    buf, ctrl = rings.alloc_ring(OPP_DTYPE, RING_CAP)
    ctl = np.zeros(OPP_CTL_LEN, np.int64)
    ctl[OPP_CTL_ENABLED] = 1 if enabled else 0
    return state, params, cand, cap, buf, ctrl, ctl


@njit(nogil=True, cache=True)
def _close(o, t, now_ns, end, buf, ctrl, ctl):
    idx = rings.ring_claim(buf, ctrl)
    if idx < 0:
        ctl[OPP_CTL_DROPPED] += 1
    else:
        r = buf[idx]
        r["tri"] = t
        r["n_frames"] = o["n_frames"]
        r["start_ns"] = o["start_ns"]
        r["end_ns"] = now_ns
        r["peak_ns"] = o["peak_ns"]
        r["first_bps"] = o["first_bps"]
        r["peak_bps"] = o["peak_bps"]
        r["peak_vol"] = o["peak_vol"]
        r["peak_profit"] = o["peak_profit"]
        r["sig_ns"] = o["sig_ns"]
        r["n_sig"] = o["n_sig"]
        r["end"] = end
        r["start_ts_ms"] = o["start_ts_ms"]
        rings.ring_publish(buf, ctrl)
    o["open"] = 0
    ctl[OPP_CTL_CLOSED] += 1


@njit(nogil=True, cache=True)
def track(sym, now_ns, evaluated, state, px, sz, symtab, tris, sym_tri_start, sym_tri_list,
          tri_last_ns, tri_bound, ostate, oparams, ocand, ocap, obuf, octrl, octl):
    """After a frame of `sym` (received at now_ns) was handled: open, extend or close the
    opportunity of every triangle through `sym` (see the module docstring). `evaluated`: the
    frame reached the evaluation, whose screen left each triangle's top-of-book bound in
    tri_bound (pipeline.evaluate_best); otherwise the book did not change, unless it stopped
    being synced (a gap), which closes what is open through it."""
    if octl[OPP_CTL_ENABLED] == 0:
        return
    floor = oparams[0]["min_profit_bps"]
    synced = state[sym]["status"] == BOOK_SYNCED
    for idx in range(sym_tri_start[sym], sym_tri_start[sym + 1]):
        t = sym_tri_list[idx]
        o = ostate[t]
        if not evaluated:
            if not synced and o["open"] != 0:
                _close(o, t, now_ns, triangles.EVC_NOT_SYNCED, obuf, octrl, octl)
            continue
        bound = tri_bound[t]
        edge = False
        end = triangles.EVC_NO_EDGE if bound > -np.inf else END_BOOK
        if bound >= floor:                              # top-of-book bound >= the floor
            if o["open"] != 0:
                edge = True
                if bound > o["bound"]:
                    # a higher top-of-book bound than any seen in this opportunity: the depth
                    # search again, for the peak (only then: a search on every frame cost as
                    # much as the frame's own evaluation, profiles/bench_study.py)
                    o["bound"] = bound
                    if triangles.evaluate_triangle(t, now_ns, state, px, sz, symtab, tris, ocap,
                                                   ocap, oparams, ocand, 0) == triangles.EVC_CANDIDATES:
                        c = ocand[0]
                        if c["bps"] > o["peak_bps"]:
                            o["peak_bps"] = c["bps"]
                            o["peak_vol"] = c["start_vol"]
                            o["peak_profit"] = c["profit"]
                            o["peak_ns"] = now_ns
            elif not bound == o["bound"]:
                # not open: does a real size clear the floor? (a bound already searched
                # without success is not searched again)
                o["bound"] = bound
                if triangles.evaluate_triangle(t, now_ns, state, px, sz, symtab, tris, ocap,
                                               ocap, oparams, ocand, 0) == triangles.EVC_CANDIDATES:
                    c = ocand[0]
                    edge = True
                    o["open"] = 1
                    o["n_frames"] = 0
                    o["start_ns"] = now_ns
                    o["first_bps"] = c["bps"]
                    o["peak_bps"] = c["bps"]
                    o["peak_vol"] = c["start_vol"]
                    o["peak_profit"] = c["profit"]
                    o["peak_ns"] = now_ns
                    o["sig_ns"] = 0
                    o["last_sig_ns"] = 0
                    o["n_sig"] = 0
                    o["start_ts_ms"] = c["book_ts_ms"]
                    octl[OPP_CTL_OPENED] += 1
        else:
            o["bound"] = np.nan
        if edge:
            o["n_frames"] += 1
            o["last_ns"] = now_ns
        if o["open"] != 0:
            s = tri_last_ns[t]
            if s >= o["start_ns"] and s != o["last_sig_ns"]:
                o["n_sig"] += 1
                o["last_sig_ns"] = s
                if o["sig_ns"] == 0:
                    o["sig_ns"] = s
            if not edge:
                _close(o, t, now_ns, end, obuf, octrl, octl)


@njit(nogil=True, cache=True)
def close_all(now_ns, tri_last_ns, ostate, obuf, octrl, octl, limit):
    """The session (or replay) ends: open opportunities are closed with END_SESSION, at
    most `limit` per call (the caller drains the ring between calls). Returns how many.
    Called once the hot thread has stopped (main thread) or by the replay."""
    n = 0
    for t in range(ostate.shape[0]):
        o = ostate[t]
        if o["open"] != 0:
            if n >= limit:
                break
            s = tri_last_ns[t]
            if s >= o["start_ns"] and s != o["last_sig_ns"]:
                o["n_sig"] += 1
                if o["sig_ns"] == 0:
                    o["sig_ns"] = s
            _close(o, t, now_ns, END_SESSION, obuf, octrl, octl)
            n += 1
    return n


# -- records, journal lines and the table -------------------------------------------------

END_NAMES = {END_SESSION: "session_end", END_BOOK: "book_unusable",
             triangles.EVC_NOT_SYNCED: "not_synced",
             triangles.EVC_STALE: "stale", triangles.EVC_EMPTY: "empty",
             triangles.EVC_CROSSED: "crossed", triangles.EVC_NO_EDGE: "edge_gone",
             triangles.EVC_NO_SIZE: "no_size", triangles.EVC_NO_PROFIT: "edge_gone",
             triangles.EVC_BELOW_BPS: "edge_gone", triangles.EVC_OUT_FULL: "edge_gone"}

BPS_BANDS = (-np.inf, 0.0, 5.0, 10.0, 20.0, 50.0, 100.0)     # lower edges (< 0: a floor below 0)
LIFE_BANDS_MS = (0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0)     # lower edges


def record_dict(r, uni, mono_to_utc_ns: int = 0) -> dict:
    """One closed opportunity (an OPP_DTYPE row) as a journal object."""
    t = int(r["tri"])
    tri = uni.tris[t]
    start, end = int(r["start_ns"]), int(r["end_ns"])
    return {
        "triangle": uni.tri_currencies(t),
        "symbols": [uni.symbols[int(tri[f"sym{k}"])] for k in range(3)],
        "tri": t,
        "start_utc_ms": (start + mono_to_utc_ns) // 1_000_000 if mono_to_utc_ns else None,
        "start_ns": start, "end_ns": end,
        "lifetime_ms": round((end - start) / 1e6, 3),
        "frames": int(r["n_frames"]),
        "first_bps": round(float(r["first_bps"]), 3),
        "peak_bps": round(float(r["peak_bps"]), 3),
        "peak_size": float(f"{float(r['peak_vol']):.10g}"),
        "peak_profit": float(f"{float(r['peak_profit']):.10g}"),
        "size_ccy": uni.currencies[int(tri["ccy0"])],
        "signalled": int(r["n_sig"]) > 0,
        "signals": int(r["n_sig"]),
        "signal_ns": int(r["sig_ns"]) or None,
        "end": END_NAMES.get(int(r["end"]), str(int(r["end"]))),
        "outcome": None,
    }


def _band(v, edges):
    k = 0
    for i, e in enumerate(edges):
        if v >= e:
            k = i
    return k


def _label(edges, k, unit):
    lo = edges[k]
    hi = edges[k + 1] if k + 1 < len(edges) else None
    if lo == -np.inf:
        return f"< {hi:g} {unit}"
    return f"{lo:g}-{hi:g} {unit}" if hi is not None else f">= {lo:g} {unit}"


def table(opps: list[dict]) -> dict:
    """Counts by peak-bps band x lifetime band, signalled and caught per bps band, and the
    capture ratio (caught / seen). `caught`: a signal fired while it was open and, when an
    outcome is known, the triangle FILLED (or PARTIAL) at a profit."""
    nb, nl = len(BPS_BANDS), len(LIFE_BANDS_MS)
    grid = [[0] * nl for _ in range(nb)]
    sig = [0] * nb
    caught = [0] * nb
    for o in opps:
        b = _band(o["peak_bps"], BPS_BANDS)
        lb = _band(o["lifetime_ms"], LIFE_BANDS_MS)
        grid[b][lb] += 1
        if o["signalled"]:
            sig[b] += 1
            if is_caught(o):
                caught[b] += 1
    seen = len(opps)
    return {"seen": seen, "signalled": sum(sig), "caught": sum(caught),
            "capture_ratio": (sum(caught) / seen) if seen else None,
            "bps_bands": [_label(BPS_BANDS, k, "bps") for k in range(nb)],
            "life_bands": [_label(LIFE_BANDS_MS, k, "ms") for k in range(nl)],
            "grid": grid, "signalled_by_bps": sig, "caught_by_bps": caught,
            "median_lifetime_ms": _median([o["lifetime_ms"] for o in opps]),
            "median_peak_bps": _median([o["peak_bps"] for o in opps])}


def is_caught(o: dict) -> bool:
    if not o["signalled"]:
        return False
    out = o.get("outcome")
    if out is None:            # replay: no execution, a signal is what we can know
        return True
    return out.get("status") in ("FILLED", "PARTIAL") and (out.get("profit") or 0.0) > 0.0


def _median(v):
    if not v:
        return None
    s = sorted(v)
    return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])


def render_table(tb: dict, floor_bps: float, fee_note: str = "") -> str:
    """The opportunity table as text (session summary, replay.py, README)."""
    w = 14
    head = f"{'peak bps':<12}" + "".join(f"{x:>{w}}" for x in tb["life_bands"]) + \
        f"{'all':>8}{'signalled':>11}{'caught':>8}"
    lines = [f"opportunities (edge >= {floor_bps:g} bps after fees{fee_note}): seen {tb['seen']}, "
             f"signalled {tb['signalled']}, caught {tb['caught']}, capture ratio "
             + (f"{tb['capture_ratio']:.3f}" if tb["capture_ratio"] is not None else "-")
             + (f"; median lifetime {tb['median_lifetime_ms']:g} ms, median peak "
                f"{tb['median_peak_bps']:.2f} bps" if tb["seen"] else ""),
             "  lifetime ->", "  " + head]
    for k, band in enumerate(tb["bps_bands"]):
        row = tb["grid"][k]
        lines.append("  " + f"{band:<12}" + "".join(f"{x:>{w}}" for x in row)
                     + f"{sum(row):>8}{tb['signalled_by_bps'][k]:>11}{tb['caught_by_bps'][k]:>8}")
    return "\n".join(lines)


class Journal:
    """The "opp" thread (started by run.py): pops closed opportunities from the hot thread's
    ring every poll_s, joins each signalled one with the report of its signal (same
    triangle, evaluation time = the signal's) and hands the journal line to the log thread
    (`emit_line`, which writes opportunities.jsonl: this thread never touches disk). A
    signalled opportunity waits up to `wait_report_s` for its report.

    `reports` is a deque the log thread appends every trading record to
    (LogWriter.report_feeds) and this thread empties; each is kept, by its signal, for
    `keep_report_s` (an opportunity can outlive the triangle its signal started)."""

    def __init__(self, sh, emit_line, reports: collections.deque, mono_to_utc_ns: int,
                 poll_s: float = 0.1, wait_report_s: float = 30.0, keep_report_s: float = 300.0):
        self.sh = sh
        self.uni = sh.universe
        self.emit_line = emit_line
        self.reports = reports           # appended by the log thread, emptied here
        self.mono_to_utc_ns = mono_to_utc_ns
        self.poll_s = poll_s
        self.wait_report_s = wait_report_s
        self.rec = np.zeros(1, OPP_DTYPE)
        self.opps: list[dict] = []       # every closed opportunity, for the table
        self.waiting: list[tuple[float, dict]] = []
        self.keep_report_s = keep_report_s
        self._by_key: dict = {}
        self._key_times: collections.deque = collections.deque()   # (monotonic s, key), oldest first

    def _index_reports(self) -> None:
        rs = self.reports
        now = time.monotonic()
        while rs:
            r = rs.popleft()
            if hasattr(r, "evaluated_ns") and hasattr(r, "symbols"):
                key = (tuple(r.triangle), tuple(r.symbols), int(r.evaluated_ns))
                self._by_key[key] = r
                self._key_times.append((now, key))
        kt = self._key_times
        while kt and now - kt[0][0] > self.keep_report_s:
            self._by_key.pop(kt.popleft()[1], None)

    def _outcome(self, o: dict):
        r = self._by_key.get((tuple(o["triangle"]), tuple(o["symbols"]), o["signal_ns"]))
        if r is None:
            return None
        return {"status": r.status, "corr": f"{r.corr:x}", "profit": r.profit,
                "effective_bps": r.effective_bps, "predicted_bps": r.predicted_bps,
                "start_volume": r.start_volume}

    def poll(self, final: bool = False) -> int:
        """Everything closed since the last poll; the lines go to the log thread as one item
        (one wake-up of it per poll, not per opportunity: each wake-up competes for the GIL)."""
        sh = self.sh
        n = 0
        lines = []
        while rings.ring_pop(sh.opp_ring[0], sh.opp_ring[1], self.rec, 0):
            o = record_dict(self.rec[0], self.uni, self.mono_to_utc_ns)
            self.opps.append(o)
            if o["signalled"]:
                self.waiting.append((time.monotonic(), o))
            else:
                lines.append(json.dumps(o, separators=(",", ":")))
            n += 1
        self._index_reports()            # every poll: the feed must not grow while none waits
        if self.waiting:
            keep = []
            now = time.monotonic()
            for t0, o in self.waiting:
                o["outcome"] = self._outcome(o)
                if o["outcome"] is not None or final or now - t0 > self.wait_report_s:
                    lines.append(json.dumps(o, separators=(",", ":")))
                else:
                    keep.append((t0, o))
            self.waiting = keep
        if lines:
            self.emit_line("\n".join(lines))
        return n

    def run(self, stop) -> None:
        while not stop.wait(self.poll_s):
            self.poll()

    def finish(self, now_ns: int) -> None:
        """After the hot thread stopped and the executors reported: close what is open and
        write everything out (main thread)."""
        sh = self.sh
        while close_all(now_ns, sh.tri_last_ns, sh.opp_state, sh.opp_ring[0], sh.opp_ring[1],
                        sh.opp_ctl, RING_CAP // 2):
            self.poll()
        self.poll(final=True)
