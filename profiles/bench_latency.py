"""Tick-to-fire benchmark: the engine in live mode against the simulator in its own process.

Run:  python profiles/bench_latency.py [--seconds 40] [--rate 20] [--update-rate 300]
                                       [--rounds 2] [--fire-from hot|executor] [--tag NAME]
                                       [--extra k=v ...] [--halt-poll-ns N] [--no-floor]
                                       [--tls [--tls-io-ab]] [--scrape-metrics PORT]
                                       [--patch-ab DIFF]
By default it measures the host's floor and the engine in one invocation, interleaved
(floor, engine, floor, engine for --rounds 2): probe_floor.py is a do-nothing client with
the engine's own receive path, polling, pinning and order connection, on the same simulator
settings, that writes a prebuilt order on the first read after 1/rate s. It prints the
engine's tick-to-fire beside the floor and their ratio per percentile, and the engine's
stages (receipt -> parsed, evaluated, L0 signed, L0 sent) against the floor, with the CPU
model; the table goes to profiles/results/latency_<tag>_floor_summary.json (tag default
"floor"), each run to latency_<tag>_{floor,engine}_<round>.json. Absolute latency does not
travel between hosts; the ratio to the host's own floor is what the engine controls.
--no-floor: one engine run, as below.
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
  plant_to_receipt / plant_to_fire: from the moment the simulator queued a planted
  mispricing's frames (`python -m sim --plant-log`, the same monotonic clock) to the engine's
  read / leg 0's bytes; the only measure that sees a wait of the hot thread before its read
  (for the GIL or a core), which tick-to-fire starts after.
--scrape-metrics PORT turns the engine's Prometheus endpoint on (metrics_port = PORT) and
GETs /metrics every --scrape-interval seconds (default 1) from this process while the engine
runs; the result adds the scrapes' count and durations (the A/B of README "Performance").
Results go to profiles/results/latency_<tag>.json with the machine description.

--tls: plaintext and TLS in one invocation, interleaved (plain, TLS, plain, TLS for
--rounds 2): the same engine and market settings, the simulator serving https/wss
(`[sim] tls = true`) in the TLS runs. --tls-io-ab adds a third variant per round, TLS with
`tls_io = ssl` (reads and writes through the ssl module, which releases the GIL), to measure
what the GIL-holding TLS I/O (tlsio.py) does. Each run writes
profiles/results/latency_<tag>_<variant>_<round>.json (tag default "tls"; variants plain,
held, ssl) and the side-by-side table goes to latency_<tag>_summary.json. Every run also
reports the hot thread's mean socket read (recv, or the SSL_read loop with its decryption)
from the engine's last lines.
--patch-ab DIFF: a change measured before it is made. A is this tree, B a temporary copy of
it with the unified diff DIFF applied; runs a, b, a, b (--rounds 2) on the same settings,
writes latency_<tag>_{a,b}_<round>.json (tag default ab_<DIFF's name>) and prints tick-to-fire
and the stages side by side (latency_<tag>_summary.json, with the diff's text). The diffs in
profiles/patches/ are diagnostics kept that way (profiles/README.md).
A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
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


PLANT_MATCH_NS = 20_000_000    # a frame read more than 20 ms after the last plant was not its


def analyse(journal: Path, plants: list[int] | None = None) -> dict:
    every = [json.loads(line) for line in journal.open()]
    recs = [r for r in every if "recv_ns" in r]   # triangles (not STARTUP, UNWOUND, FOLLOWUP)
    out: dict[str, list[float]] = {}
    plants = sorted(plants or [])

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
            if plants and r.get("origin", "frame") == "frame":
                # plant -> receipt: the simulator queued the planted frames (same host, same
                # monotonic clock) -> the engine's read returned. It holds what tick-to-fire
                # cannot see: the sim's write, loopback, and any wait of the hot thread for
                # the GIL or a core before its read. Matched to the last plant before the read.
                k = bisect.bisect_right(plants, t0) - 1
                if k >= 0 and t0 - plants[k] <= PLANT_MATCH_NS:
                    add("plant_to_receipt", plants[k], t0)
                    add("plant_to_fire", plants[k], legs[0]["written_ns"])
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
    status, pnl, net = {}, {}, {}
    for r in every:
        status[r["status"]] = status.get(r["status"], 0) + 1
        start = (r.get("triangle") or [r.get("start")])[0]
        if r.get("profit") is not None and r.get("status") != "STARTUP":
            pnl[start] = pnl.get(start, 0.0) + r["profit"]
        if r.get("net") is not None:
            # the triangle's whole result: profit plus its leftovers valued at the best bids
            net[start] = net.get(start, 0.0) + r["net"]
    return {"triangles": len(recs), "status": status, "pnl": pnl, "net": net,
            "us": {k: stats(v) for k, v in sorted(out.items())}}


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
    ap.add_argument("--seconds", type=float, default=40)
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
    ap.add_argument("--sim-extra", nargs="*", default=[], help="more [sim] key=value (e.g. tls=true)")
    ap.add_argument("--tls", action="store_true",
                    help="interleaved plaintext and TLS runs in one invocation (see the docstring)")
    ap.add_argument("--tls-io-ab", action="store_true",
                    help="with --tls: also TLS with tls_io = ssl (GIL-releasing reads and writes)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of (floor, engine), or with --tls of (plain, TLS[, ssl])")
    ap.add_argument("--no-floor", action="store_true", help="one engine run, no floor")
    ap.add_argument("--floor-delays", default="0", metavar="US,US",
                    help="the floor probe's --delays-us (its docstring); the table's floor is the first")
    ap.add_argument("--scrape-metrics", type=int, default=0, metavar="PORT",
                    help="metrics_port = PORT, scraped every --scrape-interval s during the run")
    ap.add_argument("--scrape-interval", type=float, default=1.0)
    ap.add_argument("--patch-ab", metavar="DIFF",
                    help="same-run A/B of a change: this tree against a temporary copy with "
                         "the unified diff DIFF applied, interleaved (a, b, a, b); no floor")
    ap.add_argument("--halt-poll-ns", type=int, default=None,
                    help="host tuning for this run (root; restored after): idle vCPUs poll this "
                         "long before halting (cpuidle-haltpoll guest_halt_poll_ns)")
    a = ap.parse_args()
    go = run_patch_ab if a.patch_ab else run_tls if a.tls else run if a.no_floor else run_floor
    if a.halt_poll_ns is None:
        return go(a)
    before = HALT_POLL.read_text().strip()
    HALT_POLL.write_text(str(a.halt_poll_ns))
    try:
        return go(a)
    finally:
        HALT_POLL.write_text(before)


FLOOR_PCTS = ("p50", "p90", "p99", "p99.9")
STAGES = (("receipt -> kernel entry", "stage_entry"), ("receipt -> parsed", "stage_parsed"), ("receipt -> evaluated", "stage_evaluated"),
          ("L0 signed -> sent", "L0_sign_to_sent"), ("signal -> sent", "signal_to_fire"),
          ("plant -> receipt", "plant_to_receipt"))


def run_floor(a) -> int:
    """The floor and the engine interleaved (module docstring); the ratio table."""
    tag = a.tag or "floor"
    rows = []
    for rnd in range(1, a.rounds + 1):
        fl = floor_run(a, f"{tag}_floor_{rnd}")
        if fl is None:
            return 1
        en = run(a, tag=f"{tag}_engine_{rnd}")
        if en is None:
            return 1
        rows.append({"round": rnd, "floor": fl["floor_us"], "floor_file": f"latency_{tag}_floor_{rnd}.json",
                     "engine_file": f"latency_{tag}_engine_{rnd}.json", "triangles": en["triangles"],
                     "status": en["status"], **{m: en["us"].get(m) for m in
                                                ("tick_to_fire",) + tuple(k for _, k in STAGES)}})
    mach = machine()
    print(f"\nbench_latency: {tag}: floor and engine interleaved, {a.rounds} rounds of {a.seconds:.0f}s "
          f"each; host {mach['nproc']} cpus, {mach['cpu']}; engine cpus {a.engine_cpus or '-'}, "
          f"simulator cpus {a.sim_cpus or '-'}; busy_poll_us "
          + next((kv.split('=', 1)[1] for kv in a.extra if kv.startswith("busy_poll_us=")), "0"))
    print(f"{'round':6s} {'measure (us)':24s}" + "".join(f"{p:>10s}" for p in FLOOR_PCTS))
    for r in rows:
        fl, tk = r["floor"], r["tick_to_fire"] or {}
        print(f"{r['round']:<6d} {'floor':24s}" + "".join(f"{fl.get(p, float('nan')):10.1f}" for p in FLOOR_PCTS))
        print(f"{'':6s} {'engine tick-to-fire':24s}" + "".join(f"{tk.get(p, float('nan')):10.1f}" for p in FLOOR_PCTS))
        print(f"{'':6s} {'ratio':24s}" + "".join(f"{tk.get(p, float('nan')) / fl[p]:9.2f}x" if fl.get(p) else f"{'-':>10s}"
                                                  for p in FLOOR_PCTS))
        for label, key in STAGES:
            st = r.get(key) or {}
            print(f"{'':6s} {label:24s}" + "".join(f"{st.get(p, float('nan')):10.1f}" for p in FLOOR_PCTS))
    out = ROOT / "profiles" / "results" / f"latency_{tag}_floor_summary.json"
    out.write_text(json.dumps({"tag": tag, "seconds": a.seconds, "rounds": a.rounds, "machine": mach,
                               "extra": a.extra, "rows": rows}, indent=1))
    print(f"bench_latency: wrote {out.relative_to(ROOT)}")
    return 0


def floor_run(a, tag: str):
    """probe_floor.py on the ini the engine would get; its result (also written)."""
    tmp, ini, _engine, _sim = write_ini(a, tag)
    out = tmp / "floor.json"
    print(f"bench_latency: {tag}: running the floor probe for {a.seconds:.0f}s", flush=True)
    proc = subprocess.run([sys.executable, str(ROOT / "profiles" / "probe_floor.py"), str(ini),
                           "--seconds", str(a.seconds), "--rate", str(a.rate), "--out", str(out),
                           "--delays-us", a.floor_delays],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(proc.stdout.strip()[-900:])
    if proc.returncode != 0 or not out.exists():
        print(f"bench_latency: the floor probe exited {proc.returncode}")
        return None
    res = json.loads(out.read_text())
    res["tag"] = tag
    dest = ROOT / "profiles" / "results" / f"latency_{tag}.json"
    dest.write_text(json.dumps(res, indent=1))
    return res


HEADLINE = ("tick_to_fire", "signal_to_fire", "leg_gap", "L0_sign_to_sent", "L0_sent_to_response",
            "stage_parsed")


def run_tls(a) -> int:
    """Plaintext and TLS interleaved (see the module docstring); a side-by-side table."""
    tag = a.tag or "tls"
    variants = [("plain", {}, {}), ("held", {"tls_io": "held"}, {"tls": "true"})]
    if a.tls_io_ab:
        variants.append(("ssl", {"tls_io": "ssl"}, {"tls": "true"}))
    rows = []
    for rnd in range(1, a.rounds + 1):
        for name, eng, sim in variants:
            res = run(a, tag=f"{tag}_{name}_{rnd}", engine_over=eng, sim_over=sim)
            if res is None:
                return 1
            rows.append(_row(name, rnd, f"latency_{tag}_{name}_{rnd}.json", res, HEADLINE))
    return side_by_side(a, tag, rows, ", ".join(v[0] for v in variants), HEADLINE)


def side_by_side(a, tag: str, rows: list, variants: str, cols: tuple, extra: dict | None = None) -> int:
    """Print the interleaved runs' p50 / p99 side by side; write latency_<tag>_summary.json."""
    print(f"\nbench_latency: {tag}: interleaved runs of {a.seconds:.0f}s each, same invocation "
          f"(variants: {variants}); p50 / p99 in us")
    print(f"{'run':14s}" + "".join(f"{m:>24s}" for m in cols) + f"{'read us':>9s}{'sig read p50/p99':>18s}")
    for r in rows:
        cells = "".join(f"{r[m]['p50']:11.1f} /{r[m]['p99']:9.1f}  " if m in r else f"{'-':>24s}"
                        for m in cols)
        rd = r.get("reads") or {}
        sr = r.get("signal_reads_us") or {}
        print(f"{r['variant'] + ' ' + str(r['round']):14s}{cells}{rd.get('mean_us', float('nan')):9.2f}"
              f"{sr.get('p50', float('nan')):9.1f} /{sr.get('p99', float('nan')):6.1f}")
    out = ROOT / "profiles" / "results" / f"latency_{tag}_summary.json"
    out.write_text(json.dumps({"tag": tag, "seconds": a.seconds, "rounds": a.rounds,
                               "machine": machine(), "extra": a.extra, **(extra or {}), "rows": rows},
                              indent=1))
    print(f"bench_latency: wrote {out.relative_to(ROOT)}")
    return 0


def _row(name: str, rnd: int, file: str, res: dict, cols: tuple) -> dict:
    return {"variant": name, "round": rnd, "file": file, "triangles": res["triangles"],
            "status": res["status"], "reads": res.get("reads"),
            "signal_reads_us": res.get("signal_reads_us"),
            **{m: {k: res["us"][m][k] for k in ("n", "p50", "p90", "p99")}
               for m in cols if m in res["us"]}}


AB_COLS = ("tick_to_fire", "stage_parsed", "stage_book", "stage_evaluated", "signal_to_fire",
           "L0_sign_to_sent")
# what a --patch-ab copy leaves out: history, caches, results, virtual environments, logs
AB_IGNORE = (".git", ".numba_cache", "__pycache__", ".venv", "venv", ".ci", "results", "logs",
             ".pytest_cache")


def run_patch_ab(a) -> int:
    """A/B of a change in one invocation: A is this tree as it is, B a temporary copy of it
    with the unified diff --patch-ab applied (git apply, else patch -p1); runs A, B, A, B
    (--rounds) on the same settings and prints them side by side. The copy compiles its own
    kernels on its first run, before its measured window (run_seconds counts from the
    start of trading), and is deleted at the end."""
    diff = Path(a.patch_ab).resolve()
    if not diff.is_file():
        print(f"bench_latency: --patch-ab: no such file: {a.patch_ab}")
        return 2
    tag = a.tag or f"ab_{diff.stem}"
    tmp = Path(tempfile.mkdtemp(prefix="bench_latency_ab_"))
    copy = tmp / "tree"
    try:
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*AB_IGNORE))
        err = ""
        # git must not take the copy for part of a repository above it (it would apply the
        # diff relative to that repository's top)
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp.parent)}
        for cmd in (["git", "apply", str(diff)],
                    ["patch", "-p1", "--batch", "--forward", "-i", str(diff)]):
            try:
                p = subprocess.run(cmd, cwd=copy, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
            except FileNotFoundError:
                err += f"{cmd[0]}: not installed\n"
                continue
            if p.returncode == 0:
                break
            err += p.stdout
        else:
            print(f"bench_latency: --patch-ab: {diff.name} does not apply to this tree:\n{err.strip()}")
            return 2
        rows = []
        for rnd in range(1, a.rounds + 1):
            for name, root in (("a", ROOT), ("b", copy)):
                res = run(a, tag=f"{tag}_{name}_{rnd}", root=root)
                if res is None:
                    return 1
                rows.append(_row(name, rnd, f"latency_{tag}_{name}_{rnd}.json", res, AB_COLS))
        return side_by_side(a, tag, rows, f"a = this tree, b = with {diff.name}", AB_COLS,
                            {"patch": diff.name, "patch_text": diff.read_text()})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_ini(a, tag: str, engine_over: dict | None = None, sim_over: dict | None = None):
    """(temp folder, ini path, engine dict, sim dict): the engine's and the simulator's
    settings for one run (the floor probe reads the same ini)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench_latency_{tag}_"))
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
    engine.update(engine_over or {})
    if a.scrape_metrics:
        engine["metrics_port"] = str(a.scrape_metrics)
    sim = {"symbols": a.symbols, "seed": "3", "update_rate": str(a.update_rate),
           "mispricing_rate": str(a.rate), "mispricing_bps": "40", "take_delay_ms": "300",
           "balances": "USDT=100000,USDC=100000,BTC=2,ETH=40,KCS=5000", "cpus": a.sim_cpus,
           # VIP 12: 40,000 order weight per 30 s; at 20 mispricings/s the engine places
           # ~150 orders/s, past VIP 0's 4,000 (it then backs off: see executor.py 429000)
           "extra_args": "--vip 12" + f" --plant-log {tmp / 'plants.txt'}"
                         + (" --nice %d" % a.sim_nice if a.sim_nice else "")
                         + (" --busy-poll" if a.sim_busy_poll else "")}
    for kv in a.sim_extra:
        k, v = kv.split("=", 1)
        sim[k] = v
    sim.update(sim_over or {})
    ini = tmp / "bench.ini"
    ini.write_text("[engine]\n" + "".join(f"{k} = {v}\n" for k, v in engine.items())
                   + "[sim]\n" + "".join(f"{k} = {v}\n" for k, v in sim.items()))
    return tmp, ini, engine, sim


def run(a, tag: str = "", engine_over: dict | None = None, sim_over: dict | None = None,
        root: Path = ROOT):
    """One engine run of the tree at `root` (--patch-ab: the patched copy). Returns its
    result dict (also written as JSON, under this tree's results), or None (printed) when
    the engine failed; main() turns that into the exit code."""
    single = not tag
    tag = tag or a.tag or f"{a.fire_from}_{a.order_path}"
    tmp, ini, engine, sim = write_ini(a, tag, engine_over, sim_over)
    print(f"bench_latency: {tag}: running the engine for {a.seconds:.0f}s (log in {tmp})", flush=True)
    t0 = time.time()
    scrapes: list[float] = []
    stop = threading.Event()
    if a.scrape_metrics:
        threading.Thread(target=scrape_loop, args=(a.scrape_metrics, a.scrape_interval, scrapes, stop),
                         daemon=True).start()
    proc = subprocess.run([sys.executable, str(root / "run.py"), str(ini)], cwd=root,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop.set()
    journals = list(tmp.glob("*/journal.jsonl"))
    if proc.returncode != 0 or not journals:
        print(proc.stdout[-3000:])
        print(f"bench_latency: engine exited {proc.returncode}")
        return 1 if single else None
    plant_file = tmp / "plants.txt"
    plants = [int(x) for x in plant_file.read_text().split()] if plant_file.exists() else []
    res = analyse(journals[0], plants)
    # the result names the temp dir by its basename only (no machine path in a kept file)
    res.update({"tag": tag, "machine": machine(), "wall_s": round(time.time() - t0, 1),
                "engine": {**engine, "log_dir": tmp.name},
                "sim": {**sim, "extra_args": sim["extra_args"].replace(f"{tmp}{os.sep}", "")},
                "engine_summary": [ln for ln in proc.stdout.splitlines() if "status:" in ln][-1:]})
    m = re.search(r"hot: (\d+) socket reads, ([0-9.]+) us each", proc.stdout)
    if m:
        res["reads"] = {"n": int(m[1]), "mean_us": float(m[2])}
    m = re.search(r"hot: reads that carried a signal: n=(\d+) p50=([0-9.]+) p90=([0-9.]+) p99=([0-9.]+)",
                  proc.stdout)
    if m:
        res["signal_reads_us"] = {"n": int(m[1]), "p50": float(m[2]), "p90": float(m[3]), "p99": float(m[4])}
    m = re.search(r"hot: receipt -> chunk kernel entry, signalling calls: n=(\d+) p50=([0-9.]+) "
                  r"p90=([0-9.]+) p99=([0-9.]+)", proc.stdout)
    if m:   # HotLoop's own stamps (hotctx.R_ENTRY_NS), logged at the end of the run
        res["us"]["stage_entry"] = {"n": int(m[1]), "p50": float(m[2]), "p90": float(m[3]), "p99": float(m[4]),
                                    "p99.9": float("nan"), "max": float("nan")}   # (not logged)
    m = re.search(r"(?m)^.*run: started in .*$", proc.stdout)
    # a kept file names no machine path: a TLS run's ca_file (a temp file) by its basename
    res["started_line"] = re.sub(r"(?:/[^\s/;,)]+)+/([^\s/;,)]+)", r"\1", m[0]) if m else ""
    print(f"pnl: {res['pnl']}  net: {res['net']}")
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
    return 0 if single else res


if __name__ == "__main__":
    sys.exit(main())
