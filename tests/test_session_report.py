"""Tests of session_report.py (and `python report.py`): the HTML page of a recorded session.

tests/data/session-sim/ is a real paper session against the simulator (run.py sim.ini, its
journal.jsonl and summary.json as written, trimmed to its first records). The page must
hold its plots as PNG images, the session's counts and its PnL total in the reference
currency; statuses this code does not know and FOLLOWUP records must not break it;
`python report.py runs/` aggregates sessions. matplotlib never loads with the engine.

Run: python -m pytest -q tests/test_session_report.py
"""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import session_report

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "session-sim"


def report_py(*args):
    return subprocess.run([sys.executable, str(ROOT / "report.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def pngs(page: str) -> list:
    from PIL import Image
    out = []
    for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.load()
        out.append(img.size)
    return out


def journal(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / "journal.jsonl").read_text().splitlines()]


def test_report_py_when_recorded_session_then_page_with_plots_counts_and_pnl(tmp_path):
    run = tmp_path / "20261203-120000"
    shutil.copytree(FIXTURE, run)
    r = report_py(run)
    assert r.returncode == 0, r.stderr
    page = (run / "summary.html").read_text()
    assert (run / "summary.html").stat().st_mode & 0o777 == 0o600
    sizes = pngs(page)
    assert len(sizes) >= 5, sizes            # PnL, outcomes, histograms, stages, triangles
    assert all(w >= 400 and h >= 150 for w, h in sizes), sizes
    for title in ("PnL", "Outcomes", "Latency", "Best and worst triangles", "Opportunities seen vs caught"):
        assert f"<h2>{title}</h2>" in page
    recs = journal(run)
    facts = json.loads((run / "summary.json").read_text())
    rates = facts["rates_to_ref"]
    total = sum(x["profit"] * rates[x["triangle"][0]] for x in recs if x.get("profit") is not None)
    import console
    assert f"PnL total in USDT</td><td>{session_report._signed(total)}" in page
    n_filled = sum(x["status"] == "FILLED" for x in recs)
    assert f"<tr><td>FILLED</td><td>{n_filled}</td></tr>" in page
    assert "Paper and simulator PnL are not live PnL" in page
    assert "no opportunity journal" in page
    assert console.plain(total, 6, sign=True) in page


def test_session_data_when_no_summary_json_then_rates_from_fills_and_said_so(tmp_path):
    run = tmp_path / "r"
    shutil.copytree(FIXTURE, run)
    (run / "summary.json").unlink()
    d = session_data = session_report.session_data(run)
    assert "journal's own fills" in d["rates_source"]
    priced = [x for x in session_data["records"] if x["profit_ref"] is not None]
    assert len(priced) >= len(d["records"]) // 2
    usdt = [x for x in d["records"] if x["start"] == "USDT" and x["profit"] is not None]
    assert all(x["profit_ref"] == x["profit"] for x in usdt)


def test_page_when_unknown_statuses_followup_and_opportunities_then_rendered(tmp_path):
    run = tmp_path / "r"
    shutil.copytree(FIXTURE, run)
    recs = journal(run)
    extra = [dict(recs[0], status="KILLED", reason="kill switch", corr=1),
             dict(recs[1], status="UNWIND_FAILED", error="unwind rejected", corr=2),
             {"status": "FOLLOWUP", "ts_ms": recs[-1]["ts_ms"], "corr": 3, "triangle": recs[0]["triangle"],
              "found": True, "changes": [[1.5, recs[0]["triangle"][0]]], "leg": {}}]
    with open(run / "journal.jsonl", "a") as f:
        for x in extra:
            f.write(json.dumps(x) + "\n")
        f.write('{"status": "FILLED", "cut by a cra')          # a torn last line
    with open(run / "opportunities.jsonl", "w") as f:
        for i, x in enumerate(recs):
            f.write(json.dumps({"ts_ms": x["ts_ms"], "caught": i % 2 == 0}) + "\n")
    out = session_report.write_session(run)
    page = out.read_text()
    assert "<td>KILLED</td><td>1</td>" in page and "<td>UNWIND_FAILED</td><td>1</td>" in page
    assert "no opportunity journal" not in page and len(pngs(page)) >= 6


def test_report_py_when_runs_folder_then_index_of_every_session_and_one_curve(tmp_path):
    runs = tmp_path / "runs"
    for name in ("20261203-110000", "20261203-120000"):
        shutil.copytree(FIXTURE, runs / name)
    (runs / "not-a-run").mkdir()
    r = report_py(runs)
    assert r.returncode == 0, r.stderr
    page = (runs / "index.html").read_text()
    assert page.count('summary.html">2026') == 2
    assert len(pngs(page)) == 1
    assert (runs / "20261203-110000" / "summary.html").exists()
    table = [x for x in r.stdout.splitlines() if x.startswith("2026")]
    assert len(table) == 2 and "USDT" in table[0]


def test_report_py_when_no_argument_or_bad_folder_then_usage_and_exit_2(tmp_path):
    r = report_py()
    assert r.returncode == 2 and "usage: python report.py RUN_DIR" in r.stderr
    r = report_py(tmp_path)
    assert r.returncode == 2 and "neither a run folder" in r.stderr


def test_engine_modules_when_imported_then_matplotlib_and_metrics_not_loaded():
    code = ("import sys, run, hot, executor, report, console, kernelcache; "
            "bad = [m for m in ('matplotlib', 'session_report', 'prometheus_client') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
