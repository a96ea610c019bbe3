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
