"""Single-producer single-consumer rings over numpy structured arrays, and the eventfd wake.

Owns: the ring layout (`alloc_ring` -> `buf`, `ctrl`) and its kernels; the records that
cross threads on the trading path (`SIGNAL_DTYPE`; `FILL_DTYPE`, built from an orderChange
event by `fill_from_order_change` / `push_order_change`); the clientOid format that routes
fills to a slot (`client_oid`, `parse_client_oid`); the memory-ordering primitives every
shared table uses (`load_acquire`, `store_release`, `alloc_aligned`); the jitted clocks
(`monotonic_ns`, `thread_id`); `wake` / `wait` / `drain` on an eventfd.

Threads: each ring has exactly one producer thread and one consumer thread, fixed when
run.py wires it (signals and fills: hot -> executor k; snapshots: maint -> hot; ...).
Producer-side kernels: `ring_claim`, `ring_publish`, `ring_push`. Consumer-side kernels:
`ring_pop`, `ring_pop_many`, `ring_peek`, `ring_consume`. `ring_count` and `counters` are
safe from any thread. The single-producer / single-consumer rule is asserted when run.py
registers the two thread ids with `set_ring_owners` (0 = unchecked, the default; the check
costs one load and a compare, plus pthread_self when enabled).

Vocabulary (LMAX Disruptor): sequences are int64 counters that only grow; a record with
sequence s lives at `buf[s & mask]`. The producer's *cursor* is the next sequence it will
publish; the *consumer sequence* is the next one the consumer will read. The producer may
claim sequence s while `s - capacity < consumer sequence` (the *wrap point*); it keeps a
cached copy of the consumer sequence so that it reads the consumer's cache line only when
the cached copy says the ring is full, and the consumer likewise caches the cursor.
Full and empty are returned outcomes (claim/peek -> -1, push/pop -> 0) and are counted in
`ctrl` (CTRL_FULL, CTRL_EMPTY); they are never exceptions.

Memory ordering (why the ring is correct, and how Numba is kept from breaking it):
The producer writes the record, then publishes the cursor; the consumer reads the cursor,
then the record, then publishes its consumer sequence, which the producer reads before it
overwrites that cell. Each cross-thread hand-off is therefore a release store paired with
an acquire load. They are real LLVM atomics, emitted by two `numba.extending.intrinsic`s
(`load atomic ... acquire`, `store atomic ... release`), not plain array accesses:
- LLVM may not move earlier loads/stores below a release store, nor later ones above an
  acquire load, even after it inlines these kernels into a caller (the hot thread's fused
  kernel builds a signal in place between `ring_claim` and `ring_publish`). A plain store
  to `ctrl[CTRL_CURSOR]` could legally be sunk or merged with the record stores; a
  "non-inlined helper" barrier would silently stop being one if LLVM inlined it.
- On x86-64 (TSO) acquire loads and release stores compile to ordinary `mov`s, so they
  cost nothing at run time; on a weaker CPU (ARM) LLVM emits the needed barriers.
- LLVM does not hoist an acquire load out of a loop, so a cursor read cannot go stale
  (docs/design.md 9; tests/test_rings.py spins on one to show it). Even so, no kernel here spins: consumers poll from Python or block on
  the eventfd (`wait`), producers retry from Python.
Under NUMBA_DISABLE_JIT=1 the same functions run as plain numpy indexing; the GIL then
orders everything.

The clocks: `monotonic_ns()` calls glibc's clock_gettime(CLOCK_MONOTONIC) from jitted code
(declared as an external symbol in the LLVM module, so kernels that use it stay cacheable;
a ctypes pointer would be baked in as an address and disable Numba's cache). It reads the
same clock as time.monotonic_ns(); `realtime_ns()` is CLOCK_REALTIME, time.time_ns()'s. `thread_id()` is pthread_self(), which equals
threading.get_ident() on Linux. Linux x86-64 is assumed (eventfd, timespec layout).

Test: `python -m pytest -q tests/test_rings.py`.
"""
from __future__ import annotations

import ctypes
import math
import os
import re
import select
import struct
import threading
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# ---------------------------------------------------------------------------------------
# ctrl layout: one int64 cell per 64-byte cache line, so that the producer's and the
# consumer's writes never share a line (false sharing would cost a line transfer per op).
CACHE_LINE_I8 = 8                       # int64 cells per 64-byte line
CTRL_CURSOR = 0 * CACHE_LINE_I8         # producer: next sequence to publish
CTRL_CACHED_CONSUMER = 1 * CACHE_LINE_I8  # producer: last consumer sequence it read
CTRL_PUSHED = 2 * CACHE_LINE_I8         # producer: records published (counter)
CTRL_FULL = 3 * CACHE_LINE_I8           # producer: claims/pushes refused because full
CTRL_CONSUMER = 4 * CACHE_LINE_I8       # consumer: next sequence to read
CTRL_CACHED_CURSOR = 5 * CACHE_LINE_I8  # consumer: last producer cursor it read
CTRL_POPPED = 6 * CACHE_LINE_I8         # consumer: records consumed (counter)
CTRL_EMPTY = 7 * CACHE_LINE_I8          # consumer: pops/peeks that found the ring empty
CTRL_PRODUCER_TID = 8 * CACHE_LINE_I8   # main, before threads start: producer thread id or 0
CTRL_CONSUMER_TID = CTRL_PRODUCER_TID + 1  # same line as above: read-only while running
CTRL_LEN = 9 * CACHE_LINE_I8

RING_FULL = -1    # ring_claim: no room (counted in CTRL_FULL)
RING_EMPTY = -1   # ring_peek: nothing to read (counted in CTRL_EMPTY)

# Private orderChange event kinds (docs/kucoin.md 4.1, field `type`).
FILL_RECEIVED = 0
FILL_MATCH = 1
FILL_FILLED = 2
FILL_CANCELED = 3
FILL_UPDATE = 4
FILL_OPEN = 5
FILL_UNKNOWN = -1  # a `type` this code does not know; still delivered, for the report
FILL_KIND_BY_TYPE = {"received": FILL_RECEIVED, "match": FILL_MATCH, "filled": FILL_FILLED,
                     "canceled": FILL_CANCELED, "update": FILL_UPDATE, "open": FILL_OPEN}

# Hot thread -> executor k, one per signal; written in place by the hot thread between
# ring_claim and ring_publish, read by executor k. Prices in quote per base of each leg's
# symbol, sizes in base; all *_ns are monotonic_ns() / time.monotonic_ns() values.
SIGNAL_DTYPE = np.dtype([
    ("corr", "u8"),          # correlation id, unique per signal; part of every clientOid
    ("tri", "i4"),           # triangle id (row of Universe.tris)
    ("start_vol", "f8"),     # leg-0 input, in the primary quote (ccy0)
    ("exp_out", "f8"),       # expected leg-2 output, in ccy0, after fees and rounding
    ("profit", "f8"),        # exp_out - start_vol, in ccy0
    ("pred_bps", "f8"),      # predicted profit in basis points of start_vol
    ("bid0", "f8"), ("ask0", "f8"),   # best bid/ask of each leg's book at signal time
    ("bid1", "f8"), ("ask1", "f8"),
    ("bid2", "f8"), ("ask2", "f8"),
    ("bid_sz0", "f8"), ("ask_sz0", "f8"),  # sizes at those prices (docs/design.md 5), base units
    ("bid_sz1", "f8"), ("ask_sz1", "f8"),
    ("bid_sz2", "f8"), ("ask_sz2", "f8"),
    ("book_ts_ms", "i8"),    # oldest exchange time among the three books (kucoin ms)
    ("recv_ns", "i8"),       # WebSocket frame receipt
    ("parsed_ns", "i8"),     # frame parsed
    ("book_ns", "i8"),       # book updated
    ("eval_ns", "i8"),       # triangle evaluated
    ("push_ns", "i8"),       # signal published
    ("origin", "i1"),        # ORIGIN_FRAME: a level2 frame; ORIGIN_REEVAL: a slot release
    ("lim0", "f8"),          # leg 0 as an IOC limit (leg0_order = ioc): the worst price the
    ("base0", "f8"),         # evaluation walked and the base size (triangles._leg0_ioc)
], align=True)
ORIGIN_FRAME = 0
ORIGIN_REEVAL = 1

_STRUCT_CODES = {("u", 8): "Q", ("i", 8): "q", ("u", 4): "I", ("i", 4): "i", ("u", 1): "B",
                 ("i", 1): "b", ("f", 8): "d", ("b", 1): "?"}


def record_struct(dtype: np.dtype, names: tuple) -> struct.Struct:
    """A struct.Struct over one record of `dtype`: `unpack_from(mv, base)` reads the fields
    `names` (listed in offset order; a sub-array field gives one value per element) as
    Python ints and floats, and `pack_into(mv, base, ...)` writes them, mv being a
    memoryview of the record's bytes. One small C call for several fields: the fire path
    reads and writes records this way because a numpy field access costs ~2 us when its
    code is cold, as it is between two orders (measured live: the signal's fields and the
    slot row's reset took 18.5 us p50 through numpy)."""
    fmt = ["<"]
    pos = 0
    for n in names:
        dt, off = dtype.fields[n][0], dtype.fields[n][1]
        if off < pos:
            raise ValueError(f"record_struct: {n!r} is not after the previous field")
        count = int(np.prod(dt.shape)) if dt.shape else 1
        fmt.append(f"{off - pos}x{count}{_STRUCT_CODES[(dt.base.kind, dt.base.itemsize)]}")
        pos = off + dt.itemsize
    return struct.Struct("".join(fmt))


def record_bytes(arr: np.ndarray) -> memoryview:
    """A writable byte memoryview of a contiguous array, structured or not (for
    record_struct and struct reads at computed offsets)."""
    return memoryview(arr.view(np.uint8).reshape(-1))


# Hot thread -> executor k, one per private orderChange event of that slot's orders
# (docs/kucoin.md 4.1). Fields absent from the event are NaN (not 0: remainFunds "0" is data).
FILL_DTYPE = np.dtype([
    ("corr", "u8"),          # correlation id parsed from the clientOid (parse_client_oid)
    ("leg", "i1"),           # 0..2, parsed from the clientOid
    ("kind", "i1"),          # FILL_* code from `type`
    ("match_px", "f8"),      # matchPrice (quote per base), FILL_MATCH only
    ("match_sz", "f8"),      # matchSize (base), FILL_MATCH only
    ("filled_sz", "f8"),     # filledSize, cumulative base
    ("remain_sz", "f8"),     # remainSize (base)
    ("remain_funds", "f8"),  # remainFunds (quote; market buy by funds)
    ("ts_ns", "i8"),         # `ts`, matching-engine time, exchange ns
    ("recv_ns", "i8"),       # local receipt of the frame, monotonic ns
    ("order_id", "S24"),     # orderId, 24 hex chars
    ("trade_id", "S24"),     # tradeId (FILL_MATCH only), empty otherwise
], align=True)


# ---------------------------------------------------------------------------------------
# Memory-ordering primitives and clocks. Each is a plain Python function (what runs under
# NUMBA_DISABLE_JIT=1) plus an @overload that jitted callers get instead.

def _element_pointer(context, builder, aryty, ary_value, idx_value):
    ary = context.make_array(aryty)(context, builder, ary_value)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [idx_value], wraparound=False)


def _int_array_1d(arr):
    return isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(arr.dtype, types.Integer)


@intrinsic
def _atomic_load_acquire(typingctx, arr, idx):
    if not (_int_array_1d(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", sig.args[0].dtype.bitwidth // 8)
    return arr.dtype(arr, idx), codegen


@intrinsic
def _atomic_store_release(typingctx, arr, idx, val):
    if not (_int_array_1d(arr) and isinstance(idx, types.Integer)
            and isinstance(val, (types.Integer, types.Boolean))):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ptr = _element_pointer(context, builder, aryty, args[0], args[1])
        v = context.cast(builder, args[2], sig.args[2], aryty.dtype)
        builder.store_atomic(v, ptr, "release", aryty.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.void(arr, idx, val), codegen


def _clock_gettime_ns(builder, clock_id: int):
    """clock_gettime(clock_id) in ns, as LLVM IR (the jitted clocks below)."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    timespec = ir.LiteralStructType([i64, i64])  # struct timespec on x86-64 Linux
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(i32, [i32, timespec.as_pointer()]), "clock_gettime")
    ts = cgutils.alloca_once(builder, timespec)
    builder.call(fn, [ir.Constant(i32, clock_id), ts])
    sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
    nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
    return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)


@intrinsic
def _clock_monotonic_ns(typingctx):
    def codegen(context, builder, sig, args):
        return _clock_gettime_ns(builder, 1)   # 1 = CLOCK_MONOTONIC
    return types.int64(), codegen


@intrinsic
def _clock_realtime_ns(typingctx):
    def codegen(context, builder, sig, args):
        return _clock_gettime_ns(builder, 0)   # 0 = CLOCK_REALTIME
    return types.int64(), codegen


@intrinsic
def _pthread_self(typingctx):
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, []),
                                            "pthread_self")
        return builder.call(fn, [])
    return types.int64(), codegen


def load_acquire(arr, i):
    """arr[i] as an acquire load: later reads of this thread see what the writer wrote
    before its matching store_release. arr: 1-D integer array (a field view is fine)."""
    return arr[i]


def store_release(arr, i, value):
    """arr[i] = value as a release store: everything this thread wrote before is visible
    to a thread that load_acquire()s the value."""
    arr[i] = value


def monotonic_ns():
    """CLOCK_MONOTONIC in ns, callable from kernels; same clock as time.monotonic_ns()."""
    return time.monotonic_ns()


def realtime_ns():
    """CLOCK_REALTIME in ns, callable from kernels; same clock as time.time_ns() (the order
    timestamp, orderkern.py)."""
    return time.time_ns()


def thread_id():
    """The calling thread's pthread_self(), == threading.get_ident(); callable from kernels."""
    return threading.get_ident()


@overload(load_acquire)
def _load_acquire_jit(arr, i):
    return lambda arr, i: _atomic_load_acquire(arr, i)


@overload(store_release)
def _store_release_jit(arr, i, value):
    return lambda arr, i, value: _atomic_store_release(arr, i, value)


@overload(monotonic_ns)
def _monotonic_ns_jit():
    return lambda: _clock_monotonic_ns()


@overload(realtime_ns)
def _realtime_ns_jit():
    return lambda: _clock_realtime_ns()


@overload(thread_id)
def _thread_id_jit():
    return lambda: _pthread_self()


# ---------------------------------------------------------------------------------------
# Allocation (main thread, at start-up).

def alloc_aligned(n: int, dtype) -> np.ndarray:
    """n zeroed records of dtype starting on a 64-byte boundary (a cache line), so that
    cells padded 64 bytes apart really sit on distinct lines."""
    dtype = np.dtype(dtype)
    nbytes = int(n) * dtype.itemsize
    raw = np.zeros(nbytes + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + nbytes].view(dtype)


def alloc_ring(dtype, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """(buf, ctrl): `capacity` records of `dtype` and the int64 control cells (CTRL_*).

    capacity must be a power of two (so that a sequence maps to its cell with `& mask`).
    """
    if (isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer))
            or capacity < 1 or capacity & (capacity - 1)):
        raise ValueError(f"ring capacity must be a power of two >= 1, got {capacity!r}")
    return alloc_aligned(capacity, dtype), alloc_aligned(CTRL_LEN, np.int64)


def set_ring_owners(ctrl: np.ndarray, producer_tid: int, consumer_tid: int) -> None:
    """Register the ring's producer and consumer threads (threading.get_ident() values;
    0 = do not check). Main thread, before either thread starts. From then on a producer
    kernel called from another thread, or a consumer kernel likewise, raises AssertionError."""
    ctrl[CTRL_PRODUCER_TID] = producer_tid
    ctrl[CTRL_CONSUMER_TID] = consumer_tid


def counters(ctrl: np.ndarray) -> dict:
    """Snapshot of the ring's counters for the status line (any thread; values may be a few
    operations apart from each other)."""
    popped = int(ctrl[CTRL_POPPED])
    pushed = int(ctrl[CTRL_PUSHED])
    return {"pushed": pushed, "popped": popped, "depth": max(pushed - popped, 0),
            "full": int(ctrl[CTRL_FULL]), "empty": int(ctrl[CTRL_EMPTY])}


# ---------------------------------------------------------------------------------------
# Kernels. buf: the ring's records; ctrl: its CTRL_* cells. No allocation, no spinning.
# Private pieces are inline="always" (inlined in Numba IR): a plain jitted call that passes
# arrays makes Numba wrap it in NRT incref/decref calls, which tripled ring_push's cost.

@njit(nogil=True, cache=True, inline="always")
def _check_owner(ctrl, cell):
    owner = ctrl[cell]
    if owner != 0 and owner != thread_id():
        raise AssertionError("rings: SPSC rule broken: ring used from a thread that is not "
                             "its registered producer/consumer")


@njit(nogil=True, cache=True, inline="always")
def _claim(buf, ctrl):
    cap = buf.shape[0]
    seq = ctrl[CTRL_CURSOR]
    wrap_point = seq - cap
    if ctrl[CTRL_CACHED_CONSUMER] <= wrap_point:
        # Acquire: the consumer finished reading the cell before it published this value,
        # so overwriting the cell after this load is safe.
        ctrl[CTRL_CACHED_CONSUMER] = load_acquire(ctrl, CTRL_CONSUMER)
        if ctrl[CTRL_CACHED_CONSUMER] <= wrap_point:
            ctrl[CTRL_FULL] += 1
            return RING_FULL
    return seq & (cap - 1)


@njit(nogil=True, cache=True, inline="always")
def _publish(buf, ctrl):
    seq = ctrl[CTRL_CURSOR]
    if seq - ctrl[CTRL_CACHED_CONSUMER] >= buf.shape[0]:
        return 0
    store_release(ctrl, CTRL_CURSOR, seq + 1)  # release: the record's stores come first
    ctrl[CTRL_PUSHED] += 1
    return 1


@njit(nogil=True, cache=True)
def ring_claim(buf, ctrl):
    """Producer: reserve the next cell. Returns its index in buf, or RING_FULL (-1, counted).

    The caller writes the record's fields into buf[idx] and then calls ring_publish; until
    then the consumer cannot see the record. Claiming twice without publishing returns the
    same cell."""
    _check_owner(ctrl, CTRL_PRODUCER_TID)
    return _claim(buf, ctrl)


@njit(nogil=True, cache=True)
def ring_publish(buf, ctrl):
    """Producer: make the record claimed by ring_claim visible. Returns 1, or 0 when there
    is no room (publish without a successful claim; nothing is published)."""
    _check_owner(ctrl, CTRL_PRODUCER_TID)
    return _publish(buf, ctrl)


@njit(nogil=True, cache=True)
def ring_push(buf, ctrl, src, i):
    """Producer: copy record src[i] into the ring. Returns 1, or 0 when full (counted)."""
    _check_owner(ctrl, CTRL_PRODUCER_TID)
    idx = _claim(buf, ctrl)
    if idx < 0:
        return 0
    buf[idx] = src[i]
    return _publish(buf, ctrl)


@njit(nogil=True, cache=True, inline="always")
def _readable(buf, ctrl, seq, want):
    """Consumer: records readable from seq, at most `want`; reloads the cursor only when the
    cached copy shows fewer than `want`."""
    avail = ctrl[CTRL_CACHED_CURSOR] - seq
    if avail < want:
        # Acquire: the producer wrote the records before it published this cursor.
        ctrl[CTRL_CACHED_CURSOR] = load_acquire(ctrl, CTRL_CURSOR)
        avail = ctrl[CTRL_CACHED_CURSOR] - seq
    return min(avail, want)


@njit(nogil=True, cache=True)
def ring_pop(buf, ctrl, dst, i):
    """Consumer: copy the oldest record into dst[i]. Returns 1, or 0 when empty (counted)."""
    _check_owner(ctrl, CTRL_CONSUMER_TID)
    seq = ctrl[CTRL_CONSUMER]
    if _readable(buf, ctrl, seq, 1) < 1:
        ctrl[CTRL_EMPTY] += 1
        return 0
    dst[i] = buf[seq & (buf.shape[0] - 1)]
    store_release(ctrl, CTRL_CONSUMER, seq + 1)  # release: the copy-out is done first
    ctrl[CTRL_POPPED] += 1
    return 1


@njit(nogil=True, cache=True)
def ring_pop_many(buf, ctrl, dst):
    """Consumer: copy up to len(dst) oldest records into dst[0:n], oldest first, with one
    cursor load and one consumer-sequence store for the batch. Returns n (0 = empty,
    counted)."""
    _check_owner(ctrl, CTRL_CONSUMER_TID)
    seq = ctrl[CTRL_CONSUMER]
    n = _readable(buf, ctrl, seq, dst.shape[0])
    if n < 1:
        ctrl[CTRL_EMPTY] += 1
        return 0
    mask = buf.shape[0] - 1
    for k in range(n):
        dst[k] = buf[(seq + k) & mask]
    store_release(ctrl, CTRL_CONSUMER, seq + n)
    ctrl[CTRL_POPPED] += n
    return n


@njit(nogil=True, cache=True)
def ring_peek(buf, ctrl):
    """Consumer: index in buf of the oldest record, to read in place, or RING_EMPTY (-1,
    counted). The record stays in the ring until ring_consume."""
    _check_owner(ctrl, CTRL_CONSUMER_TID)
    seq = ctrl[CTRL_CONSUMER]
    if _readable(buf, ctrl, seq, 1) < 1:
        ctrl[CTRL_EMPTY] += 1
        return RING_EMPTY
    return seq & (buf.shape[0] - 1)


@njit(nogil=True, cache=True)
def ring_consume(buf, ctrl):
    """Consumer: drop the record ring_peek returned, handing its cell back to the producer.
    Returns 1, or 0 when there was nothing peeked."""
    _check_owner(ctrl, CTRL_CONSUMER_TID)
    seq = ctrl[CTRL_CONSUMER]
    if ctrl[CTRL_CACHED_CURSOR] <= seq:
        return 0
    store_release(ctrl, CTRL_CONSUMER, seq + 1)
    ctrl[CTRL_POPPED] += 1
    return 1


@njit(nogil=True, cache=True)
def ring_count(buf, ctrl):
    """Records published and not yet consumed (any thread; a snapshot, 0..capacity)."""
    consumer = load_acquire(ctrl, CTRL_CONSUMER)  # first: the cursor read after it is >= it
    n = load_acquire(ctrl, CTRL_CURSOR) - consumer
    return min(max(n, 0), buf.shape[0])


@njit(nogil=True, cache=True, inline="always")
def _set_fill(r, corr, leg, kind, match_px, match_sz, filled_sz, remain_sz, remain_funds,
              ts_ns, recv_ns, order_id, trade_id):
    r["corr"] = corr
    r["leg"] = leg
    r["kind"] = kind
    r["match_px"] = match_px
    r["match_sz"] = match_sz
    r["filled_sz"] = filled_sz
    r["remain_sz"] = remain_sz
    r["remain_funds"] = remain_funds
    r["ts_ns"] = ts_ns
    r["recv_ns"] = recv_ns
    r["order_id"] = order_id      # bytes; numpy/Numba cut anything past 24
    r["trade_id"] = trade_id


@njit(nogil=True, cache=True)
def write_fill(dst, i, corr, leg, kind, match_px, match_sz, filled_sz, remain_sz,
               remain_funds, ts_ns, recv_ns, order_id, trade_id):
    """Any thread: FILL_DTYPE record dst[i] from parsed fields (ids as bytes). Returns 1."""
    _set_fill(dst[i], corr, leg, kind, match_px, match_sz, filled_sz, remain_sz,
              remain_funds, ts_ns, recv_ns, order_id, trade_id)
    return 1


@njit(nogil=True, cache=True)
def push_fill(buf, ctrl, corr, leg, kind, match_px, match_sz, filled_sz, remain_sz,
              remain_funds, ts_ns, recv_ns, order_id, trade_id):
    """Producer (hot thread): write_fill straight into the fill ring (claim, write,
    publish). Returns 1, or 0 when full (counted)."""
    _check_owner(ctrl, CTRL_PRODUCER_TID)
    idx = _claim(buf, ctrl)
    if idx < 0:
        return 0
    _set_fill(buf[idx], corr, leg, kind, match_px, match_sz, filled_sz, remain_sz,
              remain_funds, ts_ns, recv_ns, order_id, trade_id)
    return _publish(buf, ctrl)


def _num(data, key) -> float:
    """A decimal string or a JSON number; absent/null/"" -> NaN. Anything else raises (a
    boolean would read as 1.0: a hot-thread caller counts the frame as bad instead)."""
    v = data.get(key)
    if v is None or v == "":
        return math.nan
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise TypeError(f"{key} of type {type(v).__name__}")
    return float(v)


def _order_change_fields(data) -> tuple:
    """(kind, match_px, match_sz, filled_sz, remain_sz, remain_funds, ts_ns, order_id,
    trade_id) of an orderChange `data` object (docs/kucoin.md 4.1); absent numbers -> NaN."""
    as_dict = getattr(data, "as_dict", None)
    if as_dict is not None:   # simdjson Object: .get of an absent key raises inside, ~0.5 us
        data = as_dict()      # each; one conversion (~1.6 us) is cheaper for ~10 lookups
    ts = data.get("ts")
    return (FILL_KIND_BY_TYPE.get(data.get("type"), FILL_UNKNOWN),
            _num(data, "matchPrice"), _num(data, "matchSize"), _num(data, "filledSize"),
            _num(data, "remainSize"), _num(data, "remainFunds"),
            int(ts) if ts is not None else 0,
            str(data.get("orderId") or "").encode(), str(data.get("tradeId") or "").encode())


def fill_from_order_change(dst, i, data, corr: int, leg: int, recv_ns: int) -> int:
    """Hot thread: FILL record dst[i] from one private orderChange `data` object (any
    mapping with .get, e.g. a simdjson Object). corr and leg come from parse_client_oid."""
    kind, px, sz, filled, remain, funds, ts, oid, tid = _order_change_fields(data)
    return write_fill_held(dst, i, np.uint64(corr), leg, kind, px, sz, filled, remain, funds,
                           ts, recv_ns, oid, tid)


def push_order_change(buf, ctrl, data, corr: int, leg: int, recv_ns: int) -> int:
    """Hot thread: fill_from_order_change straight into the slot's fill ring (one kernel
    call). Returns 1, or 0 when the ring is full."""
    kind, px, sz, filled, remain, funds, ts, oid, tid = _order_change_fields(data)
    return push_fill(buf, ctrl, np.uint64(corr), leg, kind, px, sz, filled, remain, funds,
                     ts, recv_ns, oid, tid)


# clientOid = f"ta{corr:x}s{slot}l{leg}" (docs/design.md 6): the hot thread routes an orderChange
# event to slot `slot`'s fill ring from the id alone, with no lookup table.
_OID_RE = re.compile(r"ta([0-9a-f]{1,16})s([0-9]{1,4})l([0-2])")


def client_oid(corr: int, slot: int, leg: int) -> str:
    """clientOid of leg `leg` of signal `corr` run by `slot` (docs/kucoin.md: <= 40 chars of
    [A-Za-z0-9_-]; this is at most 2 + 16 + 1 + 4 + 1 + 1 = 25)."""
    return f"ta{corr:x}s{slot}l{leg}"


def parse_client_oid(oid: str) -> tuple[int, int, int] | None:
    """(corr, slot, leg) from a clientOid made by client_oid, or None for anybody else's
    order (manual trades on the same account reach the private feed too). The slot is not
    checked against the table: see slots.is_in_flight."""
    m = _OID_RE.fullmatch(oid)
    if m is None:
        return None
    return int(m[1], 16), int(m[2]), int(m[3])


# ---------------------------------------------------------------------------------------
# Eventfd wake-up (the fds are created in run.py, non-blocking: os.EFD_NONBLOCK).

try:
    # write() through ctypes.PyDLL keeps the GIL: os.eventfd_write releases it, and on the
    # hot thread (which wakes an executor per signal and per fill event) each release is a
    # chance for the woken thread to take the GIL first and hold it for a switch interval
    # or more (docs/design.md 9; measured in profiles/results/line_profile_hot.txt).
    _libc = ctypes.PyDLL(None, use_errno=True)
    _c_write = _libc.write
    _c_write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
    _c_write.restype = ctypes.c_ssize_t
    _ONE = ctypes.c_uint64(1)
    _ONE_ADDR = ctypes.addressof(_ONE)
    _c_read = _libc.read
    _c_read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
    _c_read.restype = ctypes.c_ssize_t
    _DRAIN = ctypes.c_uint64(0)       # only the hot thread drains (its wake fd)
    _DRAIN_ADDR = ctypes.addressof(_DRAIN)
except (OSError, AttributeError):
    _c_write = _c_read = None



def warm_ring_kernels(rings_used) -> None:
    """Compile (or load) the ring kernels for each record dtype of `rings_used` ((buf, ctrl)
    pairs: only the dtype and length are read) and fill_from_order_change, on fresh scratch
    rings: run.warm_up and kernelcache's "rings" group both call this."""
    for buf, _ctrl in rings_used:
        b, c = alloc_ring(buf.dtype, len(buf))
        one = np.zeros(1, buf.dtype)
        ring_push(b, c, one, 0)
        ring_pop(b, c, one, 0)
        ring_push_held(b, c, one, 0)
        ring_pop_held(b, c, one, 0)
    fill = np.zeros(1, FILL_DTYPE)
    fill_from_order_change(fill, 0, {"type": "match", "matchPrice": "1", "matchSize": "1",
                                     "orderId": "x", "tradeId": "1"}, 1, 0, 0)

def wake(fd: int) -> None:
    """Producer, after publishing: wake the consumer blocked in wait(fd). Wakes coalesce
    (the eventfd counts), so a wake that arrives before the consumer waits is not lost."""
    if _c_write is None or _c_write(fd, _ONE_ADDR, 8) != 8:
        os.eventfd_write(fd, 1)


def wait(fd: int, timeout_s: float | None) -> bool:
    """Consumer: block until fd is woken or timeout_s passes (None = forever). Returns True
    when woken (the wake count is drained), False on timeout. Always re-check the ring
    afterwards: one wake may stand for many records, and a record may arrive without one.

    Use as `while running: if not ring_pop(...): wait(fd, t)`; because the eventfd keeps
    its count, a push+wake between the empty pop and the wait still returns at once."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    timeout_ms = None if timeout_s is None else max(0.0, timeout_s * 1000.0)
    if not poller.poll(timeout_ms):
        return False
    drain(fd)   # 0 only if a racing reader drained it: the wake still happened
    return True


def drain(fd: int) -> int:
    """Consumer that polls fd itself (the hot thread's epoll): reset the wake count without
    blocking. Returns the number of wakes since the last drain (0 if none)."""
    if _c_read is not None:   # GIL held (see wake)
        n = _c_read(fd, _DRAIN_ADDR, 8)
        return _DRAIN.value if n == 8 else 0
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


# -- hot-thread entry points that keep the GIL ----------------------------------------------
# The kernels above are nogil: a call from Python releases the GIL and takes it back. The
# hot thread calls these instead, for the same reason as hotctx.hot_chunk: a release on
# the hot thread lets a waiting executor or the log thread take the GIL, and getting it
# back costs a switch interval or more (docs/design.md 9, the GIL convoy).

@njit(cache=True)
def ring_push_held(buf, ctrl, src, i):
    return ring_push(buf, ctrl, src, i)


@njit(cache=True)
def ring_pop_held(buf, ctrl, dst, i):
    return ring_pop(buf, ctrl, dst, i)


@njit(cache=True)
def write_fill_held(dst, i, corr, leg, kind, match_px, match_sz, filled_sz, remain_sz,
                    remain_funds, ts_ns, recv_ns, order_id, trade_id):
    """write_fill keeping the GIL: the hot thread writes one per private event."""
    return write_fill(dst, i, corr, leg, kind, match_px, match_sz, filled_sz, remain_sz,
                      remain_funds, ts_ns, recv_ns, order_id, trade_id)
