"""The in-flight table: one row per executor slot, the isolation check, acquire / release,
and the kill-switch cancel flag. (The clientOid format that routes fills to a slot,
`client_oid` / `parse_client_oid`, lives in rings.py with the FILL record.)

Owns: `INFLIGHT_DTYPE`, `alloc_inflight`, the slot kernels. Threads and the fields each
one writes (single writer per field; every other thread only reads):
- hot thread: acquired_seq, corr, tri, sym0, sym1, sym2, primary, acquire_ns, through
  `try_acquire` (or `find_free_slot` + `acquire`) and `undo_acquire` (fills are routed by the
  slot number in the clientOid; `is_in_flight` is a check the tests use);
- executor k: released_seq, release_ns of row k only, through `release`; it reads
  `cancel_requested` between legs;
- main thread: cancel, through `request_cancel_all` / `clear_cancel_all` (kill switch), and
  hot_tid / exec_tid / main_tid through `register_owners` before the threads start;
  `is_busy` for the status line.

A slot is busy while acquired_seq != released_seq. The hot thread increments acquired_seq
(release store) after writing the row; executor k sets released_seq = acquired_seq
(release store) when its triangle is reported. No locks: each field has one writer, and
the two sequences are read with acquire loads (rings.load_acquire), so the hot thread
never sees a slot free before the executor is done with everything it wrote.

Hand-off order on the hot thread: pipeline.on_level2 calls `try_acquire` and writes the
signal into the one-row staging array (sig_stage); hot.py fires leg 0 (fire_from = hot),
then copies the staged signal into the slot's ring (rings.ring_push_held) and wakes the
executor. Acquire comes before the push: executor k may release as soon as it sees the
signal. If the push fails, `undo_acquire` gives the slot back.

Isolation (seed, phase 6): a signal may not start while any busy slot holds the same
triangle, any of its three symbols, or the same primary quote: two triangles that share a
book would both count on the same depth (the second one's prediction is already spent),
and two that start from the same primary quote would both size from one balance.

Single-writer assertion: `register_owners(table, slot, hot_tid, exec_tid, main_tid)` with
threading.get_ident() values turns on a check in every writing kernel (0 = off, the
default; one load and a compare when off). run.py leaves it off; tests/test_slots.py turns
it on. A write from another thread raises
AssertionError: a broken single-writer rule is a bug, not a trading outcome.

Test: `python -m pytest -q tests/test_slots.py`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from rings import alloc_aligned, load_acquire, monotonic_ns, store_release, thread_id

INFLIGHT_DTYPE = np.dtype([
    # --- written by the hot thread only
    ("acquired_seq", "i8"),   # acquisitions so far; +1 (release store) after the row is set
    ("corr", "u8"),           # correlation id of the signal in flight (clientOid, report)
    ("tri", "i4"),            # triangle id                     } written while the slot is
    ("sym0", "i4"),           # symbol ids of legs 0, 1, 2      } free, before acquired_seq
    ("sym1", "i4"),           #                                 } moves; read by the hot
    ("sym2", "i4"),           #                                 } thread's isolation check
    ("primary", "i4"),        # primary quote currency id (ccy0)
    ("acquire_ns", "i8"),     # monotonic ns at acquire (stuck-slot watchdog, report)
    # --- written by executor k (this row's slot) only
    ("released_seq", "i8"),   # = acquired_seq (release store) when the triangle is reported
    ("release_ns", "i8"),     # monotonic ns at release
    # --- written by the main thread only
    ("cancel", "u1"),         # kill switch: executor aborts between legs; no new acquire
    ("hot_tid", "i8"),        # owners for the single-writer check (0 = unchecked); written
    ("exec_tid", "i8"),       # by register_owners before the threads start, read-only after
    ("main_tid", "i8"),
    ("pad", "u1", (32,)),     # -> 128 bytes: two slots' rows never share a cache line
], align=True)
assert INFLIGHT_DTYPE.itemsize == 128

SLOT_NONE = -1      # find_free_slot / try_acquire: no slot may take this signal now
SLOT_OK = 1         # acquire / release / undo_acquire done
SLOT_REFUSED = 0    # acquire: slot busy or cancelled; release / undo: slot was not busy



def alloc_inflight(nslots: int) -> np.ndarray:
    """The table, one row per executor slot, all free; ids -1 (no triangle)."""
    if nslots < 1:
        raise ValueError(f"need at least one executor slot, got {nslots!r}")
    table = alloc_aligned(nslots, INFLIGHT_DTYPE)
    for f in ("tri", "sym0", "sym1", "sym2", "primary"):
        table[f] = -1
    return table


def register_owners(table: np.ndarray, slot: int, hot_tid: int, exec_tid: int,
                    main_tid: int) -> None:
    """Main thread, before the threads start: turn on the single-writer check for `slot`
    (threading.get_ident() values; 0 leaves that writer unchecked)."""
    table[slot]["hot_tid"] = hot_tid
    table[slot]["exec_tid"] = exec_tid
    table[slot]["main_tid"] = main_tid


# ---------------------------------------------------------------------------------------
# Kernels. table: INFLIGHT_DTYPE array. Nothing here blocks or spins.

@njit(nogil=True, cache=True, inline="always")
def _check_writer(owner, who):
    if owner != 0 and owner != thread_id():
        if who == 0:
            raise AssertionError("slots: hot-thread field written from another thread")
        if who == 1:
            raise AssertionError("slots: executor field written from a thread other than "
                                 "the slot's executor")
        raise AssertionError("slots: main-thread field written from another thread")


@njit(nogil=True, cache=True)
def is_busy(table, slot):
    """Any thread: True while the slot's triangle is in flight."""
    released = load_acquire(table["released_seq"], slot)
    return load_acquire(table["acquired_seq"], slot) != released


@njit(nogil=True, cache=True)
def find_free_slot(table, tri, sym0, sym1, sym2, primary):
    """Hot thread: a free, not-cancelled slot that may take a signal for this triangle, or
    SLOT_NONE (-1) when a busy slot shares the triangle, a symbol or the primary quote, when
    all slots are busy, or when the kill switch is on."""
    released = table["released_seq"]
    cancel = table["cancel"]
    free = SLOT_NONE
    for s in range(table.shape[0]):
        r = table[s]
        if r["acquired_seq"] != load_acquire(released, s):
            if r["tri"] == tri or r["primary"] == primary:
                return SLOT_NONE
            for b in (r["sym0"], r["sym1"], r["sym2"]):
                if b == sym0 or b == sym1 or b == sym2:
                    return SLOT_NONE
        elif free == SLOT_NONE and load_acquire(cancel, s) == 0:
            free = s
    return free


@njit(nogil=True, cache=True)
def acquire(table, slot, corr, tri, sym0, sym1, sym2, primary):
    """Hot thread: mark `slot` in flight for this signal. Returns SLOT_OK, or SLOT_REFUSED
    when the slot is busy or cancelled. Isolation is find_free_slot's job (or use
    try_acquire); this only writes the row."""
    r = table[slot]
    _check_writer(r["hot_tid"], 0)
    acquired = table["acquired_seq"]
    seq = acquired[slot]
    if seq != load_acquire(table["released_seq"], slot):
        return SLOT_REFUSED
    if load_acquire(table["cancel"], slot) != 0:
        return SLOT_REFUSED
    r["corr"] = corr
    r["tri"] = tri
    r["sym0"] = sym0
    r["sym1"] = sym1
    r["sym2"] = sym2
    r["primary"] = primary
    r["acquire_ns"] = monotonic_ns()
    store_release(acquired, slot, seq + 1)  # release: the row above is written first
    return SLOT_OK


@njit(nogil=True, cache=True)
def try_acquire(table, corr, tri, sym0, sym1, sym2, primary):
    """Hot thread: find_free_slot + acquire in one call. Returns the slot or SLOT_NONE."""
    slot = find_free_slot(table, tri, sym0, sym1, sym2, primary)
    if slot == SLOT_NONE:
        return SLOT_NONE
    if acquire(table, slot, corr, tri, sym0, sym1, sym2, primary) != SLOT_OK:
        return SLOT_NONE
    return slot


@njit(nogil=True, cache=True)
def undo_acquire(table, slot):
    """Hot thread: give back a slot acquired for a signal that could not be pushed (its
    executor never saw it, so it cannot be releasing it). SLOT_OK, or SLOT_REFUSED when the
    slot was not busy."""
    _check_writer(table[slot]["hot_tid"], 0)
    acquired = table["acquired_seq"]
    seq = acquired[slot]
    if seq == load_acquire(table["released_seq"], slot):
        return SLOT_REFUSED
    store_release(acquired, slot, seq - 1)
    return SLOT_OK


@njit(nogil=True, cache=True)
def release(table, slot):
    """Executor of `slot`: its triangle is reported, the slot is free again. Call it after
    every write the hot thread may read about this triangle. SLOT_OK, or SLOT_REFUSED when
    the slot was not busy (a double release changes nothing)."""
    r = table[slot]
    _check_writer(r["exec_tid"], 1)
    released = table["released_seq"]
    seq = load_acquire(table["acquired_seq"], slot)
    if seq == released[slot]:
        return SLOT_REFUSED
    r["release_ns"] = monotonic_ns()
    store_release(released, slot, seq)
    return SLOT_OK


@njit(nogil=True, cache=True)
def is_in_flight(table, slot, corr):
    """Hot thread, routing an orderChange event: True when `slot` (parsed from the clientOid,
    so not trusted) exists and is busy with signal `corr`. A late event for a triangle
    already reported is False and is dropped."""
    if slot < 0 or slot >= table.shape[0]:
        return False
    return is_busy(table, slot) and table[slot]["corr"] == corr


@njit(nogil=True, cache=True)
def cancel_requested(table, slot):
    """Executor k, between legs: True when the kill switch asks it to stop."""
    return load_acquire(table["cancel"], slot) != 0


@njit(nogil=True, cache=True)
def request_cancel_all(table):
    """Main thread (kill switch): every executor aborts between legs and no slot is handed
    out until clear_cancel_all. Returns the number of slots busy at the time."""
    cancel = table["cancel"]
    busy = 0
    for s in range(table.shape[0]):
        _check_writer(table[s]["main_tid"], 2)
        store_release(cancel, s, 1)
        if is_busy(table, s):
            busy += 1
    return busy


@njit(nogil=True, cache=True)
def clear_cancel_all(table):
    """Main thread: trading may resume; slots can be acquired again. Returns 0."""
    cancel = table["cancel"]
    for s in range(table.shape[0]):
        _check_writer(table[s]["main_tid"], 2)
        store_release(cancel, s, 0)
    return 0
