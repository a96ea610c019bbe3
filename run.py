"""run.py: start the engine. `python run.py sim.ini` (bundled simulator) or `python run.py live.ini`.

Start-up, in order: load and validate the config (config.py; one line per problem, exit 2);
start the simulator when venue = sim (with [sim] tls = true it serves https/wss and its test
CA becomes the engine's ca_file); sync the clock; load symbols, taker fees and
balances over REST; build the universe (universe.py); allocate every shared array once;
warm every Numba kernel with the production types on scratch copies (and log how long);
open the executors' kept-alive order connections; start the threads; ask for the links.

Threads (created here and nowhere else; docs/design.md 11):

| thread      | loop                 | writes                                              | reads |
|-------------|----------------------|-----------------------------------------------------|-------|
| main        | `Engine.run` status  | control (halt), slots.cancel (kill switch)          | counters, slots, summary |
| hot         | `hot.HotLoop.run`    | books, pending, balances, counters, pstate, cands,  | slots.released_seq, control |
|             |                      | slots acquire fields, signal/fill/snap-req rings    |       |
|             |                      | (producer), EXEC row of leg 0 when fire_from = hot  |       |
| maint       | `maint.MaintLoop.run`| snapshot ring (producer), links until handed over   | snap-req ring |
| executor k  | `executor.Executor.run` | EXEC row k, slots.released_seq[k], rings k (consumer) | books (paper fills), balances |
| log         | `LogWriter.run`      | report.log, journal.jsonl, engine.log, stdout,      | its queue |
|             |                      | opportunities.jsonl                                 |       |
| rec         | `feed.Recorder.run`  | feed.zst (record = true)                            | the deque the hot thread appends to |
| opp         | `opportunity.Journal.run` | (nothing shared: lines to the log thread)      | opp ring (consumer), the log thread's records |

TLS (KuCoin is reached only over https and wss): every connection the engine makes, the
REST pools, the order connections and the WebSocket links, verifies the certificate and host
name against `[engine] ca_file` (empty: the system store); a verification failure ends the
start-up with one line naming the URL and OpenSSL's reason (tlsio.py), no traceback.

Stop: Ctrl-C or SIGTERM (or run_seconds) -> halt new signals -> wait for in-flight
triangles (up to 2 x fill timeout) -> set the cancel flag so any still running abort between
legs -> stop hot/maint -> join -> session summary -> exit 0.
"""
from __future__ import annotations

import time

T0 = time.monotonic()   # ~process start: the first-evaluation log line measures from here

import kernelcache  # noqa: E402

kernelcache.use_source_keyed_cache()   # before anything imports numba (kernelcache.py)

import collections
import os
import queue
import secrets as pysecrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

try:
    import numpy as np
except ImportError:   # outside the venv: main() says how to fix it (_missing_module)
    np = None

HERE = Path(__file__).resolve().parent


def _log_line(text: str) -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d} {text}"


class LogWriter:
    """The only thread that touches disk (docs/design.md 2). Others call log()/emit()/
    progress(), which only put on a SimpleQueue and never block.

    report.log gets the full report line, the console a short one (console.short_line);
    engine.log and the console get every log line. The run folder is made 0700 and its
    files 0600: they hold balances, orders and PnL. `listeners` (metrics, alerts) are called
    with each record on this thread after it is written (KILLED lines too); they must not
    block. `records` keeps the last `keep_records` report records (none by default: a
    session of days must not keep every report; the end-to-end test harness keeps them)."""

    def __init__(self, run_dir: Path, echo=True, console=False, keep_records: int = 0):
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.run_dir = run_dir
        self.created = not run_dir.exists()
        self.parent_created = not run_dir.parent.exists()      # log_dir itself, the first time
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        self.report_f = _private_open(run_dir / "report.log")
        self.journal_f = _private_open(run_dir / "journal.jsonl")
        self.engine_f = _private_open(run_dir / "engine.log")
        self.echo = echo
        self.console = console        # stdout is a terminal: progress redraws one line
        self.summary = None
        self.records: collections.deque = collections.deque(maxlen=keep_records)
        # consumers of every trading record on another thread (opportunity.Journal): each a
        # deque it empties
        self.report_feeds: list[collections.deque] = []
        self.n_reports = 0            # trading records written (a run folder with none is removed)
        self.listeners = []
        self._progress_open = False
        self.startup = None      # the start-up reconciliation's report.StartupReport
        self.state = None        # recovery.StateLog once start-up has reconciled (docs/design.md 6.7)
        self.state_errors = 0
        # the kill switch (risk.KillSwitch) and the valuer it prices with: evaluated here, on
        # every report record and every check_s, because this thread sees the report stream
        # (docs/design.md 12); set by Engine.start
        self.kill = None
        self.valuer = None
        self.check_s = 0.5
        self.opp_f = None          # opportunities.jsonl, opened at the first line (opportunity.py)

    def log(self, text: str) -> None:
        self.q.put(("log", _log_line(text)))

    def emit(self, rec) -> None:
        self.q.put(("report", rec))

    def progress(self, text: str, final: bool = False) -> None:
        """A progress line: redrawn in place on a terminal; elsewhere printed (and logged)
        as it comes. `final` ends it (logged everywhere)."""
        self.q.put(("progress", (_log_line(text), final)))

    def intent(self, t: tuple) -> None:
        """An order's bytes are out (Executor.fire_leg): its durable record, written and
        fsynced by this thread before any later line (docs/design.md 6.7). Never blocks."""
        self.q.put(("intent", t))

    def _state(self, fn, item) -> None:
        if self.state is None:
            return
        try:
            fn(item)
        except OSError as e:   # never stop logging reports because the state file failed
            self.state_errors += 1
            if self.state_errors <= 3:
                self.engine_f.write(_log_line(f"run: state file write failed: {e}") + "\n")

    def killed(self, trip: dict, action: str, inflight: str) -> None:
        """Write the KILLED line (after the in-flight triangles ended)."""
        self.q.put(("killed", (trip, action, inflight)))

    def rearm(self, source: str) -> None:
        """Re-arm the kill switch (an operator's resume)."""
        self.q.put(("rearm", source))

    def emit_opportunity(self, line: str) -> None:
        self.q.put(("opp", line))

    def _print(self, text: str) -> None:
        if self._progress_open:
            print(file=sys.stdout)
            self._progress_open = False
        print(text, flush=True)

    def _notify(self, item) -> None:
        for fn in self.listeners:
            try:
                fn(item)
            except Exception as e:   # a listener's bug never stops the reports
                self.engine_f.write(_log_line(f"log: listener {fn!r} failed: "
                                              f"{e.__class__.__name__}: {e}") + "\n")

    def run(self) -> None:
        import console
        import report
        next_check = 0.0
        while True:
            if self.kill is not None:
                # every check_s whatever else arrives (log lines come several times a second)
                now = time.monotonic()
                if now >= next_check:
                    self._check_kill()
                    next_check = now + self.check_s
                try:
                    kind, item = self.q.get(timeout=max(0.0, next_check - now))
                except queue.Empty:
                    continue
            else:
                kind, item = self.q.get()
            if kind == "stop":
                break
            if kind == "log":
                self.engine_f.write(item + "\n")
                if self.echo:
                    self._print(item)
            elif kind == "progress":
                line, final = item
                if self.echo and self.console and not final:
                    print("\r" + line + "\033[K", end="", flush=True)
                    self._progress_open = True
                    continue
                self.engine_f.write(line + "\n")
                if self.echo:
                    if self._progress_open:
                        print("\r" + line + "\033[K", flush=True)
                        self._progress_open = False
                    else:
                        print(line, flush=True)
            elif kind == "session_end":
                self._session_end(item)
            elif kind == "intent":
                if self.state is not None:
                    self._state(self.state.write_intent, item)
            elif kind == "report":
                line = report.format_line(item)
                self.report_f.write(line + "\n")
                self.journal_f.write(report.journal_line(item) + "\n")
                if self.state is not None:
                    self._state(self.state.write_record, item)
                if self.summary is not None:
                    self.summary.add(item)
                if isinstance(item, report.StartupReport):
                    # not a trading record (docs/design.md 6.7); the console already has the
                    # reconciliation's summary from the log line
                    self.startup = item
                else:
                    self.n_reports += 1
                    self.records.append(item)
                    for feed in self.report_feeds:
                        feed.append(item)
                    if self.echo:
                        self._print(console.short_line(item))
                self._notify(item)
                if self.kill is not None:
                    self.kill.on_record(item)
                    self._check_kill()
            elif kind == "killed":
                self._write_killed(*item)
            elif kind == "rearm" and self.kill is not None:
                f = self.kill.rearm(self.summary, self.valuer)
                self._echo_log(f"risk: kill switch re-armed ({item}): loss and drawdown now count from "
                               f"equity {f['equity']:.6g} {self.kill.ref}; held outside the primaries "
                               f"{f['outside']:.6g} {self.kill.ref}")
            elif kind == "opp":
                if self.opp_f is None:
                    self.opp_f = _private_open(self.run_dir / "opportunities.jsonl")
                self.opp_f.write(item + "\n")
        if self._progress_open:
            print(flush=True)
        for f in (self.report_f, self.journal_f, self.engine_f, self.opp_f):
            if f is not None:
                f.flush()
        if self.state is not None:
            self.state.close()

    def _echo_log(self, text: str) -> None:
        line = _log_line(text)
        self.engine_f.write(line + "\n")
        if self.echo:
            self._print(line)

    def _check_kill(self) -> None:
        if self.kill is None or self.summary is None:
            return
        trip = self.kill.check(self.summary, self.valuer)
        if trip is not None:
            self._echo_log(f"risk: KILL SWITCH tripped: {trip['reason']}; no new signal from now "
                           f"(equity {trip['equity']:.6g} {self.kill.ref}, high {trip['high']:.6g})")

    def _write_killed(self, trip: dict, action: str, inflight: str) -> None:
        import json
        import types

        import risk
        ts_ms = time.time_ns() // 1_000_000
        now = self.kill.figures(self.summary, self.valuer) if self.kill else None
        line = risk.killed_line(ts_ms, trip, self.kill.ref if self.kill else "", action, self.summary, inflight, now)
        self.report_f.write(line + "\n")
        rec = {"status": "KILLED", "ts_ms": ts_ms, "kind": trip["kind"], "reason": trip["reason"],
               "action": action, "in_flight": inflight, "ref": self.kill.ref if self.kill else ""}
        rec.update({k: trip[k] for k in ("equity", "high", "loss", "drawdown", "consecutive", "outside",
                                         "pnl", "held", "unpriced")})
        if now:
            rec["after"] = {k: now[k] for k in ("equity", "outside", "pnl", "held")}
        rec["session_pnl"] = dict(self.summary.pnl)
        rec["session_held"] = dict(self.summary.held)
        self.journal_f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.summary.kills.append(line)
        if self.echo:
            self._print(line)
        # the listeners (alerts: KILLED is an alerting status) get it as a record
        self._notify(types.SimpleNamespace(status="KILLED", ts_ms=ts_ms, corr=0, triangle=(), profit=None,
                                           error=line, reason=trip["reason"]))

    def stop(self) -> None:
        self.q.put(("stop", None))

    def session_end(self, facts: dict) -> None:
        """After the summary: write summary.json and, when facts['html_report'], summary.html
        (session_report.py; matplotlib is imported here, on this thread, once trading has
        stopped)."""
        self.q.put(("session_end", facts))

    def _session_end(self, facts: dict) -> None:
        import json
        with _private_open(self.run_dir / "summary.json") as f:
            f.write(json.dumps(facts, indent=1, default=str) + "\n")
        if not facts.get("html_report"):
            return
        for f in (self.report_f, self.journal_f):
            f.flush()
        t = time.perf_counter()
        try:
            import session_report
            path = session_report.write_session(self.run_dir)     # 0600 like the rest
            line = _log_line(f"run: session report {path} ({time.perf_counter() - t:.1f}s)")
        except Exception as e:    # a report that cannot be drawn never fails the session
            line = _log_line(f"run: session report failed: {e.__class__.__name__}: {e}")
        self.engine_f.write(line + "\n")
        if self.echo:
            self._print(line)

    def remove_if_unused(self) -> bool:
        """After a start that never traded (a failure or Ctrl-C during start-up, whose lines
        the console already showed): remove the run folder this writer made. Call after
        the thread has stopped."""
        for f in (self.report_f, self.journal_f, self.engine_f):
            f.close()
        if not self.created or self.n_reports:
            return False
        import shutil
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.parent_created:
            try:
                self.run_dir.parent.rmdir()       # only if empty
            except OSError:
                pass
        return True


def _private_open(path: Path):
    """Open for appending, created 0600 (owner only), line-buffered."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return open(fd, "a", buffering=1, encoding="utf-8")


def start_simulator(cfg, creds: dict, log, on_proc=None) -> tuple[subprocess.Popen, str, str]:
    """Start the simulator (`python -m sim`) on loopback with freshly generated credentials (nothing to leak: they
    exist only in this process and the child's environment). Returns (process, base_url,
    ca_file): with [sim] tls = true the simulator serves https/wss and ca_file is its test
    CA's certificate (printed in its start line as ca=PATH), otherwise ""."""
    s = cfg.sim
    env = dict(os.environ, SIM_API_KEY=creds["key"], SIM_API_SECRET=creds["secret"],
               SIM_API_PASSPHRASE=creds["passphrase"])
    args = [sys.executable, "-m", "sim", "--port", str(s["port"]), "--seed", str(s["seed"]),
            "--symbols", s["symbols"],
            "--balances", ",".join(f"{k}={v}" for k, v in s["balances"].items()),
            "--taker-fee", repr(s["taker_fee"]), "--update-rate", repr(s["update_rate"]),
            "--mispricing-rate", repr(s["mispricing_rate"]), "--mispricing-bps", repr(s["mispricing_bps"]),
            "--take-delay-ms", str(s["take_delay_ms"])] + s["extra_args"].split()
    if s["cpus"]:
        args += ["--cpus", ",".join(map(str, s["cpus"]))]
    if s["tls"]:
        args.append("--tls")
    # its own session: a Ctrl-C in the terminal reaches the engine only, which stops the
    # simulator itself once nothing is in flight (with the same signal, the simulator died
    # under triangles still running, and a start-up then failed connecting to it)
    proc = subprocess.Popen(args, cwd=str(HERE), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if on_proc is not None:
        on_proc(proc)        # the caller can stop it even if start-up is interrupted below
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("sim: serving "):
            url = line.split()[2]
            ca = next((w[3:] for w in line.split() if w.startswith("ca=")), "")
            log(f"run: simulator pid {proc.pid}: {line.strip()}")
            threading.Thread(target=_drain_child, args=(proc, log), daemon=True, name="sim-out").start()
            return proc, url, ca
    proc.kill()
    raise SystemExit(f"run: the simulator did not start (last output: {line.strip()!r})")


def _drain_child(proc, log):
    for line in proc.stdout:
        log("sim: " + line.rstrip())


# What a cold start costs, said before it starts (README, "Performance": measured with
# profiles/bench_startup.py on the project's 2-core host; a slower machine takes longer).
COLD_COMPILE_HINT = "75 s on a busy 2-core machine"
COLD_NOTICE = (f"run: first start of this code: compiling the Numba kernels into the cache, about "
               f"{COLD_COMPILE_HINT} (later starts load them in about a second); Ctrl-C stops cleanly")


class Shared:
    """Every preallocated array and fd, allocated once here and passed to the threads."""


_RELEASE_LOCK = threading.Lock()   # Engine._release_fds


LINK_LIVE_S = 5.0     # a public link "gets frames" when one of its books got one this recently


def book_health(state, px, sz, now_ns: int, silent_ns: int, per_link: int) -> tuple[int, int, int]:
    """(synced, crossed, silent) book counts for the status line. Main thread, from
    book_state and the top of each book, once per status line: nothing on the hot path.
    - crossed: SYNCED with best bid >= best ask (the evaluate kernel refuses it, EVC_CROSSED;
      the hot thread resyncs one that stays crossed, books.book_scan_crossed);
    - silent: SYNCED, not crossed, no level2 frame (nor snapshot) for silent_ns while another
      book of its public link got one within LINK_LIVE_S. Links carry consecutive runs of
      `per_link` symbols (maint.plan_links). Without a trade feed, this is what "receives
      nothing while its symbol trades" can mean: the link delivers, this book gets nothing;
    - synced: SYNCED and neither. The rest are EMPTY or RESYNCING (waiting for a snapshot).
    Reads race the hot thread's writes; a status line may be one frame out of date."""
    import books
    live = state["status"] == books.BOOK_SYNCED
    bid_sz, ask_sz = sz[:, books.SIDE_BID, 0], sz[:, books.SIDE_ASK, 0]
    crossed = live & (bid_sz > 0) & (ask_sz > 0) & (px[:, books.SIDE_BID, 0] >= px[:, books.SIDE_ASK, 0])
    recv = state["recv_ns"]
    starts = np.arange(0, len(recv), per_link)
    newest = np.repeat(np.maximum.reduceat(recv, starts), per_link)[:len(recv)] if len(recv) else recv
    silent = live & ~crossed & (now_ns - recv > silent_ns) & (now_ns - newest < LINK_LIVE_S * 1e9)
    return int((live & ~crossed & ~silent).sum()), int(crossed.sum()), int(silent.sum())


def allocate(cfg, uni, balances_dec: dict, run_id: int, rest_url: str) -> Shared:
    import books
    import executor
    import hotctx
    import l2wire
    import maint
    import opportunity
    import orderkern
    import paperbook
    import pipeline
    import rings
    import risk
    import slots
    import topics
    import triangles

    sh = Shared()
    sh.t0 = T0
    n = len(uni.symbols)
    sh.universe = uni
    sh.rest_url = rest_url
    sh.ca_file = ""                 # TLS: CAs to trust (run.Engine.start sets it; "" = system store)
    sh.stop = threading.Event()
    sh.book_state, sh.book_px, sh.book_sz = books.alloc_books(n, cfg.book_depth)
    sh.pend, sh.pctl = books.alloc_pending(seq_jump_max=cfg.max_seq_jump)
    sh.changes = l2wire.alloc_changes()
    sh.l2hdr = l2wire.alloc_l2hdr()
    sh.params = triangles.alloc_params(cfg.min_profit_bps, cfg.max_book_age_ms, cfg.max_levels,
                                       max_scan=cfg.max_scan, search_tol_bps=cfg.search_tol_bps)
    sh.cands = triangles.alloc_candidates(max(64, int(np.diff(uni.sym_tri_start).max(initial=0)) + 1))
    sh.evc = triangles.alloc_eval_counters()
    sh.balances = uni.ccy_array(balances_dec)
    sh.max_start = uni.ccy_array(cfg.max_start)
    sh.slots = slots.alloc_inflight(cfg.slots)
    sh.exec_state = executor.alloc_exec(cfg.slots)
    sh.sig_rings = [rings.alloc_ring(rings.SIGNAL_DTYPE, 8) for _ in range(cfg.slots)]
    sh.fill_rings = [rings.alloc_ring(rings.FILL_DTYPE, 1024) for _ in range(cfg.slots)]
    sh.snap_levels = 100   # level2_100 (docs/kucoin.md 3.7)
    # a fresh snapshot must leave every side above the refill threshold, or each book would
    # ask for another snapshot every retry interval (docs/design.md 4)
    books.check_book_params(cfg.book_depth, sh.snap_levels, books.REFILL_MIN)
    sh.snap_ring = rings.alloc_ring(maint.snapshot_dtype(sh.snap_levels), 64)
    sh.snap_req = rings.alloc_ring(maint.SNAP_REQ_DTYPE, 1 << max(6, (2 * n - 1).bit_length()))
    sh.counters = pipeline.alloc_counters()
    sh.pstate = pipeline.alloc_pstate(run_id)
    sh.sig_stage = np.zeros(1, rings.SIGNAL_DTYPE)
    sh.control = np.zeros(4, np.int64)   # main thread writes: [0] halt new signals, [1] retrigger ns
    sh.control[1] = int(cfg.retrigger_ms * 1_000_000)
    sh.read_ahead = getattr(cfg, "read_ahead", 1)  # hotctx.T_READ_AHEAD (docs/design.md 6.1)
    sh.tri_last_ns = np.full(uni.ntri, -(1 << 62), np.int64)   # hot thread: last signal per triangle
    sh.reeval = np.zeros(n, np.int8)                               # hot thread: symbols to look at again
    sh.tri_bound = np.full(max(1, uni.ntri), -np.inf)             # hot thread: last top-of-book bound (bps)
    sh.hot_acc = np.zeros((cfg.slots, 3, 2))                       # hot thread: per leg (filled base, notional)
    sh.hot_acc_corr = np.zeros(cfg.slots, np.uint64)               # hot thread: corr those totals belong to
    # no signal while any cell lies in the future: executor k cell k (429 reset, rejection
    # back-off, rate budget), maint (rate budget), the log thread (kill switch), the unwind
    # thread (while an unwind order is out); risk.py's table
    sh.rate_backoff_ns = np.zeros(risk.n_cells(cfg.slots), np.int64)
    sh.fill_stage = np.zeros(1, rings.FILL_DTYPE)                  # hot thread: the FILL record being routed
    sh.slot_fds = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(cfg.slots)]
    sh.hot_wake_fd = os.eventfd(0, os.EFD_NONBLOCK)
    sh.maint_wake_fd = os.eventfd(0, os.EFD_NONBLOCK)
    sh.pipe_args = pipe_args(sh)
    sh.snap_args = (sh.book_state, sh.book_px, sh.book_sz, sh.pend, sh.pctl, sh.snap_levels, sh.counters)
    (sh.opp_state, sh.opp_params, sh.opp_cand, sh.opp_cap, ring_buf, ring_ctrl,
     sh.opp_ctl) = opportunity.alloc(uni.ntri, len(uni.currencies),
                                     getattr(cfg, "opportunity_floor_bps", 0.0), cfg.max_book_age_ms,
                                     cfg.max_levels, getattr(cfg, "opportunities", True),
                                     max_scan=cfg.max_scan, search_tol_bps=cfg.search_tol_bps)
    sh.opp_ring = (ring_buf, ring_ctrl)          # hot -> "opp" thread (opportunity.Journal)
    # paper legs' levels, exec k -> hot (paperbook.py); paper_applied: hot thread
    sh.paper_rings, sh.paper_applied, sh.paper_scratch = paperbook.alloc(cfg.slots)
    # leg 0's request built in the kernel (orderkern.py): empty and off until Engine.start
    # fills them (the signer and the order path are not known here)
    for name, a in orderkern.alloc(cfg.slots, uni.ntri).items():
        setattr(sh, name, a)
    sh.symtable = topics.SymbolTable(uni.symbols)
    sh.hot_table = hotctx.Table(sh, sh.symtable)   # the same arrays by address, for hot_chunk
    return sh


def pipe_args(sh) -> tuple:
    """pipeline.on_level2's arrays after (frame, sym, recv_ns), in its argument order."""
    import books

    uni = sh.universe
    return (sh.changes, sh.l2hdr, sh.book_state, sh.book_px, sh.book_sz, sh.pend, sh.pctl,
            books.REFILL_MIN, uni.symtab, uni.tris, uni.sym_tri_start, uni.sym_tri_list,
            sh.balances, sh.max_start, sh.params, sh.cands, sh.evc, sh.slots, sh.pstate,
            sh.counters, sh.sig_stage, sh.control, sh.tri_last_ns, sh.reeval,
            sh.rate_backoff_ns, sh.tri_bound)


def warm_up(sh) -> float:
    """Compile (or load from cache) every kernel with the exact production argument types,
    on scratch copies, before any link opens (docs/design.md 9: a compile on the hot thread
    stalls it for milliseconds). Returns seconds taken."""
    import books
    import hotctx
    import pipeline
    import rings
    import slots
    import wsread

    t0 = time.perf_counter()
    scratch = hotctx.private_copy(sh)   # the same universe; copies of what the kernels write
    args = pipe_args(scratch)
    sym = 0
    sym_name = sh.universe.symbols[sym]
    frame = np.frombuffer(
        ('{"type":"message","topic":"/market/level2:%s","subject":"trade.l2update","data":'
         '{"changes":{"asks":[["1.5","2","12"]],"bids":[["1.4","1","11"]]},"sequenceEnd":12,'
         '"sequenceStart":11,"symbol":"%s","time":1}}' % (sym_name, sym_name)).encode(), np.uint8)
    # the chunk entry, over a table of the copies (a WebSocket text frame holding `frame`)
    tab = hotctx.Table(scratch, sh.symtable)
    ws = np.frombuffer(wsread.text_header(len(frame)) + frame.tobytes(), np.uint8).copy()
    hotctx.hot_chunk(tab.tab, ws, len(ws), time.monotonic_ns(), hotctx.alloc_result())
    snap = np.zeros(1, sh.snap_ring[0].dtype)
    snap[0]["sym"] = sym
    snap[0]["seq"] = 10
    snap[0]["n_bid"] = snap[0]["n_ask"] = 1
    snap[0]["px"][0, 0], snap[0]["px"][1, 0] = 1.4, 1.5
    snap[0]["sz"][0, 0], snap[0]["sz"][1, 0] = 1.0, 1.0
    sargs = (scratch.book_state, scratch.book_px, scratch.book_sz, scratch.pend, scratch.pctl,
             sh.snap_levels, scratch.counters)
    pipeline.hot_snapshot(snap, *sargs)
    hotctx.hot_chunk(tab.tab, ws, len(ws), time.monotonic_ns(), hotctx.alloc_result())
    scratch.reeval[:] = 1
    hotctx.hot_reeval(tab.tab, time.monotonic_ns())
    uni = sh.universe          # the keep-warm's read of the real arrays (reads only)
    hotctx.touch_real(sh.book_px, sh.book_sz, sh.book_state, uni.tris, uni.sym_tri_start, uni.sym_tri_list)
    scratch.fill_stage[0]["kind"] = rings.FILL_MATCH
    hotctx.hot_route_fill(tab.tab, 0)
    rings.warm_ring_kernels((sh.sig_rings[0], sh.fill_rings[0], sh.snap_ring, sh.snap_req,
                             sh.paper_rings[0], sh.opp_ring))
    st, px, sz = args[2], args[3], args[4]
    books.walk_buy_funds(px, sz, sym, 1.0, 0.0001)
    books.walk_sell_size(px, sz, sym, 1.0)
    books.best_bid(px, sz, sym)
    books.book_scan_crossed(st, px, sz, 1, 1, np.zeros(64, np.int32), 0, 64)   # hot.HotLoop._scan_crossed
    import opportunity
    import paperbook
    con = np.zeros(1, paperbook.CONSUME_DTYPE)     # paper legs' levels (executors, hot)
    paperbook.walk_levels(px, sz, sym, books.SIDE_ASK, 1.0, 0.0001, con[0]["px"], con[0]["sz"])
    paperbook.apply_held(con[0], st, px, sz)
    opportunity.close_all(0, scratch.tri_last_ns, scratch.opp_state, scratch.opp_ring[0],
                          scratch.opp_ring[1], scratch.opp_ctl, 1)
    books.book_reset(st, sym)
    tbl = slots.alloc_inflight(len(sh.slots))
    s = slots.try_acquire(tbl, np.uint64(1), np.int32(0), np.int32(0), np.int32(1), np.int32(2), np.int32(0))
    slots.release(tbl, s)
    slots.is_busy(tbl, 0)
    slots.undo_acquire(tbl, 0)
    del scratch
    return time.perf_counter() - t0


class Engine:
    def __init__(self, cfg, log_writer: LogWriter, cold_notice_logged: bool = False):
        self.cfg = cfg
        self.cold_notice_logged = cold_notice_logged   # main() said it before importing Numba
        self.lw = log_writer
        self.log = log_writer.log
        self.sim_proc = None
        self.ca_file = ""               # TLS: the CA file every connection trusts ("" = system store)
        self.sh = None
        self.stop_requested = threading.Event()
        # wakes the loop of Engine.run at once: a stop, a pause or resume request, a kill trip
        self.attention = threading.Event()
        self.starting = True          # main() turns Ctrl-C into KeyboardInterrupt while set
        self.children = []            # kernel-cache workers (kernelcache.Prefill)
        self.thread_failure = ""
        self.stop_reason = ""
        self.paused = False          # control[0] = 1 by pause() (docs/design.md 12)
        self.pause_source = ""
        self.killed: dict | None = None    # the kill switch's trip while not resumed
        self.kill_pending: dict | None = None
        self.kills = 0
        self._requests: list = []    # ("pause" | "resume", source), applied by Engine.run
        self.exit_code = None
        self.keep_sim_running = False   # tests: the caller stops the simulator (reads it first)
        threading.excepthook = self._thread_died

    def fatal(self, line: str) -> None:
        """A failure that retrying cannot fix (a TLS certificate that fails verification on
        a WebSocket endpoint): one line, then a clean stop; exit 1."""
        if not self.thread_failure:
            self.thread_failure = line
            self.log(f"run: failed: {line}")
        self.stop_requested.set()

    # -- operator controls (docs/design.md 12) ----------------------------------------------
    # Callable from any thread (a signal handler, an operator endpoint): each only records the
    # request and wakes the thread running Engine.run, the one writer of control[0].
    def request_stop(self, reason: str = "") -> None:
        if reason and not self.stop_reason:
            self.stop_reason = reason
        self.stop_requested.set()
        self.attention.set()

    def pause(self, source: str = "operator") -> None:
        """Stop signalling new triangles; books, evaluation and in-flight triangles go on."""
        self._requests.append(("pause", source))
        self.attention.set()

    def resume(self, source: str = "operator") -> None:
        """Signal again after pause() or a kill-switch trip (whose limits re-arm from now)."""
        self._requests.append(("resume", source))
        self.attention.set()

    def state(self) -> str:
        if self.killed is not None:
            return "KILLED (paused)"
        return "PAUSED" if self.paused else "RUNNING"

    def unwind_leftovers(self, reason: str) -> None:
        """The hook the kill switch calls after the in-flight triangles ended: sell what the
        session holds outside the start currencies back into them (unwind = market,
        docs/design.md 6.7), per currency into the primary it came from; otherwise they stay
        held and reported."""
        if self.unwinder is None:
            self.log(f"run: unwind off: leftovers stay held ({reason})")
            return
        held = {c: v for c, v in list(self.summary.held.items()) if v > 0.0}
        if not held:
            self.log(f"run: nothing held to unwind ({reason})")
            return
        start = self.cfg.ref_currency if self.cfg.ref_currency in self.cfg.primary_quotes \
            else self.cfg.primary_quotes[0]
        self.unwinder.request([(v, c) for c, v in held.items() if c != start], start, 0, f"KILLED: {reason}")
        self.log(f"run: unwinding what the session holds into {start} ({reason}): "
                 + ", ".join(f"{v:.8g} {c}" for c, v in held.items()))

    def _thread_died(self, args) -> None:
        """An engine thread raised: never silent. Log it (the traceback names code, not
        data: our exceptions carry no secrets), then stop the session cleanly; exit 1."""
        import traceback
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        self.thread_failure = f"thread {name} died: {args.exc_type.__name__}: {args.exc_value}"
        self.log(f"run: FATAL {self.thread_failure}\n{text}")
        self.request_stop(self.thread_failure)

    def start(self) -> None:
        import cascade  # noqa: F401  (import errors surface before any network I/O)
        import executor
        import hot
        import kucoin
        import maint
        import report
        import tlsio
        import risk
        import universe
        from signer import Signer

        cfg = self.cfg
        t_start = time.perf_counter()
        self.log(cfg.describe().replace("\n", " | "))
        prefill = self._start_prefill()
        if cfg.cpus:
            # Every engine thread shares the GIL, so one or two cores are all it can use;
            # pinning keeps other processes (the simulator, on a test host) off them.
            os.sched_setaffinity(0, set(cfg.cpus))
        if cfg.venue == "sim":
            creds = {"key": "sim-" + pysecrets.token_hex(8), "secret": pysecrets.token_hex(16),
                     "passphrase": pysecrets.token_hex(8)}
            self.sim_proc, rest_url, ca_file = start_simulator(cfg, creds, self.log,
                                                               on_proc=lambda p: setattr(self, "sim_proc", p))
            signer = Signer(creds["key"], creds["secret"], creds["passphrase"], 3)
        else:
            rest_url, ca_file = cfg.rest_url, cfg.ca_file
            s = cfg.secrets
            signer = Signer(s.api_key, s.api_secret, s.api_passphrase, s.key_version)
        self.ca_file = ca_file
        if rest_url.startswith("https://") and cfg.tls_io == "held" and not tlsio.available():
            self.log(f"run: tls_io = held is not possible here ({tlsio.WHY_NOT}); TLS goes through the ssl module")
        self.client = client = kucoin.KucoinClient(rest_url, signer, ca_file=ca_file)
        offset = client.sync_clock()
        syms = client.symbols()
        only = set(cfg.symbols) if cfg.symbols else None
        enabled = [d for d in syms if d.get("enableTrading") and (only is None or d["symbol"] in only)]
        try:
            fee_rows = client.trade_fees([d["symbol"] for d in enabled])
            fees = {k: v["takerFeeRate"] for k, v in fee_rows.items()}
        except kucoin.KucoinError as e:
            self.log(f"run: trade-fees failed ({e}); using base-fee for every symbol")
            fees = {}
            try:
                cfg.engine["default_taker_fee"] = float(client.base_fee()["takerFeeRate"])
            except kucoin.KucoinError as e2:
                self.log(f"run: base-fee failed too ({e2}); default_taker_fee = {cfg.default_taker_fee}")
        uni = universe.Universe(enabled, cfg.primary_quotes, fees, cfg.default_taker_fee,
                                only_symbols=only)
        summ = uni.summary()
        balances, totals = {}, {}
        for a in client.accounts(type="trade"):
            balances[a["currency"]] = balances.get(a["currency"], 0) + a["available"]
            totals[a["currency"]] = totals.get(a["currency"], 0) + a["balance"]
        self.log(f"run: clock offset {offset} ms; {len(enabled)} symbols enabled; universe "
                 f"{summ['symbols']} symbols, {summ['currencies']} currencies, {summ['triangles']} "
                 f"triangles {summ['per_primary']}; balances "
                 + ", ".join(f"{c}={balances.get(c, 0)}" for c in cfg.primary_quotes))
        if uni.ntri == 0:
            raise SystemExit("run: no triangle in the universe: check primary_quotes and symbols")
        self._check_money_losing(balances)
        run_id = int(time.time()) & 0xFFFFFFFF
        sh = self.sh = allocate(cfg, uni, balances, run_id, rest_url)
        sh.client = client
        sh.ca_file = ca_file
        sh.tls_warm = None
        if rest_url.startswith("https://") and cfg.tls_io == "held" and cfg.warm_interval_us > 0:
            # keep-warm of the TLS record code too (tlsio.WarmPair; ~0.15 s, mostly importing
            # trustme). A/B in profiles/README.md, TLS: tick-to-fire p50 161/168 -> 154/134 us
            sh.tls_warm = tlsio.WarmPair.make()
        sh.run_id = run_id
        self._apply_requests()       # a pause signal during start-up
        # docs/design.md 12: the rate budget (every response's gw-ratelimit-* headers) and the
        # rejection back-off, shared by the threads that read responses
        rk = cfg.risk
        sh.budget = risk.RateBudget(triangle_need=risk.ORDER_WEIGHT * 3 * cfg.slots + rk["rate_reserve"])
        sh.budget.reserve = rk["rate_reserve"]
        for st in client.rate_limits_by_path():
            sh.budget.observe_headers(*st)
        client.on_headers = sh.budget.observe_headers
        sh.rejects = risk.RejectBackoff(rk["reject_backoff_ms"], rk["reject_backoff_max_ms"])
        warm_s = self._warm(sh, prefill)
        self.log(f"run: kernels warm in {warm_s:.2f}s")
        self.summary = report.SessionSummary(mode=cfg.mode)
        import holdings
        self.lw.valuer = holdings.Valuer(uni, sh.book_px, sh.book_sz)
        self.lw.summary = self.summary
        unwind_requests = self._reconcile(cfg, client, uni, enabled, fees, totals, run_id, signer)
        self.unwinder = None
        if cfg.unwind == "market":
            import unwind
            self.unwinder = unwind.Unwinder(sh, cfg, client, self.lw.emit, self.log, run_id)
        self.kill = risk.KillSwitch(rk, cfg.ref_currency, cfg.primary_quotes,
                                    risk.StopCell(sh.rate_backoff_ns, risk.cell_kill(cfg.slots)),
                                    on_trip=self._on_trip)
        self.lw.check_s = rk["kill_check_ms"] / 1000.0
        self.lw.kill = self.kill
        self.log("run: kill switch: " + ", ".join(
            f"{k} = {rk[k]}" for k in ("kill_max_loss", "kill_trailing_drawdown", "kill_max_consecutive_failed",
                                       "kill_max_held", "kill_action", "kill_inflight"))
            + f" ({cfg.ref_currency}); rate budget: a triangle starts while the spot pool has "
            f"{sh.budget.need} weight left")
        import holdings
        self.valuer = holdings.Valuer(uni, sh.book_px, sh.book_sz)   # main/metrics threads read

        self.maint = maint.MaintLoop(client, uni.symbols, cfg.book_depth, sh.snap_req, sh.snap_ring,
                                     sh.maint_wake_fd, sh.hot_wake_fd, sh.stop, self.log,
                                     levels=str(sh.snap_levels), ca_file=ca_file, on_fatal=self.fatal,
                                     budget=sh.budget,
                                     cell=risk.StopCell(sh.rate_backoff_ns, risk.cell_maint(cfg.slots)),
                                     clock_resync_s=cfg.clock_resync_s, reserve=rk["rate_reserve"])
        self.executors = [executor.Executor(k, sh, cfg, signer, client, self.lw.emit, self.log,
                                            intent=self.lw.intent, unwinder=self.unwinder)
                          for k in range(cfg.slots)]
        for ex in self.executors:
            ex.connect()
        self._leg0_kernel(sh, cfg, signer, client)
        self.hot = hot.HotLoop(sh, self.maint, self.executors, cfg, self.log)
        self.threads = [threading.Thread(target=self.maint.run, name="maint", daemon=True),
                        threading.Thread(target=self.hot.run, name="hot", daemon=True)]
        self._start_study(cfg, sh, enabled, fees, balances)
        self.threads += [threading.Thread(target=ex.run, name=f"exec{k}", daemon=True)
                         for k, ex in enumerate(self.executors)]
        if self.unwinder is not None:
            self.threads.append(threading.Thread(target=self.unwinder.run, name="unwind", daemon=True))
        self.links_expected = len(maint.plan_links(uni.symbols)) + 1   # public links + private
        self.started_unix = time.time()
        self._start_services()
        sys.setswitchinterval(cfg.switch_interval_us / 1e6)
        for t in self.threads:
            t.start()
        for t in self.service_threads:
            t.start()
        for link_syms in maint.plan_links(uni.symbols):
            self.maint.request_link("public", link_syms)
        self.maint.request_link("private", [])
        if self.unwinder is not None:
            for req in unwind_requests:   # earlier sessions' leftovers (docs/design.md 6.7)
                self.unwinder.request(*req)
        self.t0 = time.monotonic()
        tls = ""
        if rest_url.startswith("https://"):
            held = cfg.tls_io == "held" and tlsio.available()
            tls = (f", TLS ({'system CA store' if not ca_file else 'ca_file ' + ca_file}; reads and writes "
                   f"{'keep the GIL' if held else 'through the ssl module'}"
                   f"{'; TLS keep-warm on' if sh.tls_warm is not None else ''})")
        self.log(f"run: started in {time.perf_counter() - t_start:.2f}s: {cfg.mode} mode on {cfg.venue}, "
                 f"{cfg.slots} slots, fire_from={cfg.fire_from}{tls}")

    def _leg0_kernel(self, sh, cfg, signer, client) -> None:
        """leg0_build = kernel (with fire_from = hot, where leg 0 leaves from the hot thread):
        give orderkern's arrays the universe's leg plans, the signer's pad states, the order
        path and Host header, and have the client keep the clock offset in the kernel's cell
        (docs/design.md 9). Otherwise the arrays stay off and leg 0 is sized in Python."""
        import executor
        import orderkern

        ex = self.executors[0]
        on = cfg.leg0_build == "kernel" and cfg.fire_from == "hot"
        n = orderkern.fill(vars(sh), executor.leg_plans(sh.universe), signer, ex.path_b,
                           ex.conns[0].host_header, on, ex.ioc_fmts)
        client.offset_cell = sh.ok_ctl[orderkern.C_OFFSET:orderkern.C_OFFSET + 1]
        client.clock_offset_ms = client.clock_offset_ms
        if on and cfg.leg0_send == "kernel":
            # each slot's leg-0 connection keeps its descriptor (and SSL*) in the kernel's
            # cell (OrderConn.wire's setter); -1 with tls_io = ssl, where Python writes
            sh.ok_ctl[orderkern.C_TLS:orderkern.C_TLS + 4] = orderkern.tls_fns()
            for ex in self.executors:
                ex.conns[0].attach_kernel(sh.ok_info[ex.slot:ex.slot + 1])
            sh.ok_ctl[orderkern.C_SEND] = 1
        if on:
            wrote = ("and written " if sh.ok_info["fd"][0] >= 0 else "")
            self.log(f"run: leg 0 sized, signed, framed {wrote}in the chunk kernel for {n} of "
                     f"{sh.universe.ntri} triangles (the others in Python)")

    def _reconcile(self, cfg, client, uni, enabled, fees, totals, run_id, signer) -> list:
        """The start-up reconciliation (docs/design.md 6.7, recovery.py): before trading, what
        earlier sessions left (orders in flight, active orders, leftovers) is looked up,
        reported and written to the journal; returns the unwind requests for later."""
        import recovery
        if cfg.venue == "sim":
            # a fresh simulator every run: nothing earlier can be on its books
            account = "sim"
            path = self.lw.run_dir / "state.jsonl"
            prior = recovery.Prior()
        else:
            account = recovery.account_label(cfg.rest_url, signer.api_key if hasattr(signer, "api_key")
                                              else cfg.secrets.api_key)
            path = HERE / cfg.log_dir / "state" / f"{account}.jsonl"
            prior = recovery.load(path)
        state = recovery.StateLog(path, uni, run_id, lock=cfg.venue != "sim")
        su, recovered, requests, carry, unresolved = recovery.reconcile(
            client, cfg, prior, enabled, fees, totals, self.log, account)
        state.compact(prior, carry, set(prior.dead))
        self.lw.state = state
        for rec in recovered:
            self.lw.emit(rec)
        self.lw.emit(su)
        self.log("run: " + su.text())
        return requests

    def _check_money_losing(self, balances: dict) -> None:
        """docs/design.md 12: settings that lose money by construction. config.py refused the
        ones it can see; max_start above the account's balance needs the balances. With
        [risk] i_accept_losses = true each is logged instead."""
        import config
        cfg = self.cfg
        found = config.balance_problems(cfg.max_start, balances, cfg.primary_quotes)
        if not cfg.risk["i_accept_losses"]:
            if found:
                raise config.ConfigError([f"{cfg.path}: {w}; lower it, or set [risk] i_accept_losses = true "
                                          f"if you mean it" for w in found])
            return
        found = config.money_losing_settings(cfg.engine, cfg.risk) + found
        self.log("run: [risk] i_accept_losses = true: accepted " + ("; ".join(found) if found else
                                                                     "(no setting needs it now)"))

    def _on_trip(self, trip: dict) -> None:
        """The log thread's kill switch tripped (signalling already stopped by its cell):
        wake Engine.run to finish the job."""
        self.kill_pending = trip
        self.attention.set()

    def _busy(self) -> int:
        import slots
        sh = self.sh
        return sum(1 for k in range(len(sh.slots)) if slots.is_busy(sh.slots, k))

    def _wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._busy():
            time.sleep(0.01)
        return not self._busy()

    def _handle_kill(self, trip: dict) -> bool:
        """A trip (docs/design.md 12): signalling is stopped (the kill cell) and paused
        (control[0]); in-flight triangles finish, or stop between legs with kill_inflight =
        cancel; the unwind hook; the KILLED line; then stop (True) or stay paused."""
        import slots
        sh, rk = self.sh, self.cfg.risk
        self.kills += 1
        self.killed = trip
        self.paused = True
        self.pause_source = "kill switch"
        sh.control[0] = 1
        busy = self._busy()
        self.log(f"run: KILL SWITCH: {trip['reason']}; {busy} triangle(s) in flight "
                 f"({'finishing' if rk['kill_inflight'] == 'finish' else 'stopping between legs'})")
        wait_s = 2 * self.cfg.fill_timeout_ms / 1000 + 1
        if rk["kill_inflight"] == "cancel" and busy:
            slots.request_cancel_all(sh.slots)
        if not self._wait_idle(wait_s):
            n = slots.request_cancel_all(sh.slots)
            self.log(f"run: {n} triangle(s) still in flight: cancel flag set, they abort between legs")
            self._wait_idle(wait_s)
        slots.clear_cancel_all(sh.slots)
        left = self._busy()
        inflight = f"{busy} ended" + (f", {left} still running" if left else "")
        self.unwind_leftovers(f"kill switch: {trip['kind']}")
        action = rk["kill_action"]
        self.lw.killed(trip, action, inflight)
        if action == "stop":
            self.log("run: kill_action = stop: ending the session")
            return True
        self.log("run: kill_action = pause: trading paused, books and evaluation go on; SIGUSR2 resumes "
                 "(the limits then count from that moment), SIGINT/SIGTERM/SIGHUP end the session")
        return False

    def _apply_requests(self) -> None:
        while self._requests:
            what, source = self._requests.pop(0)
            if what == "pause":
                if self.paused:
                    self.log(f"run: pause ({source}): already {self.state()}")
                    continue
                self.paused, self.pause_source = True, source
                self.sh.control[0] = 1
                self.log(f"run: PAUSED by {source}: no new triangle; {self._busy()} in flight finish; "
                         f"books and evaluation go on (SIGUSR2 resumes)")
            elif what == "resume":
                if not self.paused:
                    self.log(f"run: resume ({source}): not paused")
                    continue
                if self.killed is not None:
                    self.lw.rearm(source)
                    self.killed = None
                self.paused, self.pause_source = False, ""
                self.sh.control[0] = 0
                self.log(f"run: RESUMED by {source}")

    def _start_study(self, cfg, sh, symbols, fees, balances) -> None:
        """record = true: the feed recorder ("rec" thread, feed.py); always: the opportunity
        journal ("opp" thread, opportunity.py). Both only poll (no wake-up per frame)."""
        import feed
        import opportunity
        self.recorder = None
        self.study_stop = threading.Event()
        self.mono_to_utc_ns = time.time_ns() - time.monotonic_ns()
        if cfg.record:
            self.recorder = feed.Recorder(self.lw.run_dir / "feed.zst", {
                "venue": cfg.venue, "mode": cfg.mode, "config": feed.config_text(cfg.engine),
                "symbols": symbols, "fees": fees, "default_taker_fee": cfg.default_taker_fee,
                "balances": balances, "slots": cfg.slots, "snap_levels": sh.snap_levels,
                "universe": sh.universe.summary(), "run_id": int(sh.pstate[1] >> 24)})
            self.hot.recorder = self.recorder
            self.threads.append(threading.Thread(target=self.recorder.run, args=(sh.stop,),
                                                 name="rec", daemon=True))
            self.log(f"run: recording the feed to {self.recorder.path.name}")
        reports = collections.deque()
        self.lw.report_feeds.append(reports)
        self.opp_journal = opportunity.Journal(sh, self.lw.emit_opportunity, reports,
                                               self.mono_to_utc_ns)
        self.threads.append(threading.Thread(target=self.opp_journal.run, args=(self.study_stop,),
                                             name="opp", daemon=True))

    def _start_services(self) -> None:
        """The optional metrics endpoint and alert webhook, each on a thread of its own
        (started with the others; stopped by stop_services). Neither is called by the hot
        thread: the log thread hands them records, they read the shared arrays."""
        cfg = self.cfg
        self.service_threads = []
        if cfg.metrics_port:
            import metrics
            self.metrics = metrics.Metrics(self, cfg.metrics_host, cfg.metrics_port)
            self.lw.listeners.append(self.metrics.observe)
            self.service_threads.append(threading.Thread(target=self.metrics.serve, name="metrics",
                                                         daemon=True))
            self.log(f"run: metrics on http://{cfg.metrics_host}:{self.metrics.port}/metrics")
        if cfg.alert_url:
            import alerts
            import pipeline
            self.alerter = alerts.Alerter(
                cfg.alert_url, cfg.alert_format, cfg.alert_chat_id,
                os.environ.get(cfg.alert_token_env, "") if cfg.alert_format == "telegram" else "",
                cfg.alert_statuses, cfg.alert_link_down_s, self.log,
                name=f"triarb {cfg.mode} {cfg.venue}")
            self.alerter.watch_links(self.sh.counters, pipeline.C, self.links_expected)
            self.lw.listeners.append(self.alerter.on_record)
            self.service_threads.append(threading.Thread(target=self.alerter.run, name="alerts",
                                                         daemon=True))
            self.log(f"run: alerts to {self.alerter.describe()} on {','.join(cfg.alert_statuses)}, "
                     f"links down > {cfg.alert_link_down_s:g} s, session summary")

    def stop_services(self) -> None:
        """Stop the metrics and alert threads (after the summary alert is queued)."""
        alerter = getattr(self, "alerter", None)
        if alerter is not None:
            alerter.stop()
        m = getattr(self, "metrics", None)
        if m is not None and any(t.name == "metrics" and t.is_alive() for t in self.service_threads):
            m.close()
        elif m is not None:
            m.server.server_close()
        for t in getattr(self, "service_threads", []):
            if t.is_alive():
                t.join(timeout=5)
        self.service_threads = []

    def _start_prefill(self):
        """On a cold Numba cache: say so at once, and start the workers that compile the
        kernel groups in parallel while the simulator and REST start-up run (kernelcache)."""
        import kernelcache
        if not kernelcache.is_cold():
            return None
        if not self.cold_notice_logged:
            self.log(COLD_NOTICE)
        prefill = kernelcache.Prefill()
        self.children.append(prefill)
        return prefill

    def _warm(self, sh, prefill) -> float:
        """warm_up, after the workers have put the subtrees under the hot thread's entry
        kernels in the cache; progress on the console meanwhile. Returns seconds."""
        import console
        import kernelcache
        t0 = time.perf_counter()
        if prefill is None:
            return warm_up(sh)
        total = kernelcache.N_GROUPS + 1
        shown = -1
        while not prefill.critical_done():
            prefill.poll(0.5)
            k = len(prefill.done)
            if k != shown or self.lw.console:
                shown = k
                self.lw.progress(f"run: compiling kernels {console.bar(k, total)} {k}/{total} "
                                 f"{time.monotonic() - prefill.t0:.0f}s")
        for why in prefill.failed:
            self.log(f"run: a kernel-cache worker failed ({why}); compiling here instead")
        k = len(prefill.done)
        self.lw.progress(f"run: compiling kernels {console.bar(k, total)} {k}/{total} "
                         f"{time.monotonic() - prefill.t0:.0f}s: the entry kernels that join them")
        import numba.core.event as nev
        lw = self.lw

        class Shown(nev.Listener):     # names each kernel warm_up compiles here, as it starts
            def on_start(self, event):
                fn = event.data["dispatcher"].py_func
                if fn.__module__.startswith("numba") or "<locals>" in fn.__qualname__:
                    return       # Numba's own helpers and closures: not worth a line
                name = f"{fn.__module__}.{fn.__qualname__}"
                lw.progress(f"run: compiling kernels {console.bar(k, total)} {k}/{total} "
                            f"{time.monotonic() - prefill.t0:.0f}s: {name}")

            def on_end(self, event):
                pass
        shown_listener = Shown()
        nev.register("numba:compile", shown_listener)
        try:
            warm_up(sh)
        finally:
            nev.unregister("numba:compile", shown_listener)
        prefill.stop()       # anything it had not finished, warm_up has just compiled
        self.lw.progress(f"run: compiling kernels {console.bar(total, total)} {total}/{total} "
                         f"{time.monotonic() - prefill.t0:.0f}s: done", final=True)
        return time.perf_counter() - t0

    def status_line(self, prev, dt) -> str:
        import books
        import console
        import maint
        import pipeline
        c = self.sh.counters
        C = pipeline.C
        sh = self.sh
        st = sh.book_state
        n_sync, n_crossed, n_silent = book_health(
            st, sh.book_px, sh.book_sz, time.monotonic_ns(),
            int(self.cfg.silent_book_s * 1e9), maint.TOPICS_PER_LINK)
        del books
        state = ""
        if self.killed is not None:
            state = f"KILLED (paused): {self.killed['kind']}: {self.killed['reason']} | "
        elif self.paused:
            state = f"PAUSED ({self.pause_source}) | "
        k = self.kill.last if getattr(self, "kill", None) is not None else {}
        extra = (f" | equity {k['equity']:+.6g} {self.cfg.ref_currency} held-out {k['outside']:.6g}"
                 if k else "")
        if getattr(sh, "budget", None) is not None:
            extra += f" | rate {sh.budget.describe(time.monotonic_ns())}"
        return console.status_line(
            msgs_per_s=(c[C["msgs"]] - prev[C["msgs"]]) / dt, n_synced=n_sync, n_books=len(st),
            book_state=st, counters=c, C=C, summary=self.summary, valuer=self.valuer,
            ref=self.cfg.ref_currency, n_crossed=n_crossed, n_silent=n_silent, state=state, extra=extra)

    def _opportunity_summary(self) -> str:
        """The opportunity table (opportunity.py), once every triangle has reported."""
        import opportunity
        if getattr(self, "opp_journal", None) is None:
            return ""
        self.study_stop.set()
        for t in self.threads:
            if t.name == "opp":
                t.join(timeout=5)
        time.sleep(0.05)            # the log thread indexes the last reports
        self.opp_journal.finish(time.monotonic_ns())
        tb = opportunity.table(self.opp_journal.opps)
        c = self.sh.opp_ctl
        return ("\n" + opportunity.render_table(tb, self.cfg.opportunity_floor_bps)
                + f"\n  opened {int(c[opportunity.OPP_CTL_OPENED])} closed "
                f"{int(c[opportunity.OPP_CTL_CLOSED])} dropped {int(c[opportunity.OPP_CTL_DROPPED])}"
                " (opportunities.jsonl: one line each)")

    def run(self) -> int:
        """The main thread's loop: status lines, operator requests (pause, resume), a kill
        switch's trip, run_seconds, and the stop (docs/design.md 6.6, 12)."""
        cfg = self.cfg
        prev = self.sh.counters.copy()
        last = time.monotonic()
        next_status = last + cfg.status_interval_s
        while True:
            self.attention.wait(max(0.0, next_status - time.monotonic()))
            self.attention.clear()
            if self.stop_requested.is_set():
                break
            self._apply_requests()
            if self.kill_pending is not None:
                trip, self.kill_pending = self.kill_pending, None
                if self._handle_kill(trip):
                    break
            now = time.monotonic()
            if now >= next_status:
                self.log(self.status_line(prev, now - last))
                prev, last = self.sh.counters.copy(), now
                next_status = now + cfg.status_interval_s
            if cfg.run_seconds and now - self.t0 >= cfg.run_seconds:
                break
        return self.shutdown()

    def stop_children(self) -> None:
        """Stop every child process still running (kernel-cache workers, the simulator)."""
        for ch in self.children:
            ch.stop()
        proc = self.sim_proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def session_facts(self, valuer) -> dict:
        """What summary.json keeps of a session: the summary, the counters, and the rate of
        each currency in ref_currency at the best bids at its end (session_report.py values
        PnL with them)."""
        import pipeline
        cfg, sh, ref = self.cfg, self.sh, self.cfg.ref_currency
        rates = {}
        for ccy in sh.universe.currencies:
            r = valuer.rate(ccy, ref)
            if r is not None:
                rates[ccy] = r
        return {"mode": cfg.mode, "venue": cfg.venue, "ref_currency": ref, "config": Path(cfg.path).name,
                "started_unix": getattr(self, "started_unix", None), "ended_unix": time.time(),
                "rates_to_ref": rates, "summary": self.summary.as_dict(),
                "counters": {k: int(v) for k, v in zip(pipeline.HOT_COUNTERS, sh.counters)},
                "html_report": bool(cfg.html_report)}

    def _release_fds(self) -> None:
        """Once the engine's threads have stopped: close the order connections, the hot
        thread's epoll and the eventfds. A process that runs engine after engine (the test
        suite) ran out of file descriptors without it. If a thread is still running, nothing
        is closed: it could still use them."""
        sh = self.sh
        if sh is None or any(t.is_alive() for t in self.threads if t.name != "opp"):
            return
        with _RELEASE_LOCK:
            # once: a second close of the same numbers could close another engine's
            # descriptors that reuse them (shutdown can be reached from two threads)
            if getattr(self, "_fds_released", False):
                return
            self._fds_released = True
        for ex in getattr(self, "executors", None) or ():
            for c in ex.conns:
                c.close()
        hot = getattr(self, "hot", None)
        if hot is not None:
            hot.ep.close()
        for fd in sh.slot_fds + [sh.hot_wake_fd, sh.maint_wake_fd]:
            try:
                os.close(fd)
            except OSError:
                pass

    def shutdown(self) -> int:
        import slots
        if self.exit_code is not None:          # already shut down (a test harness calls it too)
            return self.exit_code
        sh = self.sh
        why = f" ({self.stop_reason})" if self.stop_reason else ""
        self.log(f"run: stopping{why}: no new signals; waiting for in-flight triangles "
                 f"({self._busy()} in flight)")
        sh.control[0] = 1
        if getattr(self, "recorder", None) is not None:
            self.recorder.halt()
        deadline = time.monotonic() + 2 * self.cfg.fill_timeout_ms / 1000 + 1
        while time.monotonic() < deadline and any(slots.is_busy(sh.slots, k) for k in range(len(sh.slots))):
            time.sleep(0.01)
        if any(slots.is_busy(sh.slots, k) for k in range(len(sh.slots))):
            n = slots.request_cancel_all(sh.slots)
            self.log(f"run: {n} triangle(s) still in flight: cancel flag set, they abort between legs")
            deadline = time.monotonic() + 2 * self.cfg.fill_timeout_ms / 1000 + 1
            while time.monotonic() < deadline and any(slots.is_busy(sh.slots, k) for k in range(len(sh.slots))):
                time.sleep(0.01)
        if getattr(self, "unwinder", None) is not None:
            # leftovers of the last triangles (an ABORTED one included) are sold while the
            # books are still live (docs/design.md 6.7)
            if not self.unwinder.drain(max(10.0, 2 * self.cfg.order_lookup_ms / 1000)):
                self.log("run: unwinds still running at shutdown: their leftovers stay held "
                         "(the next start lists them)")
        sh.stop.set()
        for fd in sh.slot_fds + [sh.hot_wake_fd, sh.maint_wake_fd]:
            os.eventfd_write(fd, 1)
        for t in self.threads:
            if t.name != "opp" and t.ident is not None:   # a Ctrl-C during start-up may
                t.join(timeout=5)                          # come before start()
        import holdings
        valuer = holdings.Valuer(sh.universe, sh.book_px, sh.book_sz)
        self.summary.state = self.state() + (f" by {self.pause_source}" if self.paused and not self.killed else "")
        text = self.summary.render(valuer, self.cfg.ref_currency) + self._opportunity_summary()
        self.log("run: session summary\n" + text)
        if getattr(self, "alerter", None) is not None:
            self.alerter.summary("session summary\n" + text)
        self.log("run: counters " + " ".join(f"{k}={int(v)}" for k, v in zip(
            __import__("pipeline").HOT_COUNTERS, sh.counters) if v))
        import triangles
        self.log("run: evaluation " + " ".join(f"{k}={int(sh.evc[v])}" for k, v in (
            ("triangles", triangles.EVC_TRIANGLES), ("not_synced", triangles.EVC_NOT_SYNCED),
            ("stale", triangles.EVC_STALE), ("empty", triangles.EVC_EMPTY),
            ("crossed", triangles.EVC_CROSSED), ("no_edge", triangles.EVC_NO_EDGE),
            ("no_size", triangles.EVC_NO_SIZE), ("no_profit", triangles.EVC_NO_PROFIT),
            ("below_bps", triangles.EVC_BELOW_BPS), ("candidates", triangles.EVC_CANDIDATES),
            ("out_full", triangles.EVC_OUT_FULL), ("inexact", triangles.EVC_INEXACT))))
        self.lw.session_end(self.session_facts(valuer))     # summary.json, summary.html
        self._release_fds()
        if self.sim_proc is not None and not self.keep_sim_running:
            self.sim_proc.terminate()
            try:
                self.sim_proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.sim_proc.kill()
        self.stop_services()
        if self.thread_failure:
            self.log(f"run: stopped because {self.thread_failure}")
            self.exit_code = 1
        elif self.killed is not None:
            # docs/design.md 12: a session that ends killed (kill_action = stop, or paused by
            # the kill switch and never resumed) says so to whoever started it
            self.log(f"run: stopped after the kill switch tripped: {self.killed['reason']}")
            self.exit_code = EXIT_KILLED
        else:
            self.exit_code = 0
        return self.exit_code


EXIT_KILLED = 3     # the session ended with the kill switch tripped (docs/design.md 12)

# docs/design.md 12: every catchable signal whose default would end the process ends the
# session the clean way (in-flight triangles reported, the summary), never a crash;
# SIGUSR1 pauses, SIGUSR2 resumes. Faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) are not
# caught, nor SIGPIPE (Python ignores it: a broken socket is an OSError).
STOP_SIGNALS = tuple(getattr(signal, n) for n in (
    "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGXCPU",
    "SIGXFSZ", "SIGPWR", "SIGIO", "SIGSTKFLT") if hasattr(signal, n))
PAUSE_SIGNAL = signal.SIGUSR1
RESUME_SIGNAL = signal.SIGUSR2


def install_signals(eng) -> None:
    """Main thread only (Python runs handlers there). Each handler records the request and
    wakes Engine.run; nothing else runs inside it."""
    def on_stop(signum, _frame):
        eng.request_stop(signal.Signals(signum).name)
        if getattr(eng, "starting", False):
            # start-up (compiling kernels, REST, connections) has no loop that looks at the
            # flag: stop it where it is; nothing has traded yet
            raise KeyboardInterrupt

    def on_pause(signum, _frame):
        eng.pause(signal.Signals(signum).name)

    def on_resume(signum, _frame):
        eng.resume(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop)
    signal.signal(PAUSE_SIGNAL, on_pause)
    signal.signal(RESUME_SIGNAL, on_resume)


USAGE = """usage: python run.py CONFIG.ini          run the engine (try: python run.py sim.ini)
       python run.py --check CONFIG.ini  validate CONFIG.ini and exit (no network, no secret needed)
       python run.py -h | --help

  sim.ini            paper trading against the bundled simulator: no keys, no internet
  live.example.ini   a template for KuCoin (copy it; secrets come from the environment)

options:
  --check                    print the effective config (secrets hidden), the environment
                             variables a start will read and whether each is set; exit 0 if
                             the file is valid, 2 if not
  --allow-readable-secrets   start a live KuCoin session even though the ini holds a literal
                             secret and other users can read the file (otherwise refused)

Ctrl-C or SIGTERM stops cleanly: no new signals, in-flight triangles finish, a session summary,
exit 0. Reports go to <log_dir>/<UTC start>/: report.log, journal.jsonl, engine.log and
summary.html (`python report.py runs/` for every session). README.md has the rest.
"""


def _missing_module():
    """The first engine dependency that cannot be imported, as (name, error text), or None."""
    import importlib
    for name in ("numpy", "numba", "simdjson", "websocket", "urllib3"):
        try:
            importlib.import_module(name)
        except ImportError as e:
            return name, str(e)
    return None


def _venv_hint(name: str, err: str) -> str:
    return (f"run: cannot import {name} ({err}). Run inside the project's virtual environment: "
            f"`. .venv/bin/activate` (made once by `python3 -m venv .venv && . .venv/bin/activate "
            f"&& pip install -r requirements.txt`), then try again.")


def main(argv: list[str]) -> int:
    args = list(argv[1:])
    if any(a in ("-h", "--help") for a in args):
        print(USAGE, end="")
        return 0
    check = "--check" in args
    allow_readable = "--allow-readable-secrets" in args
    rest = [a for a in args if a not in ("--check", "--allow-readable-secrets")]
    unknown = [a for a in rest if a.startswith("-")]
    if unknown or len(rest) != 1:
        bad = f"run.py: unknown option {unknown[0]}\n" if unknown else ""
        print(bad + "usage: python run.py CONFIG.ini   (try: python run.py sim.ini; "
              "python run.py --help for more)", file=sys.stderr)
        return 2
    from config import ConfigError, check_notes, load_config, secret_file_problem
    try:
        cfg = load_config(rest[0], require_secrets=not check)
    except ConfigError as e:
        print("config error:\n  " + "\n  ".join(e.problems), file=sys.stderr)
        return 2
    if check:
        print(cfg.describe())
        for line in check_notes(cfg):
            print(line)
        print(f"run: {rest[0]} is valid")
        return 0
    exposed = secret_file_problem(cfg.path)
    if exposed:
        if cfg.venue == "kucoin" and cfg.mode == "live" and not allow_readable:
            print(f"run: refusing a live start: {exposed} (or pass --allow-readable-secrets)",
                  file=sys.stderr)
            return 2
        print(f"run: WARNING: {exposed}", file=sys.stderr)
    import kernelcache
    cold = kernelcache.quick_is_cold()     # before Numba's import (a second on a fresh clone)
    run_dir = HERE / cfg.log_dir / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    lw = LogWriter(run_dir, console=sys.stdout.isatty())
    log_thread = threading.Thread(target=lw.run, name="log", daemon=True)
    log_thread.start()
    if cold:
        lw.log(COLD_NOTICE)
    missing = _missing_module()
    if missing is not None:
        lw.stop()
        log_thread.join(timeout=5)
        lw.remove_if_unused()
        print(_venv_hint(*missing), file=sys.stderr)
        return 2
    eng = Engine(cfg, lw, cold_notice_logged=cold)

    # Before the slow start-up (Numba warm-up): SIGUSR1/2 and SIGHUP terminate a process by
    # default, so a closed terminal or a pause sent early would otherwise kill it.
    install_signals(eng)
    if cfg.risk["i_accept_losses"]:
        lw.log("run: [risk] i_accept_losses = true: settings that lose money by construction are accepted")
    code = 1
    started = False
    try:
        eng.start()
        eng.starting = False
        started = True
        code = eng.run()
    except ConfigError as e:
        lw.log("config error:\n  " + "\n  ".join(e.problems))
        code = 2
    except KeyboardInterrupt:
        eng.starting = False
        if getattr(eng, "threads", None):
            started = True       # interrupted between the threads' start and run(): stop them
            code = eng.shutdown()
        else:
            lw.log("run: interrupted during start-up: nothing traded")
            code = 0
    except SystemExit as e:
        lw.log(str(e))
        code = 1
    except Exception as e:  # a start-up failure: one clear line, no traceback of secrets
        tls_failure = getattr(e, "tls_failure", "")   # tlsio: the URL and OpenSSL's reason
        lw.log(f"run: failed: {tls_failure}" if tls_failure else f"run: failed: {e.__class__.__name__}: {e}")
        code = 1
    finally:
        eng.starting = False
        eng.stop_children()
        if started:
            lw.log(f"run: reports in {run_dir}")
        lw.stop()
        log_thread.join(timeout=60)     # summary.html takes a few seconds after a session
        if not started:
            lw.remove_if_unused()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
