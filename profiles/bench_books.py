"""Benchmark: per-message cost of level2 parse + book apply on the recorded 2021 stream.

Not a test. Run: `python profiles/bench_books.py [--reps 5]
[--depth 64] [--refill-min 24] [--out profiles/results/bench_books.txt]`.
Each repetition starts from fresh books and replays tests/data/ws-public-2021-04-25.jsonl
(3853 level2 frames, 9 symbols) with the REST snapshots delivered at their recorded receive
times, exactly as the hot thread would see it. Everything is warmed up first (one untimed
replay). Timed per message with perf_counter_ns (its own overhead is printed as `timer`):
  parse      l2wire.parse_l2 on a uint8 view of the frame
  apply      books.book_apply_l2 on the parsed changes
  on_frame   books.book_on_frame (parse + apply in one kernel call)
  hot_path   topic lookup (bytes.find + dict) + np.frombuffer + book_on_frame: the Python
             a hot thread runs per level2 frame before triangle evaluation
  sync       books.book_sync_snapshot (load + replay of the buffered run), per snapshot
  in_kernel  book_on_frame called from a jitted loop over the frames (no Python dispatch):
             the cost a fused per-message kernel pays; a mean per frame (no clock inside)
Most of the difference between on_frame and in_kernel is Numba's argument dispatch
(~60-90 ns per argument), paid once per Python -> kernel call.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kernelcache  # noqa: E402
kernelcache.use_source_keyed_cache()   # before numba (kernelcache.py)

import books as B  # noqa: E402
import l2wire as W  # noqa: E402

DATA = ROOT / "tests" / "data"


def load():
    recs = [json.loads(x) for x in (DATA / "ws-public-2021-04-25.jsonl").read_text().splitlines()]
    snaps = [json.loads(x) for x in
             (DATA / "orderbook-level2-snapshots-2021-04-25.jsonl").read_text().splitlines()]
    frames = [(r["recv_ts"], json.dumps(r["msg"], separators=(",", ":")).encode())
              for r in recs
              if r["direction"] == "recv" and r["msg"].get("subject") == "trade.l2update"]
    syms = [s["url"].split("symbol=")[1] for s in snaps]
    return frames, snaps, {s.encode(): i for i, s in enumerate(syms)}


def replay(frames, snaps, ids, depth, refill_min, t):
    """One pass over the stream from fresh books; appends timings (ns) to the lists in t."""
    st, px, sz = B.alloc_books(len(ids), depth)
    pend, pctl = B.alloc_pending(1 << 14)
    ch, hdr = W.alloc_changes(), W.alloc_l2hdr()
    snap_arrays = [B.snapshot_arrays(s["response"]["data"], depth + 1) for s in snaps]
    pc = time.perf_counter_ns
    si = 0
    codes = np.zeros(8, np.int64)
    for ts, frame in frames:
        while si < len(snaps) and snaps[si]["recv_ts"] <= ts:
            seq, ts_ms, spx, ssz, n = snap_arrays[si]
            t0 = pc()
            B.book_sync_snapshot(st, px, sz, pend, pctl, si, seq, ts_ms, 0, spx, ssz, n[0], n[1], 0)
            t["sync"].append(pc() - t0)
            si += 1
        # the hot thread's per-frame path
        t0 = pc()
        i = frame.find(W.L2_TOPIC_PREFIX) + len(W.L2_TOPIC_PREFIX)
        sym = ids[frame[i:frame.find(b'"', i)]]
        buf = np.frombuffer(frame, np.uint8)
        code = B.book_on_frame(buf, sym, t0, ch, hdr, st, px, sz, pend, pctl, refill_min)
        t1 = pc()
        t["hot_path"].append(t1 - t0)
        codes[code] += 1
        t1 = pc()
        t["timer"].append(pc() - t1)
    return st, codes


def replay_split(frames, snaps, ids, depth, refill_min, t):
    """Same pass, timing parse_l2 and book_apply_l2 separately, and the fused kernel."""
    st, px, sz = B.alloc_books(len(ids), depth)
    st2, px2, sz2 = B.alloc_books(len(ids), depth)
    pend, pctl = B.alloc_pending(1 << 14)
    pend2, pctl2 = B.alloc_pending(1 << 14)
    ch, hdr = W.alloc_changes(), W.alloc_l2hdr()
    snap_arrays = [B.snapshot_arrays(s["response"]["data"], depth + 1) for s in snaps]
    pc = time.perf_counter_ns
    si = 0
    for ts, frame in frames:
        while si < len(snaps) and snaps[si]["recv_ts"] <= ts:
            seq, ts_ms, spx, ssz, n = snap_arrays[si]
            B.book_sync_snapshot(st, px, sz, pend, pctl, si, seq, ts_ms, 0, spx, ssz, n[0], n[1], 0)
            B.book_sync_snapshot(st2, px2, sz2, pend2, pctl2, si, seq, ts_ms, 0, spx, ssz, n[0],
                                 n[1], 0)
            si += 1
        i = frame.find(W.L2_TOPIC_PREFIX) + len(W.L2_TOPIC_PREFIX)
        sym = ids[frame[i:frame.find(b'"', i)]]
        buf = np.frombuffer(frame, np.uint8)
        t0 = pc()
        n_ch = W.parse_l2(buf, ch, hdr)
        t1 = pc()
        h = hdr[0]
        s0, s1, tms = int(h["seq_start"]), int(h["seq_end"]), int(h["ts_ms"])
        t2 = pc()
        B.book_apply_l2(st, px, sz, sym, s0, s1, tms, t0, ch, n_ch, pend, pctl, refill_min)
        t3 = pc()
        B.book_on_frame(buf, sym, t0, ch, hdr, st2, px2, sz2, pend2, pctl2, refill_min)
        t4 = pc()
        t["parse"].append(t1 - t0)
        t["apply"].append(t3 - t2)
        t["on_frame"].append(t4 - t3)


@njit(nogil=True)
def _drive(buf, offs, syms, a, b, ch, hdr, st, px, sz, pend, pctl, refill_min):
    for k in range(a, b):
        B.book_on_frame(buf[offs[k]:offs[k + 1]], syms[k], 0, ch, hdr, st, px, sz, pend, pctl,
                        refill_min)


def replay_in_kernel(frames, snaps, ids, depth, refill_min) -> float:
    """Mean ns per frame of parse + apply inside one jitted loop (between snapshots)."""
    buf = np.frombuffer(b"".join(f for _, f in frames), np.uint8)
    offs = np.zeros(len(frames) + 1, np.int64)
    offs[1:] = np.cumsum([len(f) for _, f in frames])
    syms = np.array([ids[W.topic_symbol(f)] for _, f in frames], np.int64)
    st, px, sz = B.alloc_books(len(ids), depth)
    pend, pctl = B.alloc_pending(1 << 14)
    ch, hdr = W.alloc_changes(), W.alloc_l2hdr()
    snap_arrays = [B.snapshot_arrays(s["response"]["data"], depth + 1) for s in snaps]
    si, a, total = 0, 0, 0
    for k, (ts, _) in enumerate(frames + [(float("inf"), b"")]):
        while si < len(snaps) and snaps[si]["recv_ts"] <= ts or k == len(frames):
            t0 = time.perf_counter_ns()
            _drive(buf, offs, syms, a, k, ch, hdr, st, px, sz, pend, pctl, refill_min)
            total += time.perf_counter_ns() - t0
            a = k
            if k == len(frames):
                break
            seq, ts_ms, spx, ssz, n = snap_arrays[si]
            B.book_sync_snapshot(st, px, sz, pend, pctl, si, seq, ts_ms, 0, spx, ssz, n[0], n[1], 0)
            si += 1
    return total / len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--depth", type=int, default=B.DEPTH)
    ap.add_argument("--refill-min", type=int, default=B.REFILL_MIN)
    ap.add_argument("--out", default=None, help="also write the report to this file")
    a = ap.parse_args()
    frames, snaps, ids = load()
    warm = {k: [] for k in ("parse", "apply", "on_frame", "hot_path", "sync", "timer")}
    replay(frames, snaps, ids, a.depth, a.refill_min, warm)          # compile / load cache
    replay_split(frames, snaps, ids, a.depth, a.refill_min, warm)
    replay_in_kernel(frames, snaps, ids, a.depth, a.refill_min)
    t = {k: [] for k in warm}
    codes = None
    for _ in range(a.reps):
        st, codes = replay(frames, snaps, ids, a.depth, a.refill_min, t)
        replay_split(frames, snaps, ids, a.depth, a.refill_min, t)
    in_kernel = min(replay_in_kernel(frames, snaps, ids, a.depth, a.refill_min)
                    for _ in range(a.reps))
    nbytes = np.array([len(f) for _, f in frames])
    lines = [
        f"bench_books: {len(frames)} level2 frames x {a.reps} reps, depth={a.depth}, "
        f"refill_min={a.refill_min}, frame bytes p50={np.median(nbytes):.0f} "
        f"max={nbytes.max()}",
        f"machine: {platform.processor() or platform.machine()}, python "
        f"{platform.python_version()}, numpy {np.__version__}",
        f"outcomes per pass: applied={codes[B.L2_APPLIED]} stale={codes[B.L2_STALE]} "
        f"buffered={codes[B.L2_BUFFERED]} gap={codes[B.L2_GAP]} "
        f"need_refill={codes[B.L2_NEED_REFILL]}",
        f"{'(us)':10s} {'p50':>8s} {'p99':>8s} {'p99.9':>8s} {'max':>8s} {'n':>7s}",
    ]
    for k in ("parse", "apply", "on_frame", "hot_path", "sync", "timer"):
        v = np.array(t[k], dtype=np.float64) / 1000.0
        p50, p99, p999 = np.percentile(v, [50, 99, 99.9])
        lines.append(f"{k:10s} {p50:8.3f} {p99:8.3f} {p999:8.3f} {v.max():8.1f} {len(v):7d}")
    lines.append(f"{'in_kernel':10s} {in_kernel / 1000:8.3f} (mean, best of {a.reps} passes)")
    report = "\n".join(lines)
    print(report)
    if a.out:
        Path(a.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
