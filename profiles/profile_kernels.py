"""Profile the kernels' insides (line_profiler, JIT off) and time them whole (JIT on).

Run:  python profiles/profile_kernels.py [--frames N] [--trials 30] [--seed 5]
      (both views; writes profiles/results/line_profile_kernels.txt)
      python profiles/profile_kernels.py --jit [--json PATH]   (JIT-on timings only)
      python profiles/profile_kernels.py --line-only            (line profile only)
Inputs, identical in both views:
- stream: tests/data/ws-public-2021-04-25.jsonl, the level2 frames of 9 symbols (compact
  JSON), with the REST snapshots of tests/data/orderbook-level2-snapshots-2021-04-25.jsonl
  delivered at their recorded receive times (books.book_sync_snapshot, not profiled), as in
  tests/test_books.py; depth 64, refill_min 24 (the engine's defaults). Per frame:
  l2wire.parse_l2 then books.book_apply_l2 (called apart, not through book_on_frame).
- triangles: the hub universe of tests/test_pipeline.py (symbols of data/symbols-2024-09.json
  between 10 hub currencies; primaries USDT, USDC, BTC, ETH) with random consistent books
  (10 levels a side), 3 symbols mispriced by 0.2-2 % per trial; per trial 6 random symbols:
  pipeline.evaluate_best, then pipeline.pick_and_stage when it found candidates (the slot is
  released right after, as an executor would). min_profit_bps 5, max_levels 10, book age
  ignored (EVAL_IGNORE_AGE).
View 1, JIT off (NUMBA_DISABLE_JIT=1, set before numba is imported; docs/design.md 11: every kernel
runs as plain Python): line_profiler on parse_l2, book_apply_l2, book_set_level,
screen_triangle, evaluate_triangle, _best_volume, evaluate_best, pick_and_stage and the
helpers that carry their time (l2wire._parse_data/_parse_levels/_read_num/parse_decimal/
_read_int, triangles._forward/_continuous_best/_relaxed_out/_leg_limits/_feasible_range/
_tight_v/_book_check/_rate_left). These are Python times, inflated by the tracer: read the
split between lines, not the absolute figures. A line's time includes the kernels it calls.
View 2, JIT on (--jit, a subprocess in the default run): each kernel timed whole per call
over --reps passes of the same inputs after a full untimed warm-up pass, by a small jitted wrapper that reads CLOCK_MONOTONIC
around the call (no Python dispatch in the figure; `timer` is the empty-region overhead,
included in every figure). book_set_level is timed on a scratch copy of the book row, fed
the same entries book_apply_l2 applies; screen_triangle on every triangle through the
evaluated symbol; evaluate_triangle and _best_volume on every triangle that passes the
screen (a superset of those evaluate_best searches; _best_volume's wrapper repeats
evaluate_triangle's prelude untimed). A profile, not a test: nothing asserts a time.
"""
from __future__ import annotations

import os
import sys

JIT = "--jit" in sys.argv
if JIT:
    os.environ.pop("NUMBA_DISABLE_JIT", None)
else:
    os.environ["NUMBA_DISABLE_JIT"] = "1"     # before numba is imported (by books, below)

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import linecache  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)

import books as B  # noqa: E402
import l2wire as W  # noqa: E402
import pipeline as P  # noqa: E402
import rings  # noqa: E402
import slots  # noqa: E402
import triangles as T  # noqa: E402
from rings import monotonic_ns  # noqa: E402
from hostinfo import machine  # noqa: E402  (profiles/ is the script's folder)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_pipeline import hub_universe, random_books  # noqa: E402  (the test's inputs)

DATA = ROOT / "tests" / "data"
DEPTH = 64
OUT = ROOT / "profiles" / "results" / "line_profile_kernels.txt"

# the kernels of the brief, then the helpers that carry their time
KERNELS = [(W, "parse_l2"), (B, "book_apply_l2"), (B, "book_set_level"),
           (T, "screen_triangle"), (T, "evaluate_triangle"), (T, "_best_volume"),
           (P, "evaluate_best"), (P, "pick_and_stage")]
HELPERS = [(W, "_parse_data"), (W, "_parse_changes"), (W, "_parse_levels"), (W, "_read_num"),
           (W, "parse_decimal"), (W, "_read_int"), (W, "_read_key"),
           (T, "_book_check"), (T, "_rate_left"), (T, "_leg_limits"), (T, "_feasible_range"),
           (T, "_continuous_best"), (T, "_forward"), (T, "_relaxed_out"), (T, "_tight_v")]


# ---- inputs (identical in both views) ------------------------------------------------------

def load_stream(max_frames: int):
    recs = [json.loads(x) for x in (DATA / "ws-public-2021-04-25.jsonl").read_text().splitlines()]
    snaps = [json.loads(x) for x in
             (DATA / "orderbook-level2-snapshots-2021-04-25.jsonl").read_text().splitlines()]
    syms = [s["url"].split("symbol=")[1] for s in snaps]
    ids = {s.encode(): i for i, s in enumerate(syms)}
    frames = []
    for r in recs:
        if r["direction"] == "recv" and r["msg"].get("subject") == "trade.l2update":
            raw = json.dumps(r["msg"], separators=(",", ":")).encode()
            frames.append((r["recv_ts"], np.frombuffer(raw, np.uint8), W.frame_symbol_id(raw, ids)))
    if max_frames:
        frames = frames[:max_frames]
    snap_arr = [(s["recv_ts"], B.snapshot_arrays(s["response"]["data"], DEPTH + 1)) for s in snaps]
    return frames, snap_arr, syms


def replay_stream(frames, snap_arr, parse, apply, set_level=None) -> dict:
    """Feed the stream through parse(buf, changes, hdr) and apply(...book_apply_l2 args...);
    set_level(st1, px1, sz1, side, price, size) (JIT view) gets every entry the apply will
    set, on a scratch copy of the book row taken before the apply. Returns outcome counts."""
    nsym = len(snap_arr)
    st, px, sz = B.alloc_books(nsym, DEPTH)
    pend, pctl = B.alloc_pending()
    ch, hdr = W.alloc_changes(), W.alloc_l2hdr()
    st1, px1, sz1 = B.alloc_books(1, DEPTH)
    codes: dict[int, int] = {}
    si = 0
    for k, (ts, buf, sym) in enumerate(frames):
        while si < nsym and snap_arr[si][0] <= ts:
            seq, tms, spx, ssz, n = snap_arr[si][1]
            B.book_sync_snapshot(st, px, sz, pend, pctl, si, seq, tms, 0, spx, ssz,
                                 n[B.SIDE_BID], n[B.SIDE_ASK], 0)
            si += 1
        n = parse(buf, ch, hdr)
        if n < 0:
            codes[n] = codes.get(n, 0) + 1
            continue
        h = hdr[0]
        b = st[sym]
        if (set_level is not None and b["status"] == B.BOOK_SYNCED and h["seq_end"] > b["seq"]
                and h["seq_start"] <= b["seq"] + 1):
            base = b["seq"]
            st1[0] = st[sym]
            px1[0] = px[sym]
            sz1[0] = sz[sym]
            for c in ch[:n]:
                if c["seq"] > base and c["px"] != 0.0:
                    set_level(st1, px1, sz1, c["side"], c["px"], c["sz"])
        code = apply(st, px, sz, sym, h["seq_start"], h["seq_end"], h["ts_ms"], k, ch, n,
                     pend, pctl, B.REFILL_MIN)
        codes[code] = codes.get(code, 0) + 1
    names = {B.L2_APPLIED: "applied", B.L2_STALE: "stale", B.L2_GAP: "gap",
             B.L2_BUFFERED: "buffered", B.L2_BUFFER_FULL: "buffer_full",
             B.L2_NEED_REFILL: "need_refill"}
    return {names.get(c, f"code{c}"): v for c, v in sorted(codes.items())}


def run_triangles(trials: int, seed: int, evaluate_best, pick_and_stage, per_sym=None) -> dict:
    """per_sym(sym, state, px, sz, uni, bal, max_start, params) runs before evaluate_best
    (JIT view: screen/evaluate_triangle/_best_volume timings; read-only on the books)."""
    uni = hub_universe()
    rng = np.random.default_rng(seed)
    n = len(uni.symbols)
    state, px, sz = B.alloc_books(n, 16)
    bal = uni.ccy_array({c: 1e9 for c in uni.currencies})
    max_start = uni.ccy_array({"USDT": 100, "USDC": 100, "BTC": 0.002, "ETH": 0.05})
    params = T.alloc_params(min_profit_bps=5.0, max_book_age_ms=1e12, max_levels=10,
                            flags=T.EVAL_IGNORE_AGE)
    table = slots.alloc_inflight(2)
    tri_last = np.full(uni.ntri, -(1 << 62), np.int64)
    counters = P.alloc_counters()
    reeval = np.zeros(n, np.int8)
    cands = T.alloc_candidates(max(64, int(np.diff(uni.sym_tri_start).max()) + 1))
    evc = T.alloc_eval_counters()
    pstate = P.alloc_pstate(1)
    stage = np.zeros(1, rings.SIGNAL_DTYPE)
    backoff = np.zeros(2, np.int64)
    calls = found = signalled = 0
    for _ in range(trials):
        random_books(uni, rng, state, px, sz, set(rng.choice(n, size=3, replace=False).tolist()))
        for sym in rng.choice(n, size=6, replace=False):
            sym = int(sym)
            if per_sym is not None:
                per_sym(sym, state, px, sz, uni, bal, max_start, params)
            nc = evaluate_best(sym, 0, state, px, sz, uni.symtab, uni.tris, uni.sym_tri_start,
                               uni.sym_tri_list, bal, max_start, params, cands, evc, table,
                               tri_last, 0, counters, reeval)
            calls += 1
            if nc > 0:
                found += 1
                slot = pick_and_stage(nc, cands, uni.tris, table, pstate, counters, 0, 0, 0, 0,
                                      stage, tri_last, 0, rings.ORIGIN_FRAME, backoff)
                if slot >= 0:
                    signalled += 1
                    slots.release(table, slot)
    return {"symbols": n, "triangles": uni.ntri, "evaluate_best_calls": calls,
            "with_candidates": found, "staged": signalled,
            "evc": {k: int(evc[getattr(T, k)]) for k in ("EVC_TRIANGLES", "EVC_NO_EDGE",
                                                          "EVC_CANDIDATES", "EVC_NO_SIZE",
                                                          "EVC_BELOW_BPS", "EVC_NO_PROFIT")},
            "bound_skips": int(counters[P.C_BOUND_SKIPS])}


# ---- view 1: line_profiler, JIT off ----------------------------------------------------------

def line_view(a) -> tuple[str, str, dict]:
    from line_profiler import LineProfiler
    assert W.parse_l2.__class__.__name__ == "function", "the JIT is on: set NUMBA_DISABLE_JIT=1"
    frames, snap_arr, syms = load_stream(a.frames)
    calls = count_calls(frames, snap_arr, a)
    lp = LineProfiler()
    for mod, name in KERNELS + HELPERS:
        lp.add_function(getattr(mod, name))
    t0 = time.perf_counter()
    lp.enable_by_count()
    stream = replay_stream(frames, snap_arr, W.parse_l2, B.book_apply_l2)
    tri = run_triangles(a.trials, a.seed, P.evaluate_best, P.pick_and_stage)
    lp.disable_by_count()
    wall = time.perf_counter() - t0
    buf = io.StringIO()
    lp.print_stats(stream=buf, output_unit=1e-6, stripzeros=True)
    info = {"frames": len(frames), "symbols": syms, "stream_outcomes": stream, "triangles": tri,
            "wall_s": round(wall, 1)}
    return buf.getvalue(), top_lines(lp, a.top, calls), info


def count_calls(frames, snap_arr, a) -> dict:
    """Calls of each profiled function over the same (deterministic) inputs, counted in a
    separate untraced pass with sys.setprofile (line_profiler reports hits per line, and a
    function's first line may be a loop header or follow an early return)."""
    want = {(getattr(m, n).__code__.co_filename, n) for m, n in KERNELS + HELPERS}
    counts: dict[str, int] = {}

    def hook(frame, event, _arg):
        if event == "call":
            key = (frame.f_code.co_filename, frame.f_code.co_name)
            if key in want:
                counts[key[1]] = counts.get(key[1], 0) + 1

    sys.setprofile(hook)
    try:
        replay_stream(frames, snap_arr, W.parse_l2, B.book_apply_l2)
        run_triangles(a.trials, a.seed, P.evaluate_best, P.pick_and_stage)
    finally:
        sys.setprofile(None)
    return counts


def top_lines(lp, k: int, calls: dict) -> tuple[str, str]:
    """The k most expensive lines of each profiled function (time includes callees):
    (kernels' text, helpers' text)."""
    stats = lp.get_stats()
    unit = stats.unit
    by_name = {}
    for (fn, _first, name), lines in stats.timings.items():
        by_name[name] = (fn, lines)
    texts = []
    for fns in (KERNELS, HELPERS):
        out = []
        for _mod, name in fns:
            fn, lines = by_name.get(name, ("", []))
            total = sum(t for _, _, t in lines)
            if total <= 0:
                out.append(f"{name}: not called")
                continue
            nc = calls.get(name, 0)
            out.append(f"{name} ({Path(fn).name}): {nc} calls, {total * unit:.3f} s "
                       f"profiled, {total * unit / max(nc, 1) * 1e6:.1f} us/call (Python, traced)")
            for lineno, hits, t in sorted(lines, key=lambda x: -x[2])[:k]:
                src = linecache.getline(fn, lineno).strip()
                out.append(f"  {100 * t / total:5.1f}%  {hits:8d} hits  {t * unit / max(hits, 1) * 1e6:8.2f} "
                           f"us/hit  L{lineno}: {src[:90]}")
        texts.append("\n".join(out))
    return texts[0], texts[1]


# ---- view 2: JIT on, each kernel whole ------------------------------------------------------

def jit_view(a) -> dict:
    from numba import njit

    @njit
    def t_empty():
        t0 = monotonic_ns()
        return monotonic_ns() - t0

    @njit
    def t_parse(buf, ch, hdr):
        t0 = monotonic_ns()
        n = W.parse_l2(buf, ch, hdr)
        return n, monotonic_ns() - t0

    @njit
    def t_apply(st, px, sz, sym, s0, s1, tms, rns, ch, n, pend, pctl, rmin):
        t0 = monotonic_ns()
        r = B.book_apply_l2(st, px, sz, sym, s0, s1, tms, rns, ch, n, pend, pctl, rmin)
        return r, monotonic_ns() - t0

    @njit
    def t_set_level(st, px, sz, side, price, size):
        t0 = monotonic_ns()
        r = B.book_set_level(st, px, sz, 0, side, price, size)
        return r, monotonic_ns() - t0

    @njit
    def t_screen(t, st, px, sz, symtab, tris, params):
        t0 = monotonic_ns()
        code, bound = T.screen_triangle(t, 0, st, px, sz, symtab, tris, params)
        return code, monotonic_ns() - t0

    @njit
    def t_evaluate(t, st, px, sz, symtab, tris, bal, max_start, params, out):
        t0 = monotonic_ns()
        code = T.evaluate_triangle(t, 0, st, px, sz, symtab, tris, bal, max_start, params, out, 0)
        return code, monotonic_ns() - t0

    @njit
    def t_best_volume(t, st, px, sz, symtab, tris, bal, max_start, params):
        # evaluate_triangle's prelude (triangles.py, steps 1-2), untimed; then _best_volume
        tr = tris[t]
        prm = params[0]
        syms = (np.int64(tr["sym0"]), np.int64(tr["sym1"]), np.int64(tr["sym2"]))
        sides = (np.int64(tr["side0"]), np.int64(tr["side1"]), np.int64(tr["side2"]))
        fees = (symtab[syms[0]]["taker_fee"], symtab[syms[1]]["taker_fee"],
                symtab[syms[2]]["taker_fee"])
        i0, n0, lo0, hi0 = T._leg_limits(symtab, st, px, sz, syms[0], sides[0], prm["max_levels"])
        i1, n1, lo1, hi1 = T._leg_limits(symtab, st, px, sz, syms[1], sides[1], prm["max_levels"])
        i2, n2, lo2, hi2 = T._leg_limits(symtab, st, px, sz, syms[2], sides[2], prm["max_levels"])
        lg = (syms, sides, fees,
              (symtab[syms[0]]["base_inc"], symtab[syms[1]]["base_inc"],
               symtab[syms[2]]["base_inc"]),
              (i0, i1, i2), (n0, n1, n2), (lo0, lo1, lo2), (hi0, hi1, hi2))
        vcap = min(max_start[tr["ccy0"]], bal[tr["ccy0"]])
        if not vcap > 0.0:
            return -1
        lo_n, hi_n = T._feasible_range(lg, px, sz, vcap)
        if lo_n > hi_n:
            return -1
        emit_all = (prm["flags"] & T.EVAL_EMIT_ALL) != 0
        t0 = monotonic_ns()
        T._best_volume(lg, px, sz, lo_n, hi_n, emit_all, prm["max_scan"], prm["search_tol_bps"])
        return monotonic_ns() - t0

    @njit
    def t_evaluate_best(sym, now, st, px, sz, symtab, tris, s0, sl, bal, max_start, params,
                        cands, evc, table, tri_last, rt, counters, reeval):
        t0 = monotonic_ns()
        n = P.evaluate_best(sym, now, st, px, sz, symtab, tris, s0, sl, bal, max_start, params,
                            cands, evc, table, tri_last, rt, counters, reeval)
        return n, monotonic_ns() - t0

    @njit
    def t_pick(n, cands, tris, table, pstate, counters, r, p, b, e, stage, tri_last, rt, origin,
               backoff):
        t0 = monotonic_ns()
        s = P.pick_and_stage(n, cands, tris, table, pstate, counters, r, p, b, e, stage,
                             tri_last, rt, origin, backoff)
        return s, monotonic_ns() - t0

    samples: dict[str, list[int]] = {}

    def rec(name):
        lst = samples.setdefault(name, [])

        def wrap(fn):
            def call(*args):
                r, dt = fn(*args)
                lst.append(dt)
                return r
            return call
        return wrap

    frames, snap_arr, _syms = load_stream(a.frames)
    scratch = T.alloc_candidates(1)

    def per_sym(sym, st, px, sz, uni, bal, max_start, params):
        for idx in range(uni.sym_tri_start[sym], uni.sym_tri_start[sym + 1]):
            t = int(uni.sym_tri_list[idx])
            code = rec("screen_triangle")(t_screen)(t, st, px, sz, uni.symtab, uni.tris, params)
            if code != T.EVC_CANDIDATES:
                continue
            rec("evaluate_triangle")(t_evaluate)(t, st, px, sz, uni.symtab, uni.tris, bal,
                                                 max_start, params, scratch)
            dt = t_best_volume(t, st, px, sz, uni.symtab, uni.tris, bal, max_start, params)
            if dt >= 0:
                samples.setdefault("_best_volume", []).append(dt)

    info = {}
    for pass_ in range(1 + a.reps):     # pass 0 warms up (compiles, caches): dropped
        if pass_ <= 1:
            samples.clear()
        for _ in range(1000):
            samples.setdefault("timer", []).append(t_empty())
        info["stream_outcomes"] = replay_stream(frames, snap_arr, rec("parse_l2")(t_parse),
                                                rec("book_apply_l2")(t_apply),
                                                rec("book_set_level")(t_set_level))
        info["triangles"] = run_triangles(a.trials, a.seed, rec("evaluate_best")(t_evaluate_best),
                                          rec("pick_and_stage")(t_pick), per_sym)
    order = ["timer"] + [name for _, name in KERNELS]
    table = {}
    for name in order:
        v = np.array(samples.get(name, []), np.float64)
        if len(v) == 0:
            continue
        table[name] = {"n": int(len(v)), "p50_ns": float(np.percentile(v, 50)),
                       "p90_ns": float(np.percentile(v, 90)), "p99_ns": float(np.percentile(v, 99)),
                       "max_ns": float(v.max()), "mean_ns": float(v.mean())}
    info["frames"] = len(frames)
    return {"per_call": table, "info": info, "machine": machine()}


def jit_table(res: dict) -> str:
    lines = [f"{'kernel (JIT on, per call)':24s} {'n':>8s} {'p50 ns':>9s} {'p90 ns':>9s} "
             f"{'p99 ns':>9s} {'max ns':>10s} {'mean ns':>9s}"]
    for name, s in res["per_call"].items():
        lines.append(f"{name:24s} {s['n']:8d} {s['p50_ns']:9.0f} {s['p90_ns']:9.0f} "
                     f"{s['p99_ns']:9.0f} {s['max_ns']:10.0f} {s['mean_ns']:9.0f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jit", action="store_true", help="JIT-on per-call timings only")
    ap.add_argument("--line-only", action="store_true", help="skip the JIT-on view")
    ap.add_argument("--json", default="", help="(--jit) also write the result here")
    ap.add_argument("--frames", type=int, default=0, help="level2 frames to replay (0 = all)")
    ap.add_argument("--trials", type=int, default=60, help="random book sets (6 symbols each)")
    ap.add_argument("--reps", type=int, default=3, help="(JIT view) timed passes over the inputs")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--top", type=int, default=5, help="lines per kernel in the summary")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    if a.jit:
        res = jit_view(a)
        print(jit_table(res))
        print(f"stream: {res['info']['stream_outcomes']}; triangles: {res['info']['triangles']}")
        if a.json:
            Path(a.json).write_text(json.dumps(res))
        return 0

    jit_res = None
    jit_text = "(skipped: --line-only)"
    if not a.line_only:
        # the JIT-on view needs a process where numba was imported with the JIT on
        tmp = Path(tempfile.mkdtemp(prefix="profile_kernels_")) / "jit.json"
        env = dict(os.environ)
        env.pop("NUMBA_DISABLE_JIT", None)
        args = [sys.executable, str(Path(__file__).resolve()), "--jit", "--json", str(tmp),
                "--frames", str(a.frames), "--trials", str(a.trials), "--seed", str(a.seed),
                "--reps", str(a.reps)]
        print("profile_kernels: JIT-on view (subprocess) ...", flush=True)
        p = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0 or not tmp.exists():
            print(p.stdout[-2000:], p.stderr[-3000:])
            print("profile_kernels: the JIT-on view failed")
            return 1
        jit_res = json.loads(tmp.read_text())
        jit_text = jit_table(jit_res) + (
            f"\nstream: {jit_res['info']['stream_outcomes']}\ntriangles: "
            f"{jit_res['info']['triangles']}")
    print("profile_kernels: JIT-off line profile (NUMBA_DISABLE_JIT=1) ...", flush=True)
    full, summary, info = line_view(a)
    mach = machine()
    head = (f"# profiles/profile_kernels.py, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n"
            f"# machine: {mach['nproc']} cpus, {mach['cpu']}, python {mach['python']}, "
            f"load {mach['loadavg'][0]:.2f} (shared)\n"
            f"# inputs: {info['frames']} level2 frames of {len(info['symbols'])} symbols "
            f"(outcomes {info['stream_outcomes']}); hub universe {info['triangles']['symbols']} "
            f"symbols / {info['triangles']['triangles']} triangles, "
            f"{info['triangles']['evaluate_best_calls']} evaluate_best calls "
            f"({info['triangles']['with_candidates']} with candidates, "
            f"{info['triangles']['staged']} staged), evaluation counters "
            f"{info['triangles']['evc']}, bound skips {info['triangles']['bound_skips']}\n")
    text = (head
            + "\n## 1. JIT on: each kernel whole, per call (ns; from a jitted wrapper, no Python "
              "dispatch; warm)\n\n" + jit_text
            + "\n\n## 2. JIT off (NUMBA_DISABLE_JIT=1): line_profiler; Python times inflated "
              f"by the tracer (profiled wall {info['wall_s']} s): read the split. A line's "
              "time includes the kernels it calls; a statement spanning two lines is hit (and "
              "timed) on each of them. Calls: counted in a separate untraced pass "
              "(sys.setprofile) over the same inputs.\n\n### top lines per kernel\n\n"
            + summary[0] + "\n\n### top lines per helper\n\n" + summary[1]
            + "\n\n### full line_profiler output\n\n" + full)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.replace(str(ROOT) + "/", ""))   # paths relative to the repository
    print(jit_text)
    print()
    print("top lines per kernel (JIT off, line_profiler; helpers' lines in the file):")
    print(summary[0])
    print(f"profile_kernels: wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
