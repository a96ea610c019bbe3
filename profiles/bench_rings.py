import os, sys, time; sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import numpy as np
from numba import njit
import rings as R
@njit(nogil=True)
def loop_push_pop(buf, ctrl, src, dst, n):
    s = 0
    for i in range(n):
        R.ring_push(buf, ctrl, src, 0)
        s += R.ring_pop(buf, ctrl, dst, 0)
    return s
@njit(nogil=True)
def loop_claim_pop(buf, ctrl, dst, n):
    s = 0
    for i in range(n):
        idx = R.ring_claim(buf, ctrl)
        buf[idx]['corr'] = i; buf[idx]['push_ns'] = i
        R.ring_publish(buf, ctrl)
        s += R.ring_pop(buf, ctrl, dst, 0)
    return s
@njit(nogil=True)
def loop_clock(n):
    s = 0
    for i in range(n): s += R.monotonic_ns() & 1
    return s
for name, dt in (("SIGNAL(192B)", R.SIGNAL_DTYPE), ("FILL(120B)", R.FILL_DTYPE)):
    buf, ctrl = R.alloc_ring(dt, 4); src = np.zeros(1, dt); dst = np.zeros(1, dt)
    loop_push_pop(buf, ctrl, src, dst, 10)
    N = 10_000_000
    best = min((lambda t0: (loop_push_pop(buf, ctrl, src, dst, N), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
    print(f"{name} kernel push+pop: {best / N * 1e9:.1f} ns")
    if dt is R.SIGNAL_DTYPE:
        loop_claim_pop(buf, ctrl, dst, 10)
        best = min((lambda t0: (loop_claim_pop(buf, ctrl, dst, N), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
        print(f"{name} kernel claim+2 fields+publish+pop: {best / N * 1e9:.1f} ns")
    push, pop = R.ring_push, R.ring_pop
    M = 300_000
    res = []
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(M):
            push(buf, ctrl, src, 0); pop(buf, ctrl, dst, 0)
        res.append(time.perf_counter() - t0)
    print(f"{name} python push+pop: {min(res) / M * 1e6:.2f} us")
    dm = np.zeros(4, dt)
    res = []
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(M):
            push(buf, ctrl, src, 0); R.ring_pop_many(buf, ctrl, dm)
        res.append(time.perf_counter() - t0)
    print(f"{name} python push+pop_many: {min(res) / M * 1e6:.2f} us")
loop_clock(10); N=10_000_000; t0=time.perf_counter(); loop_clock(N); print(f"monotonic_ns in kernel: {(time.perf_counter()-t0)/N*1e9:.1f} ns")
t0=time.perf_counter()
for i in range(300000): time.monotonic_ns()
print(f"time.monotonic_ns python: {(time.perf_counter()-t0)/300000*1e9:.1f} ns")
