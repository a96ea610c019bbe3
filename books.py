"""Order books: the book layout and the Numba kernels that keep it (snapshot, level2, BBO, walks).

Owns: BOOK_DTYPE (one row per symbol) with the level arrays px/sz[nsym, 2, depth]
(side SIDE_BID/SIDE_ASK; bids descending, asks ascending, index 0 = best; unused slots hold
px NaN, sz 0, so readers that do not take `state` stop at the first sz == 0), and the
pending buffer (PENDING_DTYPE rows + a one-row PENDCTL_DTYPE) that holds level2 messages of
books waiting for a snapshot.
Writer: the hot thread only (every kernel here that writes). Readers: evaluate and walk
kernels on the hot thread; paper fills on executors read px/sz (a torn read costs one fill
estimate, never a crash). Test: `python -m pytest -q tests/test_books.py`;
bench: `python profiles/bench_books.py`.

Sequence sanity, checked first for a book in any status (docs/kucoin.md 3.6, 3.8). With
J = pctl seq_jump_max (default SEQ_JUMP_MAX = 100,000; [engine] max_seq_jump), a message is
L2_REJECTED - nothing applied, nothing buffered, n_seq_bad += 1 - when
  sequenceStart < 0 or sequenceStart > sequenceEnd;
  sequenceEnd - sequenceStart > J (no message moves a book by that many sequences);
  a change's sequence lies outside [sequenceStart, sequenceEnd], or its price or size is < 0
  (price 0 is a sequence-only entry, size 0 a deletion; NaN cannot come out of l2wire);
  the book is SYNCED at `seq` and sequenceStart > seq + 1 + J (a jump that far is not a
  move to that sequence: the stream cannot be trusted).
A SYNCED book that rejects a message goes to RESYNCING (run dropped, snapshot wanted): the
message may have been the venue's own, so what follows cannot be relied on to connect. A
buffering book keeps its run (the message never entered it) and still wants its snapshot.
Real streams never trip this: in the 2021 capture and the 2025-26 samples every message
spans one sequence and its one change carries it; the simulator (sim/market.py flush) gives
each change the sequence that last touched its price, inside [sequenceStart, sequenceEnd],
with a span of the changes made between two messages of the symbol (tens at most).

Stale runs. A message with sequenceEnd <= the book's sequence (SYNCED), or <= the run's last
(buffering), is L2_STALE. Right after a snapshot that is normal (frames in flight that the
snapshot already holds) and `stale_run` is -1; once a message has been applied or buffered
it is not, since the venue sends each sequence once and in order: stale_run counts stale
messages since the last applied/buffered one, and at S = pctl stale_max (default
STALE_MAX = 4) the book's (or the run's) sequence has run ahead of its stream - an absurd
but in-bound sequenceEnd applied earlier, or a venue renumbering - and the message is
L2_DIVERGED (n_diverged += 1): a SYNCED book goes to RESYNCING (run dropped, snapshot
wanted); a buffering book drops its run and this message starts a new one.

Sequence rules (docs/kucoin.md 3.8), book_apply_l2 on a SYNCED book with sequence `seq`
(after the checks above):
  sequenceEnd <= seq            -> L2_STALE (skipped, n_stale += 1)
  sequenceStart > seq + 1       -> L2_GAP (status RESYNCING, n_gap += 1, message buffered)
  otherwise per change: entry sequence <= seq skipped; price 0 only advances the sequence
  (3.6); size 0 deletes; else the absolute size is set (inserted in sorted position);
  then seq = sequenceEnd, ts_ms = time (kept when the frame has none, 2021 frames), recv_ns.

Crossed books (docs/design.md 4). The evaluate kernel refuses a crossed book on every
message (triangles EVC_CROSSED). `book_scan_crossed`, run by the hot thread on a timer (not
per frame; a slice of the books per call, every book within ~0.2 s), resyncs a SYNCED book
that has stayed crossed for `grace_ns` (hot.py: 1 s): a
crossed book is wrong (a lost or misread message) or the venue's stream is; either way a
snapshot is the way back. `crossed_ns` holds when the scan first saw it crossed (0 = not).

Buffering and resync (3.8). A book that is EMPTY (never synced) or RESYNCING buffers every
message in the caller's pending buffer (L2_BUFFERED). The buffer of a symbol is always one
gap-free run of messages: state `pend_from` is the sequence the run continues from
(first message's sequenceStart - 1), `pend_last` its last sequenceEnd; a buffered duplicate
is L2_STALE; a buffered message that leaves a hole drops the run and starts a new one
(L2_GAP). When a snapshot with sequence S reaches the hot thread, book_sync_snapshot:
  S < pend_from -> SNAP_TOO_OLD: the snapshot predates the run (messages between S and the
     run are lost); book and buffer unchanged, fetch another snapshot;
  else          -> load it, replay the run's messages with sequenceEnd > S (the first one
     straddles S and its entries <= S are skipped), drop the run, SNAP_SYNCED.
  A snapshot newer than everything buffered is fine: the messages still in flight with
  sequenceEnd <= S arrive as L2_STALE and the next one must connect or it is a GAP.
Full buffer is an outcome: dead rows are compacted away first; if it is still full, the
symbol's run is dropped (n_full, pctl full) and L2_BUFFER_FULL is returned: the run restarts
at the next message and a snapshot older than it comes back SNAP_TOO_OLD.
book_reset (a dead link) drops the run (its rows are invalidated by a per-symbol epoch) and
sends a SYNCED book back to RESYNCING. Codes that mean "this book wants a snapshot":
L2_GAP, L2_BUFFERED, L2_BUFFER_FULL, L2_NEED_REFILL, L2_REJECTED, L2_DIVERGED, SNAP_TOO_OLD,
SNAP_BAD (the caller rate-limits the requests).

Depth cap and horizon. A side holds at most `depth` levels (DEPTH = 64 by default; the
public level2_100 snapshot gives 100, the signed v3 one the full book). Per side the state
keeps a horizon price hz_*_px: every level strictly better than the horizon is held, exactly;
nothing at or beyond it is known (hz = -inf for bids / +inf for asks: the side is complete).
- Snapshot load: with n levels and room for depth, levels beyond depth are dropped and the
  horizon is the first dropped price. If the source could not give more than `snap_limit`
  levels (level2_100: 100, or the width the fetcher truncated to) and n >= snap_limit, the
  side is cut there too: its worst level becomes the horizon (unknown levels may lie just
  beyond it). snap_limit = 0 means a full book (v3).
- Updates at or beyond the horizon are ignored (n_beyond); the levels between the held ones
  and such a price are unknown, so inserting it would leave a hole.
- An insert into a full side drops the worst level (or the new one if it is the worst) and
  the horizon moves in to the dropped price (n_dropped).
- Deletions thin a capped side: levels known stay exact, the book stays tradable on them,
  and when a side that has a horizon holds fewer than `refill_min` levels the book returns
  L2_NEED_REFILL on every message until a refill snapshot lands. While refilling, messages
  are applied to the live book AND buffered, so the snapshot is synced exactly as above and
  replaces the live book without a trading pause. Choose refill_min < min(depth,
  snap_limit - 1) (check_book_params) so a fresh snapshot never asks for another.

Kernels are @njit(nogil=True, cache=True, _nrt=False): no reference counting, so helper
calls that take arrays cost no atomic ops and no kernel can allocate (see l2wire.py).
"""
from __future__ import annotations

import math
import struct

import numpy as np
from numba import njit

from l2wire import SIDE_ASK, SIDE_BID, parse_l2
from rings import record_bytes

_F8 = struct.Struct("<d")

SIDE_NONE = -1       # pending row of a message that carries no change (header only)

BOOK_EMPTY = 0       # never synced: messages buffered, not tradable
BOOK_RESYNCING = 1   # gap / dead link: messages buffered, not tradable
BOOK_SYNCED = 2      # tradable

DEPTH = 64           # levels per side held (alloc_books default)
REFILL_MIN = 24      # a side with a horizon and fewer levels asks for a refill snapshot
PENDING_CAP = 1 << 17
SEQ_JUMP_MAX = 100_000   # pctl seq_jump_max default: sequence span / jump beyond which a message is absurd
STALE_MAX = 4            # pctl stale_max default: stale messages in a row after an applied one

# book_apply_l2 / book_on_frame outcomes (book_on_frame also returns l2wire's W_* < 0)
L2_APPLIED = 0
L2_STALE = 1
L2_GAP = 2
L2_BUFFERED = 3
L2_BUFFER_FULL = 4
L2_NEED_REFILL = 5
L2_REJECTED = 6      # sequence numbers inconsistent or implausible (sanity rules): not applied
L2_DIVERGED = 7      # stale_max stale messages in a row: the book's sequence ran ahead, resync
# book_load_snapshot / book_sync_snapshot outcomes
SNAP_SYNCED = 0
SNAP_TOO_OLD = 1
SNAP_IGNORED = 2     # the book is synced and wants no refill (late duplicate)
SNAP_BAD = 3         # levels not strictly ordered, non-positive, or counts out of range
# book_set_level outcomes
LV_SET = 0
LV_INSERTED = 1
LV_DELETED = 2
LV_ABSENT = 3        # delete of a price not held
LV_BEYOND = 4        # at or beyond the horizon: ignored
LV_DROPPED = 5       # inserted into a full side: the worst level fell off, horizon moved in

BOOK_DTYPE = np.dtype([
    ("seq", "i8"),          # last applied sequence
    ("ts_ms", "i8"),        # exchange ms of the last update that carried a time; snapshot time
    ("recv_ns", "i8"),      # monotonic ns the last applied frame (or the snapshot) arrived
    ("hz_bid_px", "f8"),    # horizon: bids strictly above are complete; -inf = whole side
    ("hz_ask_px", "f8"),    # horizon: asks strictly below are complete; +inf = whole side
    ("pend_from", "i8"),    # buffered run continues from this sequence; -1 = no run
    ("pend_last", "i8"),    # sequenceEnd of the run's last message
    ("n_applied", "i8"), ("n_stale", "i8"), ("n_gap", "i8"), ("n_buffered", "i8"),
    ("n_full", "i8"), ("n_snap", "i8"), ("n_snap_old", "i8"), ("n_refill", "i8"),
    ("n_beyond", "i8"), ("n_dropped", "i8"),
    ("n_seq_bad", "i8"),    # messages rejected by the sequence sanity rules
    ("n_diverged", "i8"),   # stale runs that sent the book (or its run) back to a snapshot
    ("n_crossed", "i8"),    # resyncs of a book that stayed crossed (book_scan_crossed)
    ("crossed_ns", "i8"),   # monotonic ns the crossed scan first saw it crossed; 0 = not
    ("status", "i4"),       # BOOK_EMPTY / BOOK_RESYNCING / BOOK_SYNCED
    ("n_bid", "i4"), ("n_ask", "i4"),
    ("refill", "i4"),       # 1 while a refill snapshot is wanted (book stays SYNCED)
    ("pend_epoch", "i4"),   # pending rows with another epoch are dead
    ("pend_rows", "i4"),    # live pending rows of this symbol
    ("stale_run", "i4"),    # stale messages since the last applied/buffered one; -1 = after a
                            # snapshot or reset, when stale messages are expected
], align=True)

# One buffered change (or a header-only row, side SIDE_NONE) of a buffered message.
PENDING_DTYPE = np.dtype([
    ("px", "f8"), ("sz", "f8"), ("seq", "i8"), ("msg_start", "i8"), ("msg_end", "i8"),
    ("ts_ms", "i8"), ("recv_ns", "i8"), ("sym", "i4"), ("side", "i4"), ("epoch", "i4"),
], align=True)
# The pending buffer's control row, and the sequence-sanity bounds (written once at start-up
# by run.allocate, read by the kernels).
PENDCTL_DTYPE = np.dtype([("count", "i8"), ("n_full", "i8"), ("n_compact", "i8"),
                          ("seq_jump_max", "i8"), ("stale_max", "i8")])


def alloc_books(nsym: int, depth: int = DEPTH):
    state = np.zeros(nsym, BOOK_DTYPE)
    state["hz_bid_px"] = -np.inf
    state["hz_ask_px"] = np.inf
    state["pend_from"] = -1
    state["pend_last"] = -1
    state["stale_run"] = -1
    px = np.full((nsym, 2, depth), np.nan)
    sz = np.zeros((nsym, 2, depth))
    return state, px, sz


def alloc_pending(capacity: int = PENDING_CAP, seq_jump_max: int = SEQ_JUMP_MAX,
                  stale_max: int = STALE_MAX):
    pctl = np.zeros(1, PENDCTL_DTYPE)
    pctl[0]["seq_jump_max"] = seq_jump_max
    pctl[0]["stale_max"] = stale_max
    return np.zeros(capacity, PENDING_DTYPE), pctl


def alloc_snapshot(levels: int):
    """Caller-side snapshot arrays: px/sz [2, levels] (row SIDE_BID, SIDE_ASK), counts [2]."""
    return np.full((2, levels), np.nan), np.zeros((2, levels)), np.zeros(2, np.int64)


def snapshot_arrays(data: dict, levels: int):
    """REST snapshot `data` (docs/kucoin.md 3.7, strings) -> (seq, ts_ms, px, sz, n).

    Off the hot thread (snapshot fetcher, tests). Keeps at most `levels` per side: pass
    depth + 1 so book_load_snapshot sees that the side goes on (and sets the horizon), and
    snap_limit = min(endpoint limit, levels) if the endpoint itself is capped."""
    px, sz, n = alloc_snapshot(levels)
    for side, key in ((SIDE_BID, "bids"), (SIDE_ASK, "asks")):
        rows = data[key][:levels]
        n[side] = len(rows)
        for k, (p, s) in enumerate(rows):
            px[side, k] = float(p)
            sz[side, k] = float(s)
    return int(data["sequence"]), int(data.get("time") or 0), px, sz, n


def check_book_params(depth: int, snap_limit: int, refill_min: int) -> None:
    """ValueError unless a fresh snapshot leaves every side above the refill threshold."""
    held = depth if snap_limit <= 0 else min(depth, snap_limit - 1)
    if not 0 <= refill_min < held:
        raise ValueError(f"refill_min={refill_min} must be >= 0 and < {held} (depth={depth}, "
                         f"snap_limit={snap_limit}): a fresh snapshot would ask for a refill")


# ---- side-parameterised level access ---------------------------------------------------

@njit(nogil=True, cache=True, _nrt=False)
def _key(side, p):
    """Sort key, ascending from the best level: -price for bids, price for asks."""
    return -p if side == SIDE_BID else p


@njit(nogil=True, cache=True, _nrt=False)
def _no_horizon(side):
    return -np.inf if side == SIDE_BID else np.inf


@njit(nogil=True, cache=True, _nrt=False)
def _get_n(b, side):
    return b["n_bid"] if side == SIDE_BID else b["n_ask"]


@njit(nogil=True, cache=True, _nrt=False)
def _set_n(b, side, n):
    if side == SIDE_BID:
        b["n_bid"] = n
    else:
        b["n_ask"] = n


@njit(nogil=True, cache=True, _nrt=False)
def _get_hz(b, side):
    return b["hz_bid_px"] if side == SIDE_BID else b["hz_ask_px"]


@njit(nogil=True, cache=True, _nrt=False)
def _set_hz(b, side, p):
    if side == SIDE_BID:
        b["hz_bid_px"] = p
    else:
        b["hz_ask_px"] = p


@njit(nogil=True, cache=True, _nrt=False)
def book_set_level(state, px, sz, sym, side, price, size):
    """Set one level to an absolute size (<= 0 deletes), keeping order, cap and horizon."""
    b = state[sym]
    if _key(side, price) >= _key(side, _get_hz(b, side)):
        b["n_beyond"] += 1
        return LV_BEYOND
    n = _get_n(b, side)
    k = _key(side, price)
    i = 0
    while i < n and _key(side, px[sym, side, i]) < k:   # updates cluster at the top
        i += 1
    if i < n and px[sym, side, i] == price:
        if size > 0.0:
            sz[sym, side, i] = size
            return LV_SET
        for j in range(i, n - 1):
            px[sym, side, j] = px[sym, side, j + 1]
            sz[sym, side, j] = sz[sym, side, j + 1]
        px[sym, side, n - 1] = np.nan
        sz[sym, side, n - 1] = 0.0
        _set_n(b, side, n - 1)
        return LV_DELETED
    if not size > 0.0:
        return LV_ABSENT
    depth = px.shape[2]
    out = LV_INSERTED
    if n == depth:
        b["n_dropped"] += 1
        if i == depth:                                   # the new level is the worst one
            _set_hz(b, side, price)
            return LV_DROPPED
        _set_hz(b, side, px[sym, side, depth - 1])
        n -= 1
        out = LV_DROPPED
    for j in range(n, i, -1):
        px[sym, side, j] = px[sym, side, j - 1]
        sz[sym, side, j] = sz[sym, side, j - 1]
    px[sym, side, i] = price
    sz[sym, side, i] = size
    _set_n(b, side, n + 1)
    return out


@njit(nogil=True, cache=True, _nrt=False)
def book_load_snapshot(state, px, sz, sym, seq, ts_ms, recv_ns, snap_px, snap_sz, n_bid, n_ask,
                       snap_limit):
    """Replace sym's levels by a snapshot and mark it SYNCED at `seq` (no buffered replay).

    snap_px/snap_sz [2, m]: row SIDE_BID descending, row SIDE_ASK ascending. Returns
    SNAP_SYNCED, or SNAP_BAD (book untouched) when the levels used are not strictly ordered
    or not positive."""
    depth = px.shape[2]
    for side in range(2):
        n = n_bid if side == SIDE_BID else n_ask
        if n < 0 or n > snap_px.shape[1]:
            return SNAP_BAD
        for k in range(min(n, depth + 1)):
            if not (snap_px[side, k] > 0.0 and snap_sz[side, k] > 0.0):
                return SNAP_BAD
            if k > 0 and not _key(side, snap_px[side, k - 1]) < _key(side, snap_px[side, k]):
                return SNAP_BAD
    b = state[sym]
    for side in range(2):
        n = n_bid if side == SIDE_BID else n_ask
        keep = n
        hz = _no_horizon(side)
        if n > depth:
            keep = depth
            hz = snap_px[side, depth]
        elif snap_limit > 0 and n >= snap_limit:
            keep = n - 1
            hz = snap_px[side, n - 1]
        for k in range(keep):
            px[sym, side, k] = snap_px[side, k]
            sz[sym, side, k] = snap_sz[side, k]
        for k in range(keep, depth):
            px[sym, side, k] = np.nan
            sz[sym, side, k] = 0.0
        _set_n(b, side, keep)
        _set_hz(b, side, hz)
    b["seq"] = seq
    b["ts_ms"] = ts_ms
    b["recv_ns"] = recv_ns
    b["status"] = BOOK_SYNCED
    b["refill"] = 0
    b["stale_run"] = -1           # frames in flight that the snapshot holds are stale: normal
    b["crossed_ns"] = 0
    b["n_snap"] += 1
    return SNAP_SYNCED


# ---- level2 messages -------------------------------------------------------------------

@njit(nogil=True, cache=True, _nrt=False)
def _apply_entry(state, px, sz, sym, side, price, size, entry_seq, base_seq):
    # docs/kucoin.md 3.8: per-entry sequences <= the book's sequence before this message
    # are already in the book; 3.6: price "0" entries only advance the sequence.
    if entry_seq <= base_seq or price == 0.0 or side < 0:
        return
    book_set_level(state, px, sz, sym, side, price, size)


@njit(nogil=True, cache=True, _nrt=False)
def _finish_msg(b, seq_end, ts_ms, recv_ns):
    b["seq"] = seq_end
    b["stale_run"] = 0
    if ts_ms >= 0:
        b["ts_ms"] = ts_ms
    b["recv_ns"] = recv_ns
    b["n_applied"] += 1


@njit(nogil=True, cache=True, _nrt=False)
def _thin(b, refill_min):
    """A side cut at a horizon holds fewer than refill_min levels."""
    return ((b["hz_bid_px"] > -np.inf and b["n_bid"] < refill_min)
            or (b["hz_ask_px"] < np.inf and b["n_ask"] < refill_min))


@njit(nogil=True, cache=True, _nrt=False)
def _pend_reset(b):
    b["pend_epoch"] += 1          # every row of the old run is dead from now on
    b["pend_rows"] = 0
    b["pend_from"] = -1
    b["pend_last"] = -1
    if b["status"] != BOOK_SYNCED:
        b["stale_run"] = -1       # no run: nothing can be stale against it


@njit(nogil=True, cache=True, _nrt=False)
def _pend_compact(state, pend, pctl):
    w = 0
    for r in range(pctl[0]["count"]):
        s = pend[r]["sym"]
        if s < 0 or pend[r]["epoch"] != state[s]["pend_epoch"]:
            continue
        if w != r:                      # field-wise copy: valid with and without JIT
            pend[w]["px"] = pend[r]["px"]
            pend[w]["sz"] = pend[r]["sz"]
            pend[w]["seq"] = pend[r]["seq"]
            pend[w]["msg_start"] = pend[r]["msg_start"]
            pend[w]["msg_end"] = pend[r]["msg_end"]
            pend[w]["ts_ms"] = pend[r]["ts_ms"]
            pend[w]["recv_ns"] = pend[r]["recv_ns"]
            pend[w]["sym"] = s
            pend[w]["side"] = pend[r]["side"]
            pend[w]["epoch"] = pend[r]["epoch"]
        w += 1
    pctl[0]["count"] = w
    pctl[0]["n_compact"] += 1


@njit(nogil=True, cache=True, _nrt=False)
def _pend_push(state, pend, pctl, sym, seq_start, seq_end, ts_ms, recv_ns, changes, n_changes):
    """Append one message (max(n_changes, 1) rows). False when the buffer is full."""
    rows = max(n_changes, 1)
    if pctl[0]["count"] + rows > pend.shape[0]:
        _pend_compact(state, pend, pctl)
        if pctl[0]["count"] + rows > pend.shape[0]:
            pctl[0]["n_full"] += 1
            return False
    b = state[sym]
    w = pctl[0]["count"]
    for k in range(rows):
        row = pend[w + k]
        if n_changes > 0:
            row["px"] = changes[k]["px"]
            row["sz"] = changes[k]["sz"]
            row["seq"] = changes[k]["seq"]
            row["side"] = changes[k]["side"]
        else:
            row["side"] = SIDE_NONE
            row["seq"] = seq_end
        row["msg_start"] = seq_start
        row["msg_end"] = seq_end
        row["ts_ms"] = ts_ms
        row["recv_ns"] = recv_ns
        row["sym"] = sym
        row["epoch"] = b["pend_epoch"]
    pctl[0]["count"] = w + rows
    b["pend_rows"] += rows
    return True


@njit(nogil=True, cache=True, _nrt=False)
def _stale(b, pctl):
    """One more stale message: L2_STALE, or L2_DIVERGED at stale_max in a row after an
    applied/buffered one (module docstring, stale runs). The caller acts on L2_DIVERGED."""
    b["n_stale"] += 1
    if b["stale_run"] < 0:
        return L2_STALE
    b["stale_run"] += 1
    if b["stale_run"] < pctl[0]["stale_max"]:
        return L2_STALE
    b["n_diverged"] += 1
    return L2_DIVERGED


@njit(nogil=True, cache=True, _nrt=False)
def seq_sane(state, sym, seq_start, seq_end, changes, n_changes, jump_max):
    """The sequence sanity rules of the module docstring: True when the message may go on."""
    if seq_start < 0 or seq_start > seq_end or seq_end - seq_start > jump_max:
        return False
    for k in range(n_changes):
        c = changes[k]
        q = c["seq"]
        # `not x >= 0.0` is also true for NaN (which l2wire never produces)
        if q < seq_start or q > seq_end or not c["px"] >= 0.0 or not c["sz"] >= 0.0:
            return False
    b = state[sym]
    if b["status"] == BOOK_SYNCED and seq_start - b["seq"] > jump_max + 1:
        return False
    return True


@njit(nogil=True, cache=True, _nrt=False)
def _buffer_msg(state, pend, pctl, sym, seq_start, seq_end, ts_ms, recv_ns, changes, n_changes):
    """Add a message to sym's gap-free run: L2_BUFFERED / L2_STALE / L2_GAP / L2_BUFFER_FULL /
    L2_DIVERGED (the run was dropped and this message starts a new one)."""
    b = state[sym]
    out = L2_BUFFERED
    if b["pend_from"] >= 0:
        if seq_end <= b["pend_last"]:
            out = _stale(b, pctl)
            if out == L2_STALE:
                return out
            _pend_reset(b)                    # the run ran ahead of its stream
        elif seq_start > b["pend_last"] + 1:  # hole inside the run: start a new run here
            b["n_gap"] += 1
            _pend_reset(b)
            out = L2_GAP
    if not _pend_push(state, pend, pctl, sym, seq_start, seq_end, ts_ms, recv_ns, changes,
                      n_changes):
        b["n_full"] += 1
        _pend_reset(b)
        return L2_BUFFER_FULL
    if b["pend_from"] < 0:
        b["pend_from"] = seq_start - 1
    b["pend_last"] = seq_end
    b["stale_run"] = 0
    b["n_buffered"] += 1
    return out


@njit(nogil=True, cache=True, _nrt=False)
def book_apply_l2(state, px, sz, sym, seq_start, seq_end, ts_ms, recv_ns, changes, n_changes,
                  pend, pctl, refill_min):
    """One level2 message (changes[0:n_changes] from l2wire.parse_l2) for book `sym`.

    Returns L2_APPLIED / L2_STALE / L2_GAP / L2_BUFFERED / L2_BUFFER_FULL / L2_NEED_REFILL /
    L2_REJECTED / L2_DIVERGED (module docstring). ts_ms < 0 means the frame had no time."""
    b = state[sym]
    if not seq_sane(state, sym, seq_start, seq_end, changes, n_changes, pctl[0]["seq_jump_max"]):
        b["n_seq_bad"] += 1
        if b["status"] == BOOK_SYNCED:
            b["status"] = BOOK_RESYNCING
            b["refill"] = 0
            _pend_reset(b)
        return L2_REJECTED
    if b["status"] != BOOK_SYNCED:
        return _buffer_msg(state, pend, pctl, sym, seq_start, seq_end, ts_ms, recv_ns, changes,
                           n_changes)
    base = b["seq"]
    if seq_end <= base:                       # docs/kucoin.md 3.8: already in the book
        r = _stale(b, pctl)
        if r == L2_DIVERGED:                  # ... 4 in a row: the book ran ahead, resync
            b["status"] = BOOK_RESYNCING
            b["refill"] = 0
            _pend_reset(b)
        return r
    if seq_start > base + 1:                  # 3.8 / 8.3: messages were lost -> resync
        b["n_gap"] += 1
        b["status"] = BOOK_RESYNCING
        b["refill"] = 0
        _pend_reset(b)
        r = _buffer_msg(state, pend, pctl, sym, seq_start, seq_end, ts_ms, recv_ns, changes,
                        n_changes)
        return L2_BUFFER_FULL if r == L2_BUFFER_FULL else L2_GAP
    for k in range(n_changes):
        c = changes[k]
        _apply_entry(state, px, sz, sym, c["side"], c["px"], c["sz"], c["seq"], base)
    _finish_msg(b, seq_end, ts_ms, recv_ns)
    if b["refill"] != 0:
        # Refilling: the live book trades on, and the same messages go to the run the
        # refill snapshot will be synced with.
        if _pend_push(state, pend, pctl, sym, seq_start, seq_end, ts_ms, recv_ns, changes,
                      n_changes):
            b["pend_last"] = seq_end
        else:
            b["n_full"] += 1
            b["refill"] = 0
            _pend_reset(b)
    if b["refill"] == 0 and _thin(b, refill_min):
        b["refill"] = 1
        b["n_refill"] += 1
        _pend_reset(b)
        b["pend_from"] = seq_end              # the run starts after this message
        b["pend_last"] = seq_end
    return L2_NEED_REFILL if b["refill"] != 0 else L2_APPLIED


@njit(nogil=True, cache=True, _nrt=False)
def book_sync_snapshot(state, px, sz, pend, pctl, sym, seq, ts_ms, recv_ns, snap_px, snap_sz,
                       n_bid, n_ask, snap_limit):
    """A REST snapshot for `sym` reached the hot thread: load it and replay the buffered run.

    Returns SNAP_SYNCED / SNAP_TOO_OLD / SNAP_IGNORED / SNAP_BAD (module docstring)."""
    b = state[sym]
    if b["status"] == BOOK_SYNCED and b["refill"] == 0:
        return SNAP_IGNORED
    if b["pend_from"] >= 0 and seq < b["pend_from"]:
        b["n_snap_old"] += 1
        return SNAP_TOO_OLD
    r = book_load_snapshot(state, px, sz, sym, seq, ts_ms, recv_ns, snap_px, snap_sz, n_bid,
                           n_ask, snap_limit)
    if r != SNAP_SYNCED:
        return r
    epoch = b["pend_epoch"]
    left = b["pend_rows"]
    cnt = pctl[0]["count"]
    i = 0
    while i < cnt and left > 0:
        if pend[i]["sym"] != sym or pend[i]["epoch"] != epoch:
            i += 1
            continue
        m_start = pend[i]["msg_start"]
        m_end = pend[i]["msg_end"]
        base = b["seq"]
        if m_start > base + 1 and m_end > base:   # cannot happen for a gap-free run
            b["status"] = BOOK_RESYNCING
            b["n_gap"] += 1
            _pend_reset(b)
            return SNAP_TOO_OLD
        go = m_end > base                         # else already inside the snapshot
        j = i
        while (j < cnt and pend[j]["sym"] == sym and pend[j]["epoch"] == epoch
               and pend[j]["msg_end"] == m_end):
            if go:
                _apply_entry(state, px, sz, sym, pend[j]["side"], pend[j]["px"], pend[j]["sz"],
                             pend[j]["seq"], base)
            j += 1
        if go:
            _finish_msg(b, m_end, pend[j - 1]["ts_ms"], pend[j - 1]["recv_ns"])
        left -= j - i
        i = j
    _pend_reset(b)
    live = 0
    for s in range(state.shape[0]):
        live += state[s]["pend_rows"]
    if live == 0:
        pctl[0]["count"] = 0
    return SNAP_SYNCED


@njit(nogil=True, cache=True, _nrt=False)
def book_scan_crossed(state, px, sz, now_ns, grace_ns, out, start, count):
    """Hot thread, on a timer: books start .. start+count-1 (wrapping around; the caller
    walks all books a slice at a time: one call of 64 books measured 1.6 us). A SYNCED book crossed
    (bid >= ask) since at least grace_ns ago goes back to RESYNCING (n_crossed += 1); its
    row is written to out[0:k] (the caller requests its snapshot) and k is returned. A book
    no longer crossed forgets when it was."""
    k = 0
    nsym = state.shape[0]
    for j in range(min(count, nsym)):
        sym = (start + j) % nsym
        b = state[sym]
        if b["status"] != BOOK_SYNCED or not book_crossed(px, sz, sym):
            if b["crossed_ns"] != 0:
                b["crossed_ns"] = 0
            continue
        if b["crossed_ns"] == 0:
            b["crossed_ns"] = now_ns
        elif now_ns - b["crossed_ns"] >= grace_ns and k < out.shape[0]:
            b["crossed_ns"] = 0
            b["n_crossed"] += 1
            book_reset(state, sym)
            out[k] = sym
            k += 1
    return k


@njit(nogil=True, cache=True, _nrt=False)
def book_reset(state, sym):
    """The symbol's stream is broken (dead link): drop its run; SYNCED -> RESYNCING."""
    b = state[sym]
    if b["status"] == BOOK_SYNCED:
        b["status"] = BOOK_RESYNCING
    b["refill"] = 0
    _pend_reset(b)


@njit(nogil=True, cache=True, _nrt=False)
def book_on_frame(frame, sym, recv_ns, changes, hdr, state, px, sz, pend, pctl, refill_min):
    """parse_l2 + book_apply_l2 in one call: an L2_* code, or l2wire's W_* (< 0)."""
    n = parse_l2(frame, changes, hdr)
    if n < 0:
        return n
    h = hdr[0]
    return book_apply_l2(state, px, sz, sym, h["seq_start"], h["seq_end"], h["ts_ms"], recv_ns,
                         changes, n, pend, pctl, refill_min)


# ---- readers: BBO, crossed, walks (state-free: they stop at the first sz == 0) ----------
# They do not look at `status`: a RESYNCING or EMPTY book keeps its last levels, so the
# caller (triangle evaluation) must skip books that are not BOOK_SYNCED, too old, or crossed.

@njit(nogil=True, cache=True, _nrt=False)
def book_best(px, sz, sym, side):
    """(price, size) of the best level of a side, or (nan, 0.0) if the side is empty."""
    if sz[sym, side, 0] > 0.0:
        return px[sym, side, 0], sz[sym, side, 0]
    return np.nan, 0.0


@njit(nogil=True, cache=True, _nrt=False)
def best_bid(px, sz, sym):
    return book_best(px, sz, sym, SIDE_BID)[0]


class BestBid:
    """best_bid for Python callers on the order path: `BestBid(px, sz)(sym)` is the best bid of
    symbol sym, 0.0 when that side is empty (check_leg_limits treats 0.0 and NaN alike: no
    bid). Read with struct from the books' bytes: between two orders a numpy item read costs
    ~2 us of cold code, and a kernel call more (profiles/README.md)."""

    def __init__(self, px: np.ndarray, sz: np.ndarray):
        if px.shape != sz.shape or px.strides != sz.strides or not px.flags.c_contiguous:
            raise ValueError("BestBid: px and sz must be C-contiguous arrays of one shape")
        self.px = record_bytes(px)
        self.sz = record_bytes(sz)
        self.stride = px.strides[0]
        self.side_off = SIDE_BID * px.strides[1]

    def __call__(self, sym: int) -> float:
        off = sym * self.stride + self.side_off
        return _F8.unpack_from(self.px, off)[0] if _F8.unpack_from(self.sz, off)[0] > 0.0 else 0.0


@njit(nogil=True, cache=True, _nrt=False)
def best_ask(px, sz, sym):
    return book_best(px, sz, sym, SIDE_ASK)[0]


@njit(nogil=True, cache=True, _nrt=False)
def book_crossed(px, sz, sym):
    """Both sides present and best bid >= best ask: the book is wrong, do not trade it."""
    return sz[sym, SIDE_BID, 0] > 0.0 and sz[sym, SIDE_ASK, 0] > 0.0 and \
        px[sym, SIDE_BID, 0] >= px[sym, SIDE_ASK, 0]


@njit(nogil=True, cache=True, _nrt=False)
def book_depth_sz(sz, sym, side):
    """Total size held on a side (a sell larger than this runs out of known depth)."""
    t = 0.0
    for i in range(sz.shape[2]):
        s = sz[sym, side, i]
        if not s > 0.0:
            break
        t += s
    return t


@njit(nogil=True, cache=True, _nrt=False)
def walk_buy_funds(px, sz, sym, funds, base_inc):
    """Market buy by funds through the asks, before fees: (base_received, notional_spent).

    A whole level is taken when the funds cover it; otherwise the take is floored to
    base_inc (tolerant floor: +1e-9 increments absorbs the float error of x/inc) and the walk
    stops, since the leftover cannot buy one increment here or at any worse price. Running
    out of held levels returns what was filled (notional < funds)."""
    remaining = funds
    base = 0.0
    spent = 0.0
    for i in range(px.shape[2]):
        s = sz[sym, SIDE_ASK, i]
        if not s > 0.0 or not remaining > 0.0:
            break
        p = px[sym, SIDE_ASK, i]
        avail = remaining / p
        if s <= avail:
            take = s
        elif base_inc > 0.0:
            take = min(math.floor(avail / base_inc + 1e-9) * base_inc, s)
        else:
            take = avail
        if not take > 0.0:
            break
        cost = take * p
        base += take
        spent += cost
        remaining -= cost
        if take < s:
            break
    return base, spent


@njit(nogil=True, cache=True, _nrt=False)
def walk_sell_size(px, sz, sym, size):
    """Market sell of `size` base through the bids, before fees: notional received.

    Running out of held levels returns the notional of what was filled (compare the size
    with book_depth_sz to see it)."""
    remaining = size
    notional = 0.0
    for i in range(px.shape[2]):
        s = sz[sym, SIDE_BID, i]
        if not s > 0.0 or not remaining > 0.0:
            break
        take = min(s, remaining)
        notional += take * px[sym, SIDE_BID, i]
        remaining -= take
    return notional
