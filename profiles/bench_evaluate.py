"""Benchmark: triangles.evaluate_symbol on the full real universe with random, consistent books.

Not a test. Run: `python profiles/bench_evaluate.py
[--calls 20000] [--seed 1] [--out profiles/results/bench_evaluate.json]`.
Line profile (JIT off, so line_profiler sees inside the kernels; use few calls):
`NUMBA_DISABLE_JIT=1 kernprof -l -v profiles/bench_evaluate.py --calls 200`
after decorating the function of interest with @profile.

Set-up: Universe from data/symbols-2024-09.json with primaries USDT, USDC, BTC, ETH, KCS
(fee 0.1 %). Currency prices in USDT from tests/data/all-tickers-2022-11-22.json (random for
currencies it lacks); each symbol's book is its cross rate with 3 bps noise, a spread of
1-10 bps, 20 levels a side of 50-3000 USDT each, on the symbol's real increments.
Balances/max_start 1000 USDT worth per primary; params 5 bps, 20 levels, max_scan 32,
search_tol 0.01 bps. Two market states: `quiet` (no mispricing: the screen rejects nearly
everything) and `planted` (3 % of symbols shifted by 0.6 %: many triangles need the search).
Timed after a warm-up pass over every symbol, from a jitted loop with clock_gettime around
each call, so no Python dispatch is included (the hot thread calls it from a fused kernel):
  uniform     evaluate_symbol on symbols drawn uniformly
  heavy       the same on the three symbols with most triangles (BTC-USDT 756, ...)
  search      evaluate_triangle on every triangle that passes the screen: the depth-aware
              search (steps 2-4) a candidate pays
  search_all  the same with EVAL_EMIT_ALL (no screen, every feasible triangle searched)
  python      evaluate_symbol called from Python (Numba argument dispatch included)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)

import triangles as T  # noqa: E402
import universe as U  # noqa: E402
from books import alloc_books  # noqa: E402
from rings import monotonic_ns  # noqa: E402

PRIMARIES = ["USDT", "USDC", "BTC", "ETH", "KCS"]
DEPTH = 20
NOW_NS = 10 ** 15


def currency_prices(u, rng):
    """USDT price of every currency: tickers where they exist, else random."""
    tick = json.loads((ROOT / "tests" / "data" / "all-tickers-2022-11-22.json").read_text())
    last = {t["symbol"]: float(t["last"]) for t in tick["data"]["ticker"] if t.get("last")}
    price = {"USDT": 1.0}
    for _ in range(3):   # through USDT, then through BTC/ETH/... once those are known
        for s, p in last.items():
            b, q = s.split("-")
            if b not in price and q in price and p > 0:
                price[b] = p * price[q]
            elif q not in price and b in price and p > 0:
                price[q] = price[b] / p
    return {c: price.get(c, math.exp(rng.uniform(math.log(1e-4), math.log(100))))
            for c in u.currencies}


def build(seed, planted=0.03):
    rng = np.random.default_rng(seed)
    symbols = json.loads((ROOT / "data" / "symbols-2024-09.json").read_text())
    t0 = time.perf_counter()
    u = U.Universe(symbols, PRIMARIES, default_taker_fee=0.001)
    build_s = time.perf_counter() - t0
    price = currency_prices(u, rng)
    state, px, sz = alloc_books(len(u.symbols), 64)
    for i, row in enumerate(u.symtab):
        b, q = u.currencies[row["base"]], u.currencies[row["quote"]]
        mid = price[b] / price[q] * math.exp(rng.normal(0, 3e-4))
        if rng.random() < planted:
            mid *= 1 + rng.choice([-0.006, 0.006])
        tick = row["price_inc"]
        half = max(tick, mid * rng.uniform(0.5e-4, 5e-4))
        bid = max(tick, math.floor((mid - half) / tick) * tick)
        ask = max(bid + tick, math.ceil((mid + half) / tick) * tick)
        for side, p0, step in ((T.SIDE_BID, bid, -1), (T.SIDE_ASK, ask, 1)):
            p, n = p0, 0
            for _ in range(DEPTH):
                if p <= 0:
                    break
                usdt = rng.uniform(50, 3000)
                size = math.floor(usdt / price[b] / row["base_inc"]) * row["base_inc"]
                px[i, side, n], sz[i, side, n] = p, max(size, row["base_inc"])
                n += 1
                p += step * max(tick, round(p * rng.uniform(0, 1e-3) / tick) * tick)
            state[i]["n_bid" if side == T.SIDE_BID else "n_ask"] = n
        state[i]["status"] = T.BOOK_SYNCED
        state[i]["recv_ns"] = NOW_NS
        state[i]["ts_ms"] = 1_700_000_000_000
    usd = {c: 1000.0 / price[c] for c in PRIMARIES}
    balances = u.ccy_array(usd)
    max_start = u.ccy_array(usd)
    return u, state, px, sz, balances, max_start, build_s


@njit(nogil=True)
def timed_symbols(syms, times, counts, state, px, sz, symtab, tris, start, lst, balances,
                  max_start, params, out, counters):
    for i in range(syms.shape[0]):
        t0 = monotonic_ns()
        counts[i] = T.evaluate_symbol(syms[i], NOW_NS, state, px, sz, symtab, tris, start, lst,
                                      balances, max_start, params, out, counters)
        times[i] = monotonic_ns() - t0


@njit(nogil=True)
def timed_triangles(times, codes, state, px, sz, symtab, tris, balances, max_start, params,
                    out):
    for t in range(tris.shape[0]):
        t0 = monotonic_ns()
        codes[t] = T.evaluate_triangle(t, NOW_NS, state, px, sz, symtab, tris, balances,
                                       max_start, params, out, 0)
        times[t] = monotonic_ns() - t0


@njit(nogil=True)
def timer_overhead(times):
    for i in range(times.shape[0]):
        t0 = monotonic_ns()
        times[i] = monotonic_ns() - t0


def pct(a):
    a = np.asarray(a, np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "p99.9": float(np.percentile(a, 99.9)), "max": float(a.max()),
            "mean": float(a.mean()), "n": int(a.size)}


def fmt(name, d, unit="ns"):
    return (f"{name:8s} p50 {d['p50']:9.0f} {unit}  p99 {d['p99']:9.0f}  p99.9 {d['p99.9']:9.0f}"
            f"  max {d['max']:9.0f}  mean {d['mean']:9.0f}  (n={d['n']})")


def run_market(name, seed, calls, planted):
    """Time one market state; returns its result dict and the universe."""
    u, state, px, sz, balances, max_start, build_s = build(seed, planted)
    per_sym = np.diff(u.sym_tri_start)
    params = T.alloc_params(min_profit_bps=5.0, max_book_age_ms=2000.0, max_levels=DEPTH)
    out = T.alloc_candidates(4096)
    counters = T.alloc_eval_counters()
    rng = np.random.default_rng(seed + 1)
    args_k = (state, px, sz, u.symtab, u.tris, u.sym_tri_start, u.sym_tri_list, balances,
              max_start, params, out, counters)
    every = np.arange(len(u.symbols), dtype=np.int64)
    t0 = time.perf_counter()    # warm-up: every symbol once (compile or cache load)
    timed_symbols(every, np.zeros(len(every), np.int64), np.zeros(len(every), np.int64), *args_k)
    warm_s = time.perf_counter() - t0
    counters[:] = 0
    res = {"planted": planted, "warmup_s": warm_s, "build_s": build_s}

    syms = rng.integers(0, len(u.symbols), calls).astype(np.int64)
    times, counts = np.zeros(calls, np.int64), np.zeros(calls, np.int64)
    timed_symbols(syms, times, counts, *args_k)
    res["uniform"] = pct(times)
    res["uniform"]["ns_per_triangle"] = float(times.sum() / per_sym[syms].sum())
    res["uniform"]["candidates_per_call"] = float(counts.mean())
    res["counters"] = {n[4:].lower(): int(counters[getattr(T, n)]) for n in dir(T)
                       if n.startswith("EVC_") and n != "EVC_LEN"}

    heavy = np.argsort(per_sym)[::-1][:3]
    hs = np.repeat(heavy, max(1, calls // 30)).astype(np.int64)
    th, ch = np.zeros(len(hs), np.int64), np.zeros(len(hs), np.int64)
    timed_symbols(hs, th, ch, *args_k)
    res["heavy"] = pct(th)
    res["heavy"]["symbols"] = {u.symbols[s]: int(per_sym[s]) for s in heavy}

    # the full search (what a triangle passing the screen pays), every triangle
    for mode, flags in (("search", 0), ("search_all", T.EVAL_EMIT_ALL)):
        params[0]["flags"] = flags
        tt, codes = np.zeros(u.ntri, np.int64), np.zeros(u.ntri, np.int64)
        for _ in range(2):   # the first pass warms the caches
            timed_triangles(tt, codes, state, px, sz, u.symtab, u.tris, balances, max_start,
                            params, out)
        sized = np.isin(codes, [T.EVC_CANDIDATES, T.EVC_NO_PROFIT, T.EVC_BELOW_BPS])
        if sized.any():
            res[mode] = pct(tt[sized])
            res[mode]["outcomes"] = {int(c): int(np.sum(codes == c)) for c in np.unique(codes)}
    params[0]["flags"] = 0

    T.evaluate_symbol(0, NOW_NS, *args_k)      # the Python entry point's own dispatch warm-up
    py = np.zeros(2000, np.int64)
    for i, s in enumerate(rng.integers(0, len(u.symbols), len(py))):
        t0 = time.perf_counter_ns()
        T.evaluate_symbol(int(s), NOW_NS, *args_k)
        py[i] = time.perf_counter_ns() - t0
    res["python"] = pct(py)
    print(f"-- market: {name} ({planted:.0%} of symbols mispriced by 0.6 %), warm-up "
          f"{warm_s:.2f} s")
    print(fmt("uniform", res["uniform"]) + f"  {res['uniform']['ns_per_triangle']:.1f} ns/tri,"
          f" {res['uniform']['candidates_per_call']:.3f} candidates/call")
    print(fmt("heavy", res["heavy"]) + f"  {res['heavy']['symbols']}")
    for mode in ("search", "search_all"):
        if mode in res:
            print(fmt(mode, res[mode]) + f"  outcomes {res[mode]['outcomes']}")
    print(fmt("python", res["python"]))
    print(f"counters (uniform): {res['counters']}")
    return res, u


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "profiles" / "results" / "bench_evaluate.json"))
    args = ap.parse_args()
    res = {}
    res["quiet"], u = run_market("quiet", args.seed, args.calls, 0.0)
    res["planted"], u = run_market("planted", args.seed, args.calls, 0.03)
    per_sym = np.diff(u.sym_tri_start)
    oh = np.zeros(10000, np.int64)
    timer_overhead(oh)
    res["timer_overhead_ns"] = float(np.median(oh))
    res["universe"] = dict(u.summary(), triangles_per_symbol={
        "mean": float(per_sym.mean()), "median": float(np.median(per_sym)),
        "p99": float(np.percentile(per_sym, 99)), "max": int(per_sym.max())})
    res["machine"] = {"cpu": platform.processor() or platform.machine(),
                      "cores": os.cpu_count(), "python": platform.python_version(),
                      "numpy": np.__version__, "numba": __import__("numba").__version__,
                      "jit": os.environ.get("NUMBA_DISABLE_JIT", "0") != "1"}
    res["params"] = {"calls": args.calls, "seed": args.seed, "depth": DEPTH,
                     "min_profit_bps": 5.0, "max_scan": 32, "search_tol_bps": 0.01}
    print(f"universe: {res['universe']}; timer overhead {res['timer_overhead_ns']:.0f} ns; "
          f"machine {res['machine']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
