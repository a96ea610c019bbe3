"""Shared pytest fixtures: a running simulator (`python -m sim`) in a subprocess on a free port.

Fixtures (all yield a `SimProcess`):
  sim          module-scoped: one simulator per test module, default market (60 symbols,
               seed 1). Tests that change faults should call sim.control(reset_faults=True)
               when done, or use sim_fn.
  sim_fn       function-scoped: a fresh simulator for one test (fault tests, exact state).
  sim_factory  function-scoped factory: sim_factory(**cli) starts a simulator with extra
               CLI flags (underscores become dashes: update_rate=0 -> --update-rate 0);
               every process it starts is stopped at teardown.

The default simulator is KuCoin-like in its limits too (30 new WS connections per minute,
VIP0 REST quotas); start one with sim_factory(ws_connects_per_min=0) for tests that
reconnect a lot. For a module-scoped simulator with other flags, `from conftest import
SimProcess` and build your own fixture (tests/test_sim.py does).

SimProcess(**cli) attributes and helpers:
  base_url ("http://127.0.0.1:PORT", or "https://..." with tls=True), port, api_key,
  api_secret, api_passphrase, ca_file (tls=True: the simulator's test CA, PEM; else ""),
  ssl_context (tls=True: a context trusting ca_file; else None),
  control(**kw) -> dict     POST /sim/control (see sim/server.py's docstring for the keys);
                            raises AssertionError when the sim answers ok=false
  get(path) -> JSON         GET base_url + path (unsigned: public and /sim/ endpoints)
  post(path, body) -> JSON  POST JSON, unsigned (bullet-public)
  stop()                    SIGTERM, then kill after 5 s
Credentials are generated per process; sign private requests with your own signer
(docs/kucoin.md 1.2: base64 HMAC-SHA256 of ts+METHOD+path?query+body; v3 passphrase HMAC).
Only loopback is used; the simulator reads nothing outside the repository.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402

kernelcache.use_source_keyed_cache()   # before any test imports numba (kernelcache.py)
LINE_RE = re.compile(r"(https?)://127\.0\.0\.1:(\d+)")
CA_RE = re.compile(r" ca=(\S+)")


class SimProcess:
    def __init__(self, **cli):
        self.api_key = "k" + secrets.token_hex(8)
        self.api_secret = secrets.token_hex(16)
        self.api_passphrase = "p" + secrets.token_hex(6)
        args = [sys.executable, "-m", "sim", "--port", "0", "--api-key", self.api_key,
                "--api-secret", self.api_secret, "--api-passphrase", self.api_passphrase]
        cli.setdefault("seed", 1)
        for k, v in cli.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                args.append(flag)
            elif v is not False and v is not None:
                args += [flag, str(v)]
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        line = self.proc.stdout.readline()
        m = LINE_RE.search(line)
        if not m:
            self.stop()
            raise RuntimeError(f"sim did not start: {line!r} {self.stderr()}")
        self.start_line = line.strip()
        self.port = int(m.group(2))
        self.base_url = f"{m.group(1)}://127.0.0.1:{self.port}"
        ca = CA_RE.search(line)
        self.ca_file = ca.group(1) if ca else ""
        self.ssl_context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        deadline = time.monotonic() + 10
        while True:
            try:
                self.get("/api/v1/timestamp")
                break
            except urllib.error.URLError as e:
                if isinstance(e.reason, ssl.SSLCertVerificationError):
                    break           # serving TLS under names the test chose (tls_names)
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)
            except ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(self.base_url + path, timeout=10, context=self.ssl_context) as r:
            return json.loads(r.read())

    def post(self, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(self.base_url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl_context) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def control(self, **kw) -> dict:
        out = self.post("/sim/control", kw)
        assert out.get("ok"), out
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def sim():
    s = SimProcess()
    yield s
    s.stop()


@pytest.fixture
def sim_fn():
    s = SimProcess()
    yield s
    s.stop()


@pytest.fixture
def sim_factory():
    started = []

    def start(**cli) -> SimProcess:
        s = SimProcess(**cli)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
