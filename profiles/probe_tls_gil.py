"""What one TLS read costs on the hot thread, four ways, with and without a thread that wants the GIL.

Run:  python profiles/probe_tls_gil.py [--records 4000] [--size 300] [--per-read 1]

A TLS server in a child process (ssl module, a trustme certificate) sends `--records`
application-data records of `--size` bytes each (one sendall per record, as the simulator
writes one WebSocket frame per record) and then waits; the client lets them all arrive in
its socket buffer, then times each read (`--per-read` records per timed read) by:

  plain    libc recv through ctypes.PyDLL on a plain TCP connection (wsread.py's path), the
           same bytes unencrypted: the baseline
  held     SSL_read through ctypes.PyDLL on the ssl module's SSL* (tlsio.Held), read ahead on
  ssl      SSLSocket.recv_into (the ssl module: the GIL is released around SSL_read)
  membio   libc recv (GIL held) of the raw bytes into an ssl.MemoryBIO, then SSLObject.read
           (the suggestion to keep the GIL: SSLObject.read releases it around SSL_read too)

each alone, and with a competing thread spinning in Python (as an executor or the log thread
would be when runnable) under sys.setswitchinterval(100 us), the engine's setting: every
GIL release then lets the spinner in, and the reader waits up to a switch interval to get
the GIL back (docs/design.md 9). Prints p50/p90/p99/max per read in us. Not a test.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)

import tlsio  # noqa: E402
from hostinfo import machine  # noqa: E402

SERVER = r"""
import socket, ssl, sys, time, trustme
ca = trustme.CA(); cert = ca.issue_cert("127.0.0.1")
ca.cert_pem.write_to_path(sys.argv[1])
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); cert.configure_cert(ctx)
n, size = int(sys.argv[2]), int(sys.argv[3])
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4)
print(ls.getsockname()[1], flush=True)
payload = b"x" * size
import threading
def serve(c):
    tls = c.recv(1, socket.MSG_PEEK) == b"\x16"      # a TLS ClientHello, or plain
    s = ctx.wrap_socket(c, server_side=True) if tls else c
    s.recv(1)                                        # the client says "go"
    for _ in range(n):
        s.sendall(payload)                           # one record each (TLS)
    time.sleep(60)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

_libc = ctypes.PyDLL(None, use_errno=True)
_recv = _libc.recv
_recv.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_recv.restype = ctypes.c_ssize_t
DONTWAIT = socket.MSG_DONTWAIT


def pct(v, p):
    s = sorted(v)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def connect(port, ca, how):
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ctx = ssl.create_default_context(cafile=ca)
    if how == "plain":
        return raw, None
    if how == "membio":
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(out.read())
                inc.write(raw.recv(65536))
        raw.sendall(out.read())
        return raw, (obj, inc, out)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    return s, None


def measure(port, ca, how, n, size, per_read, spinner):
    sock, bio = connect(port, ca, how)
    if bio is None:
        sock.send(b"g")
    else:
        obj, inc, out = bio
        obj.write(b"g")
        sock.sendall(out.read())
    time.sleep(0.5)                                   # every record is in our socket buffer
    total = n * size
    buf = np.zeros(1 << 20, np.uint8)
    addr = buf.ctypes.data
    mv = memoryview(buf)
    raw_tmp = ctypes.create_string_buffer(1 << 20)
    held = None
    if how == "held":
        sock.setblocking(False)
        held = tlsio.held(sock)
        held.read_ahead()
    elif how == "ssl":
        sock.setblocking(False)
    stop = threading.Event()
    th = None
    if spinner:
        def spin():
            x = 0
            while not stop.is_set():
                x += 1
        th = threading.Thread(target=spin, daemon=True)
        th.start()
        time.sleep(0.05)
    got, times = 0, []
    want = per_read * size
    deadline = time.monotonic() + 20
    while got < total and time.monotonic() < deadline:
        t0 = time.perf_counter_ns()
        k = 0
        if how == "plain":
            r = _recv(sock.fileno(), addr, min(want, total - got), DONTWAIT)
            k = max(r, 0)
        elif how == "held":
            while k < want:
                r = held.read(addr + k, want - k)
                if not r:
                    break
                k += r
        elif how == "ssl":
            while k < want:
                try:
                    r = sock.recv_into(mv[k:want])
                except ssl.SSLWantReadError:
                    break
                k += r
        else:
            obj, inc, out = bio
            while k < want:
                try:
                    r = len(obj.read(want - k))
                    k += r
                    continue
                except ssl.SSLWantReadError:
                    pass
                r = _recv(sock.fileno(), raw_tmp, 1 << 20, DONTWAIT)   # GIL held
                if r <= 0:
                    break
                inc.write(raw_tmp.raw[:r])
        t1 = time.perf_counter_ns()
        if k:
            times.append((t1 - t0) / 1000)
            got += k
    stop.set()
    if th is not None:
        th.join()
    sock.close()
    return {"reads": len(times), "bytes": got, "p50": pct(times, 50), "p90": pct(times, 90),
            "p99": pct(times, 99), "max": max(times)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--per-read", type=int, default=1)
    a = ap.parse_args()
    sys.setswitchinterval(100e-6)
    ca = tempfile.mktemp(suffix=".pem")
    srv = subprocess.Popen([sys.executable, "-c", SERVER, ca, str(a.records), str(a.size)],
                           stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline())
        res = {}
        print(f"{a.records} records of {a.size} B, {a.per_read} per timed read; us per read")
        print(f"{'way':8s} {'competing thread':17s} {'reads':>6s} {'p50':>7s} {'p90':>7s} {'p99':>7s} {'max':>8s}")
        for spinner in (False, True):
            for how in ("plain", "held", "ssl", "membio"):
                r = measure(port, ca, how, a.records, a.size, a.per_read, spinner)
                res[f"{how}{'_contended' if spinner else ''}"] = r
                print(f"{how:8s} {'yes' if spinner else 'no':17s} {r['reads']:6d} {r['p50']:7.2f} {r['p90']:7.2f} "
                      f"{r['p99']:7.2f} {r['max']:8.1f}")
    finally:
        srv.kill()
        os.unlink(ca)
    out = ROOT / "profiles" / "results" / "probe_tls_gil.json"
    out.write_text(json.dumps({"args": vars(a), "machine": machine(), "us_per_read": res}, indent=1))
    print(f"probe_tls_gil: wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
