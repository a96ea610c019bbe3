"""The hot thread: WebSocket links, epoll, frame dispatch. Nothing here blocks.

Owner: the hot thread (run.py starts `HotLoop.run`). Per socket read, one kernel call
(hotctx.hot_chunk) cuts the WebSocket frames, parses and applies the read's level2 frames
to the books under KuCoin's sequence rules, then for each symbol they changed evaluates the
triangles through it, picks a free isolated slot and stages a signal, with leg 0's request
built (docs/design.md 6.1); at a signal it returns, leg 0 is fired right here (fire_from = hot;
executor.fire_leg), the signal is pushed to the slot's ring (eventfd wake) and the call
resumes with the next frame. The other frames come back as a list:
- private orderChange of our orders (docs/kucoin.md 4.1) are read by privwire inside the
  chunk kernel and routed by the clientOid (corr, slot, leg) to that slot's fill ring
  (hotctx.route_fill); at a leg's terminal event the kernel returns so the next leg is
  fired here; what the kernel cannot read comes back and goes through the simdjson path
  (rings.parse_client_oid, the same routing); the executor is woken by eventfd;
- private account.balance (4.2) -> balances[currency] = available;
- welcome/ack/pong/error/notice -> link bookkeeping, counters, log lines.
Timers: JSON ping every pingInterval and a pong deadline of pingTimeout (2.4): a missed
pong, a close frame or a socket error kills the link; its books go back to RESYNCING and
the maintenance thread opens a replacement with a fresh token (8.1) and resubscribes.
Books that need a snapshot (new, gap, thinned past the refill threshold) are requested
from the maintenance thread through a ring; snapshots come back through another ring.

No byte sequence on any link stops this thread. A malformed or unexpected frame is counted
(bad_frames) and logged (rate-limited, its first 120 bytes; frames carry no credential of
ours): the kernels return a status for anything (l2wire, privwire, wsread.next_frame, topics:
tests/test_fuzz.py), level2 frames whose sequences are inconsistent are rejected by books.py's
sanity rules (the book resyncs), and the Python path catches every exception pysimdjson or a
field read can raise (ValueError, RuntimeError such as BIGINT_ERROR / DEPTH_ERROR, KeyError,
TypeError, AttributeError, OverflowError, ...). The order path (leg 0 at a signal, the next
leg at a terminal fill event) is guarded apart: an exception there is counted (hot_errors)
and logged every time with the slot and corr, and the slot still goes to its executor (the
signal is pushed, the executor woken), so nothing fails silently and no slot is lost. As a
last resort an exception anywhere else in a link's read is counted, logged and the link
replaced (a fresh connection and resync), and one in the loop itself is counted and logged.
Timers also run the crossed-book scan (books.book_scan_crossed: a book crossed for
CROSSED_GRACE_S is resynced), off the per-frame path.

Writes: books, balances, counters, slot acquire fields, signal and fill rings (producer
side). Reads: slot release fields, the stop flag.
"""
from __future__ import annotations

import collections
import math
import select
import struct
import time
import traceback

import numpy as np
import simdjson
import websocket

import books
import hotctx
import maint
import paperbook
import pipeline
import rings
import risk
import slots as slotmod
import wsread

C = pipeline.C
C_EVALS = C["evals"]
C_LEG0_KERNEL = C["leg0_kernel"]
C_LEG0_WIRE = C["leg0_wire"]
L2_MARK = b'"subject":"trade.l2update"'
L2_TOPIC = b'"/market/level2:'
BALANCE_MARK = b'"subject":"account.balance"'
# A routed FILL record and the leg's running totals, read with struct on the way to the next
# leg (a numpy item read costs ~2 us cold there; rings.record_struct)
FILL_ROUTE = rings.record_struct(rings.FILL_DTYPE, ("corr", "leg", "kind", "filled_sz"))
ACC = struct.Struct("<2d")
IGNORED_CCYS_MAX = 64        # balance currencies outside the universe logged by name (then counted)
CROSSED_GRACE_S = 1.0        # a SYNCED book crossed this long is resynced (books.py, crossed books)
CROSSED_SCAN_S = 0.01        # ... checked a slice at a time, this often: CROSSED_SLICE books
CROSSED_SLICE = 64           # per call (1.6 us), every book within ~0.2 s for 1,226 symbols


def _exc_text(e: BaseException) -> str:
    """One short line: the exception and where it was raised (no locals, no frame data)."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno} {tb[-1].name}" if tb else ""
    return f"{e.__class__.__name__}: {str(e)[:160]}{where}"


class HotLoop:
    def __init__(self, sh, maint_loop, executors, cfg, log):
        """sh: run.Shared (every preallocated array); executors: per-slot objects exposing
        fire_leg0() for fire_from = hot; log: callable(str) that never blocks."""
        self.sh = sh
        self.maint = maint_loop
        self.executors = executors
        self.unwind_events = 0      # orderChange events of unwind orders (tu...), not routed
        self.log = log
        self.fire_from_hot = cfg.fire_from == "hot"
        # TLS links: SSL_read with the GIL held (tlsio.Held) or through the ssl module
        self.tls_held = getattr(cfg, "tls_io", "held") == "held"
        self.tls_warm = getattr(sh, "tls_warm", None)   # tlsio.WarmPair: keep-warm of the TLS code
        self.counters = sh.counters
        self.parser = simdjson.Parser()
        self.ep = select.epoll()
        self.links: dict[int, maint.Link] = {}
        self.sym_ids = {s.encode(): i for i, s in enumerate(sh.universe.symbols)}
        self.snap_requested = np.zeros(len(sh.universe.symbols), np.int64)  # ns of last request
        self.snap_retry_ns = 2_000_000_000
        # a symbol whose snapshot failed waits before asking again, 0.5 s doubling up to
        # snapshot_backoff_max_ms (docs/design.md 12): not again on its next frame
        risk_cfg = getattr(cfg, "risk", None) or {}
        self.snap_backoff = risk.Backoff(500_000_000, int(risk_cfg.get("snapshot_backoff_max_ms", 30000)) * 1_000_000)
        self.snap_failures = 0
        self._req = np.zeros(1, maint.SNAP_REQ_DTYPE)
        self._snap = np.zeros(1, sh.snap_ring[0].dtype)
        self._fill = sh.fill_stage            # the FILL record being routed (hotctx.route_fill)
        self._tab = sh.hot_table.tab          # every shared array by address (hotctx.py)
        self._cres = hotctx.alloc_result()    # one chunk's result cells
        self._res_mv = memoryview(self._cres)  # ... read as Python ints
        self._fill_mv = rings.record_bytes(sh.fill_stage)
        self._acc_mv = rings.record_bytes(sh.hot_acc)      # (slot, leg) -> (filled base, notional)
        assert sh.hot_acc.shape[1:] == (3, 2) and sh.hot_acc.flags.c_contiguous
        self._cres1 = hotctx.alloc_result()   # ... and a joined fragmented frame's (_on_level2)
        self.nslots = len(sh.slot_fds)
        self._last_bad_log = 0.0
        self._last_err_log = 0.0
        self._last_note_log = 0.0
        self._ignored_ccys: set[str] = set()
        self.crossed_grace_ns = int(CROSSED_GRACE_S * 1e9)
        self._next_scan = 0.0
        self._scan_at = 0
        self._crossed = np.zeros(CROSSED_SLICE, np.int32)
        self.ep.register(sh.hot_wake_fd, select.EPOLLIN)
        # keep-warm (see _keep_warm): every warm_interval_ns of idle time
        self.warm_interval_ns = int(getattr(cfg, "warm_interval_us", 0) * 1000)
        # busy polling (see run): poll without sleeping this long after each event
        self.busy_poll_ns = int(getattr(cfg, "busy_poll_us", 0) * 1000)
        self._last_warm_ns = 0
        self._warm_tri = 0
        # the kernel's keep-warm (hotctx.KernelWarm): copies of the arrays, made now (start-up)
        self._kwarm = (hotctx.KernelWarm(sh) if self.warm_interval_ns and getattr(cfg, "warm_kernel", False)
                       else None)
        if self._kwarm is not None:
            self._kwarm.touch = getattr(cfg, "warm_books", True)
        self._kwarm_refresh_ns = 0
        # start-up milestone (profiles/bench_startup.py): logged once, at the first evaluation
        self._first_eval_pending = True
        self.reads = 0                        # socket reads (wsread fill) and their ns in all
        self.read_ns = 0
        self._read_start = 0
        self.signal_read_ns = collections.deque(maxlen=100_000)   # reads that carried a frame's signal
        self.signal_entry_ns = collections.deque(maxlen=100_000)  # ... receipt -> chunk kernel entry
        # record = true: feed.Recorder (set by run.py); every socket read, link, snapshot and
        # wake-up is appended to it after it was handled (docs/design.md 2: no disk here)
        self.recorder = None
        self._rec_link_ids = 0
        self._paper_rings = (getattr(sh, "paper_rings", None)
                             if getattr(cfg, "mode", "") == "paper" else None)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        sh = self.sh
        stop = sh.stop
        spin_ns = self.busy_poll_ns
        last_event_ns = 0
        while not stop.is_set():
            if spin_ns and time.monotonic_ns() - last_event_ns < spin_ns:
                timeout = 0.0        # busy polling (busy_poll_us): do not sleep
            else:
                timeout = self._next_timer_s()
                if self.warm_interval_ns:
                    timeout = min(timeout, self.warm_interval_ns / 1e9)
            events = self.ep.poll(timeout)
            if events:
                last_event_ns = time.monotonic_ns()
            for fd, _ev in events:
                try:
                    if fd == sh.hot_wake_fd:
                        rings.drain(fd)
                        self._take_links()
                        self._take_snapshots()
                        if self._paper_rings is not None:   # paper legs' levels (paperbook.py)
                            paperbook.drain(sh, self.recorder)
                        if self.recorder is not None:   # a slot may have been released (replay.py)
                            self.recorder.reeval(time.monotonic_ns(), sh.slots["released_seq"])
                        self._reevaluate()
                        continue
                    link = self.links.get(fd)
                    if link is not None:
                        self._drain(link)
                except Exception as e:          # last resort: the loop goes on
                    self._hot_error(f"event on fd {fd}", e)
            try:
                self._timers()
            except Exception as e:
                self._hot_error("timers", e)
            if self.warm_interval_ns:
                try:
                    self._keep_warm()
                except Exception as e:
                    # an optimisation only: off for the rest of the session rather than a
                    # failure every millisecond
                    self.warm_interval_ns = 0
                    self._hot_error("keep-warm (now off)", e)
        for link in list(self.links.values()):
            self._close(link, "shutdown", replace=False)
        if self.reads:
            self.log(f"hot: {self.reads} socket reads, {self.read_ns / self.reads / 1000:.2f} us each on "
                     f"average (recv, or the SSL_read loop with its decryption)")
        for what, d in (("reads that carried a signal", self.signal_read_ns),
                        ("receipt -> chunk kernel entry, signalling calls", self.signal_entry_ns)):
            sr = sorted(d)
            if sr:
                q = lambda p: sr[min(len(sr) - 1, int(p * len(sr)))] / 1000   # noqa: E731
                self.log(f"hot: {what}: n={len(sr)} p50={q(0.5):.1f} p90={q(0.9):.1f} p99={q(0.99):.1f} us"
                         + (" (before the frame's receipt stamp)" if d is self.signal_read_ns else ""))

    def _keep_warm(self) -> None:
        """Between frames, run the chunk kernel on scratch copies (hotctx.KernelWarm, when
        warm_kernel) and then the order path on scratch data (Executor.warm), at most once
        per warm_interval. Measured (README, latency): the first fire after a pause ran ~15x
        slower than the same code in a loop; this keeps its code and data in cache. It runs
        only when the loop would otherwise sleep, so a frame waits at most one pass.
        Over TLS it also sends one request through an in-memory TLS pair (tlsio.WarmPair,
        ~10 us): the OpenSSL record and AES-GCM code of the next read and write."""
        now = time.monotonic_ns()
        if now - self._last_warm_ns < self.warm_interval_ns:
            return
        self._last_warm_ns = now
        kw = self._kwarm
        if kw is not None:
            if now >= self._kwarm_refresh_ns and kw.refresh():
                # a fresh copy of the real books now and then: their depth is what the
                # evaluation walks (1 MB for a full universe: a copy every minute)
                self._kwarm_refresh_ns = now + 60_000_000_000
            if kw.ready:
                kw.run_once()
        ntri = len(self.sh.universe.tris)
        self._warm_tri = (self._warm_tri + 1) % ntri
        self.executors[self._warm_tri % len(self.executors)].warm(self._warm_tri)
        if self.tls_warm is not None:
            self.tls_warm.run()

    def _next_timer_s(self) -> float:
        now = time.monotonic()
        t = now + 0.05
        for link in self.links.values():
            t = min(t, link.next_ping_at, link.pong_deadline or t)
        return max(0.0, t - now)

    # -- links ------------------------------------------------------------------------------
    def _take_links(self) -> None:
        while True:
            try:
                link = self.maint.link_results.get_nowait()
            except Exception:
                return
            link.reader = rd = wsread.FrameReader(link.ws.sock, held=self.tls_held)
            # bytes websocket-client read past the welcome belong to the next frames
            rd.feed(b"".join(link.ws.frame_buffer.recv_buffer))
            link.ws.frame_buffer.recv_buffer = []
            self.links[link.fd] = link
            self.ep.register(link.fd, select.EPOLLIN)
            tls = "" if not rd.tls else (", TLS, reads keep the GIL" if rd.held is not None
                                         else ", TLS, reads through the ssl module")
            self.counters[C["link_ups"]] += 1     # links up = link_ups - reconnects (metrics, alerts)
            self._rec_link_ids += 1
            link.rec_id = self._rec_link_ids
            if self.recorder is not None:
                self.recorder.link(link.rec_id, link.kind, link.connect_id, link.symbols)
            self.log(f"hot: {link.kind} link {link.connect_id} up ({len(link.symbols)} symbols{tls})")
            # Data may already sit in the socket or the TLS buffer: epoll is level-triggered
            # for the socket, but TLS-buffered bytes are invisible to it (drain handles both).
            self._drain(link)

    def _close(self, link, why: str, replace: bool = True) -> None:
        if not link.alive:
            return
        link.alive = False
        try:
            self.ep.unregister(link.fd)
        except (OSError, ValueError):
            pass
        self.links.pop(link.fd, None)
        try:
            link.ws.close(timeout=0)
        except Exception:
            pass
        if link.kind == "public":
            # Every book on the dead link is unknown from now on: back to RESYNCING, its
            # buffered updates dropped, until the new link's stream and a snapshot agree.
            for s in link.symbols:
                sym = self.sym_ids[s.encode()]
                books.book_reset(self.sh.book_state, sym)
                self.snap_requested[sym] = 0
        self.counters[C["reconnects"]] += 1
        if self.recorder is not None:
            self.recorder.down(getattr(link, "rec_id", 0))
        self.log(f"hot: {link.kind} link {link.connect_id} down: {why}")
        if replace:
            self.maint.request_link(link.kind, link.symbols)

    def _hot_error(self, what: str, e: BaseException, slot: int = -1, corr: int = -1) -> None:
        """An exception the hot thread caught outside frame parsing: counted (hot_errors) and
        logged. On the order path (slot >= 0) every one is logged with its slot and corr;
        elsewhere at most one line a second."""
        self.counters[C["hot_errors"]] += 1
        if slot >= 0:
            self.log(f"hot: ERROR {what} (slot {slot} corr {corr:x}): {_exc_text(e)}")
            return
        now = time.monotonic()
        if now - self._last_err_log > 1.0:
            self._last_err_log = now
            self.log(f"hot: ERROR {what} ({self.counters[C['hot_errors']]} so far): {_exc_text(e)}")

    def _drain(self, link) -> None:
        """Read everything the link's socket holds and handle each frame: one GIL-holding
        recv per chunk (wsread.py), then one kernel call per chunk that cuts the frames and
        runs the level2 ones through the fused kernel (hotctx.hot_chunk), returning at each
        signal so leg 0 goes out before the rest of the chunk is looked at. Other frames
        (acks, pongs, private events, control and fragmented frames) come back as a list
        and are handled here, in Python, after the chunk's level2 frames."""
        rd = link.reader
        while link.alive:
            try:
                self._read_start = t_read = time.monotonic_ns()
                n = rd.fill()
                recv_ns = time.monotonic_ns()
                self._chunk(link, rd, recv_ns)   # receipt of this chunk = of its frames
                # what a socket read costs (TLS: decryption included), summed after the
                # chunk's orders are out; logged at the end (profiles/bench_latency.py)
                self.read_ns += recv_ns - t_read
                self.reads += 1
            except wsread.LinkClosed as e:
                self._close(link, str(e))
                return
            except (websocket.WebSocketException, OSError) as e:
                self._close(link, f"{e.__class__.__name__}: {e}")
                return
            except Exception as e:
                # Last resort (a bug, not a frame: frames are handled inside): where in the
                # buffer it happened is unknown, so the link is replaced and its books resync.
                self._hot_error(f"reading {link.kind} link {link.connect_id}", e)
                self._close(link, f"internal error: {e.__class__.__name__}")
                return
            # A short read drained the socket; epoll (level-triggered) reports new bytes.
            # TLS may hold decrypted bytes epoll cannot see: keep reading while it does.
            if n < wsread.CHUNK and not rd.more():
                return

    def _chunk(self, link, rd, recv_ns: int) -> None:
        """Every complete frame in rd's buffer (one socket read), received at recv_ns."""
        res = self._cres      # reset (hotctx.reset_result) when the previous buffer was done
        tab = self._tab
        try:
            while True:
                slot = hotctx.hot_chunk(tab, rd.buf, rd.blen, recv_ns, res)
                if slot >= 0:
                    self._dispatch_signal(slot)       # guarded inside: never raises
                    # how long the read that carried this signal took (before its receipt stamp),
                    # and its receipt -> the kernel call's entry (Python, Numba's dispatcher)
                    self.signal_read_ns.append(recv_ns - self._read_start)
                    self.signal_entry_ns.append(int(res[hotctx.R_ENTRY_NS]) - recv_ns)
                elif slot == hotctx.FILL_EVENT:
                    rv = self._res_mv
                    self._after_fill(rv[hotctx.R_FILL_SLOT], rv[hotctx.R_FILL_STATUS])
                elif slot == hotctx.OTHERS_FULL:
                    self._others(link, recv_ns)
                else:
                    break
            self._after_chunk(res, rd.buf)
            self._others(link, recv_ns)
            if slot == hotctx.STREAM_ERROR:
                raise wsread.LinkClosed(wsread.stream_error(int(res[hotctx.R_STATUS])))
            pos = res[hotctx.R_POS]
            if self.recorder is not None and pos > 0:   # after the chunk's signals went out
                self.recorder.read(getattr(link, "rec_id", 0), recv_ns, rd.buf, pos)
            rd.consume(pos)
        finally:
            hotctx.reset_result(res)

    def _others(self, link, recv_ns: int) -> None:
        """The frames hot_chunk listed (not level2 updates), in order. On the private link,
        order events go first: a leg's terminal event fires the next leg, and each match
        brings two or three balance updates that would otherwise be processed before it.
        The two feeds are independent (4.1, 4.2), so their relative order carries no meaning."""
        res = self._cres
        rd = link.reader
        later = None
        for q in range(int(res[hotctx.R_NOTHER])):
            if not link.alive:
                break
            k = hotctx.R_OTHERS + 3 * q
            m = rd.message(int(res[k]), int(res[k + 1]), int(res[k + 2]))
            if m is None:
                continue      # a fragment of a message still incomplete
            op, data = m
            if op == wsread.OP_TEXT or op == wsread.OP_BINARY:
                if BALANCE_MARK in data:
                    if later is None:
                        later = []
                    later.append(data)
                    continue
                self._on_frame(link, data, recv_ns)
            elif op == wsread.OP_PING:   # RFC 6455 ping (KuCoin uses JSON pings, 2.4)
                link.ws.pong(data)
            elif op == wsread.OP_CLOSE:
                self._close(link, "close frame")
        res[hotctx.R_NOTHER] = 0
        if later:
            for data in later:
                if link.alive:
                    self._on_frame(link, data, recv_ns)

    def _after_chunk(self, res, buf) -> None:
        """What a chunk's kernel calls left for Python: the start-up milestone, snapshot
        requests, the log line of a rejected frame."""
        if self._first_eval_pending and self.counters[C_EVALS] > 0:
            # once per process, after any signal is out; then one attribute test per chunk
            self._first_eval_pending = False
            self.log(f"hot: first book evaluated {time.monotonic() - self.sh.t0:.3f}s after process start")
        for q in range(int(res[hotctx.R_NSNAP])):
            self._request_snapshot(int(res[hotctx.R_SNAPS + q]), time.monotonic_ns())
        if res[hotctx.R_BAD_START] >= 0:   # already counted by the kernel
            s = int(res[hotctx.R_BAD_START])
            self._bad(f"level2 frame rejected: {buf[s:min(s + 120, int(res[hotctx.R_BAD_END]))].tobytes()!r}",
                      count=False)

    # -- frames -----------------------------------------------------------------------------
    def _on_frame(self, link, data: bytes, recv_ns: int) -> None:
        if L2_MARK in data:
            self._on_level2(data, recv_ns)    # counted by the kernel
            return
        cnt = self.counters
        cnt[C["msgs"]] += 1
        cnt[C["bytes"]] += len(data)
        # orderChange frames of our orders were routed by the chunk kernel (hotctx.py); what
        # reaches here is a foreign clientOid, a frame privwire cannot read, or a fragmented
        # message: the general path below logs, counts or routes it
        try:
            route = self._read_frame(link, data, recv_ns)
        except Exception as e:
            # Anything pysimdjson or a field read raises: ValueError (invalid JSON, UTF-8),
            # RuntimeError (BIGINT_ERROR, DEPTH_ERROR, ...), KeyError, TypeError,
            # AttributeError (JSON of an unexpected type has no .get), OverflowError, ...
            self._bad(f"{e.__class__.__name__}: {str(e)[:120]}; frame={bytes(data[:120])!r}")
            return
        if route is not None:
            # an orderChange of ours, read into self._fill: the order path (guarded inside)
            self._route_fill(*route)

    def _read_frame(self, link, data: bytes, recv_ns: int):
        """Parse a frame and act on it, except routing an orderChange of ours: that one is
        read into self._fill and (slot, corr, leg) returned. Raises on a malformed frame."""
        cnt = self.counters
        doc = self.parser.parse(data)
        kind = doc.get("type")
        if kind == "message":
            subject = doc.get("subject")
            if subject == "orderChange":
                return self._on_order_change(doc["data"], recv_ns)
            if subject == "account.balance":
                self._on_balance(doc["data"])
            elif subject == "trade.l2update":
                # KuCoin's frames are compact JSON (docs/kucoin.md 3.6); the kernels look
                # for the compact subject. Counted and logged; the sequence gap it leaves
                # makes the book resync from a snapshot.
                self._bad(f"level2 frame not in compact form: {bytes(data[:120])!r}")
            else:
                self._bad(f"unexpected subject {str(subject)[:60]!r}")
        elif kind == "pong":
            # docs/kucoin.md 2.4 and 8.15: the pong echoes the ping's id, but KuCoin's real
            # pongs (tests/data) carry no id: one without an id answers the outstanding ping.
            pid = doc.get("id")
            if pid is None or str(pid) == link.ping_id:
                link.pong_deadline = 0.0
        elif kind == "ack":
            if link.pending_acks.pop(str(doc.get("id")), None) is not None:
                cnt[C["acks"]] += 1
        elif kind == "welcome":
            pass
        elif kind == "error":
            cnt[C["ws_errors"]] += 1
            code = doc.get("code")
            topic = link.pending_acks.pop(str(doc.get("id")), None)
            self._note(f"hot: ws error on {link.connect_id}: {str(code)[:20]} {str(doc.get('data'))[:200]}"
                       + (f" (subscribe {topic[:60]})" if topic else ""), always=topic is not None or code == 401)
            if code == 401:  # docs/kucoin.md 2.6: token invalid/expired -> new token
                self._close(link, "token rejected")
        elif kind in ("notice", "command"):
            cnt[C["notices"]] += 1
            self._note(f"hot: {kind}: {bytes(data[:200])!r}")
        else:
            self._bad(f"unknown frame type {str(kind)[:40]!r}")
        return None

    def _note(self, line: str, always: bool = False) -> None:
        """Log a venue message (error, notice): at most one a second unless `always`, so that
        a flood of them cannot flood the log (each is counted by the caller)."""
        now = time.monotonic()
        if always or now - self._last_note_log > 1.0:
            self._last_note_log = now
            self.log(line)

    def _bad(self, what: str, count: bool = True) -> None:
        """Log a bad frame (rate-limited); count it unless a kernel already did."""
        if count:
            self.counters[C["bad_frames"]] += 1
        now = time.monotonic()
        if now - self._last_bad_log > 1.0:  # never let a flood of bad frames flood the log
            self._last_bad_log = now
            self.log(f"hot: bad frame ({self.counters[C['bad_frames']]} so far): {what}")

    def _on_level2(self, data: bytes, recv_ns: int) -> None:
        """A level2 message that arrived in fragments (joined by wsread): through the chunk
        kernel as one whole frame, the one level2 path (it counts it, as for any frame)."""
        # writable: the kernel's argument type
        buf = np.frombuffer(wsread.text_header(len(data)) + data, np.uint8).copy()
        res = self._cres1
        try:
            while True:
                slot = hotctx.hot_chunk(self._tab, buf, len(buf), recv_ns, res)
                if slot >= 0:
                    self._dispatch_signal(slot)
                elif slot == hotctx.FILL_EVENT:   # garbage can carry both subjects
                    self._after_fill(int(res[hotctx.R_FILL_SLOT]), int(res[hotctx.R_FILL_STATUS]))
                else:
                    break
            self._after_chunk(res, buf)
        finally:
            hotctx.reset_result(res)

    def _reevaluate(self) -> None:
        """An executor released its slot (it wakes us): look again at symbols whose
        candidates were refused for want of a slot (pipeline.on_reeval)."""
        while True:
            slot = hotctx.hot_reeval(self._tab, time.monotonic_ns())
            if slot < 0:
                return
            self._dispatch_signal(slot)

    def _dispatch_signal(self, slot: int) -> None:
        """A staged signal for `slot`: fire leg 0 (fire_from = hot), push the signal to the
        slot's executor and wake it. Never raises (module docstring): when firing leg 0
        raised, the signal is pushed all the same and the executor, which sees that the hot
        thread did not fire, fires leg 0 itself with the same clientOid (if the first one did
        go out, the venue refuses the duplicate: docs/kucoin.md 5.2)."""
        sh = self.sh
        if self.fire_from_hot:
            # Fire leg 0 on this thread: no hand-off under the GIL before the first order
            # (docs/design.md 2 and 9). The executor reads the response.
            try:
                how = self.executors[slot].fire_leg0()
                if how:
                    self.counters[C_LEG0_KERNEL] += 1
                    if how == 2:
                        self.counters[C_LEG0_WIRE] += 1
                self.counters[C["fired_leg0"]] += 1
            except Exception as e:
                self._hot_error("firing leg 0", e, slot, int(sh.sig_stage[0]["corr"]))
        try:
            sh.sig_stage[0]["push_ns"] = time.monotonic_ns()
            buf, ctrl = sh.sig_rings[slot]
            if rings.ring_push_held(buf, ctrl, sh.sig_stage, 0):
                self.counters[C["signals"]] += 1
                rings.wake(sh.slot_fds[slot])
            else:
                # Cannot happen while a slot carries one signal at a time; counted, and the
                # slot is handed back so it is not lost (its executor never saw the signal).
                self.counters[C["ring_full"]] += 1
                slotmod.undo_acquire(sh.slots, slot)
        except Exception as e:
            self._hot_error("pushing the signal", e, slot, int(sh.sig_stage[0]["corr"]))

    def _request_snapshot(self, sym: int, now_ns: int) -> None:
        if now_ns - self.snap_requested[sym] < self.snap_retry_ns:
            return
        if sym in self.snap_backoff.not_before and not self.snap_backoff.allowed(sym, now_ns):
            return
        self.snap_requested[sym] = now_ns
        self._req[0]["sym"] = sym
        self._req[0]["req_ns"] = now_ns
        if rings.ring_push_held(self.sh.snap_req[0], self.sh.snap_req[1], self._req, 0):
            self.counters[C["resyncs"]] += 1
            rings.wake(self.sh.maint_wake_fd)
        else:
            self.snap_requested[sym] = 0  # try again on the next frame

    def _take_snapshots(self) -> None:
        sh = self.sh
        buf, ctrl = sh.snap_ring
        while rings.ring_pop_held(buf, ctrl, self._snap, 0):
            rec = self._snap[0]
            sym = int(rec["sym"])
            self.snap_requested[sym] = 0
            if rec["status"] != maint.SNAP_OK:
                # the symbol's next frame asks again once its back-off has passed
                self.snap_failures += 1
                self.snap_backoff.fail(sym, time.monotonic_ns())
                continue
            if sym in self.snap_backoff.fails:
                self.snap_backoff.ok(sym)
            if self.recorder is not None:
                self.recorder.snapshot(self._snap, time.monotonic_ns(), sh.snap_levels)
            # counted by the kernel: snapshots (synced) or snapshot_too_old
            st = pipeline.hot_snapshot(self._snap, *sh.snap_args)
            if st == pipeline.NEED_SNAPSHOT:
                self._request_snapshot(sym, time.monotonic_ns())

    # -- private feed -----------------------------------------------------------------------
    def _on_order_change(self, d, recv_ns: int):
        """An orderChange the chunk kernel handed back (docs/kucoin.md 4.1). Ours: read into
        self._fill and (slot, corr, leg) returned for routing; foreign: counted, None.
        Raises on fields that cannot be read; refuses (raises ValueError) numbers no real
        event carries (negative, infinite; a match without a positive price and size), as
        privwire does: they would size the next leg."""
        self.counters[C["private_msgs"]] += 1
        coid = d.get("clientOid") or ""
        if not isinstance(coid, str):
            raise ValueError(f"clientOid of type {type(coid).__name__}")
        route = rings.parse_client_oid(coid)
        if route is None:
            if coid.startswith("tu"):
                # an unwind order's event (unwind.client_oid): its figures come from the
                # order's answer or lookup (docs/design.md 6.7); counted, not logged
                self.unwind_events += 1
                return
            self.counters[C["fills_unrouted"]] += 1
            self.log(f"hot: orderChange for foreign clientOid {coid[:40]!r} ({str(d.get('type'))[:20]}) ignored")
            return None
        corr, slot, leg = route
        if slot >= len(self.sh.slot_fds):
            self.counters[C["fills_unrouted"]] += 1
            return None
        if not isinstance(d.get("type"), str):    # an unknown name is routed (FILL_UNKNOWN)
            raise ValueError("orderChange of ours without a string type")
        rings.fill_from_order_change(self._fill, 0, d, corr, leg, recv_ns)
        e = self._fill[0]
        for f in ("match_px", "match_sz", "filled_sz", "remain_sz", "remain_funds"):
            v = float(e[f])
            if v < 0.0 or math.isinf(v):
                raise ValueError(f"orderChange {f} = {v!r}")
        if int(e["kind"]) == rings.FILL_MATCH and not (e["match_px"] > 0.0 and e["match_sz"] > 0.0):
            raise ValueError("orderChange match without a positive matchPrice and matchSize")
        return slot, corr, leg

    def _route_fill(self, slot: int, corr: int, leg: int) -> None:
        """Route the FILL record in self._fill (read by the simdjson path) as the chunk
        kernel routes the ones it reads (hotctx.route_fill), then act on it."""
        try:
            routed = int(hotctx.hot_route_fill(self._tab, slot))
        except Exception as e:
            self._hot_error(f"routing a fill event of leg {leg}", e, slot, corr)
            rings.wake(self.sh.slot_fds[slot])
            return
        self._after_fill(slot, routed)

    def _after_fill(self, slot: int, routed: int) -> None:
        """A FILL record (self._fill) is in the slot's fill ring (hotctx.route_fill): on a
        leg's terminal event, fire the next leg right here (fire_from = hot), then wake the
        executor. Never raises: the order path's failures are counted and logged with the
        slot and corr, and the executor is woken all the same (it takes over the leg)."""
        if routed == hotctx.ROUTE_RING_FULL:
            # A fill ring holds far more events than one triangle produces; full means the
            # executor is stuck. Counted (ring_full) and logged: its REST fallback recovers.
            e = self._fill[0]
            corr, leg = int(e["corr"]), int(e["leg"])
            self._note(f"hot: fill ring of slot {slot} full; dropped kind {int(e['kind'])} for "
                       f"{rings.client_oid(corr, slot, leg)} order {e['order_id'].decode(errors='replace')}")
            return
        if routed != hotctx.ROUTED_WAKE:
            return
        corr, leg, kind, term_sz = FILL_ROUTE.unpack_from(self._fill_mv, 0)
        try:
            if self.fire_from_hot and (kind == rings.FILL_FILLED or kind == rings.FILL_CANCELED) and leg < 2:
                # The order goes out without waking the executor first (Executor.
                # fire_next_from_hot sizes it from the kernel's totals of leg `leg`'s matches).
                filled_sz, filled_funds = ACC.unpack_from(self._acc_mv, (slot * 3 + leg) * ACC.size)
                if self.executors[slot].fire_next_from_hot(corr, leg, filled_sz, filled_funds, term_sz):
                    self.counters[C["fired_next_leg"]] += 1
        except Exception as e:
            self._hot_error(f"firing leg {leg + 1} from the hot thread", e, slot, corr)
        rings.wake(self.sh.slot_fds[slot])

    def _on_balance(self, d) -> None:
        name = d.get("currency")
        if not isinstance(name, str):
            raise ValueError(f"currency of type {type(name).__name__}")
        ccy = self.sh.universe.ccy_index.get(name)
        if ccy is not None:
            v = float(d["available"])
            if not (v >= 0.0 and math.isfinite(v)):     # "NaN", "inf", negative: never real
                raise ValueError(f"available = {str(d['available'])[:40]!r}")
            self.sh.balances[ccy] = v
            self.counters[C["balances"]] += 1
        else:
            # A currency outside the universe (the account may hold anything): counted,
            # logged once per currency (the first IGNORED_CCYS_MAX names) so that a busy
            # account does not flood the log nor a stream of made-up names grow a set.
            self.counters[C["balances_ignored"]] += 1
            key = str(name)[:20]
            if key not in self._ignored_ccys and len(self._ignored_ccys) < IGNORED_CCYS_MAX:
                self._ignored_ccys.add(key)
                self.log(f"hot: balance of {key!r} ignored (not in the universe)")

    # -- timers -----------------------------------------------------------------------------
    def _timers(self) -> None:
        now = time.monotonic()
        for link in list(self.links.values()):
            if link.pong_deadline and now > link.pong_deadline:
                self.counters[C["pong_missed"]] += 1
                self._close(link, "pong timeout")
                continue
            if now >= link.next_ping_at:
                link.ping_id = f"p{time.monotonic_ns()}"
                try:
                    link.ws.send('{"id":"%s","type":"ping"}' % link.ping_id)
                except (websocket.WebSocketException, OSError) as e:
                    self._close(link, f"ping send failed: {e.__class__.__name__}")
                    continue
                link.next_ping_at = now + link.ping_interval_s
                if not link.pong_deadline:     # a new ping never extends an unanswered one's deadline
                    link.pong_deadline = now + link.ping_timeout_s
        if now >= self._next_scan:
            self._next_scan = now + CROSSED_SCAN_S
            self._scan_crossed()

    def _scan_crossed(self) -> None:
        """Resync SYNCED books that stayed crossed for CROSSED_GRACE_S (books.book_scan_crossed
        over the next CROSSED_SLICE books: measured 1.6 us a call from Python; a whole pass
        over 1,226 books at once took 11 us, a frame arriving meanwhile would wait for it)."""
        sh = self.sh
        now_ns = time.monotonic_ns()
        k = books.book_scan_crossed(sh.book_state, sh.book_px, sh.book_sz, now_ns,
                                    self.crossed_grace_ns, self._crossed, self._scan_at, CROSSED_SLICE)
        self._scan_at = (self._scan_at + CROSSED_SLICE) % len(sh.book_state)
        if k:
            self.counters[C["crossed_resyncs"]] += k
            for q in range(k):
                sym = int(self._crossed[q])
                self.snap_requested[sym] = 0
                self._request_snapshot(sym, now_ns)
            self._note(f"hot: {k} book(s) crossed for {self.crossed_grace_ns / 1e9:g}s resynced: "
                       + ", ".join(sh.universe.symbols[int(x)] for x in self._crossed[:min(k, 5)]))
