"""Tests for rings.py: SPSC ring kernels, counters, memory ordering under two real threads,
the eventfd wake path, the jitted clocks, FILL records from real orderChange events, and the
NUMBA_DISABLE_JIT=1 mode.

Run: python -m pytest -q tests/test_rings.py
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import simdjson
from numba import njit

import rings
from rings import (CTRL_EMPTY, CTRL_FULL, CTRL_POPPED, CTRL_PUSHED, FILL_DTYPE, SIGNAL_DTYPE,
                   alloc_ring, load_acquire, ring_claim, ring_consume, ring_count, ring_peek,
                   ring_pop, ring_pop_many, ring_publish, ring_push, store_release)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "ws-samples-2025-12_2026-01.jsonl"

# Test record: a sequence number and a checksum of it, so loss, reordering, duplication and
# torn records (seq from one write, check from another) are all visible to the consumer.
SEQ_DTYPE = np.dtype([("seq", "i8"), ("check", "u8")])
N_THREADED = 3_000_000


@njit(nogil=True)
def _checksum(s):
    return np.uint64(s) * np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(0x5DEECE66D)


def _records(seqs):
    src = np.zeros(len(seqs), SEQ_DTYPE)
    src["seq"] = seqs
    return src


def _eventfd():
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


# --- allocation ---------------------------------------------------------------------------

@pytest.mark.parametrize("capacity", [0, 3, 6, -4, 1000, 2.0, True, "4"])
def test_alloc_ring_when_capacity_not_power_of_two_then_value_error_names_it(capacity):
    with pytest.raises(ValueError, match=repr(capacity).replace(".", r"\.")):
        alloc_ring(SEQ_DTYPE, capacity)


def test_alloc_ring_when_capacity_4_then_aligned_and_control_cells_64_bytes_apart():
    buf, ctrl = alloc_ring(SIGNAL_DTYPE, 4)
    assert buf.shape == (4,) and buf.dtype == SIGNAL_DTYPE
    assert buf.ctypes.data % 64 == 0 and ctrl.ctypes.data % 64 == 0
    assert ctrl.dtype == np.int64 and not ctrl.any()
    cells = [rings.CTRL_CURSOR, rings.CTRL_CACHED_CONSUMER, CTRL_PUSHED, CTRL_FULL,
             rings.CTRL_CONSUMER, rings.CTRL_CACHED_CURSOR, CTRL_POPPED, CTRL_EMPTY,
             rings.CTRL_PRODUCER_TID]
    offsets = sorted(c * 8 for c in cells)
    assert all(b - a >= 64 for a, b in zip(offsets, offsets[1:]))
    assert rings.CTRL_CONSUMER_TID < len(ctrl)


def test_record_dtypes_when_built_then_have_contract_fields():
    for f in ("corr", "tri", "start_vol", "exp_out", "profit", "pred_bps", "bid0", "ask0",
              "bid1", "ask1", "bid2", "ask2", "book_ts_ms", "recv_ns", "parsed_ns", "book_ns",
              "eval_ns", "push_ns"):
        assert f in SIGNAL_DTYPE.names
    assert SIGNAL_DTYPE["corr"] == np.uint64 and SIGNAL_DTYPE["tri"] == np.int32
    assert FILL_DTYPE["order_id"] == np.dtype("S24") and FILL_DTYPE["leg"] == np.int8
    assert (rings.FILL_RECEIVED, rings.FILL_MATCH, rings.FILL_FILLED, rings.FILL_CANCELED,
            rings.FILL_UPDATE, rings.FILL_OPEN) == (0, 1, 2, 3, 4, 5)


# --- single-thread behaviour --------------------------------------------------------------

def test_push_when_ring_full_then_returns_0_and_counts_full():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    src = _records(np.arange(6))
    assert [ring_push(buf, ctrl, src, i) for i in range(6)] == [1, 1, 1, 1, 0, 0]
    assert ctrl[CTRL_FULL] == 2 and ctrl[CTRL_PUSHED] == 4
    assert ring_count(buf, ctrl) == 4
    assert ring_claim(buf, ctrl) == rings.RING_FULL and ctrl[CTRL_FULL] == 3


def test_pop_when_ring_empty_then_returns_0_and_counts_empty():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    dst = np.zeros(4, SEQ_DTYPE)
    assert ring_pop(buf, ctrl, dst, 0) == 0
    assert ring_pop_many(buf, ctrl, dst) == 0
    assert ring_peek(buf, ctrl) == rings.RING_EMPTY
    assert ctrl[CTRL_EMPTY] == 3 and ctrl[CTRL_POPPED] == 0
    assert ring_consume(buf, ctrl) == 0


def test_push_pop_when_wrapping_many_times_then_first_in_first_out():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    src = _records(np.arange(50))
    dst = np.zeros(50, SEQ_DTYPE)
    out = 0
    for i in range(50):
        assert ring_push(buf, ctrl, src, i) == 1
        if i % 3 == 2:                      # drain in bursts so the ring wraps part-full
            while ring_pop(buf, ctrl, dst, out):
                out += 1
    while ring_pop(buf, ctrl, dst, out):
        out += 1
    assert out == 50 and list(dst["seq"]) == list(range(50))
    assert rings.counters(ctrl) == {"pushed": 50, "popped": 50, "depth": 0, "full": 0,
                                    "empty": int(ctrl[CTRL_EMPTY])}


def test_pop_many_when_dst_larger_than_available_then_returns_available_oldest_first():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    src = _records([10, 11, 12, 13, 14])
    dst = np.zeros(8, SEQ_DTYPE)
    for i in range(3):
        ring_push(buf, ctrl, src, i)
    assert ring_pop_many(buf, ctrl, dst) == 3
    assert list(dst["seq"][:3]) == [10, 11, 12]
    ring_push(buf, ctrl, src, 3)
    ring_push(buf, ctrl, src, 4)
    assert ring_pop_many(buf, ctrl, dst[:1]) == 1 and dst["seq"][0] == 13
    assert ring_pop_many(buf, ctrl, dst) == 1 and dst["seq"][0] == 14
    assert ctrl[CTRL_POPPED] == 5


def test_claim_publish_when_fields_written_in_place_then_consumer_reads_them():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    idx = ring_claim(buf, ctrl)
    assert ring_claim(buf, ctrl) == idx          # claiming again without publish: same cell
    buf[idx]["seq"] = 42
    assert ring_count(buf, ctrl) == 0            # not visible before publish
    assert ring_publish(buf, ctrl) == 1
    dst = np.zeros(1, SEQ_DTYPE)
    assert ring_pop(buf, ctrl, dst, 0) == 1 and dst["seq"][0] == 42


def test_publish_when_full_without_claim_then_returns_0_and_publishes_nothing():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    src = _records(np.arange(4))
    for i in range(4):
        ring_push(buf, ctrl, src, i)
    assert ring_claim(buf, ctrl) == -1
    assert ring_publish(buf, ctrl) == 0 and ctrl[CTRL_PUSHED] == 4


def test_peek_consume_when_record_read_in_place_then_cell_returned_to_producer():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    src = _records(np.arange(5))
    for i in range(4):
        ring_push(buf, ctrl, src, i)
    idx = ring_peek(buf, ctrl)
    assert buf[idx]["seq"] == 0 and ring_peek(buf, ctrl) == idx   # peek does not consume
    assert ring_push(buf, ctrl, src, 4) == 0                        # still full
    assert ring_consume(buf, ctrl) == 1
    assert ring_push(buf, ctrl, src, 4) == 1
    assert buf[ring_peek(buf, ctrl)]["seq"] == 1


@njit(nogil=True)
def _emit_signal(buf, ctrl, corr, recv_ns):
    """What the hot thread's fused kernel does: build the signal in the ring, then publish."""
    idx = ring_claim(buf, ctrl)
    if idx < 0:
        return 0
    r = buf[idx]
    r["corr"] = corr
    r["tri"] = 7
    r["pred_bps"] = 12.5
    r["recv_ns"] = recv_ns
    r["push_ns"] = rings.monotonic_ns()
    return ring_publish(buf, ctrl)


def test_claim_publish_when_called_from_a_kernel_then_signal_built_in_place():
    buf, ctrl = alloc_ring(SIGNAL_DTYPE, 4)
    t0 = time.monotonic_ns()
    assert _emit_signal(buf, ctrl, np.uint64(2**64 - 2), t0) == 1
    dst = np.zeros(1, SIGNAL_DTYPE)
    assert ring_pop(buf, ctrl, dst, 0) == 1
    s = dst[0]
    assert (int(s["corr"]), s["tri"], s["pred_bps"]) == (2**64 - 2, 7, 12.5)
    assert t0 <= s["push_ns"] <= time.monotonic_ns()


# --- memory ordering ----------------------------------------------------------------------

def test_ring_kernels_when_compiled_then_cursor_handoff_uses_acquire_release_atomics():
    # cache=True dispatchers refuse to show IR loaded from disk: compile uncached copies.
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    dst = np.zeros(1, SEQ_DTYPE)
    pub = njit(ring_publish.py_func)
    pub(buf, ctrl)
    pop = njit(ring_pop.py_func)
    pop(buf, ctrl, dst, 0)
    pub_ir = pub.inspect_llvm(pub.signatures[0])
    pop_ir = pop.inspect_llvm(pop.signatures[0])
    assert "store atomic i64" in pub_ir and " release" in pub_ir
    assert "load atomic i64" in pop_ir and " acquire" in pop_ir
    assert "store atomic i64" in pop_ir       # consumer sequence published with release


@njit(nogil=True)
def _spin_until_set(flag, limit):
    n = 0
    while load_acquire(flag, 0) == 0 and n < limit:
        n += 1
    return n < limit


def test_load_acquire_when_kernel_spins_then_sees_other_threads_store():
    # docs/design.md 9: a loop over a plain load can be hoisted and never see the store. With the
    # atomic load the kernel sees it; a hoisted load would run out the (~seconds) limit.
    flag = np.zeros(8, np.int64)
    _spin_until_set(flag, 1)
    result = []
    t = threading.Thread(target=lambda: result.append(_spin_until_set(flag, 10**10)),
                         daemon=True)
    t.start()
    time.sleep(0.01)
    store_release(flag, 0, 1)
    t.join(60)
    assert result == [True]


@njit(nogil=True)
def _produce(buf, ctrl, state, patience):
    """Publish state[0] .. state[1]-1 in place; return after `patience` full claims in a
    row, so that the caller can yield the CPU (on one free core the consumer cannot run
    while this spins). Each retry is a ring op with an acquire load, never a stale value."""
    misses = 0
    while state[0] < state[1] and misses < patience:
        idx = ring_claim(buf, ctrl)
        if idx < 0:
            misses += 1
            continue
        misses = 0
        s = state[0]
        buf[idx]["seq"] = s
        buf[idx]["check"] = _checksum(s)
        ring_publish(buf, ctrl)
        state[0] = s + 1


@njit(nogil=True)
def _consume(buf, ctrl, scratch, state, patience):
    """Pop in batches of up to 4 and check each record; state = [next expected seq, errors,
    total]. Returns after `patience` empty pops in a row."""
    misses = 0
    while state[0] < state[2] and misses < patience:
        n = ring_pop_many(buf, ctrl, scratch)
        if n == 0:
            misses += 1
            continue
        misses = 0
        for k in range(n):
            s = state[0]
            if scratch[k]["seq"] != s or scratch[k]["check"] != _checksum(s):
                state[1] += 1
            state[0] = scratch[k]["seq"] + 1


def test_two_threads_when_millions_of_records_through_capacity_4_then_no_loss_or_reorder():
    # Both sides run in nogil kernels at the same time, so the cursor hand-off is really
    # concurrent (Python-driven polling would be serialised by the GIL). ~0.5 s on two free
    # cores, ~7 s when both threads share one core.
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    scratch = np.zeros(4, SEQ_DTYPE)
    _produce(buf, ctrl, np.zeros(2, np.int64), 1)             # compile before the threads
    _consume(buf, ctrl, scratch, np.zeros(3, np.int64), 1)
    prod = np.array([0, N_THREADED], np.int64)
    cons = np.array([0, 0, N_THREADED], np.int64)
    deadline = time.monotonic() + 120                         # a hang guard, not a timing

    def producer():
        while prod[0] < N_THREADED and time.monotonic() < deadline:
            _produce(buf, ctrl, prod, 100)
            os.sched_yield()

    def consumer():
        while cons[0] < N_THREADED and time.monotonic() < deadline:
            _consume(buf, ctrl, scratch, cons, 100)
            os.sched_yield()

    threads = [threading.Thread(target=f, daemon=True) for f in (consumer, producer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cons[1] == 0                               # every record: right seq, intact
    assert cons[0] == N_THREADED and prod[0] == N_THREADED
    c = rings.counters(ctrl)
    assert c["pushed"] == c["popped"] == N_THREADED and c["depth"] == 0
    assert ring_count(buf, ctrl) == 0


def test_two_threads_when_python_polls_and_waits_on_eventfd_then_no_loss():
    # The executor's way: Python pushes, wakes; the consumer pops in batches, waits when
    # empty. Fewer records: each hand-off here is a GIL round trip.
    n_total = 20_000
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    data_fd, space_fd = _eventfd(), _eventfd()
    src = _records(np.arange(n_total))
    got = np.zeros(n_total, SEQ_DTYPE)

    def producer():
        i = 0
        while i < n_total:
            if ring_push(buf, ctrl, src, i):
                i += 1
                rings.wake(data_fd)
            else:
                rings.wait(space_fd, 1.0)

    def consumer():
        k = 0
        while k < n_total:
            n = ring_pop_many(buf, ctrl, got[k:k + 4])
            if n:
                k += n
                rings.wake(space_fd)
            else:
                rings.wait(data_fd, 1.0)

    try:
        threads = [threading.Thread(target=f, daemon=True) for f in (consumer, producer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert list(got["seq"]) == list(range(n_total))
        assert ctrl[CTRL_PUSHED] == ctrl[CTRL_POPPED] == n_total
    finally:
        os.close(data_fd)
        os.close(space_fd)


def test_set_ring_owners_when_other_thread_pushes_or_pops_then_assertion_error():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    src = _records([1])
    dst = np.zeros(1, SEQ_DTYPE)
    errors = []

    def wrong_thread():
        for fn, args in ((ring_push, (buf, ctrl, src, 0)), (ring_pop, (buf, ctrl, dst, 0))):
            try:
                fn(*args)
            except AssertionError as e:
                errors.append(str(e))

    me = threading.get_ident()
    rings.set_ring_owners(ctrl, me, me)
    t = threading.Thread(target=wrong_thread, daemon=True)
    t.start()
    t.join()
    assert len(errors) == 2 and all("SPSC" in e for e in errors)
    assert ctrl[CTRL_PUSHED] == 0                      # refused before touching the ring
    assert ring_push(buf, ctrl, src, 0) == 1 and ring_pop(buf, ctrl, dst, 0) == 1


# --- eventfd ------------------------------------------------------------------------------

def test_wait_when_other_thread_pushes_and_wakes_then_true_and_record_popped():
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    fd = _eventfd()
    dst = np.zeros(1, SEQ_DTYPE)
    result = []

    def waiter():
        woke = rings.wait(fd, 30.0)
        result.append((woke, ring_pop(buf, ctrl, dst, 0), int(dst["seq"][0])))

    try:
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        time.sleep(0.02)
        assert ring_push(buf, ctrl, _records([77]), 0) == 1
        rings.wake(fd)
        t.join(30)
        assert result == [(True, 1, 77)]
    finally:
        os.close(fd)


def test_wait_when_nobody_wakes_then_false_after_timeout():
    fd = _eventfd()
    try:
        t0 = time.monotonic()
        assert rings.wait(fd, 0.05) is False
        assert time.monotonic() - t0 >= 0.04
    finally:
        os.close(fd)


def test_drain_when_woken_twice_then_returns_2_and_then_0():
    fd = _eventfd()
    try:
        assert rings.drain(fd) == 0                   # nothing pending: no block, no error
        rings.wake(fd)
        rings.wake(fd)
        assert rings.drain(fd) == 2 and rings.drain(fd) == 0
    finally:
        os.close(fd)


def test_wake_when_several_before_wait_then_one_wait_drains_them():
    fd = _eventfd()
    try:
        for _ in range(3):
            rings.wake(fd)
        assert rings.wait(fd, 0.0) is True            # the counted wakes coalesce
        assert rings.wait(fd, 0.0) is False           # and were drained
    finally:
        os.close(fd)


# --- clocks -------------------------------------------------------------------------------

@njit(nogil=True)
def _clocks():
    return rings.monotonic_ns(), rings.thread_id()


def test_monotonic_ns_when_called_from_kernel_then_between_python_clock_reads():
    _clocks()
    for _ in range(100):
        before = time.monotonic_ns()
        k, _tid = _clocks()
        after = time.monotonic_ns()
        assert before <= k <= after


def test_thread_id_when_called_from_kernel_then_equals_threading_get_ident():
    seen = []
    t = threading.Thread(target=lambda: seen.append((_clocks()[1], threading.get_ident())))
    t.start()
    t.join()
    assert _clocks()[1] == threading.get_ident()
    assert seen[0][0] == seen[0][1]


# --- FILL records -------------------------------------------------------------------------

def _order_changes():
    """The capture's orderChange `data` objects as the hot thread sees them: simdjson Objects
    (one parser each: a parser's next parse invalidates its previous document)."""
    out = []
    with open(SAMPLES) as f:
        for line in f:
            msg = json.loads(line).get("msg", {})
            if msg.get("subject") == "orderChange":
                parser = simdjson.Parser()
                out.append((parser, parser.parse(json.dumps(msg["data"]).encode())))
    return out


def test_push_order_change_when_real_market_buy_events_then_fill_fields_exact():
    # tests/data capture: market buy funds 12 DASH-USDT, one match then `canceled`
    # (leftover funds below one baseIncrement; docs/kucoin.md 6.6).
    (_p1, match), (_p2, canceled) = _order_changes()[:2]
    buf, ctrl = alloc_ring(FILL_DTYPE, 4)
    assert rings.push_order_change(buf, ctrl, match, 0xABC, 0, 111) == 1
    assert rings.push_order_change(buf, ctrl, canceled, 0xABC, 0, 222) == 1
    dst = np.zeros(2, FILL_DTYPE)
    assert ring_pop_many(buf, ctrl, dst) == 2
    m, c = dst
    assert (m["corr"], m["leg"], m["kind"]) == (0xABC, 0, rings.FILL_MATCH)
    assert (m["match_px"], m["match_sz"], m["filled_sz"], m["remain_funds"]) == (
        80.99, 0.1481, 0.1481, 0.005381)
    assert np.isnan(m["remain_sz"])                    # absent on this event -> NaN
    assert m["ts_ns"] == 1768823076296000000 and m["recv_ns"] == 111
    assert m["order_id"] == b"696e1924b4b86900076f34dd" and m["trade_id"] == b"19259671366621184"
    assert c["kind"] == rings.FILL_CANCELED and c["remain_funds"] == 0.0
    assert np.isnan(c["match_px"]) and c["trade_id"] == b""


def test_push_fill_when_ring_full_then_returns_0_and_counts_full():
    buf, ctrl = alloc_ring(FILL_DTYPE, 1)
    args = (np.uint64(1), 0, rings.FILL_MATCH, 1.0, 2.0, 2.0, 0.0, 0.0, 5, 6, b"o", b"t")
    assert rings.push_fill(buf, ctrl, *args) == 1
    assert rings.push_fill(buf, ctrl, *args) == 0 and ctrl[CTRL_FULL] == 1


def test_fill_from_order_change_when_real_sell_then_record_written_at_index():
    # tests/data capture, leg 2 style: market sell by size on DASH-BTC, match then filled.
    changes = _order_changes()
    (_p, match), (_q, filled) = changes[2], changes[3]
    dst = np.zeros(3, FILL_DTYPE)
    assert rings.fill_from_order_change(dst, 1, match, 2**64 - 1, 2, 5) == 1
    assert rings.fill_from_order_change(dst, 2, filled, 2**64 - 1, 2, 6) == 1
    assert dst[0]["corr"] == 0 and dst[0]["order_id"] == b""      # untouched
    m, f = dst[1], dst[2]
    assert (int(m["corr"]), m["leg"], m["kind"]) == (2**64 - 1, 2, rings.FILL_MATCH)
    assert (m["match_px"], m["match_sz"], m["remain_sz"]) == (0.0008676, 0.1481, 0.0)
    assert np.isnan(m["remain_funds"])
    assert (f["kind"], f["filled_sz"], f["recv_ns"]) == (rings.FILL_FILLED, 0.1481, 6)
    assert f["order_id"] == m["order_id"] == b"696e19248ae5f90007130e26"


def test_fill_from_order_change_when_unknown_type_then_kind_unknown():
    dst = np.zeros(1, FILL_DTYPE)
    rings.fill_from_order_change(dst, 0, {"type": "stp", "orderId": "x"}, 1, 0, 0)
    assert dst[0]["kind"] == rings.FILL_UNKNOWN and np.isnan(dst[0]["filled_sz"])


# --- clientOid ----------------------------------------------------------------------------

@pytest.mark.parametrize("corr,slot,leg", [(0, 0, 0), (0xABC, 3, 1), (2**64 - 1, 127, 2)])
def test_client_oid_when_formatted_then_kucoin_safe_and_parses_back(corr, slot, leg):
    oid = rings.client_oid(corr, slot, leg)
    assert len(oid) <= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", oid)
    assert oid == f"ta{corr:x}s{slot}l{leg}"
    assert rings.parse_client_oid(oid) == (corr, slot, leg)


@pytest.mark.parametrize("oid", ["673ace3e-4e31-4d91-bd10-5cdbad2c22fa",  # real, foreign
                                 "", "ta", "tas1l2", "ta1s1l", "ta1sl2", "taxyzs1l2", "ta1s1",
                                 "ta1_0s1l2", "ta1s+1l2", "ta1s1l3", "tA1s1l2", "ta1s1l2x"])
def test_parse_client_oid_when_not_ours_then_none(oid):
    assert rings.parse_client_oid(oid) is None


# --- kernels vs .py_func ------------------------------------------------------------------

def _random_ops(kernels, seed):
    """Apply one random op sequence with the given kernel set; return everything observed."""
    claim, publish, push, pop, pop_many, peek, consume, count = kernels
    rng = np.random.default_rng(seed)
    buf, ctrl = alloc_ring(SEQ_DTYPE, 4)
    src = _records(np.arange(400))
    src["check"] = rng.integers(0, 2**63, 400).astype(np.uint64)
    dst = np.zeros(8, SEQ_DTYPE)
    log = []
    nxt = 0
    for op in rng.integers(0, 7, 300):
        if op == 0:
            log.append(push(buf, ctrl, src, nxt))
            nxt += 1
        elif op == 1:
            idx = claim(buf, ctrl)
            if idx >= 0:
                buf[idx] = src[nxt]
                nxt += 1
                log.append((idx, publish(buf, ctrl)))
            else:
                log.append(idx)
        elif op == 2:
            log.append(pop(buf, ctrl, dst, 0))
        elif op == 3:
            log.append(pop_many(buf, ctrl, dst[:int(rng.integers(1, 8))]))
        elif op == 4:
            log.append(peek(buf, ctrl))
        elif op == 5:
            log.append(consume(buf, ctrl))
        else:
            log.append(count(buf, ctrl))
        log.append(dst.tobytes())
    return log, ctrl.copy(), buf.tobytes()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ring_kernels_when_random_ops_then_jit_matches_py_func(seed):
    jit = (ring_claim, ring_publish, ring_push, ring_pop, ring_pop_many, ring_peek,
           ring_consume, ring_count)
    py = tuple(k.py_func for k in jit)
    log_j, ctrl_j, buf_j = _random_ops(jit, seed)
    log_p, ctrl_p, buf_p = _random_ops(py, seed)
    assert log_j == log_p
    assert np.array_equal(ctrl_j, ctrl_p) and buf_j == buf_p
    assert ctrl_j[CTRL_FULL] > 0 and ctrl_j[CTRL_EMPTY] > 0    # both outcomes exercised


# --- NUMBA_DISABLE_JIT=1 ------------------------------------------------------------------

DISABLED_JIT_SCRIPT = r"""
import threading, time
import numpy as np
import rings
assert not hasattr(rings.ring_push, "py_func"), "kernels should be plain functions"
buf, ctrl = rings.alloc_ring(rings.FILL_DTYPE, 2)
a = (np.uint64(9), 1, rings.FILL_MATCH, 1.5, 2.0, 2.0, 0.0, 0.0, 5, 6, b"oid", b"tid")
assert [rings.push_fill(buf, ctrl, *a) for _ in range(3)] == [1, 1, 0]
dst = np.zeros(4, rings.FILL_DTYPE)
assert rings.ring_pop_many(buf, ctrl, dst) == 2 and dst[1]["order_id"] == b"oid"
assert rings.ring_pop(buf, ctrl, dst, 0) == 0
idx = rings.ring_claim(buf, ctrl); buf[idx]["corr"] = 3; assert rings.ring_publish(buf, ctrl) == 1
assert rings.ring_peek(buf, ctrl) == idx and rings.ring_consume(buf, ctrl) == 1
assert rings.counters(ctrl) == {"pushed": 3, "popped": 3, "depth": 0, "full": 1, "empty": 1}
t0 = time.monotonic_ns(); k = rings.monotonic_ns(); assert t0 <= k <= time.monotonic_ns()
assert rings.thread_id() == threading.get_ident()
rings.fill_from_order_change(dst, 3, {"type": "filled", "filledSize": "0.5", "ts": 7}, 4, 2, 8)
assert (dst[3]["kind"], dst[3]["filled_sz"], dst[3]["ts_ns"], dst[3]["leg"]) == (2, 0.5, 7, 2)
print("OK")
"""


def test_rings_when_numba_jit_disabled_then_kernels_run_as_python():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", DISABLED_JIT_SCRIPT], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"


# --- record_struct: the fire path's struct view of a record --------------------------------

def test_record_struct_when_read_and_written_then_agrees_with_numpy_fields():
    rec = np.zeros(2, SIGNAL_DTYPE)
    rec[1]["corr"], rec[1]["tri"], rec[1]["start_vol"], rec[1]["bid0"] = 2**63 + 5, -7, 1.5, 3.25
    s = rings.record_struct(SIGNAL_DTYPE, ("corr", "tri", "start_vol", "bid0"))
    mv = rings.record_bytes(rec)
    assert s.unpack_from(mv, SIGNAL_DTYPE.itemsize) == (2**63 + 5, -7, 1.5, 3.25)
    s.pack_into(mv, 0, 9, 4, 0.25, 8.0)
    assert (int(rec[0]["corr"]), int(rec[0]["tri"]), float(rec[0]["start_vol"]), float(rec[0]["bid0"])) == (9, 4, 0.25, 8.0)
    assert rec[0]["ask0"] == 0.0 and rec[0]["exp_out"] == 0.0   # the padding between is skipped


def test_record_struct_when_subarray_field_then_one_value_per_element():
    dt = np.dtype([("a", "u1"), ("phase", "i4", (3,)), ("z", "f8")])
    rec = np.zeros(1, dt)
    rec[0]["phase"] = (1, -2, 3)
    assert rings.record_struct(dt, ("phase",)).unpack_from(rings.record_bytes(rec), 0) == (1, -2, 3)


def test_record_struct_when_names_out_of_offset_order_then_value_error():
    with pytest.raises(ValueError, match="tri"):
        rings.record_struct(SIGNAL_DTYPE, ("start_vol", "tri"))
