"""Tests for triangles.py: the universe from the real symbol list, hand-computed evaluate
cases, and the evaluate kernel against an exhaustive, exact Decimal reference on random books.

Run: `python -m pytest -q tests/test_triangles.py`
(~11 s with a cold Numba cache, ~6 s warm, on the 2-core machine; most of it is the
exhaustive reference).
"""
from __future__ import annotations

import copy
import json
import pathlib
from decimal import ROUND_FLOOR, Context, Decimal

import numpy as np
import pytest

import triangles as T
import universe as U

try:   # the book layout is owned by books.py (docs/design.md 11); a tiny stand-in if it is absent
    from books import alloc_books
except ImportError:  # pragma: no cover
    _BOOK = np.dtype([("seq", "i8"), ("status", "i4"), ("n_bid", "i4"), ("n_ask", "i4"),
                      ("ts_ms", "i8"), ("recv_ns", "i8")])

    def alloc_books(nsym, depth):
        return np.zeros(nsym, _BOOK), np.full((nsym, 2, depth), np.nan), np.zeros((nsym, 2, depth))

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOW_NS = 10 ** 12


@pytest.fixture(scope="module")
def real_symbols():
    return json.loads((ROOT / "data" / "symbols-2024-09.json").read_text())


def sym(base, quote, base_inc, quote_inc, **kw):
    d = dict(symbol=f"{base}-{quote}", baseCurrency=base, quoteCurrency=quote,
             baseIncrement=base_inc, quoteIncrement=quote_inc, priceIncrement="0.00001",
             baseMinSize="0", quoteMinSize="0", baseMaxSize="10000000000",
             quoteMaxSize="99999999", minFunds="0", enableTrading=True)
    d.update(kw)
    return d


# ------------------------------------------------------------------------------------------
# Universe

def find_tri(u, names, sides):
    ids = [u.sym_index[n] for n in names]
    for t in range(u.ntri):
        r = u.tris[t]
        if [int(r[f"sym{k}"]) for k in range(3)] == ids:
            assert [int(r[f"side{k}"]) for k in range(3)] == sides
            return t
    return None


def test_universe_when_real_symbols_then_triangle_counts_match_an_independent_count(real_symbols):
    u = U.Universe(real_symbols, ["USDT", "BTC"])
    # independent count: choose the first and the last leg at P, then any symbol joining them
    syms = [d for d in real_symbols if d["enableTrading"] is True]
    pair = {}
    for d in syms:
        pair.setdefault(frozenset((d["baseCurrency"], d["quoteCurrency"])), []).append(d["symbol"])
    for p, expected in (("USDT", 712), ("BTC", 562)):
        at_p = [(d["symbol"], d["quoteCurrency"] if d["baseCurrency"] == p else d["baseCurrency"])
                for d in syms if p in (d["baseCurrency"], d["quoteCurrency"])]
        n = sum(len([s for s in pair.get(frozenset((x, y)), []) if s not in (s0, s2)])
                for s0, x in at_p for s2, y in at_p if s0 != s2 and x != y)
        got = int(np.sum(u.tris["primary"] == u.ccy_index[p]))
        assert got == n == expected   # `expected` recorded from this list (2024-09)


def test_universe_when_real_symbols_then_usdt_btc_eth_exists_in_both_directions(real_symbols):
    u = U.Universe(real_symbols, ["USDT", "USDC", "BTC", "ETH"])
    fwd = find_tri(u, ["BTC-USDT", "ETH-BTC", "ETH-USDT"], [T.LEG_BUY, T.LEG_BUY, T.LEG_SELL])
    rev = find_tri(u, ["ETH-USDT", "ETH-BTC", "BTC-USDT"], [T.LEG_BUY, T.LEG_SELL, T.LEG_SELL])
    assert fwd is not None and rev is not None
    assert u.tri_currencies(fwd) == ["USDT", "BTC", "ETH"]
    assert u.tri_currencies(rev) == ["USDT", "ETH", "BTC"]
    assert u.tri_label(fwd) == "USDT->BTC->ETH (buy BTC-USDT, buy ETH-BTC, sell ETH-USDT)"
    # the same cycle started from BTC is another triangle (another primary)
    assert find_tri(u, ["ETH-BTC", "ETH-USDT", "BTC-USDT"], [T.LEG_BUY, T.LEG_SELL, T.LEG_BUY])


def test_universe_when_built_then_legs_chain_and_no_duplicates(real_symbols):
    u = U.Universe(real_symbols, ["USDT", "USDC", "BTC", "ETH", "KCS"])
    keys = set()
    for r in u.tris:
        assert r["primary"] == r["ccy0"]
        assert len({int(r["sym0"]), int(r["sym1"]), int(r["sym2"])}) == 3
        for k in range(3):
            s = u.symtab[int(r[f"sym{k}"])]
            held, nxt = int(r[f"ccy{k}"]), int(r[f"ccy{(k + 1) % 3}"])
            if r[f"side{k}"] == T.LEG_BUY:
                assert (s["quote"], s["base"]) == (held, nxt)
            else:
                assert (s["base"], s["quote"]) == (held, nxt)
        keys.add((int(r["sym0"]), int(r["sym1"]), int(r["sym2"]), int(r["primary"])))
    assert len(keys) == u.ntri
    assert u.currencies[:5] == ["USDT", "USDC", "BTC", "ETH", "KCS"]


def test_universe_when_symbol_disabled_then_excluded(real_symbols):
    full = U.Universe(real_symbols, ["USDT", "BTC"])
    syms = copy.deepcopy(real_symbols)
    next(d for d in syms if d["symbol"] == "ETH-BTC")["enableTrading"] = False
    u = U.Universe(syms, ["USDT", "BTC"])
    assert "ETH-BTC" not in u.sym_index and "ETH-BTC" in full.sym_index
    assert "ETH-USDT" in u.sym_index                        # still in other triangles
    through = full.sym_tri_start[full.sym_index["ETH-BTC"] + 1] - \
        full.sym_tri_start[full.sym_index["ETH-BTC"]]
    assert u.ntri == full.ntri - through


def test_universe_when_fee_coefficient_given_then_fee_scaled(real_symbols):
    syms = copy.deepcopy(real_symbols)
    by = {d["symbol"]: d for d in syms}
    by["BTC-USDT"]["takerFeeCoefficient"] = "0.5"
    by["ETH-USDT"]["takerFeeCoefficient"] = "0"
    u = U.Universe(syms, ["USDT"], fee_rates={"BTC-USDT": "0.002", "ETH-USDT": "0.001"},
                   default_taker_fee="0.0015")
    fee = lambda s: u.symtab[u.sym_index[s]]["taker_fee"]
    assert fee("BTC-USDT") == 0.001
    assert fee("ETH-USDT") == 0.0
    assert fee("ETH-BTC") == 0.0015            # missing from fee_rates: default, coefficient 1
    assert u.taker_fee_dec[u.sym_index["BTC-USDT"]] == Decimal("0.001")
    assert u.rules[u.sym_index["BTC-USDT"]].taker_fee == 0.001   # executor rules agree


def test_universe_when_built_then_csr_lists_each_triangle_under_its_three_symbols(real_symbols):
    u = U.Universe(real_symbols, ["USDT", "BTC"])
    start, lst = u.sym_tri_start, u.sym_tri_list
    assert len(start) == len(u.symbols) + 1 and start[0] == 0 and start[-1] == 3 * u.ntri
    seen = np.zeros(u.ntri, np.int64)
    for s in range(len(u.symbols)):
        ts = lst[start[s]:start[s + 1]]
        assert len(ts) > 0 and np.all(np.diff(ts) > 0)     # every kept symbol is in a triangle
        for t in ts:
            assert s in (u.tris[t]["sym0"], u.tris[t]["sym1"], u.tris[t]["sym2"])
        seen[ts] += 1
    assert np.all(seen == 3)


def test_universe_when_decimals_or_subset_given_then_same_rows_and_exact_strings(real_symbols):
    as_dec = [{k: Decimal(v) if k.endswith(("Increment", "Size", "Funds", "Rate")) and v else v
               for k, v in d.items()} for d in real_symbols]
    a = U.Universe(real_symbols, ["USDT"])
    b = U.Universe(as_dec, ["USDT"])
    assert a.symbols == b.symbols and np.array_equal(a.symtab, b.symtab)
    i = a.sym_index["BTC-USDT"]
    assert a.base_inc_str[i] == b.base_inc_str[i] == "0.00000001"
    assert a.quote_inc_str[i] == "0.000001" and a.min_funds_str[i] == "0.1"
    sub = U.Universe(real_symbols, ["USDT"], only_symbols={"BTC-USDT", "ETH-BTC", "ETH-USDT",
                                                           "XRP-USDT"})
    assert sub.symbols == ["BTC-USDT", "ETH-BTC", "ETH-USDT"] and sub.ntri == 2


# ------------------------------------------------------------------------------------------
# Hand-computed cases on USDT/BTC/ETH: tri 0 = USDT->BTC->ETH (buy BTC-USDT, buy ETH-BTC,
# sell ETH-USDT), tri 1 = USDT->ETH->BTC (buy ETH-USDT, sell ETH-BTC, sell BTC-USDT).

class Market:
    def __init__(self, fee="0", **overrides):
        specs = {"BTC-USDT": ("0.0001", "0.01"), "ETH-BTC": ("0.001", "0.00001"),
                 "ETH-USDT": ("0.001", "0.01")}
        syms = [sym(*n.split("-"), bi, qi, **overrides.get(n, {})) for n, (bi, qi) in specs.items()]
        self.u = U.Universe(syms, ["USDT"], default_taker_fee=fee)
        self.state, self.px, self.sz = alloc_books(len(self.u.symbols), 20)
        self.balances = self.u.ccy_array({"USDT": 1000})
        self.max_start = self.u.ccy_array({"USDT": 500})
        self.params = T.alloc_params(min_profit_bps=10, max_book_age_ms=2000, max_levels=20)
        self.book("BTC-USDT", [(99, 5)], [(100, 1), (120, 10)])
        self.book("ETH-BTC", [(0.09, 100)], [(0.1, 50)])
        self.book("ETH-USDT", [(11, 20), (8, 100)], [(12, 100)])

    def book(self, name, bids, asks, status=T.BOOK_SYNCED, age_ms=0):
        i = self.u.sym_index[name]
        st = self.state[i]
        st["status"], st["n_bid"], st["n_ask"] = status, len(bids), len(asks)
        st["ts_ms"], st["recv_ns"] = 1_700_000_000_000 + i, NOW_NS - age_ms * 1_000_000
        self.px[i], self.sz[i] = np.nan, 0.0
        for side, levels in ((T.SIDE_BID, bids), (T.SIDE_ASK, asks)):
            for j, (p, s) in enumerate(levels):
                self.px[i, side, j], self.sz[i, side, j] = p, s

    def run(self, name="BTC-USDT", capacity=8, flags=None):
        if flags is not None:
            self.params[0]["flags"] = flags
        self.out = T.alloc_candidates(capacity)
        self.counters = T.alloc_eval_counters()
        n = T.evaluate_symbol(self.u.sym_index[name], NOW_NS, self.state, self.px, self.sz,
                              self.u.symtab, self.u.tris, self.u.sym_tri_start,
                              self.u.sym_tri_list, self.balances, self.max_start, self.params,
                              self.out, self.counters)
        return self.out[:n]


def test_evaluate_when_first_ask_level_limits_then_volume_is_that_level():
    m = Market()
    rows = m.run()
    assert len(rows) == 1 and m.counters[T.EVC_CANDIDATES] == 1
    assert m.counters[T.EVC_NO_EDGE] == 1          # tri 1: 1/12 * 0.09 * 99 = 0.7425
    r = rows[0]
    # 100 USDT buy 1 BTC @100; 1 BTC buys 10 ETH @0.1; 10 ETH sell @11 = 110. The next BTC
    # costs 120 and returns 110: stop.
    assert r["tri"] == 0 and r["start_vol"] == 100 and r["exp_out"] == pytest.approx(110)
    assert r["profit"] == pytest.approx(10) and r["bps"] == pytest.approx(1000)
    assert (r["amt0"], r["amt1"], r["amt2"]) == pytest.approx((100, 1, 10))
    assert (r["bid0"], r["ask0"], r["bid1"], r["ask1"], r["bid2"], r["ask2"]) == \
        pytest.approx((99, 100, 0.09, 0.1, 11, 12))
    assert (r["ask_sz0"], r["bid_sz2"]) == (1, 20)
    assert r["book_ts_ms"] == 1_700_000_000_000 and r["eval_ns"] == NOW_NS
    assert r["gap_bps"] == 0


def test_evaluate_when_last_leg_bid_depth_limits_then_volume_stops_there():
    m = Market()
    m.book("ETH-USDT", [(11, 5), (8, 100)], [(12, 100)])
    r = m.run()[0]
    assert r["start_vol"] == 50 and r["exp_out"] == pytest.approx(55)   # 0.5 BTC -> 5 ETH


def test_evaluate_when_fees_then_buy_funds_leave_room_for_the_fee():
    m = Market(fee="0.001")
    r = m.run()[0]
    # V = 100.1 -> funds floor(100.1/1.001) = 100 -> 1 BTC -> funds floor(1/1.001, 1e-5) =
    # 0.999 -> 9.99 ETH -> 9.99 * 11 * 0.999 = 109.78011
    assert r["start_vol"] == pytest.approx(100.1)
    assert (r["amt0"], r["amt1"], r["amt2"]) == pytest.approx((100, 0.999, 9.99))
    assert r["exp_out"] == pytest.approx(109.78011, abs=1e-9)
    assert r["bps"] == pytest.approx((109.78011 - 100.1) / 100.1 * 1e4, rel=1e-12)


def test_evaluate_when_base_min_forces_a_deep_volume_then_no_profit():
    m = Market(**{"ETH-USDT": {"baseMinSize": "25"}})
    assert len(m.run()) == 0 and m.counters[T.EVC_NO_PROFIT] == 1
    r = m.run(flags=T.EVAL_EMIT_ALL)[0]
    # 25 ETH need 2.5 BTC = 100 + 1.5 * 120 USDT; they sell for 20 * 11 + 5 * 8
    assert r["start_vol"] == 280 and r["exp_out"] == pytest.approx(260)
    assert r["outcome"] == T.EVC_NO_PROFIT


def test_evaluate_when_min_funds_above_balance_then_no_size():
    m = Market(**{"BTC-USDT": {"minFunds": "60"}})
    m.balances[m.u.ccy_index["USDT"]] = 50
    assert len(m.run()) == 0 and m.counters[T.EVC_NO_SIZE] == 1


@pytest.mark.parametrize("what, code", [("stale", T.EVC_STALE), ("crossed", T.EVC_CROSSED),
                                        ("resyncing", T.EVC_NOT_SYNCED)])
def test_evaluate_when_a_book_is_unusable_then_both_triangles_skipped(what, code):
    m = Market()
    if what == "stale":
        m.book("ETH-BTC", [(0.09, 100)], [(0.1, 50)], age_ms=2001)
    elif what == "crossed":
        m.book("ETH-BTC", [(0.1, 100)], [(0.1, 50)])
    else:
        m.book("ETH-BTC", [(0.09, 100)], [(0.1, 50)], status=1)   # BOOK_RESYNCING
    assert len(m.run()) == 0
    assert m.counters[code] == 2 and m.counters[T.EVC_TRIANGLES] == 2


def test_evaluate_when_ignore_age_flag_then_old_book_is_used():
    m = Market()
    m.book("ETH-BTC", [(0.09, 100)], [(0.1, 50)], age_ms=60_000)
    assert len(m.run(flags=T.EVAL_IGNORE_AGE)) == 1


def test_evaluate_when_needed_side_is_empty_then_only_that_triangle_skipped():
    m = Market()
    m.book("ETH-USDT", [], [(12, 100)])          # tri 0 sells ETH-USDT: needs bids
    assert len(m.run()) == 0
    assert m.counters[T.EVC_EMPTY] == 1 and m.counters[T.EVC_NO_EDGE] == 1


@pytest.mark.parametrize("balance, max_start, vol", [(50, 500, 50), (1000, 30, 30)])
def test_evaluate_when_balance_or_max_start_is_low_then_it_caps_the_volume(balance, max_start, vol):
    m = Market()
    m.balances[m.u.ccy_index["USDT"]] = balance
    m.max_start[m.u.ccy_index["USDT"]] = max_start
    r = m.run()[0]
    assert r["start_vol"] == vol and r["exp_out"] == pytest.approx(vol * 1.1)


def test_evaluate_when_max_levels_is_one_then_deeper_levels_are_ignored():
    m = Market()
    m.book("BTC-USDT", [(99, 5)], [(100, 1), (100.5, 10)])   # 2nd level still profitable
    r = m.run()[0]
    assert r["start_vol"] == pytest.approx(200.5)   # 2 BTC -> 20 ETH: all of the 11 bid
    assert r["exp_out"] == pytest.approx(220)
    m.params[0]["max_levels"] = 1
    assert m.run()[0]["start_vol"] == 100


def test_evaluate_when_best_volume_is_below_min_bps_then_below_bps():
    m = Market()
    m.book("BTC-USDT", [(99, 5)], [(100, 1), (105, 10)])
    m.params[0]["min_profit_bps"] = 800
    # top of book promises 1000 bps, the most profitable volume (205 -> 220) makes 731.7
    assert len(m.run()) == 0 and m.counters[T.EVC_BELOW_BPS] == 1
    r = m.run(flags=T.EVAL_EMIT_ALL)[0]
    assert r["start_vol"] == 205 and r["bps"] == pytest.approx(15 / 205 * 1e4)


def test_evaluate_when_out_is_full_then_dropped_and_counted():
    m = Market()
    assert len(m.run(capacity=0)) == 0
    assert m.counters[T.EVC_OUT_FULL] == 1 and m.counters[T.EVC_CANDIDATES] == 0


# ------------------------------------------------------------------------------------------
# The exact reference: Decimal arithmetic at 60 digits (every floor below is exact for
# these decimal inputs), the execution model written out plainly, and every lattice V from
# one increment to the cap evaluated (the random books keep that under ~800 points).

CTX = Context(prec=60)
D = Decimal


def dfloor(x, inc):
    return CTX.divide(x, inc).to_integral_value(rounding=ROUND_FLOOR, context=CTX) * inc


class RefLeg:
    def __init__(self, spec, side, max_levels):
        self.side, self.r = side, spec
        self.levels = (spec["asks"] if side == T.LEG_BUY else spec["bids"])[:max_levels]
        self.depth = sum(p * s if side == T.LEG_BUY else s for p, s in self.levels)

    def order(self, held):
        if self.side == T.LEG_BUY:                    # fee charged on top of funds
            return dfloor(CTX.divide(held, 1 + self.r["fee"]), self.r["q_inc"])
        return dfloor(held, self.r["b_inc"])

    def valid(self, a):
        r = self.r
        if a <= 0:
            return False
        if self.side == T.LEG_BUY:
            return (r["quote_min"] <= a <= r["quote_max"] and a >= r["min_funds"]
                    and a <= self.depth)
        return (r["base_min"] <= a <= r["base_max"] and a * r["bids"][0][0] >= r["min_funds"]
                and a <= self.depth)

    def fill(self, a):
        if self.side == T.LEG_BUY:
            spent = base = D(0)
            for p, s in self.levels:
                if spent + p * s <= a:
                    spent, base = spent + p * s, base + s
                else:
                    return base + dfloor(CTX.divide(a - spent, p), self.r["b_inc"])
            return base
        left, notional = a, D(0)
        for p, s in self.levels:
            take = min(left, s)
            notional, left = notional + take * p, left - take
        return notional * (1 - self.r["fee"])


def ref_execute(legs, v):
    h = v
    for leg in legs:
        a = leg.order(h)
        if not leg.valid(a):
            return None
        h = leg.fill(a)
    return h


def ref_best(legs, vcap):
    """(profit, V) maximising profit over every lattice V (ties: smaller V), or None."""
    g0 = legs[0].r["q_inc"] if legs[0].side == T.LEG_BUY else legs[0].r["b_inc"]
    best = None
    for k in range(1, int(dfloor(vcap, g0) / g0) + 1):
        out = ref_execute(legs, g0 * k)
        if out is not None and (best is None or out - g0 * k > best[0]):
            best = (out - g0 * k, g0 * k)
    return best, g0


# Random books on a universe of U (primary), X (primary), Y: four triangles through X-U
# covering buy/sell on every leg position.
FEES = [D("0"), D("0.0005"), D("0.001"), D("0.0015"), D("0.002")]


def dnum(x, places):
    return D(str(round(float(x), places)))


def lattice(x, count, rng, spread=1):
    """A power of ten >= x / count, coarser by 0..spread decades."""
    return D(1).scaleb(int(np.ceil(np.log10(x / count))) + int(rng.integers(0, spread + 1)))


def random_market(rng, names, max_count=800):
    price = {"U": D(1), "X": dnum(np.exp(rng.uniform(np.log(0.2), np.log(50))), 4),
             "Y": dnum(np.exp(rng.uniform(np.log(0.2), np.log(50))), 4)}
    s_u = dnum(np.exp(rng.uniform(0, np.log(100))), 2)      # typical start volume in U
    s_x = s_u / price["X"]
    inc = {("X-U", "q"): lattice(float(s_u), max_count, rng),      # leg-0 lattices: coarse
           ("Y-U", "q"): lattice(float(s_u), max_count, rng),      # enough for the
           ("X-U", "b"): lattice(float(s_x), max_count, rng),      # exhaustive reference
           ("Y-X", "q"): lattice(float(s_x), max_count, rng),
           ("Y-U", "b"): lattice(float(s_u / price["Y"]), 20_000, rng, 3),
           ("Y-X", "b"): lattice(float(s_u / price["Y"]), 20_000, rng, 3)}
    specs = {}
    for name in names:
        b, q = name.split("-")
        rate = price[b] / price[q] * dnum(1 + rng.normal(0, 0.015), 6)
        tick = D(1).scaleb(int(np.floor(np.log10(float(rate)))) - int(rng.integers(2, 6)))
        b_inc, q_inc = inc[(name, "b")], inc[(name, "q")]
        half = dnum(rng.uniform(0.0002, 0.003), 5)
        bid = max(tick, (rate * (1 - half) / tick).to_integral_value(ROUND_FLOOR) * tick)
        ask = bid + tick * int(rng.integers(1, max(2, int(2 * half * rate / tick) + 2)))
        scale = s_u / price[b]

        def levels(p, direction):
            out = []
            for _ in range(int(rng.integers(1, 7))):
                s = (scale * dnum(rng.uniform(0.02, 0.8), 3) / b_inc).to_integral_value(
                    ROUND_FLOOR) * b_inc
                out.append((p, max(s, b_inc)))
                steps = max(2, int(rate * D("0.002") / tick) + 1)
                p += direction * tick * int(rng.integers(1, steps))
                if p <= 0:
                    break
            return out

        spec = dict(b_inc=b_inc, q_inc=q_inc, fee=FEES[int(rng.integers(0, 5))],
                    bids=levels(bid, -1), asks=levels(ask, 1), base_min=D(0), quote_min=D(0),
                    min_funds=D(0), base_max=D("10000000000"), quote_max=D("99999999"))
        u = rng.random()
        if u < 0.1:
            spec["base_min"] = b_inc * int(rng.integers(1, 200))
        elif u < 0.2:
            spec["quote_min"] = q_inc * int(rng.integers(1, 200))
        elif u < 0.3:
            spec["min_funds"] = s_u / price[q] * dnum(rng.uniform(0.001, 0.5), 3)
        elif u < 0.4:
            spec["base_max"] = b_inc * max(1, int(scale / b_inc * dnum(rng.uniform(0.05, 1), 3)))
        specs[name] = spec
    caps = {c: (s * dnum(rng.uniform(0.3, 1.0), 3), s * dnum(rng.uniform(0.3, 1.5), 3))
            for c, s in (("U", s_u), ("X", s_x))}          # (max_start, balance)
    return specs, caps, int(rng.integers(1, 7)), float(rng.choice([0.0, 5.0, 20.0]))


class RandomBench:
    def __init__(self):
        syms = [sym("X", "U", "1", "1"), sym("Y", "U", "1", "1"), sym("Y", "X", "1", "1")]
        self.u = U.Universe(syms, ["U", "X"])
        self.state, self.px, self.sz = alloc_books(len(self.u.symbols), 8)

    def load(self, specs, caps, max_levels, min_bps, flags, **search):
        u = self.u
        for name, sp in specs.items():
            i = u.sym_index[name]
            r = u.symtab[i]
            r["base_inc"], r["quote_inc"] = float(sp["b_inc"]), float(sp["q_inc"])
            r["taker_fee"] = float(sp["fee"])
            for f in ("base_min", "base_max", "quote_min", "quote_max", "min_funds"):
                r[f] = float(sp[f])
            st = self.state[i]
            st["status"], st["n_bid"], st["n_ask"] = T.BOOK_SYNCED, len(sp["bids"]), len(sp["asks"])
            st["recv_ns"], st["ts_ms"] = NOW_NS, 5
            self.px[i], self.sz[i] = np.nan, 0.0
            for side, levels in ((T.SIDE_BID, sp["bids"]), (T.SIDE_ASK, sp["asks"])):
                for j, (p, s) in enumerate(levels):
                    self.px[i, side, j], self.sz[i, side, j] = float(p), float(s)
        self.params = T.alloc_params(min_bps, 1000, max_levels, flags, **search)
        self.max_start = u.ccy_array({c: float(v[0]) for c, v in caps.items()})
        self.balances = u.ccy_array({c: float(v[1]) for c, v in caps.items()})

    def run(self, kernel=T.evaluate_symbol):
        out, counters = T.alloc_candidates(8), T.alloc_eval_counters()
        n = kernel(self.u.sym_index["X-U"], NOW_NS, self.state, self.px, self.sz, self.u.symtab,
                   self.u.tris, self.u.sym_tri_start, self.u.sym_tri_list, self.balances,
                   self.max_start, self.params, out, counters)
        return out[:n].copy(), counters


def check_against_reference(row, legs, best, g0, min_bps, tol_bps, where):
    """Asserts one kernel row (None: NO_SIZE) against the exhaustive optimum `best`.
    Returns (gap_bps > 0, kernel V == reference V)."""
    if best is None:
        assert row is None, where
        return False, True
    assert row is not None, where
    v = (D(repr(float(row["start_vol"]))) / g0).to_integral_value() * g0
    out = ref_execute(legs, v)
    assert out is not None, where                               # the kernel's V is feasible
    assert float(out) == pytest.approx(row["exp_out"], rel=1e-11, abs=1e-12), where
    profit = out - v
    bps = float(profit / v * 10000)
    assert abs(row["bps"] - bps) <= 1e-9 * abs(bps) + 1e-9, where
    tol = 1e-11 * float(v)                                       # float vs exact
    slack = tol_bps * float(v) / 1e4 + tol                       # the search's tolerance
    # never better than the exhaustive optimum, never worse than its stated gap
    assert row["profit"] <= float(best[0]) + tol, where
    assert float(best[0]) <= row["profit"] + row["gap_bps"] * float(v) / 1e4 + slack, where
    if row["gap_bps"] == 0:
        assert abs(v - best[1]) <= g0 or abs(float(profit - best[0])) <= slack, where
        ref_bps = float(best[0] / best[1]) * 1e4
        if abs(ref_bps - min_bps) > tol_bps and abs(float(best[0])) > slack:
            signal = best[0] > 0 and ref_bps >= min_bps
            assert (row["outcome"] == T.EVC_CANDIDATES) == signal, where
    return row["gap_bps"] > 0, v == best[1]


def test_evaluate_when_random_books_then_matches_the_exhaustive_decimal_reference():
    rng = np.random.default_rng(20240901)
    bench = RandomBench()
    u = bench.u
    # thorough: a scan budget large enough for these coarse lattices, no tolerance;
    # default: the production budget and tolerance (alloc_params defaults)
    modes = {"thorough": dict(max_scan=10_000, search_tol_bps=0.0), "default": {}}
    stats = {m: dict(positive=0, inexact=0, same_v=0) for m in modes}
    stats["triangles"] = stats["no_size"] = 0
    for case in range(1500):
        specs, caps, max_levels, min_bps = random_market(rng, u.symbols)
        legs_of, best_of = {}, {}
        for t in range(u.ntri):
            tr = u.tris[t]
            legs_of[t] = [RefLeg(specs[u.symbols[int(tr[f"sym{k}"])]], int(tr[f"side{k}"]),
                                 max_levels) for k in range(3)]
            best_of[t] = ref_best(legs_of[t], min(caps[u.currencies[int(tr["ccy0"])]]))
            stats["triangles"] += 1
            stats["no_size"] += best_of[t][0] is None
        for mode, kw in modes.items():
            bench.load(specs, caps, max_levels, min_bps, T.EVAL_EMIT_ALL, **kw)
            rows = {int(r["tri"]): r for r in bench.run()[0]}
            for t in range(u.ntri):
                best, g0 = best_of[t]
                inexact, same_v = check_against_reference(
                    rows.get(t), legs_of[t], best, g0, min_bps,
                    bench.params[0]["search_tol_bps"], f"{mode} case {case} {u.tri_label(t)}")
                if best is not None and best[0] > 0:
                    stats[mode]["positive"] += 1
                    stats[mode]["inexact"] += inexact
                    stats[mode]["same_v"] += same_v
    print(stats)
    assert stats["thorough"]["positive"] >= 300 and stats["no_size"] >= 1500
    assert stats["thorough"]["inexact"] <= 0.01 * stats["thorough"]["positive"]
    assert stats["default"]["inexact"] <= 0.25 * stats["default"]["positive"]


def test_evaluate_when_random_books_then_screen_and_pruning_keep_every_candidate():
    rng = np.random.default_rng(7)
    bench = RandomBench()
    seen = 0
    for _ in range(1500):
        specs, caps, max_levels, min_bps = random_market(rng, bench.u.symbols)
        bench.load(specs, caps, max_levels, min_bps, T.EVAL_EMIT_ALL)
        every = {int(r["tri"]): r for r in bench.run()[0] if r["outcome"] == T.EVC_CANDIDATES}
        bench.params[0]["flags"] = 0
        rows, counters = bench.run()
        got = {int(r["tri"]): r for r in rows}
        exact = {t for t in every if every[t]["gap_bps"] == 0}
        assert exact <= set(got) <= set(every)
        for t in exact:
            assert got[t]["start_vol"] == every[t]["start_vol"]
            assert got[t]["profit"] == every[t]["profit"]
        assert counters[T.EVC_TRIANGLES] == 4 == sum(counters[1:T.EVC_INEXACT])
        seen += len(exact)
    assert seen >= 100


def test_evaluate_when_random_input_then_jit_equals_py_func():
    rng = np.random.default_rng(11)
    bench = RandomBench()
    for _ in range(40):
        specs, caps, max_levels, min_bps = random_market(rng, bench.u.symbols)
        bench.load(specs, caps, max_levels, min_bps, T.EVAL_EMIT_ALL)
        a, ca = bench.run()
        b, cb = bench.run(T.evaluate_symbol.py_func)
        assert np.array_equal(ca, cb)
        assert len(a) == len(b)
        for name in T.CANDIDATE_DTYPE.names:
            assert np.allclose(a[name], b[name], rtol=1e-12, atol=0, equal_nan=True), name


def test_constants_when_compared_then_match_the_contract():
    assert (T.SIDE_BID, T.SIDE_ASK, T.BOOK_SYNCED, T.LEG_BUY, T.LEG_SELL) == (0, 1, 2, 0, 1)
    import cascade
    assert (cascade.LEG_BUY, cascade.LEG_SELL) == (T.LEG_BUY, T.LEG_SELL)
