"""Line-profile the Python on the critical path of a live session against the simulator.

Run:  python profiles/profile_hot.py [--seconds 25]  (writes profiles/results/line_profile_hot.txt)
Profiles, with the JIT on (the kernels are timed whole by bench_hot.py / bench_evaluate.py;
for their insides run under NUMBA_DISABLE_JIT=1, see profiles/profile_kernels.py):
HotLoop._drain, _chunk, _others, _after_fill, _on_frame, _dispatch_signal, Executor.fire_leg0,
fire_leg, _complete_leg, _drain_fills, OrderConn.send/read_response. The engine runs
in-process (tests/engine_harness.py) with the simulator pinned to CPU 1 and the engine to
CPU 0, mispricings at 20/s. line_profiler's own overhead inflates every line several
times over: read the split, not the absolute figures.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)
sys.path.insert(0, str(ROOT / "tests"))

from line_profiler import LineProfiler  # noqa: E402

import executor  # noqa: E402
import hot  # noqa: E402
import orderwire  # noqa: E402
from engine_harness import EngineRun  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=25)
    a = ap.parse_args()
    lp = LineProfiler()
    for f in (hot.HotLoop._drain, hot.HotLoop._chunk, hot.HotLoop._others, hot.HotLoop._after_fill,
              hot.HotLoop._on_frame, hot.HotLoop._dispatch_signal, executor.Executor.fire_leg0,
              executor.Executor.fire_leg, executor.Executor._complete_leg,
              executor.Executor._drain_fills, executor.Executor.execute,
              orderwire.OrderConn.send, orderwire.OrderConn.read_response):
        lp.add_function(f)
    # wrap the class attributes so the running threads call the profiled versions
    for cls, names in ((hot.HotLoop, ("_on_frame", "_on_level2", "_dispatch_signal", "_on_order_change", "_drain")),
                       (executor.Executor, ("fire_leg0", "fire_leg", "_complete_leg", "_drain_fills", "execute")),
                       (orderwire.OrderConn, ("send", "read_response"))):
        for n in names:
            setattr(cls, n, lp(getattr(cls, n)))
    with EngineRun(sim={"mispricing_rate": 20, "seed": 3, "symbols": 60, "update_rate": 300,
                        "take_delay_ms": 300, "cpus": "1",
                        "balances": "USDT=100000,USDC=100000,BTC=2,ETH=40,KCS=5000"},
                   mode="live", cpus="0", primary_quotes="USDT,USDC,BTC,ETH,KCS",
                   max_start="USDT=100,USDC=100,BTC=0.002,ETH=0.05,KCS=20", retrigger_ms=300) as er:
        time.sleep(a.seconds)
        n = len(er.records)
    buf = io.StringIO()
    lp.print_stats(stream=buf, output_unit=1e-6, stripzeros=True)
    out = ROOT / "profiles" / "results" / "line_profile_hot.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = f"# {n} triangles in {a.seconds:.0f}s live against the simulator\n" + buf.getvalue()
    out.write_text(text.replace(str(ROOT) + "/", ""))   # paths relative to the repository
    print(buf.getvalue())
    print(f"profile_hot: {n} triangles; wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
