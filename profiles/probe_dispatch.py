"""Probe: what a Numba call costs from Python before any work, by argument count.

Run:  python profiles/probe_dispatch.py
Calls pipeline.on_level2 (28 arguments: the arrays one by one) and hotctx.hot_chunk (5
arguments: the arrays by address in one table) on inputs that return at once (an empty
frame / an empty buffer), over the full real universe's arrays (bench_hot's set-up):
"warm" in a tight loop, "cold" after thrashing the caches with ~32 MB of reads and a few
thousand dict inserts between calls, as a live hot thread meets them between signals.
Prints p50/p99 in us. A probe, not a test.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)
sys.path.insert(0, str(ROOT / "profiles"))

import bench_hot  # noqa: E402
import hotctx  # noqa: E402
import pipeline  # noqa: E402
import run  # noqa: E402
from hostinfo import machine  # noqa: E402


def timed(call, cold: bool, n: int) -> np.ndarray:
    junk = np.random.rand(4_000_000)
    out = []
    for _ in range(n):
        if cold:
            junk.sum()
            d = {}
            for j in range(3000):
                d[j] = j
        t = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - t)
    return np.array(out[10:]) / 1000.0


def main() -> None:
    cfg, uni, sh, *_ = bench_hot.build_shared(0, 1)
    run.warm_up(sh)
    empty = np.zeros(1, np.uint8)
    args = sh.pipe_args
    buf = np.zeros(16, np.uint8)
    res = hotctx.alloc_result()
    tab = sh.hot_table.tab
    calls = {
        "pipeline.on_level2 (28 args)": lambda: pipeline.on_level2(empty, 0, 0, *args),
        "hotctx.hot_chunk (5 args)": lambda: hotctx.hot_chunk(tab, buf, 0, 0, res),
    }
    m = machine()
    print(f"machine: {m['nproc']} cpus, {m['cpu']}, python {m['python']}, numba {m['numba']}")
    for name, call in calls.items():
        call()
        for cold in (False, True):
            t = timed(call, cold, 300 if cold else 20000)
            print(f"{name:32s} {'cold' if cold else 'warm'}: p50 {np.percentile(t, 50):6.2f} us"
                  f"  p99 {np.percentile(t, 99):6.2f} us")


if __name__ == "__main__":
    main()
