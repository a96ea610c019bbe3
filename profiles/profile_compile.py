"""Where a cold start's compile time goes: every kernel Numba compiles, with its own time.

Run:  python profiles/profile_compile.py [--out profiles/results/compile_times.json]
In one process with an empty NUMBA_CACHE_DIR (a temporary directory) it builds the shared
arrays over a three-symbol universe (kernelcache.synthetic_shared) and runs run.warm_up, the
engine's own warm-up, with a listener on Numba's compile events. Each compile's time is split
into its own part and its callees' (a callee compiled inside a caller is counted once, in the
callee). Prints the kernels by own time, how many specialisations each got (one per distinct
argument-type tuple: literal constants, int32 against int64, read-only arrays each make one),
and the total, which is what a cold start costs in one process. With the prefill workers
(kernelcache.py) the same work is spread over two processes.
A benchmark, not a test: no asserts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "profiles" / "results" / "compile_times.json"))
    a = ap.parse_args()
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="profile_compile_")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "profiles"))
    import numba.core.event as ev
    from hostinfo import machine

    events = []

    class Timer(ev.Listener):
        def __init__(self):
            self.stack = []

        def on_start(self, event):
            fn = event.data["dispatcher"].py_func
            self.stack.append([time.perf_counter(), f"{fn.__module__}.{fn.__qualname__}", 0.0])

        def on_end(self, event):
            t0, name, child = self.stack.pop()
            d = time.perf_counter() - t0
            events.append((name, d, d - child))
            if self.stack:
                self.stack[-1][2] += d

    import kernelcache
    import run
    sh = kernelcache.synthetic_shared()
    ev.register("numba:compile", Timer())
    t = time.perf_counter()
    run.warm_up(sh)
    wall = time.perf_counter() - t
    per = defaultdict(lambda: [0, 0.0])
    for name, _d, own in events:
        per[name][0] += 1
        per[name][1] += own
    rows = sorted(([n, c, round(s, 3)] for n, (c, s) in per.items()), key=lambda r: -r[2])
    total = sum(r[2] for r in rows)
    print(f"profile_compile: warm_up on an empty cache {wall:.1f} s wall, {len(events)} compiles, "
          f"own times add up to {total:.1f} s")
    print(f"{'own s':>7s} {'specs':>5s}  kernel")
    for name, count, own in rows[:40]:
        print(f"{own:7.2f} {count:5d}  {name}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "wall_s": round(wall, 2), "compiles": len(events),
                               "own_total_s": round(total, 2), "kernels": rows}, indent=1))
    print(f"profile_compile: wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
