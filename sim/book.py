"""sim/book.py: one symbol's order book in integer units for the simulator, and the exact
book walk a taker's order fills against.

Owns: the `Book` class (levels as integer ticks -> integer lots, so every price/size the
simulator sends is an exact multiple of priceIncrement/baseIncrement) and `dec_str`.
Thread: the simulator's single asyncio thread (sim/server.py); plain data, nothing blocks.
Run/test: through sim/server.py; tests/test_sim.py compares streamed books with GET /sim/book.
"""
from __future__ import annotations

import bisect
import time
from decimal import Decimal, ROUND_CEILING

SIDE_BID = 0
SIDE_ASK = 1


def dec_str(d: Decimal) -> str:
    """Exact plain decimal string without exponent or trailing zeros ("1.00" -> "1")."""
    if not d:
        return "0"
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


class Book:
    """One symbol's book in integer units. Side-parameterised: keys are `tick` for asks and
    `-tick` for bids, so on both sides ascending keys run from the best level outwards."""

    __slots__ = ("symbol", "base", "quote", "pinc", "binc", "pinc_f", "binc_f", "min_lots",
                 "max_lots", "lv", "keys", "seq", "last_px", "last_sz", "usd_median", "half_spread",
                 "step")

    def __init__(self, info: dict):
        self.symbol = info["symbol"]
        self.base, self.quote = info["baseCurrency"], info["quoteCurrency"]
        self.pinc = Decimal(info["priceIncrement"])
        self.binc = Decimal(info["baseIncrement"])
        self.pinc_f = float(self.pinc)
        self.binc_f = float(self.binc)
        self.min_lots = max(1, int((Decimal(info["baseMinSize"]) / self.binc).to_integral_value(ROUND_CEILING)))
        self.max_lots = int(Decimal(info["baseMaxSize"]) / self.binc)
        self.lv: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.keys: tuple[list[int], list[int]] = ([], [])
        self.seq = 0
        self.last_px = Decimal(0)
        self.last_sz = Decimal(0)
        self.usd_median = 400.0
        self.half_spread = 0.0005
        self.step = 1

    @staticmethod
    def key(side: int, tick: int) -> int:
        return tick if side == SIDE_ASK else -tick

    def get(self, side: int, tick: int) -> int:
        return self.lv[side].get(self.key(side, tick), 0)

    def set(self, side: int, tick: int, lots: int) -> None:
        k = self.key(side, tick)
        d, ks = self.lv[side], self.keys[side]
        if lots <= 0:
            if k in d:
                del d[k]
                del ks[bisect.bisect_left(ks, k)]
        else:
            if k not in d:
                bisect.insort(ks, k)
            d[k] = lots

    def n(self, side: int) -> int:
        return len(self.keys[side])

    def best(self, side: int) -> int | None:
        ks = self.keys[side]
        return abs(ks[0]) if ks else None

    def worst(self, side: int) -> int | None:
        ks = self.keys[side]
        return abs(ks[-1]) if ks else None

    def level_at(self, side: int, idx: int) -> tuple[int, int]:
        k = self.keys[side][idx]
        return abs(k), self.lv[side][k]

    def levels(self, side: int, n: int | None = None) -> list[tuple[int, int]]:
        ks = self.keys[side] if n is None else self.keys[side][:n]
        d = self.lv[side]
        return [(abs(k), d[k]) for k in ks]

    def px(self, tick: int) -> Decimal:
        return self.pinc * tick

    def sz(self, lots: int) -> Decimal:
        return self.binc * lots

    def px_str(self, tick: int) -> str:
        return dec_str(self.pinc * tick)

    def sz_str(self, lots: int) -> str:
        return dec_str(self.binc * lots)

    def snapshot(self, n: int | None) -> dict:
        """Level2 REST snapshot body (docs/kucoin.md 3.7): sequence is a string."""
        return {
            "time": int(time.time() * 1000),
            "sequence": str(self.seq),
            "bids": [[self.px_str(t), self.sz_str(l)] for t, l in self.levels(SIDE_BID, n)],
            "asks": [[self.px_str(t), self.sz_str(l)] for t, l in self.levels(SIDE_ASK, n)],
        }

    def walk(self, take_side: int, *, max_lots: int | None = None,
             max_funds: Decimal | None = None, limit_tick: int | None = None,
             price_limit_rate: Decimal | None = None) -> list[tuple[int, int]]:
        """Dry walk of one side from the best level: [(tick, lots)] a taker would fill.

        Bounded by a base size (`max_lots`), by quote funds (`max_funds`, each fill floored
        to whole lots so notional <= funds), by a limit price, and by price protection
        (docs/kucoin.md 5.9: market orders fill only within priceLimitRate of the best
        price, the rest is canceled). Exact: funds arithmetic is Decimal.
        """
        b = self
        best = b.best(take_side)
        if best is None:
            return []
        bound = limit_tick
        if price_limit_rate is not None:
            if take_side == SIDE_ASK:
                pb = int((best * (1 + price_limit_rate)).to_integral_value(rounding="ROUND_FLOOR"))
                bound = pb if bound is None else min(bound, pb)
            else:
                pb = int((best * (1 - price_limit_rate)).to_integral_value(rounding="ROUND_CEILING"))
                bound = pb if bound is None else max(bound, pb)
        fills = []
        lots_left = max_lots
        funds_left = max_funds
        for tick, lots in b.levels(take_side):
            if bound is not None and ((take_side == SIDE_ASK and tick > bound) or
                                      (take_side == SIDE_BID and tick < bound)):
                break
            take = lots
            if lots_left is not None:
                take = min(take, lots_left)
            if funds_left is not None:
                lot_value = b.pinc * tick * b.binc
                take = min(take, int(funds_left // lot_value))
            if take <= 0:
                if take_side == SIDE_ASK or lots_left == 0:
                    break
                continue                               # a cheaper bid may still fit funds
            fills.append((tick, take))
            if lots_left is not None:
                lots_left -= take
                if lots_left == 0:
                    break
            if funds_left is not None:
                funds_left -= b.pinc * tick * b.binc * take
        return fills
