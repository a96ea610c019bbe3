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

    __slots__ = ("api_key", "key_version", "_inner", "_outer", "_passphrase_sig", "_static_headers",
                 "_static_block")

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
