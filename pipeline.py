"""The fused per-frame kernel: level2 bytes -> book -> triangles -> slot -> staged signal.

Owner: the hot thread. hotctx.process_chunk (one kernel call per socket read, from hot.py)
calls `on_level2` once per /market/level2 frame; hot.py calls `hot_snapshot` once per REST
snapshot that comes back from the maintenance thread.
One Numba call per frame, so the Python -> Numba boundary is paid once (docs/design.md 9):
  parse (l2wire) -> apply under KuCoin's sequence rules (books, docs/kucoin.md 3.8)
  -> evaluate every triangle through the symbol (triangles) -> best candidate whose
  triangle, symbols and primary are free (slots isolation) -> acquire the slot and write
  the signal into the one-row staging array `sig_stage`.
hot.py then fires leg 0 itself (fire_from = hot) or not, publishes the staged signal to the
slot's ring and wakes the executor. Staging instead of publishing here lets the hot thread
fire leg 0 before the executor can see the signal.

Return value of on_level2: the acquired slot (>= 0), or NO_SIGNAL / BAD_FRAME (unparseable,
or rejected by books.py's sequence sanity rules). Whether the book wants a REST snapshot
(new, gap, rejected frame, stale run, buffer full, thinned past its refill threshold)
is reported separately in pstate[P_NEED_SNAP], because a book being refilled is still
tradable and may signal in the same call.

Counters written here: the hot counters (pipeline.HOT_COUNTERS names; hot thread only)
and the evaluation counters (triangles.EVC_*).
"""
from __future__ import annotations

import numpy as np
from numba import njit

import books
import l2wire
import rings
import slots
import triangles

NO_SIGNAL = -1
BAD_FRAME = -3
NEED_SNAPSHOT = -2   # on_snapshot only: ask again
L2_EVALUATE = -20    # apply_l2 only: the book changed, decide_l2 next

# Counters: one int64 cell each, written only by the hot thread, read by run.py's status line.
HOT_COUNTERS = (
    "msgs", "bytes", "l2_msgs", "applied", "stale", "gaps", "buffered", "buffer_full",
    "refills", "resyncs", "snapshots", "snapshot_too_old", "evals", "candidates", "signals",
    "no_slot", "ring_full", "bad_frames", "unknown_symbol", "private_msgs", "fills_routed",
    "fills_unrouted", "balances", "reconnects", "pong_missed", "ws_errors", "acks", "notices",
    "fired_leg0", "retrigger_skips", "reevals", "balances_ignored", "rate_backoff",
    "fired_next_leg", "bound_skips",
    # level2 messages rejected by books' sequence sanity rules (also in bad_frames); stale
    # runs that sent a book back to a snapshot; books resynced for staying crossed
    "seq_rejects", "diverged", "crossed_resyncs",
    # exceptions the hot thread caught outside frame parsing (its order path, timers,
    # snapshots): each one logged with what it was doing
    "hot_errors",
    # links that came up (the first connects and every reconnect): links up = link_ups -
    # reconnects (metrics.py, alerts.py)
    "link_ups",
    # legs 0 sent with the request the chunk kernel built (orderkern.py; of fired_leg0)
    "leg0_kernel",
    # ... of which the kernel also wrote (orderkern.send_built; leg0_send = kernel)
    "leg0_wire",
)
C = {name: i for i, name in enumerate(HOT_COUNTERS)}
C_APPLIED, C_STALE, C_GAPS = C["applied"], C["stale"], C["gaps"]
C_BUFFERED, C_BUFFER_FULL, C_REFILLS = C["buffered"], C["buffer_full"], C["refills"]
C_EVALS, C_CANDIDATES, C_NO_SLOT, C_BAD = C["evals"], C["candidates"], C["no_slot"], C["bad_frames"]
C_SNAPSHOTS, C_SNAP_OLD = C["snapshots"], C["snapshot_too_old"]
C_RETRIGGER = C["retrigger_skips"]
C_REEVALS = C["reevals"]
C_RATE_BACKOFF = C["rate_backoff"]
C_BOUND_SKIPS = C["bound_skips"]
C_SEQ_REJECTS, C_DIVERGED = C["seq_rejects"], C["diverged"]

# pstate cells (int64): hot thread only
P_NEED_SNAP = 0      # 1 when the last call's book wants a snapshot
P_CORR_NEXT = 1      # next correlation id
P_VCLOCK = 2         # 1 = replay (replay.py): every stamp is the frame's recorded recv_ns,
                     # no wall clock, so a replay is deterministic (ages, retrigger, stamps)
P_PARSED_NS = 3      # apply_l2's stamps of the frame it applied (decide_l2's parsed_ns, book_ns)
P_BOOK_NS = 4
PSTATE_LEN = 8


def alloc_counters() -> np.ndarray:
    return np.zeros(len(HOT_COUNTERS), np.int64)


def alloc_pstate(run_id: int) -> np.ndarray:
    """corr = run_id << 24 | n: unique across runs (clientOids must not repeat, 5.2)."""
    p = np.zeros(PSTATE_LEN, np.int64)
    p[P_CORR_NEXT] = (run_id & 0xFFFFFFFF) << 24
    return p


@njit(nogil=True, cache=True)
def _stage_signal(c, corr, now_ns, recv_ns, parsed_ns, book_ns, stage, origin):
    s = stage[0]
    s["origin"] = origin
    s["corr"] = corr
    s["tri"] = c["tri"]
    s["start_vol"] = c["start_vol"]
    s["exp_out"] = c["exp_out"]
    s["profit"] = c["profit"]
    s["pred_bps"] = c["bps"]
    s["bid0"] = c["bid0"]; s["ask0"] = c["ask0"]
    s["bid1"] = c["bid1"]; s["ask1"] = c["ask1"]
    s["bid2"] = c["bid2"]; s["ask2"] = c["ask2"]
    s["bid_sz0"] = c["bid_sz0"]; s["ask_sz0"] = c["ask_sz0"]
    s["bid_sz1"] = c["bid_sz1"]; s["ask_sz1"] = c["ask_sz1"]
    s["bid_sz2"] = c["bid_sz2"]; s["ask_sz2"] = c["ask_sz2"]
    s["book_ts_ms"] = c["book_ts_ms"]
    s["lim0"] = c["lim0"]
    s["base0"] = c["base0"]
    s["recv_ns"] = recv_ns
    s["parsed_ns"] = parsed_ns
    s["book_ns"] = book_ns
    s["eval_ns"] = now_ns
    s["push_ns"] = 0


@njit(nogil=True, cache=True)
def pick_and_stage(n, cands, tris, slot_table, pstate, counters, recv_ns, parsed_ns, book_ns,
                   eval_ns, stage, tri_last_ns, retrigger_ns, origin, backoff_ns):
    """Best-bps candidate whose triangle passes isolation -> acquire its slot, stage the
    signal; returns the slot or NO_SIGNAL. Candidates refused by isolation are skipped
    (the next best may use other symbols). A triangle signalled less than retrigger_ns ago
    is skipped: in paper mode our fills do not consume the book, and in live mode the
    books may not yet show our own fills, so the same opportunity would fire again."""
    for k in range(len(backoff_ns)):
        # an executor saw 429000 (docs/kucoin.md 7.1): no order until the pool's window resets
        if backoff_ns[k] > eval_ns:
            counters[C_RATE_BACKOFF] += 1
            return NO_SIGNAL
    for i in range(n):
        if eval_ns - tri_last_ns[cands[i]["tri"]] < retrigger_ns:
            cands[i]["outcome"] = -1
            counters[C_RETRIGGER] += 1
    tried = 0
    while tried < n:
        best = -1
        best_bps = -1e300
        for i in range(n):
            if cands[i]["outcome"] == triangles.EVC_CANDIDATES and cands[i]["bps"] > best_bps:
                best = i
                best_bps = cands[i]["bps"]
        if best < 0:
            return NO_SIGNAL
        c = cands[best]
        t = tris[c["tri"]]
        corr = pstate[P_CORR_NEXT]
        slot = slots.try_acquire(slot_table, np.uint64(corr), c["tri"], t["sym0"], t["sym1"],
                                 t["sym2"], t["primary"])
        if slot >= 0:
            pstate[P_CORR_NEXT] = corr + 1
            tri_last_ns[c["tri"]] = eval_ns
            _stage_signal(c, np.uint64(corr), eval_ns, recv_ns, parsed_ns, book_ns, stage, origin)
            return slot
        counters[C_NO_SLOT] += 1
        cands[best]["outcome"] = -2   # refused for want of a slot: try the next best
        tried += 1
    return NO_SIGNAL


@njit(nogil=True, cache=True)
def evaluate_best(sym, now_ns, state, px, sz, symtab, tris, sym_tri_start, sym_tri_list,
                  balances, max_start, params, cands, evc, slot_table, tri_last_ns,
                  retrigger_ns, counters, reeval, tri_bound=None):
    """Branch and bound over the triangles through `sym`: screen them all (exact top-of-book
    bound, triangles.screen_triangle, tens of ns each), then run the full depth-aware volume
    search (triangles.evaluate_triangle, ~1-3 us each) best bound first, only on triangles
    that could get an isolated slot now and are past their retrigger interval, and stop as
    soon as no remaining bound can beat the best bps found. Same best candidate as searching
    everything (a bound is never below the bps its search finds), at a fraction of the cost
    when one update lights up many triangles (a mispriced hub book: hundreds). Writes
    candidates to cands[0:n] and returns n; sets reeval[sym] when a promising triangle was
    skipped for want of a slot. tri_bound (optional, one cell per triangle): each screened
    triangle's top-of-book bound in bps (-inf when a book cannot be traded), which the
    opportunity journal reads after the decision instead of screening again (opportunity.py)."""
    start = sym_tri_start[sym]
    end = sym_tri_start[sym + 1]
    m = 0
    for idx in range(start, end):
        t = sym_tri_list[idx]
        code, bound = triangles.screen_triangle(t, now_ns, state, px, sz, symtab, tris, params)
        if tri_bound is not None:
            tri_bound[t] = bound
        evc[triangles.EVC_TRIANGLES] += 1
        if code != triangles.EVC_CANDIDATES:
            evc[code] += 1
            continue
        if now_ns - tri_last_ns[t] < retrigger_ns:
            counters[C_RETRIGGER] += 1
            continue
        # the screen's scratch: cands rows past what phase 2 can fill are not needed, so
        # the list of (triangle, bound) lives in two spare fields of the tail rows
        j = cands.shape[0] - 1 - m
        if j < 0:
            counters[C_BOUND_SKIPS] += 1
            continue
        cands[j]["tri"] = t
        cands[j]["gap_bps"] = bound
        m += 1
    n = 0
    best = params[0]["min_profit_bps"]
    last = cands.shape[0] - 1
    while m > 0:
        # best remaining bound (the list is short: a linear scan beats sorting)
        jb = -1
        bb = -np.inf
        for i in range(m):
            b = cands[last - i]["gap_bps"]
            if b > bb:
                bb = b
                jb = i
        if bb < best:
            counters[C_BOUND_SKIPS] += m
            break
        t = cands[last - jb]["tri"]
        # remove it: move the list's last entry into its place
        cands[last - jb]["tri"] = cands[last - (m - 1)]["tri"]
        cands[last - jb]["gap_bps"] = cands[last - (m - 1)]["gap_bps"]
        m -= 1
        tr = tris[t]
        if slots.find_free_slot(slot_table, t, tr["sym0"], tr["sym1"], tr["sym2"], tr["primary"]) < 0:
            counters[C_NO_SLOT] += 1
            reeval[sym] = 1
            continue
        if n > last - m:          # the candidate rows would overwrite the pending list
            counters[C_BOUND_SKIPS] += m + 1
            break
        code = triangles.evaluate_triangle(t, now_ns, state, px, sz, symtab, tris, balances,
                                           max_start, params, cands, n)
        evc[code] += 1
        if code == triangles.EVC_CANDIDATES:
            if cands[n]["gap_bps"] > 0.0:
                evc[triangles.EVC_INEXACT] += 1
            if cands[n]["bps"] > best:
                best = cands[n]["bps"]
            n += 1
    return n


@njit(nogil=True, cache=True)
def on_level2(frame, sym, recv_ns, changes, hdr, state, px, sz, pend, pctl, refill_min,
              symtab, tris, sym_tri_start, sym_tri_list, balances, max_start, params, cands,
              evc, slot_table, pstate, counters, stage, control, tri_last_ns, reeval, backoff_ns,
              tri_bound=None):
    """One /market/level2 frame for symbol `sym` (see the module docstring): apply_l2, then
    decide_l2 when the book changed. control[0] != 0 (written by the main thread at shutdown)
    keeps books and evaluation going but hands out no slot; control[1] is the retrigger
    interval in ns (main thread, set before start)."""
    st = apply_l2(frame, sym, recv_ns, changes, hdr, state, px, sz, pend, pctl, refill_min, pstate,
                  counters)
    if st != L2_EVALUATE:
        return st
    return decide_l2(sym, recv_ns, pstate[P_PARSED_NS], pstate[P_BOOK_NS], state, px, sz, symtab,
                     tris, sym_tri_start, sym_tri_list, balances, max_start, params, cands, evc,
                     slot_table, pstate, counters, stage, control, tri_last_ns, reeval, backoff_ns,
                     tri_bound)


@njit(nogil=True, cache=True)
def apply_l2(frame, sym, recv_ns, changes, hdr, state, px, sz, pend, pctl, refill_min, pstate,
             counters):
    """Parse a level2 frame of `sym` and apply it under the sequence rules: L2_EVALUATE when
    the book changed (its stamps in pstate[P_PARSED_NS], [P_BOOK_NS]), else NO_SIGNAL or
    BAD_FRAME; pstate[P_NEED_SNAP] says whether the book wants a snapshot."""
    pstate[P_NEED_SNAP] = 0
    vclock = pstate[P_VCLOCK] != 0
    nch = l2wire.parse_l2(frame, changes, hdr)
    parsed_ns = recv_ns if vclock else rings.monotonic_ns()
    if nch < 0:
        counters[C_BAD] += 1
        return BAD_FRAME
    h = hdr[0]
    st = books.book_apply_l2(state, px, sz, sym, h["seq_start"], h["seq_end"], h["ts_ms"], recv_ns,
                             changes, nch, pend, pctl, refill_min)
    book_ns = recv_ns if vclock else rings.monotonic_ns()
    if st == books.L2_STALE:
        counters[C_STALE] += 1
        return NO_SIGNAL
    if st == books.L2_REJECTED:
        # books.py "Sequence sanity": the frame is logged by the caller, the book resyncs
        counters[C_SEQ_REJECTS] += 1
        counters[C_BAD] += 1
        pstate[P_NEED_SNAP] = 1
        return BAD_FRAME
    if st == books.L2_APPLIED or st == books.L2_NEED_REFILL:
        counters[C_APPLIED] += 1
        if st == books.L2_NEED_REFILL:
            counters[C_REFILLS] += 1
            pstate[P_NEED_SNAP] = 1
    else:
        if st == books.L2_GAP:
            counters[C_GAPS] += 1
        elif st == books.L2_DIVERGED:
            counters[C_DIVERGED] += 1
        elif st == books.L2_BUFFER_FULL:
            counters[C_BUFFER_FULL] += 1
        else:
            counters[C_BUFFERED] += 1
        pstate[P_NEED_SNAP] = 1
        return NO_SIGNAL
    pstate[P_PARSED_NS] = parsed_ns
    pstate[P_BOOK_NS] = book_ns
    return L2_EVALUATE


@njit(nogil=True, cache=True)
def decide_l2(sym, recv_ns, parsed_ns, book_ns, state, px, sz, symtab, tris, sym_tri_start,
              sym_tri_list, balances, max_start, params, cands, evc, slot_table, pstate, counters,
              stage, control, tri_last_ns, reeval, backoff_ns, tri_bound=None):
    """Every triangle through `sym`, whose book just changed: the best candidate, a slot and a
    staged signal (the slot), or NO_SIGNAL."""
    vclock = pstate[P_VCLOCK] != 0
    n = evaluate_best(sym, book_ns, state, px, sz, symtab, tris, sym_tri_start, sym_tri_list,
                      balances, max_start, params, cands, evc, slot_table, tri_last_ns,
                      control[1], counters, reeval, tri_bound)
    counters[C_EVALS] += 1
    if n == 0:
        return NO_SIGNAL
    counters[C_CANDIDATES] += n
    if control[0] != 0:
        return NO_SIGNAL
    eval_ns = recv_ns if vclock else rings.monotonic_ns()
    slot = pick_and_stage(n, cands, tris, slot_table, pstate, counters, recv_ns, parsed_ns,
                          book_ns, eval_ns, stage, tri_last_ns, control[1], rings.ORIGIN_FRAME,
                          backoff_ns)
    if slot < 0 and _any_refused(n, cands):
        reeval[sym] = 1
    return slot


@njit(nogil=True, cache=True)
def _any_refused(n, cands):
    for i in range(n):
        if cands[i]["outcome"] == -2:
            return True
    return False


@njit(nogil=True, cache=True)
def on_reeval(now_ns, changes, hdr, state, px, sz, pend, pctl, refill_min, symtab, tris,
              sym_tri_start, sym_tri_list, balances, max_start, params, cands, evc, slot_table,
              pstate, counters, stage, control, tri_last_ns, reeval, backoff_ns, tri_bound=None):
    """Re-evaluate the symbols whose candidates were refused for want of a free, isolated
    slot (reeval[sym] = 1). Evaluation is driven by book updates, and the update that
    showed an opportunity is often the last one for a while (frequently our own fill of
    another triangle through the same book), so without this an opportunity that outlives
    a busy slot is never looked at again. The hot thread calls this when an executor
    releases its slot. Returns a slot (signal staged; call again for more) or NO_SIGNAL.
    recv_ns of such a signal is now_ns: no frame triggered it."""
    if control[0] != 0:
        return NO_SIGNAL
    for sym in range(len(reeval)):
        if reeval[sym] == 0:
            continue
        reeval[sym] = 0
        n = evaluate_best(sym, now_ns, state, px, sz, symtab, tris, sym_tri_start, sym_tri_list,
                          balances, max_start, params, cands, evc, slot_table, tri_last_ns,
                          control[1], counters, reeval, tri_bound)
        counters[C_REEVALS] += 1
        if n == 0:
            continue
        counters[C_CANDIDATES] += n
        eval_ns = now_ns if pstate[P_VCLOCK] != 0 else rings.monotonic_ns()
        slot = pick_and_stage(n, cands, tris, slot_table, pstate, counters, now_ns, now_ns,
                              now_ns, eval_ns, stage, tri_last_ns, control[1],
                              rings.ORIGIN_REEVAL, backoff_ns)
        if _any_refused(n, cands):
            reeval[sym] = 1
        if slot >= 0:
            return slot
    return NO_SIGNAL


@njit(nogil=True, cache=True)
def on_snapshot(snap, state, px, sz, pend, pctl, snap_limit, counters):
    """A REST snapshot record (maint.snapshot_dtype) -> load + replay. Returns 0 when the
    book is synced (or needed nothing), NEED_SNAPSHOT when it must be fetched again."""
    r = snap[0]
    st = books.book_sync_snapshot(state, px, sz, pend, pctl, r["sym"], r["seq"], r["ts_ms"],
                                  rings.monotonic_ns(), r["px"], r["sz"], r["n_bid"], r["n_ask"],
                                  snap_limit)
    if st == books.SNAP_SYNCED:
        counters[C_SNAPSHOTS] += 1
        return 0
    if st == books.SNAP_IGNORED:
        return 0
    counters[C_SNAP_OLD] += 1
    return NEED_SNAPSHOT


# -- hot-thread entry point: the same kernel, but holding the GIL --------------------------
# A nogil dispatcher releases the GIL on entry and takes it back on return. For a call of a
# few microseconds on the hot thread that is a loss: any runnable thread (an executor
# parsing a response, the log thread formatting a report) takes the GIL, and the hot thread
# then waits for it for at least the switch interval, often far longer (the GIL convoy of
# docs/design.md 9). Inner calls between jitted functions never touch the GIL, so only
# entry points differ; the level2 and re-evaluation entries are in hotctx.py.

@njit(cache=True)
def hot_snapshot(snap, state, px, sz, pend, pctl, snap_limit, counters):
    return on_snapshot(snap, state, px, sz, pend, pctl, snap_limit, counters)
