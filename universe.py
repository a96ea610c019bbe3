"""The trading universe: currencies, symbols (book rows), directed triangles and the symbol ->
triangles index, built once at start-up from KuCoin's symbol list and the account's fees.

Owns: `Universe` and the record layouts SYMBOL_DTYPE (per-symbol trading rules, one row per
book row) and TRIANGLE_DTYPE (directed triangles, legs coded cascade.LEG_BUY / LEG_SELL).

Thread: run.py's main thread builds the Universe once before any other thread starts
(plain Python); afterwards its arrays are read-only and shared by every thread (the hot
thread's evaluate kernel in triangles.py, the executors' leg plans, the report).

A triangle starts and ends in a primary quote P: P -> X -> Y -> P, three distinct
symbols; leg k converts ccy_k -> ccy_{k+1} and is LEG_BUY (ccy_k is the symbol's quote:
market buy by `funds`, consumes asks) or LEG_SELL (ccy_k is the base: market sell by
`size`, consumes bids).

Run tests: `python -m pytest -q tests/test_triangles.py`.
"""
from __future__ import annotations

from decimal import Decimal

import numpy as np

import cascade
from cascade import LEG_BUY, LEG_SELL   # noqa: F401 (leg codes are defined once, in cascade.py;
# LEG_BUY spends quote and consumes asks, LEG_SELL spends base and consumes bids)

# Per-symbol trading rules, one row per symbol id (= book row). Written once at start-up.
SYMBOL_DTYPE = np.dtype([
    ("base", "i4"), ("quote", "i4"),          # currency ids
    ("base_inc", "f8"), ("quote_inc", "f8"), ("price_inc", "f8"),
    ("base_min", "f8"), ("base_max", "f8"),   # size bounds, base units
    ("quote_min", "f8"), ("quote_max", "f8"),  # funds bounds of market orders, quote units
    ("min_funds", "f8"),                       # minimum notional, quote units (0 = none)
    ("taker_fee", "f8"),                       # account taker rate * takerFeeCoefficient
], align=True)

# Directed triangles, written once at start-up.
TRIANGLE_DTYPE = np.dtype([
    ("sym0", "i4"), ("sym1", "i4"), ("sym2", "i4"),
    ("side0", "i1"), ("side1", "i1"), ("side2", "i1"),   # LEG_BUY / LEG_SELL
    ("ccy0", "i4"), ("ccy1", "i4"), ("ccy2", "i4"),      # leg k: ccy_k -> ccy_{k+1 mod 3}
    ("primary", "i4"),                                   # = ccy0
], align=True)


def _dec(x):
    return None if x is None else (x if isinstance(x, Decimal) else Decimal(str(x)))


def _dec_str(x):
    """Exact decimal text as KuCoin sent it (a Decimal is printed without exponent)."""
    return None if x is None else (x if isinstance(x, str) else format(_dec(x), "f"))


class Universe:
    """Currencies, symbols and directed triangles of the configured primaries.

    symbols: the v2 symbol list (docs/kucoin.md 6.1), dicts with decimals as str or Decimal.
    primaries: e.g. ["USDT", "USDC", "BTC", "ETH"]. fee_rates: {symbol: account taker rate}
    (docs/kucoin.md 6.2); symbols missing from it get default_taker_fee. The effective fee is
    rate * takerFeeCoefficient (6.6; missing coefficient = 1). only_symbols: restrict to
    these names (the simulator's subset). Only symbols that belong to a triangle are kept
    (all of them with keep_all);
    their ids (sorted by name) are the book rows. Currency ids: primaries first, in order.
    """

    def __init__(self, symbols, primaries, fee_rates=None, default_taker_fee=0.001,
                 only_symbols=None, keep_all=False):
        fee_rates = fee_rates or {}
        only = set(only_symbols) if only_symbols is not None else None
        entries = {}
        for d in symbols:
            if d.get("enableTrading") is not True:
                continue   # docs/kucoin.md 6.1: enableTrading false -> orders rejected
            if only is not None and d["symbol"] not in only:
                continue
            entries[d["symbol"]] = d
        self.primaries = list(primaries)
        by_ccy, by_pair = {}, {}
        for name, d in entries.items():
            b, q = d["baseCurrency"], d["quoteCurrency"]
            by_ccy.setdefault(b, []).append(name)
            by_ccy.setdefault(q, []).append(name)
            by_pair.setdefault(frozenset((b, q)), []).append(name)

        def other(name, ccy):
            d = entries[name]
            return d["quoteCurrency"] if d["baseCurrency"] == ccy else d["baseCurrency"]

        found = []   # (primary, s0, s1, s2) by name; every path is distinct -> no duplicates
        for p in self.primaries:
            for s0 in sorted(by_ccy.get(p, ())):
                x = other(s0, p)
                for s1 in sorted(by_ccy.get(x, ())):
                    y = other(s1, x)
                    if s1 == s0 or y == p:
                        continue
                    for s2 in sorted(by_pair.get(frozenset((y, p)), ())):
                        if s2 != s0 and s2 != s1:
                            found.append((p, s0, s1, s2))

        used = sorted({s for t in found for s in t[1:]})
        if keep_all:   # replay.py: a capture's books are verified even outside any triangle
            used = sorted(entries)
        others = sorted({c for s in used for c in (entries[s]["baseCurrency"],
                                                   entries[s]["quoteCurrency"])}
                        - set(self.primaries))
        self.currencies = self.primaries + others
        self.ccy_index = {c: i for i, c in enumerate(self.currencies)}
        self.symbols = used
        self.sym_index = {s: i for i, s in enumerate(used)}
        self.entries = [entries[s] for s in used]

        n = len(used)
        self.symtab = np.zeros(n, SYMBOL_DTYPE)
        self.taker_fee_dec = []
        for i, d in enumerate(self.entries):
            coef = _dec(d.get("takerFeeCoefficient")) if d.get("takerFeeCoefficient") is not None \
                else Decimal(1)
            fee = _dec(fee_rates.get(d["symbol"], default_taker_fee)) * coef
            self.taker_fee_dec.append(fee)
            r = self.symtab[i]
            r["base"] = self.ccy_index[d["baseCurrency"]]
            r["quote"] = self.ccy_index[d["quoteCurrency"]]
            for field, key in (("base_inc", "baseIncrement"), ("quote_inc", "quoteIncrement"),
                               ("price_inc", "priceIncrement"), ("base_min", "baseMinSize"),
                               ("base_max", "baseMaxSize"), ("quote_min", "quoteMinSize"),
                               ("quote_max", "quoteMaxSize"), ("min_funds", "minFunds")):
                v = _dec(d.get(key))
                r[field] = float(v) if v is not None else (np.inf if "max" in field else 0.0)
            r["taker_fee"] = float(fee)
        # Exact decimal strings, for order bodies and Decimal checks (docs/kucoin.md 5.2).
        self.base_inc_str = [_dec_str(d["baseIncrement"]) for d in self.entries]
        self.quote_inc_str = [_dec_str(d["quoteIncrement"]) for d in self.entries]
        self.price_inc_str = [_dec_str(d["priceIncrement"]) for d in self.entries]
        self.base_min_str = [_dec_str(d["baseMinSize"]) for d in self.entries]
        self.base_max_str = [_dec_str(d["baseMaxSize"]) for d in self.entries]
        self.quote_min_str = [_dec_str(d["quoteMinSize"]) for d in self.entries]
        self.quote_max_str = [_dec_str(d["quoteMaxSize"]) for d in self.entries]
        self.min_funds_str = [_dec_str(d.get("minFunds")) for d in self.entries]
        # The executor's per-symbol rules (cascade.py), sharing our float fee exactly.
        self.rules = [cascade.SymbolRules.from_kucoin(
            {k: _dec_str(v) if isinstance(v, Decimal) else v for k, v in d.items()},
            float(self.symtab[i]["taker_fee"])) for i, d in enumerate(self.entries)]

        self.tris = np.zeros(len(found), TRIANGLE_DTYPE)
        for t, (p, *names) in enumerate(found):
            row = self.tris[t]
            ccy = p
            for k, name in enumerate(names):
                d = entries[name]
                row[f"sym{k}"] = self.sym_index[name]
                row[f"ccy{k}"] = self.ccy_index[ccy]
                row[f"side{k}"] = LEG_BUY if d["quoteCurrency"] == ccy else LEG_SELL
                ccy = other(name, ccy)
            assert ccy == p
            row["primary"] = self.ccy_index[p]

        # CSR: triangles through symbol s are sym_tri_list[sym_tri_start[s]:sym_tri_start[s+1]]
        counts = np.zeros(n + 1, np.int64)
        for k in range(3):
            np.add.at(counts, self.tris[f"sym{k}"].astype(np.int64) + 1, 1)
        self.sym_tri_start = np.cumsum(counts).astype(np.int32)
        self.sym_tri_list = np.zeros(3 * len(found), np.int32)
        fill = self.sym_tri_start[:-1].copy()
        for t in range(len(found)):      # t ascending -> each symbol's list is sorted
            for k in range(3):
                s = int(self.tris[t][f"sym{k}"])
                self.sym_tri_list[fill[s]] = t
                fill[s] += 1

    @property
    def ntri(self):
        return len(self.tris)

    def ccy_array(self, values=None, default=0.0):
        """f8[nccy] from {currency: amount}, e.g. balances or max_start."""
        a = np.full(len(self.currencies), default, np.float64)
        for c, v in (values or {}).items():
            if c in self.ccy_index:
                a[self.ccy_index[c]] = float(v)
        return a

    def tri_currencies(self, t):
        """['USDT', 'FLUX', 'USDC'] (the report's `triangle=` field)."""
        r = self.tris[t]
        return [self.currencies[int(r[f"ccy{k}"])] for k in range(3)]

    def tri_label(self, t):
        """'USDT->FLUX->USDC (buy FLUX-USDT, sell FLUX-USDC, sell USDC-USDT)'."""
        r = self.tris[t]
        legs = ", ".join(("buy " if int(r[f"side{k}"]) == LEG_BUY else "sell ")
                         + self.symbols[int(r[f"sym{k}"])] for k in range(3))
        return "->".join(self.tri_currencies(t)) + f" ({legs})"

    def summary(self):
        per_primary = {p: int(np.sum(self.tris["primary"] == self.ccy_index[p]))
                       for p in self.primaries}
        return {"currencies": len(self.currencies), "symbols": len(self.symbols),
                "triangles": self.ntri, "per_primary": per_primary}
