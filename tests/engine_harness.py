"""Start the whole engine in-process against its own simulator, for end-to-end tests.

`EngineRun(**engine_overrides, sim=dict(...), risk=dict(...))` writes an ini, starts
run.Engine (which starts the simulator, python -m sim, on a free port; sim={"tls": "true"}
makes it serve https/wss and the engine trust its test CA), and exposes: `records` (report records emitted so far),
`counters()`, `sim_get(path)`, `sim_control(**kw)`, `wait_for(pred, timeout)`, `stop()`
(clean shutdown, returns the exit code), `run_in_thread()` (Engine.run, the main thread's
loop of status lines, pause/resume and the kill switch's trip, on a thread; `join_run()`
returns its exit code). Used by tests/test_hot.py, tests/test_executor.py and the risk tests.
"""
from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import urllib3

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import run  # noqa: E402
from config import parse_config  # noqa: E402

BASE_SIM = {"update_rate": 200, "mispricing_rate": 0.0, "mispricing_bps": 40, "take_delay_ms": 500,
            "symbols": 40, "seed": 11}


def ini_text(engine: dict, sim: dict, credentials: dict | None = None, risk: dict | None = None) -> str:
    lines = ["[engine]"] + [f"{k} = {v}" for k, v in engine.items()]
    lines += ["[sim]"] + [f"{k} = {v}" for k, v in sim.items()]
    lines += ["[risk]"] + [f"{k} = {v}" for k, v in (risk or {}).items()]
    if credentials:
        lines += ["[credentials]"] + [f"{k} = {v}" for k, v in credentials.items()]
    return "\n".join(lines) + "\n"


def external_sim_engine(simproc) -> dict:
    """Engine settings and credentials that trade on an already running simulator
    (tests/conftest.SimProcess) as if it were KuCoin: several sessions, one exchange."""
    return {"venue": "kucoin", "rest_url": simproc.base_url}, {
        "api_key": simproc.api_key, "api_secret": simproc.api_secret,
        "api_passphrase": simproc.api_passphrase}


class EngineRun:
    def __init__(self, sim: dict | None = None, credentials: dict | None = None, risk: dict | None = None,
                 **engine):
        eng = {"venue": "sim", "mode": "live", "status_interval_s": 1, "fill_timeout_ms": 1500}
        eng.update(engine)
        self.tmp = tempfile.TemporaryDirectory()
        eng.setdefault("log_dir", self.tmp.name)
        eng.setdefault("html_report", "false")     # seconds of plotting per test; tested apart
        s = dict(BASE_SIM)
        s.update(sim or {})
        self.ini = ini_text(eng, s, credentials, risk)
        self.cfg = parse_config(self.ini, "test.ini")
        self.run_dir = Path(self.tmp.name) / "run"
        self.lw = run.LogWriter(self.run_dir, echo=False, keep_records=1_000_000)
        self.log_lines: list[str] = []
        self.log_stamps: list[tuple[float, str]] = []    # (time.monotonic(), line)
        orig_log = self.lw.log
        self.lw.log = lambda text: (self.log_lines.append(text), self.log_stamps.append((time.monotonic(), text)),
                                    orig_log(text))
        self.log_thread = threading.Thread(target=self.lw.run, daemon=True)
        self.log_thread.start()
        self.engine = run.Engine(self.cfg, self.lw)
        self.stopped = False
        try:
            self.engine.start()
        except BaseException:
            self.stop()
            raise
        # the simulator's own endpoints, over TLS too when [sim] tls = true (its test CA)
        ca = getattr(self.engine, "ca_file", "")
        self.http = urllib3.PoolManager(ca_certs=ca) if ca else urllib3.PoolManager()

    @property
    def sh(self):
        return self.engine.sh

    @property
    def records(self):
        return list(self.lw.records)

    def counters(self) -> dict:
        import pipeline
        return {k: int(v) for k, v in zip(pipeline.HOT_COUNTERS, self.sh.counters)}

    def sim_get(self, path: str):
        r = self.http.request("GET", self.sh.rest_url + path)
        return json.loads(r.data)

    def sim_control(self, **kw):
        r = self.http.request("POST", self.sh.rest_url + "/sim/control", body=json.dumps(kw).encode(),
                              headers={"Content-Type": "application/json"})
        out = json.loads(r.data)
        assert out.get("ok"), out
        return out

    def wait_for(self, pred, timeout: float = 20.0, step: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(step)
        return pred()

    def run_in_thread(self) -> None:
        self.run_code = None
        self.run_error = ""

        def go():
            try:
                self.run_code = self.engine.run()
            except BaseException as e:          # shown by the test that reads run_code
                import traceback
                self.run_error = "".join(traceback.format_exception(e))
                raise
        self.run_thread = threading.Thread(target=go, name="engine-run", daemon=True)
        self.run_thread.start()

    def join_run(self, timeout: float = 60.0):
        self.run_thread.join(timeout)
        return self.run_code

    def books_synced(self) -> int:
        import books
        return int((self.sh.book_state["status"] == books.BOOK_SYNCED).sum())

    def stop(self) -> int:
        if self.stopped:
            return 0
        self.stopped = True
        code = 0
        try:
            if getattr(self.engine, "threads", None):
                code = self.engine.shutdown()
        finally:
            if self.engine.sim_proc is not None and self.engine.sim_proc.poll() is None:
                self.engine.sim_proc.terminate()
                self.engine.sim_proc.wait(timeout=5)
            self.lw.stop()
            self.log_thread.join(timeout=5)
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.tmp.cleanup()
