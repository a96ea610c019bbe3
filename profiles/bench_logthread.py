"""What the log thread spends, holding the GIL, per trading record: the journal line and the
report line of a three-leg FILLED record (the seed's USDT -> FLUX -> USDC example).

Not a test. Run: python profiles/bench_logthread.py [--n 2000] [--out profiles/results/logthread_<tag>.json]
The hot thread waits for whatever another thread holds of the GIL when it wants it back
(profiles/README.md, "The floor": what tick-to-fire does not see); this is the log thread's
largest piece of that per record. Prints p50/p90/p99 in us, warm (a loop), with the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import report  # noqa: E402
from hostinfo import machine  # noqa: E402
from test_report import flux_record  # noqa: E402


def timed(fn, n: int) -> dict:
    ts = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        ts.append(time.perf_counter_ns() - t)
    ts.sort()
    return {p: round(ts[min(n - 1, int(q * n))] / 1000, 1) for p, q in (("p50", .5), ("p90", .9), ("p99", .99))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rec = flux_record(profit=-0.0749, effective_bps=-149.94)
    rec.settle()
    res = {"journal_line_us": timed(lambda: report.journal_line(rec), a.n),
           "format_line_us": timed(lambda: report.format_line(rec), a.n),
           "n": a.n, "machine": machine()}
    for k in ("journal_line_us", "format_line_us"):
        print(f"{k:18s} p50 {res[k]['p50']:8.1f} p90 {res[k]['p90']:8.1f} p99 {res[k]['p99']:8.1f}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
        print(f"bench_logthread: wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
