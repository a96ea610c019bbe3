"""sim/mispricing.py: planted triangular mispricings and their taking by "other traders".

Owns: the planting rule (move one book of a hub triangle so the cycle yields about N bps
after taker fees at the top of book, for a real size), the record of each planted
mispricing (GET /sim/mispricings), and the take that restores the book.
Thread: the simulator's single asyncio thread, called from Market.advance() (random
plants) and /sim/control {"plant": ...}.
Run/test: tests/test_sim.py::test_plant_when_requested_then_triangle_profitable_until_taken.
"""
from __future__ import annotations

import math
import time
from typing import Protocol

from .book import SIDE_ASK, SIDE_BID


class Market(Protocol):
    """What this module uses of sim.market.Market. Declared here, not imported, so that
    market.py (which calls plant/take) and this module do not import each other."""
    books: dict
    rng: object
    taker_fee: float
    mispricings: list
    counters: dict


HUBS = ("USDT", "USDC", "BTC", "ETH", "KCS")


def leg_rates(m: Market, legs: list[tuple[str, str]]) -> list[float] | None:
    """Top-of-book conversion rate after the taker fee for each leg (side, symbol):
    buy spends quote, fee on top (rate 1/(ask*(1+f))); sell gets bid*(1-f)."""
    f = m.taker_fee
    out = []
    for side, sym in legs:
        b = m.books[sym]
        if side == "buy":
            t = b.best(SIDE_ASK)
            if t is None:
                return None
            out.append(1.0 / (t * b.pinc_f * (1 + f)))
        else:
            t = b.best(SIDE_BID)
            if t is None:
                return None
            out.append(t * b.pinc_f * (1 - f))
    return out


def triangle_legs(m: Market, ccys: list[str], syms: dict) -> list[tuple[str, str]]:
    legs = []
    for k in range(3):
        a, c = ccys[k], ccys[(k + 1) % 3]
        sym = syms[frozenset((a, c))]
        legs.append(("buy" if m.books[sym].base == c else "sell", sym))
    return legs


def capacity(m: Market, legs: list[tuple[str, str]], rates: list[float]) -> float:
    """Largest start amount (in ccy0) that the top level of every leg can absorb."""
    cap, mult = float("inf"), 1.0
    f = m.taker_fee
    for (side, sym), r in zip(legs, rates):
        b = m.books[sym]
        if side == "buy":
            t, l = b.level_at(SIDE_ASK, 0)
            need_in = t * b.pinc_f * l * b.binc_f * (1 + f)
        else:
            t, l = b.level_at(SIDE_BID, 0)
            need_in = l * b.binc_f
        cap = min(cap, need_in / mult)
        mult *= r
    return cap


def plant(m: Market, bps: float | None = None, primary: str | None = None) -> dict | None:
    """Move one book of a random hub triangle so that the cycle yields about `bps`
    after taker fees at the top of book, for a real size; freeze its three books until
    "other traders" take it `take_delay_ms` later."""
    rng = m.rng
    bps = m.mispricing_bps if bps is None else bps
    cands = [t for t in m.triangles
             if not (set(t[1].values()) & m.frozen)
             and (primary is None or primary in t[0])
             and all(m.enabled[s] for s in t[1].values())]
    if not cands:
        return None
    ccys, syms = cands[rng.randrange(len(cands))]
    hubs = [c for c in ccys if c in HUBS]
    c0 = primary if primary is not None else hubs[rng.randrange(len(hubs))]
    others = [c for c in ccys if c != c0]
    rng.shuffle(others)
    cyc = [c0] + others
    legs = triangle_legs(m, cyc, syms)
    rates = leg_rates(m, legs)
    if rates is None:
        return None
    k = rng.randrange(3)
    side, sym = legs[k]
    b = m.books[sym]
    f = m.taker_fee
    others_prod = math.prod(r for i, r in enumerate(rates) if i != k)
    need = (1 + bps / 1e4) / others_prod            # required rate of leg k after fee
    usd = rng.uniform(60.0, 400.0)
    lots = min(max(b.min_lots, int(usd / m.fair[b.base] / b.binc_f)), b.max_lots)
    gap = max(1, b.step)
    if side == "buy":                                # cheap ask: someone dumps
        tick = math.floor(1.0 / (need * (1 + f)) / b.pinc_f)
        if tick < 2 or tick >= (b.best(SIDE_ASK) or 0):
            return None
        while b.n(SIDE_BID) and b.best(SIDE_BID) >= tick:
            m.change(b, SIDE_BID, b.best(SIDE_BID), 0)
        if b.get(SIDE_BID, tick - gap) == 0 and tick - gap >= 1:
            m.change(b, SIDE_BID, tick - gap, m._rand_lots(b))
        m.change(b, SIDE_ASK, tick, lots)
    else:                                            # rich bid: someone sweeps
        tick = math.ceil(need / (1 - f) / b.pinc_f)
        if tick <= (b.best(SIDE_BID) or 0):
            return None
        while b.n(SIDE_ASK) and b.best(SIDE_ASK) <= tick:
            m.change(b, SIDE_ASK, b.best(SIDE_ASK), 0)
        if b.get(SIDE_ASK, tick + gap) == 0:
            m.change(b, SIDE_ASK, tick + gap, m._rand_lots(b))
        m.change(b, SIDE_BID, tick, lots)
    m._fill_depth(b)
    m.flush(sym)
    rates = leg_rates(m, legs)
    prod = math.prod(rates)
    rec = {
        "id": len(m.mispricings) + 1,
        "t_ms": int(time.time() * 1000),
        "currencies": cyc,
        "symbols": [s for _, s in legs],
        "sides": [s for s, _ in legs],
        "moved_symbol": sym,
        "moved_side": "ask" if side == "buy" else "bid",
        "moved_price": b.px_str(tick),
        "bps": round((prod - 1.0) * 1e4, 2),
        "size": float(f"{capacity(m, legs, rates):.8g}"),
        "size_currency": c0,
        "taken_t_ms": None,
        "_take_vt": m.vt_ms + m.take_delay_ms,
        "_tick": tick,
        "_side": SIDE_ASK if side == "buy" else SIDE_BID,
    }
    m.mispricings.append(rec)
    m.active.append(rec)
    m.frozen.update(rec["symbols"])
    m.counters["planted"] += 1
    return rec


def take(m: Market, rec: dict) -> None:
    """Other traders take what is left of the planted level and the moved book returns
    around fair (emitting the level2 changes and the trades)."""
    m.active.remove(rec)
    b = m.books[rec["moved_symbol"]]
    left = b.get(rec["_side"], rec["_tick"])
    if left:
        m.trade_id += 1
        if m.on_trade is not None:
            m.on_trade(b.symbol, "buy" if rec["_side"] == SIDE_ASK else "sell",
                          b.px(rec["_tick"]), b.sz(left), str(m.trade_id))
        m.change(b, rec["_side"], rec["_tick"], 0)
    m.requote(b)
    m.flush(b.symbol)
    for s in rec["symbols"]:
        m.frozen.discard(s)
    for r in m.active:               # overlapping records keep their books frozen
        m.frozen.update(r["symbols"])
    rec["taken_t_ms"] = int(time.time() * 1000)
    m.counters["taken"] += 1


def public_records(m: Market) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in m.mispricings]
