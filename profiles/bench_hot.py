"""Benchmark: the hot path per level2 message (parse + book + evaluate + pick/push) over the
full real universe. Not a test; run by hand, figures quoted in the README.

Run:  python profiles/bench_hot.py [--messages 200000]
      [--seed 1] [--plant-every 1000] [--retrigger-ms 0] [--out profiles/results/bench_hot.json]

Set-up (one thread, no sockets): the universe of data/symbols-2024-09.json (every enabled
symbol) with primaries USDT, USDC, BTC, ETH, KCS; the arrays of run.allocate (the
production layout; config from config.parse_config: 2 slots, min_profit_bps 5, book_depth
64, max_book_age_ms 1 h so that books of symbols drawn rarely are not refused as stale
during a long bench, max_start 100 USDT worth per primary, balances 1000 USDT worth).
Currency prices in USDT come from tests/data/all-tickers-2022-11-22.json (random for the
few it lacks), so cross rates are consistent. Every book starts from a level2_100-style
snapshot (100 levels a side, ~0.03 % apart, 50-3000 USDT a level, on the symbol's real
increments) loaded through pipeline.on_snapshot, which keeps 64 and sets the horizon.

The stream: frames exactly as KuCoin sends them (JSON text bytes, docs/kucoin.md 3.6:
topic, subject, data.changes.asks/bids as [price, size, sequence] strings,
sequenceStart/End consecutive per symbol, time). Symbols are drawn with a skew toward the
majors (weight = sqrt of the 2022 USDT turnover from the tickers file; see
"stream.top10_share" in the results). Each frame carries 1-5 changes near the top of the
book: mostly size changes (75 %), deletions (10 %) and insertions (15 %, inside the spread or
in a hole between levels; the deep end thins instead), so books stay near their depth as
liquid venue books do. Every `--plant-every` messages one book gets a mispricing: its best ask
is moved 0.6 % below fair (or its bid above), crossing levels removed, so triangles
through it clear the 0.3 % of fees; 50 messages later the venue restores it (with the
default, a mispricing is live for ~5 % of the messages). A plant that sweeps a book below
books.REFILL_MIN levels makes the engine ask for a refill snapshot: the bench answers it,
outside the timed region, at that symbol's next stored snapshot point (after the restore,
or every --snap-every messages of the symbol), as the maintenance thread would a little
later. Slots are released right after each push (an instant executor), and the retrigger
interval is 0 by default, so every message that finds a candidate pushes a signal.

Three passes over the same stream, each from the same initial state:
  components  a jitted loop timing l2wire.parse_l2, books.book_apply_l2 and
              triangles.evaluate_symbol separately (clock_gettime around each): the stage
              split for every message;
  fused       a jitted loop calling pipeline.on_level2 (the production fused kernel, with
              run.allocate's sh.pipe_args) + the ring push of a staged signal + release.
              For messages that signal, the kernel's own stamps (recv -> parsed -> book ->
              eval) plus the time to the end of the push split that message by stage;
              "pick+push" = end of push - eval stamp;
  python      hot.HotLoop._chunk(link, reader, recv_ns) called from Python for every
              frame, each frame in a read of its own, as the hot thread does after a socket
              recv (one hotctx.hot_chunk call: frame cut, topic hashed, fused kernel; signal
              dispatch with eventfd wake, snapshot requests): per-message time with
              perf_counter_ns, and messages/s.
Percentiles are per message (ns); p99.9 needs >= 10k samples to mean anything.
"""
from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import socket
import sys
import time
import types
from decimal import Decimal
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)

import books  # noqa: E402
import hot  # noqa: E402
import l2wire  # noqa: E402
import maint  # noqa: E402
import pipeline  # noqa: E402
import rings  # noqa: E402
import run  # noqa: E402
import slots  # noqa: E402
import wsread  # noqa: E402
import triangles  # noqa: E402
import universe  # noqa: E402
from config import parse_config  # noqa: E402
from hostinfo import machine  # noqa: E402  (profiles/ is the script's folder)

PRIMARIES = ("USDT", "USDC", "BTC", "ETH", "KCS")
SNAP_LEVELS = 100
VENUE_LEVELS = 120
PLANT_MOVE = 0.006
RESTORE_AFTER = 50
T0_MS = 1_729_816_425_625


# ---- universe, prices, arrays --------------------------------------------------------------

def currency_prices(u, rng: random.Random) -> dict:
    """USDT price of every currency of the universe (tickers, else a random price)."""
    tick = json.loads((ROOT / "tests" / "data" / "all-tickers-2022-11-22.json").read_text())
    last = {t["symbol"]: float(t["last"]) for t in tick["data"]["ticker"] if t.get("last")}
    price = {"USDT": 1.0}
    for _ in range(4):
        for s, p in last.items():
            b, q = s.split("-")
            if p <= 0:
                continue
            if b not in price and q in price:
                price[b] = p * price[q]
            elif q not in price and b in price:
                price[q] = price[b] / p
    return {c: price.get(c) or math.exp(rng.uniform(math.log(1e-4), math.log(100)))
            for c in u.currencies}


def turnover_usdt() -> dict:
    tick = json.loads((ROOT / "tests" / "data" / "all-tickers-2022-11-22.json").read_text())
    return {t["symbol"]: float(t.get("volValue") or 0) for t in tick["data"]["ticker"]}


def dec_amount(x: float) -> str:
    return format(Decimal(f"{x:.8g}"), "f")


def build_shared(retrigger_ms: float, seed: int):
    rng = random.Random(seed)
    symbols = json.loads((ROOT / "data" / "symbols-2024-09.json").read_text())
    enabled = [d for d in symbols if d.get("enableTrading")]
    probe = universe.Universe(enabled, list(PRIMARIES), {}, 0.001)
    price = currency_prices(probe, rng)
    max_start = ",".join(f"{c}={dec_amount(100.0 / price[c])}" for c in PRIMARIES)
    ini = (f"[engine]\nprimary_quotes = {','.join(PRIMARIES)}\nmax_start = {max_start}\n"
           f"min_profit_bps = 5\nmax_book_age_ms = 3600000\nslots = 2\n"
           f"retrigger_ms = {retrigger_ms}\nfire_from = executor\nbook_depth = 64\n")
    cfg = parse_config(ini, "bench_hot.ini", environ={})
    t0 = time.perf_counter()
    uni = universe.Universe(enabled, cfg.primary_quotes, {}, cfg.default_taker_fee)
    build_s = time.perf_counter() - t0
    balances = {c: Decimal(dec_amount(1000.0 / price[c])) for c in PRIMARIES}
    sh = run.allocate(cfg, uni, balances, 1, "http://127.0.0.1:1")
    return cfg, uni, sh, price, build_s, len(enabled)


# ---- the venue: books in integer ticks/lots, and the frames it sends ------------------------

class VenueBook:
    """One symbol as the venue sees it: levels in ticks (price / priceIncrement) and lots
    (size / baseIncrement); bids kept as negative ticks so both sides sort ascending."""

    def __init__(self, name, row, pinc: str, binc: str, mid: float, usd_base: float, rng, seq):
        self.name = name
        self.pinc, self.binc = Decimal(pinc), Decimal(binc)
        self.pinc_f, self.binc_f = float(pinc), float(binc)
        self.usd_base = usd_base
        self.rng = rng
        self.seq = seq
        self.keys = [[], []]        # per side, ascending from the best: -tick (bid), tick (ask)
        self.lots = [{}, {}]
        m = mid / self.pinc_f
        half = max(0.5, m * rng.uniform(0.5e-4, 4e-4))
        self.m = m
        # A price below one tick (2022 prices on 2024 increments: a few coins fell below
        # their tick) cannot be bid for: such a book has asks only, else its 1-tick bid
        # would sit far above fair and make a bogus triangle every time it is evaluated.
        bid, ask = math.floor(m - half), max(1, math.ceil(m + half))
        if ask <= bid:
            ask = bid + 1
        # levels about 0.03 % apart on average (at least one tick): a 0.6 % plant sweeps
        # ~20 of the engine's 64, not the whole side, so the book stays above the refill
        # threshold (books.REFILL_MIN) and no refill snapshot is needed (none is served here)
        self.step = max(1, round(m * 0.0003))
        for side, top, sgn in ((0, bid, -1), (1, ask, 1)):
            t = top
            for _ in range(VENUE_LEVELS):
                if t < 1:
                    break
                self._put(side, t, self.rand_lots())
                t += sgn * self.gap()
        assert self.keys[1], name
        self.planted = None

    def gap(self) -> int:
        return self.rng.randint(1, 2 * self.step - 1) if self.step > 1 else 1

    @property
    def max_lots(self) -> int:
        return max(2, int(5 * 3000.0 / self.usd_base / self.binc_f))

    def rand_lots(self) -> int:
        usd = self.rng.uniform(50.0, 3000.0)
        return max(1, int(usd / self.usd_base / self.binc_f))

    def _key(self, side, tick):
        return -tick if side == 0 else tick

    def _put(self, side, tick, lots):
        k = self._key(side, tick)
        d = self.lots[side]
        if lots <= 0:
            if tick in d:
                del d[tick]
                self.keys[side].pop(bisect.bisect_left(self.keys[side], k))
            return
        if tick not in d:
            bisect.insort(self.keys[side], k)
        d[tick] = lots

    def tick_at(self, side, i):
        k = self.keys[side][i]
        return -k if side == 0 else k

    def px(self, tick):
        return format(self.pinc * tick, "f")

    def sz(self, lots):
        return format(self.binc * lots, "f")

    # -- messages
    def change(self, out, side, tick, lots):
        """Set a level and give the change the next sequence (docs/kucoin.md 3.6)."""
        self._put(side, tick, lots)
        self.seq += 1
        out[side].append(f'["{self.px(tick)}","{self.sz(max(lots, 0))}","{self.seq}"]')

    def random_message(self, out):
        rng = self.rng
        nchg = rng.choices((1, 2, 3, 4, 5), (45, 25, 15, 10, 5))[0]
        touched = set()
        for _ in range(nchg):
            side = rng.randrange(2)
            if not self.keys[side]:
                side = 1 - side
            n = len(self.keys[side])
            i = min(int(rng.expovariate(0.3)), n - 1)
            tick = self.tick_at(side, i)
            r = rng.random()
            if self.planted is not None:
                r = 0.0                      # a planted book only changes sizes
            if (side, tick) in touched:
                continue                     # a price appears once per message (3.6)
            if r < 0.75 or n < 60:
                lots = self.lots[side][tick]
                # a size random walk, kept within 1 lot .. 5x the largest fresh level (a
                # walk left alone drifts to absurd sizes after thousands of updates)
                new = min(max(1, int(lots * rng.lognormvariate(0.0, 0.35))), self.max_lots)
                self.change(out, side, tick, new if new != lots else lots + 1)
                touched.add((side, tick))
            elif r < 0.85 and i > 0:
                self.change(out, side, tick, 0)                       # a level leaves
                touched.add((side, tick))
            else:
                new = self.free_tick(side, i)                         # a level arrives
                if new is not None and (side, new) not in touched:
                    self.change(out, side, new, self.rand_lots())
                    touched.add((side, new))
                if len(self.keys[side]) > VENUE_LEVELS + 20:          # the deep end thins
                    worst = self.tick_at(side, len(self.keys[side]) - 1)
                    if (side, worst) not in touched:
                        self.change(out, side, worst, 0)
                        touched.add((side, worst))

    def free_tick(self, side, i):
        """A free price for a new level: inside the spread when i == 0, else in the first
        hole of at least one tick below level i (within the top 60 levels), else beyond
        the last level. Insertions near the top outnumber deletions a little (the deep end
        thins instead), so the engine's capped side (64) stays near full, as on a liquid
        venue book, and the refill path (bench_books' topic) stays rare."""
        rng = self.rng
        if i == 0 and not (self.keys[0] and self.keys[1]):
            i = 1
        if i == 0:
            # inside the spread, but never past fair: a coarse tick (1 % of the price on
            # some coins) would otherwise put a best ask below fair and make a bogus arb
            bb, ba = self.tick_at(0, 0), self.tick_at(1, 0)
            lo, hi = (bb + 1, min(ba - 1, math.floor(self.m))) if side == 0 else \
                (max(bb + 1, math.ceil(self.m)), ba - 1)
            if lo <= hi:
                return rng.randint(lo, hi)
            i = 1
        n = len(self.keys[side])
        for j in range(i, min(n, 60)):
            a, b = self.keys[side][j - 1], self.keys[side][j]
            if b - a >= 2:
                k = rng.randint(a + 1, b - 1)
                return -k if side == 0 else k
        if n == 0:
            return None
        far = self.tick_at(side, n - 1) + (-1 if side == 0 else 1) * self.gap()
        return far if far >= 1 else None

    def plant(self, out, side_moved):
        """Move the best ask PLANT_MOVE below fair (side 1) or the bid above (side 0); the
        levels it crosses leave. Remembers what to put back."""
        bb, ba = self.tick_at(0, 0), self.tick_at(1, 0)
        mid = (bb + ba) / 2.0
        removed = []
        if side_moved == 1:
            tick = max(1, math.floor(mid * (1 - PLANT_MOVE)))
            while self.keys[0] and self.tick_at(0, 0) >= tick:
                t = self.tick_at(0, 0)
                removed.append((0, t, self.lots[0][t]))
                self.change(out, 0, t, 0)
        else:
            tick = math.ceil(mid * (1 + PLANT_MOVE))
            while self.keys[1] and self.tick_at(1, 0) <= tick:
                t = self.tick_at(1, 0)
                removed.append((1, t, self.lots[1][t]))
                self.change(out, 1, t, 0)
        self.change(out, side_moved, tick, self.rand_lots())
        self.planted = (side_moved, tick, removed)

    def restore(self, out):
        side, tick, removed = self.planted
        self.change(out, side, tick, 0)
        for s, t, lots in removed:
            self.change(out, s, t, lots)
        self.planted = None

    def frame(self, out, start, t_ms) -> bytes:
        n = self.name
        return (f'{{"type":"message","topic":"/market/level2:{n}","subject":"trade.l2update",'
                f'"data":{{"changes":{{"asks":[{",".join(out[1])}],"bids":[{",".join(out[0])}]}},'
                f'"sequenceEnd":{self.seq},"sequenceStart":{start},"symbol":"{n}",'
                f'"time":{t_ms}}}}}').encode()

    def snapshot(self, r):
        """A level2_100 REST snapshot of this book now (docs/kucoin.md 3.7) into record r;
        floats are exactly float(str) of the venue's decimal strings, as maint.py makes."""
        r["seq"] = self.seq
        r["ts_ms"] = T0_MS
        r["status"] = maint.SNAP_OK
        for side in (0, 1):
            n = min(SNAP_LEVELS, len(self.keys[side]))
            r["n_bid" if side == 0 else "n_ask"] = n
            for k in range(n):
                t = self.tick_at(side, k)
                r["px"][side, k] = float(self.pinc * t)
                r["sz"][side, k] = float(self.binc * self.lots[side][t])


def build_venue(uni, price, seed):
    rng = random.Random(seed)
    venue = []
    for i, name in enumerate(uni.symbols):
        row = uni.symtab[i]
        b, q = uni.currencies[row["base"]], uni.currencies[row["quote"]]
        mid = price[b] / price[q]
        venue.append(VenueBook(name, row, uni.price_inc_str[i], uni.base_inc_str[i], mid, price[b],
                               rng, rng.randrange(10 ** 9, 10 ** 10)))
    return venue


def seed_books(sh, venue):
    rec = np.zeros(1, sh.snap_ring[0].dtype)
    for i, vb in enumerate(venue):
        rec[0]["sym"] = i
        vb.snapshot(rec[0])
        assert pipeline.on_snapshot(rec, *sh.snap_args) == 0, vb.name
    assert (sh.book_state["status"] == books.BOOK_SYNCED).all()


def make_stream(uni, venue, n_msgs, plant_every, seed, snap_dtype, snap_every):
    """Pre-generate the frames (not timed). Returns frames (list of bytes), symbol ids,
    snapshot points and a description.

    Snapshot points: after a restore and after every `snap_every`-th message of a symbol,
    the venue's level2_100 snapshot of that symbol is stored (snaps[snap_idx[k]] belongs
    after message k). The passes load it only when the engine's book asked for one
    (refill: a plant swept it below books.REFILL_MIN levels), as the maintenance thread
    would answer a few tens of messages later; otherwise a refill would never end here."""
    rng = random.Random(seed + 7)
    vol = turnover_usdt()
    w = np.array([math.sqrt(max(vol.get(s, 0.0), 1000.0)) for s in uni.symbols])
    w /= w.sum()
    draws = np.random.default_rng(seed).choice(len(uni.symbols), size=n_msgs, p=w)
    frames, syms = [], np.zeros(n_msgs, np.int64)
    snap_idx = np.full(n_msgs, -1, np.int64)
    snaps = []
    count = np.zeros(len(uni.symbols), np.int64)
    restores = []                       # (due message index, symbol)
    planted = 0
    for k in range(n_msgs):
        s = int(draws[k])
        restored = False
        out = ([], [])
        if restores and restores[0][0] <= k:
            s = restores.pop(0)[1]
            vb = venue[s]
            start = vb.seq + 1
            vb.restore(out)
            restored = True
        else:
            vb = venue[s]
            start = vb.seq + 1
            if (plant_every and k % plant_every == plant_every - 1 and vb.planted is None
                    and vb.m >= 500 and vb.keys[0]):   # a 0.6 % move needs a fine tick
                vb.plant(out, rng.randrange(2))
                restores.append((k + RESTORE_AFTER, s))
                planted += 1
            else:
                vb.random_message(out)
                if not out[0] and not out[1]:
                    side = 0 if vb.keys[0] else 1
                    t = vb.tick_at(side, 0)
                    vb.change(out, side, t, min(vb.lots[side][t] + 1, vb.max_lots))
        frames.append(vb.frame(out, start, T0_MS + k // 20))
        syms[k] = s
        count[s] += 1
        if vb.planted is None and (restored or count[s] % snap_every == 0):
            rec = np.zeros(1, snap_dtype)
            rec[0]["sym"] = s
            vb.snapshot(rec[0])
            snap_idx[k] = len(snaps)
            snaps.append(rec)
    top = np.sort(w)[::-1]
    snaps = np.concatenate(snaps) if snaps else np.zeros(0, snap_dtype)
    return frames, syms, snap_idx, snaps, {
        "planted": planted, "top10_share": float(top[:10].sum()),
        "top_symbols": [uni.symbols[i] for i in np.argsort(w)[::-1][:10]],
        "snapshot_points": int(len(snaps)), "snap_every": snap_every}


# ---- state save/restore so that every pass starts from the same books ----------------------

def arrays_of(sh):
    arrs = [a for a in sh.pipe_args if isinstance(a, np.ndarray)]
    arrs += [a for a in sh.snap_args if isinstance(a, np.ndarray)]
    for buf, ctrl in sh.sig_rings + sh.fill_rings + [sh.snap_ring, sh.snap_req]:
        arrs += [buf, ctrl]
    uniq, seen = [], set()
    for a in arrs:
        if id(a) not in seen:
            seen.add(id(a))
            uniq.append(a)
    return uniq


def save(sh):
    return [(a, a.copy()) for a in arrays_of(sh)]


def restore(saved):
    for a, c in saved:
        a[...] = c


# ---- jitted passes ---------------------------------------------------------------------------

@njit(nogil=True)
def _serve_snapshot(k, sym, snap_idx, snaps, state, sargs):
    """The maintenance thread's answer, outside the timed region: the stored snapshot
    after message k, loaded only if this book asked for one."""
    j = snap_idx[k]
    if j >= 0 and (state[sym]["refill"] != 0 or state[sym]["status"] != books.BOOK_SYNCED):
        pipeline.on_snapshot(snaps[j:j + 1], *sargs)


@njit(nogil=True)
def pass_components(buf, offs, syms, times, ncand, snap_idx, snaps, sargs, changes, hdr, state,
                    px, sz, pend, pctl, refill_min, symtab, tris, sym_tri_start, sym_tri_list,
                    balances, max_start, params, cands, evc):
    """parse / book / evaluate per message, each timed (the contract kernels, in the order
    on_level2 runs them). times[k] = (parse, book, evaluate) ns; -1 = stage not reached."""
    for k in range(syms.shape[0]):
        frame = buf[offs[k]:offs[k + 1]]
        sym = syms[k]
        t0 = rings.monotonic_ns()
        nch = l2wire.parse_l2(frame, changes, hdr)
        t1 = rings.monotonic_ns()
        times[k, 0] = t1 - t0
        times[k, 1] = -1
        times[k, 2] = -1
        if nch >= 0:
            h = hdr[0]
            st = books.book_apply_l2(state, px, sz, sym, h["seq_start"], h["seq_end"], h["ts_ms"],
                                     t0, changes, nch, pend, pctl, refill_min)
            t2 = rings.monotonic_ns()
            times[k, 1] = t2 - t1
            if st == books.L2_APPLIED or st == books.L2_NEED_REFILL:
                n = triangles.evaluate_symbol(sym, t2, state, px, sz, symtab, tris, sym_tri_start,
                                              sym_tri_list, balances, max_start, params, cands, evc)
                times[k, 2] = rings.monotonic_ns() - t2
                ncand[k] = n
        _serve_snapshot(k, sym, snap_idx, snaps, state, sargs)


@njit(nogil=True)
def pass_fused(buf, offs, syms, times, split, snap_idx, snaps, sargs, rbufs, rctls, popped, stage,
               state, counters, c_cand, slot_table, pargs):
    """pipeline.on_level2 per message (pargs = sh.pipe_args), then what hot.py does with a
    staged signal (stamp push_ns, ring_push), then an instant executor (pop + release).
    times[k] = (total ns, slot or -1, candidates). split[k] = (parse, book, eval, pick+push)
    from the kernel's own stamps, for messages that signalled."""
    for k in range(syms.shape[0]):
        frame = buf[offs[k]:offs[k + 1]]
        c0 = counters[c_cand]
        t0 = rings.monotonic_ns()
        slot = pipeline.on_level2(frame, syms[k], t0, *pargs)
        if slot >= 0:
            stage[0]["push_ns"] = rings.monotonic_ns()
            rings.ring_push(rbufs[slot], rctls[slot], stage, 0)
        t1 = rings.monotonic_ns()
        times[k, 0] = t1 - t0
        times[k, 1] = slot
        times[k, 2] = counters[c_cand] - c0
        if slot >= 0:
            s = stage[0]
            split[k, 0] = s["parsed_ns"] - s["recv_ns"]
            split[k, 1] = s["book_ns"] - s["parsed_ns"]
            split[k, 2] = s["eval_ns"] - s["book_ns"]
            split[k, 3] = t1 - s["eval_ns"]
            rings.ring_pop(rbufs[slot], rctls[slot], popped, 0)
            slots.release(slot_table, slot)
        _serve_snapshot(k, syms[k], snap_idx, snaps, state, sargs)


@njit(nogil=True)
def timer_overhead(out):
    for i in range(out.shape[0]):
        t0 = rings.monotonic_ns()
        out[i] = rings.monotonic_ns() - t0


# ---- passes ----------------------------------------------------------------------------------

def pct(a) -> dict:
    a = np.asarray(a, np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "p99.9": float(np.percentile(a, 99.9)), "max": float(a.max()), "mean": float(a.mean()),
            "n": int(a.size)}


def fmt(name, d) -> str:
    if not d.get("n"):
        return f"  {name:22s} (no samples)"
    return (f"  {name:22s} p50 {d['p50']:8.0f} ns  p99 {d['p99']:8.0f}  p99.9 {d['p99.9']:8.0f}  "
            f"max {d['max']:9.0f}  mean {d['mean']:7.0f}  n={d['n']}")


def run_components(sh, st):
    n = len(st.syms)
    times = np.zeros((n, 3), np.int64)
    ncand = np.zeros(n, np.int64)
    t = time.perf_counter()
    pass_components(st.buf, st.offs, st.syms, times, ncand, st.snap_idx, st.snaps,
                    tuple(sh.snap_args), sh.changes, sh.l2hdr, sh.book_state, sh.book_px,
                    sh.book_sz, sh.pend, sh.pctl, books.REFILL_MIN, sh.universe.symtab,
                    sh.universe.tris, sh.universe.sym_tri_start, sh.universe.sym_tri_list,
                    sh.balances, sh.max_start, sh.params, sh.cands, sh.evc)
    wall = time.perf_counter() - t
    return times, ncand, wall


def ring_stack(sh):
    cap = len(sh.sig_rings[0][0])
    rbufs = np.zeros((len(sh.sig_rings), cap), rings.SIGNAL_DTYPE)
    rctls = np.zeros((len(sh.sig_rings), len(sh.sig_rings[0][1])), np.int64)
    return rbufs, rctls


def run_fused(sh, st):
    n = len(st.syms)
    times = np.zeros((n, 3), np.int64)
    split = np.zeros((n, 4), np.int64)
    rbufs, rctls = ring_stack(sh)
    popped = np.zeros(1, rings.SIGNAL_DTYPE)
    t = time.perf_counter()
    pass_fused(st.buf, st.offs, st.syms, times, split, st.snap_idx, st.snaps, tuple(sh.snap_args),
               rbufs, rctls, popped, sh.sig_stage, sh.book_state, sh.counters,
               pipeline.C["candidates"], sh.slots, tuple(sh.pipe_args))
    wall = time.perf_counter() - t
    return times, split, wall


def run_python(sh, cfg, st):
    """HotLoop._chunk per frame, each frame a WebSocket text frame read on its own (the worst
    case: one socket read per message): the hot thread's work per message after recv, the
    production path (hotctx.hot_chunk and the Python around it). Outside the timed call:
    the WebSocket framing of the bytes (as the socket would deliver them), the instant
    executor (pop, release) and the snapshot answers, through the snapshot ring and
    HotLoop._take_snapshots as in production."""
    lines = []
    maint_stub = types.SimpleNamespace(request_link=lambda kind, symbols: None)
    loop = hot.HotLoop(sh, maint_stub, [], cfg, lines.append)
    sock_a, sock_b = socket.socketpair()   # the reader needs a socket; bytes come by feed()
    rd = wsread.FrameReader(sock_a)
    link = types.SimpleNamespace(kind="public", connect_id="bench", ping_id="", pending_acks={},
                                 symbols=[], alive=True, fd=-1, pong_deadline=0.0, reader=rd)
    C_SIG = pipeline.C["signals"]
    popped = np.zeros(1, rings.SIGNAL_DTYPE)
    times = np.zeros(len(st.frames), np.int64)
    sig = sh.counters[C_SIG]
    on_chunk = loop._chunk
    perf = time.perf_counter_ns
    mono = time.monotonic_ns
    state = sh.book_state
    snap_idx, snaps, syms = st.snap_idx, st.snaps, st.syms
    sbuf, sctl = sh.snap_ring
    t = time.perf_counter()
    for k, data in enumerate(st.frames):
        rd.feed(wsread.text_header(len(data)) + data)
        t0 = perf()
        on_chunk(link, rd, mono())
        times[k] = perf() - t0
        if sh.counters[C_SIG] != sig:        # the instant executor: pop, release
            sig = sh.counters[C_SIG]
            for s, (b, c) in enumerate(sh.sig_rings):
                while rings.ring_pop(b, c, popped, 0):
                    slots.release(sh.slots, s)
                    rings.drain(sh.slot_fds[s])
        j = snap_idx[k]
        if j >= 0:
            r = state[syms[k]]
            if r["refill"] or r["status"] != books.BOOK_SYNCED:
                rings.ring_push(sbuf, sctl, snaps, j)
                loop._take_snapshots()
    wall = time.perf_counter() - t
    loop.ep.close()
    sock_a.close()
    sock_b.close()
    return times, wall, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plant-every", type=int, default=1000)
    ap.add_argument("--retrigger-ms", type=float, default=0.0)
    ap.add_argument("--snap-every", type=int, default=40,
                    help="a stored snapshot point every N messages of a symbol")
    ap.add_argument("--out", default=str(ROOT / "profiles" / "results" / "bench_hot.json"))
    args = ap.parse_args()
    mach = machine()
    print(f"machine: {mach['nproc']} cpu(s) usable ({mach['cpu_count']} online), {mach['cpu']}; "
          f"python {mach['python']}, numba {mach['numba']}, numpy {mach['numpy']}")

    cfg, uni, sh, price, build_s, n_enabled = build_shared(args.retrigger_ms, args.seed)
    summ = uni.summary()
    t = time.perf_counter()
    venue = build_venue(uni, price, args.seed)
    seed_books(sh, venue)
    frames, syms, snap_idx, snaps, stream = make_stream(
        uni, venue, args.messages, args.plant_every, args.seed, sh.snap_ring[0].dtype, args.snap_every)
    gen_s = time.perf_counter() - t
    lens = np.array([len(f) for f in frames])
    offs = np.zeros(len(frames) + 1, np.int64)
    offs[1:] = np.cumsum(lens)
    buf = np.frombuffer(b"".join(frames), np.uint8)
    full = types.SimpleNamespace(frames=frames, buf=buf, offs=offs, syms=syms, snap_idx=snap_idx,
                                 snaps=snaps)
    per_sym = np.diff(uni.sym_tri_start)
    print(f"universe: {n_enabled} enabled symbols -> {summ['symbols']} in triangles, "
          f"{summ['currencies']} currencies, {summ['triangles']} triangles {summ['per_primary']} "
          f"(built in {build_s * 1e3:.0f} ms)")
    print(f"stream: {len(frames):,} frames, {lens.mean():.0f} B mean, {stream['planted']} mispricings "
          f"planted; top-10 symbols get {stream['top10_share']:.0%} of messages "
          f"({', '.join(stream['top_symbols'][:5])}, ...); triangles per message mean "
          f"{per_sym[syms].mean():.0f}; {stream['snapshot_points']} snapshot points; "
          f"generated in {gen_s:.1f} s")

    saved = save(sh)
    res = {"machine": mach, "universe": dict(summ, enabled_symbols=n_enabled),
           "stream": dict(stream, messages=len(frames), mean_bytes=float(lens.mean()),
                          triangles_per_message=float(per_sym[syms].mean())),
           "params": {"seed": args.seed, "plant_every": args.plant_every,
                      "retrigger_ms": args.retrigger_ms, "book_depth": sh.book_px.shape[2],
                      "min_profit_bps": cfg.min_profit_bps, "max_levels": cfg.max_levels, "slots": cfg.slots}}

    # warm-up of every pass on a prefix (compiles or loads the cache), then the real passes
    w = min(5000, len(frames))
    head = types.SimpleNamespace(frames=frames[:w], buf=buf, offs=offs[:w + 1], syms=syms[:w],
                                 snap_idx=snap_idx[:w], snaps=snaps)
    for fn in (lambda: run_components(sh, head), lambda: run_fused(sh, head),
               lambda: run_python(sh, cfg, head)):
        fn()
        restore(saved)

    # 1. components
    c0 = sh.counters.copy()
    ctimes, ncand, wall = run_components(sh, full)
    snaps_loaded = int(sh.counters[pipeline.C["snapshots"]] - c0[pipeline.C["snapshots"]])
    ok = ctimes[:, 2] >= 0
    comp = {"wall_s": wall, "msgs_per_s": len(frames) / wall, "parse": pct(ctimes[:, 0]),
            "book": pct(ctimes[ctimes[:, 1] >= 0, 1]), "evaluate": pct(ctimes[ok, 2]),
            "parse+book+evaluate": pct(ctimes[ok].sum(axis=1)),
            "evaluate_heavy": pct(ctimes[ok & (per_sym[syms] >= 200), 2]),
            "messages_with_candidates": int((ncand > 0).sum()),
            "candidates_per_message_with_any": pct(ncand[ncand > 0]),
            "evaluate_with_candidates": pct(ctimes[ok & (ncand > 0), 2]),
            "not_applied": int((~ok).sum()), "refill_snapshots_loaded": snaps_loaded,
            "books_refilling_at_end": int(sh.book_state["refill"].sum())}
    restore(saved)

    # 2. fused kernel
    c0 = sh.counters.copy()
    ftimes, split, wall = run_fused(sh, full)
    sig = ftimes[:, 1] >= 0
    cnt = {k: int(v - c0[i]) for i, (k, v) in enumerate(zip(pipeline.HOT_COUNTERS, sh.counters)) if v - c0[i]}
    fused = {"wall_s": wall, "msgs_per_s": len(frames) / wall, "total": pct(ftimes[:, 0]),
             "total_no_candidate": pct(ftimes[ftimes[:, 2] == 0, 0]),
             "total_with_candidates": pct(ftimes[ftimes[:, 2] > 0, 0]),
             "signals": int(sig.sum()),
             "signal_split": {"parse": pct(split[sig, 0]), "book": pct(split[sig, 1]),
                              "evaluate": pct(split[sig, 2]), "pick+push": pct(split[sig, 3])},
             "counters": cnt}
    restore(saved)

    # 3. the hot thread's Python path (HotLoop._chunk, one read per frame)
    c0 = sh.counters.copy()
    ptimes, wall, lines = run_python(sh, cfg, full)
    cnt_py = {k: int(v - c0[i]) for i, (k, v) in enumerate(zip(pipeline.HOT_COUNTERS, sh.counters)) if v - c0[i]}
    py = {"wall_s": wall, "msgs_per_s": len(frames) / wall,
          "msgs_per_s_in_chunk": len(frames) / (ptimes.sum() / 1e9), "per_message": pct(ptimes),
          "counters": cnt_py}
    restore(saved)

    oh = np.zeros(10000, np.int64)
    timer_overhead(oh)
    res.update(components=comp, fused=fused, python=py, timer_overhead_ns=float(np.median(oh)))

    print(f"-- components (jitted loop, {comp['msgs_per_s']:,.0f} msg/s; {comp['messages_with_candidates']} "
          f"messages with candidates; {snaps_loaded} refill snapshots loaded)")
    for k in ("parse", "book", "evaluate", "evaluate_heavy", "evaluate_with_candidates",
              "parse+book+evaluate"):
        print(fmt(k, comp[k]))
    cd = comp["candidates_per_message_with_any"]
    if cd.get("n"):
        print(f"   candidates per message that has any: p50 {cd['p50']:.0f}, p99 {cd['p99']:.0f}, "
              f"max {cd['max']:.0f}")
    print(f"-- fused pipeline.on_level2 + push + release (jitted loop, {fused['msgs_per_s']:,.0f} msg/s; "
          f"{fused['signals']} signals)")
    for k in ("total", "total_no_candidate", "total_with_candidates"):
        print(fmt(k, fused[k]))
    print("   split of the messages that signalled (kernel stamps):")
    for k, d in fused["signal_split"].items():
        print(fmt(k, d))
    print(f"   counters: {fused['counters']}")
    print(f"-- python: HotLoop._chunk per frame ({py['msgs_per_s']:,.0f} msg/s loop, "
          f"{py['msgs_per_s_in_chunk']:,.0f} msg/s inside _chunk)")
    print(fmt("per message", py["per_message"]))
    print(f"   counters: {py['counters']}")
    print(f"timer overhead {res['timer_overhead_ns']:.0f} ns (included in each stage figure)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
