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
"""
from __future__ import annotations

import ctypes
import errno
import select
import socket
import ssl
import time
from urllib.parse import urlsplit

# libc send() called through ctypes.PyDLL keeps the GIL for the ~5-10 us of the syscall.
# socket.sendall releases it, and on the order critical path a release is a chance for any
# other runnable thread to take the GIL and hold it for a switch interval or more (the GIL
# convoy, docs/design.md 9; measured in profiles/bench_latency.py). A small request
# fits the socket buffer, so a non-blocking send never waits; anything unusual (EAGAIN, a
# partial write, TLS) falls back to sendall.
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
    """The request was not sent (connect failed or the socket refused the first byte)."""


class ResponseLost(ConnectionError):
    """The request was sent but no complete response came back: the order state is unknown."""


class OrderConn:
    def __init__(self, base_url: str, timeout_s: float = 5.0):
        u = urlsplit(base_url)
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.host_header = u.netloc.encode()
        self.timeout_s = timeout_s
        self.sock = None
        self._buf = bytearray()
        self._poll = None
        self.reconnects = 0
        self.last_used = 0.0

    # -- connection -----------------------------------------------------------------
    def connect(self) -> None:
        self.close()
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.scheme == "https":
                ctx = ssl.create_default_context()
                raw = ctx.wrap_socket(raw, server_hostname=self.host)
        except OSError as e:
            raise OrderWireError(f"connect {self.host}:{self.port}: {e.__class__.__name__}: {e}") from None
        raw.settimeout(self.timeout_s)
        self.sock = raw
        self._buf.clear()
        self._poll = select.poll()
        self._poll.register(raw.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        self.last_used = time.monotonic()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._poll = None

    def _stale(self) -> bool:
        """An idle kept-alive socket must not be readable: readable means EOF or error."""
        if self.sock is None:
            return True
        if self._buf:
            return True
        if isinstance(self.sock, ssl.SSLSocket):
            if self.sock.pending():
                return True
        elif _c_recv is not None:
            # Same check as poll() below without releasing the GIL: a peek that finds no
            # data (EAGAIN) means open and idle; 0 bytes means the peer closed it.
            return _c_recv(self.sock.fileno(), _peek_buf, 1, _PEEK_FLAGS) >= 0
        return bool(self._poll.poll(0))

    def ensure_open(self) -> None:
        if self._stale():
            if self.sock is not None:
                self.reconnects += 1
            self.connect()

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

    def send(self, req: bytes) -> int:
        """Write the request; returns time.monotonic_ns() right after the last byte."""
        self.ensure_open()
        try:
            sent = 0
            if _c_send is not None and self.scheme != "https":
                sent = _c_send(self.sock.fileno(), req, len(req), _SEND_FLAGS)
                if sent < 0:
                    err = ctypes.get_errno()
                    if err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                        raise OSError(err, "send")
                    sent = 0
            if sent < len(req):
                self.sock.sendall(req[sent:])
        except OSError as e:
            # sendall may have written part of the request before failing; a partial HTTP
            # request is never executed by a server, so the order was not placed.
            self.close()
            raise OrderWireError(f"send failed: {e.__class__.__name__}") from None
        self.last_used = time.monotonic()
        return time.monotonic_ns()

    def read_response(self) -> tuple[int, dict, bytes]:
        """Read one response: (status, lower-cased headers, body). Raises ResponseLost."""
        try:
            head = self._read_until(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            status = int(parts[1])
            headers = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(b":")
                headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body = self._read_chunked()
            else:
                body = self._read_exact(int(headers.get("content-length", "0")))
            if headers.get("connection", "").lower() == "close":
                self.close()
            return status, headers, body
        except (OSError, ValueError, IndexError) as e:
            self.close()
            raise ResponseLost(f"response lost: {e.__class__.__name__}: {e}") from None

    # -- buffered reads ---------------------------------------------------------------
    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("peer closed the connection")
        self._buf += chunk

    def _read_until(self, sep: bytes) -> bytes:
        while True:
            i = self._buf.find(sep)
            if i >= 0:
                out = bytes(self._buf[:i])
                del self._buf[:i + len(sep)]
                return out
            self._fill()

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self._read_until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                # trailers end with an empty line
                while self._read_until(b"\r\n"):
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(size))
            self._read_until(b"\r\n")
