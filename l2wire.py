"""Wire parser for KuCoin /market/level2 frames: raw bytes -> a caller-owned changes array.

Owns: CHANGE_DTYPE (one price-level change), L2HDR_DTYPE (one frame's sequence range and
time), the side codes SIDE_BID/SIDE_ASK (re-exported by books.py), the parse_l2 kernel and
the exact decimal-string -> float64 conversion it uses.
Called by: the hot thread, once per level2 frame (directly or through books.book_on_frame);
nothing here allocates per call or builds a Python object per price level (docs/design.md 9).
Test: `python -m pytest -q tests/test_l2wire.py`.

Frame (docs/kucoin.md 3.6; field order differs between the 2021 stream and the 2024 docs, so
no order is assumed and any JSON whitespace is accepted):
  {"type":"message","topic":"/market/level2:BTC-USDT","subject":"trade.l2update",
   "data":{"changes":{"asks":[["67993.3","1.21427407","14701689783"]],"bids":[]},
           "sequenceEnd":14701689783,"sequenceStart":14701689783,"symbol":"BTC-USDT",
           "time":1729816425625}}
`time` (ms) is absent in 2021 frames: hdr ts_ms = -1 then. Numbers may be quoted or bare.
Unknown keys are skipped (string- and bracket-aware). Changes are written asks first or bids
first in frame order; within one message a price appears once per side (3.6), so the order
of application does not matter.

Numbers: a decimal string is read as an integer mantissa m (<= 18 significant digits; leading
and trailing zeros are not counted) and a power of ten e. The result is the float64 nearest
to the decimal value, as Python's float(s) gives:
- e == 0: float(m) (the int64 -> double conversion rounds correctly);
- m <= 2**53 and |e| <= 22: one multiplication or division by an exactly representable power
  of ten, which IEEE rounds correctly (Clinger's fast path) - every real KuCoin price/size;
- e < 0 otherwise (long mantissas, down to 1e-26): exact long division by 5**|e| with a
  sticky bit, rounded half-to-even, then scaled by 2**e (ldexp is exact here);
- anything else (more than 18 significant digits, values >= ~9e18 with long mantissas,
  |e| beyond those ranges) is W_NUMBER rather than a silently inexact value.

Return codes of parse_l2: n >= 0 changes written, or a negative W_* error; never an exception.

Kernel options: every kernel here is @njit(nogil=True, cache=True, _nrt=False). `_nrt=False`
(Numba's documented-in-code `nrt` flag) compiles without reference counting: with it on, each
call of a helper that takes an array costs an NRT_incref/NRT_decref pair (two atomic ops,
~14 ns) that Numba's refcount pruning leaves inside loops, and the parser makes ~80 such
calls per frame (measured 1.4 us -> 0.25 us per frame in-kernel, 2.7 -> 0.8 us per call
from Python). It also turns any allocation inside a kernel into a compile error, which is
the rule here anyway. Callers compiled with NRT on can call these kernels normally.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

SIDE_BID = 0
SIDE_ASK = 1

# One change [price, size, sequence] of a level2 frame. Writer: parse_l2 (hot thread).
CHANGE_DTYPE = np.dtype([("px", "f8"), ("sz", "f8"), ("seq", "i8"), ("side", "i4")], align=True)
# The frame's sequence range and exchange time (ms; -1 when the frame has no `time`).
L2HDR_DTYPE = np.dtype([("seq_start", "i8"), ("seq_end", "i8"), ("ts_ms", "i8")])
CHANGES_CAP = 1024  # default capacity; a frame with more changes is W_TOO_MANY

W_TRUNCATED = -1   # the frame ends inside a value
W_SYNTAX = -2      # an unexpected byte where JSON structure was expected
W_NUMBER = -3      # a number that is empty, malformed or outside the exact range above
W_MISSING = -4     # no data / changes / sequenceStart / sequenceEnd
W_TOO_MANY = -5    # more changes than the caller's array holds

L2_TOPIC_PREFIX = b"/market/level2:"

_P10 = np.array([10.0 ** k for k in range(23)])                 # exact doubles 1e0..1e22
_POW5 = np.array([5 ** k for k in range(27)], dtype=np.int64)   # 5**26 < 2**61
_I10 = np.array([10 ** k for k in range(19)], dtype=np.int64)
_TWO53 = 1 << 53
_MAX_DIGITS = 18   # 10**18 < 2**63: the mantissa always fits an int64

_K_DATA = np.frombuffer(b"data", np.uint8)
_K_CHANGES = np.frombuffer(b"changes", np.uint8)
_K_ASKS = np.frombuffer(b"asks", np.uint8)
_K_BIDS = np.frombuffer(b"bids", np.uint8)
_K_SEQ_START = np.frombuffer(b"sequenceStart", np.uint8)
_K_SEQ_END = np.frombuffer(b"sequenceEnd", np.uint8)
_K_TIME = np.frombuffer(b"time", np.uint8)


def alloc_changes(capacity: int = CHANGES_CAP) -> np.ndarray:
    return np.zeros(capacity, CHANGE_DTYPE)


def alloc_l2hdr() -> np.ndarray:
    return np.zeros(1, L2HDR_DTYPE)


# ---- scanning primitives ---------------------------------------------------------------

@njit(nogil=True, cache=True, _nrt=False)
def _ws(buf, i, n):
    while i < n:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    return i


@njit(nogil=True, cache=True, _nrt=False)
def _string_end(buf, i, n):
    """buf[i] is an opening quote: index after the closing quote, or W_TRUNCATED."""
    i += 1
    while i < n:
        c = buf[i]
        if c == 34:
            return i + 1
        i += 2 if c == 92 else 1
    return W_TRUNCATED


@njit(nogil=True, cache=True, _nrt=False)
def _skip_value(buf, i, n):
    """Index after the JSON value at buf[i] (of a key we do not need), or a W_* error."""
    if i >= n:
        return W_TRUNCATED
    c = buf[i]
    if c == 34:
        return _string_end(buf, i, n)
    if c == 123 or c == 91:
        depth = 0
        while i < n:
            c = buf[i]
            if c == 34:
                i = _string_end(buf, i, n)
                if i < 0:
                    return i
                continue
            if c == 123 or c == 91:
                depth += 1
            elif c == 125 or c == 93:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return W_TRUNCATED
    j = i
    while j < n:
        c = buf[j]
        if c == 44 or c == 125 or c == 93 or c == 32 or c == 10 or c == 13 or c == 9:
            break
        if c == 34 or c == 123 or c == 91 or c == 58:
            return W_SYNTAX
        j += 1
    if j == i:
        return W_SYNTAX
    return W_TRUNCATED if j == n else j


@njit(nogil=True, cache=True, _nrt=False)
def _key_is(buf, ks, ke, lit):
    if ke - ks != lit.shape[0]:
        return False
    for k in range(lit.shape[0]):
        if buf[ks + k] != lit[k]:
            return False
    return True


@njit(nogil=True, cache=True, _nrt=False)
def _read_key(buf, i, n):
    """At a key's opening quote: (key start, key end, index of its value, status)."""
    if i >= n:
        return 0, 0, i, W_TRUNCATED
    if buf[i] != 34:
        return 0, 0, i, W_SYNTAX
    e = _string_end(buf, i, n)
    if e < 0:
        return 0, 0, i, e
    j = _ws(buf, e, n)
    if j >= n:
        return 0, 0, j, W_TRUNCATED
    if buf[j] != 58:
        return 0, 0, j, W_SYNTAX
    return i + 1, e - 1, _ws(buf, j + 1, n), 0


@njit(nogil=True, cache=True, _nrt=False)
def _after_member(buf, i, n):
    """After an object member: (index of the next key or -1 at '}' end, index, status)."""
    i = _ws(buf, i, n)
    if i >= n:
        return 0, i, W_TRUNCATED
    c = buf[i]
    if c == 44:
        return 1, _ws(buf, i + 1, n), 0
    if c == 125:
        return 0, i + 1, 0
    return 0, i, W_SYNTAX


# ---- numbers ---------------------------------------------------------------------------

@njit(nogil=True, cache=True, _nrt=False)
def _div_pow10_exact(m, k):
    """Nearest double to m / 10**k for 0 < m < 10**18, 0 <= k <= 26 (see module docstring)."""
    d = _POW5[k]
    q = m // d
    r = m - q * d
    e2 = 0
    sticky = 0
    big = np.int64(1) << 55
    small = np.int64(1) << 54
    while q >= big:                      # keep 55 significant bits, the rest goes to sticky
        sticky |= q & 1
        q >>= 1
        e2 += 1
    while q < small:                     # long division: one more quotient bit per step
        r <<= 1                          # r < d <= 5**26 < 2**61, so 2r fits an int64
        q <<= 1
        if r >= d:
            q |= 1
            r -= d
        e2 -= 1
    if r != 0:
        sticky = 1
    low = q & 3                          # 55 -> 53 bits, round half to even
    q >>= 2
    e2 += 2
    if (low & 2) != 0 and ((low & 1) != 0 or sticky != 0 or (q & 1) != 0):
        q += 1
    return math.ldexp(float(q), e2 - k)


@njit(nogil=True, cache=True, _nrt=False)
def parse_decimal(buf, i, n):
    """Decimal number at buf[i:n] (no quotes): (value, index after it, status 0 or W_*)."""
    neg = False
    if i < n and buf[i] == 45:
        neg = True
        i += 1
    m = np.int64(0)
    nd = 0          # digits held in m
    zeros = 0       # zeros seen after m's last nonzero digit, not yet folded into m
    frac = 0        # digits after the decimal point
    seen = False
    point = False
    while i < n:
        c = int(buf[i])
        if 48 <= c <= 57:
            seen = True
            if point:
                frac += 1
            if c == 48:
                if m != 0:
                    zeros += 1
            else:
                nd += zeros + 1
                if nd > _MAX_DIGITS:
                    return 0.0, i, W_NUMBER
                m = m * _I10[zeros + 1] + (c - 48)
                zeros = 0
        elif c == 46 and not point:
            point = True
        else:
            break
        i += 1
    if not seen:
        return 0.0, i, W_NUMBER if i < n else W_TRUNCATED
    e10 = zeros - frac
    if i < n and (buf[i] == 101 or buf[i] == 69):          # e / E exponent
        i += 1
        eneg = False
        if i < n and (buf[i] == 45 or buf[i] == 43):
            eneg = buf[i] == 45
            i += 1
        ev = 0
        ed = 0
        while i < n and 48 <= buf[i] <= 57:
            ev = ev * 10 + (int(buf[i]) - 48)
            ed += 1
            i += 1
            if ed > 4:
                return 0.0, i, W_NUMBER
        if ed == 0:
            return 0.0, i, W_NUMBER if i < n else W_TRUNCATED
        e10 += -ev if eneg else ev
    if m == 0:
        v = 0.0
    elif e10 == 0:
        v = float(m)
    elif e10 > 0:
        if m <= _TWO53 and e10 <= 22:
            v = float(m) * _P10[e10]
        else:
            # fold powers of ten into m while it stays exact, then the fast path again
            while e10 > 0 and m <= 922337203685477580:
                m *= 10
                e10 -= 1
                if m <= _TWO53 and e10 <= 22:
                    break
            if e10 == 0:
                v = float(m)
            elif m <= _TWO53 and e10 <= 22:
                v = float(m) * _P10[e10]
            else:
                return 0.0, i, W_NUMBER
    else:
        k = -e10
        if m <= _TWO53 and k <= 22:
            v = float(m) / _P10[k]
        elif k <= 26:
            v = _div_pow10_exact(m, k)
        else:
            return 0.0, i, W_NUMBER
    return (-v if neg else v), i, 0


@njit(nogil=True, cache=True, _nrt=False)
def _read_num(buf, i, n):
    """A number, quoted ("242.6") or bare (242.6): (value, index after it, status)."""
    if i >= n:
        return 0.0, i, W_TRUNCATED
    if buf[i] == 34:
        v, j, st = parse_decimal(buf, i + 1, n)
        if st != 0:
            return v, j, st
        if j >= n:
            return v, j, W_TRUNCATED
        if buf[j] != 34:
            return v, j, W_NUMBER
        return v, j + 1, 0
    return parse_decimal(buf, i, n)


@njit(nogil=True, cache=True, _nrt=False)
def _read_int(buf, i, n):
    """An integer, quoted or bare (sequences, ms times): (value, index after it, status)."""
    q = i < n and buf[i] == 34
    if q:
        i += 1
    neg = i < n and buf[i] == 45
    if neg:
        i += 1
    v = np.int64(0)
    nd = 0
    while i < n and 48 <= buf[i] <= 57:
        if nd == _MAX_DIGITS:             # a 19th digit could overflow int64
            return v, i, W_NUMBER
        v = v * 10 + (int(buf[i]) - 48)
        nd += 1
        i += 1
    if i >= n:
        return v, i, W_TRUNCATED
    if nd == 0:
        return v, i, W_NUMBER
    if q:
        if buf[i] != 34:
            return v, i, W_NUMBER
        i += 1
    elif buf[i] == 46 or buf[i] == 101 or buf[i] == 69:
        return v, i, W_NUMBER
    return (-v if neg else v), i, 0


# ---- structure -------------------------------------------------------------------------

@njit(nogil=True, cache=True, _nrt=False)
def _parse_levels(buf, i, n, side, changes, cnt):
    """[[px, sz, seq], ...] -> rows of `changes` from cnt on: (index after, new cnt, status)."""
    if i >= n:
        return i, cnt, W_TRUNCATED
    if buf[i] != 91:
        return i, cnt, W_SYNTAX
    i = _ws(buf, i + 1, n)
    if i >= n:
        return i, cnt, W_TRUNCATED
    if buf[i] == 93:
        return i + 1, cnt, 0
    while True:
        if buf[i] != 91:
            return i, cnt, W_SYNTAX
        p, i, st = _read_num(buf, _ws(buf, i + 1, n), n)
        if st != 0:
            return i, cnt, st
        i = _ws(buf, i, n)
        if i >= n:
            return i, cnt, W_TRUNCATED
        if buf[i] != 44:
            return i, cnt, W_SYNTAX
        s, i, st = _read_num(buf, _ws(buf, i + 1, n), n)
        if st != 0:
            return i, cnt, st
        i = _ws(buf, i, n)
        if i >= n:
            return i, cnt, W_TRUNCATED
        if buf[i] != 44:
            return i, cnt, W_SYNTAX
        q, i, st = _read_int(buf, _ws(buf, i + 1, n), n)
        if st != 0:
            return i, cnt, st
        i = _ws(buf, i, n)
        if i >= n:
            return i, cnt, W_TRUNCATED
        if buf[i] != 93:
            return i, cnt, W_SYNTAX
        if cnt >= changes.shape[0]:
            return i, cnt, W_TOO_MANY
        row = changes[cnt]
        row["px"] = p
        row["sz"] = s
        row["seq"] = q
        row["side"] = side
        cnt += 1
        i = _ws(buf, i + 1, n)
        if i >= n:
            return i, cnt, W_TRUNCATED
        if buf[i] == 44:
            i = _ws(buf, i + 1, n)
            if i >= n:
                return i, cnt, W_TRUNCATED
            continue
        if buf[i] == 93:
            return i + 1, cnt, 0
        return i, cnt, W_SYNTAX


@njit(nogil=True, cache=True, _nrt=False)
def _parse_changes(buf, i, n, changes, cnt):
    """{"asks": [...], "bids": [...]}: (index after, new cnt, found mask 1=asks 2=bids, status)."""
    found = 0
    if i >= n:
        return i, cnt, found, W_TRUNCATED
    if buf[i] != 123:
        return i, cnt, found, W_SYNTAX
    i = _ws(buf, i + 1, n)
    if i < n and buf[i] == 125:
        return i + 1, cnt, found, 0
    more = 1
    while more == 1:
        ks, ke, i, st = _read_key(buf, i, n)
        if st != 0:
            return i, cnt, found, st
        if _key_is(buf, ks, ke, _K_ASKS):
            i, cnt, st = _parse_levels(buf, i, n, SIDE_ASK, changes, cnt)
            found |= 1
        elif _key_is(buf, ks, ke, _K_BIDS):
            i, cnt, st = _parse_levels(buf, i, n, SIDE_BID, changes, cnt)
            found |= 2
        else:
            i = _skip_value(buf, i, n)
            st = i if i < 0 else 0
        if st != 0:
            return i, cnt, found, st
        more, i, st = _after_member(buf, i, n)
        if st != 0:
            return i, cnt, found, st
    return i, cnt, found, 0


@njit(nogil=True, cache=True, _nrt=False)
def _parse_data(buf, i, n, changes, hdr):
    """The "data" object: (index after, changes count, found mask 1=changes 2=start 4=end,
    status)."""
    found = 0
    cnt = 0
    if i >= n:
        return i, cnt, found, W_TRUNCATED
    if buf[i] != 123:
        return i, cnt, found, W_SYNTAX
    i = _ws(buf, i + 1, n)
    if i < n and buf[i] == 125:
        return i + 1, cnt, found, 0
    more = 1
    while more == 1:
        ks, ke, i, st = _read_key(buf, i, n)
        if st != 0:
            return i, cnt, found, st
        if _key_is(buf, ks, ke, _K_CHANGES):
            i, cnt, _, st = _parse_changes(buf, i, n, changes, cnt)
            found |= 1
        elif _key_is(buf, ks, ke, _K_SEQ_START):
            v, i, st = _read_int(buf, i, n)
            hdr[0]["seq_start"] = v
            found |= 2
        elif _key_is(buf, ks, ke, _K_SEQ_END):
            v, i, st = _read_int(buf, i, n)
            hdr[0]["seq_end"] = v
            found |= 4
        elif _key_is(buf, ks, ke, _K_TIME):
            v, i, st = _read_int(buf, i, n)
            hdr[0]["ts_ms"] = v
        else:
            i = _skip_value(buf, i, n)
            st = i if i < 0 else 0
        if st != 0:
            return i, cnt, found, st
        more, i, st = _after_member(buf, i, n)
        if st != 0:
            return i, cnt, found, st
    return i, cnt, found, 0


@njit(nogil=True, cache=True, _nrt=False)
def parse_l2(frame, changes, hdr):
    """Parse one /market/level2 frame (uint8 array of the whole frame).

    Writes hdr[0] (seq_start, seq_end, ts_ms or -1) and changes[0:n] (side, px, sz, seq);
    returns n >= 0, or W_TRUNCATED / W_SYNTAX / W_NUMBER / W_MISSING / W_TOO_MANY.
    """
    n = frame.shape[0]
    hdr[0]["ts_ms"] = -1
    i = _ws(frame, 0, n)
    if i >= n:
        return W_TRUNCATED
    if frame[i] != 123:
        return W_SYNTAX
    i = _ws(frame, i + 1, n)
    if i < n and frame[i] == 125:
        return W_MISSING
    found = 0
    cnt = 0
    more = 1
    while more == 1:
        ks, ke, i, st = _read_key(frame, i, n)
        if st != 0:
            return st
        if _key_is(frame, ks, ke, _K_DATA):
            i, c, f, st = _parse_data(frame, i, n, changes, hdr)
            cnt = c
            found = f
        else:
            i = _skip_value(frame, i, n)
            st = i if i < 0 else 0
        if st != 0:
            return st
        more, i, st = _after_member(frame, i, n)
        if st != 0:
            return st
    if _ws(frame, i, n) != n:
        return W_SYNTAX
    if found != 7:
        return W_MISSING
    return cnt


# ---- Python-side helpers (hot thread, before the kernel call) ---------------------------

def topic_symbol(frame: bytes) -> bytes | None:
    """b"BTC-USDT" from a frame's "topic":"/market/level2:BTC-USDT", or None.

    A bytes search, not a JSON parse: the prefix occurs only in the topic value."""
    i = frame.find(L2_TOPIC_PREFIX)
    if i < 0:
        return None
    i += len(L2_TOPIC_PREFIX)
    j = frame.find(b'"', i)
    if j <= i:
        return None
    return frame[i:j]


def frame_symbol_id(frame: bytes, sym_ids: dict) -> int:
    """Book row of the frame's symbol via the caller's dict {b"BTC-USDT": id}; -1 if unknown."""
    s = topic_symbol(frame)
    return -1 if s is None else sym_ids.get(s, -1)


def parse_frame(frame: bytes, changes: np.ndarray, hdr: np.ndarray) -> int:
    """parse_l2 over a bytes frame (a zero-copy uint8 view)."""
    return parse_l2(np.frombuffer(frame, np.uint8), changes, hdr)
