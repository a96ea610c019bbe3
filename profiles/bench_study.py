"""What recording and the opportunity journal cost the hot thread, per socket read, and how
big a recording gets (README "Recording, replay and the opportunity table").

Run:  python profiles/bench_study.py [--messages 50000] [--feed runs/<start>/feed.zst ...]

1. Per read, in-process on bench_hot.py's stream (the full real universe, one frame per
   socket read: the worst case): `HotLoop._chunk` timed from Python, as bench_hot's
   "python" pass, in three interleaved configurations over the same stream and state:
   opportunities off and no recorder; opportunities on; opportunities on and a
   feed.Recorder attached (its thread draining every 50 ms, as in the engine).
2. The recorder's hand-off alone: `Recorder.read` (bytes copy + deque append) for reads of
   300 B / 3 KB / 30 KB, against a queue.SimpleQueue put of the same bytes.
3. For each --feed: recorded seconds, public messages and their rate, bytes before and after
   compression, and MB per hour at that rate.
Writes profiles/results/bench_study.json. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "profiles"))

import bench_hot  # noqa: E402
import feed  # noqa: E402
import opportunity  # noqa: E402
import pipeline  # noqa: E402
import rings  # noqa: E402
import slots  # noqa: E402
import wsread  # noqa: E402
from hostinfo import machine  # noqa: E402


def per_read(args) -> dict:
    cfg, uni, sh, price, _build_s, _n = bench_hot.build_shared(0.0, args.seed)
    venue = bench_hot.build_venue(uni, price, args.seed)
    bench_hot.seed_books(sh, venue)
    frames, syms, snap_idx, snaps, _stream = bench_hot.make_stream(
        uni, venue, args.messages, 1000, args.seed, sh.snap_ring[0].dtype, 40)
    st = types.SimpleNamespace(frames=frames, syms=syms, snap_idx=snap_idx, snaps=snaps)
    saved = bench_hot.save(sh)
    extra = [sh.opp_state, sh.opp_ring[0], sh.opp_ring[1], sh.opp_ctl]
    saved += [(a, a.copy()) for a in extra]
    out = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_study_"))
    orig_loop = bench_hot.hot.HotLoop

    def run(name, opp_on, record):
        bench_hot.restore(saved)
        sh.opp_ctl[opportunity.OPP_CTL_ENABLED] = 1 if opp_on else 0
        rec, stop, th = None, threading.Event(), None
        if record:
            rec = feed.Recorder(tmp / f"{name}.zst", {"symbols": []})
            th = threading.Thread(target=rec.run, args=(stop,), daemon=True)
            th.start()

        class Loop(orig_loop):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self.recorder = rec
                self._rec_link_ids = 1

        bench_hot.hot.HotLoop = Loop
        try:
            times, wall, _lines = bench_hot.run_python(sh, cfg, st)
        finally:
            bench_hot.hot.HotLoop = orig_loop
            if th is not None:
                stop.set()
                th.join()
        opp_rec = int(sh.opp_ctl[opportunity.OPP_CTL_CLOSED])
        # the ring is not drained here: closed records beyond its capacity are counted dropped
        return times, wall, opp_rec

    # one warm-up (compiles or loads the cache), then A, B, C, A, B, C
    head = types.SimpleNamespace(frames=frames[:3000], syms=syms[:3000], snap_idx=snap_idx[:3000],
                                 snaps=snaps)
    bench_hot.restore(saved)
    bench_hot.run_python(sh, cfg, head)
    configs = (("plain", False, False), ("opportunities", True, False), ("opportunities+record", True, True))
    for rnd in (1, 2):
        for name, o, r in configs:
            times, wall, nopp = run(f"{name}_{rnd}", o, r)
            out.setdefault(name, []).append({"p50_ns": float(np.percentile(times, 50)),
                                             "p90_ns": float(np.percentile(times, 90)),
                                             "p99_ns": float(np.percentile(times, 99)),
                                             "mean_ns": float(times.mean()),
                                             "msgs_per_s": len(frames) / wall,
                                             "opportunities_closed": nopp})
            print(f"{name:<24} round {rnd}: per read p50 {out[name][-1]['p50_ns']:8.0f} ns  p90 "
                  f"{out[name][-1]['p90_ns']:8.0f}  p99 {out[name][-1]['p99_ns']:8.0f}  mean "
                  f"{out[name][-1]['mean_ns']:8.0f}  {out[name][-1]['msgs_per_s']:9,.0f} msg/s  "
                  f"({nopp} opportunities)", flush=True)
    return out


@njit(nogil=True)
def pass_track(buf, offs, syms, times, snap_idx, snaps, sargs, rbufs, rctls, popped, stage,
               slot_table, pargs, state, px, sz, symtab, tris, sym_tri_start, sym_tri_list,
               tri_last_ns, tri_bound, counters, c_evals, ostate, oparams, ocand, ocap, obuf,
               octrl, octl, otmp):
    """bench_hot.pass_fused's loop (on_level2, push, instant executor, snapshots), and after
    each message opportunity.track timed on its own: times[k] = (on_level2 ns, track ns).
    Closed records are popped at once (the "opp" thread's part, untimed)."""
    for k in range(syms.shape[0]):
        frame = buf[offs[k]:offs[k + 1]]
        evals = counters[c_evals]
        t0 = rings.monotonic_ns()
        slot = pipeline.on_level2(frame, syms[k], t0, *pargs)
        t1 = rings.monotonic_ns()
        if slot >= 0:
            rings.ring_push(rbufs[slot], rctls[slot], stage, 0)
            rings.ring_pop(rbufs[slot], rctls[slot], popped, 0)
            slots.release(slot_table, slot)
        t2 = rings.monotonic_ns()
        opportunity.track(syms[k], t0, counters[c_evals] != evals, state, px, sz, symtab, tris,
                          sym_tri_start, sym_tri_list, tri_last_ns, tri_bound, ostate, oparams,
                          ocand, ocap, obuf, octrl, octl)
        t3 = rings.monotonic_ns()
        times[k, 0] = t1 - t0
        times[k, 1] = t3 - t2
        while rings.ring_pop(obuf, octrl, otmp, 0):
            pass
        bench_hot._serve_snapshot(k, syms[k], snap_idx, snaps, state, sargs)


def track_cost(args) -> dict:
    """opportunity.track per message in a jitted loop: its own cost, without the Python
    around a socket read (whose noise on this shared host hides it in per_read)."""
    cfg, uni, sh, price, _b, _n = bench_hot.build_shared(0.0, args.seed)
    venue = bench_hot.build_venue(uni, price, args.seed)
    bench_hot.seed_books(sh, venue)
    frames, syms, snap_idx, snaps, _s = bench_hot.make_stream(
        uni, venue, args.messages * 4, 1000, args.seed, sh.snap_ring[0].dtype, 40)
    lens = np.array([len(f) for f in frames])
    offs = np.zeros(len(frames) + 1, np.int64)
    offs[1:] = np.cumsum(lens)
    buf = np.frombuffer(b"".join(frames), np.uint8)
    rbufs, rctls = bench_hot.ring_stack(sh)
    times = np.zeros((len(frames), 2), np.int64)
    otmp = np.zeros(1, opportunity.OPP_DTYPE)
    sh.opp_params[0]["min_profit_bps"] = args.floor
    saved = bench_hot.save(sh) + [(a, a.copy()) for a in (sh.opp_state, sh.opp_ctl)]
    res = {}
    for rnd in (0, 1, 2):            # 0: compile / load the cache
        bench_hot.restore(saved)
        pass_track(buf, offs, syms, times, snap_idx, snaps, tuple(sh.snap_args), rbufs, rctls,
                   np.zeros(1, sh.sig_stage.dtype), sh.sig_stage, sh.slots, tuple(sh.pipe_args),
                   sh.book_state, sh.book_px, sh.book_sz, uni.symtab, uni.tris, uni.sym_tri_start,
                   uni.sym_tri_list, sh.tri_last_ns, sh.tri_bound, sh.counters,
                   pipeline.C["evals"], sh.opp_state, sh.opp_params, sh.opp_cand,
                   sh.opp_cap, sh.opp_ring[0], sh.opp_ring[1], sh.opp_ctl, otmp)
        if rnd:
            d = {"messages": len(frames), "opportunities": int(sh.opp_ctl[opportunity.OPP_CTL_CLOSED]),
                 "on_level2_ns": {p: float(np.percentile(times[:, 0], q)) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))},
                 "track_ns": {p: float(np.percentile(times[:, 1], q)) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))},
                 "on_level2_mean_ns": float(times[:, 0].mean()), "track_mean_ns": float(times[:, 1].mean())}
            res[f"round{rnd}"] = d
            print(f"round {rnd}: {len(frames)} messages, {d['opportunities']} opportunities; "
                  f"on_level2 p50/p90/p99 {d['on_level2_ns']['p50']:.0f}/{d['on_level2_ns']['p90']:.0f}/"
                  f"{d['on_level2_ns']['p99']:.0f} ns mean {d['on_level2_mean_ns']:.0f}; track "
                  f"p50/p90/p99 {d['track_ns']['p50']:.0f}/{d['track_ns']['p90']:.0f}/"
                  f"{d['track_ns']['p99']:.0f} ns mean {d['track_mean_ns']:.0f}", flush=True)
    return res


def handoff() -> dict:
    res = {}
    rec = feed.Recorder(Path(tempfile.mkdtemp(prefix="bench_study_")) / "h.zst", {"symbols": []})
    buf = np.frombuffer(np.random.default_rng(1).integers(32, 127, 1 << 16, dtype=np.uint8).tobytes(),
                        np.uint8)
    q = queue.SimpleQueue()
    for size in (300, 3000, 30000):
        # batches of 500, emptied between them (untimed) as the recorder thread does every
        # 50 ms: a queue left to grow would time the allocator, not the hand-off
        a = b = 0
        reps = 0
        for _ in range(100):
            t = time.perf_counter_ns()
            for i in range(500):
                rec.read(1, i, buf, size)
            a += time.perf_counter_ns() - t
            rec.q.clear()
            t = time.perf_counter_ns()
            for i in range(500):
                q.put((1, i, buf[:size].tobytes()))
            b += time.perf_counter_ns() - t
            while not q.empty():
                q.get_nowait()
            reps += 500
        a /= reps
        b /= reps
        res[str(size)] = {"recorder_read_ns": a, "simplequeue_put_ns": b}
        print(f"hand-off of a {size:>6} B read: Recorder.read {a:6.0f} ns, SimpleQueue.put {b:6.0f} ns")
    rec.close()
    return res


def feed_size(path: Path) -> dict:
    n_msgs = raw = 0
    first = last = None
    links = {}
    for r in feed.read_records(path):
        raw += feed.REC.size + len(r.payload)
        if r.kind == feed.K_LINK:
            links[r.link] = r.json()["kind"]
        if r.kind == feed.K_READ:
            first = r.ns if first is None else first
            last = r.ns
            if links.get(r.link) == "public":
                arr = np.frombuffer(r.payload, np.uint8)
                pos = 0
                while True:
                    st, _b0, _s, e = wsread.next_frame(arr, pos, len(arr))
                    if st != wsread.F_OK:
                        break
                    pos = int(e)
                    n_msgs += 1
    secs = (last - first) / 1e9
    size = path.stat().st_size
    d = {"feed": path.name, "seconds": round(secs, 1), "public_frames": n_msgs,
         "msgs_per_s": round(n_msgs / secs, 1), "raw_bytes": raw, "compressed_bytes": size,
         "ratio": round(raw / size, 2), "mb_per_hour": round(size / secs * 3600 / 1e6, 1),
         "bytes_per_msg": round(size / max(1, n_msgs), 1)}
    print(f"{path.parent.name}/{path.name}: {d['seconds']} s, {n_msgs} public frames "
          f"({d['msgs_per_s']}/s), {raw:,} B raw -> {size:,} B ({d['ratio']}x), "
          f"{d['mb_per_hour']} MB/hour, {d['bytes_per_msg']} B/frame")
    return d


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--feed", nargs="*", default=[])
    ap.add_argument("--skip-per-read", action="store_true")
    ap.add_argument("--floor", type=float, default=0.0, help="opportunity_floor_bps")
    a = ap.parse_args()
    res = {"machine": machine(), "handoff": handoff(),
           "feeds": [feed_size(Path(p)) for p in a.feed]}
    res["track"] = track_cost(a)
    if not a.skip_per_read:
        res["per_read"] = per_read(a)
    out = ROOT / "profiles" / "results" / "bench_study.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
