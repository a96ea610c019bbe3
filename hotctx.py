"""Few-argument entry points for the hot thread: a socket read -> signals in one kernel call.

Owner: the hot thread. hot.HotLoop calls `hot_chunk` once per read of the public link
(and again after each signal it fires) and `hot_reeval` when an executor frees a slot.

Why (measured, profiles/README.md "dispatch"): a Numba dispatcher types and unboxes every
argument on every call. The fused kernel takes 25 arrays; its call cost 3.2 us warm and 13 us
with cold caches, which is what a frame meets (a few dozen signals a second), and the
Python that cut frames and looked up topics before it cost ~26 us more. Here every array
the kernels share is described once, at start-up, in an int64 table (`build_table`:
address and shape per array); `unpack` rebuilds the arrays inside the kernel with
numba.carray at no cost, so a call passes the table, the link's buffer, two ints and the
result cells. Inside, `process_chunk` cuts the WebSocket frames (wsread.next_frame), finds
each level2 frame's symbol (topics.level2_symbol), applies the level2 frames of the read
(pipeline.apply_l2, up to read_ahead of them) and decides each changed symbol once, newest
first (pipeline.decide_l2), returning at the first signal, with leg 0's request built
(orderkern.build_leg0), so leg 0 goes out before the rest of the chunk is looked at. On the private link, each orderChange of one of our orders
(docs/kucoin.md 4.1) is read by privwire and routed to its slot's fill ring here too
(route_fill), returning to Python only at a leg's terminal event, which fires the next leg:
that event no longer waits behind Python handling of the events before it in its chunk.
Every other frame (acks, pongs, balances, foreign orders, control and fragmented frames)
is listed in the result cells for hot.py to handle in Python.

The arrays must stay where they are while the engine runs: run.allocate makes them once,
nothing replaces them, and the Table object keeps a reference to each.

Under NUMBA_DISABLE_JIT=1, `unpack` builds the same arrays through ctypes.
Tests: tests/test_hotctx.py (a chunk equals the per-frame path, frame by frame).
"""
from __future__ import annotations

import ctypes
from decimal import Decimal

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

import books
import l2wire
import opportunity
import orderkern
import pipeline
import privwire
import rings
import slots
import topics
import triangles
import wsread

# The shared arrays, in pipeline.on_level2's argument order (refill_min, a scalar, is a cell).
# Each array has 4 cells in the table: address, then up to three dimensions.
ARRAYS = ("changes", "hdr", "state", "px", "sz", "pend", "pctl", "symtab", "tris",
          "sym_tri_start", "sym_tri_list", "balances", "max_start", "params", "cands", "evc",
          "slots", "pstate", "counters", "stage", "control", "tri_last_ns", "reeval",
          "backoff_ns", "sym_slots", "sym_names", "sym_lens", "fill_stage", "fill_raw",
          "fill_rings", "hot_acc", "hot_acc_corr",
          # the opportunity journal (opportunity.py)
          "opp_state", "opp_params", "opp_cand", "opp_cap", "opp_ring", "opp_ring_ctrl", "opp_ctl",
          "tri_bound",
          # leg 0's request built in the kernel (orderkern.py)
          "ok_plan", "ok_body", "ok_tmpl", "ok_ctl", "ok_req", "ok_info", "ok_scr", "ok_w")
# (kernels read these module constants; numba freezes them at compile time)
I_CHANGES = 0
I_HDR = 1
I_STATE = 2
I_PX = 3
I_SZ = 4
I_PEND = 5
I_PCTL = 6
I_SYMTAB = 7
I_TRIS = 8
I_SYM_TRI_START = 9
I_SYM_TRI_LIST = 10
I_BALANCES = 11
I_MAX_START = 12
I_PARAMS = 13
I_CANDS = 14
I_EVC = 15
I_SLOTS = 16
I_PSTATE = 17
I_COUNTERS = 18
I_STAGE = 19
I_CONTROL = 20
I_TRI_LAST_NS = 21
I_REEVAL = 22
I_BACKOFF_NS = 23
I_SYM_SLOTS = 24
I_SYM_NAMES = 25
I_SYM_LENS = 26
I_FILL_STAGE = 27
I_FILL_RAW = 28
I_FILL_RINGS = 29
I_HOT_ACC = 30
I_HOT_ACC_CORR = 31
I_OPP_STATE = 32
I_OPP_PARAMS = 33
I_OPP_CAND = 34
I_OPP_CAP = 35
I_OPP_RING = 36
I_OPP_RING_CTRL = 37
I_OPP_CTL = 38
I_TRI_BOUND = 39
I_OK_PLAN = 40
I_OK_BODY = 41
I_OK_TMPL = 42
I_OK_CTL = 43
I_OK_REQ = 44
I_OK_INFO = 45
I_OK_SCR = 46
I_OK_W = 47
A = {name: i for i, name in enumerate(ARRAYS)}
assert all(globals()[f"I_{n.upper()}"] == i for n, i in A.items())
T_REFILL_MIN = 4 * len(ARRAYS)
T_READ_AHEAD = T_REFILL_MIN + 1   # level2 frames applied before the first is decided (read_ahead)
TABLE_LEN = T_REFILL_MIN + 2

# Result cells of process_chunk (int64, hot thread only)
R_POS = 0         # first byte not yet handled
R_STATUS = 1      # wsread status where the walk stopped (F_INCOMPLETE normally)
R_NOTHER = 2      # frames listed for Python: (b0, start, end) triplets from R_OTHERS
R_NSNAP = 3       # books that want a snapshot: symbol rows from R_SNAPS
R_BAD_START = 4   # the last level2 frame the parser rejected (or without a topic): its span,
R_BAD_END = 5     # or -1
R_FILL_SLOT = 6   # FILL_EVENT: the slot, and route_fill's outcome
R_FILL_STATUS = 7
R_OTHERS = 8
OTHERS_CAP = 256
R_SNAPS = R_OTHERS + 3 * OTHERS_CAP
SNAPS_CAP = 64
R_OPP_SYM = R_SNAPS + SNAPS_CAP   # a frame that staged a signal: its symbol, whose
                                  # opportunities are tracked at the next call (after leg 0)
R_ENTRY_NS = R_OPP_SYM + 1        # monotonic ns when hot_chunk's compiled code began (the
                                  # receipt -> entry stage: Python and the dispatcher's part)
R_WIN_N = R_ENTRY_NS + 1          # read-ahead: symbols applied and still to decide, R_WIN_I the
R_WIN_I = R_WIN_N + 1             # next one; (sym, parsed_ns, book_ns) from R_WIN
R_WIN = R_WIN_I + 1
WIN_CAP = 16
RES_LEN = R_WIN + 3 * WIN_CAP

C_MSGS, C_BYTES = pipeline.C["msgs"], pipeline.C["bytes"]
C_PRIVATE, C_RING_FULL = pipeline.C["private_msgs"], pipeline.C["ring_full"]
C_FILLS_ROUTED = pipeline.C["fills_routed"]
ORDER_SUBJECT = np.frombuffer(b'"subject":"orderChange"', np.uint8)

# route_fill outcomes
ROUTED = 0
ROUTED_WAKE = 1
ROUTE_RING_FULL = 2
C_L2_MSGS, C_UNKNOWN = pipeline.C["l2_msgs"], pipeline.C["unknown_symbol"]
C_EVALS = pipeline.C["evals"]

OTHERS_FULL = -4  # process_chunk: Python must take the listed frames before it goes on
STREAM_ERROR = -5  # process_chunk: res[R_STATUS] says why (wsread.F_MASKED / F_TOO_BIG)
FILL_EVENT = -6   # process_chunk: fill[0] of slot res[R_FILL_SLOT] needs Python (res[R_FILL_STATUS])


def alloc_result() -> np.ndarray:
    """Result cells ready for a first buffer."""
    res = np.zeros(RES_LEN, np.int64)
    reset_result(res)
    res[R_OPP_SYM] = -1
    return res


def reset_result(res: np.ndarray) -> None:
    """Ready res for a new buffer (process_chunk's contract). HotLoop does it after a
    buffer, not before the next: four numpy item writes cost a few us cold, and before the
    kernel call they would sit between a frame's receipt and its parse."""
    res[R_POS] = 0
    res[R_NOTHER] = 0
    res[R_NSNAP] = 0
    res[R_BAD_START] = -1
    res[R_WIN_N] = 0
    res[R_WIN_I] = 0


class Table:
    """The int64 table describing the arrays of run.Shared, plus references keeping them alive."""

    def __init__(self, sh, symtable: topics.SymbolTable):
        uni = sh.universe
        arrays = dict(zip(ARRAYS, (
            sh.changes, sh.l2hdr, sh.book_state, sh.book_px, sh.book_sz, sh.pend, sh.pctl,
            uni.symtab, uni.tris, uni.sym_tri_start, uni.sym_tri_list, sh.balances,
            sh.max_start, sh.params, sh.cands, sh.evc, sh.slots, sh.pstate, sh.counters,
            sh.sig_stage, sh.control, sh.tri_last_ns, sh.reeval, sh.rate_backoff_ns,
            symtable.slots, symtable.names, symtable.lens, sh.fill_stage,
            privwire.raw_view(sh.fill_stage), fill_ring_table(sh.fill_rings), sh.hot_acc,
            sh.hot_acc_corr, sh.opp_state, sh.opp_params, sh.opp_cand, sh.opp_cap,
            sh.opp_ring[0], sh.opp_ring[1], sh.opp_ctl, sh.tri_bound,
            sh.ok_plan, sh.ok_body, sh.ok_tmpl, sh.ok_ctl, sh.ok_req, sh.ok_info, sh.ok_scr, sh.ok_w)))
        self.arrays = arrays
        self.tab = np.zeros(TABLE_LEN, np.int64)
        for name, a in arrays.items():
            # unpack() rebuilds each array with a fixed dtype and ndim: a mismatch would read
            # memory as the wrong type, so it is refused here, at start-up
            want_dtype, want_ndim = _LAYOUT[name]
            if a.dtype != want_dtype or a.ndim != want_ndim or not a.flags["C_CONTIGUOUS"]:
                raise ValueError(f"{name}: {a.dtype} ndim {a.ndim}, unpack() expects "
                                 f"{want_dtype} ndim {want_ndim}, C-contiguous")
            k = 4 * A[name]
            self.tab[k] = a.ctypes.data
            self.tab[k + 1:k + 1 + a.ndim] = a.shape
        self.tab[T_REFILL_MIN] = books.REFILL_MIN
        self.tab[T_READ_AHEAD] = max(1, min(WIN_CAP, int(getattr(sh, "read_ahead", 1))))


_LAYOUT = {
    "changes": (l2wire.CHANGE_DTYPE, 1), "hdr": (l2wire.L2HDR_DTYPE, 1), "state": (books.BOOK_DTYPE, 1),
    "px": (np.dtype(np.float64), 3), "sz": (np.dtype(np.float64), 3),
    "pend": (books.PENDING_DTYPE, 1), "pctl": (books.PENDCTL_DTYPE, 1),
    "symtab": (triangles.SYMBOL_DTYPE, 1), "tris": (triangles.TRIANGLE_DTYPE, 1),
    "sym_tri_start": (np.dtype(np.int32), 1), "sym_tri_list": (np.dtype(np.int32), 1),
    "balances": (np.dtype(np.float64), 1), "max_start": (np.dtype(np.float64), 1),
    "params": (triangles.PARAMS_DTYPE, 1), "cands": (triangles.CANDIDATE_DTYPE, 1),
    "evc": (np.dtype(np.int64), 1), "slots": (slots.INFLIGHT_DTYPE, 1),
    "pstate": (np.dtype(np.int64), 1), "counters": (np.dtype(np.int64), 1),
    "stage": (rings.SIGNAL_DTYPE, 1), "control": (np.dtype(np.int64), 1),
    "tri_last_ns": (np.dtype(np.int64), 1), "reeval": (np.dtype(np.int8), 1),
    "backoff_ns": (np.dtype(np.int64), 1), "sym_slots": (np.dtype(np.int32), 1),
    "sym_names": (np.dtype(np.uint8), 2), "sym_lens": (np.dtype(np.int32), 1),
    "fill_stage": (rings.FILL_DTYPE, 1), "fill_raw": (np.dtype(np.uint8), 2),
    "fill_rings": (np.dtype(np.int64), 2), "hot_acc": (np.dtype(np.float64), 3),
    "hot_acc_corr": (np.dtype(np.uint64), 1),
    "opp_state": (opportunity.OPP_STATE_DTYPE, 1), "opp_params": (triangles.PARAMS_DTYPE, 1),
    "opp_cand": (triangles.CANDIDATE_DTYPE, 1), "opp_cap": (np.dtype(np.float64), 1),
    "opp_ring": (opportunity.OPP_DTYPE, 1), "opp_ring_ctrl": (np.dtype(np.int64), 1),
    "opp_ctl": (np.dtype(np.int64), 1), "tri_bound": (np.dtype(np.float64), 1),
    "ok_plan": (orderkern.PLAN_DTYPE, 1), "ok_body": (np.dtype(np.uint8), 2),
    "ok_tmpl": (np.dtype(np.uint8), 1), "ok_ctl": (np.dtype(np.int64), 1),
    "ok_req": (np.dtype(np.uint8), 2), "ok_info": (orderkern.INFO_DTYPE, 1),
    "ok_scr": (np.dtype(np.uint8), 1), "ok_w": (np.dtype(np.int64), 1),
}
# fill_rings rows: one per slot, the slot's fill ring (rings.alloc_ring) by address
FR_BUF, FR_CAP, FR_CTRL, FR_CTRL_LEN = 0, 1, 2, 3


def fill_ring_table(fill_rings) -> np.ndarray:
    t = np.zeros((max(1, len(fill_rings)), 4), np.int64)
    for k, (buf, ctrl) in enumerate(fill_rings):
        if buf.dtype != rings.FILL_DTYPE or ctrl.dtype != np.int64:
            raise ValueError(f"fill ring {k}: {buf.dtype} / {ctrl.dtype}")
        t[k] = (buf.ctypes.data, len(buf), ctrl.ctypes.data, len(ctrl))
    return t


def _void_ptr(addr):
    """The address as a pointer numba.carray accepts (Python side: ctypes)."""
    return ctypes.c_void_p(int(addr))


@intrinsic
def _void_ptr_jit(typingctx, addr):
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(addr), codegen


@overload(_void_ptr)
def _void_ptr_ol(addr):
    return lambda addr: _void_ptr_jit(addr)


@njit(cache=True, inline="always")
def _a1(tab, name, dtype):
    k = 4 * name
    return carray(_void_ptr(tab[k]), (tab[k + 1],), dtype)


@njit(cache=True)
def unpack(tab):
    """The pipeline arrays of the table, in on_level2's order (refill_min in its place)."""
    px = 4 * I_PX
    sz = 4 * I_SZ
    return (
        _a1(tab, I_CHANGES, l2wire.CHANGE_DTYPE), _a1(tab, I_HDR, l2wire.L2HDR_DTYPE),
        _a1(tab, I_STATE, books.BOOK_DTYPE),
        carray(_void_ptr(tab[px]), (tab[px + 1], tab[px + 2], tab[px + 3]), np.float64),
        carray(_void_ptr(tab[sz]), (tab[sz + 1], tab[sz + 2], tab[sz + 3]), np.float64),
        _a1(tab, I_PEND, books.PENDING_DTYPE), _a1(tab, I_PCTL, books.PENDCTL_DTYPE),
        tab[T_REFILL_MIN],
        _a1(tab, I_SYMTAB, triangles.SYMBOL_DTYPE), _a1(tab, I_TRIS, triangles.TRIANGLE_DTYPE),
        _a1(tab, I_SYM_TRI_START, np.int32), _a1(tab, I_SYM_TRI_LIST, np.int32),
        _a1(tab, I_BALANCES, np.float64), _a1(tab, I_MAX_START, np.float64),
        _a1(tab, I_PARAMS, triangles.PARAMS_DTYPE), _a1(tab, I_CANDS, triangles.CANDIDATE_DTYPE),
        _a1(tab, I_EVC, np.int64), _a1(tab, I_SLOTS, slots.INFLIGHT_DTYPE),
        _a1(tab, I_PSTATE, np.int64), _a1(tab, I_COUNTERS, np.int64),
        _a1(tab, I_STAGE, rings.SIGNAL_DTYPE), _a1(tab, I_CONTROL, np.int64),
        _a1(tab, I_TRI_LAST_NS, np.int64), _a1(tab, I_REEVAL, np.int8),
        _a1(tab, I_BACKOFF_NS, np.int64), _a1(tab, I_TRI_BOUND, np.float64),
    )


@njit(cache=True)
def unpack_symbols(tab):
    nm = 4 * I_SYM_NAMES
    return (_a1(tab, I_SYM_SLOTS, np.int32),
            carray(_void_ptr(tab[nm]), (tab[nm + 1], tab[nm + 2]), np.uint8),
            _a1(tab, I_SYM_LENS, np.int32))


@njit(cache=True)
def unpack_private(tab):
    ac = 4 * I_HOT_ACC
    fr = 4 * I_FILL_RINGS
    raw = 4 * I_FILL_RAW
    return (_a1(tab, I_FILL_STAGE, rings.FILL_DTYPE),
            carray(_void_ptr(tab[raw]), (tab[raw + 1], tab[raw + 2]), np.uint8),
            carray(_void_ptr(tab[fr]), (tab[fr + 1], tab[fr + 2]), np.int64),
            carray(_void_ptr(tab[ac]), (tab[ac + 1], tab[ac + 2], tab[ac + 3]), np.float64),
            _a1(tab, I_HOT_ACC_CORR, np.uint64))


@njit(cache=True)
def unpack_opp(tab):
    """The opportunity journal's arrays (opportunity.track's last seven arguments)."""
    return (_a1(tab, I_OPP_STATE, opportunity.OPP_STATE_DTYPE),
            _a1(tab, I_OPP_PARAMS, triangles.PARAMS_DTYPE),
            _a1(tab, I_OPP_CAND, triangles.CANDIDATE_DTYPE), _a1(tab, I_OPP_CAP, np.float64),
            _a1(tab, I_OPP_RING, opportunity.OPP_DTYPE), _a1(tab, I_OPP_RING_CTRL, np.int64),
            _a1(tab, I_OPP_CTL, np.int64))


@njit(cache=True)
def unpack_order(tab):
    """orderkern.build_leg0's arrays, after (slot, stage)."""
    bd = 4 * I_OK_BODY
    rq = 4 * I_OK_REQ
    return (_a1(tab, I_OK_PLAN, orderkern.PLAN_DTYPE),
            carray(_void_ptr(tab[bd]), (tab[bd + 1], tab[bd + 2]), np.uint8),
            _a1(tab, I_OK_TMPL, np.uint8), _a1(tab, I_OK_CTL, np.int64),
            carray(_void_ptr(tab[rq]), (tab[rq + 1], tab[rq + 2]), np.uint8),
            _a1(tab, I_OK_INFO, orderkern.INFO_DTYPE), _a1(tab, I_OK_SCR, np.uint8),
            _a1(tab, I_OK_W, np.int64))


@njit(nogil=True, cache=True)
def route_fill(slot, fill, fill_rings, hot_acc, hot_acc_corr, counters, slot_table):
    """The FILL record fill[0] (of slot `slot`) into that slot's fill ring, and the hot
    thread's running totals of the leg's matches (hot_acc[slot, leg] = filled base, notional;
    they size the next leg when the hot thread fires it, executor.fire_next_from_hot).
    Only an event of the slot's current signal (slot_table corr) touches the totals: a late
    event of an earlier triangle of the slot (a stray after a fill timeout), or garbage that
    names the slot, would otherwise reset them under the triangle in flight; it still goes
    to the ring, where the executor logs strays.
    Returns ROUTED_WAKE when the executor must be woken (a leg's terminal event, or an
    update), ROUTED (it acts on the terminal event, which drains the matches with it:
    waking it for every match costs a syscall and makes it compete for the GIL while the
    hot thread is busy), or ROUTE_RING_FULL (the executor is stuck; its REST fallback
    recovers, the caller logs)."""
    rbuf = carray(_void_ptr(fill_rings[slot, FR_BUF]), (fill_rings[slot, FR_CAP],), rings.FILL_DTYPE)
    rctl = carray(_void_ptr(fill_rings[slot, FR_CTRL]), (fill_rings[slot, FR_CTRL_LEN],), np.int64)
    if not rings.ring_push(rbuf, rctl, fill, 0):
        counters[C_RING_FULL] += 1
        return ROUTE_RING_FULL
    counters[C_FILLS_ROUTED] += 1
    e = fill[0]
    leg = e["leg"]
    kind = e["kind"]
    if e["corr"] != slot_table[slot]["corr"]:
        return ROUTED_WAKE if kind == rings.FILL_FILLED or kind == rings.FILL_CANCELED else ROUTED
    if hot_acc_corr[slot] != e["corr"]:
        hot_acc[slot, :, :] = 0.0
        hot_acc_corr[slot] = e["corr"]
    if kind == rings.FILL_MATCH:
        hot_acc[slot, leg, 0] += e["match_sz"]
        hot_acc[slot, leg, 1] += e["match_px"] * e["match_sz"]
    if kind == rings.FILL_FILLED or kind == rings.FILL_CANCELED or kind == rings.FILL_UPDATE:
        return ROUTED_WAKE
    return ROUTED


@njit(nogil=True, cache=True)
def process_chunk(buf, blen, recv_ns, res, sym_slots, sym_names, sym_lens, fill, fill_raw,
                  fill_rings, hot_acc, hot_acc_corr, changes, hdr, state,
                  px, sz, pend, pctl, refill_min, symtab, tris, sym_tri_start, sym_tri_list,
                  balances, max_start, params, cands, evc, slot_table, pstate, counters, stage,
                  control, tri_last_ns, reeval, backoff_ns, tri_bound, ostate, oparams, ocand, ocap,
                  obuf, octrl, octl, ok_plan, ok_body, ok_tmpl, ok_ctl, ok_req, ok_info, ok_scr, ok_w,
                  read_ahead):
    """Walk the frames of buf[res[R_POS]:blen] (see the module docstring). Returns the slot of
    a staged signal (res[R_POS] is the frame after it: call again), OTHERS_FULL, STREAM_ERROR,
    or NO_SIGNAL when every complete frame is handled (res[R_POS] is where a partial frame
    starts). The caller zeroes R_POS, R_NOTHER, R_NSNAP and sets R_BAD_START to -1 per chunk.
    After each level2 frame's decision, opportunity.track follows its symbol's triangles;
    after a frame that staged a signal, only at the next call (leg 0 goes out first).
    A staged signal's leg-0 request is built before the return (orderkern.build_leg0).

    Read-ahead (read_ahead > 1, docs/design.md 6.1): a level2 frame and the whole level2 frames
    right behind it in the buffer, up to read_ahead, are parsed and applied first, then each
    symbol they changed is decided once, newest first (the symbol of the last frame), on books
    that hold every frame of the read so far. A frame behind the one that completes a mispricing no
    longer waits for the search of every triangle through the frames ahead of it (measured: each
    frame ahead cost ~15 us). A signal returns mid-window; the symbols left are decided at the
    next call, before any new frame is cut. read_ahead = 1 is the per-frame order."""
    pos = res[R_POS]
    if res[R_OPP_SYM] >= 0:
        opportunity.track(res[R_OPP_SYM], recv_ns, True, state, px, sz, symtab, tris,
                          sym_tri_start, sym_tri_list, tri_last_ns, tri_bound, ostate, oparams,
                          ocand, ocap, obuf, octrl, octl)
        res[R_OPP_SYM] = -1
    while True:
        if res[R_WIN_I] < res[R_WIN_N]:      # a window applied (below, or before a signal)
            slot = _decide_window(res, recv_ns, state, px, sz, symtab, tris, sym_tri_start,
                                  sym_tri_list, balances, max_start, params, cands, evc, slot_table,
                                  pstate, counters, stage, control, tri_last_ns, reeval, backoff_ns,
                                  tri_bound, ostate, oparams, ocand, ocap, obuf, octrl, octl, ok_plan,
                                  ok_body, ok_tmpl, ok_ctl, ok_req, ok_info, ok_scr, ok_w)
            if slot >= 0:
                res[R_POS] = pos
                return slot
        st, b0, s, e = wsread.next_frame(buf, pos, blen)
        if st != wsread.F_OK:
            res[R_POS] = pos
            res[R_STATUS] = st
            return pipeline.NO_SIGNAL if st == wsread.F_INCOMPLETE else STREAM_ERROR
        sym = -2
        if b0 == 0x80 | wsread.OP_TEXT:    # a whole text frame: maybe level2
            sym = topics.level2_symbol(buf, s, e, sym_slots, sym_names, sym_lens)
            if sym == -2 and topics.find(buf, s, e, ORDER_SUBJECT) >= 0:
                # docs/kucoin.md 4.1: one of our orders (or a foreign one: handed back)
                slot = privwire.parse_order_change(buf[s:e], fill, fill_raw, recv_ns,
                                                   fill_rings.shape[0])
                if slot >= 0:
                    pos = e
                    counters[C_MSGS] += 1
                    counters[C_BYTES] += e - s
                    counters[C_PRIVATE] += 1
                    st = route_fill(slot, fill, fill_rings, hot_acc, hot_acc_corr, counters,
                                    slot_table)
                    if st != ROUTED:
                        res[R_POS] = pos
                        res[R_FILL_SLOT] = slot
                        res[R_FILL_STATUS] = st
                        return FILL_EVENT
                    continue
        if sym == -2:
            n = res[R_NOTHER]
            if n == OTHERS_CAP:
                res[R_POS] = pos
                return OTHERS_FULL
            res[R_OTHERS + 3 * n] = b0
            res[R_OTHERS + 3 * n + 1] = s
            res[R_OTHERS + 3 * n + 2] = e
            res[R_NOTHER] = n + 1
            pos = e
            continue
        pos = e
        counters[C_MSGS] += 1
        counters[C_BYTES] += e - s
        if sym == -1:
            counters[C_UNKNOWN] += 1
            continue
        if sym == -3:
            counters[pipeline.C_BAD] += 1
            res[R_BAD_START] = s
            res[R_BAD_END] = e
            continue
        counters[C_L2_MSGS] += 1
        res[R_WIN_N] = 0
        res[R_WIN_I] = 0
        _apply_frame(buf, s, e, sym, recv_ns, res, changes, hdr, state, px, sz, pend, pctl,
                     refill_min, symtab, tris, sym_tri_start, sym_tri_list, pstate, counters,
                     tri_last_ns, tri_bound, ostate, oparams, ocand, ocap, obuf, octrl, octl)
        nfr = 1
        while nfr < read_ahead:
            st, b0, s, e = wsread.next_frame(buf, pos, blen)
            if st != wsread.F_OK or b0 != 0x80 | wsread.OP_TEXT:
                break
            sym = topics.level2_symbol(buf, s, e, sym_slots, sym_names, sym_lens)
            if sym < 0:
                break          # not a level2 frame of a known symbol: the loop takes it next
            pos = e
            nfr += 1
            counters[C_MSGS] += 1
            counters[C_BYTES] += e - s
            counters[C_L2_MSGS] += 1
            _apply_frame(buf, s, e, sym, recv_ns, res, changes, hdr, state, px, sz, pend, pctl,
                         refill_min, symtab, tris, sym_tri_start, sym_tri_list, pstate, counters,
                         tri_last_ns, tri_bound, ostate, oparams, ocand, ocap, obuf, octrl, octl)


@njit(nogil=True, cache=True)
def _apply_frame(buf, s, e, sym, recv_ns, res, changes, hdr, state, px, sz, pend, pctl, refill_min,
                 symtab, tris, sym_tri_start, sym_tri_list, pstate, counters, tri_last_ns, tri_bound,
                 ostate, oparams, ocand, ocap, obuf, octrl, octl):
    """process_chunk: parse and apply the level2 frame buf[s:e] of `sym`; a changed book's symbol
    joins the window, at its end (once: a symbol already in it moves to the end, with this
    frame's stamps); a frame that changed nothing is handed to the opportunity journal now,
    as not evaluated."""
    st = pipeline.apply_l2(buf[s:e], sym, recv_ns, changes, hdr, state, px, sz, pend, pctl,
                           refill_min, pstate, counters)
    if pstate[pipeline.P_NEED_SNAP] != 0 and res[R_NSNAP] < SNAPS_CAP:
        res[R_SNAPS + res[R_NSNAP]] = sym
        res[R_NSNAP] += 1
    if st == pipeline.BAD_FRAME:     # counted by apply_l2
        res[R_BAD_START] = s
        res[R_BAD_END] = e
    if st != pipeline.L2_EVALUATE:
        opportunity.track(sym, recv_ns, False, state, px, sz, symtab, tris, sym_tri_start,
                          sym_tri_list, tri_last_ns, tri_bound, ostate, oparams, ocand, ocap, obuf,
                          octrl, octl)
        return
    n = res[R_WIN_N]
    k = R_WIN
    for _ in range(n):
        if res[k] == sym:
            break
        k += 3
    if k < R_WIN + 3 * n:            # already in: the entries after it move up one
        for j in range(k, R_WIN + 3 * (n - 1)):
            res[j] = res[j + 3]
        n -= 1
    k = R_WIN + 3 * n                # (WIN_CAP >= read_ahead: room for every frame)
    res[k] = sym
    res[k + 1] = pstate[pipeline.P_PARSED_NS]
    res[k + 2] = pstate[pipeline.P_BOOK_NS]
    res[R_WIN_N] = n + 1


@njit(nogil=True, cache=True)
def _decide_window(res, recv_ns, state, px, sz, symtab, tris, sym_tri_start, sym_tri_list, balances,
                   max_start, params, cands, evc, slot_table, pstate, counters, stage, control,
                   tri_last_ns, reeval, backoff_ns, tri_bound, ostate, oparams, ocand, ocap, obuf,
                   octrl, octl, ok_plan, ok_body, ok_tmpl, ok_ctl, ok_req, ok_info, ok_scr, ok_w):
    """process_chunk: decide the window's symbols not yet decided (R_WIN_I of R_WIN_N),
    newest first: the symbol of the read's last frame, the last change the venue sent, then
    backwards (pipeline.decide_l2), each followed by the opportunity journal; at a signal, leg
    0's request is built (orderkern.build_leg0) and the slot returned, the rest left for the
    next call."""
    while res[R_WIN_I] < res[R_WIN_N]:
        k = R_WIN + 3 * (res[R_WIN_N] - 1 - res[R_WIN_I])
        res[R_WIN_I] += 1
        sym = res[k]
        if state[sym]["status"] != books.BOOK_SYNCED:
            continue                 # a later frame of the window unsynced it (journal told)
        slot = pipeline.decide_l2(sym, recv_ns, res[k + 1], res[k + 2], state, px, sz, symtab, tris,
                                  sym_tri_start, sym_tri_list, balances, max_start, params, cands,
                                  evc, slot_table, pstate, counters, stage, control, tri_last_ns,
                                  reeval, backoff_ns, tri_bound)
        if slot >= 0:
            orderkern.build_leg0(slot, stage, ok_plan, ok_body, ok_tmpl, ok_ctl, ok_req, ok_info,
                                 ok_scr, ok_w)
            res[R_OPP_SYM] = sym
            return slot
        opportunity.track(sym, recv_ns, True, state, px, sz, symtab, tris, sym_tri_start,
                          sym_tri_list, tri_last_ns, tri_bound, ostate, oparams, ocand, ocap, obuf,
                          octrl, octl)
    return pipeline.NO_SIGNAL


# -- GIL-holding entries (see pipeline.py: a nogil entry hands the GIL away mid-decision) -----
# They must stay GIL-holding for another reason too: orderkern.send_built writes leg 0 on
# the descriptor in ok_info[slot]["fd"], which OrderConn changes (and whose socket it
# closes) only while holding the GIL (docs/design.md 6.1).

@njit(cache=True)
def hot_chunk(tab, buf, blen, recv_ns, res):
    """process_chunk over the arrays of `tab` (Table.tab)."""
    res[R_ENTRY_NS] = rings.monotonic_ns()
    sym_slots, sym_names, sym_lens = unpack_symbols(tab)
    return process_chunk(buf, blen, recv_ns, res, sym_slots, sym_names, sym_lens,
                         *unpack_private(tab), *unpack(tab), *unpack_opp(tab), *unpack_order(tab),
                         tab[T_READ_AHEAD])


@njit(cache=True)
def hot_route_fill(tab, slot):
    """route_fill of the record in the table's fill_stage (a frame the chunk kernel handed
    back, read by the simdjson path)."""
    fill, _, fill_rings, hot_acc, hot_acc_corr = unpack_private(tab)
    return route_fill(slot, fill, fill_rings, hot_acc, hot_acc_corr,
                      _a1(tab, I_COUNTERS, np.int64), _a1(tab, I_SLOTS, slots.INFLIGHT_DTYPE))


@njit(cache=True)
def hot_reeval(tab, now_ns):
    """pipeline.on_reeval over the arrays of `tab`; a staged signal's leg-0 request is built
    before the return (orderkern.build_leg0)."""
    slot = pipeline.on_reeval(now_ns, *unpack(tab))
    if slot >= 0:
        orderkern.build_leg0(slot, _a1(tab, I_STAGE, rings.SIGNAL_DTYPE), *unpack_order(tab))
    return slot


# -- keep-warm of the chunk kernel -------------------------------------------------------------

TOUCH_LEVELS = 16     # levels per book side the keep-warm reads (two cache lines of prices)


@njit(cache=True)
def touch_real(px, sz, state, tris, sym_tri_start, sym_tri_list):
    """Read (never write) one value per cache line of what a real frame's decision reads first:
    each book's top TOUCH_LEVELS levels, the book states, the triangle table and the symbol ->
    triangles index, so that they are in cache when a frame comes (KernelWarm runs the
    kernel's code on copies; this is the real data). Returns a count, so nothing is skipped."""
    n = 0
    nlev = min(TOUCH_LEVELS, px.shape[2])
    for s in range(px.shape[0]):
        for side in range(2):
            for lv in range(0, nlev, 8):
                if px[s, side, lv] > 0.0 and sz[s, side, lv] > 0.0:   # (NaN: an empty level)
                    n += 1
    for s in range(state.shape[0]):
        n += state[s]["seq"]
    for t in range(tris.shape[0]):
        n += tris[t]["sym0"]
    for i in range(0, sym_tri_list.shape[0], 16):
        n += sym_tri_list[i]
    for i in range(0, sym_tri_start.shape[0], 16):
        n += sym_tri_start[i]
    return n

def _plain(x: float) -> bytes:
    """x as a plain decimal (KuCoin never sends an exponent; l2wire refuses one)."""
    return format(Decimal(repr(x)), "f").encode()


def private_copy(sh):
    """A copy of run.Shared that the kernels can run on without reaching anything real (the
    start-up warm-up in run.py, KernelWarm): every array copied; rings of its own, since the
    rings are (buffer, control) tuples that an array-by-array copy would share (a fill record
    would reach a real executor, an opportunity the real journal); and no order connection, so
    a staged signal may build leg 0's request but never write it (orderkern.send_built). The
    universe and the symbol table are shared: read-only after start-up."""
    import copy
    sc = copy.copy(sh)
    for name, value in vars(sh).items():
        if isinstance(value, np.ndarray):
            setattr(sc, name, value.copy())
    sc.fill_rings = [rings.alloc_ring(buf.dtype, len(buf)) for buf, _ in sh.fill_rings]
    sc.opp_ring = rings.alloc_ring(sh.opp_ring[0].dtype, len(sh.opp_ring[0]))
    sc.ok_info["fd"] = -1
    sc.ok_ctl[orderkern.C_SEND] = 0
    return sc


class KernelWarm:
    """Runs hot_chunk (frame cut, topic lookup, parse, book apply, every triangle through the
    symbol screened and searched in depth) on scratch copies of the shared arrays while the
    hot thread is idle (HotLoop._keep_warm, every
    warm_interval_us), so that the kernel's code is in the CPU's caches when a real frame
    comes. Measured (profiles/README.md, "keep-warm of the kernel"): on an AMD EPYC guest the
    kernel ran several times slower per signal in a live session than in a loop, the code
    being cold after each idle period (docs/design.md 9).

    Owner: the hot thread only. It never writes a shared array: the copies are its own
    (private_copy: books, pending buffers, slots, stage, counters, fill and opportunity rings,
    no order connection), and the universe arrays and symbol table it reads are read-only
    after start-up. Its books are a snapshot of the real ones (`refresh`, taken by the hot
    thread itself between frames), so the evaluation walks real depth, and each pass lifts one book by 10 % so that the triangles selling that symbol
    show an edge and run the whole way: search in depth, pick, slot, staged signal (all into
    the copies); its params ignore book age."""

    def __init__(self, sh, min_books_synced: int = 1):
        sc = private_copy(sh)
        sc.params[0]["min_profit_bps"] = -1e9
        sc.params[0]["flags"] = sc.params[0]["flags"] | triangles.EVAL_IGNORE_AGE
        sc.control[:] = 0                      # never halted
        self.sh, self.sc = sh, sc
        self.table = Table(sc, sh.symtable)
        self.res = alloc_result()
        self.names = [s.encode() for s in sh.universe.symbols]
        self.k = 0
        self.ready = False
        self.EDGE = 1.10
        self.min_books_synced = min_books_synced
        self.touch = True    # warm_books: touch_real on the real arrays at every pass

    def refresh(self) -> bool:
        """Copy the real books (hot thread, between frames: the only writer of them)."""
        sh, sc = self.sh, self.sc
        synced = sh.book_state["status"] == books.BOOK_SYNCED
        if int(synced.sum()) < self.min_books_synced:
            return False
        sc.book_state[:] = sh.book_state
        sc.book_px[:] = sh.book_px
        sc.book_sz[:] = sh.book_sz
        sc.balances[:] = sh.balances
        sc.max_start[:] = sh.max_start
        self.ready = True
        return True

    def frame(self, s: int) -> np.ndarray:
        """A WebSocket frame holding a level2 update of symbol s that sets its best bid to
        what it is (a no-op change), with the next sequence of the copy's book."""
        sc = self.sc
        seq = int(sc.book_state[s]["seq"]) + 1
        if sc.book_sz[s, 0, 0] > 0.0:
            px, sz = float(sc.book_px[s, 0, 0]), float(sc.book_sz[s, 0, 0])
        else:
            px, sz = 1.0, 1.0
        name = self.names[s]
        body = (b'{"type":"message","topic":"/market/level2:%s","subject":"trade.l2update","data":'
                b'{"changes":{"asks":[],"bids":[["%s","%s","%d"]]},"sequenceEnd":%d,'
                b'"sequenceStart":%d,"symbol":"%s","time":1}}'
                % (name, _plain(px), _plain(sz), seq, seq, seq, name))
        return np.frombuffer(wsread.text_header(len(body)) + body, np.uint8).copy()

    def run_once(self) -> int:
        """One pass on the next synced symbol s of the copy: s's book is copied from the real
        one (a row: the hot thread is its only writer) and moved up by EDGE (both sides, so
        it does not cross), so the triangles that sell s show an edge and go through the
        whole search, the pick and the staging of a signal (into the copies), then a no-op
        update of s is run through hot_chunk. Returns what hot_chunk returned."""
        sh, sc = self.sh, self.sc
        n = len(self.names)
        for _ in range(n):
            self.k = (self.k + 1) % n
            if sh.book_state[self.k]["status"] == books.BOOK_SYNCED:
                break
        s = self.k
        sc.book_state[s] = sh.book_state[s]
        np.multiply(sh.book_px[s], self.EDGE, out=sc.book_px[s])
        sc.book_sz[s] = sh.book_sz[s]
        buf = self.frame(s)
        sc.slots[:] = 0                         # every slot free, no triangle retriggered
        sc.tri_last_ns[:] = -(1 << 62)
        res = self.res
        try:
            return int(hot_chunk(self.table.tab, buf, len(buf), rings.monotonic_ns(), res))
        finally:
            reset_result(res)
            sc.book_px[s] = sh.book_px[s]       # unlifted again for the next passes
            if self.touch:   # the real arrays, last: the nearest to the next frame
                uni = sh.universe
                touch_real(sh.book_px, sh.book_sz, sh.book_state, uni.tris, uni.sym_tri_start,
                           uni.sym_tri_list)
