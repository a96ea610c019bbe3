"""Start-up benchmark: `python run.py sim.ini` from process start to the first evaluated book.

Run:  python profiles/bench_startup.py [--runs 3] [--run-seconds 4] [--timeout 300]
                                       [--out profiles/results/startup.json]
For each of --runs rounds it starts the engine twice as a subprocess (which starts its own
the simulator) on a temporary copy of sim.ini (same values; run_seconds, status_interval_s 1 and
log_dir in a temp dir overridden; no pinning):
  cold  NUMBA_CACHE_DIR = a new empty directory: every kernel compiles;
  warm  the same NUMBA_CACHE_DIR again: every kernel loads from the cache the cold run wrote.
(Python's own .pyc files are as they are in the tree in both modes: "cold" means cold Numba.)
Milestones are read from the engine's own log lines (run.py echoes engine.log to stdout;
each line carries the wall-clock ms at which it was logged, compared with time.time() taken
just before Popen):
  first line    run.py's first log line (effective config)    -> interpreter + imports
  sim up        "run: simulator pid ..."                      -> simulator started
  REST done     "run: clock offset ..." (clock, symbols, fees, balances, universe)
  kernels warm  "run: kernels warm in X s" (X = warm_up() alone; the split also holds
                allocate())
  started       "run: started in ..." (executor order connections, threads)
  links up      the last "hot: ... link ... up" before the first evaluation
  first eval    "hot: first book evaluated X s after process start" (hot.py logs it once,
                right after the first fused call that evaluated a book: the first book
                synced and updated; X is measured in-process from /proc, 10 ms resolution)
The issue's target: warm start <= 3 s (process start -> first evaluated book).
Prints a per-run table and the median (min-max) of each split per mode; writes the JSON
with the machine (nproc, CPU model, load average). A benchmark, not a test: no asserts.
On a shared machine the absolute numbers move with the load; read the split.
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from hostinfo import machine  # noqa: E402  (profiles/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent
TARGET_WARM_S = 3.0

# (key, label, log-line pattern); the order is the order run.py logs them in
MILESTONES = [
    ("first_line", "interpreter + imports", None),
    ("sim_up", "simulator start", re.compile(r"run: simulator pid ")),
    ("rest_done", "REST start-up", re.compile(r"run: clock offset ")),
    ("kernels_warm", "allocate + kernels warm", re.compile(r"run: kernels warm in ([0-9.]+)s")),
    ("started", "executors + threads", re.compile(r"run: started in ")),
    ("links_up", "links up", re.compile(r"hot: \w+ link \S+ up ")),
    ("first_eval", "first book synced/evaluated",
     re.compile(r"hot: first book evaluated ([0-9.]+)s after process start")),
]
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) ")


def write_ini(tmp: Path, run_seconds: float) -> tuple[Path, dict]:
    """sim.ini's values with the benchmark's overrides, in a temp file (sim.ini untouched)."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ROOT / "sim.ini")
    over = {"run_seconds": str(run_seconds), "status_interval_s": "1",
            "log_dir": str(tmp / "logs"), "cpus": ""}
    for k, v in over.items():
        cp["engine"][k] = v
    cp["sim"]["cpus"] = ""
    ini = tmp / "startup.ini"
    with ini.open("w") as f:
        cp.write(f)
    return ini, over


def stamp_s(line: str, t0_wall: float) -> float | None:
    """Seconds from t0_wall to the HH:MM:SS.mmm (UTC) that opens a log line."""
    m = STAMP.match(line)
    if not m:
        return None
    h, mi, s, ms = (int(x) for x in m.groups())
    day0 = t0_wall - (t0_wall % 86400)          # UTC midnight of the start
    t = day0 + h * 3600 + mi * 60 + s + ms / 1000
    if t < t0_wall - 43200:                      # the run crossed midnight
        t += 86400
    return t - t0_wall


def one_run(ini: Path, cache_dir: Path, timeout_s: float) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("NUMBA_DISABLE_JIT", None)
    t0_wall = time.time()
    t0_mono = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), str(ini)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    at: dict[str, float] = {}
    arrive: dict[str, float] = {}
    extra: dict[str, float] = {}
    link_ups: list[float] = []
    tail: list[str] = []
    # a run that hangs (no line for minutes while compiling is normal) is stopped by a timer
    watchdog = threading.Timer(timeout_s, proc.terminate)
    watchdog.start()
    for line in proc.stdout:
        now = time.monotonic() - t0_mono
        tail = (tail + [line.rstrip()[:300]])[-40:]
        ts = stamp_s(line, t0_wall)
        if ts is None:
            continue
        if "first_line" not in at:
            at["first_line"], arrive["first_line"] = ts, now
        for key, _label, pat in MILESTONES[1:]:
            m = pat.search(line) if pat else None
            if not m:
                continue
            if key == "links_up":
                if "first_eval" not in at:
                    link_ups.append(ts)
                continue
            if key not in at:
                at[key], arrive[key] = ts, now
                if m.groups():
                    extra[key] = float(m.group(1))
    watchdog.cancel()
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    if link_ups:
        at["links_up"] = max(link_ups)
    ok = code == 0 and all(k in at for k, _, _ in MILESTONES)
    splits = {}
    prev = 0.0
    for key, label, _ in MILESTONES:
        if key in at:
            splits[label] = round(at[key] - prev, 3)
            prev = at[key]
    return {"ok": ok, "exit_code": code, "total_s": round(at["first_eval"], 3) if "first_eval" in at else None,
            "in_process_s": extra.get("first_eval"), "kernels_warm_logged_s": extra.get("kernels_warm"),
            "links": len(link_ups), "milestones_s": {k: round(v, 3) for k, v in at.items()},
            "stdout_arrival_s": {k: round(v, 3) for k, v in arrive.items()},
            "splits_s": splits, "wall_s": round(time.monotonic() - t0_mono, 2),
            "tail": [] if ok else tail}


def summarise(runs: list[dict]) -> dict:
    out = {}
    good = [r for r in runs if r["ok"]]
    if not good:
        return out
    cols = {"total to first evaluation": [r["total_s"] for r in good],
            "in-process (/proc) to first evaluation": [r["in_process_s"] for r in good],
            "kernels warm (logged)": [r["kernels_warm_logged_s"] for r in good]}
    for _k, label, _ in MILESTONES:
        cols[label] = [r["splits_s"][label] for r in good]
    for name, vals in cols.items():
        out[name] = {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3),
                     "max": round(max(vals), 3), "n": len(vals)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds of (cold, warm)")
    ap.add_argument("--run-seconds", type=float, default=4)
    ap.add_argument("--timeout", type=float, default=300, help="per run, seconds")
    ap.add_argument("--out", default=str(ROOT / "profiles" / "results" / "startup.json"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    ini, over = write_ini(tmp, a.run_seconds)
    mach = machine()
    print(f"bench_startup: {a.runs} x (cold, warm) of `python run.py` on sim.ini's values "
          f"(overrides {over}); machine {mach['nproc']} cpus, {mach['cpu']}, load "
          f"{mach['loadavg'][0]:.2f}", flush=True)
    runs = []
    for i in range(a.runs):
        cache = tmp / f"numba_cache_{i}"
        cache.mkdir()
        for mode in ("cold", "warm"):
            r = one_run(ini, cache, a.timeout)
            r.update(mode=mode, round=i + 1, numba_cache_dir=f"{tmp.name}/{cache.name}")
            runs.append(r)
            print(f"  {mode} {i + 1}: total {r['total_s']} s (in-process {r['in_process_s']} s), "
                  f"kernels warm {r['kernels_warm_logged_s']} s, exit {r['exit_code']}"
                  + ("" if r["ok"] else "  FAILED:\n    " + "\n    ".join(r["tail"][-15:])),
                  flush=True)
    labels = [lab for _, lab, _ in MILESTONES]
    short = ["imports", "sim", "REST", "kernels", "threads", "links", "1st eval"]
    print()
    print(f"{'run':8s} {'total':>7s} {'in-proc':>7s} " + " ".join(f"{s:>8s}" for s in short)
          + f" {'kern(log)':>9s}")
    for r in runs:
        if not r["ok"]:
            print(f"{r['mode']} {r['round']:<3d} failed (exit {r['exit_code']})")
            continue
        print(f"{r['mode']} {r['round']:<3d} {r['total_s']:7.3f} {r['in_process_s']:7.3f} "
              + " ".join(f"{r['splits_s'][lab]:8.3f}" for lab in labels)
              + f" {r['kernels_warm_logged_s']:9.2f}")
    summary = {m: summarise([r for r in runs if r["mode"] == m]) for m in ("cold", "warm")}
    print()
    print(f"{'seconds, median (min-max)':40s} {'cold':>22s} {'warm':>22s}")
    for name in summary.get("cold") or summary.get("warm") or {}:
        cells = []
        for m in ("cold", "warm"):
            s = summary[m].get(name)
            cells.append(f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})" if s else "-")
        print(f"{name:40s} {cells[0]:>22s} {cells[1]:>22s}")
    warm = summary["warm"].get("total to first evaluation")
    verdict = (f"warm start median {warm['median']:.2f} s, max {warm['max']:.2f} s: target "
               f"<= {TARGET_WARM_S:.0f} s {'met' if warm['max'] <= TARGET_WARM_S else 'NOT met'}"
               if warm else "no successful warm run")
    print("bench_startup: " + verdict)
    # paths in the result are relative to the temp dir's parent (no machine path in a kept file)
    res = {"machine": mach, "engine_overrides": {**over, "log_dir": f"{tmp.name}/logs"},
           "base_config": "sim.ini",
           "target_warm_s": TARGET_WARM_S, "verdict": verdict,
           "splits": [lab for lab in labels], "summary": summary, "runs": runs,
           "notes": ["total: log-line wall-clock stamp of the first-evaluation line minus "
                     "time.time() just before Popen (includes fork/exec)",
                     "in-process: hot.process_age_s() (/proc/uptime - /proc/self/stat "
                     "starttime), 10 ms resolution",
                     "cold = empty NUMBA_CACHE_DIR; warm = the same dir right after; .pyc as in "
                     "the tree for both"]}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"bench_startup: wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
