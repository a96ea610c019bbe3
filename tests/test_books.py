"""Tests for books.py: snapshot load, level2 sequence rules, buffering/resync, cap/horizon/refill,
BBO, walks; the real 2021 stream against a pure-Python reference book.

Run: python -m pytest -q tests/test_books.py
Data: tests/data/ws-public-2021-04-25.jsonl (level2 stream of 9 symbols) and
tests/data/orderbook-level2-snapshots-2021-04-25.jsonl (full /api/v3 books taken during it).
"""
import json
import os
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

import books as B
import l2wire as W

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
BID, ASK = B.SIDE_BID, B.SIDE_ASK
INF = float("inf")


# ---- hand-made books -------------------------------------------------------------------

class Rig:
    """One set of caller-owned arrays, as the hot thread holds them."""

    def __init__(self, nsym=2, depth=4, pend_cap=64, refill_min=0, jump_max=B.SEQ_JUMP_MAX):
        self.state, self.px, self.sz = B.alloc_books(nsym, depth)
        self.pend, self.pctl = B.alloc_pending(pend_cap, seq_jump_max=jump_max)
        self.ch = W.alloc_changes(64)
        self.refill_min = refill_min

    def snap(self, sym, seq, bids, asks, limit=0, ts_ms=1000, kernel=None):
        m = max(len(bids), len(asks), 1)
        spx, ssz, n = B.alloc_snapshot(m)
        for side, lv in ((BID, bids), (ASK, asks)):
            n[side] = len(lv)
            for k, (p, s) in enumerate(lv):
                spx[side, k], ssz[side, k] = p, s
        f = kernel or B.book_sync_snapshot
        return f(self.state, self.px, self.sz, self.pend, self.pctl, sym, seq, ts_ms, 5,
                 spx, ssz, n[BID], n[ASK], limit)

    def msg(self, sym, start, end, changes=(), ts_ms=-1, recv_ns=7, kernel=None):
        for k, (side, p, s, q) in enumerate(changes):
            self.ch[k] = (p, s, q, side)
        f = kernel or B.book_apply_l2
        return f(self.state, self.px, self.sz, sym, start, end, ts_ms, recv_ns, self.ch,
                 len(changes), self.pend, self.pctl, self.refill_min)

    def levels(self, sym, side):
        n = self.state[sym]["n_bid" if side == BID else "n_ask"]
        return [(float(self.px[sym, side, i]), float(self.sz[sym, side, i])) for i in range(n)]

    def b(self, sym=0):
        return self.state[sym]


def synced_rig(**kw):
    r = Rig(**kw)
    assert r.snap(0, 16, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0), (102.0, 3.0)]) == \
        B.SNAP_SYNCED
    return r


def test_load_snapshot_when_levels_fit_then_synced_complete_and_unused_slots_clear():
    r = synced_rig()
    b = r.b()
    assert (b["status"], b["seq"], b["ts_ms"], b["recv_ns"]) == (B.BOOK_SYNCED, 16, 1000, 5)
    assert r.levels(0, BID) == [(100.0, 1.0), (99.0, 2.0)]
    assert r.levels(0, ASK) == [(101.0, 1.0), (102.0, 3.0)]
    assert (b["hz_bid_px"], b["hz_ask_px"]) == (-INF, INF)
    assert r.sz[0, BID, 2] == 0.0 and np.isnan(r.px[0, ASK, 3])


def test_load_snapshot_when_more_levels_than_depth_then_horizon_is_first_dropped_price():
    r = Rig(depth=2)
    r.snap(0, 1, [(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)], [(101.0, 1.0)])
    assert r.levels(0, BID) == [(100.0, 1.0), (99.0, 1.0)]
    assert (r.b()["hz_bid_px"], r.b()["hz_ask_px"]) == (98.0, INF)


def test_load_snapshot_when_endpoint_limit_reached_then_worst_level_becomes_horizon():
    r = Rig(depth=8)
    r.snap(0, 1, [(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)], [(101.0, 1.0), (102.0, 2.0)], limit=3)
    assert r.levels(0, BID) == [(100.0, 1.0), (99.0, 1.0)]       # level2_N may stop anywhere
    assert r.b()["hz_bid_px"] == 98.0 and r.b()["hz_ask_px"] == INF  # 2 < 3: asks complete


@pytest.mark.parametrize("bids", [[(99.0, 1.0), (100.0, 1.0)], [(100.0, 1.0), (100.0, 2.0)],
                                  [(100.0, 0.0)], [(-1.0, 1.0)]])
def test_load_snapshot_when_levels_invalid_then_bad_and_book_untouched(bids):
    r = synced_rig()
    before = (r.px.copy(), r.sz.copy(), r.b()["seq"])
    spx, ssz, n = B.alloc_snapshot(4)
    for k, (p, s) in enumerate(bids):
        spx[BID, k], ssz[BID, k] = p, s
    assert B.book_load_snapshot(r.state, r.px, r.sz, 0, 20, 0, 0, spx, ssz, len(bids), 0, 0) \
        == B.SNAP_BAD
    assert np.array_equal(r.sz, before[1]) and r.b()["seq"] == before[2]


@pytest.mark.parametrize("side,price,size,code,want", [
    (BID, 99.5, 4.0, B.LV_INSERTED, [(100.0, 1.0), (99.5, 4.0), (99.0, 2.0)]),
    (BID, 100.5, 4.0, B.LV_INSERTED, [(100.5, 4.0), (100.0, 1.0), (99.0, 2.0)]),
    (BID, 98.0, 4.0, B.LV_INSERTED, [(100.0, 1.0), (99.0, 2.0), (98.0, 4.0)]),
    (BID, 99.0, 7.0, B.LV_SET, [(100.0, 1.0), (99.0, 7.0)]),
    (BID, 100.0, 0.0, B.LV_DELETED, [(99.0, 2.0)]),
    (BID, 99.5, 0.0, B.LV_ABSENT, [(100.0, 1.0), (99.0, 2.0)]),
    (ASK, 101.5, 4.0, B.LV_INSERTED, [(101.0, 1.0), (101.5, 4.0), (102.0, 3.0)]),
    (ASK, 100.5, 4.0, B.LV_INSERTED, [(100.5, 4.0), (101.0, 1.0), (102.0, 3.0)]),
    (ASK, 102.0, 0.0, B.LV_DELETED, [(101.0, 1.0)]),
])
def test_set_level_when_insert_update_delete_then_side_stays_sorted(side, price, size, code,
                                                                     want):
    r = synced_rig()
    assert B.book_set_level(r.state, r.px, r.sz, 0, side, price, size) == code
    assert r.levels(0, side) == want
    assert r.sz[0, side, len(want)] == 0.0               # first unused slot stays clear


def test_set_level_when_side_full_then_worst_dropped_and_horizon_moves_in():
    r = Rig(depth=3)
    r.snap(0, 1, [(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)], [(101.0, 1.0)])
    assert r.b()["hz_bid_px"] == -INF
    assert B.book_set_level(r.state, r.px, r.sz, 0, BID, 99.5, 5.0) == B.LV_DROPPED
    assert r.levels(0, BID) == [(100.0, 1.0), (99.5, 5.0), (99.0, 1.0)]
    assert r.b()["hz_bid_px"] == 98.0 and r.b()["n_dropped"] == 1
    # a new level worse than every held one but better than the horizon is the one dropped
    assert B.book_set_level(r.state, r.px, r.sz, 0, BID, 98.5, 5.0) == B.LV_DROPPED
    assert r.levels(0, BID) == [(100.0, 1.0), (99.5, 5.0), (99.0, 1.0)]
    assert r.b()["hz_bid_px"] == 98.5


def test_set_level_when_at_or_beyond_horizon_then_ignored_and_counted():
    r = Rig(depth=2)
    r.snap(0, 1, [(100.0, 1.0)], [(101.0, 1.0), (102.0, 1.0), (103.0, 1.0)])
    assert r.b()["hz_ask_px"] == 103.0
    for p in (103.0, 104.0):
        assert B.book_set_level(r.state, r.px, r.sz, 0, ASK, p, 9.0) == B.LV_BEYOND
    assert B.book_set_level(r.state, r.px, r.sz, 0, ASK, 102.5, 0.0) == B.LV_ABSENT
    assert r.levels(0, ASK) == [(101.0, 1.0), (102.0, 1.0)] and r.b()["n_beyond"] == 2


def test_apply_when_docs_worked_example_then_only_newer_entries_applied():
    # docs/kucoin.md 3.8: snapshot 16; entries 16, 19, 15, 18 -> only 18 and 19 apply.
    r = Rig(depth=8)
    r.snap(0, 16, [(3988.50, 10.0), (3988.40, 1.0)],
           [(3988.59, 1.0), (3988.61, 2.0), (3988.62, 4.0)])
    code = r.msg(0, 15, 19, [(ASK, 3988.59, 3.0, 16), (ASK, 3988.61, 0.0, 19),
                             (ASK, 3988.62, 8.0, 15), (BID, 3988.50, 44.0, 18)], ts_ms=777)
    assert code == B.L2_APPLIED
    assert r.levels(0, ASK) == [(3988.59, 1.0), (3988.62, 4.0)]
    assert r.levels(0, BID) == [(3988.50, 44.0), (3988.40, 1.0)]
    assert (r.b()["seq"], r.b()["ts_ms"], r.b()["recv_ns"]) == (19, 777, 7)


def test_apply_when_frame_has_no_time_then_ts_kept_and_seq_advances():
    r = synced_rig()
    assert r.msg(0, 17, 17, [(BID, 100.0, 3.0, 17)], ts_ms=-1) == B.L2_APPLIED
    assert (r.b()["seq"], r.b()["ts_ms"]) == (17, 1000)


def test_apply_when_sequence_only_entries_then_levels_unchanged_and_seq_advances():
    r = synced_rig()
    before = (r.px.copy(), r.sz.copy())
    assert r.msg(0, 17, 18, [(ASK, 0.0, 0.0, 17), (BID, 0.0, 0.0, 18)]) == B.L2_APPLIED
    assert r.b()["seq"] == 18 and np.array_equal(r.sz, before[1])
    assert r.msg(0, 19, 19) == B.L2_APPLIED and r.b()["seq"] == 19   # no changes at all


def test_apply_when_duplicate_message_then_stale_counted_and_book_unchanged():
    r = synced_rig()
    assert r.msg(0, 17, 18, [(BID, 100.0, 5.0, 18)]) == B.L2_APPLIED
    assert r.msg(0, 17, 18, [(BID, 100.0, 9.0, 18)]) == B.L2_STALE
    assert r.msg(0, 10, 16, [(BID, 100.0, 9.0, 16)]) == B.L2_STALE
    assert r.levels(0, BID)[0] == (100.0, 5.0) and r.b()["n_stale"] == 2


def test_apply_when_gap_then_resyncing_counted_and_message_buffered():
    r = synced_rig()
    assert r.msg(0, 18, 18, [(BID, 100.0, 5.0, 18)]) == B.L2_GAP      # 17 was lost
    b = r.b()
    assert (b["status"], b["n_gap"], b["pend_from"], b["pend_last"], b["pend_rows"]) == \
        (B.BOOK_RESYNCING, 1, 17, 18, 1)
    assert r.levels(0, BID)[0] == (100.0, 1.0)                          # not applied
    assert r.msg(0, 19, 19, [(BID, 99.0, 0.0, 19)]) == B.L2_BUFFERED


# ---- sequence sanity and stale runs (books.py docstring) ---------------------------------

@pytest.mark.parametrize("start,end,changes", [
    (18, 17, [(BID, 100.0, 5.0, 17)]),                  # sequenceStart > sequenceEnd
    (-1, 17, [(BID, 100.0, 5.0, 17)]),                  # negative sequence
    (17, 18, [(BID, 100.0, 5.0, 19)]),                  # a change after sequenceEnd
    (17, 18, [(BID, 100.0, 5.0, 16)]),                  # a change before sequenceStart
    (17, 17, [(BID, -100.0, 5.0, 17)]),                 # negative price
    (17, 17, [(ASK, 101.0, -5.0, 17)]),                 # negative size
    (17, 17, [(ASK, 101.0, float("nan"), 17)]),         # NaN (l2wire never makes one)
    (17, 17 + 1001, [(BID, 100.0, 5.0, 17)]),           # span > J (J = 1000 here)
    (17 + 1002, 17 + 1002, [(BID, 100.0, 5.0, 1019)]),  # jump > J beyond the book
])
def test_sanity_when_message_inconsistent_then_rejected_nothing_applied_and_book_resyncs(
        start, end, changes):
    r = Rig(depth=8, jump_max=1000)
    r.snap(0, 16, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0)])
    before = (r.px.copy(), r.sz.copy())
    assert r.msg(0, start, end, changes) == B.L2_REJECTED
    b = r.b()
    assert (b["status"], b["n_seq_bad"], b["seq"], b["pend_rows"], b["pend_from"]) == \
        (B.BOOK_RESYNCING, 1, 16, 0, -1)
    assert np.array_equal(r.sz, before[1]) and np.array_equal(r.px, before[0], equal_nan=True)
    # the stream goes on from 17: buffered, and the snapshot syncs the book
    assert r.msg(0, 17, 17, [(BID, 100.0, 7.0, 17)]) == B.L2_BUFFERED
    assert r.snap(0, 16, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 1.0)]) == B.SNAP_SYNCED
    assert r.levels(0, BID)[0] == (100.0, 7.0) and r.b()["seq"] == 17


def test_sanity_when_span_or_jump_at_the_bound_then_accepted():
    r = Rig(depth=8, jump_max=1000)
    r.snap(0, 16, [(100.0, 1.0)], [(101.0, 1.0)])
    assert r.msg(0, 17, 17 + 1000, [(BID, 100.0, 2.0, 17), (ASK, 0.0, 0.0, 1017)]) == B.L2_APPLIED
    assert r.b()["seq"] == 1017
    assert r.msg(0, 1017 + 1001, 1017 + 1001) == B.L2_GAP      # jump of exactly J: a gap
    assert r.b()["n_seq_bad"] == 0


def test_sanity_when_absurd_sequence_end_then_book_not_frozen():
    """The issue's case: one frame with an absurd sequenceEnd used to move the book there,
    and every later frame was dropped as already applied while the book showed SYNCED."""
    r = synced_rig()
    assert r.msg(0, 17, 10 ** 17, [(BID, 100.0, 5.0, 17)]) == B.L2_REJECTED
    assert r.b()["status"] == B.BOOK_RESYNCING and r.b()["seq"] == 16
    for q in range(17, 21):                               # the real stream, buffered
        assert r.msg(0, q, q, [(BID, 99.0, float(q), q)]) == B.L2_BUFFERED
    assert r.snap(0, 18, [(100.0, 1.0), (99.0, 18.0)], [(101.0, 1.0)]) == B.SNAP_SYNCED
    assert r.b()["seq"] == 20 and r.levels(0, BID) == [(100.0, 1.0), (99.0, 20.0)]
    assert r.msg(0, 21, 21, [(BID, 99.0, 3.0, 21)]) == B.L2_APPLIED


def test_sanity_when_buffering_then_rejected_message_leaves_the_run_intact():
    r = Rig(depth=8)
    assert r.msg(0, 30, 30, [(BID, 10.0, 1.0, 30)]) == B.L2_BUFFERED
    assert r.msg(0, 31, 31, [(BID, 10.0, 2.0, 99)]) == B.L2_REJECTED
    b = r.b()
    assert (b["status"], b["pend_from"], b["pend_last"], b["pend_rows"]) == (B.BOOK_EMPTY, 29, 30, 1)
    assert r.msg(0, 31, 31, [(BID, 10.0, 3.0, 31)]) == B.L2_BUFFERED
    assert r.snap(0, 29, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_SYNCED
    assert r.levels(0, BID) == [(10.0, 3.0), (9.0, 1.0)] and r.b()["seq"] == 31


def test_stale_run_when_book_ran_ahead_within_bound_then_diverged_and_resynced():
    """An in-bound but wrong sequenceEnd (span 500 < J): applied, and the book's sequence is
    ahead of its stream. The next stale_max frames are stale; the 4th sends it to a snapshot."""
    r = Rig(depth=8, jump_max=1000)
    r.snap(0, 16, [(100.0, 1.0)], [(101.0, 1.0)])
    assert r.msg(0, 17, 517, [(BID, 100.0, 2.0, 17)]) == B.L2_APPLIED
    codes = [r.msg(0, q, q, [(BID, 99.0, 1.0, q)]) for q in range(18, 22)]
    assert codes == [B.L2_STALE] * (B.STALE_MAX - 1) + [B.L2_DIVERGED]
    b = r.b()
    assert (b["status"], b["n_diverged"], b["n_stale"], b["pend_from"]) == (B.BOOK_RESYNCING, 1, 4, -1)
    assert r.msg(0, 22, 22, [(BID, 98.0, 1.0, 22)]) == B.L2_BUFFERED
    assert r.snap(0, 21, [(100.0, 1.0), (99.0, 1.0)], [(101.0, 1.0)]) == B.SNAP_SYNCED
    assert r.b()["seq"] == 22 and r.levels(0, BID) == [(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)]


def test_stale_run_when_after_snapshot_then_stale_frames_are_normal():
    r = synced_rig()                                        # snapshot at 16
    for _ in range(10):                                     # frames in flight, all older
        assert r.msg(0, 10, 12, [(BID, 100.0, 9.0, 12)]) == B.L2_STALE
    assert r.msg(0, 17, 17, [(BID, 100.0, 9.0, 17)]) == B.L2_APPLIED
    assert r.msg(0, 17, 17, [(BID, 100.0, 9.0, 17)]) == B.L2_STALE       # one duplicate
    assert r.msg(0, 18, 18, [(BID, 100.0, 8.0, 18)]) == B.L2_APPLIED     # the count restarts
    assert [r.msg(0, 18, 18) for _ in range(3)] == [B.L2_STALE] * 3
    assert r.b()["status"] == B.BOOK_SYNCED and r.b()["n_diverged"] == 0


def test_stale_run_when_buffered_run_starts_absurdly_high_then_run_restarts_from_the_stream():
    """A book without a snapshot buffers any first message; one absurdly ahead would make
    every real one stale and every snapshot too old. stale_max of them restart the run."""
    r = Rig(depth=8)
    assert r.msg(0, 10 ** 15, 10 ** 15) == B.L2_BUFFERED
    codes = [r.msg(0, q, q, [(BID, 10.0, float(q), q)]) for q in range(40, 44)]
    assert codes == [B.L2_STALE] * 3 + [B.L2_DIVERGED]
    assert (r.b()["pend_from"], r.b()["pend_last"], r.b()["pend_rows"]) == (42, 43, 1)
    assert r.msg(0, 44, 44, [(BID, 10.0, 44.0, 44)]) == B.L2_BUFFERED
    assert r.snap(0, 42, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_SYNCED
    assert r.b()["seq"] == 44 and r.levels(0, BID)[0] == (10.0, 44.0)


def test_scan_crossed_when_crossed_past_grace_then_resynced_once_and_uncrossed_forgotten():
    r = Rig(nsym=3, depth=4)
    for sym in range(3):
        r.snap(sym, 16, [(100.0, 1.0)], [(101.0, 1.0)])
    B.book_set_level(r.state, r.px, r.sz, 0, BID, 102.0, 1.0)   # crossed
    B.book_set_level(r.state, r.px, r.sz, 2, ASK, 99.0, 1.0)    # crossed
    out = np.zeros(8, np.int32)
    assert B.book_scan_crossed(r.state, r.px, r.sz, 1000, 500, out, 0, 3) == 0
    assert list(r.state["crossed_ns"]) == [1000, 0, 1000]
    B.book_set_level(r.state, r.px, r.sz, 2, ASK, 99.0, 0.0)    # sym 2 uncrossed again
    assert B.book_scan_crossed(r.state, r.px, r.sz, 1400, 500, out, 2, 1) == 0   # a slice
    assert list(r.state["crossed_ns"]) == [1000, 0, 0]
    assert B.book_scan_crossed(r.state, r.px, r.sz, 1500, 500, out, 1, 1) == 0   # not sym 0
    assert B.book_scan_crossed(r.state, r.px, r.sz, 1500, 500, out, 2, 2) == 1   # wraps to 0
    assert out[0] == 0
    assert r.state[0]["status"] == B.BOOK_RESYNCING and r.state[0]["n_crossed"] == 1
    assert [int(x) for x in r.state["status"][1:]] == [B.BOOK_SYNCED] * 2
    assert B.book_scan_crossed(r.state, r.px, r.sz, 9000, 500, out, 0, 99) == 0   # not SYNCED now
    assert r.snap(0, 20, [(100.0, 1.0)], [(101.0, 1.0)]) == B.SNAP_SYNCED
    assert r.state[0]["crossed_ns"] == 0


def test_simulator_stream_when_thousands_of_messages_then_never_trips_the_sanity_rules():
    """sim/market.py numbers sequences as KuCoin does (docs/kucoin.md 3.6): its stream,
    with mispricings planted and taken, must go through books without a rejection."""
    from sim.market import DEFAULT_DATA, Market, load_symbols, select_symbols
    m = Market(select_symbols(load_symbols(DEFAULT_DATA), 30), seed=3, mispricing_rate=5.0,
               update_rate=2000)
    msgs = []
    m.on_l2 = lambda sym, d: msgs.append((sym, d))
    for k in range(1, 801):
        m.advance(k * 10.0)
    names = sorted(m.books)
    r = Rig(nsym=len(names), depth=64, pend_cap=1 << 14)
    r.ch = W.alloc_changes()                    # l2wire's production capacity
    first = {}
    for sym, d in msgs:
        first.setdefault(sym, d["sequenceStart"] - 1)
    for i, n in enumerate(names):
        assert r.snap(i, first.get(n, m.books[n].seq), [(1.0, 1.0)], [(1e9, 1.0)]) == B.SNAP_SYNCED
    codes = set()
    for sym, d in msgs:
        ch = [(BID, float(p), float(s), int(q)) for p, s, q in d["changes"]["bids"]] + \
             [(ASK, float(p), float(s), int(q)) for p, s, q in d["changes"]["asks"]]
        assert len(ch) <= r.ch.shape[0]
        codes.add(r.msg(names.index(sym), d["sequenceStart"], d["sequenceEnd"], ch))
    assert len(msgs) > 10000 and codes <= {B.L2_APPLIED}, codes
    assert r.state["n_seq_bad"].sum() == 0 and r.state["n_diverged"].sum() == 0


def test_sync_when_snapshot_older_than_buffered_run_then_too_old_and_buffer_kept():
    r = Rig(depth=8)
    assert r.msg(0, 21, 22, [(BID, 10.0, 1.0, 22)]) == B.L2_BUFFERED   # EMPTY book buffers
    assert r.b()["status"] == B.BOOK_EMPTY
    assert r.snap(0, 19, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_TOO_OLD  # 20 is missing
    assert r.b()["status"] == B.BOOK_EMPTY and r.b()["pend_rows"] == 1
    assert r.snap(0, 20, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_SYNCED
    assert r.levels(0, BID) == [(10.0, 1.0), (9.0, 1.0)] and r.b()["seq"] == 22


def test_sync_when_snapshot_inside_run_then_straddling_message_partly_replayed():
    r = Rig(depth=8)
    r.msg(0, 30, 31, [(BID, 10.0, 1.0, 30), (ASK, 12.0, 2.0, 31)], ts_ms=50)
    r.msg(0, 32, 32, [], ts_ms=60)
    r.msg(0, 33, 34, [(BID, 10.0, 0.0, 33), (BID, 8.5, 3.0, 34)], ts_ms=70, recv_ns=99)
    assert r.snap(0, 30, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_SYNCED   # has seq 30 already
    assert r.levels(0, BID) == [(9.0, 1.0), (8.5, 3.0)]                # 10@30 skipped
    assert r.levels(0, ASK) == [(11.0, 1.0), (12.0, 2.0)]
    b = r.b()
    assert (b["seq"], b["ts_ms"], b["recv_ns"], b["pend_rows"], b["pend_from"]) == \
        (34, 70, 99, 0, -1)
    assert r.pctl[0]["count"] == 0                                    # no live rows left
    assert r.msg(0, 35, 35, [(ASK, 11.0, 0.0, 35)]) == B.L2_APPLIED


def test_sync_when_snapshot_newer_than_whole_run_then_synced_and_late_messages_stale():
    r = Rig(depth=8)
    r.msg(0, 30, 31, [(BID, 10.0, 1.0, 31)])
    assert r.snap(0, 40, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_SYNCED
    assert r.b()["seq"] == 40 and r.levels(0, BID) == [(9.0, 1.0)]
    assert r.msg(0, 32, 40, [(BID, 10.0, 5.0, 40)]) == B.L2_STALE      # still in flight
    assert r.msg(0, 38, 41, [(BID, 10.0, 5.0, 41)]) == B.L2_APPLIED
    assert r.msg(0, 43, 43) == B.L2_GAP


def test_sync_when_buffered_message_ends_at_snapshot_seq_then_not_replayed():
    r = Rig(depth=8)
    r.msg(0, 30, 31, [(BID, 10.0, 1.0, 31)], ts_ms=50)
    assert r.snap(0, 31, [(9.0, 1.0)], [(11.0, 1.0)], ts_ms=1000) == B.SNAP_SYNCED
    b = r.b()
    assert (b["seq"], b["ts_ms"], b["recv_ns"], b["n_applied"]) == (31, 1000, 5, 0)
    assert r.levels(0, BID) == [(9.0, 1.0)]


def test_buffer_when_hole_or_duplicate_in_run_then_gap_restarts_run_and_duplicate_stale():
    r = Rig(depth=8)
    r.msg(0, 10, 11, [(BID, 10.0, 1.0, 11)])
    assert r.msg(0, 10, 11, [(BID, 10.0, 1.0, 11)]) == B.L2_STALE
    assert r.msg(0, 14, 14, [(BID, 10.0, 2.0, 14)]) == B.L2_GAP        # 12-13 lost
    assert (r.b()["pend_from"], r.b()["pend_rows"]) == (13, 1)
    assert r.snap(0, 12, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_TOO_OLD
    assert r.snap(0, 13, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_SYNCED
    assert r.levels(0, BID) == [(10.0, 2.0), (9.0, 1.0)]


def test_buffer_when_full_then_outcome_run_dropped_and_resync_restarts():
    r = Rig(depth=8, pend_cap=4)
    assert r.msg(0, 10, 10, [(BID, 10.0, 1.0, 10)] * 3) == B.L2_BUFFERED
    assert r.msg(0, 11, 11, [(BID, 10.0, 1.0, 11)] * 2) == B.L2_BUFFER_FULL
    b = r.b()
    assert (b["n_full"], b["pend_rows"], b["pend_from"], r.pctl[0]["n_full"]) == (1, 0, -1, 1)
    assert r.msg(0, 12, 12, [(BID, 10.0, 2.0, 12)] * 2) == B.L2_BUFFERED  # dead rows compacted
    assert r.pctl[0]["n_compact"] == 2 and r.pctl[0]["count"] == 2
    assert r.snap(0, 10, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_TOO_OLD  # 11 was dropped
    assert r.snap(0, 11, [(9.0, 1.0)], [(11.0, 1.0)]) == B.SNAP_SYNCED


def test_buffer_when_other_symbol_synced_then_its_rows_compacted_and_kept_order():
    r = Rig(depth=8, pend_cap=6)
    r.msg(0, 1, 1, [(BID, 5.0, 1.0, 1)] * 2)
    r.msg(1, 1, 1, [(BID, 7.0, 1.0, 1)])
    r.msg(0, 2, 2, [(BID, 5.0, 2.0, 2)])
    assert r.snap(0, 0, [(4.0, 1.0)], [(6.0, 1.0)]) == B.SNAP_SYNCED
    assert r.pctl[0]["count"] == 4                     # symbol 1 still holds a live row
    assert r.msg(1, 2, 2, [(BID, 7.0, 2.0, 2)] * 3) == B.L2_BUFFERED   # needs compaction
    assert r.pctl[0]["count"] == 4 and r.state[1]["pend_rows"] == 4
    assert r.snap(1, 0, [(6.5, 1.0)], [(8.0, 1.0)]) == B.SNAP_SYNCED
    assert r.levels(1, BID) == [(7.0, 2.0), (6.5, 1.0)] and r.state[1]["seq"] == 2


def test_reset_when_link_dies_then_resyncing_and_old_rows_never_replayed():
    r = synced_rig()
    r.msg(0, 18, 18, [(BID, 50.0, 1.0, 18)])           # gap -> buffered
    B.book_reset(r.state, 0)
    assert (r.b()["status"], r.b()["pend_rows"], r.b()["pend_from"]) == (B.BOOK_RESYNCING, 0, -1)
    assert r.msg(0, 40, 40, [(BID, 60.0, 1.0, 40)]) == B.L2_BUFFERED
    assert r.snap(0, 39, [(9.0, 1.0)], [(101.0, 1.0)]) == B.SNAP_SYNCED
    assert r.levels(0, BID) == [(60.0, 1.0), (9.0, 1.0)]            # 50@18 was dropped


def test_sync_when_book_synced_without_refill_then_snapshot_ignored():
    r = synced_rig()
    assert r.snap(0, 99, [(1.0, 1.0)], [(2.0, 1.0)]) == B.SNAP_IGNORED
    assert r.b()["seq"] == 16


def refill_rig():
    """depth 4, level2 snapshot capped at 5: bids cut at a horizon, refill below 3 levels."""
    r = Rig(depth=4, refill_min=3)
    r.snap(0, 10, [(100.0, 1.0), (99.0, 1.0), (98.0, 1.0), (97.0, 1.0), (96.0, 1.0)],
           [(101.0, 1.0)], limit=5)
    assert r.b()["hz_bid_px"] == 96.0 and r.b()["hz_ask_px"] == INF
    return r


def test_apply_when_deletions_thin_capped_side_then_need_refill_and_still_tradable():
    r = refill_rig()
    assert r.msg(0, 11, 11, [(BID, 100.0, 0.0, 11)]) == B.L2_APPLIED     # 3 levels left
    assert r.msg(0, 12, 12, [(BID, 99.0, 0.0, 12)]) == B.L2_NEED_REFILL  # 2 < 3
    b = r.b()
    assert (b["status"], b["refill"], b["n_refill"], b["pend_from"]) == (B.BOOK_SYNCED, 1, 1, 12)
    assert r.msg(0, 13, 13, [(BID, 98.5, 2.0, 13)]) == B.L2_NEED_REFILL  # applied + buffered
    assert r.levels(0, BID) == [(98.5, 2.0), (98.0, 1.0), (97.0, 1.0)]
    assert r.b()["pend_rows"] == 1 and r.b()["n_refill"] == 1           # asked once per refill


def test_apply_when_thin_side_has_no_horizon_then_no_refill():
    r = refill_rig()
    assert r.msg(0, 11, 11, [(ASK, 101.0, 0.0, 11)]) == B.L2_APPLIED     # asks complete: empty
    assert r.b()["refill"] == 0 and np.isnan(B.best_ask(r.px, r.sz, 0))


def test_sync_when_refill_snapshot_arrives_then_replayed_and_live_book_replaced():
    r = refill_rig()
    r.msg(0, 11, 12, [(BID, 100.0, 0.0, 11), (BID, 99.0, 0.0, 12)])
    assert r.msg(0, 13, 13, [(BID, 98.5, 2.0, 13)]) == B.L2_NEED_REFILL
    assert r.snap(0, 11, [(99.0, 1.0)], [(101.0, 1.0)]) == B.SNAP_TOO_OLD  # predates the run
    assert r.levels(0, BID) == [(98.5, 2.0), (98.0, 1.0), (97.0, 1.0)]     # live book kept
    # the exchange's book at 12: the snapshot goes deeper than what we held
    full = [(98.0, 1.0), (97.0, 1.0), (96.0, 1.0), (95.0, 1.0), (94.0, 1.0)]
    assert r.snap(0, 12, full, [(101.0, 1.0)]) == B.SNAP_SYNCED
    assert r.levels(0, BID) == [(98.5, 2.0), (98.0, 1.0), (97.0, 1.0), (96.0, 1.0)]
    b = r.b()
    assert (b["refill"], b["seq"], b["hz_bid_px"], b["pend_rows"]) == (0, 13, 95.0, 0)
    assert r.msg(0, 14, 14, [(ASK, 101.0, 2.0, 14)]) == B.L2_APPLIED


def test_check_book_params_when_refill_not_below_fresh_snapshot_then_value_error():
    B.check_book_params(64, 100, 24)
    B.check_book_params(64, 0, 63)
    with pytest.raises(ValueError):
        B.check_book_params(64, 20, 19)
    with pytest.raises(ValueError):
        B.check_book_params(16, 0, 16)


# ---- readers ---------------------------------------------------------------------------

def walk_rig(asks=(), bids=()):
    r = Rig(depth=4)
    r.snap(0, 1, list(bids), list(asks))
    return r


def test_best_when_sides_present_or_empty_then_price_or_nan():
    r = synced_rig()
    assert B.book_best(r.px, r.sz, 0, BID) == (100.0, 1.0)
    assert (B.best_bid(r.px, r.sz, 0), B.best_ask(r.px, r.sz, 0)) == (100.0, 101.0)
    e = walk_rig(asks=[(5.0, 1.0)])
    assert np.isnan(B.best_bid(e.px, e.sz, 0)) and B.book_best(e.px, e.sz, 0, BID)[1] == 0.0
    assert not B.book_crossed(r.px, r.sz, 0) and not B.book_crossed(e.px, e.sz, 0)
    B.book_set_level(r.state, r.px, r.sz, 0, BID, 101.0, 1.0)
    assert B.book_crossed(r.px, r.sz, 0)


@pytest.mark.parametrize("asks,funds,inc,base,spent", [
    ([(1.0, 3.0), (2.0, 5.0)], 10.0, 0.1, 6.5, 10.0),     # 3@1 whole, then 3.5 of 5@2
    ([(1.0, 3.0), (3.0, 5.0)], 10.0, 0.1, 5.3, 9.9),      # 7/3 = 2.33 -> floored to 2.3
    ([(1.0, 3.0), (2.0, 5.0)], 100.0, 0.1, 8.0, 13.0),    # depth runs out: short
    ([(1.0, 3.0)], 0.3, 0.1, 0.3, 0.3),                   # 0.3/0.1 = 2.9999999999999996
    ([(4.0, 3.0)], 0.3, 0.1, 0.0, 0.0),                   # cannot buy one increment
    ([(1.0, 3.0), (2.0, 5.0)], 10.0, 1.0, 6.0, 9.0),      # 3.5 -> 3 whole units
])
def test_walk_buy_funds_when_hand_book_then_increment_floored_fill(asks, funds, inc, base,
                                                                    spent):
    r = walk_rig(asks=asks)
    got = B.walk_buy_funds(r.px, r.sz, 0, funds, inc)
    assert got == pytest.approx((base, spent), abs=1e-12)
    assert got[1] <= funds * (1 + 1e-12)


@pytest.mark.parametrize("size,notional", [(2.0, 4.0), (4.0, 7.0), (10.0, 11.0), (0.0, 0.0)])
def test_walk_sell_size_when_hand_book_then_notional_of_filled_part(size, notional):
    r = walk_rig(bids=[(2.0, 3.0), (1.0, 5.0)])
    assert B.walk_sell_size(r.px, r.sz, 0, size) == pytest.approx(notional)
    assert B.book_depth_sz(r.sz, 0, BID) == 8.0           # 10 > 8: the caller sees it is short


# ---- kernels == py_func on random input ------------------------------------------------

def random_ops(rng, n):
    """Snapshots and messages for two symbols: mostly in order, with gaps, stale and
    duplicate messages, sequence-only entries, deletions, and capped snapshots."""
    ops = []
    seq = [100, 100]
    for _ in range(n):
        sym = rng.randint(0, 1)
        s = seq[sym]
        if rng.random() < 0.08:
            lv = sorted({rng.randint(2, 40) / 2 for _ in range(rng.randint(0, 9))})
            bids = [(p, rng.randint(1, 9) * 0.5) for p in lv if p < 10][::-1]
            asks = [(p, rng.randint(1, 9) * 0.5) for p in lv if p >= 10]
            ops.append(("snap", sym, rng.randint(s - 5, s + 2), bids, asks,
                        rng.choice([0, 3, 5])))
            continue
        start = s + 1 + (rng.random() < 0.05) - 2 * (rng.random() < 0.1)
        end = max(start, s + 1) + rng.randint(0, 2) - 5 * (rng.random() < 0.05)
        ch = [(rng.randint(0, 1), rng.randint(2, 40) / 2 * (rng.random() > 0.05),
               rng.randint(0, 3) * 0.5, rng.randint(min(start, end), end))
              for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.03 and ch:      # insane: a change outside the message's range
            ch[0] = ch[0][:3] + (end + 1,)
        if rng.random() < 0.02:             # insane: an absurd sequenceEnd (J = 50 here)
            end = start + 51
        ops.append(("msg", sym, start, end, ch))
        if start <= end:
            seq[sym] = max(s, min(end, s + 20))
    return ops


def run_ops(ops, jit):
    r = Rig(nsym=2, depth=5, pend_cap=24, refill_min=3, jump_max=50)
    codes = []
    for op in ops:
        if op[0] == "snap":
            _, sym, seq, bids, asks, limit = op
            codes.append(r.snap(sym, seq, bids, asks, limit,
                                kernel=None if jit else B.book_sync_snapshot.py_func))
        else:
            _, sym, start, end, ch = op
            codes.append(r.msg(sym, start, end, ch, ts_ms=end,
                               kernel=None if jit else B.book_apply_l2.py_func))
    return codes, r


def test_book_kernels_when_random_operations_then_equal_py_func():
    rng = random.Random(5)
    for _ in range(40):
        ops = random_ops(rng, 150)
        ca, a = run_ops(ops, True)
        cb, b = run_ops(ops, False)
        assert ca == cb
        assert np.array_equal(a.state, b.state)
        assert np.array_equal(a.px, b.px, equal_nan=True) and np.array_equal(a.sz, b.sz)
        assert np.array_equal(a.pend[:a.pctl[0]["count"]], b.pend[:b.pctl[0]["count"]])


def test_book_kernels_when_random_operations_then_sides_sorted_and_codes_all_seen():
    rng = random.Random(6)
    seen = set()
    for _ in range(40):
        codes, r = run_ops(random_ops(rng, 150), True)
        seen.update(codes)
        for sym in range(2):
            for side in (BID, ASK):
                lv = r.levels(sym, side)
                keys = [-p if side == BID else p for p, _ in lv]
                assert keys == sorted(set(keys)) and all(s > 0 for _, s in lv)
                hz = r.state[sym]["hz_bid_px" if side == BID else "hz_ask_px"]
                assert all(k < (-hz if side == BID else hz) for k in keys)
                n = len(lv)
                assert (r.sz[sym, side, n:] == 0).all()
    assert {B.L2_APPLIED, B.L2_STALE, B.L2_GAP, B.L2_BUFFERED, B.L2_NEED_REFILL,
            B.L2_REJECTED, B.SNAP_TOO_OLD}.issubset(seen)


def test_walk_kernels_when_random_books_then_equal_py_func():
    rng = np.random.default_rng(9)
    for _ in range(300):
        r = Rig(depth=6)
        na, nb = rng.integers(0, 7, 2)
        asks = [(float(p), float(s)) for p, s in zip(np.sort(rng.choice(np.arange(100, 200),
                na, replace=False)) / 10, rng.integers(1, 50, na) / 10)]
        bids = [(float(p), float(s)) for p, s in zip(-np.sort(-rng.choice(np.arange(1, 100),
                nb, replace=False)) / 10, rng.integers(1, 50, nb) / 10)]
        r.snap(0, 1, bids, asks)
        funds, inc, size = float(rng.uniform(0, 80)), float(rng.choice([0.1, 0.01, 1.0])), \
            float(rng.uniform(0, 20))
        assert B.walk_buy_funds(r.px, r.sz, 0, funds, inc) == \
            B.walk_buy_funds.py_func(r.px, r.sz, 0, funds, inc)
        assert B.walk_sell_size(r.px, r.sz, 0, size) == \
            B.walk_sell_size.py_func(r.px, r.sz, 0, size)


# ---- the real 2021 stream against a reference book ---------------------------------------

class RefBook:
    """Independent pure-Python book over Decimal strings (docs/kucoin.md 3.8 rules, no cap)."""

    def __init__(self, data):
        self.seq = int(data["sequence"])
        self.side = {BID: {Decimal(p): Decimal(s) for p, s in data["bids"]},
                     ASK: {Decimal(p): Decimal(s) for p, s in data["asks"]}}

    def apply(self, d):
        if d["sequenceEnd"] <= self.seq:
            return "stale"
        assert d["sequenceStart"] <= self.seq + 1, "gap in the recorded stream"
        for key, side in (("asks", ASK), ("bids", BID)):
            for p, s, q in d["changes"][key]:
                p, s = Decimal(p), Decimal(s)
                if int(q) <= self.seq or p == 0:
                    continue
                if s == 0:
                    self.side[side].pop(p, None)
                else:
                    self.side[side][p] = s
        self.seq = d["sequenceEnd"]
        return "applied"

    def levels(self, side):
        return [(float(p), float(self.side[side][p]))
                for p in sorted(self.side[side], reverse=(side == BID))]

    def as_rest(self):
        return {"sequence": str(self.seq), "time": 0,
                "bids": [[str(p), str(s)] for p, s in sorted(self.side[BID].items(),
                                                              reverse=True)],
                "asks": [[str(p), str(s)] for p, s in sorted(self.side[ASK].items())]}


def load_recorded():
    recs = [json.loads(x) for x in (DATA / "ws-public-2021-04-25.jsonl").read_text().splitlines()]
    snaps = [json.loads(x) for x in
             (DATA / "orderbook-level2-snapshots-2021-04-25.jsonl").read_text().splitlines()]
    l2 = [(r["recv_ts"], r["msg"]) for r in recs
          if r["direction"] == "recv" and r["msg"].get("subject") == "trade.l2update"]
    return l2, snaps


@pytest.fixture(scope="module")
def recorded():
    return load_recorded()


def assert_book_equals_reference(st, px, sz, sym, ref):
    b = st[sym]
    assert b["status"] == B.BOOK_SYNCED and b["seq"] == ref.seq
    for side, key, hz in ((BID, "n_bid", -b["hz_bid_px"]), (ASK, "n_ask", b["hz_ask_px"])):
        sign = -1 if side == BID else 1
        want = [(p, s) for p, s in ref.levels(side) if sign * p < hz]   # strictly better
        got = [(px[sym, side, i], sz[sym, side, i]) for i in range(b[key])]
        assert got == want, (sym, side)


def replay_recorded(l2, snaps, depth, refill_min, seps, drop=None, dup=None, refill_delay=3):
    """Feed the recorded stream frame by frame through book_on_frame, delivering each REST
    snapshot at its recorded receive time and serving refill snapshots from the reference."""
    syms = [s["url"].split("symbol=")[1] for s in snaps]
    ids = {s.encode(): i for i, s in enumerate(syms)}
    st, px, sz = B.alloc_books(len(syms), depth)
    pend, pctl = B.alloc_pending(4096)
    ch, hdr = W.alloc_changes(256), W.alloc_l2hdr()
    refs, seen, codes = {}, {i: [] for i in range(len(syms))}, []
    queued = {}    # sym -> [frames left before delivery, rest data]
    si = 0

    def deliver(sym, data, limit=0):
        seq, ts, spx, ssz, n = B.snapshot_arrays(data, depth + 1)
        return B.book_sync_snapshot(st, px, sz, pend, pctl, sym, seq, ts, 0, spx, ssz,
                                    n[BID], n[ASK], limit)

    for k, (ts, m) in enumerate(l2):
        while si < len(snaps) and snaps[si]["recv_ts"] <= ts:
            data = snaps[si]["response"]["data"]
            assert deliver(si, data) == B.SNAP_SYNCED
            refs[si] = RefBook(data)
            for d in seen[si]:
                refs[si].apply(d)
            si += 1
        frame = json.dumps(m, separators=seps).encode()
        sym = W.frame_symbol_id(frame, ids)
        assert sym >= 0
        code = None
        for _ in range(0 if k == drop else 2 if k == dup else 1):   # the exchange sent it
            code = B.book_on_frame(np.frombuffer(frame, np.uint8), sym, k, ch, hdr, st, px, sz,
                                   pend, pctl, refill_min)
            codes.append((k, sym, code))
        seen[sym].append(m["data"])
        if sym in refs:
            refs[sym].apply(m["data"])
        if code == B.L2_NEED_REFILL and sym not in queued:
            queued[sym] = [refill_delay, refs[sym].as_rest()]
        if sym in queued:
            queued[sym][0] -= 1
            if queued[sym][0] < 0:
                assert deliver(sym, queued.pop(sym)[1]) == B.SNAP_SYNCED
        if code == B.L2_GAP and sym in refs:
            queued[sym] = [refill_delay, refs[sym].as_rest()]
    return st, px, sz, refs, codes


@pytest.mark.parametrize("depth,refill_min,seps", [(64, 24, (",", ":")), (16, 8, None)],
                         ids=["depth64-compact", "depth16-refill-dumps"])
def test_recorded_stream_when_synced_then_every_book_equals_reference(recorded, depth,
                                                                      refill_min, seps):
    l2, snaps = recorded
    st, px, sz, refs, codes = replay_recorded(l2, snaps, depth, refill_min, seps)
    assert len(refs) == 9 and len(codes) == len(l2)
    kinds = {c for _, _, c in codes}
    assert B.L2_GAP not in kinds and B.L2_BUFFER_FULL not in kinds and min(kinds) >= 0
    # the real stream never trips the sequence sanity rules
    assert B.L2_REJECTED not in kinds and B.L2_DIVERGED not in kinds
    assert st["n_seq_bad"].sum() == 0 and st["n_diverged"].sum() == 0
    for sym, ref in refs.items():
        assert_book_equals_reference(st, px, sz, sym, ref)
        assert st[sym]["n_bid"] > 0 and st[sym]["n_ask"] > 0
        assert not B.book_crossed(px, sz, sym)
    assert (st["n_buffered"] > 0).all()                 # every book went through buffering
    assert st["n_applied"].sum() > 3000
    if depth == 16:
        assert st["n_refill"].sum() >= 2 and st["n_beyond"].sum() > 0  # thinning was exercised
        assert (st["n_snap"] >= 1).all() and st["n_snap"].sum() > 9


def test_recorded_stream_when_message_dropped_then_gap_resync_and_books_equal_again(recorded):
    l2, snaps = recorded
    bch = [k for k, (_, m) in enumerate(l2) if m["topic"].endswith("BCHSV-USDT")]
    drop = bch[1500]
    st, px, sz, refs, codes = replay_recorded(l2, snaps, 64, 24, None, drop=drop)
    after = [c for k, s, c in codes if s == 0 and k > drop]
    assert after[0] == B.L2_GAP and st[0]["n_gap"] == 1
    assert B.L2_BUFFERED in after[1:4]                   # RESYNCING until the snapshot lands
    for sym, ref in refs.items():
        assert_book_equals_reference(st, px, sz, sym, ref)


def test_recorded_stream_when_frame_duplicated_then_stale_and_books_equal(recorded):
    l2, snaps = recorded
    dup = [k for k, (_, m) in enumerate(l2) if m["topic"].endswith("SNX-BTC")][400]
    st, px, sz, refs, codes = replay_recorded(l2, snaps, 64, 24, None, dup=dup)
    assert [c for k, _, c in codes if k == dup] == [B.L2_APPLIED, B.L2_STALE]
    for sym, ref in refs.items():
        assert_book_equals_reference(st, px, sz, sym, ref)


def test_kernels_when_jit_disabled_then_same_books_as_jit():
    script = (
        "import sys, hashlib; sys.path[:0] = [%r, %r]\n"
        "import test_books as T, books as B\n"
        "l2, snaps = T.load_recorded()\n"
        "st, px, sz, refs, codes = T.replay_recorded(l2[:1200], snaps, 16, 8, None)\n"
        "print(hashlib.sha1(st.tobytes() + px.tobytes() + sz.tobytes()).hexdigest(),"
        " B.book_on_frame.__class__.__name__)\n" % (str(ROOT), str(Path(__file__).parent)))
    out = {}
    for mode in ("0", "1"):
        env = dict(os.environ, NUMBA_DISABLE_JIT=mode)
        res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=600, cwd=ROOT)
        assert res.returncode == 0, res.stderr[-2000:]
        out[mode] = res.stdout.split()
    assert out["1"][1] == "function" and out["0"][1] != "function"   # really without JIT
    assert out["0"][0] == out["1"][0]


def test_best_bid_reader_when_books_random_then_equals_kernel_and_zero_when_empty():
    rng = np.random.default_rng(5)
    state, px, sz = B.alloc_books(7, 4)
    px[:] = rng.uniform(1, 100, px.shape)
    sz[:] = rng.uniform(0.5, 3, sz.shape)
    sz[3, W.SIDE_BID, 0] = 0.0          # empty bid side
    sz[4, W.SIDE_ASK, 0] = 0.0          # empty ask side: the bid still reads
    bid = B.BestBid(px, sz)
    for sym in range(7):
        expect = B.best_bid(px, sz, sym)
        assert bid(sym) == (0.0 if np.isnan(expect) else expect)
    assert bid(3) == 0.0 and bid(4) == px[4, W.SIDE_BID, 0]
    with pytest.raises(ValueError):
        B.BestBid(px, sz[:, :, :2])
