"""What coins are worth: leftovers of a triangle valued in its start currency at the books'
current best prices, by the best direct or two-hop route.

Owns: `Valuer` (currency -> currency conversion rates from the live books, read-only) and
`Holdings` (the session's running total of coins left outside the start currencies, per
currency, as the report lines name them).

Threads: executors value a finished triangle's leftovers for its report line (`Valuer.value`);
the log thread adds every record to the session's `Holdings` (report.SessionSummary); the
main thread values the holdings for the status line and the summary. Nothing here is on the
order path: it reads the books' best levels with plain numpy indexing, which may see a book
mid-update on the hot thread; a valuation is an estimate for the reader, never an order size.

A valuation sells at the best bid and buys at the best ask, with no fee and no depth: it says
what a coin is worth now, not what an unwind would fetch (docs/design.md 6).
"""
from __future__ import annotations

import math

from books import SIDE_ASK, SIDE_BID


class Valuer:
    """rate(a, b): units of b one unit of a is worth at the current best prices, or None.

    Direct: symbol a-b (sell a at its bid) or b-a (buy b with a at its ask). Two hops: the
    best product over every middle currency m with both pairs. Books that are empty on the
    side needed do not give a rate."""

    def __init__(self, uni, book_px, book_sz):
        self.px, self.sz = book_px, book_sz
        self.ccys = uni.currencies
        # (from, to) -> [(sym, side to read, invert)]
        self.pairs: dict[tuple[str, str], list] = {}
        for sym, name in enumerate(uni.symbols):
            d = uni.entries[sym]
            b, q = d["baseCurrency"], d["quoteCurrency"]
            self.pairs.setdefault((b, q), []).append((sym, SIDE_BID, False))   # sell b for q
            self.pairs.setdefault((q, b), []).append((sym, SIDE_ASK, True))    # buy b with q
        self.neighbours: dict[str, set] = {}
        for a, b in self.pairs:
            self.neighbours.setdefault(a, set()).add(b)

    def _direct(self, a: str, b: str):
        best = None
        for sym, side, invert in self.pairs.get((a, b), ()):
            if not self.sz[sym, side, 0] > 0.0:
                continue
            p = float(self.px[sym, side, 0])
            if not (p > 0.0 and math.isfinite(p)):
                continue
            r = 1.0 / p if invert else p
            if best is None or r > best:
                best = r
        return best

    def rate(self, a: str, b: str):
        if a == b:
            return 1.0
        best = self._direct(a, b)
        if best is not None:
            return best
        for m in self.neighbours.get(a, ()):
            if m == b:
                continue
            r1 = self._direct(a, m)
            r2 = self._direct(m, b) if r1 is not None else None
            if r1 is not None and r2 is not None and (best is None or r1 * r2 > best):
                best = r1 * r2
        return best

    def value(self, amount: float, ccy: str, target: str):
        """amount of ccy in target at the current best prices, or None (no route or book)."""
        r = self.rate(ccy, target)
        return None if r is None else amount * r


class Holdings:
    """Coins left outside a triangle's start currency over a session, per currency (the
    sum of every report line's `open=`), and the latest value of each in a reference
    currency. Written by one thread (the log thread, through SessionSummary.add)."""

    def __init__(self):
        self.amounts: dict[str, float] = {}

    def add(self, held: list) -> None:
        for amount, ccy in held:
            self.amounts[ccy] = self.amounts.get(ccy, 0.0) + amount

    def valued(self, valuer, ref: str) -> tuple[list, float, list]:
        """([(ccy, amount, value in ref or None)], total value of those valued, [ccys without
        a value])."""
        rows, total, missing = [], 0.0, []
        for ccy, amount in sorted(self.amounts.items()):
            v = valuer.value(amount, ccy, ref) if valuer is not None else None
            rows.append((ccy, amount, v))
            if v is None:
                missing.append(ccy)
            else:
                total += v
        return rows, total, missing
