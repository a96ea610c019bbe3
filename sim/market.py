"""sim/market.py: the simulator's market: the symbol subset, consistent fair prices, the
books (sim/book.py) and their random walk, level2 sequencing, and the virtual-time loop
that also plants and takes mispricings (sim/mispricing.py).

Owns: the symbol subset served by the simulator, one `Book` per symbol, the per-symbol
level2 sequence and pending changes, fair prices, and the mispricing records list.
Thread: the simulator's single asyncio thread (sim/server.py); nothing here blocks or awaits.
Run/test: through sim/server.py (`python -m sim --help`); tests/test_sim.py checks the level2
stream and books this module produces.

Why dicts and ints rather than numpy arrays (docs/design.md 11): the simulator is not on the
engine's hot path; what matters here is exactness (a level is `ticks * priceIncrement`,
`lots * baseIncrement`, formatted from Decimal) and determinism for a seed. Model maths
(fair prices, spreads, mispricing targets) is float and only decides which integer tick
a level sits on; balances and fills are exact (sim/exchange.py).
"""
from __future__ import annotations

import json
import math
import random
import time
from decimal import Decimal
from pathlib import Path

from . import mispricing
from .book import SIDE_ASK, SIDE_BID, Book
from .mispricing import HUBS

STEP_MS = 10              # virtual-time step of the market loop
FAIR_STEP_MS = 100        # fair prices drift every 100 virtual ms
DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "symbols-2024-09.json"

# Rough USD prices of September 2024 for currencies whose tick size does not tell the
# price (quotes and majors). Every other currency gets priceIncrement * 1e4 (KuCoin sets
# ticks to ~4-5 significant digits) times a seeded lognormal factor.
MAJOR_USD = {
    "USDT": 1.0, "USDC": 1.0, "DAI": 1.0, "BTC": 60000.0, "ETH": 2500.0, "KCS": 8.5,
    "TRX": 0.155, "DOGE": 0.105, "EUR": 1.1, "BRL": 0.18, "TRY": 0.029, "SOL": 140.0,
    "XRP": 0.57, "BNB": 560.0, "LTC": 65.0, "TON": 5.3, "ADA": 0.35, "DOT": 4.3,
    "LINK": 10.5, "AVAX": 24.0,
}
STABLE = {"USDT", "USDC", "DAI"}


def load_symbols(path: Path = DEFAULT_DATA) -> list[dict]:
    with open(path) as f:
        return json.load(f)


def select_symbols(all_syms: list[dict], n: int | None) -> list[dict]:
    """Enabled symbols; with n, a subset rich in triangles through the hub currencies.

    All hub-hub pairs first, then currencies ranked by how many hub quotes they trade
    against (each added with all its hub pairs), so that most added symbols close a
    triangle. Independent of the seed: the same N always serves the same symbols.
    """
    enabled = [s for s in all_syms if s.get("enableTrading", True)]
    if n is None or n >= len(enabled):
        return sorted(enabled, key=lambda s: s["symbol"])
    hub_rank = {h: i for i, h in enumerate(HUBS)}
    chosen = [s for s in enabled if s["baseCurrency"] in HUBS and s["quoteCurrency"] in HUBS]
    chosen.sort(key=lambda s: (hub_rank[s["quoteCurrency"]], s["symbol"]))
    chosen = chosen[:n]
    by_ccy: dict[str, list[dict]] = {}
    for s in enabled:
        b, q = s["baseCurrency"], s["quoteCurrency"]
        if b not in HUBS and q in HUBS:
            by_ccy.setdefault(b, []).append(s)
    ranked = sorted((c for c in by_ccy if len(by_ccy[c]) >= 2), key=lambda c: (-len(by_ccy[c]), c))
    for c in ranked:
        room = n - len(chosen)
        if room < 2:
            break
        pairs = sorted(by_ccy[c], key=lambda s: hub_rank[s["quoteCurrency"]])
        chosen.extend(pairs[:room])
    if len(chosen) < n:
        have = {s["symbol"] for s in chosen}
        chosen.extend([s for s in enabled if s["symbol"] not in have][: n - len(chosen)])
    return sorted(chosen, key=lambda s: s["symbol"])


def fair_usd_prices(symbols: list[dict], rng: random.Random) -> dict[str, float]:
    """A USD price per currency, consistent across all symbols (cross = ratio of two)."""
    px: dict[str, float] = {}
    ccys = {s["baseCurrency"] for s in symbols} | {s["quoteCurrency"] for s in symbols}
    for c in ccys:
        if c in MAJOR_USD:
            px[c] = MAJOR_USD[c]
    order = sorted(symbols, key=lambda s: (s["quoteCurrency"] not in HUBS, s["symbol"]))
    for _ in range(4):                       # a few passes resolve quote-of-quote chains
        for s in order:
            b, q = s["baseCurrency"], s["quoteCurrency"]
            ratio = float(s["priceIncrement"]) * 1e4 * min(4.0, max(0.25, rng.lognormvariate(0.0, 0.5)))
            if b not in px and q in px:
                px[b] = ratio * px[q]
            elif q not in px and b in px:
                px[q] = px[b] / ratio
    for c in ccys:
        px.setdefault(c, 1.0)
    return px


def find_triangles(symbols: list[dict]) -> list[tuple[tuple[str, str, str], dict]]:
    """Unordered currency triples whose three pairs are all served: [(ccys, {frozenset: sym})]."""
    pair_sym = {frozenset((s["baseCurrency"], s["quoteCurrency"])): s["symbol"] for s in symbols}
    nbr: dict[str, set[str]] = {}
    for s in symbols:
        b, q = s["baseCurrency"], s["quoteCurrency"]
        nbr.setdefault(b, set()).add(q)
        nbr.setdefault(q, set()).add(b)
    out = []
    for a in sorted(nbr):
        for b in sorted(nbr[a]):
            if b <= a:
                continue
            for c in sorted(nbr[a] & nbr[b]):
                if c <= b:
                    continue
                syms = {frozenset(pr): pair_sym[frozenset(pr)] for pr in ((a, b), (a, c), (b, c))}
                out.append(((a, b, c), syms))
    return out


class Market:
    """Books that move, with consistent cross prices and planted triangle mispricings.

    Listeners (set by the simulator (python -m sim)): on_l2(symbol, data) for each level2 message, on_trade(symbol,
    taker_side, px, sz, trade_id) for trades by "other traders" and by the user.
    """

    plant_log = None     # a binary file, or None (python -m sim --plant-log)

    def __init__(self, symbols: list[dict], *, seed: int, depth: int = 120, update_rate: float = 200.0,
                 mispricing_rate: float = 0.5, mispricing_bps: float = 25.0, take_delay_ms: int = 400,
                 taker_fee: float = 0.001):
        self.rng = random.Random(seed)
        self.info = {s["symbol"]: s for s in symbols}
        self.symbols = [s["symbol"] for s in symbols]
        self.enabled = {s: True for s in self.symbols}
        self.depth = depth
        self.update_rate = update_rate
        self.mispricing_rate = mispricing_rate
        self.mispricing_bps = mispricing_bps
        self.take_delay_ms = take_delay_ms
        self.taker_fee = taker_fee
        self.paused = False
        self.fair = fair_usd_prices(symbols, self.rng)
        self.triangles = [t for t in find_triangles(symbols) if any(c in HUBS for c in t[0])]
        self.books: dict[str, Book] = {}
        self.pending: dict[str, dict] = {}       # symbol -> {(side, tick): (lots, seq)}
        self.pending_start: dict[str, int] = {}
        self.withhold: dict[str, int] = {}       # sequence_gap fault: messages applied, not sent
        self.dirty: set[str] = set()             # symbols changed since the last ticker push
        self.on_l2 = None
        self.on_trade = None
        self.mispricings: list[dict] = []
        self.active: list[dict] = []
        self.frozen: set[str] = set()
        self.vt_ms = 0
        self._msg_acc = 0.0
        self._next_plant_vt = self._draw_plant_gap()
        self.trade_id = 10_000_000_000_000_000 + self.rng.randrange(10 ** 15)
        self.counters = {"l2_messages": 0, "l2_withheld": 0, "planted": 0, "taken": 0}
        for sym in self.symbols:
            self._build(sym)

    # ---- model ---------------------------------------------------------------------------
    def fair_ratio(self, sym: str) -> float:
        b = self.books[sym]
        return self.fair[b.base] / self.fair[b.quote]

    def _rand_lots(self, b: Book) -> int:
        usd = self.rng.lognormvariate(math.log(b.usd_median), 0.9)
        lots = int(usd / self.fair[b.base] / b.binc_f)
        return min(max(b.min_lots, lots), b.max_lots)

    def _targets(self, b: Book) -> tuple[int, int]:
        """Target best bid/ask ticks around fair, at least one tick apart."""
        f = self.fair_ratio(b.symbol) / b.pinc_f
        tb = max(1, math.floor(f * (1 - b.half_spread)))
        ta = max(tb + 1, math.ceil(f * (1 + b.half_spread)))
        return tb, ta

    def _build(self, sym: str) -> None:
        b = Book(self.info[sym])
        hub_pair = b.base in HUBS and b.quote in HUBS
        b.usd_median = 6000.0 if hub_pair else 500.0
        b.half_spread = (0.0001 if b.base in STABLE and b.quote in STABLE else
                         0.0003 if hub_pair else 0.0008)
        b.seq = self.rng.randrange(10 ** 9, 10 ** 10)
        self.books[sym] = b
        f = self.fair_ratio(sym) / b.pinc_f
        b.half_spread = max(b.half_spread, 0.6 / f)
        b.step = max(1, round(f * 0.02 / max(1, self.depth)))
        tb, ta = self._targets(b)
        for side, top in ((SIDE_BID, tb), (SIDE_ASK, ta)):
            tick = top
            for _ in range(self.depth):
                if tick < 1:
                    break
                b.set(side, tick, self._rand_lots(b))
                tick += self._gap(b) * (1 if side == SIDE_ASK else -1)
        b.last_px = b.px(ta)

    def _gap(self, b: Book) -> int:
        return self.rng.randint(1, 2 * b.step - 1) if b.step > 1 else 1

    def _drift(self) -> None:
        dt = FAIR_STEP_MS / 1000.0
        for c in sorted(self.fair):
            if c == "USDT":
                continue
            vol = 0.00002 if c in STABLE else 0.0002           # per sqrt(second)
            self.fair[c] *= math.exp(self.rng.gauss(0.0, vol * math.sqrt(dt)))

    # ---- level2 changes ------------------------------------------------------------------
    def change(self, b: Book, side: int, tick: int, lots: int) -> None:
        """Set a level's absolute size and give the change the next sequence (docs/kucoin.md
        3.6: each change carries the sequence that last touched that price)."""
        b.set(side, tick, lots)
        b.seq += 1
        p = self.pending.setdefault(b.symbol, {})
        if not p:
            self.pending_start[b.symbol] = b.seq
        p[(side, tick)] = (lots, b.seq)
        self.dirty.add(b.symbol)

    def seq_only(self, b: Book, side: int) -> None:
        # docs/kucoin.md 3.6 / 8.3: ["0","0",seq] entries only advance the sequence.
        b.seq += 1
        p = self.pending.setdefault(b.symbol, {})
        if not p:
            self.pending_start[b.symbol] = b.seq
        p[(side, 0)] = (0, b.seq)

    def flush(self, sym: str) -> dict | None:
        """Turn the pending changes of `sym` into one level2 message and hand it out.

        A price appears once per message with its latest size and sequence; entries are
        ordered by sequence; sequenceStart is the first sequence consumed since the last
        message, so consecutive messages are strictly consecutive (docs/kucoin.md 3.6, 3.8).
        """
        p = self.pending.pop(sym, None)
        if not p:
            return None
        b = self.books[sym]
        out = ([], [])
        for (side, tick), (lots, seq) in sorted(p.items(), key=lambda kv: kv[1][1]):
            if tick == 0:
                out[side].append(["0", "0", str(seq)])
            else:
                out[side].append([b.px_str(tick), b.sz_str(lots), str(seq)])
        data = {"changes": {"asks": out[SIDE_ASK], "bids": out[SIDE_BID]},
                "sequenceEnd": b.seq, "sequenceStart": self.pending_start.pop(sym),
                "symbol": sym, "time": int(time.time() * 1000)}
        left = self.withhold.get(sym, 0)
        if left > 0:                       # fault: applied to the book, never sent -> gap
            self.withhold[sym] = left - 1
            self.counters["l2_withheld"] += 1
            return data
        self.counters["l2_messages"] += 1
        if self.on_l2 is not None:
            self.on_l2(sym, data)
        return data

    def requote(self, b: Book) -> None:
        """Keep the top of book around fair: remove levels that the fair price has run
        through (hysteresis: only inside half the half-spread) and add a top level when the
        side has drifted more than twice the half-spread away; then keep the depth."""
        f = self.fair_ratio(b.symbol) / b.pinc_f
        tb, ta = self._targets(b)
        for side in (SIDE_BID, SIDE_ASK):
            sgn = 1 if side == SIDE_ASK else -1
            inner = f * (1 + sgn * b.half_spread * 0.5)
            while b.n(side):
                t = b.best(side)
                if (side == SIDE_ASK and t < inner) or (side == SIDE_BID and t > inner):
                    self.change(b, side, t, 0)
                else:
                    break
            outer = f * (1 + sgn * b.half_spread * 2.0)
            top = ta if side == SIDE_ASK else tb
            t = b.best(side)
            if t is None or (side == SIDE_ASK and t > outer) or (side == SIDE_BID and t < outer):
                if top >= 1 and b.get(side, top) == 0:
                    self.change(b, side, top, self._rand_lots(b))
        self._fill_depth(b)

    def _fill_depth(self, b: Book) -> None:
        for side in (SIDE_BID, SIDE_ASK):
            sgn = 1 if side == SIDE_ASK else -1
            while b.n(side) < self.depth:
                w = b.worst(side)
                t = (w + sgn * self._gap(b)) if w is not None else self._targets(b)[side]
                if t < 1:
                    break
                self.change(b, side, t, self._rand_lots(b))
            while b.n(side) > self.depth + 20:
                self.change(b, side, b.worst(side), 0)

    def walk_symbol(self, sym: str) -> None:
        """One public update of `sym`: requote, 1-3 size changes near the top, maybe a
        sequence-only entry, keep depth, flush as one message."""
        b = self.books[sym]
        rng = self.rng
        self.requote(b)
        for _ in range(1 + (rng.random() < 0.5) + (rng.random() < 0.2)):
            side = rng.randrange(2)
            n = b.n(side)
            if n == 0:
                continue
            idx = min(int(rng.expovariate(0.15)), n - 1)
            tick, lots = b.level_at(side, idx)
            if rng.random() < 0.15 and idx > 0:
                self.change(b, side, tick, 0)
            else:
                new = max(b.min_lots, int(lots * rng.lognormvariate(0.0, 0.35)))
                self.change(b, side, tick, new if new != lots else lots + 1)
        if rng.random() < 0.03:
            self.seq_only(b, rng.randrange(2))
        self._fill_depth(b)
        self.flush(sym)

    def set_book(self, sym: str, bids: list, asks: list) -> None:
        """Replace a book with the given [[px, sz], ...] levels (test hook, /sim/control)."""
        b = self.books[sym]
        for side, lvls in ((SIDE_BID, bids), (SIDE_ASK, asks)):
            want = {}
            for px, sz in lvls:
                t, l = Decimal(str(px)) / b.pinc, Decimal(str(sz)) / b.binc
                if t != int(t) or l != int(l) or t <= 0 or l <= 0:
                    raise ValueError(f"{sym}: level {px}/{sz} is not a positive multiple of the increments")
                want[int(t)] = int(l)
            for t, _ in b.levels(side):
                if t not in want:
                    self.change(b, side, t, 0)
            for t, l in want.items():
                if b.get(side, t) != l:
                    self.change(b, side, t, l)
        self.flush(sym)

    # ---- virtual-time loop ---------------------------------------------------------------
    def _draw_plant_gap(self) -> float:
        if self.mispricing_rate <= 0:
            return float("inf")
        return self.vt_ms + self.rng.expovariate(self.mispricing_rate) * 1000.0

    def advance(self, target_vt_ms: float, max_steps: int = 50) -> None:
        """Run virtual 10 ms steps up to the wall-clock target. The content of the stream
        depends only on the seed and on the user's own orders, not on scheduling."""
        steps = 0
        while self.vt_ms + STEP_MS <= target_vt_ms and steps < max_steps:
            steps += 1
            self.vt_ms += STEP_MS
            if self.vt_ms % FAIR_STEP_MS == 0:
                self._drift()
            if not self.paused:
                self._msg_acc += self.update_rate * STEP_MS / 1000.0
                while self._msg_acc >= 1.0:
                    self._msg_acc -= 1.0
                    sym = self.rng.choice(self.symbols)
                    if sym not in self.frozen:
                        self.walk_symbol(sym)
                if self.vt_ms >= self._next_plant_vt:
                    self.plant()
                    self._next_plant_vt = self._draw_plant_gap()
            for rec in [r for r in self.active if r["_take_vt"] <= self.vt_ms]:
                self.take(rec)

    def set_mispricing_rate(self, rate: float) -> None:
        self.mispricing_rate = rate
        self._next_plant_vt = self._draw_plant_gap()

    # ---- mispricings (sim/mispricing.py) ------------------------------------------------------
    def plant(self, bps: float | None = None, primary: str | None = None) -> dict | None:
        rec = mispricing.plant(self, bps, primary)
        if rec is not None and self.plant_log is not None:
            # python -m sim --plant-log: the moment the planted frames were queued to every
            # subscriber (time.monotonic_ns, the engine's clock on the same host), for
            # profiles/bench_latency.py's plant -> receipt (the wait before a read)
            self.plant_log.write(b"%d\n" % time.monotonic_ns())
        return rec

    def take(self, rec: dict) -> None:
        mispricing.take(self, rec)

    def public_records(self) -> list[dict]:
        return mispricing.public_records(self)

    # ---- matching support ----------------------------------------------------------------
    def walk(self, sym: str, take_side: int, **kw) -> list[tuple[int, int]]:
        """Dry walk of `sym`'s side for a taker (Book.walk)."""
        return self.books[sym].walk(take_side, **kw)

    def execute(self, sym: str, take_side: int, fills: list[tuple[int, int]]) -> None:
        """Deplete the book by a taker's fills and emit the level2 changes."""
        b = self.books[sym]
        for tick, lots in fills:
            self.change(b, take_side, tick, b.get(take_side, tick) - lots)
        self.flush(sym)
