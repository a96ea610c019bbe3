"""The hot thread's WebSocket receive path: whole chunks in, frames cut by a kernel, GIL held.

Owner: the hot thread (hot.HotLoop reads every link through one FrameReader each).
websocket-client still opens the link (handshake, welcome, subscribe: maint.py) and sends
our pings; once the hot thread owns the link it reads the socket through this module.

Why (measured, profiles/results/line_profile_hot.txt and README): websocket-client's
recv_data issues three recv() syscalls per frame (2-byte header, length, payload), and
each one releases the GIL. On a hot thread that shares the GIL with executors and a log
thread, every release hands the GIL away and costs a switch interval or more to get back
(docs/design.md 9, GIL convoy). Here one non-blocking recv() through ctypes.PyDLL
(which keeps the GIL) drains whatever the kernel holds, up to 256 KiB, into a numpy
buffer, and `next_frame` (a kernel) cuts frames out of it: the public link's level2 frames
never become Python objects at all (hotctx.process_chunk walks the same buffer).
Frames from a server are never masked (RFC 6455 5.1); fragments are joined; a ping is
answered by the caller; close ends the link.

Memory stays bounded: the buffer grows for a frame larger than it (up to MAX_FRAME, 16 MiB;
a frame announcing more is a broken stream) and shrinks back to 2 x CHUNK once that frame is
consumed; a fragmented message is refused (LinkClosed) once its fragments pass MAX_FRAME.

TLS links (wss://, KuCoin; the simulator with --tls). With `held=True` (tls_io = held,
the default) the records are decrypted by SSL_read called through tlsio.Held, which keeps
the GIL like the plain path's recv: one `fill()` takes what the socket holds in one read
(read ahead on: OpenSSL's socket read takes up to ~16 KiB of records at once) and then
every record buffered (SSL_read returns one record per call), without a second syscall; a
larger backlog stays visible to epoll (level-triggered) for the next fill. Otherwise (tls_io = ssl, or held I/O not possible here)
the same loop goes through the ssl module, whose every read releases the GIL. Either way
`more()` tells whether decrypted bytes are buffered where epoll cannot see them.

Tests: tests/test_wsread.py (socketpair, every length encoding, splits, fragments,
control frames, masked frames, peer close).
"""
from __future__ import annotations

import ctypes
import errno
import socket
import ssl

import numpy as np
from numba import njit

import tlsio

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CHUNK = 1 << 18
MAX_FRAME = 1 << 24       # 16 MiB: a frame announcing more is a broken stream

# next_frame statuses
F_OK = 0
F_INCOMPLETE = 1          # need more bytes (end = bytes the frame needs from pos, 0 if unknown)
F_MASKED = 2              # a masked frame from a server (RFC 6455 5.1): broken stream
F_TOO_BIG = 3             # a frame announcing more than MAX_FRAME

try:
    _libc = ctypes.PyDLL(None, use_errno=True)
    _c_recv = _libc.recv
    _c_recv.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    _c_recv.restype = ctypes.c_ssize_t
except (OSError, AttributeError):
    _c_recv = None
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


class LinkClosed(ConnectionError):
    """The peer closed the connection or the stream is broken."""


@njit(nogil=True, cache=True, _nrt=False)
def next_frame(buf, pos, blen):
    """The RFC 6455 (5.2) frame at buf[pos:blen]. Returns (status, b0, start, end): on F_OK,
    b0 is the first header byte (opcode in the low 4 bits, FIN in 0x80) and the payload is
    buf[start:end] (end is where the next frame starts); on F_INCOMPLETE, end - pos is the
    frame's whole length when the header is complete (so the caller can make room), else 0."""
    if blen - pos < 2:
        return F_INCOMPLETE, 0, pos, pos
    b0 = np.int64(buf[pos])
    b1 = np.int64(buf[pos + 1])
    n = b1 & 0x7F
    hdr = 2
    if n == 126:
        if blen - pos < 4:
            return F_INCOMPLETE, b0, pos, pos
        n = (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3])
        hdr = 4
    elif n == 127:
        if blen - pos < 10:
            return F_INCOMPLETE, b0, pos, pos
        n = 0
        for k in range(8):
            n = (n << 8) | np.int64(buf[pos + 2 + k])
            if n > MAX_FRAME:
                return F_TOO_BIG, b0, pos, pos
        hdr = 10
    if b1 & 0x80:
        return F_MASKED, b0, pos, pos
    if n > MAX_FRAME:
        return F_TOO_BIG, b0, pos, pos
    if blen - pos < hdr + n:
        return F_INCOMPLETE, b0, pos, pos + hdr + n
    return F_OK, b0, pos + hdr, pos + hdr + n


def text_header(n: int) -> bytes:
    """The header of an unmasked, final text frame of n payload bytes (RFC 6455 5.2)."""
    if n < 126:
        return bytes((0x80 | OP_TEXT, n))
    if n < 65536:
        return bytes((0x80 | OP_TEXT, 126, n >> 8, n & 0xFF))
    return bytes((0x80 | OP_TEXT, 127)) + n.to_bytes(8, "big")


def stream_error(status: int) -> str:
    return "masked frame from the server (RFC 6455 5.1)" if status == F_MASKED \
        else "frame larger than 16 MiB announced"


class FrameReader:
    """One link's receive buffer: `buf[0:blen]` holds bytes read and not yet consumed."""

    def __init__(self, sock, held: bool = True):
        self.sock = sock
        self.fd = sock.fileno()
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.buf = np.zeros(2 * CHUNK, np.uint8)
        self.addr = self.buf.ctypes.data   # for recv: `.ctypes` builds an object per use
        self.blen = 0
        self._frag_op = -1
        self._frag = bytearray()
        self.held = None                   # tlsio.Held: GIL-holding SSL_read (TLS only)
        if self.tls:
            sock.setblocking(False)        # no read may wait (held reads keep the GIL)
            if held:
                self.held = tlsio.held(sock)
                if self.held is not None:
                    self.held.read_ahead()

    def feed(self, data: bytes) -> None:
        """Bytes read by someone else (websocket-client, past the welcome frame)."""
        self._room(len(data))
        self.buf[self.blen:self.blen + len(data)] = np.frombuffer(data, np.uint8)
        self.blen += len(data)

    def _room(self, n: int) -> None:
        if len(self.buf) - self.blen < n:   # a frame larger than the buffer is on its way
            big = np.zeros(max(2 * len(self.buf), self.blen + n), np.uint8)
            big[:self.blen] = self.buf[:self.blen]
            self.buf = big
            self.addr = big.ctypes.data

    def fill(self) -> int:
        """Read what the socket holds now, without blocking. Returns bytes read (0 if none)."""
        self._room(CHUNK)
        if self.tls:
            return self._fill_tls()
        if _c_recv is None:
            view = memoryview(self.buf)[self.blen:self.blen + CHUNK]
            try:
                n = self.sock.recv_into(view, 0, _DONTWAIT)
            except BlockingIOError:
                return 0
            except OSError as e:
                raise LinkClosed(f"recv: {e.__class__.__name__}: {e}") from None
            if not n:
                raise LinkClosed("peer closed the connection")
            self.blen += n
            return n
        n = _c_recv(self.fd, self.addr + self.blen, CHUNK, _DONTWAIT)
        if n > 0:
            self.blen += n
            return n
        if n == 0:
            raise LinkClosed("peer closed the connection")
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
            return 0
        raise LinkClosed(f"recv: {errno.errorcode.get(err, err)}")

    def _fill_tls(self) -> int:
        """Every TLS record the socket holds now, up to CHUNK bytes: SSL_read gives one
        record per call, so read until OpenSSL wants more bytes from the socket."""
        start = self.blen
        end = start + CHUNK
        h = self.held
        if h is not None:
            try:
                while self.blen < end:
                    n = h.read(self.addr + self.blen, end - self.blen)
                    if not n:
                        break
                    self.blen += n
                    if not h.has_pending():   # the next read would be a syscall: epoll decides
                        break
            except tlsio.TlsClosed as e:
                if self.blen > start:
                    return self.blen - start   # the frames before the end first
                raise LinkClosed(str(e)) from None
            return self.blen - start
        view = memoryview(self.buf)
        try:
            while self.blen < end:
                n = self.sock.recv_into(view[self.blen:end])
                if not n:
                    if self.blen > start:
                        break
                    raise LinkClosed("peer closed the connection")
                self.blen += n
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass
        except OSError as e:
            if self.blen == start:
                raise LinkClosed(f"recv: {e.__class__.__name__}: {e}") from None
        return self.blen - start

    def more(self) -> bool:
        """True when bytes are buffered where epoll cannot see them (TLS records)."""
        if not self.tls:
            return False
        h = self.held
        return (h.pending() if h is not None else self.sock.pending()) > 0

    def consume(self, pos: int) -> None:
        """Drop buf[0:pos] (frames handled); a partial frame after it moves to the front.
        A buffer grown for an oversized frame goes back to its normal size (2 x CHUNK) as
        soon as what is left fits with room for a read."""
        pos = int(pos)
        rest = self.blen - pos
        if len(self.buf) > 2 * CHUNK and rest <= CHUNK:
            small = np.zeros(2 * CHUNK, np.uint8)
            small[:rest] = self.buf[pos:self.blen]
            self.buf = small
            self.addr = small.ctypes.data
        elif rest and pos:
            self.buf[:rest] = self.buf[pos:self.blen]   # numpy copes with the overlap
        self.blen = rest

    def message(self, b0: int, start: int, end: int):
        """(opcode, payload bytes) of the frame buf[start:end] with first header byte b0, or
        None while a fragmented message is incomplete. Raises LinkClosed on a continuation
        without a first fragment."""
        op = b0 & 0x0F
        payload = self.buf[start:end].tobytes()
        if op >= 0x8:                      # control frames are never fragmented
            return op, payload
        if op == OP_CONT:
            if self._frag_op < 0:
                raise LinkClosed("continuation without a first fragment")
            if len(self._frag) + len(payload) > MAX_FRAME:
                raise LinkClosed("fragmented message larger than 16 MiB")
            self._frag += payload
            if b0 & 0x80:
                op, payload = self._frag_op, bytes(self._frag)
                self._frag_op = -1
                self._frag = bytearray()       # a new one: clear() may keep the allocation
                return op, payload
            return None
        if not b0 & 0x80:
            self._frag_op = op
            self._frag[:] = payload
            return None
        return op, payload

    def frames(self):
        """Yield (opcode, payload bytes) for every complete message in the buffer."""
        pos = 0
        try:
            while True:
                st, b0, s, e = next_frame(self.buf, pos, self.blen)
                if st == F_INCOMPLETE:
                    break
                if st != F_OK:
                    raise LinkClosed(stream_error(st))
                pos = int(e)
                m = self.message(b0, s, e)
                if m is not None:
                    yield m
        finally:
            self.consume(pos)
