"""Alerts to a webhook: report lines of chosen statuses, a link down too long, the session summary.

Owns: `Alerter` (a bounded queue, the sender loop, the link watch) and the two message
formats: generic JSON (`alert_format = json`: POST alert_url with {"kind", "text", "ts", and
the record's fields}) and Telegram's bot API (`alert_format = telegram`: POST
{alert_url}/bot<token>/sendMessage with {"chat_id", "text"}; alert_url is
https://api.telegram.org, the token comes from the environment variable alert_token_env).

Threads: run.py starts `Alerter.run` on its own thread ("alerts"; docs/design.md 11). The log
thread calls `on_record` for every report record it has written, the main thread `summary`
at the end; both only put on the queue (`put_nowait`: when the queue is full the alert is
dropped and counted, never waited for). The alert thread sends, with a short timeout, and
once a second compares the links up (hot counters `link_ups` - `reconnects`, read-only) with
the links the engine keeps: a shortfall that lasts `alert_link_down_s` is alerted once, and
its end too. A webhook that fails, hangs or refuses costs that thread only: trading never
waits for it (tests/test_alerts.py).

Secrets: the Telegram token is in the request path only; every log line names the webhook
by `describe()` (scheme, host, port), never its path.
"""
from __future__ import annotations

import json
import queue
import time
import urllib.error
import urllib.parse
import urllib.request

DROPPED, SENT, FAILED = "dropped", "sent", "failed"


class Alerter:
    def __init__(self, url: str, fmt: str = "json", chat_id: str = "", token: str = "",
                 statuses=("FAILED", "UNKNOWN", "KILLED"), link_down_s: float = 30.0,
                 log=print, queue_size: int = 64, timeout_s: float = 3.0, name: str = "triarb"):
        self.url = url.rstrip("/") if fmt == "telegram" else url
        self.fmt = fmt
        self.chat_id = chat_id
        self.token = token
        self.statuses = {s.upper() for s in statuses}
        self.link_down_s = link_down_s
        self.log = log
        self.timeout_s = timeout_s
        self.name = name
        self.q: queue.Queue = queue.Queue(maxsize=queue_size)
        self.counts = {SENT: 0, FAILED: 0, DROPPED: 0}
        self._stop = False
        self._last_error_log = 0.0
        # link watch (set by watch_links; read on the alert thread)
        self.counters = None
        self.C = None
        self.links_expected = 0
        self._short_since = None
        self._short_alerted = False

    def describe(self) -> str:
        p = urllib.parse.urlsplit(self.url)
        return f"{self.fmt} webhook {p.scheme}://{p.hostname}" + (f":{p.port}" if p.port else "")

    # -- producers (never block) ------------------------------------------------------------
    def submit(self, kind: str, text: str, fields: dict | None = None) -> bool:
        try:
            self.q.put_nowait((kind, text, fields or {}))
            return True
        except queue.Full:
            self.counts[DROPPED] += 1
            return False

    def on_record(self, rec) -> None:
        """The log thread: a report record of an alerting status becomes an alert."""
        status = str(getattr(rec, "status", "") or "")
        if status.upper() not in self.statuses:
            return
        import console
        fields = {"status": status, "corr": f"{getattr(rec, 'corr', 0):x}",
                  "triangle": list(getattr(rec, "triangle", ()) or ()),
                  "profit": getattr(rec, "profit", None),
                  "error": getattr(rec, "error", "") or getattr(rec, "reason", "")}
        self.submit("triangle", console.short_line(rec), fields)

    def summary(self, text: str) -> None:
        self.submit("summary", text)

    def watch_links(self, counters, C, expected: int) -> None:
        self.counters, self.C, self.links_expected = counters, C, expected

    # -- the alert thread --------------------------------------------------------------------
    def run(self) -> None:
        while True:
            try:
                item = self.q.get(timeout=1.0)
            except queue.Empty:
                item = None
            if item is None:
                if self._stop:
                    return
                self._check_links(time.monotonic())
                continue
            if item[0] == "stop":
                self._stop = True
                continue
            self._send(*item)
            self._check_links(time.monotonic())

    def stop(self) -> None:
        """Ask the thread to send what is queued, then return (join it with a timeout)."""
        try:
            self.q.put(("stop", "", {}), timeout=1.0)
        except queue.Full:
            self._stop = True

    def _check_links(self, now: float) -> None:
        if self.counters is None or not self.links_expected:
            return
        up = int(self.counters[self.C["link_ups"]]) - int(self.counters[self.C["reconnects"]])
        short = self.links_expected - up
        if short > 0:
            if self._short_since is None:
                self._short_since = now
            elif not self._short_alerted and now - self._short_since >= self.link_down_s:
                self._short_alerted = True
                self._send("link", f"{short} of {self.links_expected} links down for "
                           f"{now - self._short_since:.0f} s", {"links_down": short})
        else:
            if self._short_alerted:
                self._send("link", f"links back up after {now - self._short_since:.0f} s",
                           {"links_down": 0})
            self._short_since = None
            self._short_alerted = False

    def _send(self, kind: str, text: str, fields: dict) -> None:
        body, url = self.request(kind, text, fields)
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                r.read()
            self.counts[SENT] += 1
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.counts[FAILED] += 1
            now = time.monotonic()
            if now - self._last_error_log > 60:       # one line a minute at most
                self._last_error_log = now
                why = getattr(e, "code", None) or getattr(e, "reason", None) or e.__class__.__name__
                self.log(f"alerts: {self.describe()} failed ({why}); {self.counts[FAILED]} failed so far")

    def request(self, kind: str, text: str, fields: dict) -> tuple[bytes, str]:
        """(JSON body, URL) of one alert in the configured format."""
        full = f"[{self.name}] {text}"
        if self.fmt == "telegram":
            body = {"chat_id": self.chat_id, "text": full[:4000], "disable_web_page_preview": True}
            return json.dumps(body).encode(), f"{self.url}/bot{self.token}/sendMessage"
        body = {"kind": kind, "text": full, "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        body.update(fields)
        return json.dumps(body, default=str).encode(), self.url
