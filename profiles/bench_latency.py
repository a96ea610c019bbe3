"""Tick-to-fire benchmark: the engine in live mode against the simulator in its own process.

Run:  python profiles/bench_latency.py [--seconds 70] [--rate 20] [--update-rate 300]
                                       [--fire-from hot|executor] [--tag NAME] [--extra k=v ...]
                                       [--halt-poll-ns N] [--scrape-metrics PORT]
It writes a temporary ini, runs `python run.py` in a subprocess (which starts the simulator, `python -m sim`, in
its own process) with mispricings planted at a steady rate, then reads the engine's own
journal (ns timestamps taken on the engine's threads, report.py) and prints, over every
triangle, p50/p90/p99/p99.9/max of:
  tick_to_fire   frame received -> first order's bytes written
  signal_to_fire the evaluation that made the signal -> first order's bytes written
  leg_gap        the event completing a leg (filled/canceled: its output is known) -> the
                 next order's bytes written; L<k>_last_match_to_done is the venue's part
                 before it (last match event -> filled/canceled event)
  and each stage from frame receipt: parse, book, eval, push, wake; per leg: sign, sent,
  response, first fill, last fill (relative to that leg's bytes written for the last three).
--scrape-metrics PORT turns the engine's Prometheus endpoint on (metrics_port = PORT) and
GETs /metrics every --scrape-interval seconds (default 1) from this process while the engine
runs; the result adds the scrapes' count and durations (the A/B of README "Performance").
Results go to profiles/results/latency_<tag>.json with the machine description.
A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from hostinfo import HALT_POLL, machine  # noqa: E402  (profiles/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent


def pct(vals: list[float], p: float) -> float:
    if not vals:
        return float("nan")
    s = sorted(vals)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def stats(vals: list[float]) -> dict:
    return {"n": len(vals), "p50": pct(vals, 50), "p90": pct(vals, 90), "p99": pct(vals, 99),
            "p99.9": pct(vals, 99.9), "max": max(vals) if vals else float("nan")}


def analyse(journal: Path) -> dict:
    recs = [json.loads(line) for line in journal.open()]
    out: dict[str, list[float]] = {}

    def add(name, a, b):
        if a and b:
            out.setdefault(name, []).append((b - a) / 1000.0)

    for r in recs:
        legs = r.get("legs") or []
        t0 = r["recv_ns"]
        if legs and legs[0].get("written_ns"):
            # a signal made by re-evaluating at a slot release has no frame: its "tick" is
            # the re-evaluation, so it is reported apart
            add("tick_to_fire" if r.get("origin", "frame") == "frame" else "reeval_to_fire",
                t0, legs[0]["written_ns"])
            add("signal_to_fire", r["evaluated_ns"], legs[0]["written_ns"])
        for name in ("parsed_ns", "book_ns", "evaluated_ns", "pushed_ns", "woke_ns"):
            if r.get("origin", "frame") == "frame":
                add("stage_" + name[:-3], t0, r.get(name))
        for k, lg in enumerate(legs):
            add(f"L{k}_sign_to_sent", lg.get("signed_ns"), lg.get("written_ns"))
            add(f"L{k}_sent_to_response", lg.get("written_ns"), lg.get("response_ns"))
            add(f"L{k}_sent_to_first_fill", lg.get("written_ns"), lg.get("first_fill_ns"))
            add(f"L{k}_sent_to_last_fill", lg.get("written_ns"), lg.get("last_fill_ns"))
            # the venue's part: its last match event -> its filled/canceled event
            add(f"L{k}_last_match_to_done", lg.get("last_match_ns"), lg.get("last_fill_ns"))
            if k > 0:
                add("leg_gap", legs[k - 1].get("last_fill_ns"), lg.get("written_ns"))
                add(f"leg_gap_L{k - 1}_L{k}", legs[k - 1].get("last_fill_ns"), lg.get("written_ns"))
    status = {}
    for r in recs:
        status[r["status"]] = status.get(r["status"], 0) + 1
    return {"triangles": len(recs), "status": status, "us": {k: stats(v) for k, v in sorted(out.items())}}


def scrape_loop(port: int, interval: float, out: list, stop) -> None:
    """GET /metrics every `interval` s while the engine runs (a Prometheus server would)."""
    import urllib.request
    url = f"http://127.0.0.1:{port}/metrics"
    while not stop.wait(interval):
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
        except OSError:
            continue                 # not up yet (start-up) or already down
        out.append(time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=70)
    ap.add_argument("--rate", type=float, default=20, help="planted mispricings per second")
    ap.add_argument("--update-rate", type=float, default=300, help="sim level2 messages/s")
    ap.add_argument("--symbols", default="60")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--fire-from", default="hot", choices=("hot", "executor"))
    ap.add_argument("--order-path", default="async", choices=("async", "sync"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--engine-cpus", default="0", help="pin the engine ('' = no pinning)")
    ap.add_argument("--sim-cpus", default="1", help="pin the simulator ('' = no pinning)")
    ap.add_argument("--sim-nice", type=int, default=0, help="run the simulator at this nice level")
    ap.add_argument("--sim-busy-poll", action="store_true",
                    help="the simulator polls without sleeping (python -m sim --busy-poll): the engine's "
                         "send() then no longer wakes a sleeping simulator thread on a halted vCPU")
    ap.add_argument("--extra", nargs="*", default=[], help="more [engine] key=value")
    ap.add_argument("--scrape-metrics", type=int, default=0, metavar="PORT",
                    help="metrics_port = PORT, scraped every --scrape-interval s during the run")
    ap.add_argument("--scrape-interval", type=float, default=1.0)
    ap.add_argument("--halt-poll-ns", type=int, default=None,
                    help="host tuning for this run (root; restored after): idle vCPUs poll this "
                         "long before halting (cpuidle-haltpoll guest_halt_poll_ns)")
    a = ap.parse_args()
    if a.halt_poll_ns is None:
        return run(a)
    before = HALT_POLL.read_text().strip()
    HALT_POLL.write_text(str(a.halt_poll_ns))
    try:
        return run(a)
    finally:
        HALT_POLL.write_text(before)


def run(a) -> int:
    tag = a.tag or f"{a.fire_from}_{a.order_path}"
    tmp = Path(tempfile.mkdtemp(prefix="bench_latency_"))
    engine = {
        "venue": "sim", "mode": "live", "primary_quotes": "USDT,USDC,BTC,ETH,KCS",
        "max_start": "USDT=100,USDC=100,BTC=0.002,ETH=0.05,KCS=20", "min_profit_bps": "5",
        "slots": str(a.slots), "fire_from": a.fire_from, "order_path": a.order_path,
        "retrigger_ms": "300", "status_interval_s": "10", "run_seconds": str(a.seconds),
        "log_dir": str(tmp), "max_book_age_ms": "10000", "cpus": a.engine_cpus,
    }
    for kv in a.extra:
        k, v = kv.split("=", 1)
        engine[k] = v
    if a.scrape_metrics:
        engine["metrics_port"] = str(a.scrape_metrics)
    sim = {"symbols": a.symbols, "seed": "3", "update_rate": str(a.update_rate),
           "mispricing_rate": str(a.rate), "mispricing_bps": "40", "take_delay_ms": "300",
           "balances": "USDT=100000,USDC=100000,BTC=2,ETH=40,KCS=5000", "cpus": a.sim_cpus,
           # VIP 12: 40,000 order weight per 30 s; at 20 mispricings/s the engine places
           # ~150 orders/s, past VIP 0's 4,000 (it then backs off: see executor.py 429000)
           "extra_args": "--vip 12" + (" --nice %d" % a.sim_nice if a.sim_nice else "")
                         + (" --busy-poll" if a.sim_busy_poll else "")}
    ini = tmp / "bench.ini"
    ini.write_text("[engine]\n" + "".join(f"{k} = {v}\n" for k, v in engine.items())
                   + "[sim]\n" + "".join(f"{k} = {v}\n" for k, v in sim.items()))
    print(f"bench_latency: {tag}: running the engine for {a.seconds:.0f}s (log in {tmp})", flush=True)
    t0 = time.time()
    scrapes: list[float] = []
    stop = threading.Event()
    if a.scrape_metrics:
        threading.Thread(target=scrape_loop, args=(a.scrape_metrics, a.scrape_interval, scrapes, stop),
                         daemon=True).start()
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), str(ini)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop.set()
    journals = list(tmp.glob("*/journal.jsonl"))
    if proc.returncode != 0 or not journals:
        print(proc.stdout[-3000:])
        print(f"bench_latency: engine exited {proc.returncode}")
        return 1
    res = analyse(journals[0])
    # the result names the temp dir by its basename only (no machine path in a kept file)
    res.update({"tag": tag, "machine": machine(), "wall_s": round(time.time() - t0, 1),
                "engine": {**engine, "log_dir": tmp.name}, "sim": sim,
                "engine_summary": [ln for ln in proc.stdout.splitlines() if "status:" in ln][-1:]})
    if a.scrape_metrics:
        res["metrics_scrapes"] = {"interval_s": a.scrape_interval, "ms": stats([x * 1e3 for x in scrapes])}
        print(f"metrics scrapes: {len(scrapes)}, p50 {pct(scrapes, 50) * 1e3:.2f} ms, "
              f"max {max(scrapes, default=0) * 1e3:.2f} ms")
    print(f"triangles: {res['triangles']} {res['status']}  machine: {res['machine']['nproc']} cpus, "
          f"{res['machine']['cpu']}")
    print(f"{'measure (us)':32s} {'n':>6s} {'p50':>9s} {'p90':>9s} {'p99':>9s} {'p99.9':>9s} {'max':>9s}")
    for k, s in res["us"].items():
        print(f"{k:32s} {s['n']:6d} {s['p50']:9.1f} {s['p90']:9.1f} {s['p99']:9.1f} {s['p99.9']:9.1f} {s['max']:9.1f}")
    out = ROOT / "profiles" / "results" / f"latency_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"bench_latency: wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
