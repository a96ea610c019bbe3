"""Tests of alerts.py against a local HTTP server (127.0.0.1 only):

- a FAILED / UNKNOWN / KILLED record is posted (generic JSON), a FILLED one is not;
- Telegram's format: POST /bot<token>/sendMessage with chat_id and text; the token is never
  in a log line;
- a webhook that refuses, fails or hangs never blocks the caller: submit returns at once, a
  full queue drops (counted), failures are logged once;
- a link down longer than alert_link_down_s is alerted once, and its end;
- end to end: an engine with alert_url set and a rejected leg 0 (the simulator's fault) posts
  the FAILED line, and the session summary at the end.

Run: python -m pytest -q tests/test_alerts.py
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

import alerts
import pipeline
from report import STATUS_FAILED, STATUS_FILLED
from test_report import flux_record


class Hook:
    """A local webhook: records every POST (path, JSON body); `mode` = ok | fail | hang."""

    def __init__(self, mode="ok"):
        self.got: list[tuple[str, dict]] = []
        self.mode = mode
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                if hook.mode == "hang":
                    time.sleep(3)
                hook.got.append((self.path, body))
                self.send_response(500 if hook.mode == "fail" else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass
        self.srv = HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_port}"
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def wait(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.got):
                return True
            time.sleep(0.02)
        return pred(self.got)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def started(al):
    t = threading.Thread(target=al.run, daemon=True)
    t.start()
    return t


def test_on_record_when_alerting_statuses_then_posted_and_filled_is_not(hook):
    logs = []
    al = alerts.Alerter(hook.url + "/hook", log=logs.append)
    t = started(al)
    filled = flux_record(STATUS_FILLED)
    failed = flux_record(STATUS_FAILED, n_legs=1, error="L0 rejected: 400100 nope (HTTP 200)")
    killed = flux_record(STATUS_FILLED)
    killed.status = "KILLED"          # the kill switch's status (another branch): by name
    for r in (filled, failed, killed):
        al.on_record(r)
    assert hook.wait(lambda g: len(g) >= 2)
    al.stop()
    t.join(5)
    assert [b["status"] for _, b in hook.got] == ["FAILED", "KILLED"]
    path, body = hook.got[0]
    assert path == "/hook" and body["kind"] == "triangle" and body["corr"] == "1f"
    assert "FAILED" in body["text"] and "L0 rejected: 400100" in body["text"]
    assert body["triangle"] == ["USDT", "FLUX", "USDC"]
    assert al.counts == {"sent": 2, "failed": 0, "dropped": 0} and logs == []


def test_telegram_when_configured_then_bot_api_path_and_token_never_logged(hook):
    token = "123456:SeCrEtToKeN"
    logs = []
    al = alerts.Alerter(hook.url, fmt="telegram", chat_id="-1001", token=token, log=logs.append)
    t = started(al)
    al.summary("session summary (paper): tried=3 filled=3")
    assert hook.wait(lambda g: len(g) >= 1)
    hook.mode = "fail"
    al.summary("second")
    assert hook.wait(lambda g: len(g) >= 2)
    al.stop()
    t.join(5)
    path, body = hook.got[0]
    assert path == f"/bot{token}/sendMessage"
    assert body["chat_id"] == "-1001" and "tried=3 filled=3" in body["text"]
    assert al.counts["failed"] == 1 and len(logs) == 1 and "failed (500)" in logs[0]
    assert token not in " ".join(logs) + al.describe()


@pytest.mark.parametrize("mode", ["refused", "hang"])
def test_submit_when_webhook_refuses_or_hangs_then_never_blocks_and_drops_when_full(mode):
    h = Hook("hang") if mode == "hang" else None
    url = h.url if h else "http://127.0.0.1:9/hook"     # port 9: nobody listens
    logs = []
    al = alerts.Alerter(url, log=logs.append, queue_size=8, timeout_s=0.5)
    started(al)
    rec = flux_record(STATUS_FAILED, n_legs=1, error="x")
    t0 = time.perf_counter()
    for _ in range(500):
        al.on_record(rec)
    took = time.perf_counter() - t0
    assert took < 0.5, f"500 submits took {took:.3f}s"
    # a hung webhook holds the sender in its first request: all but the queue's 8 are dropped;
    # a refused one fails fast and the sender drains some meanwhile, but the queue still fills
    assert al.counts["dropped"] >= (500 - 8 - 1 if mode == "hang" else 1)
    time.sleep(1.2)
    assert al.counts["failed"] >= 1 and len(logs) == 1     # one line a minute at most
    al.stop()
    if h:
        h.close()


def test_link_watch_when_short_longer_than_threshold_then_one_alert_and_recovery(hook):
    c = pipeline.alloc_counters()
    C = pipeline.C
    al = alerts.Alerter(hook.url, link_down_s=1.0)
    al.watch_links(c, C, expected=2)
    c[C["link_ups"]] = 2
    al._check_links(100.0)
    c[C["reconnects"]] = 1                 # one link died
    for now in (100.5, 101.0, 101.6, 102.0, 103.0):
        al._check_links(now)
    c[C["link_ups"]] = 3                   # replaced
    al._check_links(104.0)
    al._check_links(105.0)
    texts = [b["text"] for _, b in hook.got]
    assert len(texts) == 2, texts
    assert "1 of 2 links down for 1 s" in texts[0]
    assert "links back up after 4 s" in texts[1]


def test_engine_when_leg0_rejected_then_webhook_gets_failed_line_and_summary(hook):
    from engine_harness import EngineRun
    from test_executor import REJECT_MSG, first_record, plant, wait_synced
    with EngineRun(slots=1, alert_url=hook.url + "/engine", alert_link_down_s=60) as er:
        wait_synced(er)
        er.sim_control(reject_orders={"count": 1, "code": "400100", "msg": REJECT_MSG})
        plant(er)
        rec = first_record(er)
        assert rec.status == STATUS_FAILED
        assert hook.wait(lambda g: any(b.get("status") == "FAILED" for _, b in g))
        t0 = time.monotonic()
        assert er.stop() == 0
        assert time.monotonic() - t0 < 15
    assert hook.wait(lambda g: any(b.get("kind") == "summary" for _, b in g))
    failed = [b for _, b in hook.got if b.get("status") == "FAILED"]
    assert len(failed) == 1 and f"L0 rejected: 400100 {REJECT_MSG}" in failed[0]["error"]
    assert failed[0]["corr"] == f"{rec.corr:x}"
    summary = [b for _, b in hook.got if b.get("kind") == "summary"][0]
    assert "session summary (live)" in summary["text"] and "failed=1" in summary["text"]
    assert all(p == "/engine" for p, _ in hook.got)
    assert np.all(er.sh.counters >= 0)
