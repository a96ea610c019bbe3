"""Tests for slots.py: isolation (triangle, symbol, primary quote), acquire / release, the
kill-switch cancel flag, the single-writer check, clientOid routing, kernels vs .py_func,
and a hot thread handing signals to executor threads through rings.

Run: python -m pytest -q tests/test_slots.py
"""
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rings
import slots
from slots import (SLOT_NONE, SLOT_OK, SLOT_REFUSED, acquire, alloc_inflight,
                   cancel_requested, clear_cancel_all, find_free_slot, is_busy, is_in_flight,
                   release, request_cancel_all, try_acquire, undo_acquire)

# A busy triangle: id 5, symbols 10, 11, 12, primary quote currency 0 (say USDT).
BUSY = dict(tri=5, sym0=10, sym1=11, sym2=12, primary=0)


def _table_with_busy_slot(nslots=3):
    table = alloc_inflight(nslots)
    assert try_acquire(table, np.uint64(99), 5, 10, 11, 12, 0) == 0
    return table


def test_alloc_inflight_when_created_then_all_free_and_rows_128_bytes():
    table = alloc_inflight(4)
    assert slots.INFLIGHT_DTYPE.itemsize == 128 and table.ctypes.data % 64 == 0
    assert not any(is_busy(table, s) for s in range(4))
    assert (table["tri"] == -1).all() and (table["cancel"] == 0).all()
    with pytest.raises(ValueError, match="0"):
        alloc_inflight(0)


def test_find_free_slot_when_table_empty_then_first_slot():
    assert find_free_slot(alloc_inflight(3), 5, 10, 11, 12, 0) == 0


def test_find_free_slot_when_busy_slot_has_same_triangle_then_none():
    table = _table_with_busy_slot()
    assert find_free_slot(table, 5, 20, 21, 22, 1) == SLOT_NONE


@pytest.mark.parametrize("shared_pos", [0, 1, 2])
@pytest.mark.parametrize("busy_sym", [10, 11, 12])
def test_find_free_slot_when_any_symbol_shared_then_none(shared_pos, busy_sym):
    table = _table_with_busy_slot()
    syms = [20, 21, 22]
    syms[shared_pos] = busy_sym
    assert find_free_slot(table, 6, *syms, 1) == SLOT_NONE


def test_find_free_slot_when_same_primary_quote_then_none():
    table = _table_with_busy_slot()
    assert find_free_slot(table, 6, 20, 21, 22, 0) == SLOT_NONE


def test_find_free_slot_when_disjoint_then_next_free_slot():
    table = _table_with_busy_slot()
    assert find_free_slot(table, 6, 20, 21, 22, 1) == 1


def test_find_free_slot_when_all_slots_busy_then_none():
    table = _table_with_busy_slot(nslots=2)
    assert try_acquire(table, np.uint64(100), 6, 20, 21, 22, 1) == 1
    assert find_free_slot(table, 7, 30, 31, 32, 2) == SLOT_NONE


def test_acquire_when_slot_busy_then_refused_and_row_unchanged():
    table = _table_with_busy_slot()
    assert acquire(table, 0, np.uint64(7), 6, 20, 21, 22, 1) == SLOT_REFUSED
    assert (table[0]["corr"], table[0]["tri"], table[0]["acquired_seq"]) == (99, 5, 1)


def test_acquire_when_free_then_row_written_and_busy():
    table = alloc_inflight(2)
    assert acquire(table, 1, np.uint64(2**64 - 1), 5, 10, 11, 12, 0) == SLOT_OK
    r = table[1]
    assert (int(r["corr"]), r["tri"], r["sym0"], r["sym1"], r["sym2"], r["primary"]) == (
        2**64 - 1, 5, 10, 11, 12, 0)
    assert r["acquire_ns"] > 0 and is_busy(table, 1) and not is_busy(table, 0)


def test_release_when_busy_then_slot_free_and_reusable_by_conflicting_triangle():
    table = _table_with_busy_slot()
    assert release(table, 0) == SLOT_OK
    assert not is_busy(table, 0)
    assert table[0]["released_seq"] == table[0]["acquired_seq"] == 1
    assert table[0]["release_ns"] >= table[0]["acquire_ns"]
    assert try_acquire(table, np.uint64(100), 5, 10, 11, 12, 0) == 0   # same triangle again
    assert table[0]["acquired_seq"] == 2


def test_release_when_not_busy_then_refused_and_nothing_changes():
    table = _table_with_busy_slot()
    assert release(table, 1) == SLOT_REFUSED
    assert release(table, 0) == SLOT_OK and release(table, 0) == SLOT_REFUSED
    assert table[0]["released_seq"] == 1


def test_undo_acquire_when_push_failed_then_slot_free_again():
    table = _table_with_busy_slot()
    assert undo_acquire(table, 0) == SLOT_OK
    assert not is_busy(table, 0) and table[0]["acquired_seq"] == 0
    assert undo_acquire(table, 0) == SLOT_REFUSED


def test_is_in_flight_when_routing_fill_then_only_busy_slot_with_same_corr():
    table = _table_with_busy_slot()
    assert is_in_flight(table, 0, np.uint64(99))
    assert not is_in_flight(table, 0, np.uint64(98))      # another signal's order
    assert not is_in_flight(table, 1, np.uint64(99))      # slot not busy
    assert not is_in_flight(table, 7, np.uint64(99))      # slot id out of range
    assert not is_in_flight(table, -1, np.uint64(99))
    release(table, 0)
    assert not is_in_flight(table, 0, np.uint64(99))      # late event after the report


def test_request_cancel_all_when_busy_then_executor_sees_flag_and_no_new_slot():
    table = _table_with_busy_slot()
    assert request_cancel_all(table) == 1                 # one triangle was in flight
    seen = []
    t = threading.Thread(target=lambda: seen.append(cancel_requested(table, 0)), daemon=True)
    t.start()
    t.join()
    assert seen == [True]
    assert find_free_slot(table, 6, 20, 21, 22, 1) == SLOT_NONE
    assert acquire(table, 1, np.uint64(5), 6, 20, 21, 22, 1) == SLOT_REFUSED
    assert clear_cancel_all(table) == 0
    assert not cancel_requested(table, 0)
    assert find_free_slot(table, 6, 20, 21, 22, 1) == 1


# --- single-writer check ------------------------------------------------------------------

def _call_in_thread(fn, *args):
    out = []

    def body():
        try:
            out.append(fn(*args))
        except AssertionError as e:
            out.append(e)
    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    return out[0]


def test_register_owners_when_wrong_thread_writes_then_assertion_error():
    table = alloc_inflight(2)
    me = threading.get_ident()
    for s in range(2):
        slots.register_owners(table, s, hot_tid=me, exec_tid=me, main_tid=me)
    r = _call_in_thread(acquire, table, 0, np.uint64(1), 5, 10, 11, 12, 0)
    assert isinstance(r, AssertionError) and "hot-thread" in str(r)
    assert not is_busy(table, 0)
    assert acquire(table, 0, np.uint64(1), 5, 10, 11, 12, 0) == SLOT_OK   # owner may
    r = _call_in_thread(release, table, 0)
    assert isinstance(r, AssertionError) and "executor" in str(r) and is_busy(table, 0)
    r = _call_in_thread(request_cancel_all, table)
    assert isinstance(r, AssertionError) and "main-thread" in str(r)
    assert release(table, 0) == SLOT_OK


def test_register_owners_when_zero_then_any_thread_may_write():
    table = alloc_inflight(1)
    assert _call_in_thread(acquire, table, 0, np.uint64(1), 5, 10, 11, 12, 0) == SLOT_OK
    assert _call_in_thread(release, table, 0) == SLOT_OK


# --- kernels vs .py_func ------------------------------------------------------------------

def _random_slot_ops(kernels, seed):
    find, acq, rel, undo, busy, cancel_all, clear_all, in_flight = kernels
    rng = np.random.default_rng(seed)
    table = alloc_inflight(3)
    log = []
    for k in range(400):
        tri, primary = int(rng.integers(0, 6)), int(rng.integers(0, 3))
        syms = [int(x) for x in rng.choice(8, 3, replace=False)]
        slot = int(rng.integers(0, 3))
        op = int(rng.integers(0, 20))
        if op < 8:
            log.append(find(table, tri, *syms, primary))
        elif op < 14:
            s = find(table, tri, *syms, primary)
            if s >= 0:
                log.append(acq(table, s, np.uint64(k), tri, *syms, primary))
        elif op < 17:
            log.append(rel(table, slot))
        elif op == 17:
            log.append(undo(table, slot))
        elif op == 18:
            log.append((busy(table, slot), in_flight(table, slot, np.uint64(k - 1))))
        else:
            log.append(cancel_all(table) if rng.random() < 0.3 else clear_all(table))
    table["acquire_ns"] = 0   # clock readings differ between the runs
    table["release_ns"] = 0
    return [int(x) if not isinstance(x, tuple) else x for x in log], table.tobytes()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_slot_kernels_when_random_ops_then_jit_matches_py_func(seed):
    jit = (find_free_slot, acquire, release, undo_acquire, is_busy, request_cancel_all,
           clear_cancel_all, is_in_flight)
    log_j, table_j = _random_slot_ops(jit, seed)
    log_p, table_p = _random_slot_ops(tuple(k.py_func for k in jit), seed)
    assert log_j == log_p and table_j == table_p
    assert SLOT_NONE in log_j and SLOT_OK in log_j     # conflicts and grants both exercised


# --- hot thread -> executors --------------------------------------------------------------

def _disjoint(table):
    busy = [table[s] for s in range(len(table)) if is_busy(table, s)]
    for i, a in enumerate(busy):
        for b in busy[i + 1:]:
            if a["tri"] == b["tri"] or a["primary"] == b["primary"]:
                return False
            if {a["sym0"], a["sym1"], a["sym2"]} & {b["sym0"], b["sym1"], b["sym2"]}:
                return False
    return True


def test_hot_thread_when_handing_signals_to_executors_then_isolated_and_each_run_once():
    nslots, n_signals = 3, 3000
    table = alloc_inflight(nslots)
    rings_ = [rings.alloc_ring(rings.SIGNAL_DTYPE, 4) for _ in range(nslots)]
    fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(nslots)]
    stop = threading.Event()
    ran = [[] for _ in range(nslots)]          # (corr, row corr seen) per executor
    rng = np.random.default_rng(7)
    # 12 triangles over 9 symbols and 3 primary quotes: plenty of conflicts.
    tris = [(t, *rng.choice(9, 3, replace=False), t % 3) for t in range(12)]
    violations = []

    def executor(k):
        buf, ctrl = rings_[k]
        sig = np.zeros(1, rings.SIGNAL_DTYPE)
        while not stop.is_set():
            if not rings.ring_pop(buf, ctrl, sig, 0):
                rings.wait(fds[k], 0.05)
                continue
            ran[k].append((int(sig[0]["corr"]), int(table[k]["corr"])))
            release(table, k)

    def hot():
        sig = np.zeros(1, rings.SIGNAL_DTYPE)
        corr = 0
        while corr < n_signals:
            tri, s0, s1, s2, primary = (int(x) for x in tris[int(rng.integers(0, 12))])
            slot = try_acquire(table, np.uint64(corr), tri, s0, s1, s2, primary)
            if slot < 0:
                continue
            if not _disjoint(table):
                violations.append(corr)
            sig[0]["corr"], sig[0]["tri"] = corr, tri
            if not rings.ring_push(*rings_[slot], sig, 0):   # a free slot's ring is empty
                violations.append(-corr - 1)
                undo_acquire(table, slot)
                continue
            rings.wake(fds[slot])
            corr += 1

    execs = [threading.Thread(target=executor, args=(k,), daemon=True) for k in range(nslots)]
    hot_t = threading.Thread(target=hot, daemon=True)
    try:
        for t in execs + [hot_t]:
            t.start()
        hot_t.join(60)
        deadline = time.monotonic() + 30
        while any(is_busy(table, s) for s in range(nslots)) and time.monotonic() < deadline:
            time.sleep(0.001)           # let the executors finish the last signals
        stop.set()
        for t in execs:
            t.join(10)
    finally:
        for fd in fds:
            os.close(fd)
    assert violations == []
    done = sorted(c for per in ran for c, _ in per)
    assert done == list(range(n_signals))                         # each signal ran once
    assert all(c == row for per in ran for c, row in per)          # row written before publish
    assert sum(len(per) for per in ran) == sum(int(table[s]["released_seq"]) for s in range(3))
    assert sum(1 for per in ran if per) >= 2                       # really concurrent slots


DISABLED_JIT_SCRIPT = r"""
import numpy as np
import slots
assert not hasattr(slots.try_acquire, "py_func"), "kernels should be plain functions"
t = slots.alloc_inflight(2)
assert slots.try_acquire(t, np.uint64(1), 5, 10, 11, 12, 0) == 0
assert slots.find_free_slot(t, 6, 20, 21, 12, 1) == -1
assert slots.try_acquire(t, np.uint64(2), 6, 20, 21, 22, 1) == 1
assert slots.request_cancel_all(t) == 2 and slots.cancel_requested(t, 1)
assert slots.release(t, 0) == 1 and not slots.is_busy(t, 0) and slots.is_in_flight(t, 1, 2)
print("OK")
"""


def test_slots_when_numba_jit_disabled_then_kernels_run_as_python():
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-c", DISABLED_JIT_SCRIPT], cwd=root, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"
