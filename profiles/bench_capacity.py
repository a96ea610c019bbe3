"""Hot-thread capacity end to end: raise the simulator's level2 rate until the engine falls behind.

Run:  python profiles/bench_capacity.py [--rates 300,3000,10000,20000,40000] [--seconds 25]
For each rate it runs profiles/bench_latency.py (engine live against the simulator, engine pinned
to CPU 0 and the simulator to CPU 1, 10 mispricings/s) and collects tick-to-fire p50/p99,
the messages the engine actually received per second, gaps and resyncs (books falling
behind show up as gaps: the simulator drops frames to a client more than 50,000 frames
behind, as KuCoin does to slow consumers, docs/kucoin.md 8.3). Reports the first rate at
which p99 tick-to-fire is at least twice the lowest rate's. Writes
profiles/results/capacity.json. On a 2-core machine the simulator's own ceiling (one
Python process generating and sending the frames) may be reached before the engine's:
the table shows the delivered rate so that the two can be told apart.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="300,3000,10000,20000,40000")
    ap.add_argument("--seconds", type=float, default=25)
    a = ap.parse_args()
    rows = []
    for rate in [int(x) for x in a.rates.split(",")]:
        tag = f"capacity_{rate}"
        p = subprocess.run([sys.executable, str(ROOT / "profiles" / "bench_latency.py"), "--seconds",
                            str(a.seconds), "--rate", "10", "--update-rate", str(rate), "--tag", tag],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        res_f = ROOT / "profiles" / "results" / f"latency_{tag}.json"
        if p.returncode != 0 or not res_f.exists():
            print(p.stdout[-2000:])
            rows.append({"rate": rate, "error": "run failed"})
            continue
        res = json.loads(res_f.read_text())
        res_f.unlink()   # the capacity file keeps what matters
        status = (res.get("engine_summary") or [""])[0]
        m = re.search(r"status: ([\d,]+) msg/s", status)
        g = re.search(r"gaps (\d+) resyncs (\d+)", status)
        ttf = res["us"].get("tick_to_fire", {})
        rows.append({"rate": rate, "delivered_msg_s": int(m.group(1).replace(",", "")) if m else None,
                     "gaps": int(g.group(1)) if g else None, "resyncs": int(g.group(2)) if g else None,
                     "triangles": res["triangles"], "tick_to_fire_p50_us": ttf.get("p50"),
                     "tick_to_fire_p99_us": ttf.get("p99"), "n": ttf.get("n")})
        r = rows[-1]
        print(f"rate {rate:>6}/s: delivered {r['delivered_msg_s']}/s (last status line), gaps {r['gaps']}, "
              f"triangles {r['triangles']}, tick-to-fire p50 {r['tick_to_fire_p50_us']:.0f} us "
              f"p99 {r['tick_to_fire_p99_us']:.0f} us (n={r['n']})", flush=True)
    ok = [r for r in rows if r.get("tick_to_fire_p99_us")]
    doubled = next((r["rate"] for r in ok[1:] if r["tick_to_fire_p99_us"] >= 2 * ok[0]["tick_to_fire_p99_us"]), None)
    print(f"p99 tick-to-fire doubles at: {doubled if doubled else 'not reached in this sweep'}")
    out = ROOT / "profiles" / "results" / "capacity.json"
    out.write_text(json.dumps({"rows": rows, "p99_doubles_at_rate": doubled}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
