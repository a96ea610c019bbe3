"""The maintenance thread: every blocking network call the hot thread must not make.

Owner: the maintenance thread (started by run.py; `MaintLoop.run` is its loop). It does:
- open WebSocket links: bullet token (a fresh one on every connect, docs/kucoin.md 8.1),
  WebSocket handshake, welcome check (2.3), subscribe requests in batches of <= 100 topics
  (2.7), then hands the connected link to the hot thread, which owns it from then on
  (it reads the acks, data, pongs);
- fetch REST level2_100 snapshots for books the hot thread asks to resync (3.7, 3.8) and
  pass them back through the snapshot ring (SPSC, maint -> hot);
- respect KuCoin's connection budget: at most 30 new connections a minute (2.7), with a
  back-off after failures so that a dead venue is not hammered.
TLS: the endpoint the bullet announces is wss:// on KuCoin (docs/kucoin.md 2.1, 2.2); the
handshake verifies the certificate and host name against the context run.py made from
[engine] ca_file (tlsio.client_context). A verification failure is not retried: it is
reported once through `on_fatal` (run.py stops the engine with that one line).

Requests come from the hot thread through a SimpleQueue (links; rare) and a ring of
symbol ids (snapshots); results go back through a SimpleQueue (links) and the snapshot
ring, each followed by a write to the hot thread's wake eventfd.
"""
from __future__ import annotations

import collections
import itertools
import json
import queue
import socket
import time

import numpy as np
import websocket

import rings
import tlsio
from kucoin import KucoinError

LEVEL2_TOPIC = "/market/level2:"
PRIVATE_TOPICS = ("/spotMarket/tradeOrdersV2", "/account/balance")
TOPICS_PER_REQUEST = 100  # docs/kucoin.md 2.7: topics per subscribe request
TOPICS_PER_LINK = 300     # docs/kucoin.md 2.7: topics per connection
CONNECTS_PER_MINUTE = 30  # docs/kucoin.md 2.7: new connections per minute

SNAP_REQ_DTYPE = np.dtype([("sym", "i4"), ("req_ns", "i8")])


def snapshot_dtype(depth: int) -> np.dtype:
    """One REST snapshot, maint -> hot. px/sz rows: [0] bids (descending), [1] asks (ascending)."""
    return np.dtype([
        ("sym", "i4"), ("status", "i4"), ("seq", "i8"), ("ts_ms", "i8"), ("fetched_ns", "i8"),
        ("n_bid", "i4"), ("n_ask", "i4"),
        ("px", "f8", (2, depth)), ("sz", "f8", (2, depth)),
    ])


SNAP_OK = 0
SNAP_FAILED = 1


def plan_links(symbols: list[str]) -> list[list[str]]:
    """Split the public level2 symbols into links of <= 300 topics (docs/kucoin.md 2.7)."""
    return [symbols[i:i + TOPICS_PER_LINK] for i in range(0, len(symbols), TOPICS_PER_LINK)]


class Link:
    """One WebSocket connection as the hot thread sees it. Written by the hot thread only,
    after the maintenance thread has handed it over."""

    def __init__(self, kind: str, ws, connect_id: str, symbols: list[str], ping_interval_s: float,
                 ping_timeout_s: float, sub_ids: dict):
        self.kind = kind                      # "public" or "private"
        self.ws = ws
        self.fd = ws.sock.fileno()
        self.connect_id = connect_id
        self.symbols = symbols                # public: level2 symbols carried by this link
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.pending_acks = dict(sub_ids)     # request id -> topic
        now = time.monotonic()
        self.next_ping_at = now + ping_interval_s
        self.pong_deadline = 0.0              # 0 = no ping outstanding
        self.ping_id = ""
        self.opened_at = now
        self.alive = True


class LinkError(RuntimeError):
    """A link could not be opened. `tls_failure`: the one-line certificate verification
    failure when that was the cause (not transient: not retried)."""

    def __init__(self, msg: str, tls_failure: str = ""):
        super().__init__(msg)
        self.tls_failure = tls_failure


def open_link(client, kind: str, symbols: list[str], ids, timeout_s: float = 10.0,
              ssl_context=None, ca_file: str = "") -> Link:
    """Bullet -> connect -> welcome -> subscribe. Blocking; maintenance thread only.
    ssl_context: for a wss:// endpoint (default: tlsio.client_context(ca_file))."""
    bullet = client.bullet_private() if kind == "private" else client.bullet_public()
    srv = bullet["instanceServers"][0]
    connect_id = f"c{next(ids)}{time.time_ns() % 10**9}"
    # docs/kucoin.md 2.2: <endpoint>?token=<token>&connectId=<id>. The token contains '=',
    # which KuCoin accepts raw (hummingbot, kucoin-python-sdk send it unencoded).
    url = f"{srv['endpoint']}?token={bullet['token']}&connectId={connect_id}"
    sslopt = None
    if srv["endpoint"].startswith("wss://"):
        sslopt = {"context": ssl_context if ssl_context is not None else tlsio.client_context(ca_file)}
    try:
        ws = websocket.create_connection(
            url, timeout=timeout_s, skip_utf8_validation=True, enable_multithread=False,
            sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),), sslopt=sslopt)
    except (websocket.WebSocketException, OSError) as e:
        reason = tlsio.verify_reason(e)
        if reason is not None:   # the endpoint without the token: it is a credential
            line = tlsio.failure_text(srv["endpoint"], reason, ca_file)
            raise LinkError(f"{kind} link: {line}", line) from None
        raise LinkError(f"{kind} link: connect failed: {e.__class__.__name__}: {e}") from None
    try:
        first = json.loads(ws.recv())
    except (websocket.WebSocketException, OSError, ValueError) as e:
        ws.close()
        raise LinkError(f"{kind} link: no welcome: {e.__class__.__name__}: {e}") from None
    # docs/kucoin.md 2.3: the link is usable only after welcome; 2.6: 401 token invalid/expired.
    if first.get("type") != "welcome":
        ws.close()
        raise LinkError(f"{kind} link: expected welcome, got {first.get('type')} "
                        f"{first.get('code', '')} {first.get('data', '')}".rstrip())
    sub_ids = {}
    if kind == "private":
        topics = [(t, True) for t in PRIVATE_TOPICS]
    else:
        topics = [(LEVEL2_TOPIC + ",".join(symbols[i:i + TOPICS_PER_REQUEST]), False)
                  for i in range(0, len(symbols), TOPICS_PER_REQUEST)]
    for topic, private in topics:
        rid = str(next(ids))
        ws.send(json.dumps({"id": rid, "type": "subscribe", "topic": topic,
                            "privateChannel": private, "response": True}, separators=(",", ":")))
        sub_ids[rid] = topic
    ws.sock.settimeout(timeout_s)
    return Link(kind, ws, connect_id, symbols, srv["pingInterval"] / 1000.0,
                srv["pingTimeout"] / 1000.0, sub_ids)


class MaintLoop:
    """Serves the hot thread's link and snapshot requests (see module docstring)."""

    def __init__(self, client, symbols: list[str], depth: int, snap_req, snap_ring, wake_fd: int,
                 hot_wake_fd: int, stop, log, levels: str = "100", ca_file: str = "", on_fatal=None,
                 budget=None, cell=None, clock_resync_s: float = 0.0, reserve: int = 0):
        """budget: risk.RateBudget (every response feeds it through the client's on_headers);
        cell: this thread's risk.StopCell (docs/design.md 12); clock_resync_s: re-measure the
        server clock this often (docs/kucoin.md 1.4; 0 = never)."""
        self.client = client
        self.ca_file = ca_file
        self.ssl_context = None               # made at the first wss:// link
        self.on_fatal = on_fatal              # callable(line): a failure retrying cannot fix
        self.symbols = symbols
        self.depth = depth
        self.req_buf, self.req_ctrl = snap_req
        self.snap_buf, self.snap_ctrl = snap_ring
        self.wake_fd = wake_fd
        self.hot_wake_fd = hot_wake_fd
        self.stop = stop                      # threading.Event set by run.py
        self.log = log
        self.levels = levels
        self.link_requests: queue.SimpleQueue = queue.SimpleQueue()   # hot -> maint: (kind, symbols)
        self.link_results: queue.SimpleQueue = queue.SimpleQueue()    # maint -> hot: Link
        self.ids = itertools.count(1)
        self.connect_times: collections.deque = collections.deque()
        self.backoff_s = 0.0
        self._req = np.zeros(1, SNAP_REQ_DTYPE)
        self._snap = np.zeros(1, self.snap_buf.dtype)
        self.snapshots_fetched = 0
        self.snapshot_errors = 0
        self.snapshots_skipped = 0
        self.link_errors = 0
        self.budget = budget
        self.cell = cell
        self.reserve = reserve
        self.clock_resync_s = clock_resync_s
        self.next_clock_at = time.monotonic() + clock_resync_s if clock_resync_s else float("inf")
        self.clock_syncs = 0
        self.fetched_ns = np.zeros(len(symbols), np.int64)   # last snapshot fetch per symbol
        self._budget_logged_until = 0

    # -- requests from the hot thread (any thread may call these) -------------------------
    def request_link(self, kind: str, symbols: list[str]) -> None:
        self.link_requests.put((kind, symbols))
        rings.wake(self.wake_fd)

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        while not self.stop.is_set():
            rings.wait(self.wake_fd, 0.2)
            self._serve_links()
            self._serve_snapshots()
            self._resync_clock()

    # -- the rate budget (docs/kucoin.md 7.1, docs/design.md 12) --------------------------
    def _respect_budget(self, pool: str, weight: int) -> None:
        """Wait for the pool's reset when the request would not fit what the last answers
        left (a 429 would be the answer; it also costs the next request's place)."""
        if self.budget is None:
            return
        wait_s = self.budget.wait_s(pool, weight + self.reserve, time.monotonic_ns())
        if wait_s > 0.0:
            now = time.monotonic_ns()
            if now >= self._budget_logged_until:
                self._budget_logged_until = now + int(wait_s * 1e9)
                self.log(f"maint: {pool} pool low ({self.budget.describe(now)}): waiting {wait_s:.1f}s "
                         f"for its reset")
            self.stop.wait(min(wait_s, 30.0))

    def _after_request(self) -> None:
        """This thread's stop cell: the spot pool's gate for new triangles, from the shared
        budget (its own answers included)."""
        if self.cell is not None and self.budget is not None:
            self.cell.hold("budget", self.budget.triangle_gate(time.monotonic_ns()))

    def _resync_clock(self) -> None:
        """docs/kucoin.md 1.4: KuCoin refuses a timestamp more than 5 s off its clock; the
        offset measured at start-up drifts with the local clock, so it is measured again."""
        if time.monotonic() < self.next_clock_at or self.stop.is_set():
            return
        self.next_clock_at = time.monotonic() + self.clock_resync_s
        before = self.client.clock_offset_ms
        self._respect_budget("public", 9)
        try:
            after = self.client.sync_clock()
        except KucoinError as e:
            self.log(f"maint: clock re-measure failed ({e}); offset stays {before} ms")
            self.next_clock_at = time.monotonic() + min(self.clock_resync_s, 5.0)
            return
        finally:
            self._after_request()
        self.clock_syncs += 1
        if abs(after - before) >= 100:
            self.log(f"maint: clock offset {before} -> {after} ms (round trip {self.client.clock_rtt_ms:.1f} ms)")

    def _serve_links(self) -> None:
        pending = []
        while True:
            try:
                pending.append(self.link_requests.get_nowait())
            except queue.Empty:
                break
        for kind, symbols in pending:
            if self.stop.is_set():
                return
            self._respect_connect_budget()
            if self.ssl_context is None:
                self.ssl_context = tlsio.client_context(self.ca_file)
            self._respect_budget("spot" if kind == "private" else "public", 10)   # a bullet (7.1)
            try:
                link = open_link(self.client, kind, symbols, self.ids, ssl_context=self.ssl_context,
                                 ca_file=self.ca_file)
                self.backoff_s = 0.0
                self._after_request()
            except (LinkError, KucoinError, OSError) as e:
                line = getattr(e, "tls_failure", "")
                if line and self.on_fatal is not None:
                    self.link_errors += 1
                    self.on_fatal(line)
                    return
                self.link_errors += 1
                self.backoff_s = min(max(self.backoff_s * 2, 0.5), 30.0)
                self.log(f"maint: {e}; retrying in {self.backoff_s:.1f}s")
                self.stop.wait(self.backoff_s)
                self.link_requests.put((kind, symbols))
                continue
            self.link_results.put(link)
            rings.wake(self.hot_wake_fd)

    def _respect_connect_budget(self) -> None:
        now = time.monotonic()
        while self.connect_times and now - self.connect_times[0] > 60.0:
            self.connect_times.popleft()
        if len(self.connect_times) >= CONNECTS_PER_MINUTE:
            self.stop.wait(60.0 - (now - self.connect_times[0]))
        self.connect_times.append(time.monotonic())

    def _serve_snapshots(self) -> None:
        while not self.stop.is_set() and rings.ring_pop(self.req_buf, self.req_ctrl, self._req, 0):
            sym = int(self._req[0]["sym"])
            if self.fetched_ns[sym] > int(self._req[0]["req_ns"]):
                # a snapshot fetched after this request was made answers it already (the hot
                # thread asks again every 2 s while waiting, e.g. for the budget)
                self.snapshots_skipped += 1
                continue
            self._fetch(sym)

    def _fetch(self, sym: int) -> None:
        rec = self._snap[0]
        rec["sym"] = sym
        self._respect_budget("public", 2)     # level2_100: weight 2 (docs/kucoin.md 7.1)
        rec["fetched_ns"] = self.fetched_ns[sym] = time.monotonic_ns()
        try:
            snap = self.client.level2_snapshot(self.symbols[sym], depth=int(self.levels))
            rec["status"] = SNAP_OK
            rec["seq"] = int(snap["sequence"])
            rec["ts_ms"] = int(snap.get("time") or 0)
            width = rec["px"].shape[1]   # level2_100: keep all 100 so the book knows its horizon
            bids, asks = snap["bids"][:width], snap["asks"][:width]
            rec["n_bid"], rec["n_ask"] = len(bids), len(asks)
            for side, levels in ((0, bids), (1, asks)):
                for k, (p, s) in enumerate(levels):
                    rec["px"][side, k] = float(p)
                    rec["sz"][side, k] = float(s)
            self.snapshots_fetched += 1
        except (KucoinError, OSError, ValueError, KeyError) as e:
            rec["status"] = SNAP_FAILED
            self.snapshot_errors += 1
            self.log(f"maint: snapshot {self.symbols[sym]} failed: {e}")
        self._after_request()
        while not rings.ring_push(self.snap_buf, self.snap_ctrl, self._snap, 0):
            # The hot thread drains this ring every loop; full means it is far behind.
            if self.stop.wait(0.001):
                return
        rings.wake(self.hot_wake_fd)
