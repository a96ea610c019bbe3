"""The hot thread's WebSocket receive path: whole chunks in, frames out, GIL held.

Owner: the hot thread (hot.HotLoop reads every link through one FrameReader each).
websocket-client still opens the link (handshake, welcome, subscribe: maint.py) and sends
our pings; once the hot thread owns the link it reads the socket through this module.

Why (measured, profiles/results/line_profile_hot.txt and README): websocket-client's
recv_data issues three recv() syscalls per frame (2-byte header, length, payload), and
each one releases the GIL. On a hot thread that shares the GIL with executors and a log
thread, every release hands the GIL away and costs a switch interval or more to get back
(DESIGN.md section 9, GIL convoy). Here one non-blocking recv() through ctypes.PyDLL
(which keeps the GIL) drains whatever the kernel holds, up to 256 KiB, and the frames are
cut out of that buffer in Python. Frames from a server are never masked (RFC 6455 5.1);
fragments are joined; a ping is answered by the caller; close ends the link.

TLS links (wss://, real KuCoin) read through the ssl module, whose recv releases the GIL;
SSLSocket.pending() tells whether decrypted bytes are already buffered, which epoll cannot
see (the caller loops while `more()` is true).
"""
from __future__ import annotations

import ctypes
import errno
import socket
import ssl

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CHUNK = 1 << 18
MAX_FRAME = 1 << 24       # 16 MiB: a frame announcing more is a broken stream

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


class FrameReader:
    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.buf = bytearray()
        self._chunk = ctypes.create_string_buffer(CHUNK)
        self._addr = ctypes.addressof(self._chunk)
        self._frag_op = -1
        self._frag = bytearray()
        if self.tls:
            sock.setblocking(False)

    def fill(self) -> int:
        """Read what the socket holds now, without blocking. Returns bytes read (0 if none)."""
        if self.tls or _c_recv is None:
            try:   # a TLS socket is non-blocking (set in __init__); a plain one asks per call
                data = self.sock.recv(CHUNK) if self.tls else self.sock.recv(CHUNK, _DONTWAIT)
            except (ssl.SSLWantReadError, BlockingIOError):
                return 0
            except OSError as e:
                raise LinkClosed(f"recv: {e.__class__.__name__}: {e}") from None
            if not data:
                raise LinkClosed("peer closed the connection")
            self.buf += data
            return len(data)
        n = _c_recv(self.fd, self._addr, CHUNK, _DONTWAIT)
        if n > 0:
            self.buf += ctypes.string_at(self._addr, n)   # copies n bytes (.raw would copy all 256 KiB)
            return n
        if n == 0:
            raise LinkClosed("peer closed the connection")
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
            return 0
        raise LinkClosed(f"recv: {errno.errorcode.get(err, err)}")

    def more(self) -> bool:
        """True when bytes are buffered where epoll cannot see them (TLS records)."""
        return self.tls and self.sock.pending() > 0

    def frames(self):
        """Yield (opcode, payload bytes) for every complete frame in the buffer."""
        buf = self.buf
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                n = b1 & 0x7F
                hdr = 2
                if n == 126:
                    if end - pos < 4:
                        break
                    n = (buf[pos + 2] << 8) | buf[pos + 3]
                    hdr = 4
                elif n == 127:
                    if end - pos < 10:
                        break
                    n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                    hdr = 10
                if b1 & 0x80:
                    raise LinkClosed("masked frame from the server (RFC 6455 5.1)")
                if n > MAX_FRAME:
                    raise LinkClosed(f"frame of {n} bytes announced")
                if end - pos < hdr + n:
                    break
                payload = bytes(buf[pos + hdr:pos + hdr + n])
                pos += hdr + n
                op = b0 & 0x0F
                fin = b0 & 0x80
                if op >= 0x8:                      # control frames are never fragmented
                    yield op, payload
                elif op == OP_CONT:
                    if self._frag_op < 0:
                        raise LinkClosed("continuation without a first fragment")
                    self._frag += payload
                    if fin:
                        op, payload = self._frag_op, bytes(self._frag)
                        self._frag_op = -1
                        self._frag.clear()
                        yield op, payload
                elif not fin:
                    self._frag_op = op
                    self._frag[:] = payload
                else:
                    yield op, payload
        finally:
            if pos:
                del buf[:pos]
