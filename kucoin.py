"""KuCoin spot REST client: one urllib3 keep-alive pool per calling thread.

Owns: server time and the local clock offset, symbols, trade fees, base fee, accounts,
WebSocket bullet tokens, level2 REST snapshots, HF order place / test / sync / get /
cancel, the error envelope -> typed exceptions, and the gw-ratelimit-* headers.

Threads: one KucoinClient may be shared by every thread (run.py start-up, maint.py for
bullets and resync snapshots, executors for order lookups and cancels). Each
thread gets its own HTTP(S)ConnectionPool (one kept-alive connection), simdjson Parser
and rate-limit record through threading.local, so threads never contend or share a
socket. `clock_offset_ms` is written by whoever calls `sync_clock()` and read by all.

Conventions (docs/kucoin.md 0): decimal fields are strings on the wire; every field
named in DECIMAL_FIELDS is returned as decimal.Decimal built from that exact string. Order
sizes/funds are taken only as str or Decimal (floats raise TypeError: docs/kucoin.md 8.8).
Queries are sent with commas raw and signed un-encoded (docs/kucoin.md 1.2), so the bytes
signed and the bytes sent are the same for every value this client sends.

No automatic retries of POST/DELETE: a retried order POST could double an order. Only a
GET whose kept-alive connection turned out dead is retried, once.

Test: python -m pytest -q tests/test_kucoin.py (local stub server plus the
simulator fixture from tests/conftest.py).
"""
from __future__ import annotations

import re
import threading
import time
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlsplit

import simdjson
import urllib3
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import NewConnectionError, ProtocolError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

import tlsio
from signer import Signer

DEFAULT_TIMEOUT_S = 5.0
OK_CODE = "200000"  # docs/kucoin.md 0: success code is the string "200000"

# docs/kucoin.md 6.1 / 6.2-6.4 / 5.4 / 5.6: fields that are decimal strings on the wire.
DECIMAL_FIELDS = frozenset((
    # symbols (6.1)
    "baseMinSize", "quoteMinSize", "baseMaxSize", "quoteMaxSize", "baseIncrement",
    "quoteIncrement", "priceIncrement", "priceLimitRate", "minFunds",
    "makerFeeCoefficient", "takerFeeCoefficient", "callauctionPriceFloor",
    "callauctionPriceCeiling",
    # fees (6.2, 6.3)
    "takerFeeRate", "makerFeeRate", "sellTaxRate", "buyTaxRate",
    # accounts (6.4)
    "balance", "available", "holds",
    # orders (5.4, 5.6): note cancelledSize (REST order) vs canceledSize (sync), 8.12
    "price", "size", "funds", "dealSize", "dealFunds", "remainSize", "remainFunds",
    "cancelledSize", "cancelledFunds", "canceledSize", "canceledFunds", "originSize",
    "originFunds", "cancelSize", "fee", "visibleSize", "tax",
))

# docs/kucoin.md 5.2: clientOid <= 40 chars of [A-Za-z0-9_-].
_CLIENT_OID_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
# Symbols are BASE-QUOTE (docs/kucoin.md 0); ids/currencies are plain tokens. Checking them
# keeps every value we put in a JSON body or URL free of characters needing escapes.
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# A plain positive-or-zero decimal string as KuCoin expects it: no sign, exponent or spaces.
_DECIMAL_STR_RE = re.compile(r"[0-9]+(\.[0-9]+)?")

ORDER_SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit")
SNAPSHOT_DEPTHS = (20, 100)  # docs/kucoin.md 3.7: level2_20 / level2_100
TRADE_FEES_BATCH = 10        # docs/kucoin.md 6.2: up to 10 symbols per call

# docs/kucoin.md 1.6: gateway auth codes 400001-400010.
_AUTH_CODES = frozenset(str(c) for c in range(400001, 400011))
# docs/kucoin.md 5.8: texts seen for unknown / no-longer-cancelable orders.
_NOT_EXIST_RE = re.compile(r"not[ _]exist|does not exist", re.IGNORECASE)

# Endpoint kinds: how a non-200000 answer is classified.
_KIND_PLAIN = 0    # market data, accounts, fees, bullets
_KIND_PLACE = 1    # order placement (place / test / sync): business codes -> OrderRejected
_KIND_LOOKUP = 2   # get / cancel by id: "order not exist" -> NotFound


class KucoinError(Exception):
    """A KuCoin error envelope (or a failed request) as a typed error.

    `code`: KuCoin's code string (e.g. "400100"), None when there was no envelope.
    `msg`: KuCoin's msg, or a short description. `http_status`: None without a response.
    `path`: the request path and query (no host, no headers: never secrets).
    """

    def __init__(self, code, msg, http_status, path):
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.path = path
        super().__init__(f"{type(self).__name__}: code={code} http={http_status} "
                         f"path={path} msg={msg}")

    def __reduce__(self):
        return (type(self), (self.code, self.msg, self.http_status, self.path))


class RateLimited(KucoinError):
    """HTTP 429 / 429000 (docs/kucoin.md 7.1). `reset_ms` from gw-ratelimit-reset if sent."""

    reset_ms = None


class ServerError(KucoinError):
    """HTTP 5xx or 500000 (docs/kucoin.md 1.6). For an order POST the order may exist."""


class AuthError(KucoinError):
    """400001-400010: key, sign, passphrase, timestamp (400002), version, IP (docs/kucoin.md 1.6)."""


class OrderRejected(KucoinError):
    """A business error on an order placement endpoint, e.g. 400100 increment, 200004
    balance, 600100 min funds, 300000 quantity (docs/kucoin.md 5.9)."""


class NotFound(KucoinError):
    """404000, or an order that does not exist / can no longer be canceled (docs/kucoin.md
    5.8: a cancel that races a fill also lands here; query the order to learn which)."""


class TransportError(KucoinError):
    """No usable HTTP response: timeout, refused, reset, unparseable framing. The urllib3
    exception is chained as __cause__. For an order POST the order may or may not exist."""


class TlsVerifyError(TransportError):
    """The server's TLS certificate failed verification (chain or hostname): not transient.
    `tls_failure` is tlsio's one line naming the URL and OpenSSL's reason (run.py prints it
    as the start-up error)."""

    tls_failure = ""


def _decimal(value, field):
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        # docs/kucoin.md 0 says decimals are strings; if one ever comes as a JSON number,
        # repr gives the shortest text that round-trips, i.e. what the server printed.
        value = repr(value)
    elif isinstance(value, int):
        return Decimal(value)
    if value == "":
        return None
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"field {field} is not a decimal: {value!r}") from None


def convert_decimals(obj):
    """Recursively replace DECIMAL_FIELDS values by Decimal (in place; returns obj)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in DECIMAL_FIELDS and not isinstance(v, (dict, list)):
                obj[k] = _decimal(v, k)
            elif isinstance(v, (dict, list)):
                convert_decimals(v)
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)):
                convert_decimals(v)
    return obj


def decimal_str(value, name: str) -> str:
    """A size/funds/price argument as the exact decimal string sent to KuCoin.

    Only str and Decimal are accepted: a float such as 0.6930000000000001 is the classic
    cause of `Order size increment invalid.` (docs/kucoin.md 8.8).
    """
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0:
            raise ValueError(f"{name} must be a finite non-negative decimal")
        text = format(value, "f")  # never exponent notation (Decimal('1E-8') -> '0.00000001')
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(f"{name} must be str or Decimal, not {type(value).__name__}")
    if not _DECIMAL_STR_RE.fullmatch(text):
        raise ValueError(f"{name} must be a plain decimal string like '0.001', got {text!r}")
    return text


def _token(value, name: str) -> str:
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        raise ValueError(f"{name} must be a plain token ([A-Za-z0-9_.-]), got {value!r}")
    return value


def _client_oid(value) -> str:
    if not isinstance(value, str) or not _CLIENT_OID_RE.fullmatch(value):
        raise ValueError("clientOid must be 1-40 chars of [A-Za-z0-9_-] (docs/kucoin.md 5.2)")
    return value


# What an order placement's answer says about the order (classify_order_answer).
ANSWER_ACCEPTED = 0    # 200000 with an orderId: the order exists
ANSWER_REJECTED = 1    # a KuCoin error envelope under HTTP 4xx/200: the order was not placed
ANSWER_AMBIGUOUS = 2   # anything else: the order may exist and may have executed

_JSON_CODE_RE = re.compile(rb'"code"\s*:\s*"([0-9]{1,9})"')
_JSON_MSG_RE = re.compile(rb'"msg"\s*:\s*"((?:[^"\\]|\\.){0,200})"')
_JSON_OID_RE = re.compile(rb'"orderId"\s*:\s*"([0-9A-Za-z]{1,40})"')


def classify_order_answer(status: int, body: bytes) -> tuple[int, str, str, str]:
    """(ANSWER_*, code, msg, orderId) for the HTTP answer to an order POST.

    Only a clear rejection means "not placed": a KuCoin error envelope (a JSON object with a
    code other than 200000) under an HTTP status below 500, and not a 5xxxxx code. A 5xx,
    a gateway's HTML page, a body that is not KuCoin's JSON, or a success without an orderId
    says nothing about the matching engine: the order may have executed (docs/kucoin.md 1.6),
    so the caller must look it up by clientOid. The body is scanned with three anchored
    regexes, not parsed, so that no input can raise here."""
    body = bytes(body[:4096])
    m = _JSON_CODE_RE.search(body)
    stripped = body.lstrip()
    if m is None or not stripped.startswith(b"{"):
        return ANSWER_AMBIGUOUS, "", f"HTTP {status}, not a KuCoin answer: {stripped[:60]!r}", ""
    code = m.group(1).decode()
    mm = _JSON_MSG_RE.search(body)
    msg = mm.group(1).decode("utf-8", "replace") if mm else ""
    if code == OK_CODE:
        mo = _JSON_OID_RE.search(body)
        if 200 <= status < 300 and mo is not None:
            return ANSWER_ACCEPTED, code, msg, mo.group(1).decode()
        return ANSWER_AMBIGUOUS, code, f"HTTP {status} success without an orderId", ""
    if status >= 500 or code.startswith("5"):
        return ANSWER_AMBIGUOUS, code, msg, ""
    if "duplicate" in msg.lower():
        # 400100 clientOid duplicate (docs/kucoin.md 5.2): an order with this clientOid exists,
        # so this request was not placed but an earlier one was: learn that one's fate
        return ANSWER_AMBIGUOUS, code, msg, ""
    return ANSWER_REJECTED, code, msg, ""


def order_body(symbol: str, side: str, clientOid: str, size=None, funds=None,
               type: str = "market", price=None, time_in_force: str | None = None) -> bytes:
    """Compact JSON body of an HF order (docs/kucoin.md 5.2), built once as the exact bytes
    that are signed and sent (docs/kucoin.md 8.6: a body re-serialized differently from the
    signed one fails with 400005).

    Market: exactly one of `size` (base, multiple of baseIncrement) or `funds` (quote,
    multiple of quoteIncrement). Limit: `price` and `size`. Key order matches docs/kucoin.md
    1.5's vector. All values are validated to need no JSON escaping.
    """
    if side not in ORDER_SIDES:
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    if type not in ORDER_TYPES:
        raise ValueError(f"type must be 'market' or 'limit', got {type!r}")
    _client_oid(clientOid)
    _token(symbol, "symbol")
    parts = [f'{{"clientOid":"{clientOid}","side":"{side}","symbol":"{symbol}",'
             f'"type":"{type}"']
    if type == "market":
        if (size is None) == (funds is None):
            raise ValueError("a market order needs exactly one of size or funds")
        if price is not None:
            raise ValueError("a market order takes no price")
    else:
        if price is None or size is None or funds is not None:
            raise ValueError("a limit order needs price and size (and no funds)")
        parts.append(f',"price":"{decimal_str(price, "price")}"')
    if size is not None:
        parts.append(f',"size":"{decimal_str(size, "size")}"')
    if funds is not None:
        parts.append(f',"funds":"{decimal_str(funds, "funds")}"')
    if time_in_force is not None:
        # docs/kucoin.md 5.2, 5.10: GTC (default), GTT, IOC, FOK; limit orders only
        if type != "limit" or time_in_force not in ("GTC", "GTT", "IOC", "FOK"):
            raise ValueError(f"timeInForce {time_in_force!r} needs a limit order and one of GTC, GTT, IOC, FOK")
        parts.append(f',"timeInForce":"{time_in_force}"')
    parts.append("}")
    return "".join(parts).encode("ascii")


def build_query(params) -> tuple[str, str]:
    """(sent, signed) query strings for ordered (key, value) pairs, None values dropped.

    docs/kucoin.md 1.2: the signature covers the un-encoded query. Values are
    percent-encoded for sending except ',' (legal in a query, and what KuCoin's own docs
    and ccxt send raw), so for symbols, currencies and ids sent == signed.
    """
    pairs = [(k, str(v)) for k, v in params if v is not None]
    if not pairs:
        return "", ""
    signed = "&".join(f"{k}={v}" for k, v in pairs)
    sent = "&".join(f"{k}={quote(v, safe=',-_.~')}" for k, v in pairs)
    return "?" + sent, "?" + signed


class _ThreadState:
    """Per-thread pool, parser and last rate-limit headers (one writer: its thread)."""

    __slots__ = ("pool", "parser", "rate_limit")

    def __init__(self, pool):
        self.pool = pool
        self.parser = simdjson.Parser()
        self.rate_limit = {}


class KucoinClient:
    """REST client for KuCoin (https://) or the simulator (http://127.0.0.1:N, or https://
    with --tls).

    `KucoinClient(base_url, signer=None, timeout_s=5.0, connect_timeout_s=None,
    ca_file="")`. Public endpoints work without a signer; private ones raise RuntimeError
    without one. https: certificate and hostname verification always on, against ca_file's
    CAs or the system store (tlsio.client_context); a failure raises TlsVerifyError.
    """

    def __init__(self, base_url: str, signer: Signer | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, connect_timeout_s: float | None = None,
                 ca_file: str = ""):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port], got {base_url!r}")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("base_url must not carry a path or query")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ca_file = ca_file
        self.signer = signer
        self.timeout = urllib3.Timeout(
            connect=connect_timeout_s if connect_timeout_s is not None else timeout_s,
            read=timeout_s)
        # docs/kucoin.md 1.4 / 8.5: server time minus local time, added to every signed
        # KC-API-TIMESTAMP. Written by sync_clock(), read by every thread (int: atomic);
        # also into offset_cell (a 1-element int64 array) when set: the kernel that signs
        # leg 0 reads it there (orderkern.py)
        self.offset_cell = None
        self.clock_offset_ms = 0
        self.clock_rtt_ms = None
        self._local = threading.local()
        # called as on_headers(path, headers) after every response, on the calling thread
        # (run.py: risk.RateBudget.observe_headers, docs/kucoin.md 7.1)
        self.on_headers = None
        self._states = []              # every thread's state, for rate_limits()
        self._states_lock = threading.Lock()

    def __repr__(self):
        return f"KucoinClient({self.base_url!r}, signed={self.signer is not None})"

    # ---- plumbing -------------------------------------------------------------------

    def _state(self) -> _ThreadState:
        st = getattr(self._local, "state", None)
        if st is None:
            # maxsize=1: one kept-alive connection per thread; block=False never waits.
            if self._scheme == "https":
                # a context per pool: urllib3 writes verify_mode on the one it is given
                pool = urllib3.HTTPSConnectionPool(
                    self._host, self._port, maxsize=1, block=False, timeout=self.timeout,
                    retries=False, ssl_context=tlsio.client_context(self.ca_file))
            else:
                pool = urllib3.HTTPConnectionPool(self._host, self._port, maxsize=1, block=False,
                                                  timeout=self.timeout, retries=False)
            st = _ThreadState(pool)
            self._local.state = st
            with self._states_lock:
                self._states.append(st)
        return st

    @property
    def rate_limit(self) -> dict:
        """Calling thread's last gw-ratelimit-* values (docs/kucoin.md 7.1): keys `limit`,
        `remaining`, `reset_ms` (ms until the pool's window resets), `path`; {} if none."""
        return self._state().rate_limit

    def rate_limits(self) -> list:
        """Copies of every thread's last rate-limit record (for a status line)."""
        with self._states_lock:
            return [dict(s.rate_limit) for s in self._states]

    def rate_limits_by_path(self) -> list:
        """(path, headers) of every thread's last rate-limit record, for a budget that starts
        after some requests were made (run.py, start-up)."""
        out = []
        for rl in self.rate_limits():
            if "limit" in rl:
                out.append((rl["path"].split("?")[0], {"gw-ratelimit-limit": rl["limit"],
                                                       "gw-ratelimit-remaining": rl["remaining"],
                                                       "gw-ratelimit-reset": rl["reset_ms"]}))
        return out

    def close(self):
        """Close the calling thread's pool (other threads' pools close with the process)."""
        st = getattr(self._local, "state", None)
        if st is not None:
            st.pool.close()
            self._local.state = None
            with self._states_lock:
                self._states.remove(st)

    @property
    def clock_offset_ms(self) -> int:
        return self._clock_offset_ms

    @clock_offset_ms.setter
    def clock_offset_ms(self, value: int) -> None:
        self._clock_offset_ms = value
        if self.offset_cell is not None:
            self.offset_cell[0] = value

    def now_ms(self) -> int:
        """Local wall clock in ms corrected by the server clock offset."""
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    def _request(self, method: str, path: str, params=(), body: bytes = b"",
                 signed: bool = False, kind: int = _KIND_PLAIN, decimals: bool = True):
        """Send one request and return the envelope's `data` as Python objects, with
        DECIMAL_FIELDS converted to Decimal when `decimals`."""
        sent_q, signed_q = build_query(params)
        url = path + sent_q
        if signed:
            if self.signer is None:
                raise RuntimeError(f"{method} {path} is private and needs a Signer")
            headers = self.signer.headers(self.now_ms(), method, path + signed_q, body)
        else:
            headers = {"Content-Type": "application/json"} if method == "POST" else {}
        st = self._state()
        attempts = 2 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                resp = st.pool.urlopen(method, url, body=body if method == "POST" else None,
                                       headers=headers, retries=False, redirect=False,
                                       assert_same_host=False, preload_content=True)
                break
            except ProtocolError as e:
                # A kept-alive connection the server closed between requests surfaces here
                # (RemoteDisconnected / reset). Safe to resend only an idempotent GET.
                if attempt + 1 < attempts:
                    continue
                raise TransportError(None, f"connection lost: {type(e).__name__}", None,
                                     url) from e
            except NewConnectionError as e:
                # Checked before timeouts: urllib3 derives it from ConnectTimeoutError.
                raise TransportError(None, f"connect failed: {type(e).__name__}", None,
                                     url) from e
            except Urllib3Timeout as e:
                raise TransportError(None, f"timeout: {type(e).__name__}", None, url) from e
            except Urllib3SSLError as e:
                reason = tlsio.verify_reason(e)
                if reason is None:
                    raise TransportError(None, f"TLS: {e}", None, url) from e
                line = tlsio.failure_text(self.base_url, reason, self.ca_file)
                err = TlsVerifyError(None, line, None, url)
                err.tls_failure = line
                raise err from e
            except (Urllib3HTTPError, OSError) as e:
                raise TransportError(None, f"transport: {type(e).__name__}", None, url) from e
        status = resp.status
        self._record_rate_limit(st, resp.headers, url)
        if self.on_headers is not None:
            self.on_headers(path, resp.headers)
        try:
            doc = st.parser.parse(resp.data, True) if resp.data else None
        except ValueError:
            doc = None
        code = msg = None
        if isinstance(doc, dict):
            code = doc.get("code")
            code = None if code is None else str(code)
            msg = doc.get("msg")
        if status == 200 and code == OK_CODE:
            data = doc.get("data")
            if decimals:
                try:
                    convert_decimals(data)
                except ValueError as e:
                    raise KucoinError(None, str(e), status, url) from None
            return data
        if msg is None:
            # No envelope (e.g. a proxy's HTML page): keep a short, printable excerpt.
            msg = resp.data[:120].decode("utf-8", "replace") if code is None else ""
        raise self._classify(code, str(msg), status, url, kind, resp.headers)

    @staticmethod
    def _record_rate_limit(st, headers, url):
        lim = headers.get("gw-ratelimit-limit")
        if lim is None:
            return
        rl = st.rate_limit
        try:
            rl["limit"] = int(lim)
            rl["remaining"] = int(headers.get("gw-ratelimit-remaining", -1))
            rl["reset_ms"] = int(headers.get("gw-ratelimit-reset", -1))
        except ValueError:
            return
        rl["path"] = url

    @staticmethod
    def _classify(code, msg, status, url, kind, headers):
        """Error envelope -> typed error (docs/kucoin.md 1.6, 5.8, 5.9, 7.1)."""
        if status == 429 or code == "429000":
            err = RateLimited(code, msg, status, url)
            reset = headers.get("gw-ratelimit-reset")
            if reset is not None and reset.lstrip("-").isdigit():
                err.reset_ms = int(reset)
            return err
        if status >= 500 or code == "500000":
            return ServerError(code, msg, status, url)
        if code in _AUTH_CODES:
            return AuthError(code, msg, status, url)
        if code == "404000" or (kind == _KIND_LOOKUP and (status == 404 or
                                                          _NOT_EXIST_RE.search(msg))):
            return NotFound(code, msg, status, url)
        if kind == _KIND_PLACE and code is not None:
            return OrderRejected(code, msg, status, url)
        if status == 404:
            return NotFound(code, msg, status, url)
        return KucoinError(code, msg, status, url)

    # ---- time -----------------------------------------------------------------------

    def server_time_ms(self) -> int:
        """GET /api/v1/timestamp (docs/kucoin.md 1.4): server time in ms."""
        return int(self._request("GET", "/api/v1/timestamp"))

    def sync_clock(self, samples: int = 3) -> int:
        """Measure and store clock_offset_ms = server time - local time (docs/kucoin.md 1.4).

        The server stamped its time somewhere inside the round trip; the midpoint of the
        request is the best local estimate of that instant. Of `samples` requests the one
        with the shortest round trip wins (the first one may include the TCP connect).
        """
        best = None
        for _ in range(max(1, samples)):
            t0 = time.time_ns()
            server_ms = self.server_time_ms()
            t1 = time.time_ns()
            rtt_ns = t1 - t0
            if best is None or rtt_ns < best[0]:
                best = (rtt_ns, server_ms - (t0 + t1) // 2 / 1e6)
        self.clock_offset_ms = int(round(best[1]))
        self.clock_rtt_ms = best[0] / 1e6
        return self.clock_offset_ms

    # ---- reference data -------------------------------------------------------------

    def symbols(self, market: str | None = None) -> list:
        """GET /api/v2/symbols (docs/kucoin.md 6.1): list of symbol dicts, decimals as Decimal."""
        q = [("market", _token(market, "market"))] if market is not None else ()
        return self._request("GET", "/api/v2/symbols", q) or []

    def trade_fees(self, symbols) -> dict:
        """GET /api/v1/trade-fees in batches of 10 (docs/kucoin.md 6.2), merged into
        {symbol: {"symbol", "takerFeeRate", "makerFeeRate", ...}} with Decimal rates."""
        syms = [_token(s, "symbol") for s in symbols]
        out = {}
        for i in range(0, len(syms), TRADE_FEES_BATCH):
            batch = ",".join(syms[i:i + TRADE_FEES_BATCH])
            rows = self._request("GET", "/api/v1/trade-fees", [("symbols", batch)],
                                 signed=True) or []
            for row in rows:
                out[row["symbol"]] = row
        return out

    def base_fee(self, currency_type: int | None = None) -> dict:
        """GET /api/v1/base-fee (docs/kucoin.md 6.3): {"takerFeeRate", "makerFeeRate"}."""
        q = [("currencyType", int(currency_type))] if currency_type is not None else ()
        return self._request("GET", "/api/v1/base-fee", q, signed=True)

    def accounts(self, currency: str | None = None, type: str | None = None) -> list:
        """GET /api/v1/accounts (docs/kucoin.md 6.4): [{id, currency, type, balance,
        available, holds}] with Decimal amounts. Orders draw only on type "trade"."""
        q = [("currency", None if currency is None else _token(currency, "currency")),
             ("type", None if type is None else _token(type, "type"))]
        return self._request("GET", "/api/v1/accounts", q, signed=True) or []

    def bullet_public(self) -> dict:
        """POST /api/v1/bullet-public (docs/kucoin.md 2.1): {token, instanceServers}."""
        return self._request("POST", "/api/v1/bullet-public")

    def bullet_private(self) -> dict:
        """POST /api/v1/bullet-private, signed over an empty body (docs/kucoin.md 1.2, 2.1)."""
        return self._request("POST", "/api/v1/bullet-private", signed=True)

    def level2_snapshot(self, symbol: str, depth: int = 100) -> dict:
        """GET level2_20 / level2_100 (docs/kucoin.md 3.7).

        Returns {"sequence": int, "time": int (ms), "bids": [[px, sz], ...],
        "asks": [...]} with prices/sizes left as the exchange's strings (books.py converts
        them); bids high->low, asks low->high. Only `depth` levels per side (8.4).
        """
        if depth not in SNAPSHOT_DEPTHS:
            raise ValueError("depth must be 20 or 100 (docs/kucoin.md 3.7)")
        data = self._request("GET", f"/api/v1/market/orderbook/level2_{depth}",
                             [("symbol", _token(symbol, "symbol"))], decimals=False)
        return {"sequence": int(data["sequence"]),  # a string on the wire (3.7)
                "time": int(data.get("time") or 0),
                "bids": data.get("bids") or [],
                "asks": data.get("asks") or []}

    # ---- orders ---------------------------------------------------------------------

    def _post_order(self, path, symbol, side, clientOid, size, funds, type, price,
                    time_in_force=None):
        body = order_body(symbol, side, clientOid, size=size, funds=funds, type=type,
                          price=price, time_in_force=time_in_force)
        return self._request("POST", path, body=body, signed=True, kind=_KIND_PLACE)

    def place_order(self, symbol, side, clientOid, size=None, funds=None, type="market",
                    price=None, time_in_force=None) -> dict:
        """POST /api/v1/hf/orders (docs/kucoin.md 5.1/5.2) -> {"orderId", "clientOid"}.
        Never retried. On ServerError/TransportError the order may exist: query it by
        clientOid (get_order_by_client_oid) before doing anything else."""
        return self._post_order("/api/v1/hf/orders", symbol, side, clientOid, size, funds,
                                type, price, time_in_force)

    def test_order(self, symbol, side, clientOid, size=None, funds=None, type="market",
                   price=None, time_in_force=None) -> dict:
        """POST /api/v1/hf/orders/test (docs/kucoin.md 5.3): validated, never matched."""
        return self._post_order("/api/v1/hf/orders/test", symbol, side, clientOid, size,
                                funds, type, price, time_in_force)

    def place_order_sync(self, symbol, side, clientOid, size=None, funds=None,
                         type="market", price=None, time_in_force=None) -> dict:
        """POST /api/v1/hf/orders/sync (docs/kucoin.md 5.4): order state after matching."""
        return self._post_order("/api/v1/hf/orders/sync", symbol, side, clientOid, size,
                                funds, type, price, time_in_force)

    def active_order_symbols(self) -> list:
        """GET /api/v1/hf/orders/active/symbols (docs/kucoin.md 5.1): symbols with active HF
        orders."""
        data = self._request("GET", "/api/v1/hf/orders/active/symbols", signed=True)
        return list((data or {}).get("symbols") or [])

    def active_orders(self, symbol: str) -> list:
        """GET /api/v1/hf/orders/active?symbol= (docs/kucoin.md 5.1): the symbol's active HF
        orders (order objects, 5.6)."""
        return list(self._request("GET", "/api/v1/hf/orders/active",
                                  [("symbol", _token(symbol, "symbol"))], signed=True) or [])

    def level1(self, symbol: str) -> dict:
        """GET /api/v1/market/orderbook/level1?symbol= (public): best bid and ask."""
        return self._request("GET", "/api/v1/market/orderbook/level1",
                             [("symbol", _token(symbol, "symbol"))]) or {}

    def get_order(self, order_id: str, symbol: str) -> dict:
        """GET /api/v1/hf/orders/{orderId}?symbol= (docs/kucoin.md 5.6). NotFound if unknown."""
        return self._request(
            "GET", f"/api/v1/hf/orders/{_token(order_id, 'order_id')}",
            [("symbol", _token(symbol, "symbol"))], signed=True, kind=_KIND_LOOKUP)

    def get_order_by_client_oid(self, client_oid: str, symbol: str) -> dict:
        """GET /api/v1/hf/orders/client-order/{clientOid}?symbol= (docs/kucoin.md 5.1)."""
        return self._request(
            "GET", f"/api/v1/hf/orders/client-order/{_client_oid(client_oid)}",
            [("symbol", _token(symbol, "symbol"))], signed=True, kind=_KIND_LOOKUP)

    def cancel_order(self, order_id: str, symbol: str) -> dict:
        """DELETE /api/v1/hf/orders/{orderId}?symbol= -> {"orderId"} (docs/kucoin.md 5.1).
        Only requests the cancel; an order already filled/canceled raises NotFound (5.8)."""
        return self._request(
            "DELETE", f"/api/v1/hf/orders/{_token(order_id, 'order_id')}",
            [("symbol", _token(symbol, "symbol"))], signed=True, kind=_KIND_LOOKUP)

    def cancel_order_by_client_oid(self, client_oid: str, symbol: str) -> dict:
        """DELETE /api/v1/hf/orders/client-order/{clientOid}?symbol= -> {"clientOid"}."""
        return self._request(
            "DELETE", f"/api/v1/hf/orders/client-order/{_client_oid(client_oid)}",
            [("symbol", _token(symbol, "symbol"))], signed=True, kind=_KIND_LOOKUP)
