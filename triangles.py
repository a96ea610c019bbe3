"""Triangles: the evaluate kernel (depth-aware sizing of every triangle through a symbol).

Owns: the record layouts PARAMS_DTYPE and CANDIDATE_DTYPE with their `alloc_*` functions,
the EVC_* outcome codes / counter cells, and the kernels `screen_triangle`,
`evaluate_triangle` and `evaluate_symbol`. The universe they evaluate (symbols, triangles,
SYMBOL_DTYPE, TRIANGLE_DTYPE, LEG_BUY / LEG_SELL) is built at start-up by universe.py.

Thread: the hot thread, inside the fused kernel: pipeline.evaluate_best runs
`screen_triangle` and `evaluate_triangle` (branch and bound) over the triangles through the
updated symbol after each book update (Numba, nogil, no allocation); `evaluate_symbol` is the
same walk without the pick, for tests and profiles/bench_evaluate.py. Reads: book state/px/sz (written by the hot thread itself),
`balances` (written by the hot thread from the private balance feed), `max_start`, params.
Writes: the caller-owned `out` rows and `counters` cells (one writer: the hot thread).

A triangle starts and ends in a primary quote P: P -> X -> Y -> P, three distinct
symbols; leg k converts ccy_k -> ccy_{k+1} and is LEG_BUY (ccy_k is the symbol's quote:
market buy by `funds`, consumes asks) or LEG_SELL (ccy_k is the base: market sell by
`size`, consumes bids).

Execution model (what `_forward` computes; the executor does the same, cascade.py):
- buy leg holding Q quote: funds = floor_to(quote_inc, Q / (1+fee)) (the taker fee is
  charged on top, docs/kucoin.md 6.6); walk the asks: whole levels, then
  the partial match floored to base_inc (leftover funds cannot buy one more increment);
  receives that base. Needs quote_min <= funds <= quote_max and funds >= min_funds.
- sell leg holding B base: size = floor_to(base_inc, B); walk the bids; receives
  notional * (1 - fee) quote. Needs base_min <= size <= base_max and
  size * best_bid >= min_funds (docs/kucoin.md 5.9: KuCoin checks lastPrice; best bid is our
  estimate of it).
- an order must be filled inside the walked depth (min(levels held, max_levels)); what we
  cannot see we do not predict.
- V (leg-0 input, in P) is a multiple of leg 0's order increment; profit = out(V) - V
  (the unspent dust of leg 0 is counted as spent: conservative); bps = profit / V * 1e4.

Search for the best V (exactness and limits):
1. Screen: out(V) <= m_top * V, where m_top is the product of the three top-of-book
   rates after fees (the unfloored output is concave with out(0) = 0, and flooring only
   lowers it). If (m_top - 1) * 1e4 < min_profit_bps nothing can signal: skip. Exact, and
   it rejects almost every triangle in a few ns.
2. Feasible interval [V_lo, V_hi] on the V lattice, exact: every order amount is monotone
   in V, so minimums bound V from below and maximums, walked depth, the available balance
   and max_start from above. Both ends come from `_vmin`: the smallest lattice V whose
   leg-k amount reaches a value, computed backwards through the legs with ceilings.
3. Relaxation: without floors each leg is a concave piecewise-linear map, so the relaxed
   profit is concave and peaks where the marginal rate r0*r1*r2 falls to 1.
   `_continuous_best` walks the three books at once (all breakpoints of the three legs
   merged in V space, O(levels)) and returns that V_c.
4. Floors: out(V) is a step function. For each class variable (the order amount of each
   leg, the base receipt of each buy leg) the output depends on V only through it, so the
   best V is the smallest V of its class {V : var(V) = value}, a tight point (`_tight_v`,
   computed backwards through the legs). Evaluate V_lo, V_hi and V_c's lattice point,
   then walk the classes of the variable with the fewest values in [V_lo, V_hi] down and
   up from V_c's class, evaluating each tight point. The relaxed profit bounds a class and
   falls monotonically away from V_c (concavity), so a direction stops at the first class
   whose bound is within search_tol_bps of the best found (of max(best, 0) without
   EMIT_ALL: a class that cannot profit cannot change the decision). Ties: smaller V.
Exactness: the result is the optimum of the execution model over every lattice V, within
params.search_tol_bps (default 0.1 bps of V), unless a direction reached params.max_scan
classes (default 32); then the row's gap_bps bounds what an unsearched V could add and
EVC_INEXACT counts it. That happens when the profit surface is flat at the increment scale
(relaxed marginal rate near 1 over many classes, so the flooring noise of about one
increment per leg decides which V wins); the loss is then at most gap_bps. Floors and
ceilings accept a float error of 1e-12 relative (as cascade.py), so an amount exactly on a
multiple is not floored one step down. Receipts serve as class variables only when the
level sizes are multiples of base_inc (KuCoin order sizes are). tests/test_triangles.py
checks all of this against an exhaustive Decimal reference.

Kernels are @njit(nogil=True, cache=True, _nrt=False) as in books.py: nothing here
allocates, and without reference counting the helper calls that take arrays cost no atomic
operations (5x faster on the screen path, profiles/bench_evaluate.py).

Run tests: `python -m pytest -q tests/test_triangles.py`.
Benchmark: `python profiles/bench_evaluate.py` (line profile: run it with
NUMBA_DISABLE_JIT=1 under kernprof).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from books import BOOK_SYNCED, SIDE_ASK, SIDE_BID   # book codes are owned by books.py
from universe import LEG_BUY, LEG_SELL, SYMBOL_DTYPE, TRIANGLE_DTYPE   # noqa: F401 (layouts
# of the start-up universe, owned by universe.py; re-exported for the kernels' callers)

EVC_TRIANGLES = 0   # triangles looked at
EVC_NOT_SYNCED = 1  # a book is EMPTY or RESYNCING
EVC_STALE = 2       # a book's last frame is older than max_book_age_ms
EVC_EMPTY = 3       # a book has no level on the side the leg consumes
EVC_CROSSED = 4     # a book has best bid >= best ask
EVC_NO_EDGE = 5     # top-of-book bound below min_profit_bps (exact, step 1)
EVC_NO_SIZE = 6     # no start volume meets minimums, maximums, depth, balance, max_start
EVC_NO_PROFIT = 7   # best profit <= 0 after rounding
EVC_BELOW_BPS = 8   # profitable but below min_profit_bps at the best volume
EVC_CANDIDATES = 9  # candidate row written
EVC_OUT_FULL = 10   # a candidate was found but `out` was full (dropped)
EVC_INEXACT = 11    # not an outcome: candidates whose search stopped with gap_bps > 0
EVC_LEN = 16

# params flags
EVAL_EMIT_ALL = 1     # also write rows for NO_PROFIT / BELOW_BPS (tests, monitoring), no screen
EVAL_IGNORE_AGE = 2   # do not check book age (replays whose recv_ns are from another clock)

REL_TOL = 1e-12       # float tolerance of floors/ceilings; looser than cascade.REL_TOL (4e-15)
                      # because these are predictions: the order's own amount is floored
                      # exactly by cascade.size_leg
UNIT_TOL = 1e-3       # ... never more than this fraction of an increment (cascade.UNIT_TOL)

# Evaluation parameters, one row; written by run.py at start-up.
PARAMS_DTYPE = np.dtype([
    ("min_profit_bps", "f8"),
    ("max_book_age_ms", "f8"),   # against book recv_ns (local monotonic ns)
    ("max_levels", "i4"),        # depth walked per leg
    ("flags", "i4"),             # EVAL_* bits
    ("max_scan", "i4"),          # classes step 4 evaluates per direction (then gap_bps > 0)
    ("search_tol_bps", "f8"),    # step 4 stops once no class further out can add more
], align=True)

# Candidate rows written by the hot thread into a caller-owned array.
CANDIDATE_DTYPE = np.dtype([
    ("tri", "i4"),
    ("outcome", "i4"),           # EVC_CANDIDATES (or NO_PROFIT/BELOW_BPS with EMIT_ALL)
    ("start_vol", "f8"),         # V, leg-0 input in the primary (ccy0)
    ("exp_out", "f8"),           # predicted leg-2 output in ccy0, after fees and floors
    ("profit", "f8"),            # exp_out - start_vol, ccy0
    ("bps", "f8"),               # profit / start_vol * 1e4
    ("gap_bps", "f8"),           # bound on what an unsearched volume could add (0: exact)
    ("bid0", "f8"), ("ask0", "f8"), ("bid1", "f8"), ("ask1", "f8"),
    ("bid2", "f8"), ("ask2", "f8"),          # best prices at evaluation (NaN if side empty)
    ("bid_sz0", "f8"), ("ask_sz0", "f8"), ("bid_sz1", "f8"), ("ask_sz1", "f8"),
    ("bid_sz2", "f8"), ("ask_sz2", "f8"),    # sizes at those prices, base units
    ("amt0", "f8"), ("amt1", "f8"), ("amt2", "f8"),  # predicted order amounts: funds (buy)
                                                     # or size (sell) of each leg
    ("lim0", "f8"),              # leg 0's worst price walked for amt0 (leg0_order = ioc:
                                 # the IOC limit price, docs/kucoin.md 5.10)
    ("base0", "f8"),             # leg 0's base size for an IOC limit: what the walk buys
                                 # (capped so price*size*(1+fee) fits the balance), or amt0
    ("book_ts_ms", "i8"),        # oldest exchange ts_ms of the three books
    ("eval_ns", "i8"),           # now_ns passed to the kernel
], align=True)


def alloc_params(min_profit_bps=10.0, max_book_age_ms=2000.0, max_levels=20, flags=0,
                 max_scan=32, search_tol_bps=0.1):
    p = np.zeros(1, PARAMS_DTYPE)
    p[0]["min_profit_bps"] = min_profit_bps
    p[0]["max_book_age_ms"] = max_book_age_ms
    p[0]["max_levels"] = max_levels
    p[0]["flags"] = flags
    p[0]["max_scan"] = max_scan
    p[0]["search_tol_bps"] = search_tol_bps
    return p


def alloc_candidates(capacity):
    return np.zeros(capacity, CANDIDATE_DTYPE)


def alloc_eval_counters():
    return np.zeros(EVC_LEN, np.int64)


# --------------------------------------------------------------------------------------
# Kernel helpers. A "lattice" value is n * inc with n an integer-valued float.

@njit(nogil=True, cache=True, _nrt=False)
def _floor_n(x, inc, mag):
    """Largest n with n*inc <= x; x may be a few ulps of `mag` below a true multiple."""
    q = x / inc
    n = np.floor(q)
    gap = n + 1.0 - q
    if gap <= UNIT_TOL and gap <= REL_TOL * mag / inc:
        n += 1.0
    return n


@njit(nogil=True, cache=True, _nrt=False)
def _ceil_n(x, inc, mag):
    """Smallest n with n*inc >= x; x may be a few ulps of `mag` above a true multiple."""
    q = x / inc
    n = np.ceil(q)
    gap = q - (n - 1.0)
    if gap <= UNIT_TOL and gap <= REL_TOL * mag / inc:
        n -= 1.0
    return n


@njit(nogil=True, cache=True, _nrt=False)
def _book_side(leg_side):
    # A buy consumes the asks, a sell the bids.
    return SIDE_ASK if leg_side == LEG_BUY else SIDE_BID


@njit(nogil=True, cache=True, _nrt=False)
def _order_amount(hold, leg_side, fee, inc):
    """Order amount (funds for a buy, size for a sell) from `hold` of the spent currency;
    a buy keeps fee*funds aside: the fee is charged on top (docs/kucoin.md 6.6)."""
    if leg_side == LEG_BUY:
        x = hold / (1.0 + fee)
        return _floor_n(x, inc, x) * inc
    return _floor_n(hold, inc, hold) * inc


@njit(nogil=True, cache=True, _nrt=False)
def _hold_needed(amount, leg_side, fee):
    """Smallest holding of the spent currency that yields order `amount` (continuous)."""
    if leg_side == LEG_BUY:
        return amount * (1.0 + fee)
    return amount


@njit(nogil=True, cache=True, _nrt=False)
def _fill(px, sz, sym, leg_side, fee, base_inc, nlev, amount):
    """Currency received by a market order of `amount` walking `nlev` levels: base for a
    buy by funds (partial match floored to base_inc), quote after fee for a sell by size.
    An amount beyond the walked depth gets the whole depth (the caller rejects it)."""
    side = _book_side(leg_side)
    if leg_side == LEG_BUY:
        spent = 0.0
        base = 0.0
        for i in range(nlev):
            p = px[sym, side, i]
            s = sz[sym, side, i]
            c = p * s
            if spent + c <= amount * (1.0 + REL_TOL):
                spent += c
                base += s
            else:
                base += _floor_n((amount - spent) / p, base_inc, amount / p) * base_inc
                break
        return base
    left = amount
    notional = 0.0
    for i in range(nlev):
        take = min(left, sz[sym, side, i])
        notional += take * px[sym, side, i]
        left -= take
        if left <= amount * REL_TOL:
            break
    return notional * (1.0 - fee)


@njit(nogil=True, cache=True, _nrt=False)
def _fill_inverse(px, sz, sym, leg_side, fee, base_inc, inc, nlev, target):
    """Smallest order amount on the leg's lattice whose `_fill` receives >= target;
    inf when the walked depth cannot deliver it."""
    if target <= 0.0:
        return 0.0
    side = _book_side(leg_side)
    cum_s = 0.0
    cum_q = 0.0
    if leg_side == LEG_BUY:
        for i in range(nlev):
            p = px[sym, side, i]
            s = sz[sym, side, i]
            if cum_s + s >= target * (1.0 - REL_TOL):
                take = _ceil_n(target - cum_s, base_inc, target) * base_inc
                funds = cum_q + (s * p if take >= s else take * p)
                return _ceil_n(funds, inc, funds) * inc
            cum_s += s
            cum_q += s * p
        return np.inf
    need = target / (1.0 - fee)       # notional before the fee
    for i in range(nlev):
        p = px[sym, side, i]
        s = sz[sym, side, i]
        if cum_q + s * p >= need * (1.0 - REL_TOL):
            size = cum_s + min(s, (need - cum_q) / p)
            return _ceil_n(size, inc, size) * inc
        cum_s += s
        cum_q += s * p
    return np.inf


@njit(nogil=True, cache=True, _nrt=False)
def _leg0_ioc(px, sz, sym, leg_side, fee, base_inc, nlev, amount, balance):
    """(worst price, base size) of leg 0 as a limit IOC order (leg0_order = ioc, docs/design.md
    6.7, docs/kucoin.md 5.10): the price of the last level the market order of `amount`
    would touch (the walk `_fill` does), and the base it would take. A buy's limit holds
    price * size * (1 + fee) (6.6), more than the market order's funds: the size is capped so
    that the hold fits `balance`, floored to base_inc. A sell's size is `amount` itself."""
    side = _book_side(leg_side)
    worst = np.nan
    if leg_side == LEG_BUY:
        spent = 0.0
        base = 0.0
        for i in range(nlev):
            p = px[sym, side, i]
            s = sz[sym, side, i]
            c = p * s
            if spent + c <= amount * (1.0 + REL_TOL):
                spent += c
                base += s
                worst = p
            else:
                part = _floor_n((amount - spent) / p, base_inc, amount / p) * base_inc
                if part > 0.0:
                    base += part
                    worst = p
                break
        if worst > 0.0:
            cap = balance / (worst * (1.0 + fee))
            if base > cap:
                base = _floor_n(cap, base_inc, cap) * base_inc
        return worst, base
    left = amount
    for i in range(nlev):
        take = min(left, sz[sym, side, i])
        if take > 0.0:
            worst = px[sym, side, i]
        left -= take
        if left <= amount * REL_TOL:
            break
    return worst, amount


# A leg tuple `lg` = (syms, sides, fees, bincs, incs, nlevs, amins, amaxs), each a 3-tuple:
# symbol id, LEG_*, taker fee, base_inc, order increment (quote_inc for a buy, base_inc for
# a sell), levels walked, and the order amount's bounds on its lattice (max incl. depth).

@njit(nogil=True, cache=True, _nrt=False)
def _forward(v, lg, px, sz):
    """Exact execution model from V: (out, amt0, amt1, amt2, got0, got1, ok) with amt_k the
    order amounts and got_k what legs 0 and 1 received; ok False when an order breaks a
    minimum or a maximum (incl. the walked depth). The chain is computed to the end even
    when not ok (a fill beyond depth saturates), so every value is monotone in V."""
    syms, sides, fees, bincs, incs, nlevs, amins, amaxs = lg
    h = v
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    g0 = 0.0
    g1 = 0.0
    ok = True
    for k in range(3):
        a = _order_amount(h, sides[k], fees[k], incs[k])
        if a <= 0.0 or a < amins[k] or a > amaxs[k]:
            ok = False
        h = _fill(px, sz, syms[k], sides[k], fees[k], bincs[k], nlevs[k], a)
        if k == 0:
            a0 = a
            g0 = h
        elif k == 1:
            a1 = a
            g1 = h
        else:
            a2 = a
    return h, a0, a1, a2, g0, g1, ok


@njit(nogil=True, cache=True, _nrt=False)
def _vmin_hold(k, h, use_mins, lg, px, sz):
    """Smallest V on leg 0's lattice whose chain holds >= h of ccy_k before leg k (k = 3:
    the final output); with use_mins every leg before k also meets its minimum. inf if the
    walked depth cannot get there."""
    syms, sides, fees, bincs, incs, nlevs, amins, amaxs = lg
    j = k - 1
    while j >= 0:
        aj = _fill_inverse(px, sz, syms[j], sides[j], fees[j], bincs[j], incs[j], nlevs[j], h)
        if aj == np.inf:
            return np.inf
        if use_mins and aj < amins[j]:
            aj = amins[j]
        h = _hold_needed(aj, sides[j], fees[j])
        j -= 1
    return _ceil_n(h, incs[0], h) * incs[0]


@njit(nogil=True, cache=True, _nrt=False)
def _vmin(k, a, use_mins, lg, px, sz):
    """Smallest V on leg 0's lattice whose leg-k order amount is >= a (and >= the leg's
    minimum, and every upstream minimum met, if use_mins)."""
    sides = lg[1]
    if use_mins and a < lg[6][k]:
        a = lg[6][k]
    return _vmin_hold(k, _hold_needed(a, sides[k], lg[2][k]), use_mins, lg, px, sz)


@njit(nogil=True, cache=True, _nrt=False)
def _class_inc(lat, lg):
    """Lattice step of class variable `lat`: 0-2 the order amount of leg lat, 3-5 the base
    receipt of buy leg lat-3 (0.0: not a class variable, a sell leg's receipt)."""
    if lat < 3:
        return lg[4][lat]
    return lg[3][lat - 3] if lg[1][lat - 3] == LEG_BUY else 0.0


@njit(nogil=True, cache=True, _nrt=False)
def _tight_v(lat, value, lg, px, sz):
    """Smallest V (upstream minimums met) whose class variable `lat` reaches `value`."""
    if lat < 3:
        return _vmin(lat, value, True, lg, px, sz)
    return _vmin_hold(lat - 2, value, True, lg, px, sz)


@njit(nogil=True, cache=True, _nrt=False)
def _aligned(sz, sym, side, nlev, inc):
    """True if the first nlev level sizes are multiples of inc."""
    for i in range(nlev):
        s = sz[sym, side, i]
        if abs(s - np.round(s / inc) * inc) > REL_TOL * s:
            return False
    return True


@njit(nogil=True, cache=True, _nrt=False)
def _rate_left(px, sz, sym, leg_side, fee, i, used):
    """(output per unit held, held-currency capacity left) at level i of a leg's book."""
    side = _book_side(leg_side)
    p = px[sym, side, i]
    left = sz[sym, side, i] - used
    if leg_side == LEG_BUY:
        return 1.0 / ((1.0 + fee) * p), left * p * (1.0 + fee)
    return p * (1.0 - fee), left


@njit(nogil=True, cache=True, _nrt=False)
def _relaxed_out(v, lg, px, sz):
    """Output of V without any floor: an upper bound of `_forward`'s output, concave in V."""
    syms, sides, fees, bincs, incs, nlevs, amins, amaxs = lg
    h = v
    for k in range(3):
        side = _book_side(sides[k])
        got = 0.0
        if sides[k] == LEG_BUY:
            q = h / (1.0 + fees[k])
            for i in range(nlevs[k]):
                p = px[syms[k], side, i]
                c = p * sz[syms[k], side, i]
                if q <= c:
                    got += q / p
                    break
                got += sz[syms[k], side, i]
                q -= c
        else:
            b = h
            for i in range(nlevs[k]):
                take = min(b, sz[syms[k], side, i])
                got += take * px[syms[k], side, i]
                b -= take
                if b <= 0.0:
                    break
            got *= 1.0 - fees[k]
        h = got
    return h


@njit(nogil=True, cache=True, _nrt=False)
def _continuous_best(lg, px, sz, vcap):
    """Relaxed optimum V_c: advance V through the merged breakpoints of the three legs
    (level ends mapped into V units) while the marginal rate r0*r1*r2 > 1; capped at vcap
    and at the walked depth. The relaxed profit is concave, so this is its maximum."""
    syms, sides, fees, bincs, incs, nlevs, amins, amaxs = lg
    v = 0.0
    i0 = 0
    i1 = 0
    i2 = 0
    u0 = 0.0        # base already used at each leg's current level
    u1 = 0.0
    u2 = 0.0
    while v < vcap and i0 < nlevs[0] and i1 < nlevs[1] and i2 < nlevs[2]:
        r0, c0 = _rate_left(px, sz, syms[0], sides[0], fees[0], i0, u0)
        r1, c1 = _rate_left(px, sz, syms[1], sides[1], fees[1], i1, u1)
        r2, c2 = _rate_left(px, sz, syms[2], sides[2], fees[2], i2, u2)
        if r0 * r1 * r2 <= 1.0:
            break
        x0 = c0                    # capacities of the current levels in V units
        x1 = c1 / r0
        x2 = c2 / (r0 * r1)
        dv = min(min(x0, x1), min(x2, vcap - v))
        v += dv
        if dv >= x0 * (1.0 - REL_TOL):
            i0 += 1
            u0 = 0.0
        else:
            u0 += dv * r0 if sides[0] == LEG_BUY else dv
        if dv >= x1 * (1.0 - REL_TOL):
            i1 += 1
            u1 = 0.0
        else:
            u1 += dv * r0 * r1 if sides[1] == LEG_BUY else dv * r0
        if dv >= x2 * (1.0 - REL_TOL):
            i2 += 1
            u2 = 0.0
        else:
            u2 += dv * r0 * r1 * r2 if sides[2] == LEG_BUY else dv * r0 * r1
    return v


@njit(nogil=True, cache=True, _nrt=False)
def _book_check(book_state, px, sym, leg_side, now_ns, max_age_ns, check_age):
    """0 if the book can be traded for this leg, else the EVC_* reason (docs/design.md 4)."""
    st = book_state[sym]
    if st["status"] != BOOK_SYNCED:
        return EVC_NOT_SYNCED
    if check_age and now_ns - st["recv_ns"] > max_age_ns:
        return EVC_STALE
    nb = st["n_bid"]
    na = st["n_ask"]
    if (nb if leg_side == LEG_SELL else na) <= 0:
        return EVC_EMPTY
    if nb > 0 and na > 0 and px[sym, SIDE_BID, 0] >= px[sym, SIDE_ASK, 0]:
        return EVC_CROSSED
    return 0


@njit(nogil=True, cache=True, _nrt=False)
def _leg_limits(symtab, book_state, px, sz, sym, leg_side, max_levels):
    """(order inc, levels walked, min amount, max amount) of one leg; the bounds are on the
    order lattice and max includes the walked depth (docs/kucoin.md 5.2, 5.9)."""
    r = symtab[sym]
    st = book_state[sym]
    side = _book_side(leg_side)
    nlev = min(st["n_ask"] if leg_side == LEG_BUY else st["n_bid"], max_levels, px.shape[2])
    depth = 0.0
    for i in range(nlev):
        depth += sz[sym, side, i] * px[sym, side, i] if leg_side == LEG_BUY else sz[sym, side, i]
    if leg_side == LEG_BUY:
        inc = r["quote_inc"]
        lo = max(max(r["quote_min"], r["min_funds"]), inc)
        amin = _ceil_n(lo, inc, lo) * inc
        hi = min(r["quote_max"], depth)
    else:
        inc = r["base_inc"]
        lo = max(r["base_min"], inc)
        amin = _ceil_n(lo, inc, lo) * inc
        bid = px[sym, SIDE_BID, 0]
        if r["min_funds"] > 0.0:
            nf = _ceil_n(r["min_funds"] / bid, inc, r["min_funds"] / bid)
            while nf * inc * bid < r["min_funds"]:   # compared as cascade.check_leg_limits does
                nf += 1.0
            amin = max(amin, nf * inc)
        hi = min(r["base_max"], depth)
    return inc, np.int64(nlev), amin, _floor_n(hi, inc, hi) * inc


@njit(nogil=True, cache=True, _nrt=False)
def _feasible_range(lg, px, sz, vcap):
    """(lo_n, hi_n): V = n * inc0 is feasible iff lo_n <= n <= hi_n (step 2); lo_n > hi_n
    when no volume is."""
    incs = lg[4]
    amaxs = lg[7]
    g0 = incs[0]
    hi_n = _floor_n(vcap, g0, vcap)
    for k in range(3):
        # the smallest V whose leg-k amount exceeds its max, minus one step
        vk = _vmin(k, (np.round(amaxs[k] / incs[k]) + 1.0) * incs[k], False, lg, px, sz)
        if vk < np.inf:
            hi_n = min(hi_n, np.round(vk / g0) - 1.0)
    vlo = _vmin(2, lg[6][2], True, lg, px, sz)
    if vlo == np.inf:
        return 1.0, 0.0
    return np.round(vlo / g0), hi_n


@njit(nogil=True, cache=True, _nrt=False)
def _class_value(lat, o, a0, a1, a2, r0, r1):
    return (a0, a1, a2, r0, r1, o)[lat]


@njit(nogil=True, cache=True, _nrt=False)
def _best_volume(lg, px, sz, lo_n, hi_n, emit_all, max_scan, tol_bps):
    """Steps 3-4: (best_n, profit, out, amt0, amt1, amt2, gap); best_n < 0 if no V works.
    gap: how much more profit an unsearched volume could make at most, beyond the
    tol_bps tolerance (0: none)."""
    g0 = lg[4][0]
    vc = _continuous_best(lg, px, sz, hi_n * g0)
    mid_n = min(max(np.floor(vc / g0), lo_n), hi_n)
    best = (-1.0, -np.inf, 0.0, 0.0, 0.0, 0.0)      # (n, profit, out, amt0, amt1, amt2)
    mv = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)   # class variables at the relaxed optimum,
    lv = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)   # at V_lo
    hv = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)   # and at V_hi
    for ci in range(3):
        cn = (lo_n, hi_n, mid_n)[ci]
        v = cn * g0
        o, a0, a1, a2, r0, r1, ok = _forward(v, lg, px, sz)
        if ci == 0:
            lv = (a0, a1, a2, r0, r1, o)
        elif ci == 1:
            hv = (a0, a1, a2, r0, r1, o)
        else:
            mv = (a0, a1, a2, r0, r1, o)
        if ok and (o - v > best[1] or (o - v == best[1] and cn < best[0])):
            best = (cn, o - v, o, a0, a1, a2)
    # Step 4: walk the classes of the variable with the fewest lattice values in
    # [V_lo, V_hi], down and up from the class of V_c, evaluating each class's tight point.
    # Receipts count only when the book's level sizes are multiples of base_inc (KuCoin
    # order sizes are), so their lattice values are exactly the reachable ones.
    ks = 0
    cnt = np.inf
    for lat in range(6):
        inc = _class_inc(lat, lg)
        if inc == 0.0 or (lat >= 3 and not _aligned(sz, lg[0][lat - 3], SIDE_ASK,
                                                    lg[5][lat - 3], inc)):
            continue
        c = np.round((hv[lat] - lv[lat]) / inc)
        if c < cnt:
            cnt = c
            ks = lat
    inc = _class_inc(ks, lg)
    gap = 0.0
    for direction in range(2):          # 0: down from V_c's class, 1: up from the next one
        value = np.round(mv[ks] / inc) * inc
        if direction == 1:
            value += inc
        for steps in range(max_scan + 1):
            vk = _tight_v(ks, value, lg, px, sz)
            if vk == np.inf:
                break
            cn = max(np.round(vk / g0), lo_n)
            if cn > hi_n:
                break
            v = cn * g0
            bound = _relaxed_out(v, lg, px, sz) - v
            floor_p = best[1] if emit_all else max(best[1], 0.0)
            if bound <= floor_p + tol_bps * 1e-4 * v:
                break                   # no class further out can beat the best found
            if steps == max_scan:
                gap = max(gap, bound - floor_p)
                break
            o, a0, a1, a2, r0, r1, ok = _forward(v, lg, px, sz)
            if ok and (o - v > best[1] or (o - v == best[1] and cn < best[0])):
                best = (cn, o - v, o, a0, a1, a2)
            if direction == 1:
                value = np.round(_class_value(ks, o, a0, a1, a2, r0, r1) / inc) * inc + inc
            elif cn <= lo_n:
                break
            else:                       # the class just below: that of V - one step
                o, a0, a1, a2, r0, r1, ok = _forward(v - g0, lg, px, sz)
                value = np.round(_class_value(ks, o, a0, a1, a2, r0, r1) / inc) * inc
    return best[0], best[1], best[2], best[3], best[4], best[5], gap


@njit(nogil=True, cache=True, _nrt=False)
def _top(px, sz, book_state, sym, side):
    n = book_state[sym]["n_bid"] if side == SIDE_BID else book_state[sym]["n_ask"]
    if n <= 0:
        return np.nan, np.nan
    return px[sym, side, 0], sz[sym, side, 0]


@njit(nogil=True, cache=True, _nrt=False)
def screen_triangle(t, now_ns, book_state, px, sz, symtab, tris, params):
    """Step 1 of evaluate_triangle alone: (code, bound_bps). code is EVC_CANDIDATES when the
    triangle passes the book checks and its exact top-of-book bound reaches min_profit_bps
    (no volume can do better than bound_bps: depth and rounding only lower the rate), else
    the EVC_* outcome that stops it. ~30-60 ns; lets a caller search the most promising
    triangles first and stop when no bound can beat the best found (pipeline.evaluate_best)."""
    tr = tris[t]
    prm = params[0]
    syms = (np.int64(tr["sym0"]), np.int64(tr["sym1"]), np.int64(tr["sym2"]))
    sides = (np.int64(tr["side0"]), np.int64(tr["side1"]), np.int64(tr["side2"]))
    for k in range(3):
        code = _book_check(book_state, px, syms[k], sides[k], now_ns,
                           prm["max_book_age_ms"] * 1e6, (prm["flags"] & EVAL_IGNORE_AGE) == 0)
        if code != 0:
            return code, -np.inf
    m_top = (_rate_left(px, sz, syms[0], sides[0], symtab[syms[0]]["taker_fee"], 0, 0.0)[0]
             * _rate_left(px, sz, syms[1], sides[1], symtab[syms[1]]["taker_fee"], 0, 0.0)[0]
             * _rate_left(px, sz, syms[2], sides[2], symtab[syms[2]]["taker_fee"], 0, 0.0)[0])
    bound = (m_top - 1.0) * 1e4
    if m_top <= 1.0 or bound < prm["min_profit_bps"]:
        return EVC_NO_EDGE, bound
    return EVC_CANDIDATES, bound


@njit(nogil=True, cache=True, _nrt=False)
def evaluate_triangle(t, now_ns, book_state, px, sz, symtab, tris, balances, max_start,
                      params, out, n):
    """Evaluate triangle t; write row out[n] for a candidate (or, with EVAL_EMIT_ALL, for
    any triangle with a feasible volume). Returns the EVC_* outcome (EVC_OUT_FULL if the
    row did not fit)."""
    tr = tris[t]
    prm = params[0]
    emit_all = (prm["flags"] & EVAL_EMIT_ALL) != 0
    syms = (np.int64(tr["sym0"]), np.int64(tr["sym1"]), np.int64(tr["sym2"]))
    sides = (np.int64(tr["side0"]), np.int64(tr["side1"]), np.int64(tr["side2"]))
    # Step 1: book checks and the exact upper bound of bps from the top-of-book rates.
    code, _bound = screen_triangle(t, now_ns, book_state, px, sz, symtab, tris, params)
    if code != EVC_CANDIDATES and (code != EVC_NO_EDGE or not emit_all):
        return code
    fees = (symtab[syms[0]]["taker_fee"], symtab[syms[1]]["taker_fee"],
            symtab[syms[2]]["taker_fee"])
    i0, n0, lo0, hi0 = _leg_limits(symtab, book_state, px, sz, syms[0], sides[0],
                                   prm["max_levels"])
    i1, n1, lo1, hi1 = _leg_limits(symtab, book_state, px, sz, syms[1], sides[1],
                                   prm["max_levels"])
    i2, n2, lo2, hi2 = _leg_limits(symtab, book_state, px, sz, syms[2], sides[2],
                                   prm["max_levels"])
    lg = (syms, sides, fees,
          (symtab[syms[0]]["base_inc"], symtab[syms[1]]["base_inc"], symtab[syms[2]]["base_inc"]),
          (i0, i1, i2), (n0, n1, n2), (lo0, lo1, lo2), (hi0, hi1, hi2))
    # Step 2: feasible interval of V (available balance and max_start of the primary).
    vcap = min(max_start[tr["ccy0"]], balances[tr["ccy0"]])
    if not vcap > 0.0:
        return EVC_NO_SIZE
    lo_n, hi_n = _feasible_range(lg, px, sz, vcap)
    if lo_n > hi_n:
        return EVC_NO_SIZE
    best_n, profit, exp_out, a0, a1, a2, gap = _best_volume(
        lg, px, sz, lo_n, hi_n, emit_all, prm["max_scan"], prm["search_tol_bps"])
    if best_n < 0.0:
        return EVC_NO_SIZE
    v = best_n * i0
    bps = profit / v * 1e4
    if profit <= REL_TOL * v:     # float noise is not a profit
        code = EVC_NO_PROFIT
    elif bps < prm["min_profit_bps"]:
        code = EVC_BELOW_BPS
    else:
        code = EVC_CANDIDATES
    if code != EVC_CANDIDATES and not emit_all:
        return code
    if n >= out.shape[0]:
        return EVC_OUT_FULL
    row = out[n]
    row["tri"] = t
    row["outcome"] = code
    row["start_vol"] = v
    row["exp_out"] = exp_out
    row["profit"] = profit
    row["bps"] = bps
    row["gap_bps"] = gap / v * 1e4
    row["bid0"], row["bid_sz0"] = _top(px, sz, book_state, syms[0], SIDE_BID)
    row["ask0"], row["ask_sz0"] = _top(px, sz, book_state, syms[0], SIDE_ASK)
    row["bid1"], row["bid_sz1"] = _top(px, sz, book_state, syms[1], SIDE_BID)
    row["ask1"], row["ask_sz1"] = _top(px, sz, book_state, syms[1], SIDE_ASK)
    row["bid2"], row["bid_sz2"] = _top(px, sz, book_state, syms[2], SIDE_BID)
    row["ask2"], row["ask_sz2"] = _top(px, sz, book_state, syms[2], SIDE_ASK)
    row["amt0"] = a0
    row["amt1"] = a1
    row["amt2"] = a2
    row["lim0"], row["base0"] = _leg0_ioc(px, sz, syms[0], sides[0], fees[0], lg[3][0], n0, a0,
                                          balances[tr["ccy0"]])
    row["book_ts_ms"] = min(min(book_state[syms[0]]["ts_ms"], book_state[syms[1]]["ts_ms"]),
                            book_state[syms[2]]["ts_ms"])
    row["eval_ns"] = now_ns
    return code


@njit(nogil=True, cache=True, _nrt=False)
def evaluate_symbol(sym, now_ns, book_state, px, sz, symtab, tris, sym_tri_start,
                    sym_tri_list, balances, max_start, params, out, counters):
    """Evaluate every triangle through symbol `sym` (hot thread, after its book changed).

    Writes candidate rows to out[0:n] and returns n. Each triangle's outcome is counted in
    counters[EVC_*]; counters[EVC_TRIANGLES] counts all, EVC_OUT_FULL the rows dropped
    because `out` was full, EVC_INEXACT the candidates whose search left gap_bps > 0.
    """
    n = 0
    emit_all = (params[0]["flags"] & EVAL_EMIT_ALL) != 0
    for idx in range(sym_tri_start[sym], sym_tri_start[sym + 1]):
        code = evaluate_triangle(sym_tri_list[idx], now_ns, book_state, px, sz, symtab, tris,
                                 balances, max_start, params, out, n)
        counters[EVC_TRIANGLES] += 1
        counters[code] += 1
        if code == EVC_CANDIDATES or (emit_all and (code == EVC_NO_PROFIT
                                                    or code == EVC_BELOW_BPS)):
            if code == EVC_CANDIDATES and out[n]["gap_bps"] > 0.0:
                counters[EVC_INEXACT] += 1
            n += 1
    return n
