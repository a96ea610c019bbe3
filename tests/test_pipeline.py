"""Tests of the fused per-frame kernels (pipeline.py) and of the hot thread's frame dispatch
(hot.HotLoop._on_frame) on garbage: nothing a venue sends may stop the hot thread.

Set-up: a hand-built universe of three real KuCoin symbols (BTC-USDT, ETH-USDT, ETH-BTC from
data/symbols-2024-09.json), primary USDT only, so exactly two triangles exist:
  A = USDT -> BTC -> ETH -> USDT (buy BTC-USDT, buy ETH-BTC, sell ETH-USDT)
  B = USDT -> ETH -> BTC -> USDT (buy ETH-USDT, sell ETH-BTC, sell BTC-USDT)
The arrays come from run.allocate (the production layout and argument order of
sh.pipe_args / sh.snap_args). Books are loaded through pipeline.on_snapshot at fair prices
(no triangle has an edge); a level2 frame that puts an ETH-BTC ask at 0.049 (fair 0.05)
makes A worth about 200 bps after the 0.1 % fees, which is what the signal tests use.

Run: `python -m pytest -q tests/test_pipeline.py`.
"""
from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import books  # noqa: E402
import hot  # noqa: E402
import maint  # noqa: E402
import pipeline  # noqa: E402
import rings  # noqa: E402
import run  # noqa: E402
import slots  # noqa: E402
import triangles  # noqa: E402
import universe  # noqa: E402
from config import parse_config  # noqa: E402

C = pipeline.C
NAMES = ("BTC-USDT", "ETH-BTC", "ETH-USDT")
SEQ0 = {"BTC-USDT": 1000, "ETH-BTC": 2000, "ETH-USDT": 3000}
# Fair books, [price, size] strings, best first. ETH-BTC fair 0.05 = 3000 / 60000.
FAIR = {
    "BTC-USDT": ([["60000", "1"], ["59999.9", "2"], ["59999", "3"]],
                 [["60000.1", "1"], ["60000.2", "2"], ["60001", "3"]]),
    "ETH-USDT": ([["3000", "10"], ["2999.99", "10"], ["2999.5", "10"]],
                 [["3000.01", "10"], ["3000.02", "10"], ["3000.5", "10"]]),
    # a wide spread, so that one cheap ask below fair does not cross the book
    "ETH-BTC": ([["0.048", "10"], ["0.0479", "10"], ["0.0478", "10"]],
                [["0.052", "10"], ["0.0521", "10"], ["0.0522", "10"]]),
}
INI = """[engine]
primary_quotes = USDT
max_start = USDT=100
min_profit_bps = 5
max_book_age_ms = 5000
slots = {slots}
retrigger_ms = 0
"""


# ---- set-up helpers ---------------------------------------------------------------------

def make_shared(nslots=2, balance="1000"):
    syms = [d for d in json.loads((ROOT / "data" / "symbols-2024-09.json").read_text())
            if d["symbol"] in NAMES]
    cfg = parse_config(INI.format(slots=nslots), "test.ini", environ={})
    uni = universe.Universe(syms, cfg.primary_quotes, {}, 0.001)
    assert uni.symbols == sorted(NAMES) and uni.ntri == 2
    sh = run.allocate(cfg, uni, {"USDT": balance}, 7, "http://127.0.0.1:1")
    return sh


def sid(sh, name):
    return sh.universe.sym_index[name]


def tri_id(sh, first_leg):
    """Triangle whose leg 0 is `first_leg` ('buy BTC-USDT' -> A, 'buy ETH-USDT' -> B)."""
    for t in range(sh.universe.ntri):
        if sh.universe.tri_label(t).split("(")[1].startswith(first_leg):
            return t
    raise AssertionError(first_leg)


def snap_record(sh, name, seq, bids, asks):
    rec = np.zeros(1, sh.snap_ring[0].dtype)
    r = rec[0]
    r["sym"] = sid(sh, name)
    r["status"] = maint.SNAP_OK
    r["seq"] = seq
    r["ts_ms"] = 1_700_000_000_000
    r["n_bid"], r["n_ask"] = len(bids), len(asks)
    for side, levels in ((books.SIDE_BID, bids), (books.SIDE_ASK, asks)):
        for k, (p, s) in enumerate(levels):
            r["px"][side, k] = float(p)
            r["sz"][side, k] = float(s)
    return rec


def load_fair(sh):
    for name in NAMES:
        bids, asks = FAIR[name]
        assert pipeline.on_snapshot(snap_record(sh, name, SEQ0[name], bids, asks),
                                    *sh.snap_args) == 0
        assert sh.book_state[sid(sh, name)]["status"] == books.BOOK_SYNCED
    assert sh.counters[C["snapshots"]] == len(NAMES)
    sh.counters[:] = 0      # tests count from here
    sh.evc[:] = 0


def frame(name, start, end, asks=(), bids=(), t_ms=1_700_000_000_500):
    """A /market/level2 frame as KuCoin sends it (docs/kucoin.md 3.6), as the uint8 array
    hot.py hands to the kernel. asks/bids: [price, size, sequence] strings."""
    text = json.dumps({"type": "message", "topic": f"/market/level2:{name}",
                       "subject": "trade.l2update",
                       "data": {"changes": {"asks": [list(map(str, c)) for c in asks],
                                            "bids": [list(map(str, c)) for c in bids]},
                                "sequenceEnd": end, "sequenceStart": start, "symbol": name,
                                "time": t_ms}}, separators=(",", ":"))
    return np.frombuffer(text.encode(), np.uint8)


def on_l2(sh, name, fr, recv_ns=None):
    return pipeline.on_level2(fr, sid(sh, name), time.monotonic_ns() if recv_ns is None else recv_ns,
                              *sh.pipe_args)


class Seq:
    """Next consecutive sequence per symbol, as the venue numbers them."""

    def __init__(self):
        self.seq = dict(SEQ0)

    def __call__(self, name, n=1):
        s = self.seq[name] + 1
        self.seq[name] += n
        return s, self.seq[name]


def plant_cheap_eth_btc_ask(sh, seq, px="0.049"):
    """ETH-BTC ask at `px` (fair 0.05): triangle A gains ~2 % before fees."""
    s, e = seq("ETH-BTC")
    return on_l2(sh, "ETH-BTC", frame("ETH-BTC", s, e, asks=[[px, "5", e]]))


def book_levels(sh, name, side):
    i = sid(sh, name)
    n = sh.book_state[i]["n_bid" if side == books.SIDE_BID else "n_ask"]
    return [(float(sh.book_px[i, side, k]), float(sh.book_sz[i, side, k])) for k in range(n)]


@pytest.fixture
def sh():
    s = make_shared()
    load_fair(s)
    return s


def test_allocate_when_search_keys_set_then_engine_and_opportunity_params_carry_them():
    syms = [d for d in json.loads((ROOT / "data" / "symbols-2024-09.json").read_text())
            if d["symbol"] in NAMES]
    cfg = parse_config(INI.format(slots=1) + "search_tol_bps = 0.5\nmax_scan = 7\n",
                       "test.ini", environ={})
    uni = universe.Universe(syms, cfg.primary_quotes, {}, 0.001)
    s = run.allocate(cfg, uni, {"USDT": "1000"}, 7, "http://127.0.0.1:1")
    for prm in (s.params, s.opp_params):      # an opportunity is sized as the engine sizes
        assert prm[0]["search_tol_bps"] == 0.5 and prm[0]["max_scan"] == 7


# ---- pipeline.on_level2: book outcomes --------------------------------------------------

def test_on_level2_when_fair_update_then_applied_evaluated_and_no_signal(sh):
    seq = Seq()
    s, e = seq("BTC-USDT")
    out = on_l2(sh, "BTC-USDT", frame("BTC-USDT", s, e, bids=[["60000", "0.5", e]]))
    assert out == pipeline.NO_SIGNAL
    assert sh.counters[C["applied"]] == 1 and sh.counters[C["evals"]] == 1
    assert sh.counters[C["candidates"]] == 0 and sh.pstate[pipeline.P_NEED_SNAP] == 0
    assert book_levels(sh, "BTC-USDT", books.SIDE_BID)[0] == (60000.0, 0.5)
    assert sh.book_state[sid(sh, "BTC-USDT")]["seq"] == e
    assert not any(slots.is_busy(sh.slots, k) for k in range(len(sh.slots)))


@pytest.mark.parametrize("cut", [1, 10, 40, 120])
def test_on_level2_when_frame_truncated_then_bad_frame_counted_and_book_untouched(sh, cut):
    seq = Seq()
    s, e = seq("ETH-BTC")
    full = frame("ETH-BTC", s, e, asks=[["0.049", "5", e]])
    before = (sh.book_px.copy(), sh.book_sz.copy(), sh.book_state.copy())
    out = on_l2(sh, "ETH-BTC", full[:len(full) - cut].copy())
    assert out == pipeline.BAD_FRAME
    assert sh.counters[C["bad_frames"]] == 1
    assert sh.counters[C["applied"]] == 0 and sh.counters[C["evals"]] == 0
    assert sh.pstate[pipeline.P_NEED_SNAP] == 0
    assert np.array_equal(before[0], sh.book_px, equal_nan=True)
    assert np.array_equal(before[1], sh.book_sz) and np.array_equal(before[2], sh.book_state)


@pytest.mark.parametrize("text", [b"", b"{", b"garbage", b'{"data":{"changes":{}}}',
                                  b'{"data":{"sequenceStart":1,"sequenceEnd":2}}',
                                  b'{"data":{"changes":{"asks":[["1","x","3"]]},'
                                  b'"sequenceStart":2001,"sequenceEnd":2001}}'])
def test_on_level2_when_frame_malformed_then_bad_frame_and_next_good_frame_applies(sh, text):
    out = on_l2(sh, "ETH-BTC", np.frombuffer(text, np.uint8))
    assert out == pipeline.BAD_FRAME and sh.counters[C["bad_frames"]] == 1
    assert sh.book_state[sid(sh, "ETH-BTC")]["seq"] == SEQ0["ETH-BTC"]
    s, e = Seq()("ETH-BTC")
    assert on_l2(sh, "ETH-BTC", frame("ETH-BTC", s, e, bids=[["0.048", "3", e]])) == pipeline.NO_SIGNAL
    assert sh.counters[C["applied"]] == 1


def test_on_level2_when_frame_is_stale_then_counted_and_book_untouched(sh):
    end = SEQ0["ETH-USDT"]
    before = book_levels(sh, "ETH-USDT", books.SIDE_BID)
    out = on_l2(sh, "ETH-USDT", frame("ETH-USDT", end - 1, end, bids=[["3000", "99", end]]))
    assert out == pipeline.NO_SIGNAL
    assert sh.counters[C["stale"]] == 1 and sh.counters[C["applied"]] == 0
    assert sh.counters[C["evals"]] == 0 and sh.pstate[pipeline.P_NEED_SNAP] == 0
    assert book_levels(sh, "ETH-USDT", books.SIDE_BID) == before


def test_on_level2_when_gap_then_need_snapshot_resyncing_and_no_signal_until_snapshot(sh):
    i = sid(sh, "ETH-BTC")
    base = SEQ0["ETH-BTC"]
    # sequence base+1 is lost; base+2 carries the mispricing but must not be traded
    out = on_l2(sh, "ETH-BTC", frame("ETH-BTC", base + 2, base + 2, asks=[["0.049", "5", base + 2]]))
    assert out == pipeline.NO_SIGNAL
    assert sh.pstate[pipeline.P_NEED_SNAP] == 1
    assert sh.counters[C["gaps"]] == 1 and sh.counters[C["evals"]] == 0
    assert sh.book_state[i]["status"] == books.BOOK_RESYNCING
    # further frames are buffered and still ask for the snapshot
    out = on_l2(sh, "ETH-BTC", frame("ETH-BTC", base + 3, base + 3, bids=[["0.048", "7", base + 3]]))
    assert out == pipeline.NO_SIGNAL and sh.pstate[pipeline.P_NEED_SNAP] == 1
    assert sh.counters[C["buffered"]] == 1
    # a snapshot older than the buffered run cannot be used: ask again
    bids, asks = FAIR["ETH-BTC"]
    old = snap_record(sh, "ETH-BTC", base, bids, asks)
    assert pipeline.on_snapshot(old, *sh.snap_args) == pipeline.NEED_SNAPSHOT
    assert sh.counters[C["snapshot_too_old"]] == 1
    assert sh.book_state[i]["status"] == books.BOOK_RESYNCING
    # a snapshot at base+2 (it includes the lost change): loaded, then base+3 replayed
    snap = snap_record(sh, "ETH-BTC", base + 2, bids, [["0.049", "5"]] + asks)
    assert pipeline.on_snapshot(snap, *sh.snap_args) == 0
    assert sh.counters[C["snapshots"]] == 1
    assert sh.book_state[i]["status"] == books.BOOK_SYNCED
    assert sh.book_state[i]["seq"] == base + 3
    assert book_levels(sh, "ETH-BTC", books.SIDE_BID)[0] == (0.048, 7.0)
    assert book_levels(sh, "ETH-BTC", books.SIDE_ASK)[0] == (0.049, 5.0)
    # the next frame connects and is traded
    out = on_l2(sh, "ETH-BTC", frame("ETH-BTC", base + 4, base + 4, asks=[["0.049", "4", base + 4]]))
    assert out >= 0 and sh.pstate[pipeline.P_NEED_SNAP] == 0


# ---- pipeline.on_level2: signals ---------------------------------------------------------

def test_on_level2_when_mispriced_then_signal_staged_with_fields_and_slot_acquired(sh):
    seq = Seq()
    corr0 = int(sh.pstate[pipeline.P_CORR_NEXT])
    recv = time.monotonic_ns()
    s, e = seq("ETH-BTC")
    slot = on_l2(sh, "ETH-BTC", frame("ETH-BTC", s, e, asks=[["0.049", "5", e]]), recv)
    assert slot == 0
    t_a = tri_id(sh, "buy BTC-USDT")
    sig = sh.sig_stage[0]
    assert int(sig["corr"]) == corr0 and sh.pstate[pipeline.P_CORR_NEXT] == corr0 + 1
    assert corr0 >> 24 == 7                  # run_id 7 in the high bits (unique across runs)
    assert sig["tri"] == t_a
    # prices: the best levels of each leg's book at signal time
    assert (sig["bid0"], sig["ask0"]) == (60000.0, 60000.1)
    assert (sig["bid1"], sig["ask1"]) == (0.048, 0.049)
    assert (sig["bid2"], sig["ask2"]) == (3000.0, 3000.01)
    assert (sig["ask_sz0"], sig["ask_sz1"], sig["bid_sz2"]) == (1.0, 5.0, 10.0)
    # volume capped by max_start USDT=100; profit at most the top-of-book rate after fees
    # (buy legs: funds = quote / (1 + fee), fee on top; sell leg: proceeds * (1 - fee))
    top = 3000.0 / 60000.1 / 0.049 / 1.001 / 1.001 * 0.999
    assert 0 < sig["start_vol"] <= 100.0 and sig["start_vol"] > 99.0
    assert 5.0 < sig["pred_bps"] <= (top - 1) * 1e4 + 1e-6
    assert sig["pred_bps"] > (top - 1) * 1e4 - 5.0       # floors cost < 5 bps at this size
    assert abs(sig["profit"] - (sig["exp_out"] - sig["start_vol"])) < 1e-9
    assert abs(sig["pred_bps"] - sig["profit"] / sig["start_vol"] * 1e4) < 1e-6
    assert sig["book_ts_ms"] == 1_700_000_000_000         # oldest of the three books (snapshots)
    assert sig["recv_ns"] == recv <= sig["parsed_ns"] <= sig["book_ns"] <= sig["eval_ns"]
    assert sig["push_ns"] == 0                            # hot.py stamps it when publishing
    # the slot row carries the signal, for isolation and fill routing
    row = sh.slots[0]
    assert slots.is_busy(sh.slots, 0) and not slots.is_busy(sh.slots, 1)
    assert int(row["corr"]) == corr0 and row["tri"] == t_a
    assert sorted((row["sym0"], row["sym1"], row["sym2"])) == [0, 1, 2]
    assert row["primary"] == sh.universe.ccy_index["USDT"]
    assert sh.tri_last_ns[t_a] == sig["eval_ns"]
    assert sh.counters[C["candidates"]] >= 1 and sh.reeval.sum() == 0


def test_on_level2_when_candidate_isolated_out_then_reeval_flag_and_on_reeval_stages_after_release(sh):
    seq = Seq()
    assert plant_cheap_eth_btc_ask(sh, seq) == 0
    corr_first = int(sh.sig_stage[0]["corr"])
    # slot 1 is free, but the only candidates share symbols and the primary with slot 0
    out = plant_cheap_eth_btc_ask(sh, seq, "0.0489")
    assert out == pipeline.NO_SIGNAL
    assert sh.counters[C["no_slot"]] >= 1
    assert sh.reeval[sid(sh, "ETH-BTC")] == 1
    assert not slots.is_busy(sh.slots, 1) and int(sh.sig_stage[0]["corr"]) == corr_first
    # nothing is freed yet: on_reeval refuses again and keeps the flag
    assert pipeline.on_reeval(time.monotonic_ns(), *sh.pipe_args) == pipeline.NO_SIGNAL
    assert sh.reeval[sid(sh, "ETH-BTC")] == 1
    # the executor releases slot 0 -> the hot thread re-evaluates -> staged
    assert slots.release(sh.slots, 0) == slots.SLOT_OK
    now = time.monotonic_ns()
    slot = pipeline.on_reeval(now, *sh.pipe_args)
    assert slot in (0, 1)
    sig = sh.sig_stage[0]
    assert int(sig["corr"]) == corr_first + 1 and sig["ask1"] == 0.0489
    assert sig["recv_ns"] == now                   # no frame triggered it
    assert sh.reeval.sum() == 0 and sh.counters[C["reevals"]] >= 2
    assert slots.is_busy(sh.slots, slot)


def test_on_level2_when_halted_then_books_and_evaluation_go_on_but_nothing_staged(sh):
    seq = Seq()
    sh.control[0] = 1
    assert plant_cheap_eth_btc_ask(sh, seq) == pipeline.NO_SIGNAL
    assert sh.counters[C["applied"]] == 1 and sh.counters[C["candidates"]] >= 1
    assert book_levels(sh, "ETH-BTC", books.SIDE_ASK)[0] == (0.049, 5.0)
    assert sh.sig_stage[0]["corr"] == 0 and sh.pstate[pipeline.P_CORR_NEXT] == 7 << 24
    assert not slots.is_busy(sh.slots, 0) and not slots.is_busy(sh.slots, 1)
    sh.reeval[:] = 1
    assert pipeline.on_reeval(time.monotonic_ns(), *sh.pipe_args) == pipeline.NO_SIGNAL
    assert sh.sig_stage[0]["corr"] == 0 and sh.reeval.all()   # kept for after the halt
    sh.control[0] = 0
    assert plant_cheap_eth_btc_ask(sh, seq, "0.0489") == 0


def test_on_level2_when_within_retrigger_interval_then_triangle_skipped_then_signalled_after(sh):
    seq = Seq()
    sh.control[1] = 3_600 * 10 ** 9              # an hour: never elapses in this test
    assert plant_cheap_eth_btc_ask(sh, seq) == 0
    assert slots.release(sh.slots, 0) == slots.SLOT_OK
    assert plant_cheap_eth_btc_ask(sh, seq, "0.0489") == pipeline.NO_SIGNAL
    assert sh.counters[C["retrigger_skips"]] >= 1
    assert sh.counters[C["no_slot"]] == 0 and sh.reeval.sum() == 0  # skipped, not refused
    # an interval that has elapsed: the same triangle signals again
    sh.control[1] = 1
    assert plant_cheap_eth_btc_ask(sh, seq, "0.0488") == 0
    assert sh.sig_stage[0]["ask1"] == 0.0488


def test_on_level2_when_a_book_is_older_than_max_age_then_no_signal(sh):
    seq = Seq()
    sh.book_state[sid(sh, "ETH-USDT")]["recv_ns"] = time.monotonic_ns() - 6 * 10 ** 9
    assert plant_cheap_eth_btc_ask(sh, seq) == pipeline.NO_SIGNAL
    assert sh.evc[triangles.EVC_STALE] >= 1 and sh.counters[C["candidates"]] == 0
    assert not slots.is_busy(sh.slots, 0)


def test_on_level2_when_jit_and_py_func_replay_same_stream_then_same_books_counters_signals():
    """The fused kernel under the JIT and as plain Python (its .py_func; STYLE: every kernel
    runs under NUMBA_DISABLE_JIT=1) agree on a random stream with gaps, stale and bad frames,
    mispricings and releases. Time stamps (ns) differ between runs and are not compared."""
    runs = []
    plain = getattr(pipeline.on_level2, "py_func", pipeline.on_level2)  # NUMBA_DISABLE_JIT=1
    for fn in (pipeline.on_level2, plain):
        sh = make_shared()
        load_fair(sh)
        seq = Seq()
        staged = []
        r = np.random.default_rng(5)
        for step in range(300):
            name = NAMES[int(r.integers(3))]
            bids, asks = FAIR[name]
            k = int(r.integers(20))
            if k == 0:                                  # lost message -> gap
                seq(name)
            s, e = seq(name, int(r.integers(1, 3)))
            if k == 1:
                s, e = s - 5, e - 5                     # stale or straddling
            lv = bids if r.random() < 0.5 else asks
            p, _ = lv[int(r.integers(len(lv)))]
            side = "bids" if lv is bids else "asks"
            chg = [[p, str(int(r.integers(0, 4))), e]]
            if name == "ETH-BTC" and r.random() < 0.2:
                side, chg = "asks", [["0.049", "5", e]]
            fr = frame(name, s, e, **{side: chg})
            if k == 2:
                fr = fr[:-7].copy()
            out = fn(fr, sid(sh, name), 10 ** 18, *sh.pipe_args)
            if out >= 0:
                st = sh.sig_stage[0]
                staged.append((step, out, int(st["corr"]), int(st["tri"]), float(st["start_vol"]),
                               float(st["pred_bps"])))
                slots.release(sh.slots, out)
            if sh.pstate[pipeline.P_NEED_SNAP] and r.random() < 0.5:
                i = sid(sh, name)
                cur_b = [[str(x), str(y)] for x, y in book_levels(sh, name, 0)] or bids
                cur_a = [[str(x), str(y)] for x, y in book_levels(sh, name, 1)] or asks
                pipeline.on_snapshot(snap_record(sh, name, seq.seq[name], cur_b, cur_a), *sh.snap_args)
                assert sh.book_state[i]["status"] == books.BOOK_SYNCED
        st = sh.book_state.copy()
        st["recv_ns"] = 0
        runs.append((sh.book_px.copy(), sh.book_sz.copy(), st, sh.counters.copy(), staged,
                     sh.evc.copy()))
    (px1, sz1, st1, c1, s1, e1), (px2, sz2, st2, c2, s2, e2) = runs
    assert np.array_equal(px1, px2, equal_nan=True) and np.array_equal(sz1, sz2)
    assert np.array_equal(st1, st2) and np.array_equal(c1, c2) and np.array_equal(e1, e2)
    assert s1 == s2 and len(s1) >= 3
    assert c1[C["gaps"]] >= 1 and c1[C["bad_frames"]] >= 1 and c1[C["stale"]] >= 1


# ---- hot.HotLoop._on_frame on garbage -----------------------------------------------------

class StubMaint:
    def __init__(self):
        import queue
        self.link_results = queue.SimpleQueue()
        self.requested = []

    def request_link(self, kind, symbols):
        self.requested.append((kind, symbols))


@pytest.fixture
def hot_loop():
    sh = make_shared()
    load_fair(sh)
    lines = []
    cfg = types.SimpleNamespace(fire_from="executor")
    loop = hot.HotLoop(sh, StubMaint(), [], cfg, lines.append)
    link = types.SimpleNamespace(kind="public", connect_id="c-test", ping_id="p1", pending_acks={},
                                 symbols=list(sh.universe.symbols), alive=True, fd=-1,
                                 pong_deadline=0.0)
    yield loop, link, lines
    loop.ep.close()


GARBAGE = [
    b"not json at all",
    b"",
    b"\xff\xfe\x00garbage",
    b'{"type":"message"',                                       # truncated JSON
    b"[1,2,3]",                                                 # JSON of another type
    b'"a string"',
    b"12345",
    b"null",
    b'{"type":"mystery"}',                                      # unknown frame type
    b'{"type":"message","subject":"trade.ticker","data":{}}',   # unexpected subject
    b'{"type":"message","subject":"orderChange"}',              # no data
    b'{"type":"message","subject":"orderChange","data":[1,2]}',
    b'{"type":"message","subject":"orderChange","data":"x"}',
    b'{"type":"message","subject":"account.balance","data":{"currency":"USDT"}}',
    b'{"type":"message","subject":"account.balance","data":{"currency":"USDT","available":"abc"}}',
    b'{"type":"message","subject":"account.balance","data":[]}',
    b'{"type":"message","topic":"/market/level2:ETH-BTC","subject":"trade.l2update","data":{"chan',
    b'{"type":"message","subject":"trade.l2update","data":{}}',  # level2 without a topic
    b'{"type":["message"]}',
    # pysimdjson raises RuntimeError for these (BIGINT_ERROR, DEPTH_ERROR): they killed the
    # hot thread when only ValueError/KeyError/TypeError/AttributeError were caught
    b'{"type":"pong","id":123456789012345678901234567890}',
    b"[" * 1025 + b"]" * 1025,
    b'{"type":"message","subject":"orderChange","data":{"clientOid":"ta1s0l0","ts":1e999}}',
    b'{"type":"message","subject":"orderChange","data":{"clientOid":7}}',
    b'{"type":"message","subject":"orderChange","data":{"clientOid":"ta1s0l0","type":"match",'
    b'"matchPrice":"1","matchSize":"-5"}}',                    # ours, impossible size
    b'{"type":"message","subject":"orderChange","data":{"clientOid":"ta1s0l0","type":"match",'
    b'"ts":123456789012345678901234}}',                         # ours, ts beyond int64
    b'{"type":"message","subject":"account.balance","data":{"currency":"USDT","available":"NaN"}}',
    b'{"type":"message","subject":"account.balance","data":{"currency":"USDT","available":"-1"}}',
    b'{"type":"message","subject":"account.balance","data":{"currency":["USDT"],"available":"1"}}',
]
# Odd but harmless control frames: not bad frames, but they must not raise either.
ODD = [
    (b'{"type":"pong","id":[1]}', "msgs"),                       # not our ping: ignored
    (b'{"type":"ack","id":{"a":1}}', "msgs"),                     # not our request: ignored
    (b'{"type":"error","code":"x","data":[1]}', "ws_errors"),
    (b'{"type":"notice","data":{}}', "notices"),
    (b'{"type":"welcome","id":5}', "msgs"),
]


@pytest.mark.parametrize("data", GARBAGE)
def test_on_frame_when_garbage_then_counted_logged_and_loop_survives(hot_loop, data):
    loop, link, lines = hot_loop
    cnt = loop.counters
    before = cnt.copy()
    loop._on_frame(link, data, time.monotonic_ns())          # must not raise
    assert cnt[C["msgs"]] == before[C["msgs"]] + 1
    assert cnt[C["bad_frames"]] == before[C["bad_frames"]] + 1
    assert lines and "bad frame" in lines[-1]
    # the loop still works: the parser is reusable and a good level2 frame applies
    i = sid(loop.sh, "ETH-BTC")
    s = SEQ0["ETH-BTC"] + 1
    good = frame("ETH-BTC", s, s, bids=[["0.048", "2", s]]).tobytes()
    loop._on_frame(link, good, time.monotonic_ns())
    assert loop.sh.book_state[i]["seq"] == s and cnt[C["applied"]] == before[C["applied"]] + 1
    loop._on_frame(link, b'{"type":"message","subject":"account.balance",'
                         b'"data":{"currency":"USDT","available":"123.5"}}', time.monotonic_ns())
    assert loop.sh.balances[loop.sh.universe.ccy_index["USDT"]] == 123.5


@pytest.mark.parametrize("data,counter", ODD)
def test_on_frame_when_odd_control_frame_then_no_exception_and_not_a_bad_frame(hot_loop, data,
                                                                               counter):
    loop, link, lines = hot_loop
    loop._on_frame(link, data, time.monotonic_ns())
    assert loop.counters[C[counter]] == 1 and loop.counters[C["bad_frames"]] == 0
    assert link.alive


def test_on_frame_when_bad_level2_frame_then_counted_once(hot_loop):
    loop, link, lines = hot_loop
    s = SEQ0["ETH-BTC"] + 1
    data = frame("ETH-BTC", s, s, asks=[["0.049", "5", s]]).tobytes()[:-30]
    loop._on_frame(link, data, time.monotonic_ns())
    assert loop.counters[C["bad_frames"]] == 1
    assert loop.counters[C["l2_msgs"]] == 1 and "bad frame" in lines[-1]


def test_on_frame_when_level2_for_unknown_symbol_then_counted_and_no_book_touched(hot_loop):
    loop, link, lines = hot_loop
    before = loop.sh.book_state.copy()
    data = frame("DOGE-USDT", 5, 5, asks=[["0.1", "5", 5]]).tobytes()
    loop._on_frame(link, data, time.monotonic_ns())
    assert loop.counters[C["unknown_symbol"]] == 1
    assert loop.counters[C["l2_msgs"]] == 0 and loop.counters[C["bad_frames"]] == 0
    assert np.array_equal(before, loop.sh.book_state)


def test_on_frame_when_order_change_for_foreign_client_oid_then_unrouted_and_logged(hot_loop):
    loop, link, lines = hot_loop
    for coid in ("manual-order-1", "", "ta1s99l0", "taZZs0l0"):
        data = json.dumps({"type": "message", "topic": "/spotMarket/tradeOrdersV2",
                           "subject": "orderChange", "data": {
                               "clientOid": coid, "orderId": "6" * 24, "type": "match",
                               "symbol": "BTC-USDT", "matchPrice": "60000", "matchSize": "0.001",
                               "filledSize": "0.001", "remainSize": "0", "ts": 1}}).encode()
        loop._on_frame(link, data, time.monotonic_ns())
    assert loop.counters[C["fills_unrouted"]] == 4 and loop.counters[C["fills_routed"]] == 0
    assert loop.counters[C["private_msgs"]] == 4 and loop.counters[C["bad_frames"]] == 0
    assert sum("foreign clientOid" in x for x in lines) >= 3
    for buf, ctrl in loop.sh.fill_rings:
        assert rings.ring_count(buf, ctrl) == 0


def test_on_frame_when_order_change_for_our_slot_then_routed_to_its_fill_ring(hot_loop):
    loop, link, lines = hot_loop
    coid = rings.client_oid(0xABC, 1, 2)
    data = json.dumps({"type": "message", "subject": "orderChange", "data": {
        "clientOid": coid, "orderId": "6" * 24, "type": "match", "symbol": "BTC-USDT",
        "matchPrice": "60000", "matchSize": "0.001", "filledSize": "0.001", "remainSize": "0",
        "tradeId": "7" * 20, "ts": 1_700_000_000_000_000_000}}).encode()
    loop._on_frame(link, data, 123)
    assert loop.counters[C["fills_routed"]] == 1
    buf, ctrl = loop.sh.fill_rings[1]
    out = np.zeros(1, rings.FILL_DTYPE)
    assert rings.ring_pop(buf, ctrl, out, 0)
    assert int(out[0]["corr"]) == 0xABC and out[0]["leg"] == 2 and out[0]["match_sz"] == 0.001


def test_on_frame_when_balance_for_currency_outside_universe_then_counted_logged_ignored(hot_loop):
    loop, link, lines = hot_loop
    bal = loop.sh.balances.copy()
    for _ in range(3):
        loop._on_frame(link, b'{"type":"message","subject":"account.balance","data":'
                             b'{"currency":"DOGE","available":"5","hold":"0"}}', time.monotonic_ns())
    assert np.array_equal(bal, loop.sh.balances)
    assert loop.counters[C["balances_ignored"]] == 3 and loop.counters[C["balances"]] == 0
    assert sum("DOGE" in x for x in lines) == 1             # logged once per currency
    assert loop.counters[C["bad_frames"]] == 0


# -- branch and bound (pipeline.evaluate_best) against the exhaustive search ---------------

def hub_universe():
    """35 symbols among ten hub currencies, ~230 triangles (also used by profiles/profile_kernels.py)."""
    import json as _json
    from pathlib import Path as _P
    hubs = {"USDT", "USDC", "BTC", "ETH", "KCS", "TRX", "XRP", "LTC", "EOS", "ADA"}
    syms = [d for d in _json.load(open(_P(__file__).parent.parent / "data" / "symbols-2024-09.json"))
            if d["baseCurrency"] in hubs and d["quoteCurrency"] in hubs]
    return universe.Universe(syms, ["USDT", "USDC", "BTC", "ETH"])


def random_books(uni, rng, state, px, sz, mispricings):
    """Consistent cross rates, 10 levels a side; the `mispricings` symbols moved 0.2-2 %."""
    usd = {c: float(np.exp(rng.uniform(-3, 9))) for c in uni.currencies}
    usd["USDT"] = usd["USDC"] = 1.0
    for i, name in enumerate(uni.symbols):
        r = uni.symtab[i]
        mid = usd[uni.currencies[r["base"]]] / usd[uni.currencies[r["quote"]]]
        if i in mispricings:
            mid *= 1 + rng.choice([-1, 1]) * rng.uniform(0.002, 0.02)
        st = state[i]
        st["status"], st["n_bid"], st["n_ask"] = books.BOOK_SYNCED, 10, 10
        st["recv_ns"], st["ts_ms"] = 0, 1
        for side, sgn in ((books.SIDE_BID, -1), (books.SIDE_ASK, 1)):
            for k in range(10):
                px[i, side, k] = mid * (1 + sgn * (0.0005 + 0.0004 * k))
                sz[i, side, k] = float(rng.uniform(0.5, 5.0)) * 100 / usd[uni.currencies[r["base"]]]


def test_evaluate_best_when_random_hub_books_then_same_best_candidate_as_exhaustive_search():
    uni = hub_universe()
    assert uni.ntri > 50
    rng = np.random.default_rng(5)
    n = len(uni.symbols)
    state, px, sz = books.alloc_books(n, 16)
    balances = uni.ccy_array({c: 1e9 for c in uni.currencies})
    max_start = uni.ccy_array({"USDT": 1000, "USDC": 1000, "BTC": 0.02, "ETH": 0.3})
    params = triangles.alloc_params(min_profit_bps=1.0, max_book_age_ms=1e12, max_levels=10,
                                    flags=triangles.EVAL_IGNORE_AGE)
    table = slots.alloc_inflight(2)
    tri_last = np.full(uni.ntri, -(1 << 62), np.int64)
    counters = pipeline.alloc_counters()
    reeval = np.zeros(n, np.int8)
    compared = signalled = 0
    for trial in range(60):
        random_books(uni, rng, state, px, sz, set(rng.choice(n, size=3, replace=False).tolist()))
        for sym in rng.choice(n, size=6, replace=False):
            full = triangles.alloc_candidates(uni.ntri + 1)
            nf = triangles.evaluate_symbol(sym, 0, state, px, sz, uni.symtab, uni.tris,
                                           uni.sym_tri_start, uni.sym_tri_list, balances,
                                           max_start, params, full, triangles.alloc_eval_counters())
            bb = triangles.alloc_candidates(uni.ntri + 1)
            nb = pipeline.evaluate_best(sym, 0, state, px, sz, uni.symtab, uni.tris,
                                        uni.sym_tri_start, uni.sym_tri_list, balances, max_start,
                                        params, bb, triangles.alloc_eval_counters(), table,
                                        tri_last, 0, counters, reeval)
            compared += 1
            assert (nf > 0) == (nb > 0)
            if nf:
                signalled += 1
                best_full = max(full[:nf]["bps"])
                best_bb = max(bb[:nb]["bps"])
                assert best_bb == best_full              # same optimum, bit for bit
                assert nb <= nf                          # and never more searches than all
    assert signalled >= 10 and compared == 360
    assert counters[pipeline.C["bound_skips"]] > 0      # the bound did cut work
