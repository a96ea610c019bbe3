"""Probe: what one loopback send() costs the sender, by the receiver's state.

Run:  python profiles/probe_send.py [block|spin]
A child process pinned to CPU 1 reads a TCP connection on 127.0.0.1, blocking in recv()
(block) or spinning on a non-blocking socket (spin); this process, pinned to CPU 0, sends
400 bytes every 2 ms through ctypes send() and times each call. On loopback the sender's
syscall runs the receiver's TCP path and wakes the receiving thread: in a VM whose idle
vCPUs halt, that wake-up goes through the hypervisor. This is the cost an order's send()
pays against the simulator in bench_latency. Prints p50/p90/p99 in us. A probe, not a test.
"""
from __future__ import annotations

import ctypes
import os
import socket
import sys
import time

import numpy as np


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "block"
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {1})
        c, _ = ls.accept()
        c.setblocking(mode != "spin")
        while True:
            try:
                if not c.recv(65536):
                    os._exit(0)
            except BlockingIOError:
                continue
    os.sched_setaffinity(0, {0})
    s = socket.create_connection(ls.getsockname())
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    send = ctypes.PyDLL(None).send
    send.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
    msg = b"x" * 400
    out = []
    for _ in range(2000):
        time.sleep(0.002)
        t = time.perf_counter_ns()
        send(s.fileno(), msg, len(msg), 0)
        out.append(time.perf_counter_ns() - t)
    t = np.array(out[50:]) / 1000.0
    print(f"{mode}: send() p50 {np.percentile(t, 50):.1f} us  p90 {np.percentile(t, 90):.1f}"
          f"  p99 {np.percentile(t, 99):.1f}")
    s.close()
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
