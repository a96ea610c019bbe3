"""The host's floor for tick-to-fire: a do-nothing client with the engine's own I/O.

Not a test. Run: python profiles/probe_floor.py BENCH.ini [--seconds 40] [--rate 20]
                 [--out profiles/results/floor_<tag>.json]
(profiles/bench_latency.py runs it interleaved with the engine: floor, engine, floor, engine.)

What it is: the least any client on this host, with these links and settings, can take
from a frame's arrival to an order's bytes on the wire. It starts the same simulator the
engine would (run.start_simulator, from the same ini, so the same market, update rate and
mispricing rate load the same loopback), opens the same public level2 links (maint.open_link,
the universe's symbols), reads them with the engine's receive path (wsread.FrameReader: one
GIL-holding recv per read), polls epoll the same way (blocking, or busy polling for
busy_poll_us after each event), runs pinned to the engine's CPUs with its switch interval,
and keeps a kept-alive order connection (orderwire.OrderConn, the engine's) with a signed
request built in advance. On the first read of a public link after 1/rate seconds it writes
that request: no parse, no book, no evaluation. It writes it as the engine writes leg 0:
with the kernel's write (orderkern.wire_write: the idle peek and one non-blocking send, or
SSL_write over TLS with held I/O; leg0_send = kernel), else (leg0_send = python, tls_io =
ssl) through OrderConn.send. It records read receipt (stamped right after the read, as
hot.HotLoop._drain does) -> request bytes written (stamped right after the write, as the
engine's leg 0), then, off the measured path, reads the answer, cuts the frames it read
and builds the next request. Requests go to the order-test endpoint (validated, never
matched: the same bytes and the same wake of the venue's thread as a real order, and no
balance changes). With warm_interval_us it rebuilds its request while idle, as the engine
keeps its order path warm.

Prints and writes p50/p90/p99/p99.9/max of floor_us (read receipt -> bytes written), with
the machine description (hostinfo.machine), and write_us: the write alone (stamped just
before the jitted call -> after the write; the engine's "L0 signed -> sent").

--delays-us 0,45 waits (spinning) that long between the read and the write, taking the
delays in turn order by order, and reports both measures per delay (by_delay): what the same
write costs when it leaves later after a frame, as the engine's does after parsing and
evaluating (profiles/README.md, "The floor and the send"). The plain floor is delay 0.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets as pysecrets
import select
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import kucoin  # noqa: E402
import maint  # noqa: E402
import orderkern  # noqa: E402
import run  # noqa: E402
import universe  # noqa: E402
import wsread  # noqa: E402
from config import load_config  # noqa: E402
from hostinfo import machine  # noqa: E402
from orderwire import OrderConn, ResponseLost  # noqa: E402
from signer import Signer  # noqa: E402

PATH_TEST = b"/api/v1/hf/orders/test"


def stats(vals: list[float]) -> dict:
    if not vals:
        return {"n": 0}
    s = sorted(vals)

    def p(q):
        return s[min(len(s) - 1, max(0, int(round(q / 100.0 * len(s) + 0.5)) - 1))]
    return {"n": len(s), "p50": p(50), "p90": p(90), "p99": p(99), "p99.9": p(99.9), "max": s[-1]}


class Floor:
    def __init__(self, cfg, seconds: float, rate: float, delays_us=(0.0,)):
        self.cfg = cfg
        self.seconds = seconds
        self.delays_ns = [int(d * 1000) for d in delays_us]
        self.interval_ns = int(1e9 / rate)
        self.log_lines: list[str] = []
        creds = {"key": "sim-" + pysecrets.token_hex(8), "secret": pysecrets.token_hex(16),
                 "passphrase": pysecrets.token_hex(8)}
        self.sim_proc, self.rest_url, ca = run.start_simulator(cfg, creds, self.log_lines.append)
        ca = ca or cfg.ca_file             # over TLS ([sim] tls = true) the simulator's test CA
        self.signer = Signer(creds["key"], creds["secret"], creds["passphrase"], 3)
        self.client = kucoin.KucoinClient(self.rest_url, self.signer, ca_file=ca)
        self.client.sync_clock()
        syms = self.client.symbols()
        only = set(cfg.symbols) if cfg.symbols else None
        enabled = [d for d in syms if d.get("enableTrading") and (only is None or d["symbol"] in only)]
        self.uni = universe.Universe(enabled, cfg.primary_quotes, {}, cfg.default_taker_fee)
        sym0 = self.uni.symbols[0]
        rules = self.uni.rules[0]
        # a small, valid buy of the first symbol: what matters is its size on the wire
        self.body_fmt = ('{"clientOid":"fl%%d","side":"buy","symbol":"%s","type":"market","funds":"%s"}'
                         % (sym0, rules.quote_inc.to_str(rules.quote_min_u or 10 * rules.quote_inc.inc_units)))
        self.conn = OrderConn(self.rest_url, timeout_s=5.0, ca_file=ca)
        self.cell = orderkern.cell()               # the engine's fd cell (OrderConn.attach_kernel)
        self.fns = orderkern.tls_fns()
        if cfg.leg0_send == "kernel":
            self.conn.attach_kernel(self.cell)
        self.peek = np.zeros(1, np.uint8)
        self.stamp = np.zeros(1, np.int64)
        # compiled (or loaded) now, not at a fire
        orderkern.wire_write(-1, 0, self.peek, 1, self.peek, self.fns, self.stamp)
        self.conn.connect()
        self.n_req = 0
        self.req = self._build()
        ids = itertools.count(1)
        self.links = [maint.open_link(self.client, "public", part, ids, ca_file=ca)
                      for part in maint.plan_links(self.uni.symbols)]

    def _build(self) -> bytes:
        self.n_req += 1
        body = (self.body_fmt % self.n_req).encode()
        self.req_ts = time.monotonic()
        req = self.conn.post_request(self.signer, PATH_TEST,
                                     time.time_ns() // 1_000_000 + self.client.clock_offset_ms, body)
        self.req_arr = np.frombuffer(req, np.uint8).copy()   # (the engine's ok_req row)
        # the write's arguments as plain values, off the measured path (this loop is the
        # connection's only user: it changes only in _build's caller, after a lost answer)
        self.fd, self.ssl, self.n = int(self.cell["fd"][0]), int(self.cell["ssl"][0]), len(req)
        return req

    def run(self) -> dict:
        cfg = self.cfg
        if cfg.cpus:
            os.sched_setaffinity(0, set(cfg.cpus))
        sys.setswitchinterval(cfg.switch_interval_us / 1e6)
        ep = select.epoll()
        readers = {}
        for ln in self.links:
            rd = wsread.FrameReader(ln.ws.sock)
            rd.feed(b"".join(ln.ws.frame_buffer.recv_buffer))
            ln.ws.frame_buffer.recv_buffer = []
            readers[ln.fd] = (ln, rd)
            ep.register(ln.fd, select.EPOLLIN)
        wire_write, peek, fns, stamp = orderkern.wire_write, self.peek, self.fns, self.stamp
        req_arr = self.req_arr
        spin_ns = int(cfg.busy_poll_us * 1000)
        warm_ns = int(cfg.warm_interval_us * 1000)
        floor_us, reads, last_fire, last_event, last_warm = [], 0, 0, 0, 0
        delays = self.delays_ns
        by_delay = {d: ([], []) for d in delays}       # delay ns -> (floor_us, write_us)
        t_end = time.monotonic() + self.seconds
        while time.monotonic() < t_end:
            now_ns = time.monotonic_ns()
            if spin_ns and now_ns - last_event < spin_ns:
                timeout = 0.0
            else:
                timeout = 0.05 if not warm_ns else warm_ns / 1e9
            events = ep.poll(timeout)
            if events:
                last_event = time.monotonic_ns()
            for fd, _ev in events:
                ln, rd = readers[fd]
                while True:
                    n = rd.fill()
                    recv_ns = time.monotonic_ns()
                    if n <= 0:
                        break
                    reads += 1
                    if recv_ns - last_fire >= self.interval_ns:
                        delay = delays[len(floor_us) % len(delays)]
                        if delay:
                            while time.monotonic_ns() - recv_ns < delay:
                                pass
                        # the measured path: one jitted call, stamped inside after the write,
                        # as the chunk kernel writes and stamps leg 0 (orderkern.send_built)
                        pre_ns = time.monotonic_ns()
                        wrote = wire_write(self.fd, self.ssl, req_arr, self.n, peek, fns, stamp) \
                            if self.fd >= 0 else 0
                        sent_ns = int(stamp[0])
                        if wrote > 0:
                            self.conn.kernel_sent(self.fd, wrote, self.req, sent_ns)
                        else:       # not written (leg0_send = python, tls_io = ssl, stale)
                            sent_ns = self.conn.send(self.req)
                        last_fire = recv_ns
                        floor_us.append((sent_ns - recv_ns) / 1e3)
                        by_delay[delay][0].append(floor_us[-1])
                        by_delay[delay][1].append((sent_ns - pre_ns) / 1e3)
                        try:
                            self.conn.read_response()
                        except ResponseLost:
                            self.conn.connect()
                        self.req = self._build()
                        req_arr = self.req_arr
                    pos = 0
                    while True:
                        st, _b0, _s, e = wsread.next_frame(rd.buf, pos, rd.blen)
                        if st != wsread.F_OK:
                            break
                        pos = int(e)
                    rd.consume(pos)
                    if n < wsread.CHUNK:
                        break
            now = time.monotonic()
            for ln, _rd in readers.values():   # the venue closes a link that sends nothing
                if now >= ln.next_ping_at:
                    ln.ws.send('{"id":"p%d","type":"ping"}' % time.monotonic_ns())
                    ln.next_ping_at = now + ln.ping_interval_s
            if now - self.req_ts > 1.0:          # a signature older than 5 s is refused
                self.req = self._build()
                req_arr = self.req_arr
            elif warm_ns and not events and time.monotonic_ns() - last_warm > warm_ns:
                last_warm = time.monotonic_ns()
                self.req = self._build()
                req_arr = self.req_arr
        res = {"floor_us": stats(by_delay[delays[0]][0]), "write_us": stats(by_delay[delays[0]][1]),
               "reads": reads, "fires": len(floor_us)}
        if len(delays) > 1:
            res["by_delay"] = {f"{d / 1000:g}": {"floor_us": stats(f), "write_us": stats(w)}
                               for d, (f, w) in by_delay.items()}
        return res

    def close(self) -> None:
        for ln in self.links:
            try:
                ln.ws.close(timeout=0)
            except Exception:
                pass
        self.conn.close()
        if self.sim_proc is not None:
            self.sim_proc.terminate()
            self.sim_proc.wait(timeout=10)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ini", help="the ini the engine runs with (bench_latency writes one)")
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--rate", type=float, default=20, help="orders written per second (at most)")
    ap.add_argument("--delays-us", default="0",
                    help="comma-separated waits between read and write, taken in turn (docstring)")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    cfg = load_config(a.ini)
    try:
        delays = [float(x) for x in a.delays_us.split(",")]
        if not delays or min(delays) < 0:
            raise ValueError
    except ValueError:
        ap.error(f"--delays-us {a.delays_us!r}: expected comma-separated numbers >= 0")
    fl = Floor(cfg, a.seconds, a.rate, delays)
    try:
        res = fl.run()
    finally:
        fl.close()
    res.update({"machine": machine(), "ini": Path(a.ini).name, "cpus": list(cfg.cpus),
                "busy_poll_us": cfg.busy_poll_us, "warm_interval_us": cfg.warm_interval_us,
                "leg0_send": cfg.leg0_send})
    print(f"probe_floor: {res['fires']} orders over {res['reads']} reads")
    for d, r in (res.get("by_delay") or {f"{delays[0]:g}": res}).items():
        for name in ("floor_us", "write_us"):
            s = r[name]
            print(f"  delay {d} us: {name[:-3]} (us) "
                  + " ".join(f"{k}={s[k]:.1f}" for k in ("p50", "p90", "p99", "p99.9", "max") if k in s))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
