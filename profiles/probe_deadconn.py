"""What an order's send costs on a live connection, and on one the venue has closed, plain and TLS.

Run:  python profiles/probe_deadconn.py [--n 40]

Starts the simulator twice (`python -m sim`, then `python -m sim --tls`) and, on an
orderwire.OrderConn as the executors use it, times `send()` of a signed order to the
order-test endpoint (docs/kucoin.md 5.3) from the call to the last byte written:

  live          the kept-alive connection is open (the normal fire: sign -> sent's send part)
  dead          the simulator closed every kept-alive connection (close_rest_conns) and the
                FIN has arrived: send() finds the socket readable, reconnects inline (TCP,
                and TLS with the session resumed from the last connection's ticket), then
                writes: what a fire pays when the executor's idle check has not yet
                replaced the connection (it looks every 0.25 s, executor.TEND_INTERVAL_S)
  dead_full     the same with no session to resume (a full TLS handshake)
  refresh       OrderConn.refresh() after the close: the replacement the idle executor makes
                off the order path (connect, TLS handshake, the warm-up GET), for scale

TLS variants: tls_io = held (SSL_write with the GIL held, tlsio.Held) and tls_io = ssl.
This process is pinned to CPU 0 and the simulator to CPU 1 (as bench_latency.py does).
Each sample sleeps 2 ms before the send so that the path is not warm from the previous
one (as in a live session, where fires are rare). Prints p50/p90/max in us and writes
profiles/results/probe_deadconn.json. Not a test.

A connection the venue dropped without a FIN (or whose FIN is still in flight) looks open:
the order is written into it and the response never comes, so the executor's read raises
ResponseLost and it asks REST for the order by clientOid (never resending blind; see
orderwire.py). That case costs a failed leg, not microseconds, and is not timed here.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
import ssl
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)

from hostinfo import machine  # noqa: E402
from orderwire import OrderConn  # noqa: E402
from signer import Signer  # noqa: E402


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


class Sim:
    def __init__(self, tls: bool, cpus: str):
        self.key, self.secret, self.pw = "k" + secrets.token_hex(6), secrets.token_hex(16), secrets.token_hex(6)
        args = [sys.executable, "-m", "sim", "--port", "0", "--symbols", "10", "--update-rate", "5",
                "--vip", "12", "--api-key", self.key, "--api-secret", self.secret, "--api-passphrase", self.pw]
        if tls:
            args.append("--tls")
        if cpus:
            args += ["--cpus", cpus]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"(https?://127\.0\.0\.1:\d+)", line)
        self.url = m[1]
        ca = re.search(r" ca=(\S+)", line)
        self.ca = ca[1] if ca else ""
        self.ctx = ssl.create_default_context(cafile=self.ca) if self.ca else None
        time.sleep(0.3)

    def control(self, **kw):
        req = urllib.request.Request(self.url + "/sim/control", data=json.dumps(kw).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req, context=self.ctx).read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def order(c: OrderConn, s: Signer, i: int) -> bytes:
    body = b'{"clientOid":"pd%d%s","side":"buy","symbol":"BTC-USDT","type":"market","funds":"10"}' % (
        i, secrets.token_hex(4).encode())
    return c.post_request(s, b"/api/v1/hf/orders/test", int(time.time() * 1000), body)


def timed_send(c, req) -> float:
    t0 = time.perf_counter_ns()
    c.send(req)
    return (time.perf_counter_ns() - t0) / 1000


def wait_stale(c, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not c.wire.stale() and time.monotonic() < deadline:
        time.sleep(0.001)


def probe(sim: Sim, held: bool, n: int) -> dict:
    s = Signer(sim.key, sim.secret, sim.pw, 3)
    c = OrderConn(sim.url, ca_file=sim.ca, tls_held=held)
    c.connect()
    out = {"live": [], "dead": [], "dead_full": [], "refresh": []}
    for i in range(n):
        req = order(c, s, i)
        time.sleep(0.002)
        out["live"].append(timed_send(c, req))
        c.read_response()
    for i in range(n):
        sim.control(close_rest_conns=True)
        wait_stale(c)
        req = order(c, s, 1000 + i)
        time.sleep(0.002)
        out["dead"].append(timed_send(c, req))
        c.read_response()
    if c.tls:
        for i in range(n):
            sim.control(close_rest_conns=True)
            wait_stale(c)
            c.session = None
            req = order(c, s, 2000 + i)
            time.sleep(0.002)
            out["dead_full"].append(timed_send(c, req))
            c.read_response()
    resumed = 0
    for i in range(n):
        sim.control(close_rest_conns=True)
        wait_stale(c)
        assert c.wire.stale()
        t0 = time.perf_counter_ns()
        assert c.refresh()
        out["refresh"].append((time.perf_counter_ns() - t0) / 1000)
        resumed += c.wire.resumed
        c.send(order(c, s, 3000 + i))     # the simulator sees a request on it (close_rest_conns)
        c.read_response()
    c.close()
    out_stats = {k: {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "max": max(v)} for k, v in out.items() if v}
    out_stats["refresh"]["resumed"] = resumed
    return out_stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--cpu", default="0", help="pin this process ('' = no pinning)")
    ap.add_argument("--sim-cpus", default="1", help="pin the simulator ('' = no pinning)")
    a = ap.parse_args()
    if a.cpu:
        os.sched_setaffinity(0, {int(a.cpu)})
    res = {}
    for tls in (False, True):
        sim = Sim(tls, a.sim_cpus)
        try:
            if tls:
                res["tls_held"] = probe(sim, True, a.n)
                res["tls_ssl"] = probe(sim, False, a.n)
            else:
                res["plain"] = probe(sim, True, a.n)
        finally:
            sim.stop()
    print(f"{'connection':10s} {'case':10s} {'n':>4s} {'p50 us':>9s} {'p90 us':>9s} {'max us':>9s}")
    for way, r in res.items():
        for case, v in r.items():
            print(f"{way:10s} {case:10s} {v['n']:4d} {v['p50']:9.1f} {v['p90']:9.1f} {v['max']:9.1f}")
    out = ROOT / "profiles" / "results" / "probe_deadconn.json"
    out.write_text(json.dumps({"machine": machine(), "n": a.n, "send_us": res}, indent=1))
    print(f"probe_deadconn: wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
