"""KuCoin REST request signing for API key versions 2 and 3 (docs/kucoin.md 1.1-1.5).

Owns: the HMAC-SHA256 signature of a request's prehash string and the authentication
headers KC-API-KEY / KC-API-SIGN / KC-API-TIMESTAMP / KC-API-PASSPHRASE / KC-API-KEY-VERSION.

Threads: a Signer is immutable after construction and safe to share. Every thread that
places orders (executors, the hot thread) or fetches private data (start-up in run.py,
maint.py for the private bullet) calls `sign` / `headers` / `header_block`; each call copies the keyed
HMAC state, so calls never interfere.

Cost: HMAC (RFC 2104) is built from two SHA-256 states keyed once in __init__: the inner
one has absorbed key ^ ipad, the outer key ^ opad. A signature copies the inner state, feeds
it the prehash, copies the outer one and feeds it the inner digest: six C calls, about 1-2 us,
where hmac.HMAC adds a Python frame per copy/update/digest (the order path signs cold, once
per order: profiles/README.md). tests/test_signer.py checks it against hmac. The v2/v3
passphrase header (itself an HMAC of the passphrase) is computed once.

Secrets: the API secret and passphrase are never stored as text on the object and never
appear in repr/str or in exception messages. The headers this module returns DO contain
the signed passphrase and signature; callers must not log them.

Test: python -m pytest -q tests/test_signer.py (known-answer vectors of
docs/kucoin.md 1.5).
"""
from __future__ import annotations

import hashlib
from binascii import b2a_base64

# docs/kucoin.md 1.3: v1 keys (plaintext passphrase) are not supported by current endpoints
# (400008); v2 and v3 sign the passphrase identically and differ only in the version header.
SUPPORTED_KEY_VERSIONS = (2, 3)

# docs/kucoin.md 0: all bodies are JSON; 415000 otherwise.
CONTENT_TYPE = "application/json"

_BLOCK = 64                                            # SHA-256's block size (RFC 2104: B)
_IPAD = bytes(b ^ 0x36 for b in range(256))            # bytes.translate tables: x -> x ^ ipad
_OPAD = bytes(b ^ 0x5C for b in range(256))            # ... x -> x ^ opad

# SHA-256 (FIPS 180-4): initial state and round constants
SHA256_IV = (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
             0x5be0cd19)
SHA256_K = (
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2)
_M32 = 0xFFFFFFFF


def sha256_block(st, blk, off, w, K) -> None:
    """One SHA-256 compression (FIPS 180-4 6.2.2) of the 64 bytes blk[off:off + 64] into the
    8-word state st (modified in place); w: 64 words of scratch; K: SHA256_K. Plain Python
    on lists and bytes here (the HMAC pad states, once per Signer); the same function is
    compiled by orderkern.py over int64 and uint8 arrays for the order built in the kernel."""
    for i in range(16):
        j = off + 4 * i
        w[i] = (int(blk[j]) << 24) | (int(blk[j + 1]) << 16) | (int(blk[j + 2]) << 8) | int(blk[j + 3])
    for i in range(16, 64):
        x, y = w[i - 15], w[i - 2]
        s0 = (((x >> 7) | (x << 25)) ^ ((x >> 18) | (x << 14)) ^ (x >> 3)) & _M32
        s1 = (((y >> 17) | (y << 15)) ^ ((y >> 19) | (y << 13)) ^ (y >> 10)) & _M32
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & _M32
    a, b, c, d, e, f, g, h = st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]
    for i in range(64):
        s1 = (((e >> 6) | (e << 26)) ^ ((e >> 11) | (e << 21)) ^ ((e >> 25) | (e << 7))) & _M32
        ch = (e & f) ^ ((~e) & g)
        t1 = (h + s1 + ch + K[i] + w[i]) & _M32
        s0 = (((a >> 2) | (a << 30)) ^ ((a >> 13) | (a << 19)) ^ ((a >> 22) | (a << 10))) & _M32
        maj = (a & b) ^ (a & c) ^ (b & c)
        t2 = (s0 + maj) & _M32
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M32, c, b, a, (t1 + t2) & _M32
    st[0] = (st[0] + a) & _M32
    st[1] = (st[1] + b) & _M32
    st[2] = (st[2] + c) & _M32
    st[3] = (st[3] + d) & _M32
    st[4] = (st[4] + e) & _M32
    st[5] = (st[5] + f) & _M32
    st[6] = (st[6] + g) & _M32
    st[7] = (st[7] + h) & _M32


def _midstate(block: bytes) -> tuple:
    st = list(SHA256_IV)
    sha256_block(st, block, 0, [0] * 64, SHA256_K)
    return tuple(st)


def _b64(digest: bytes) -> str:
    """Standard base64 with padding, no newline (the KC-API-SIGN / PASSPHRASE format)."""
    return b2a_base64(digest, newline=False).decode("ascii")


def _as_bytes(value: bytes | bytearray | memoryview | str) -> bytes:
    """UTF-8 bytes of a prehash part (docs/kucoin.md 1.1: the message is UTF-8)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


class Signer:
    """Signs KuCoin REST requests for one API key (version 2 or 3).

    `Signer(api_key, api_secret, api_passphrase, key_version=3)`:
    - `sign(prehash)` -> base64 HMAC-SHA256 of the prehash with the secret (docs/kucoin.md 1.1).
    - `headers(ts_ms, method, path_with_query, body=b"")` -> dict of the six headers.
    - `header_block(ts_ms, method, path_with_query, body=b"")` -> bytes of the same headers
      (`post_headers(ts, path, body)`: the same for a POST, all bytes, for the order path)
      as ready HTTP/1.1 lines, each ending in CRLF (no request line, Host, Content-Length or
      the blank line that ends the head: those belong to whoever frames the request).

    `path_with_query` is signed exactly as given (docs/kucoin.md 1.2: path + "?" + query, no
    trailing "?" without a query); the caller decides encoding, see kucoin.py.
    """

    __slots__ = ("api_key", "key_version", "_inner", "_outer", "_mid", "_passphrase_sig",
                 "_static_headers", "_static_block")

    def __init__(self, api_key: str, api_secret: str, api_passphrase: str,
                 key_version: int = 3) -> None:
        # The messages below never echo the argument values: a caller that swapped
        # positional arguments would otherwise print a secret.
        if type(key_version) is not int or key_version not in SUPPORTED_KEY_VERSIONS:
            raise ValueError("key_version must be the int 2 or 3 (docs/kucoin.md 1.3; "
                             "v1 plaintext-passphrase keys are not supported)")
        for name, value in (("api_key", api_key), ("api_secret", api_secret),
                            ("api_passphrase", api_passphrase)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty str")
            if any(c in value for c in "\r\n"):
                # A CR/LF would split the HTTP header it is written into.
                raise ValueError(f"{name} must not contain CR or LF")
        self.api_key = api_key
        self.key_version = key_version
        # Keyed HMAC state: holds only the derived inner/outer pad hash states, which are
        # copied per signature. The secret string itself is not kept on the object.
        key = api_secret.encode("utf-8")
        if len(key) > _BLOCK:                     # RFC 2104: a long key is hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))
        # the same two states as SHA-256 words, for the kernel that signs leg 0 (orderkern.py)
        self._mid = _midstate(key.translate(_IPAD)) + _midstate(key.translate(_OPAD))
        del key
        # docs/kucoin.md 1.1/1.3: v2/v3 send base64(HMAC-SHA256(secret, passphrase)).
        self._passphrase_sig = self.sign(api_passphrase.encode("utf-8"))
        self._static_headers = {
            "KC-API-KEY": api_key,
            "KC-API-PASSPHRASE": self._passphrase_sig,
            "KC-API-KEY-VERSION": str(key_version),
            "Content-Type": CONTENT_TYPE,
        }
        self._static_block = (
            f"KC-API-KEY: {api_key}\r\n"
            f"KC-API-PASSPHRASE: {self._passphrase_sig}\r\n"
            f"KC-API-KEY-VERSION: {key_version}\r\n"
            f"Content-Type: {CONTENT_TYPE}\r\n").encode("ascii")

    def __repr__(self) -> str:
        # The key id is not secret but is shortened anyway; secret and passphrase never appear.
        shown = self.api_key[:4] + "..." if len(self.api_key) > 4 else "..."
        return f"Signer(api_key={shown!r}, key_version={self.key_version})"

    __str__ = __repr__

    def __reduce__(self):
        # Pickling would need the secret, which the object deliberately does not keep.
        raise TypeError("Signer cannot be pickled")

    def kernel_parts(self) -> tuple[tuple, bytes]:
        """(16 words, static header lines) for orderkern.py, which signs leg 0 inside the
        chunk kernel: the inner and outer HMAC pad states as SHA-256 words (8 + 8) and the
        header lines post_headers puts after the timestamp. Sensitive: both sign for the
        key; the kernel's copy lives in one array and is never printed."""
        return self._mid, self._static_block

    @property
    def passphrase_header(self) -> str:
        """The KC-API-PASSPHRASE value (signed passphrase, docs/kucoin.md 1.1). Sensitive."""
        return self._passphrase_sig

    def sign_bytes(self, prehash: bytes) -> bytes:
        """Raw 32-byte HMAC-SHA256 digest of `prehash` (bytes only, the fastest path)."""
        inner = self._inner.copy()
        inner.update(prehash)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def sign(self, prehash: bytes | str) -> str:
        """KC-API-SIGN value: base64(HMAC-SHA256(secret, prehash)) (docs/kucoin.md 1.1)."""
        return b2a_base64(self.sign_bytes(prehash if type(prehash) is bytes else _as_bytes(prehash)),
                          newline=False).decode("ascii")

    @staticmethod
    def prehash(ts_ms: int, method: str, path_with_query: str,
                body: bytes | str = b"") -> bytes:
        """timestamp + METHOD + path[?query] + body (docs/kucoin.md 1.2), as UTF-8 bytes."""
        head = f"{int(ts_ms)}{method.upper()}{path_with_query}".encode("utf-8")
        if not body:
            return head
        return head + (body if type(body) is bytes else _as_bytes(body))

    def headers(self, ts_ms: int, method: str, path_with_query: str,
                body: bytes | str = b"") -> dict:
        """The six authentication headers for one request (docs/kucoin.md 1.1).

        `ts_ms` must already include any server clock offset (docs/kucoin.md 1.4: more
        than 5 s of skew is rejected with 400002).
        """
        ts = str(int(ts_ms))
        h = dict(self._static_headers)
        h["KC-API-SIGN"] = self.sign(self.prehash(ts, method, path_with_query, body))
        h["KC-API-TIMESTAMP"] = ts
        return h

    def post_headers(self, ts: bytes, path: bytes, body: bytes) -> bytes:
        """header_block for a POST, the order path's version: ts (decimal ms) and path
        already bytes. Measured live: the order path's headers and request cost 13.6 us p50
        through header_block and request_bytes (cold code between two orders;
        profiles/README.md)."""
        return b"KC-API-SIGN: %s\r\nKC-API-TIMESTAMP: %s\r\n%s" % (
            b2a_base64(self.sign_bytes(b"%sPOST%s%s" % (ts, path, body)), newline=False),
            ts, self._static_block)

    def header_block(self, ts_ms: int, method: str, path_with_query: str,
                     body: bytes | str = b"") -> bytes:
        """The same headers as `headers` as CRLF-terminated HTTP/1.1 header lines."""
        ts = str(int(ts_ms))
        sig = b2a_base64(self.sign_bytes(self.prehash(ts, method, path_with_query, body)),
                         newline=False)
        return (b"KC-API-SIGN: " + sig + b"\r\nKC-API-TIMESTAMP: " + ts.encode("ascii")
                + b"\r\n" + self._static_block)
