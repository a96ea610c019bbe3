"""The engine's TLS client side: one verified context per user, clear verification errors,
and reads and writes on an established TLS connection that keep the GIL.

Who uses it: run.py makes the contexts (`client_context`) from `[engine] ca_file` (empty:
the system CA store, as for KuCoin); kucoin.py (the REST pools), orderwire.py (order
connections) and maint.py (WebSocket handshakes) each get their own. Certificate and
hostname verification are always on (ssl.create_default_context). A failed verification is
not transient: `VerifyFailed` carries one line naming the URL and OpenSSL's reason, which
run.py prints as the start-up error (no traceback).

Held I/O (`held(sock)`; `[engine] tls_io = held`, the default). The ssl module releases
the GIL around every SSL_read and SSL_write, even when nothing blocks, and on the hot
thread every release is a chance for another thread to take the GIL for a switch interval
or more (the GIL convoy, docs/design.md 9; wsread.py and orderwire.py avoid it for plain
sockets with a GIL-holding libc recv/send). For an established ssl.SSLSocket (handshake
and certificate checks done by the ssl module) this module calls SSL_read / SSL_write on
the same OpenSSL SSL object through ctypes.PyDLL, which keeps the GIL; the socket is
non-blocking, so no call waits. The SSL* is read from the ssl module's _ssl._SSLSocket
object (CPython's PySSLSocket: PyObject_HEAD, a weakref to the Python socket, then SSL *ssl)
and used only after two checks that cannot crash: the word before it is one of the weak
references to that socket (weakref.getweakrefs), and SSL_get_fd of the pointer is the
socket's fd; libssl is the very library the _ssl module has loaded (/proc/self/maps) and
its version must equal ssl.OPENSSL_VERSION_NUMBER. Anything else (a statically linked
OpenSSL, another Python) gives None and the caller uses the ssl module (tls_io = ssl).
Whoever uses `Held` must keep to the ssl module's own rule: one thread at a time per
connection (the engine's owners: wsread's hot thread, an order connection's firing thread).

Why not ssl.MemoryBIO + SSLObject (raw recv with the GIL held, then decrypt): SSLObject.read
is the same C function as SSLSocket.read and releases the GIL around SSL_read_ex just the
same (CPython Modules/_ssl.c, PySSL_BEGIN_ALLOW_THREADS), so it keeps one release per
record and adds a copy; profiles/probe_tls_gil.py measures the three ways side by side.

Tests: tests/test_tlsio.py (against the simulator's TLS: held reads and writes, the
checks, verification failures).
"""
from __future__ import annotations

import ctypes
import ssl
import sys
import weakref

SSL_ERROR_SSL = 1
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3
SSL_ERROR_SYSCALL = 5
SSL_ERROR_ZERO_RETURN = 6


class VerifyFailed(ConnectionError):
    """The peer's certificate failed verification (chain or hostname). `tls_failure` is the
    one line run.py prints; every engine error caused by this carries the same attribute."""

    def __init__(self, url: str, reason: str, ca_file: str = ""):
        self.url, self.reason, self.ca_file = url, reason, ca_file
        self.tls_failure = failure_text(url, reason, ca_file)
        super().__init__(self.tls_failure)


def failure_text(url: str, reason: str, ca_file: str) -> str:
    trusted = f"ca_file {ca_file}" if ca_file else "the system CA store"
    return f"TLS certificate verification failed for {url}: {reason} (trusting {trusted})"


def verify_reason(exc: BaseException) -> str | None:
    """OpenSSL's reason if exc is, or wraps (args, __cause__, __context__: urllib3 and
    websocket-client wrap it), a certificate verification failure; else None."""
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or str(e)
        if isinstance(e, ssl.CertificateError):          # hostname mismatch (older paths)
            return str(e)
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        todo.append(e.__cause__)
        todo.append(e.__context__)
    return None


def client_context(ca_file: str = "") -> ssl.SSLContext:
    """A client context with certificate and hostname verification on: only the CAs in
    ca_file, or the system store when it is empty (what KuCoin's certificate chains to).
    One per user (REST, orders, WebSocket): urllib3 writes verify_mode on the one it gets."""
    ctx = ssl.create_default_context(cafile=ca_file or None)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- held I/O: libssl through ctypes.PyDLL --------------------------------------------------

def _loaded_lib(stem: str) -> str | None:
    """The path of the shared library `stem` (libssl.so / libcrypto.so) mapped in this
    process, i.e. the one the _ssl module uses."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(" ")[-1]
                name = path.rsplit("/", 1)[-1]
                if name.startswith(stem):
                    return path
    except OSError:
        return None
    return None


def _load():
    import _ssl  # noqa: F401  (maps the libssl the ssl module uses)
    if sys.implementation.name != "cpython":
        return None, "not CPython"
    libssl, libcrypto = _loaded_lib("libssl.so"), _loaded_lib("libcrypto.so")
    if not libssl or not libcrypto:
        return None, "OpenSSL is linked into the _ssl module statically"
    try:
        s = ctypes.PyDLL(libssl)
        c = ctypes.PyDLL(libcrypto)
        c.OpenSSL_version_num.restype = ctypes.c_ulong
        if c.OpenSSL_version_num() != ssl.OPENSSL_VERSION_NUMBER:
            return None, "libcrypto's version differs from the ssl module's"
        lib = {}
        for name, res, args in (("SSL_read", ctypes.c_int, (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)),
                                ("SSL_write", ctypes.c_int, (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)),
                                ("SSL_get_error", ctypes.c_int, (ctypes.c_void_p, ctypes.c_int)),
                                ("SSL_pending", ctypes.c_int, (ctypes.c_void_p,)),
                                ("SSL_has_pending", ctypes.c_int, (ctypes.c_void_p,)),
                                ("SSL_get_fd", ctypes.c_int, (ctypes.c_void_p,)),
                                ("SSL_get_ex_data", ctypes.c_void_p, (ctypes.c_void_p, ctypes.c_int)),
                                ("SSL_set_read_ahead", None, (ctypes.c_void_p, ctypes.c_int))):
            fn = getattr(s, name)
            fn.restype, fn.argtypes = res, args
            lib[name] = fn
        c.ERR_clear_error.restype, c.ERR_clear_error.argtypes = None, ()
        lib["ERR_clear_error"] = c.ERR_clear_error
        return lib, ""
    except (OSError, AttributeError) as e:
        return None, f"libssl not usable through ctypes: {e}"


_LIB, WHY_NOT = _load()
_HEAD = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)   # PyObject_HEAD
_PTR = ctypes.sizeof(ctypes.c_void_p)


def available() -> bool:
    return _LIB is not None


def ssl_pointer(sock) -> int | None:
    """The OpenSSL SSL* behind an established ssl.SSLSocket, or None (see the docstring)."""
    if _LIB is None or not isinstance(sock, ssl.SSLSocket):
        return None
    obj = getattr(sock, "_sslobj", None)
    if obj is None or type(obj).__name__ != "_SSLSocket":
        return None
    base = id(obj)
    ref = ctypes.c_void_p.from_address(base + _HEAD).value          # PySSLSocket.Socket
    if not ref or ref not in {id(w) for w in weakref.getweakrefs(sock)}:
        return None
    ptr = ctypes.c_void_p.from_address(base + _HEAD + _PTR).value   # PySSLSocket.ssl
    if not ptr or _LIB["SSL_get_fd"](ptr) != sock.fileno():
        return None
    if _LIB["SSL_get_ex_data"](ptr, 0) != base:   # the ssl module's app data: its object
        return None
    return ptr


_layout_ok = None


def _layout_checked() -> bool:
    """The PySSLSocket layout, checked once on a throw-away SSLSocket over a socketpair
    (no handshake, no network): what an SSLObject (no socket to check against) relies on."""
    global _layout_ok
    if _layout_ok is None:
        import socket
        a, b = socket.socketpair()
        try:
            ctx = ssl.create_default_context()
            s = ctx.wrap_socket(a, server_hostname="layout.invalid", do_handshake_on_connect=False)
            _layout_ok = ssl_pointer(s) is not None
            s.close()
        except (OSError, ValueError):
            _layout_ok = False
        finally:
            a.close()
            b.close()
    return _layout_ok


def bio_pointer(obj) -> int | None:
    """The SSL* behind an ssl.SSLObject (memory BIOs), or None."""
    if _LIB is None or not isinstance(obj, ssl.SSLObject) or not _layout_checked():
        return None
    inner = getattr(obj, "_sslobj", None)
    if inner is None or type(inner).__name__ != "_SSLSocket":
        return None
    base = id(inner)
    ptr = ctypes.c_void_p.from_address(base + _HEAD + _PTR).value
    if not ptr or _LIB["SSL_get_ex_data"](ptr, 0) != base:
        return None
    return ptr


class TlsClosed(ConnectionError):
    """The TLS connection ended (close_notify, EOF or a protocol error)."""


class Held:
    """GIL-holding reads and writes on one established ssl.SSLSocket. It keeps the socket
    and the ssl module's object alive, so the SSL* stays valid while this object lives."""

    __slots__ = ("sock", "obj", "ssl", "_read", "_write", "_err", "_pending", "_has_pending", "_clear")

    def __init__(self, sock, ptr: int):
        self.sock = sock
        self.obj = sock._sslobj
        self.ssl = ptr
        self._read = _LIB["SSL_read"]
        self._write = _LIB["SSL_write"]
        self._err = _LIB["SSL_get_error"]
        self._pending = _LIB["SSL_pending"]
        self._has_pending = _LIB["SSL_has_pending"]
        self._clear = _LIB["ERR_clear_error"]

    def read_ahead(self) -> None:
        """Let one socket read take every record the kernel holds (a read link only: an
        order connection's staleness check looks at the raw socket and must see them)."""
        _LIB["SSL_set_read_ahead"](self.ssl, 1)

    def read(self, addr: int, n: int) -> int:
        """Decrypt up to n bytes (at most one TLS record) to addr. Returns the bytes read,
        0 when nothing is there now. Raises TlsClosed at the end of the stream."""
        got = self._read(self.ssl, addr, n)
        if got > 0:
            return got
        err = self._err(self.ssl, got)
        self._clear()                    # leave no error queue behind for the ssl module
        if err == SSL_ERROR_WANT_READ or err == SSL_ERROR_WANT_WRITE:
            return 0
        if err == SSL_ERROR_ZERO_RETURN:
            raise TlsClosed("peer closed the TLS connection")
        if err == SSL_ERROR_SYSCALL:
            raise TlsClosed("peer closed the connection")
        raise TlsClosed(f"TLS error {err}")

    def pending(self) -> int:
        """Decrypted bytes buffered in OpenSSL (epoll cannot see them)."""
        return self._pending(self.ssl)

    def has_pending(self) -> bool:
        """Bytes buffered in OpenSSL, decrypted or not (with read ahead, the records a
        socket read took beyond the one SSL_read returned): more to read without a syscall."""
        return self._has_pending(self.ssl) == 1

    def write(self, data: bytes) -> int:
        """Encrypt and write all of data, or nothing: returns len(data), or 0 when the
        socket would block (retry with the same bytes, e.g. sock.sendall). Raises OSError."""
        n = self._write(self.ssl, data, len(data))
        if n > 0:
            return n
        err = self._err(self.ssl, n)
        self._clear()
        if err == SSL_ERROR_WANT_WRITE or err == SSL_ERROR_WANT_READ:
            return 0
        raise OSError(f"SSL_write failed (error {err})")


def held(sock) -> Held | None:
    """A Held for an established ssl.SSLSocket, or None when held I/O is not possible."""
    ptr = ssl_pointer(sock)
    return None if ptr is None else Held(sock, ptr)


class WarmPair:
    """An in-memory TLS connection (two ssl.SSLObjects over MemoryBIOs, a throw-away
    certificate, handshake done here) whose `run()` encrypts an order-sized request on one
    side and decrypts it on the other with the same GIL-holding SSL_write / SSL_read calls
    the hot path makes (Held), about 5 us. The hot thread calls it while idle (keep-warm,
    hot.HotLoop._keep_warm): a live session fires a few dozen times a second and the
    OpenSSL record and AES-GCM code is otherwise cold at each fire and each read, as the
    engine's own code was (README, latency). None of its bytes leave the process.
    `make()` returns None when held I/O is not possible."""

    def __init__(self):
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("warm.invalid")
        sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(sctx)
        cctx = ssl.create_default_context()
        ca.configure_trust(cctx)
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = cctx.wrap_bio(self.c_in, self.c_out, server_hostname="warm.invalid")
        self.server = sctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        for _ in range(10):
            done = 0
            for side in (self.client, self.server):
                try:
                    side.do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
            self.s_in.write(self.c_out.read())
            self.c_in.write(self.s_out.read())
            if done == 2:
                break
        self.cipher = self.client.cipher()
        cptr, sptr = bio_pointer(self.client), bio_pointer(self.server)
        if cptr is None or sptr is None:
            raise OSError("the SSLObject pair has no usable SSL*")
        self.w = Held.__new__(Held)
        self.r = Held.__new__(Held)
        for h, ptr, obj in ((self.w, cptr, self.client), (self.r, sptr, self.server)):
            h.sock, h.obj, h.ssl = obj, obj._sslobj, ptr
            h._read, h._write, h._err = _LIB["SSL_read"], _LIB["SSL_write"], _LIB["SSL_get_error"]
            h._pending, h._has_pending, h._clear = _LIB["SSL_pending"], _LIB["SSL_has_pending"], _LIB["ERR_clear_error"]
        self.msg = (b"POST /api/v1/hf/orders HTTP/1.1\r\nHost: warm.invalid\r\n" + b"X-Warm: 1\r\n" * 24
                    + b"Content-Length: 0\r\n\r\n")
        self.buf = ctypes.create_string_buffer(4096)
        self.addr = ctypes.addressof(self.buf)
        # the server's post-handshake messages (TLS 1.3 tickets) reach the client first
        self.run()

    @classmethod
    def make(cls):
        if _LIB is None:
            return None
        try:
            return cls()
        except (OSError, ValueError, ssl.SSLError, ImportError):
            return None

    def run(self) -> int:
        """One request through the pair: SSL_write, the record moved across, SSL_read."""
        self.w.write(self.msg)
        self.s_in.write(self.c_out.read())
        n = 0
        while True:
            k = self.r.read(self.addr, 4096)
            if not k:
                break
            n += k
        self.c_in.write(self.s_out.read())         # nothing, or tickets once
        if self.c_in.pending:
            self.w.read(self.addr, 4096)
        return n
