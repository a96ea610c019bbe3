"""One kept-alive HTTP/1.1 connection for placing orders, written by hand for speed.

Owner: one executor slot each, one connection per leg (the slot's executor thread, or the
hot thread when it fires a leg itself; never both on one leg: Executor.claim decides).

Why not urllib3 here: docs/design.md 9 measured urllib3's request path at ~100 us from
"decide" to bytes sent, against ~20-30 us for writing a prebuilt, signed request on a
kept-alive socket. Everything that is not on the order critical path (symbols, fees,
snapshots, order queries) goes through kucoin.py and urllib3.

What this module guarantees:
- `send()` writes the whole request or raises OrderWireError before any byte was written
  (then the order certainly did not reach KuCoin and the caller may fail the leg cleanly).
- A connection the server closed while idle (keep-alive timeout) is detected before sending
  (an idle keep-alive socket that polls readable has been closed or broken) and reopened.
- If the connection breaks after the request was written, `read_response()` raises
  ResponseLost: the order may or may not exist. The caller must then ask REST by clientOid
  (docs/kucoin.md 5.1 GET /api/v1/hf/orders/client-order/{clientOid}) - never resend blind,
  which could double the order.
- Responses with Content-Length or chunked transfer encoding are read completely, so the
  next request on the socket starts clean.

TLS (https://, KuCoin; the simulator with --tls): the handshake and certificate checks are
the ssl module's, with the context run.py made from [engine] ca_file (tlsio.client_context);
a verification failure raises OrderWireError carrying tlsio's one-line `tls_failure`. The
request is then written by SSL_write through tlsio.Held, which keeps the GIL like the plain
path's libc send (tls_io = held); responses are read by the ssl module (the executor's
blocking read). Handshakes are kept off the order path: `connect()` at start-up, and
`refresh()`, which the executor calls while its slot is idle, replaces a connection the
venue closed (or one idle too long) with a new one made aside and swapped in with one
assignment. Each TLS connection is opened by a GET /api/v1/timestamp, which takes the
server's post-handshake messages (TLS 1.3 session tickets) off the socket, so that an idle
connection's raw socket turning readable still means "closed"; the next connection resumes
the TLS session from those tickets (a shorter handshake). A fire that finds its connection
dead still reconnects inline (counted in `inline_reconnects`, timed in `last_inline_us`):
profiles/probe_deadconn.py measures what that costs.
"""
from __future__ import annotations

import ctypes
import errno
import socket
import ssl
import time
from urllib.parse import urlsplit

import tlsio

# libc send() called through ctypes.PyDLL keeps the GIL for the ~5-10 us of the syscall.
# socket.sendall releases it, and on the order critical path a release is a chance for any
# other runnable thread to take the GIL and hold it for a switch interval or more (the GIL
# convoy, docs/design.md 9; measured in profiles/bench_latency.py). A small request
# fits the socket buffer, so a non-blocking send never waits; anything unusual (EAGAIN, a
# partial write) falls back to sendall; TLS writes keep the GIL the same way (tlsio.Held).
try:
    _libc = ctypes.PyDLL(None, use_errno=True)
    _c_send = _libc.send
    _c_send.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
    _c_send.restype = ctypes.c_ssize_t
    _c_recv = _libc.recv
    _c_recv.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
    _c_recv.restype = ctypes.c_ssize_t
except (OSError, AttributeError):  # not glibc: sendall only
    _c_send = _c_recv = None
_PEEK_FLAGS = getattr(socket, "MSG_PEEK", 0) | getattr(socket, "MSG_DONTWAIT", 0)
_peek_buf = ctypes.create_string_buffer(1)
_SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


class OrderWireError(ConnectionError):
    """The request was not sent (connect failed or the socket refused the first byte).
    `tls_failure`: the one-line TLS verification failure when that was the cause."""

    def __init__(self, msg: str, tls_failure: str = ""):
        super().__init__(msg)
        self.tls_failure = tls_failure


class ResponseLost(ConnectionError):
    """The request was sent but no complete response came back: the order state is unknown."""


class Wire:
    """One open connection: the socket, its fd, TLS held I/O if any, the response buffer.
    Replaced whole (OrderConn.wire is one attribute), never mended."""

    __slots__ = ("sock", "fd", "held", "buf", "opened", "resumed", "session_kept")

    def __init__(self, sock, held):
        self.sock = sock
        self.fd = sock.fileno()
        self.held = held
        self.buf = bytearray()
        self.opened = time.monotonic()
        self.resumed = bool(getattr(sock, "session_reused", False))
        self.session_kept = False

    def stale(self) -> bool:
        """An idle kept-alive socket must not be readable: readable means EOF or error.
        For TLS too: the post-handshake messages were read when it opened (OrderConn)."""
        if self.buf:
            return True
        if self.held is not None:
            if self.held.pending():
                return True
        elif isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        if _c_recv is not None:
            # poll() without releasing the GIL: a peek that finds no data (EAGAIN) means open
            # and idle; 0 bytes means the peer closed it; bytes mean an alert or junk
            return _c_recv(self.fd, _peek_buf, 1, _PEEK_FLAGS) >= 0
        try:   # the raw socket under TLS too (socket.socket.recv, not SSLSocket.recv)
            socket.socket.recv(self.sock, 1, _PEEK_FLAGS)
            return True
        except BlockingIOError:
            return False
        except OSError:
            return True


_GONE = object()    # kernel_sent: the request's connection was replaced before it was noted


class OrderConn:
    def __init__(self, base_url: str, timeout_s: float = 5.0, ssl_context=None, tls_held: bool = True,
                 ca_file: str = ""):
        u = urlsplit(base_url)
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.host_header = u.netloc.encode()
        self.url = f"{u.scheme}://{u.netloc}"
        self.timeout_s = timeout_s
        self.tls = u.scheme == "https"
        self.ssl_context = ssl_context if ssl_context is not None or not self.tls \
            else tlsio.client_context(ca_file)
        self.ca_file = ca_file
        self.tls_held = tls_held and self.tls and tlsio.available()
        self.kernel_cell = None            # leg0_send = kernel: orderkern's fd cell (attach_kernel)
        self._wire: Wire | None = None     # the connection the next request goes on (`wire`)
        self.prev_wire: Wire | None = None  # the one before: a kernel write may have used it
        self._req_wire: Wire | None = None  # the one the last request went on (its response)
        self.session = None                # TLS session to resume on the next connection
        self.reconnects = 0                # connections replaced (inline or refresh)
        self.inline_reconnects = 0         # ... found dead by a send: a fire paid a connect
        self.last_inline_us = 0.0
        self.last_connect_us = 0.0
        self.last_used = 0.0

    @property
    def wire(self) -> Wire | None:
        return self._wire

    @wire.setter
    def wire(self, w: Wire | None) -> None:
        """Every change of connection goes through here, so the kernel's descriptor cell
        (orderkern.send_built) names the new one in the same GIL-held step, and never a
        socket this object has closed: callers close the old socket only after."""
        old = self._wire
        if old is not None and old is not w:
            self.prev_wire = old      # kept open until the next change (kernel_sent)
        self._wire = w
        if self.kernel_cell is not None:
            self._set_cell(w)

    def _set_cell(self, w: Wire | None) -> None:
        c = self.kernel_cell
        c["fd"][0] = -1
        # plain TCP, or TLS with held I/O (the kernel calls SSL_write on its SSL*, as
        # tlsio.Held.write does); with the ssl module's I/O only Python may write
        ok = w is not None and (not self.tls or w.held is not None)
        c["ssl"][0] = w.held.ssl if ok and w.held is not None else 0
        c["fd"][0] = w.fd if ok else -1

    def attach_kernel(self, cell) -> None:
        """leg0_send = kernel: keep the current connection's descriptor (and SSL*) in cell,
        a one-row view of orderkern's ok_info (ok_info[slot:slot + 1], or orderkern.cell());
        fd -1 when there is none the kernel may write on."""
        self.kernel_cell = cell
        self._set_cell(self._wire)

    def kernel_sent(self, fd: int, n: int, req: bytes, sent_ns: int) -> int:
        """The kernel wrote n > 0 bytes of req on descriptor fd (orderkern.send_built): the
        bookkeeping send() does, on the wire that descriptor belongs to (the current one,
        or the previous if refresh() swapped them since), and the rest of req if the socket
        took only part. Returns when the last byte was written (monotonic ns). Raises
        OrderWireError when that wire is gone (nothing complete was sent: a partial HTTP
        request is never executed)."""
        w = self._wire if self._wire is not None and self._wire.fd == fd else self.prev_wire
        if w is None or w.fd != fd:
            if n >= len(req):
                # the request is out but its connection can no longer be read: the order's
                # state is unknown and read_response() says so (ResponseLost)
                self._req_wire = _GONE
                return sent_ns
            raise OrderWireError("send failed: the connection was replaced during the write")
        if n < len(req):
            try:
                w.sock.sendall(req[n:])
            except OSError as e:
                if self._wire is w:
                    self.close()
                raise OrderWireError(f"send failed: {e.__class__.__name__}") from None
            sent_ns = time.monotonic_ns()
        self._req_wire = w
        self.last_used = time.monotonic()
        return sent_ns

    @property
    def sock(self):
        w = self.wire
        return None if w is None else w.sock

    # -- connection -----------------------------------------------------------------
    def open_wire(self, warm: bool = True) -> Wire:
        """A new connection (TCP, then TLS with session resumption when possible). With
        `warm` a TLS connection carries one GET /api/v1/timestamp before it is used."""
        t0 = time.perf_counter()
        raw = None
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                try:
                    raw = self.ssl_context.wrap_socket(raw, server_hostname=self.host, session=self.session)
                except ssl.SSLCertVerificationError as e:
                    reason = tlsio.verify_reason(e) or str(e)
                    line = tlsio.failure_text(self.url, reason, self.ca_file)
                    raise OrderWireError(f"connect {self.host}:{self.port}: {line}", line) from None
                except ValueError:      # a session of another context: full handshake
                    self.session = None
                    raw = self.ssl_context.wrap_socket(raw, server_hostname=self.host)
        except OrderWireError:
            raise
        except OSError as e:
            if raw is not None:
                raw.close()
            raise OrderWireError(f"connect {self.host}:{self.port}: {e.__class__.__name__}: {e}") from None
        raw.settimeout(self.timeout_s)
        w = Wire(raw, tlsio.held(raw) if self.tls_held else None)
        if self.tls and warm:
            # takes the session tickets off the socket (see the module docstring)
            try:
                self._write(w, b"GET /api/v1/timestamp HTTP/1.1\r\nHost: %s\r\n\r\n" % self.host_header)
                self._read_response(w)
            except (OSError, ValueError, IndexError) as e:
                raw.close()
                raise OrderWireError(f"connect {self.host}:{self.port}: warm-up request failed: "
                                     f"{e.__class__.__name__}: {e}") from None
            self._keep_session(w)
        self.last_connect_us = (time.perf_counter() - t0) * 1e6
        return w

    def _keep_session(self, w: Wire) -> None:
        """After a connection's first response its session tickets have been read: keep
        the session for the next connection's resumption (once per connection)."""
        if self.tls and not w.session_kept:
            w.session_kept = True
            try:
                sess = w.sock.session
            except (AttributeError, ValueError, OSError):
                return
            if sess is not None and sess.has_ticket:
                self.session = sess

    def connect(self) -> None:
        """Open the connection now (start-up): TLS handshake and warm-up included."""
        self.close()
        self.wire = self.open_wire(warm=True)
        self.last_used = time.monotonic()

    def close(self) -> None:
        w = self.wire
        self.wire = None
        self.prev_wire = None
        if w is not None:
            try:
                w.sock.close()
            except OSError:
                pass

    def _stale(self) -> bool:
        w = self.wire
        return w is None or w.stale()

    def ensure_open(self) -> None:
        if self._stale():
            self._reconnect_inline()

    def _reconnect_inline(self) -> Wire:
        """On the order path: the connection is dead and the request must go now."""
        t0 = time.perf_counter()
        if self.wire is not None:
            self.reconnects += 1
            self.inline_reconnects += 1
        self.wire = w = self.open_wire(warm=False)   # its response read takes the tickets
        self.last_used = time.monotonic()
        self.last_inline_us = (time.perf_counter() - t0) * 1e6
        return w

    def refresh(self, max_idle_s: float = 0.0) -> str:
        """Off the order path (the executor, its slot idle): replace a connection the venue
        closed, or one unused for max_idle_s (0 = never), with a new one made aside and
        swapped in by one assignment. Returns why it was replaced, or "". A firing thread
        that took the old wire just before keeps using it for that one request."""
        old = self.wire
        if old is not None and not old.stale():
            if not max_idle_s or time.monotonic() - self.last_used < max_idle_s:
                return ""
            why = f"idle {time.monotonic() - self.last_used:.0f}s"
        else:
            why = "closed by the venue" if old is not None else "not open"
        new = self.open_wire(warm=True)
        if self.wire is not old:     # a fire reconnected meanwhile: keep that one
            new.sock.close()
            return ""
        self.wire = new
        self.last_used = time.monotonic()
        if old is not None:
            self.reconnects += 1
        # the old socket is not closed here: a firing thread may hold it; it closes when
        # the last reference goes
        return why

    # -- request --------------------------------------------------------------------
    def request_bytes(self, method: str, path_with_query: str, header_block: bytes, body: bytes) -> bytes:
        """A complete HTTP/1.1 request. header_block: signed header lines from signer.py,
        each ending in CRLF (Content-Type included)."""
        return b"".join((
            method.encode(), b" ", path_with_query.encode(), b" HTTP/1.1\r\nHost: ", self.host_header,
            b"\r\n", header_block, b"Content-Length: ", str(len(body)).encode(), b"\r\n\r\n", body,
        ))

    def post_request(self, signer, path: bytes, ts_ms: int, body: bytes) -> bytes:
        """request_bytes("POST", path, signer.header_block(ts_ms, "POST", path, body), body)
        in one formatting step (the order path: orders are POSTs to a fixed path)."""
        ts = b"%d" % ts_ms
        return b"POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
            path, self.host_header, signer.post_headers(ts, path, body), len(body), body)

    def _write(self, w: Wire, req: bytes) -> None:
        sent = 0
        if w.held is not None:
            sent = w.held.write(req)          # all or nothing, GIL held
        elif _c_send is not None and not self.tls:
            sent = _c_send(w.fd, req, len(req), _SEND_FLAGS)
            if sent < 0:
                err = ctypes.get_errno()
                if err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    raise OSError(err, "send")
                sent = 0
        if sent < len(req):
            w.sock.sendall(req[sent:])

    def send(self, req: bytes) -> int:
        """Write the request; returns time.monotonic_ns() right after the last byte."""
        w = self.wire
        if w is None or w.stale():
            try:
                w = self._reconnect_inline()
            except OrderWireError:
                self.wire = None
                raise
        try:
            self._write(w, req)
        except OSError as e:
            # sendall may have written part of the request before failing; a partial HTTP
            # request is never executed by a server, so the order was not placed.
            if self.wire is w:
                self.close()
            raise OrderWireError(f"send failed: {e.__class__.__name__}") from None
        self._req_wire = w
        self.last_used = time.monotonic()
        return time.monotonic_ns()

    def read_response(self) -> tuple[int, dict, bytes]:
        """Read one response: (status, lower-cased headers, body). Raises ResponseLost."""
        w = self._req_wire or self.wire
        try:
            if w is None:
                raise ConnectionResetError("no request sent")
            if w is _GONE:
                raise ConnectionResetError("the connection the request went on was replaced")
            out = self._read_response(w)
            self._keep_session(w)
            if w.buf and self._wire is w and self.kernel_cell is not None:
                # bytes after the response: stale() now, so the next send reconnects; the
                # kernel must not write on it either
                self.kernel_cell["fd"][0] = -1
            return out
        except (OSError, ValueError, IndexError) as e:
            if self.wire is w:
                self.close()
            raise ResponseLost(f"response lost: {e.__class__.__name__}: {e}") from None

    def _read_response(self, w: Wire) -> tuple[int, dict, bytes]:
        head = self._read_until(w, b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        status = int(parts[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked(w)
        else:
            body = self._read_exact(w, int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            if self.wire is w:
                self.close()
        return status, headers, body

    # -- buffered reads ---------------------------------------------------------------
    @staticmethod
    def _fill(w: Wire) -> None:
        chunk = w.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("peer closed the connection")
        w.buf += chunk

    def _read_until(self, w: Wire, sep: bytes) -> bytes:
        while True:
            i = w.buf.find(sep)
            if i >= 0:
                out = bytes(w.buf[:i])
                del w.buf[:i + len(sep)]
                return out
            self._fill(w)

    def _read_exact(self, w: Wire, n: int) -> bytes:
        while len(w.buf) < n:
            self._fill(w)
        out = bytes(w.buf[:n])
        del w.buf[:n]
        return out

    def _read_chunked(self, w: Wire) -> bytes:
        parts = []
        while True:
            size = int(self._read_until(w, b"\r\n").split(b";")[0], 16)
            if size == 0:
                # trailers end with an empty line
                while self._read_until(w, b"\r\n"):
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(w, size))
            self._read_until(w, b"\r\n")
