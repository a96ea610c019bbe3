"""Tests of run.py as a program (subprocesses) and of the shipped ini files.

- `python run.py` without a config: usage on stderr, exit 2; `-h`/`--help`: the usage on stdout,
  exit 0; `--check`: a live ini validated without secrets, naming the variables it needs;
- a missing dependency (outside the venv): one line that says to activate the venv, exit 2;
- Ctrl-C while the kernels compile (empty Numba cache): exit 0, simulator and workers stopped,
  no run folder left;
- an ini holding a literal secret, readable by others: refused for live, warned otherwise;
- a bad config: one line per problem, exit 2, no traceback, no secret;
- a start-up failure against an unreachable venue: one clear line, no secret;
- a TLS venue whose certificate fails verification (no CA for it, another CA, another host
  name): one line naming the URL and OpenSSL's reason, exit 1, no traceback;
- `python run.py sim.ini` (sim.ini with run_seconds, log_dir and status_interval_s changed)
  exits 0 on its own, prints status lines and the session summary and writes report.log,
  journal.jsonl and engine.log under log_dir (folder 0700, files 0600), over plain loopback
  and with `[sim] tls = true` (https/wss; run.py hands the simulator's CA to the engine), one
  short console line per triangle; SIGTERM after the first status line also exits 0 with the
  summary;
- SIGUSR1 pauses, SIGUSR2 resumes and SIGHUP ends a live session cleanly with its summary,
  reconciled from the journal (docs/design.md 12);
- live.example.ini and sim.ini mention every key of config.SCHEMA (set or commented out)
  and no unknown key; live.example.ini parses (with fake environment secrets) as a live
  KuCoin config, holds no secret, and every option in it has its own comment.

~45 s (three short engine runs with their simulators, three failed TLS start-ups). No network beyond 127.0.0.1.
Run: python -m pytest -q tests/test_run.py
"""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import config

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "run.py"
SECRET = "SeCrEtMaRkEr0123456789"
PASSPHRASE = "PaSsMaRkEr9876"


def run_py(*args, env=None, timeout=60):
    e = dict(os.environ)
    for k in ("KUCOIN_API_KEY", "KUCOIN_API_SECRET", "KUCOIN_API_PASSPHRASE"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([sys.executable, str(RUN), *args], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=timeout)


def sim_ini_with(tmp_path: Path, **changes) -> Path:
    """sim.ini as shipped, with some values replaced (the first `key = ` line of each; keys
    must exist in it)."""
    text = (ROOT / "sim.ini").read_text()
    for k, v in changes.items():
        text, n = re.subn(rf"(?m)^{k}\s*=.*$", f"{k} = {v}", text, count=1)
        assert n == 1, f"sim.ini has no line for {k}"
    p = tmp_path / "test-sim.ini"
    p.write_text(text)
    return p


# -- usage and config errors ----------------------------------------------------------------------

def test_run_when_no_config_argument_then_usage_and_exit_2():
    r = run_py()
    assert r.returncode == 2
    assert "usage: python run.py CONFIG.ini" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_run_when_help_flag_then_usage_on_stdout_and_exit_0(flag):
    r = run_py(flag)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: python run.py CONFIG.ini")
    assert "--check" in r.stdout and "sim.ini" in r.stdout
    assert r.stderr == ""


def test_run_when_unknown_option_then_usage_and_exit_2():
    r = run_py("--frobnicate", "sim.ini")
    assert r.returncode == 2
    assert "unknown option --frobnicate" in r.stderr and "usage: python run.py CONFIG.ini" in r.stderr


def test_run_check_when_live_ini_without_secrets_then_valid_and_names_variables():
    r = run_py("--check", "live.example.ini")
    assert r.returncode == 0, r.stderr
    assert "venue = kucoin" in r.stdout and "live.example.ini is valid" in r.stdout
    for var in ("KUCOIN_API_KEY", "KUCOIN_API_SECRET", "KUCOIN_API_PASSPHRASE"):
        assert f"{var} (NOT SET)" in r.stdout
    r = run_py("--check", "live.example.ini", env={"KUCOIN_API_KEY": "key-1", "KUCOIN_API_SECRET": SECRET,
                                                   "KUCOIN_API_PASSPHRASE": PASSPHRASE})
    assert r.returncode == 0
    assert "KUCOIN_API_SECRET (set)" in r.stdout and "NOT SET" not in r.stdout
    assert SECRET not in r.stdout + r.stderr and PASSPHRASE not in r.stdout + r.stderr


def test_run_check_when_ini_invalid_then_problems_and_exit_2(tmp_path):
    p = tmp_path / "bad.ini"
    p.write_text("[engine]\nvenue = kucoin\nslots = 0\n")
    r = run_py("--check", str(p))
    assert r.returncode == 2
    assert "slots = '0': must be >= 1" in r.stderr and "is valid" not in r.stdout


def test_run_when_dependency_missing_then_venv_hint_and_no_run_folder(tmp_path):
    """As outside the venv: an engine dependency cannot be imported (simdjson here)."""
    ini = sim_ini_with(tmp_path, log_dir=tmp_path / "logs")
    code = ("import runpy, sys; sys.modules['simdjson'] = None; "
            f"sys.argv = ['run.py', {str(ini)!r}]; runpy.run_path('run.py', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "cannot import simdjson" in r.stderr and ". .venv/bin/activate" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "logs").exists()


def test_run_when_ctrl_c_while_kernels_compile_then_exit_0_and_children_stopped(tmp_path):
    """A first start (empty Numba cache): the compile notice is the first line, within a
    second of the process start; progress follows; Ctrl-C (SIGINT to the process group, as a terminal sends
    it) stops it cleanly: exit 0, the simulator and the compile workers gone, no run folder."""
    ini = sim_ini_with(tmp_path, log_dir=tmp_path / "logs")
    cache = tmp_path / "numba_cache"
    cache.mkdir()
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    proc = subprocess.Popen([sys.executable, str(RUN), str(ini)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    t_start = time.monotonic()
    lines: list[str] = []
    compiling = threading.Event()
    notice_after: list[float] = []

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "compiling the Numba kernels" in line and not notice_after:
                notice_after.append(time.monotonic() - t_start)
            if "run: compiling kernels" in line:
                compiling.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert compiling.wait(60), "no progress line:\n" + "".join(lines)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    out = "".join(lines)
    assert code == 0, out
    assert "run: interrupted during start-up: nothing traded" in out and "Traceback" not in out
    assert notice_after and notice_after[0] < 1.0, f"compile notice after {notice_after} s"
    assert "compiling the Numba kernels" in lines[0]       # before anything else
    sim_pid = int(re.search(r"run: simulator pid (\d+)", out)[1])
    time.sleep(0.5)
    for pid in [sim_pid] + child_pids_of(proc.pid):
        assert not pid_alive(pid), f"process {pid} still running"
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def child_pids_of(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_run_when_live_ini_with_readable_literal_secret_then_refused_unless_overridden(tmp_path):
    p = tmp_path / "exposed.ini"
    p.write_text(f"[engine]\nvenue = kucoin\nmode = live\nrest_url = http://127.0.0.1:9\n"
                 f"log_dir = {tmp_path / 'logs'}\n[credentials]\napi_key = k1\napi_secret = {SECRET}\n"
                 f"api_passphrase = {PASSPHRASE}\n")
    p.chmod(0o644)
    r = run_py(str(p))
    assert r.returncode == 2
    assert "refusing a live start" in r.stderr and "chmod 600" in r.stderr
    assert SECRET not in r.stdout + r.stderr and PASSPHRASE not in r.stdout + r.stderr
    r = run_py("--check", str(p))
    assert r.returncode == 0 and "WARNING" in r.stdout and "readable by other users" in r.stdout
    r = run_py(str(p), "--allow-readable-secrets", timeout=90)
    assert "refusing" not in r.stderr and "WARNING" in r.stderr
    assert r.returncode == 1 and "run: failed: " in r.stdout      # it went on, to the dead port
    p.chmod(0o600)
    r = run_py("--check", str(p))
    assert r.returncode == 0 and "WARNING" not in r.stdout


def test_run_when_config_has_unknown_key_and_bad_values_then_one_line_per_problem_and_exit_2(tmp_path):
    p = tmp_path / "bad.ini"
    p.write_text("[engine]\nvenue = sim\nslots = many\nfill_timeout_ms = 10\nbogus_key = 1\n"
                 "[nosuch]\nx = 1\n")
    r = run_py(str(p))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "config error:"
    problems = [x.strip() for x in lines[1:]]
    assert len(problems) == 4, r.stderr
    assert sum("unknown section [nosuch]" in x for x in problems) == 1
    assert sum("[engine] unknown key 'bogus_key'" in x for x in problems) == 1
    assert sum("[engine] slots = 'many': expected an integer" in x for x in problems) == 1
    assert sum("[engine] fill_timeout_ms = '10': must be >= 50" in x for x in problems) == 1
    assert "Traceback" not in r.stderr + r.stdout


def test_run_when_config_errors_with_secrets_then_no_secret_printed(tmp_path):
    p = tmp_path / "bad-secrets.ini"
    p.write_text(f"[engine]\nvenue = kucoin\nslots = 0\n[credentials]\napi_secret = {SECRET}\n"
                 f"api_passphrase_env = MY_PASS\nkey_version = 9\n")
    r = run_py(str(p), env={"MY_PASS": PASSPHRASE})
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "key_version = '9': must be <= 3" in out
    assert "venue = kucoin needs api_key: set the environment variable(s) KUCOIN_API_KEY" in out
    assert SECRET not in out and PASSPHRASE not in out
    # the masked forms in the objects a traceback would print
    with pytest.raises(config.ConfigError) as ei:
        config.load_config(str(p), environ={"MY_PASS": PASSPHRASE})
    assert SECRET not in str(ei.value) and PASSPHRASE not in str(ei.value)
    good = p.read_text().replace("slots = 0", "slots = 1").replace("key_version = 9", "key_version = 3")
    cfg = config.parse_config(good, "good.ini", environ={"MY_PASS": PASSPHRASE, "KUCOIN_API_KEY": "k"})
    for text in (repr(cfg), str(cfg.secrets), cfg.describe()):
        assert SECRET not in text and PASSPHRASE not in text


def test_run_when_venue_unreachable_then_one_failure_line_without_secrets(tmp_path):
    """A valid live config against a port nobody listens on: start-up fails with one line
    (exit 1); the exception text and the logs carry no secret."""
    p = tmp_path / "down.ini"
    p.write_text(f"[engine]\nvenue = kucoin\nmode = live\nrest_url = http://127.0.0.1:9\n"
                 f"log_dir = {tmp_path / 'logs'}\n")
    r = run_py(str(p), env={"KUCOIN_API_KEY": "key-1", "KUCOIN_API_SECRET": SECRET,
                            "KUCOIN_API_PASSPHRASE": PASSPHRASE}, timeout=90)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "run: failed: " in out and "Traceback" not in out
    assert SECRET not in out and PASSPHRASE not in out
    # nothing traded: the run folder it made is gone (its lines were on the console)
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


@pytest.fixture(scope="module")
def tls_sims():
    from conftest import SimProcess
    good = SimProcess(tls=True, symbols=10, update_rate=10)
    misnamed = SimProcess(tls=True, tls_names="other.example", symbols=10, update_rate=10)
    yield good, misnamed
    good.stop()
    misnamed.stop()


@pytest.mark.parametrize("case", ["no_ca", "other_ca", "other_name"])
def test_run_when_tls_certificate_fails_verification_then_one_line_with_url_and_reason(tmp_path, tls_sims, case):
    import trustme
    good, misnamed = tls_sims
    sim, ca = good, ""
    if case == "other_ca":
        ca = str(tmp_path / "other-ca.pem")
        trustme.CA().cert_pem.write_to_path(ca)
    elif case == "other_name":
        sim, ca = misnamed, misnamed.ca_file
    p = tmp_path / "tls.ini"
    p.write_text(f"[engine]\nvenue = kucoin\nmode = live\nrest_url = {sim.base_url}\nca_file = {ca}\n"
                 f"log_dir = {tmp_path / 'logs'}\n")
    r = run_py(str(p), env={"KUCOIN_API_KEY": "key-1", "KUCOIN_API_SECRET": SECRET,
                            "KUCOIN_API_PASSPHRASE": PASSPHRASE}, timeout=90)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out and SECRET not in out and PASSPHRASE not in out
    failed = [x for x in out.splitlines() if "run: failed: " in x]
    reason = {"no_ca": "unable to get local issuer certificate (trusting the system CA store)",
              "other_ca": f"unable to get local issuer certificate (trusting ca_file {ca})",
              "other_name": "IP address mismatch, certificate is not valid for '127.0.0.1'."}[case]
    assert len(failed) == 1, out
    assert failed[0].endswith(f"run: failed: TLS certificate verification failed for {sim.base_url}: "
                              + reason + ("" if case != "other_name" else f" (trusting ca_file {ca})")), failed


# -- whole runs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_run_when_run_seconds_then_exits_0_with_status_summary_and_report_files(tmp_path, tls):
    ini = sim_ini_with(tmp_path, run_seconds=8, status_interval_s=1, log_dir=tmp_path / "logs",
                       tls=str(tls).lower())
    r = run_py(str(ini), timeout=90)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    if tls:
        assert re.search(r"sim: serving https://127\.0\.0\.1:\d+ ws=wss://127\.0\.0\.1:\d+/endpoint .* ca=/\S+",
                         r.stdout), r.stdout[:2000]
        assert "TLS (ca_file " in r.stdout and "reads and writes keep the GIL" in r.stdout
        assert r.stdout.count("link ") and "(60 symbols, TLS, reads keep the GIL)" in r.stdout
    assert re.search(r"(?m)^\d\d:\d\d:\d\d\.\d{3} status: .* msg/s \| books \d+/\d+ synced", r.stdout)
    assert "run: session summary" in r.stdout
    assert re.search(r"(?m)^session summary \(paper\): tried=\d+ filled=\d+", r.stdout)
    run_dirs = [d for d in (tmp_path / "logs").iterdir() if d.is_dir()]
    assert len(run_dirs) == 1
    assert stat.S_IMODE(run_dirs[0].stat().st_mode) == 0o700
    for f in run_dirs[0].iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
    files = {f.name: f.read_text() for f in run_dirs[0].iterdir() if f.suffix != ".png"}
    assert set(files) >= {"report.log", "journal.jsonl", "engine.log"}
    assert "status: " in files["engine.log"] and "session summary" in files["engine.log"]
    reports = files["report.log"].splitlines()
    journal = [json.loads(x) for x in files["journal.jsonl"].splitlines()]
    assert len(reports) == len(journal)
    for line, j in zip(reports, journal):
        assert f" {j['status']} | corr={j['corr_hex']} | " in line
        assert line not in r.stdout       # the console has the short line, not this one
        if "triangle" not in j:
            continue                      # the STARTUP line: its summary is in engine.log
        short = f" {j['status']:<8s} {'>'.join(j['triangle']):<16s} | bps "
        assert sum(short in x for x in r.stdout.splitlines()) >= 1, short
    # the opportunity journal joins each signalled opportunity with its report in a real run
    # too (the end-to-end harness keeps every record; run.py keeps none, and the join once
    # found nothing there)
    opps = [json.loads(x) for x in files["opportunities.jsonl"].splitlines()]
    traded = {j["corr_hex"]: j for j in journal if "triangle" in j}
    sig = [o for o in opps if o["signalled"]]
    assert traded and sig
    joined = [o for o in sig if o["outcome"] is not None]
    assert len(joined) >= 0.9 * len(sig), (len(joined), len(sig))
    for o in joined:
        assert o["outcome"]["status"] == traded[o["outcome"]["corr"]]["status"]


def test_run_when_sigterm_after_first_status_line_then_exits_0_with_summary(tmp_path):
    ini = sim_ini_with(tmp_path, status_interval_s=1, log_dir=tmp_path / "logs")
    proc = subprocess.Popen([sys.executable, str(RUN), str(ini)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    got_status = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if " status: " in line:
                got_status.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert got_status.wait(60), "no status line within 60 s:\n" + "".join(lines[-30:])
        t_sig = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    out = "".join(lines)
    assert code == 0, out[-3000:]
    after = out[out.index(" status: "):]
    assert "run: stopping (SIGTERM): no new signals" in after
    assert "run: session summary" in after and "session summary (paper)" in after
    assert time.monotonic() - t_sig < 60
    assert list((tmp_path / "logs").rglob("report.log"))


def test_run_when_sigusr1_sigusr2_then_pauses_resumes_and_sighup_ends_cleanly_with_summary(tmp_path):
    """docs/design.md 12, live on the simulator at 3 mispricings a second: SIGUSR1 pauses (the
    status line says PAUSED, its signal count stands still), SIGUSR2 resumes (signals
    again), and SIGHUP, whose default would kill the process, ends the session the clean way:
    summary, exit 0. Every order the simulator executed while the engine was paused idle
    reconciles with the journal (tests/reconcile.py)."""
    from decimal import Decimal
    from urllib.request import urlopen

    from reconcile import balances_total, reconcile, records_from_journal
    text = (ROOT / "sim.ini").read_text()
    text = re.sub(r"(?m)^mispricing_rate\s*=.*$", "mispricing_rate = 3", text, count=1)
    text = re.sub(r"(?m)^mode\s*=.*$", "mode = live", text, count=1)
    text = re.sub(r"(?m)^status_interval_s\s*=.*$", "status_interval_s = 1", text, count=1)
    text = re.sub(r"(?m)^log_dir\s*=.*$", f"log_dir = {tmp_path / 'logs'}", text, count=1)
    ini = tmp_path / "signals.ini"
    ini.write_text(text)
    proc = subprocess.Popen([sys.executable, str(RUN), str(ini)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(x) for x in proc.stdout], daemon=True)
    reader.start()

    def wait(pred, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            time.sleep(0.1)
        raise AssertionError("timed out; output tail:\n" + "".join(lines[-30:]))

    def statuses(start, prefix):
        return [int(m[1]) for x in lines[start:] if f" status: {prefix}" in x
                for m in [re.search(r"\| signals (\d+) ", x)] if m]

    def pause_and_settle():
        proc.send_signal(signal.SIGUSR1)
        wait(lambda: any("run: PAUSED by SIGUSR1" in x for x in lines))
        start = len(lines)
        # two status lines in a row with the same signal count: nothing new, nothing in flight
        return wait(lambda: (lambda c: len(c) >= 3 and c[-1] == c[-2] == c[-3] and c[-1])(
            statuses(start, "PAUSED (SIGUSR1) | ")), 30)

    try:
        wait(lambda: any(" status: " in x and "| signals 0 " not in x for x in lines), 90)
        n_paused = pause_and_settle()
        proc.send_signal(signal.SIGUSR2)
        wait(lambda: any("run: RESUMED by SIGUSR2" in x for x in lines))
        start = len(lines)
        wait(lambda: any(c > n_paused for c in statuses(start, "")), 40)
        pause_and_settle()
        url = wait(lambda: next((m[0] for x in lines for m in [re.search(r"http://127\.0\.0\.1:\d+", x)]
                                 if "sim: serving" in x and m), None))
        orders = json.loads(urlopen(url + "/sim/orders", timeout=10).read())
        after = balances_total(json.loads(urlopen(url + "/sim/balances", timeout=10).read()))
        proc.send_signal(signal.SIGHUP)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    out = "".join(lines)
    assert code == 0, out[-3000:]
    assert "run: stopping (SIGHUP)" in out and "session summary (live)" in out
    assert "state at the end: PAUSED by SIGUSR1" in out
    (journal,) = list((tmp_path / "logs").rglob("journal.jsonl"))
    records = records_from_journal(journal)
    initial = {c: Decimal(str(v)) for c, v in config.load_config(str(ini)).sim["balances"].items()}
    res = reconcile(records, orders, initial, after)
    assert res["executed"] >= 3 and res["records"] >= 2


# -- the shipped ini files ---------------------------------------------------------------------------

SECTION_RE = re.compile(r"^\s*[#;]?\s*\[([A-Za-z_]+)\]\s*$")
KEY_RE = re.compile(r"^\s*([#;])?\s*([a-z_][a-z0-9_]*)\s*=")


def mentioned_keys(path: Path) -> dict:
    """{(section, key): active?} for every `key = value` line, set or commented out (a
    commented-out line documents the option; a commented `# [section]` header counts)."""
    out, sec = {}, None
    for line in path.read_text().splitlines():
        m = SECTION_RE.match(line)
        if m:
            sec = m[1]
            continue
        m = KEY_RE.match(line)
        if m and sec is not None:
            out[(sec, m[2])] = out.get((sec, m[2]), False) or m[1] is None
    return out


@pytest.mark.parametrize("name", ["live.example.ini", "sim.ini"])
def test_ini_when_shipped_then_mentions_every_schema_key_and_no_unknown_key(name):
    got = mentioned_keys(ROOT / name)
    want = {(sec, k) for sec, keys in config.SCHEMA.items() for k in keys}
    assert sorted(want - set(got)) == [], f"{name} does not mention these options"
    assert sorted(k for k, active in got.items() if active and k not in want) == [], f"{name}: unknown keys"


def test_live_example_when_parsed_with_env_secrets_then_live_kucoin_config():
    env = {"KUCOIN_API_KEY": "key-1", "KUCOIN_API_SECRET": SECRET, "KUCOIN_API_PASSPHRASE": PASSPHRASE}
    cfg = config.load_config(str(ROOT / "live.example.ini"), environ=env)
    assert (cfg.venue, cfg.mode) == ("kucoin", "live")
    assert cfg.rest_url == "https://api.kucoin.com"
    assert cfg.secrets.complete and cfg.secrets.api_secret == SECRET
    assert set(cfg.primary_quotes) <= set(cfg.max_start)
    # conservative: one triangle at a time, small stakes, a margin over fees
    assert cfg.slots == 1 and cfg.min_profit_bps >= 10
    assert cfg.max_start["USDT"] <= 50 and cfg.max_start["USDC"] <= 50
    # without the environment it refuses to start and names the variables, nothing else
    with pytest.raises(config.ConfigError) as ei:
        config.load_config(str(ROOT / "live.example.ini"), environ={})
    assert "KUCOIN_API_KEY" in str(ei.value) and "KUCOIN_API_SECRET" in str(ei.value)


def test_live_example_when_read_then_no_secret_value_and_every_option_commented():
    lines = (ROOT / "live.example.ini").read_text().splitlines()
    sec = None
    for i, line in enumerate(lines):
        m = SECTION_RE.match(line)
        if m:
            sec = m[1]
            continue
        m = KEY_RE.match(line)
        if not m:
            continue
        key = m[2]
        if sec == "credentials" and key in ("api_key", "api_secret", "api_passphrase"):
            assert line.split("=", 1)[1].strip() == "", f"a credential value in live.example.ini: {key}"
        above = lines[i - 1].strip() if i else ""
        assert above.startswith("#") and not KEY_RE.match(above), f"option {sec}.{key} has no comment of its own"


# -- the status line's book health (run.book_health) ------------------------------------------

def test_book_health_when_crossed_silent_resyncing_books_then_counted_apart():

    import books
    import run
    st, px, sz = books.alloc_books(8, 4)
    st["status"] = books.BOOK_SYNCED
    px[:, books.SIDE_BID, 0], px[:, books.SIDE_ASK, 0] = 10.0, 11.0
    sz[:, :, 0] = 1.0
    now = 100 * 10 ** 9
    st["recv_ns"] = now - 10 ** 8                       # everyone got a frame 0.1 s ago
    px[1, books.SIDE_BID, 0] = 11.0                      # bid == ask: crossed
    st["recv_ns"][2] = now - 31 * 10 ** 9                # silent 31 s on a delivering link
    st["status"][3] = books.BOOK_RESYNCING
    st["recv_ns"][3] = now - 99 * 10 ** 9                # not synced: not "silent"
    # link 2 = symbols 4..7 (per_link 4): nothing for 40 s anywhere on it (link down, or a
    # quiet market): its books are not silent, the link's own state shows elsewhere
    st["recv_ns"][4:8] = now - 40 * 10 ** 9
    sz[5, books.SIDE_ASK, 0] = 0.0                       # one side empty: not crossed
    px[5, books.SIDE_BID, 0] = 20.0
    assert run.book_health(st, px, sz, now, 30 * 10 ** 9, 4) == (5, 1, 1)
    st["recv_ns"][6] = now - 10 ** 9                     # link 2 delivers again: 3 silent there
    assert run.book_health(st, px, sz, now, 30 * 10 ** 9, 4) == (2, 1, 4)
    assert run.book_health(st, px, sz, now, 60 * 10 ** 9, 4) == (6, 1, 0)

