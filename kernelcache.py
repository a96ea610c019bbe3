"""The Numba kernels' on-disk cache: where it lives, is it cold, and filling it in parallel on a
first start.

Where (`use_source_keyed_cache`): Numba's on-disk cache checks the file of the function it
caches, not the files of the functions it calls and inlines. hotctx.hot_chunk inlines
pipeline, books, l2wire, triangles and rings; after an edit to one of those (or a `git
pull`), the cached hot_chunk would keep running the old code without a word (seen here: a
kernel that wrote a new signal field kept running its cached predecessor, which did not;
docs/design.md 11). So the cache lives in `.numba_cache/<hash of every engine module's
source>/`: any edit to any engine module starts a fresh cache, and the older folders are
pruned (the newest three kept). run.py calls it first, before anything imports numba; so do
tests/conftest.py and the benchmarks that import kernels. A NUMBA_CACHE_DIR set in the
environment is left alone; the prefill workers inherit the engine's.

Owns also: `is_cold` (does the cache hold the hot thread's entry kernels for this source?),
`Prefill` (worker processes that compile independent kernel groups into the cache while the
engine starts), `synthetic_shared` (the shared arrays allocated over a three-symbol universe:
the same dtypes and layouts as a real session, so what a worker compiles is what the engine
loads) and the worker program itself (`python kernelcache.py --group N`).

Why: a cold start compiles every kernel (docs/design.md 9.2, "Compilation"), about a minute of
one core on the project's 2-core host, in one process, while the console stayed silent. The
kernels form a few subtrees that share nothing below the hot-thread entries (evaluation:
pipeline.evaluate_best and triangles; the level2 parser and books; the private-order parser
and fill routing; snapshots, rings and slots). Each worker compiles its groups from Python
with the production types (Numba writes each function to the cache as it compiles it); the
engine waits until the subtrees under `hotctx.hot_chunk` are in, then runs `run.warm_up`,
which compiles only the entry kernels that tie them together and loads the rest. The figures
(README, "Performance"; profiles/README.md, "Measured on the AMD EPYC host") come from
`profiles/bench_startup.py`.

Processes, not threads (docs/design.md 11: threads are made only in run.py): the workers
are children in their own session (a Ctrl-C reaches the engine, which stops them), and
report on stdout one line per group done: `kernelcache: done NAME SECONDS`. A worker that
fails costs nothing but time: whatever it did not compile, warm_up compiles in the engine.

Thread: main (start-up only).
"""
from __future__ import annotations

import hashlib
import os
import selectors
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE_ROOT = HERE / ".numba_cache"
KEEP = 3          # cache folders kept (the newest), so switching between two versions is cheap


def source_key() -> str:
    """sha1 of every engine module at the repository's top level (names and contents)."""
    h = hashlib.sha1()
    for p in sorted(HERE.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def use_source_keyed_cache() -> str:
    """Point NUMBA_CACHE_DIR at this source's folder (unless set); returns the folder."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    folder = CACHE_ROOT / source_key()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder)
        olds = sorted((p for p in CACHE_ROOT.iterdir() if p.is_dir() and p != folder),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        for p in olds[KEEP - 1:]:
            shutil.rmtree(p, ignore_errors=True)
    except OSError:
        return ""            # a read-only checkout: Numba falls back to its own cache places
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    return str(folder)

# The groups, by worker. Each entry is (name, critical): critical groups are the subtrees
# under hotctx.hot_chunk, which the engine waits for before it compiles hot_chunk itself;
# the others are compiled by warm_up in the engine if a worker has not finished them first.
# Worker 0's evaluation subtree is the longest (about a quarter of the whole); on_level2 comes
# after it, when worker 1 has put the parser and books it calls in the cache; worker 1's
# re-evaluation entry comes when worker 0 has put evaluate_best there.
GROUPS = (
    (("evaluate", True), ("pick", True), ("on_level2", True), ("snapshot", False),
     ("rings", False)),
    (("level2", True), ("books", True), ("orders", True), ("frames", True), ("reeval", False),
     ("slots", False)),
)
N_GROUPS = sum(len(g) for g in GROUPS)


def _entry_dispatchers():
    import hotctx
    import pipeline
    return (hotctx.hot_chunk, hotctx.hot_reeval, hotctx.hot_route_fill, pipeline.hot_snapshot)


def quick_is_cold() -> bool:
    """Without importing Numba (a second on a fresh clone): True when no cache index of
    hotctx.hot_chunk exists where Numba writes it (NUMBA_CACHE_DIR, else __pycache__ beside
    the source). A fresh clone or a new cache directory; an edited module is found later, by
    is_cold."""
    d = os.environ.get("NUMBA_CACHE_DIR")
    if d:
        return not any(Path(d).rglob("hotctx.hot_chunk-*.nbi"))
    return not any((HERE / "__pycache__").glob("hotctx.hot_chunk-*.nbi"))


def is_cold() -> bool:
    """True when one of the hot thread's entry kernels has no cache entry for its current
    source (a fresh clone, an edited module, another NUMBA_CACHE_DIR): warm_up would compile.
    Reads the cache index files only (Numba's own, stamp-checked loader)."""
    for disp in _entry_dispatchers():
        cache = getattr(disp, "_cache", None)
        try:
            if not cache._cache_file._load_index():
                return True
        except Exception:
            return True
    return False


def synthetic_shared():
    """run.allocate over a universe of BTC-USDT, ETH-USDT, ETH-BTC from the bundled symbol
    list: every shared array with the dtype, rank and layout of a real session."""
    import json

    import run
    import universe
    from config import parse_config

    cfg = parse_config("")
    names = {"BTC-USDT", "ETH-USDT", "ETH-BTC"}
    syms = [d for d in json.loads((HERE / "data" / "symbols-2024-09.json").read_text())
            if d["symbol"] in names]
    uni = universe.Universe(syms, ("USDT", "BTC", "ETH"), {}, 0.001, only_symbols=names)
    max_start = dict(cfg.max_start)
    cfg.engine["max_start"] = {k: v for k, v in max_start.items() if k in ("USDT", "BTC", "ETH")}
    cfg.engine["primary_quotes"] = ("USDT", "BTC", "ETH")
    return run.allocate(cfg, uni, {"USDT": 100, "BTC": 1, "ETH": 1}, 0, "")


def compile_group(name: str, sh) -> None:
    """Call the group's kernels from Python with the types the entry kernels pass them
    (scratch copies; results ignored). Each compiled function lands in the cache."""
    import books
    import hotctx
    import l2wire
    import pipeline
    import privwire
    import rings
    import slots

    ws_frame = (b'{"type":"message","topic":"/market/level2:BTC-USDT","subject":"trade.l2update",'
                b'"data":{"changes":{"asks":[["1.5","2","12"]],"bids":[["1.4","1","11"]]},'
                b'"sequenceEnd":12,"sequenceStart":11,"symbol":"BTC-USDT","time":1}}')
    now = time.monotonic_ns()
    if name == "evaluate":
        pipeline.evaluate_best(0, now, sh.book_state, sh.book_px, sh.book_sz, sh.universe.symtab,
                               sh.universe.tris, sh.universe.sym_tri_start, sh.universe.sym_tri_list,
                               sh.balances, sh.max_start, sh.params, sh.cands, sh.evc, sh.slots,
                               sh.tri_last_ns, sh.control[1], sh.counters, sh.reeval, sh.tri_bound)
    elif name == "pick":
        pipeline.pick_and_stage(0, sh.cands, sh.universe.tris, sh.slots, sh.pstate, sh.counters,
                                now, now, now, now, sh.sig_stage, sh.tri_last_ns, sh.control[1],
                                rings.ORIGIN_FRAME, sh.rate_backoff_ns)
    elif name == "on_level2":
        import numpy as np
        # the chunk kernel's two halves of a level2 frame (hotctx._apply_frame, _decide_window)
        frame = np.frombuffer(ws_frame, np.uint8).copy()
        pipeline.apply_l2(frame[0:len(frame)], 0, now, sh.changes, sh.l2hdr, sh.book_state, sh.book_px,
                          sh.book_sz, sh.pend, sh.pctl, sh.hot_table.tab[hotctx.T_REFILL_MIN], sh.pstate,
                          sh.counters)
        res = hotctx.alloc_result()
        pipeline.decide_l2(0, now, res[hotctx.R_WIN + 1], res[hotctx.R_WIN + 2], sh.book_state, sh.book_px,
                           sh.book_sz, sh.universe.symtab, sh.universe.tris, sh.universe.sym_tri_start,
                           sh.universe.sym_tri_list, sh.balances, sh.max_start, sh.params, sh.cands, sh.evc,
                           sh.slots, sh.pstate, sh.counters, sh.sig_stage, sh.control, sh.tri_last_ns,
                           sh.reeval, sh.rate_backoff_ns, sh.tri_bound)
    elif name == "frames":
        import numpy as np

        import topics
        import wsread
        buf = np.frombuffer(wsread.text_header(len(ws_frame)) + ws_frame, np.uint8).copy()
        wsread.next_frame(buf, 0, len(buf))
        st = sh.symtable
        topics.level2_symbol(buf, 0, len(buf), st.slots, st.names, st.lens)
        pat = hotctx.ORDER_SUBJECT.copy()
        pat.setflags(write=False)       # a module-global array is a read-only constant in a kernel
        topics.find(buf, 0, len(buf), pat)
    elif name == "reeval":
        hotctx.hot_reeval(sh.hot_table.tab, now)
    elif name == "level2":
        import numpy as np
        frame = np.frombuffer(ws_frame, np.uint8).copy()
        l2wire.parse_l2(frame[0:len(frame)], sh.changes, sh.l2hdr)
    elif name == "books":
        h = sh.l2hdr[0]
        books.book_apply_l2(sh.book_state, sh.book_px, sh.book_sz, 0, h["seq_start"], h["seq_end"],
                            h["ts_ms"], now, sh.changes, 0, sh.pend, sh.pctl, books.REFILL_MIN)
    elif name == "orders":
        import numpy as np
        frame = np.frombuffer(b'{"type":"message","subject":"orderChange","data":{}}', np.uint8).copy()
        privwire.parse_order_change(frame[0:len(frame)], sh.fill_stage, privwire.raw_view(sh.fill_stage),
                                    now, len(sh.slots))
        hotctx.hot_route_fill(sh.hot_table.tab, 0)
    elif name == "snapshot":
        import numpy as np
        snap = np.zeros(1, sh.snap_ring[0].dtype)
        pipeline.hot_snapshot(snap, *sh.snap_args)
    elif name == "rings":
        rings.warm_ring_kernels((sh.sig_rings[0], sh.fill_rings[0], sh.snap_ring, sh.snap_req))
    elif name == "slots":
        import numpy as np
        tbl = slots.alloc_inflight(len(sh.slots))
        s = slots.try_acquire(tbl, np.uint64(1), np.int32(0), np.int32(0), np.int32(1), np.int32(2),
                              np.int32(0))
        slots.release(tbl, s)
        slots.is_busy(tbl, 0)
        slots.undo_acquire(tbl, 0)
        books.walk_buy_funds(sh.book_px, sh.book_sz, 0, 1.0, 0.0001)
        books.walk_sell_size(sh.book_px, sh.book_sz, 0, 1.0)
        books.best_bid(sh.book_px, sh.book_sz, 0)
        books.book_reset(sh.book_state.copy(), 0)
    else:
        raise ValueError(f"unknown kernel group {name!r}")


class Prefill:
    """The worker processes of one cold start, and what they have reported."""

    def __init__(self, env=None, workers: int | None = None):
        ncpu = len(os.sched_getaffinity(0))
        n = min(len(GROUPS), workers if workers is not None else ncpu)
        # one worker per group list; with one CPU, none: a worker would only take turns with
        # the engine, which then compiles everything itself (warm_up)
        plans = [list(g) for g in GROUPS] if n >= len(GROUPS) else []
        self.t0 = time.monotonic()
        self.done: dict[str, float] = {}
        self.failed: list[str] = []
        self.procs = []
        self.sel = selectors.DefaultSelector()
        for plan in plans:
            args = [sys.executable, str(HERE / "kernelcache.py"), "--groups", ",".join(g for g, _ in plan)]
            p = subprocess.Popen(args, cwd=str(HERE), env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
            self.procs.append(p)
            os.set_blocking(p.stdout.fileno(), False)
            self.sel.register(p.stdout, selectors.EVENT_READ, [p, ""])
        self.critical = {g for plan in GROUPS for g, crit in plan if crit}

    def poll(self, timeout: float) -> None:
        """Read what the workers said within `timeout` seconds."""
        for key, _ in self.sel.select(timeout):
            p, partial = key.data
            try:
                chunk = key.fileobj.read()
            except (OSError, ValueError):
                chunk = ""
            if not chunk:
                self.sel.unregister(key.fileobj)
                if p.wait() != 0:
                    self.failed.append(f"worker {p.pid} exit {p.returncode}: {partial[-300:]}")
                continue
            text = partial + chunk
            *lines, key.data[1] = text.split("\n")
            for line in lines:
                parts = line.split()
                if len(parts) == 4 and parts[:2] == ["kernelcache:", "done"]:
                    self.done[parts[2]] = float(parts[3])
                elif line.strip():
                    key.data[1] = (key.data[1] + "\n" + line)[-2000:]

    @property
    def running(self) -> bool:
        return bool(self.sel.get_map())

    def critical_done(self) -> bool:
        return self.critical <= set(self.done) or not self.running

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fileobj)


def _worker(groups: list[str]) -> int:
    sh = synthetic_shared()
    for g in groups:
        t = time.perf_counter()
        compile_group(g, sh)
        print(f"kernelcache: done {g} {time.perf_counter() - t:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--groups":
        sys.exit(_worker(sys.argv[2].split(",")))
    print("usage: python kernelcache.py --groups NAME[,NAME...]   (run.py starts it on a cold "
          "cache)", file=sys.stderr)
    sys.exit(2)
