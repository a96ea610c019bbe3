"""Paper against live on the same simulator run: trade counts and PnL (README, paper/live gap).

    python profiles/paper_live_gap.py [--seconds 40] [--seed 7] [--tag NAME]

Runs `python run.py` three times against the bundled simulator with the same seed and length:
paper with paper_consume = false (paper fills leave the book alone: the old behaviour),
paper with paper_consume = true, and live (the simulator matches our orders). Prints one row
each (triangles, FILLED, PnL per start currency, PnL valued in USDT at the simulator's
reference prices) and the paper/live ratios; writes profiles/results/paper_live_gap_<tag>.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USD = {"USDT": 1.0, "USDC": 1.0, "BTC": 60000.0, "ETH": 2500.0, "KCS": 8.5}   # sim/market.py MAJOR_USD


def one(mode: str, consume: bool, seconds: float, seed: int) -> dict:
    text = (ROOT / "sim.ini").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        ini = Path(tmp) / "gap.ini"
        repl = {"mode = paper": f"mode = {mode}", "run_seconds = 0": f"run_seconds = {seconds:g}",
                "paper_consume = true": f"paper_consume = {'true' if consume else 'false'}",
                "log_dir = runs": f"log_dir = {tmp}", "seed = 7": f"seed = {seed}"}
        for a, b in repl.items():
            assert a in text, a
            text = text.replace(a, b)
        ini.write_text(text)
        subprocess.run([sys.executable, str(ROOT / "run.py"), str(ini)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 120)
        journal = next(Path(tmp).glob("*/journal.jsonl"))
        recs = [json.loads(x) for x in journal.read_text().splitlines()]
    pnl: dict = {}
    for r in recs:
        if r.get("profit") is not None:
            pnl[r["triangle"][0]] = pnl.get(r["triangle"][0], 0.0) + r["profit"]
    return {"mode": mode, "paper_consume": consume, "triangles": len(recs),
            "filled": sum(1 for r in recs if r["status"] == "FILLED"),
            "pnl": pnl, "pnl_usdt": sum(v * USD.get(k, 0.0) for k, v in pnl.items())}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    rows = [one("paper", False, a.seconds, a.seed), one("paper", True, a.seconds, a.seed),
            one("live", False, a.seconds, a.seed)]
    live = rows[2]
    for r in rows:
        r["ratio_triangles"] = r["triangles"] / live["triangles"] if live["triangles"] else None
        r["ratio_pnl"] = r["pnl_usdt"] / live["pnl_usdt"] if live["pnl_usdt"] else None
        name = f"{r['mode']}{' (paper_consume = ' + str(r['paper_consume']).lower() + ')' if r['mode'] == 'paper' else ''}"
        print(f"{name:<36} triangles {r['triangles']:>4} filled {r['filled']:>4}  PnL ~{r['pnl_usdt']:+.2f} USDT "
              f"({', '.join(f'{k} {v:+.6g}' for k, v in sorted(r['pnl'].items()))})  x live: "
              f"{r['ratio_triangles'] or 0:.2f} triangles, {r['ratio_pnl'] or 0:.2f} PnL")
    out = ROOT / "profiles" / "results" / f"paper_live_gap{'_' + a.tag if a.tag else ''}.json"
    out.write_text(json.dumps({"seconds": a.seconds, "seed": a.seed, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
