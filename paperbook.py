"""Paper fills that consume the book: what a paper leg took is taken off the local book.

Owns: CONSUME_DTYPE (the levels one paper leg took: exec k -> hot through a per-slot SPSC
ring), `walk_levels` (the levels a market order takes, the same walk as books.walk_buy_funds /
walk_sell_size), `apply` (the hot thread subtracts them from its book), `PaperBook` (the
executor's side: collect, publish, wait until applied).

Why: a paper fill used to walk the live book and leave it untouched, so the next triangle
through the same level traded the same edge again (README: paper made ~6x the triangles of
live on the same simulator run). Now the levels a paper leg took are subtracted from the
local book before the slot is free again: the executor pushes its legs' levels, wakes the
hot thread and waits (at most `wait_ms`) until the hot thread has applied them, then
releases the slot. Slot isolation (docs/design.md 5.4) keeps every other triangle through
those books off until then. The venue's own update of such a level later sets its absolute
size (docs/kucoin.md 3.8), which replaces our subtraction: the venue's view wins once it
passes the level; levels it never touches stay consumed until a snapshot reloads the book.

Threads: the books are the hot thread's (one writer, docs/design.md 2.2); executors only
push to their ring. `paper_applied[k]` (int64, hot thread) counts the records of slot k
applied. With record = true the hot thread also records each batch (feed.K_CONSUME) so a
replay consumes the same levels at the same point of the stream.
"""
from __future__ import annotations

import math
import time

import numpy as np
from numba import njit

import books
import rings

MAX_LEVELS = 16            # levels of one leg recorded (a paper leg rarely walks more)
CONSUME_DTYPE = np.dtype([
    ("sym", "i4"), ("side", "i4"), ("n", "i4"), ("slot", "i4"),
    ("px", "f8", (MAX_LEVELS,)), ("sz", "f8", (MAX_LEVELS,)),
], align=True)
RING_CAP = 64


def alloc(nslots: int):
    """(rings, applied, scratch): one consume ring per slot (exec k -> hot), the records
    applied per slot (hot thread), the hot thread's pop buffer."""
    return ([rings.alloc_ring(CONSUME_DTYPE, RING_CAP) for _ in range(nslots)],
            np.zeros(max(1, nslots), np.int64), np.zeros(1, CONSUME_DTYPE))


@njit(nogil=True, cache=True)
def walk_levels(px, sz, sym, side, amount, base_inc, out_px, out_sz):
    """The (price, size) a market order takes: a buy of `amount` funds through the asks
    (side = SIDE_ASK; whole levels, then the partial one floored to base_inc, exactly as
    books.walk_buy_funds) or a sell of `amount` base through the bids (SIDE_BID, as
    books.walk_sell_size). Returns how many levels were written (<= len(out_px))."""
    remaining = amount
    n = 0
    for i in range(px.shape[2]):
        s = sz[sym, side, i]
        if not s > 0.0 or not remaining > 0.0 or n >= out_px.shape[0]:
            break
        p = px[sym, side, i]
        if side == books.SIDE_ASK:
            avail = remaining / p
            if s <= avail:
                take = s
            elif base_inc > 0.0:
                take = min(math.floor(avail / base_inc + 1e-9) * base_inc, s)
            else:
                take = avail
            if not take > 0.0:
                break
            remaining -= take * p
        else:
            take = min(s, remaining)
            remaining -= take
        out_px[n] = p
        out_sz[n] = take
        n += 1
        if take < s:
            break
    return n


@njit(nogil=True, cache=True)
def apply_record(rec, state, px, sz):
    """Subtract one CONSUME record's levels from the book (hot thread). A level whose price
    is no longer there (the venue changed it) is skipped; one taken whole is deleted."""
    sym = rec["sym"]
    side = rec["side"]
    nlev = state[sym]["n_bid"] if side == books.SIDE_BID else state[sym]["n_ask"]
    for j in range(rec["n"]):
        p = rec["px"][j]
        for i in range(nlev):
            if px[sym, side, i] == p:
                left = sz[sym, side, i] - rec["sz"][j]
                books.book_set_level(state, px, sz, sym, side, p,
                                     left if left > 1e-9 * rec["sz"][j] else 0.0)
                nlev = state[sym]["n_bid"] if side == books.SIDE_BID else state[sym]["n_ask"]
                break


@njit(cache=True)
def apply_held(rec, state, px, sz):
    """apply_record as a GIL-holding entry (hot thread; docs/design.md 2.4)."""
    apply_record(rec, state, px, sz)


def drain(sh, recorder=None) -> int:
    """Hot thread, at a wake-up: apply every slot's pending records (in ring order), count
    them in paper_applied, record them (feed.K_CONSUME) when recording. Returns how many."""
    scratch = sh.paper_scratch
    n = 0
    for k, (buf, ctrl) in enumerate(sh.paper_rings):
        while rings.ring_pop_held(buf, ctrl, scratch, 0):
            if recorder is not None:
                recorder.consume(scratch, time.monotonic_ns())
            apply_held(scratch[0], sh.book_state, sh.book_px, sh.book_sz)
            sh.paper_applied[k] += 1
            n += 1
    return n


class PaperBook:
    """Executor k's side: `took` after each paper leg, `publish` before the slot is released."""

    def __init__(self, sh, slot: int, wake_fd: int, wait_ms: float = 20.0):
        self.sh = sh
        self.slot = slot
        self.buf, self.ctrl = sh.paper_rings[slot]
        self.applied = sh.paper_applied
        self.wake_fd = wake_fd
        self.wait_s = wait_ms / 1000.0
        self.pending = np.zeros(3, CONSUME_DTYPE)
        self.n = 0
        self.pushed = 0
        self.late = 0           # publishes the hot thread had not applied within wait_ms

    def took(self, sym: int, side: int, amount: float, base_inc: float) -> None:
        if self.n >= len(self.pending):
            return
        r = self.pending[self.n]
        r["sym"], r["side"], r["slot"] = sym, side, self.slot
        r["n"] = walk_levels(self.sh.book_px, self.sh.book_sz, sym, side, amount, base_inc,
                             r["px"], r["sz"])
        if r["n"] > 0:
            self.n += 1

    def publish(self) -> None:
        """Hand the legs' levels to the hot thread and wait until it applied them."""
        if not self.n:
            return
        for i in range(self.n):
            while not rings.ring_push(self.buf, self.ctrl, self.pending, i):
                time.sleep(0.0005)
            self.pushed += 1
        self.n = 0
        rings.wake(self.wake_fd)
        deadline = time.monotonic() + self.wait_s
        while int(self.applied[self.slot]) < self.pushed:
            if time.monotonic() > deadline:
                self.late += 1
                return
            time.sleep(0.00005)
