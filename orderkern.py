"""Leg 0's order request, sized, signed and framed inside the chunk kernel.

Owner: the hot thread. hotctx.process_chunk (and hot_reeval) call `build_leg0` right after
pipeline staged a signal, before the kernel returns to Python; HotLoop._dispatch_signal then
has executor.fire_leg0 write the slot's ready request (`ok_req[slot]`) to the order
connection. What the kernel does here is what executor.fire_leg did in Python for leg 0
(cascade.size_leg, the body format, Signer.post_headers, OrderConn.post_request), with the
same bytes: measured on the EPYC host, that Python cost 34-44 us p50 between the decision
and the signature, cold once per order (docs/design.md 9).

What it builds: a market order of the staged signal's start volume,
`{"clientOid":"ta<corr>s<slot>l0",...,"funds"|"size":"<text>"}`, or with leg0_order = ioc
the limit IOC at the signal's price (cascade.size_limit; executor.ioc_formats), signed with
HMAC-SHA256(secret, timestamp + "POST" + path + body) (docs/kucoin.md 1.1-1.2) from the
keyed pad states the Signer holds (Signer.kernel_parts), the timestamp being the wall clock
plus the clock offset measured against the venue (`ok_ctl[C_OFFSET]`, written by
kucoin.KucoinClient whenever it syncs, docs/kucoin.md 1.4).

What it does not decide: the kernel builds only the orders cascade.size_leg would place.
Anything else (an amount that is not finite, a size outside the symbol's limits, minFunds
needing a bid, more than 2**52 increments, a body that would not fit)
leaves the slot's request empty (`len` 0), and fire_leg0 sizes the leg in Python as before,
which writes the reason of a refusal into the report. So a kernel-built order is one the
Python path would have sent byte for byte (tests/test_orderkern.py checks the sizing,
the signature and the whole request against cascade, hmac and OrderConn.post_request), and
no order is refused for rounding that Python would not refuse.

Arrays (run.allocate; filled by `fill` once the signer and the order path are known):
ok_plan[tri] leg 0's rules, ok_body[tri] its body pieces, ok_tmpl the request's constant
pieces, ok_ctl the key words, offsets and switches, ok_req[slot] / ok_info[slot] the built
request and what fire_leg0 needs of it, ok_scr and ok_w the kernel's scratch.
Secrets: ok_ctl holds the HMAC pad states and ok_tmpl the signed passphrase header; nothing
here logs, and neither array is printed anywhere.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import socket

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

import cascade
import rings
import signer
import tlsio

PLAN_DTYPE = np.dtype([
    ("ok", "i8"),          # 1: the kernel may build this triangle's leg 0
    ("side", "i8"),        # cascade.LEG_BUY (by funds) / LEG_SELL (by size)
    ("dp", "i8"),          # decimals of the field's unit (cascade.Increment)
    ("inc_units", "i8"),   # the increment in units
    ("per_inc", "f8"),     # increments per 1.0
    ("scale", "f8"),       # 10**dp (exact as a float for dp <= 22)
    ("fee", "f8"),         # taker fee (a buy's funds leave room for it, cascade.size_leg)
    ("min_u", "i8"),       # quoteMinSize (buy) / baseMinSize (sell), units, rounded up
    ("max_u", "i8"),       # quoteMaxSize / baseMaxSize, units, rounded down
    ("min_funds_u", "i8"),  # minFunds in quote units (0: none)
    ("min_funds_f", "f8"),
    ("pre_len", "i8"),     # body pieces in ok_body[tri]: pre + clientOid + mid + text + post
    ("mid_len", "i8"),
    ("post_len", "i8"),
    # leg 0 as a limit IOC (leg0_order = ioc): cascade.size_limit's base size and price
    ("ioc_ok", "i8"),
    ("b_dp", "i8"), ("b_inc_units", "i8"), ("b_per_inc", "f8"), ("b_scale", "f8"),
    ("b_min_u", "i8"), ("b_max_u", "i8"),
    ("p_dp", "i8"), ("p_inc_units", "i8"), ("p_per_inc", "f8"), ("p_scale", "f8"),
    # its body after the market one in ok_body[tri]: pre + clientOid + mid + price + mid2 + size + post
    ("ioc_at", "i8"), ("ioc_pre_len", "i8"), ("ioc_mid_len", "i8"), ("ioc_mid2_len", "i8"),
    ("ioc_post_len", "i8"),
])
INFO_DTYPE = np.dtype([
    ("corr", "u8"),        # the signal the request belongs to
    ("len", "i8"),         # request bytes in ok_req[slot]; 0: not built (fire_leg0 sizes in Python)
    ("text_off", "i8"),    # the amount's text within the request
    ("text_len", "i8"),
    ("units", "i8"),       # the amount in units of 10**-dp (cascade.Increment)
    ("signed_ns", "i8"),   # monotonic ns when the request was complete
    ("px_units", "i8"),    # a limit IOC's price in units of its increment's scale (0: market)
    ("px_off", "i8"),      # ... and its text within the request
    ("px_len", "i8"),
    # leg0_send = kernel (send_built): `fd` is the slot's leg-0 order connection, written by
    # orderwire.OrderConn whenever its wire changes (-1: none, TLS, or off); the kernel writes
    # the rest: bytes it wrote (> 0), 0 (not tried, or the socket took nothing), SENT_STALE
    # (the connection was not idle: nothing written), or -errno of a failed send
    ("fd", "i8"),
    ("ssl", "i8"),         # ... and its OpenSSL SSL* when it is TLS with held I/O (tlsio.Held), else 0
    ("sent", "i8"),
    ("sent_fd", "i8"),     # the descriptor written (fire_leg0 finds its wire by it)
    ("sent_ns", "i8"),     # monotonic ns right after the write
])
BODY_CAP = 256
TMPL_CAP = 1024
REQ_CAP = 1536
SCR_CAP = 1024 + 128   # prehash (ts + POST + path + body) and two SHA-256 blocks
# ok_ctl cells
C_KEY = 0              # 16 words: inner pad state, outer pad state (Signer.kernel_parts)
C_ENABLED = 16
C_OFFSET = 17          # clock offset against the venue, ms
C_HEAD = 18            # (offset, length) pairs into ok_tmpl: "POST <path> HTTP/1.1..KC-API-SIGN: "
C_TSHDR = 20           # "\r\nKC-API-TIMESTAMP: "
C_TAIL = 22            # "\r\n" + static headers + "Content-Length: "
C_END = 24             # "\r\n\r\n"
C_METHOD_PATH = 26     # "POST" + path (the prehash's middle)
C_IOC = 28             # 1: leg0_order = ioc (a signal with a limit price is sent as a limit IOC)
C_SEND = 29            # 1: leg0_send = kernel (send_built writes the request itself)
C_TLS = 30             # 4 cells: libssl's SSL_write, SSL_pending, SSL_get_error, ERR_clear_error
                       # (addresses, `tls_fns`; 0 when held TLS I/O is unavailable)
CTL_LEN = 40
# the largest amount the kernel formats (cascade.floor_to_increment's exact branch is Python's)
_EXACT_LIMIT = 2.0 ** 52
_UNITS_MAX = 1 << 53
_LIMIT_CAP = 1 << 62

_K = np.array(signer.SHA256_K, np.int64)
_B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8).copy()
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8).copy()
_CLIENT_OID_PREFIX = '{"clientOid":"'

sha256_block = njit(cache=True)(signer.sha256_block)


def alloc(n_slots: int, n_tri: int) -> dict:
    """The arrays, zeroed: the kernel builds nothing until `fill` enables it."""
    info = np.zeros(max(1, n_slots), INFO_DTYPE)
    info["fd"] = -1         # never descriptor 0: no connection until OrderConn says so
    return {
        "ok_plan": np.zeros(max(1, n_tri), PLAN_DTYPE),
        "ok_body": np.zeros((max(1, n_tri), BODY_CAP), np.uint8),
        "ok_tmpl": np.zeros(TMPL_CAP, np.uint8),
        "ok_ctl": np.zeros(CTL_LEN, np.int64),
        "ok_req": np.zeros((max(1, n_slots), REQ_CAP), np.uint8),
        "ok_info": info,
        "ok_scr": np.zeros(SCR_CAP, np.uint8),
        "ok_w": np.zeros(72, np.int64),
    }


def _split_body(fmt: str, fields: int) -> tuple | None:
    """A body format '{"clientOid":"%s",...}' as the pieces around its `fields` + 1 %s
    (executor.leg_plans: clientOid and amount; executor.ioc_formats: clientOid, price and
    size), or None if it has another shape."""
    parts = fmt.split("%s")
    if len(parts) != fields + 2 or parts[0] != _CLIENT_OID_PREFIX:
        return None
    return tuple(p.encode() for p in parts)


def fill(arrays: dict, plans: list, sgn, path: bytes, host: bytes, enabled: bool,
         ioc_fmts: list | None = None) -> int:
    """Write the plan, body pieces, request pieces and key into the arrays (in place: the
    kernel's table holds their addresses). plans: executor.leg_plans(universe); ioc_fmts:
    executor.ioc_formats(universe) when leg0_order = ioc, else None; sgn: the Signer; path:
    the order endpoint; host: the Host header. Returns how many triangles the kernel may
    build (the others, and every one when not `enabled`, go through Python)."""
    plan, body, tmpl, ctl = arrays["ok_plan"], arrays["ok_body"], arrays["ok_tmpl"], arrays["ok_ctl"]
    mid, static = sgn.kernel_parts()
    pieces = ((C_HEAD, b"POST %s HTTP/1.1\r\nHost: %s\r\nKC-API-SIGN: " % (path, host)),
              (C_TSHDR, b"\r\nKC-API-TIMESTAMP: "),
              (C_TAIL, b"\r\n" + static + b"Content-Length: "),
              (C_END, b"\r\n\r\n"),
              (C_METHOD_PATH, b"POST" + path))
    pos = 0
    for cell, b in pieces:
        tmpl[pos:pos + len(b)] = np.frombuffer(b, np.uint8)
        ctl[cell], ctl[cell + 1] = pos, len(b)
        pos += len(b)
    fixed = sum(len(b) for _, b in pieces) + 44 + 20 + 20
    ctl[C_KEY:C_KEY + 16] = mid
    ctl[C_IOC] = 1 if ioc_fmts is not None else 0
    cap = lambda u: min(int(u), _LIMIT_CAP)   # noqa: E731
    # a body fits when its pieces, a clientOid (<= 25 bytes, rings.client_oid) and two
    # amounts (<= 40 bytes each) fit the body row, the request and the prehash
    room = lambda n: n + 25 + 80 <= min(BODY_CAP, REQ_CAP - fixed, SCR_CAP - 128 - len(pieces[4][1]) - 20)  # noqa: E731
    n_ok = 0
    for t, legs in enumerate(plans):
        _sym, side, rules, fmt = legs[0]
        row = plan[t]
        row["ok"] = row["ioc_ok"] = 0
        split = _split_body(fmt, 1)
        if split is None:
            continue
        pre, mid_b, post = split
        if not room(len(pre) + len(mid_b) + len(post)):
            continue
        inc = rules.quote_inc if side == cascade.LEG_BUY else rules.base_inc
        if inc.dp > 22:
            continue
        row["side"], row["dp"], row["inc_units"] = side, inc.dp, inc.inc_units
        row["per_inc"], row["scale"], row["fee"] = inc.per_inc, float(inc.scale), rules.taker_fee
        if side == cascade.LEG_BUY:
            row["min_u"], row["max_u"] = cap(rules.quote_min_u), cap(rules.quote_max_u)
        else:
            row["min_u"], row["max_u"] = cap(rules.base_min_u), cap(rules.base_max_u)
        row["min_funds_u"], row["min_funds_f"] = cap(rules.min_funds_u), rules.min_funds_f
        body[t, :len(pre)] = np.frombuffer(pre, np.uint8)
        body[t, len(pre):len(pre) + len(mid_b)] = np.frombuffer(mid_b, np.uint8)
        body[t, len(pre) + len(mid_b):len(pre) + len(mid_b) + len(post)] = np.frombuffer(post, np.uint8)
        row["pre_len"], row["mid_len"], row["post_len"] = len(pre), len(mid_b), len(post)
        row["ok"] = 1
        n_ok += 1
        ioc = _split_body(ioc_fmts[t], 2) if ioc_fmts is not None else None
        at = len(pre) + len(mid_b) + len(post)
        if ioc is None or not room(sum(len(x) for x in ioc)) or at + sum(len(x) for x in ioc) > BODY_CAP:
            continue
        bi, pi = rules.base_inc, rules.price_inc
        if bi.dp > 22 or pi.dp > 22:
            continue
        row["b_dp"], row["b_inc_units"], row["b_per_inc"], row["b_scale"] = bi.dp, bi.inc_units, bi.per_inc, float(bi.scale)
        row["b_min_u"], row["b_max_u"] = cap(rules.base_min_u), cap(rules.base_max_u)
        row["p_dp"], row["p_inc_units"], row["p_per_inc"], row["p_scale"] = pi.dp, pi.inc_units, pi.per_inc, float(pi.scale)
        row["ioc_at"] = at
        for name, piece in zip(("ioc_pre_len", "ioc_mid_len", "ioc_mid2_len", "ioc_post_len"), ioc):
            body[t, at:at + len(piece)] = np.frombuffer(piece, np.uint8)
            row[name] = len(piece)
            at += len(piece)
        row["ioc_ok"] = 1
    ctl[C_ENABLED] = 1 if enabled else 0
    return n_ok if enabled else 0


# -- the kernels ----------------------------------------------------------------------------

@njit(cache=True)
def floor_units(x, per_inc, inc_units):
    """cascade.floor_to_increment for x * per_inc < 2**52 (the same float operations, so the
    same result); -1 where Python's exact branch would run (the caller leaves it to Python)."""
    q = x * per_inc
    if not q > 0.0:
        return 0
    if q >= _EXACT_LIMIT:
        return -1
    n = int(q)
    gap = (n + 1) - q
    if gap <= cascade.UNIT_TOL and gap <= q * cascade.REL_TOL:
        n += 1
    return n * inc_units


@njit(cache=True)
def size_units(p, amount, best_bid):
    """cascade.size_leg's amount in units for leg plan row p, or -1 when size_leg would
    refuse the leg or the kernel leaves it to Python (see the module docstring)."""
    if not amount < np.inf:
        return -1
    x = amount / (1.0 + p["fee"]) if p["side"] == cascade.LEG_BUY else amount
    units = floor_units(x, p["per_inc"], p["inc_units"])
    if units < 0 or units >= _UNITS_MAX or units < p["min_u"] or units > p["max_u"]:
        return -1
    if p["side"] == cascade.LEG_BUY:
        if units < p["min_funds_u"]:
            return -1
    elif p["min_funds_u"] != 0:
        if not best_bid > 0.0:
            return -1
        if units / p["scale"] * best_bid < p["min_funds_f"]:
            return -1
    return units


@njit(cache=True)
def size_limit_units(p, base_amount, price):
    """cascade.size_limit (ROUND_NEAREST, the leg-0 IOC's) in units: (size units, price
    units), or (-1, 0) when size_limit would refuse it or the kernel leaves it to Python."""
    if not base_amount < np.inf or not price > 0.0 or not price < np.inf:
        return -1, 0
    x = price * p["p_per_inc"]
    if not x < _EXACT_LIMIT:
        return -1, 0
    r = np.floor(x)             # Python's round(): half to even, exact below 2**52
    d = x - r
    n = int(r)
    if d > 0.5 or (d == 0.5 and n % 2 == 1):
        n += 1
    pu = n * p["p_inc_units"]
    if pu <= 0 or pu >= _UNITS_MAX:
        return -1, 0
    px = pu / p["p_scale"]
    units = floor_units(base_amount, p["b_per_inc"], p["b_inc_units"])
    if units < 0 or units >= _UNITS_MAX or units < p["b_min_u"] or units > p["b_max_u"]:
        return -1, 0
    if p["min_funds_u"] != 0 and units / p["b_scale"] * px < p["min_funds_f"]:
        return -1, 0
    return units, pu


@njit(cache=True)
def put_dec(v, out, pos):
    """Decimal digits of v >= 0 at out[pos:]; returns the position after them."""
    n = 1
    t = v
    while t >= 10:
        t //= 10
        n += 1
    for i in range(n - 1, -1, -1):
        out[pos + i] = 48 + v % 10
        v //= 10
    return pos + n


@njit(cache=True)
def put_hex(v, out, pos):
    """Lower-case hex digits of the uint64 v, no leading zeros ("%x")."""
    n = 1
    t = v >> np.uint64(4)
    while t != 0:
        t >>= np.uint64(4)
        n += 1
    for i in range(n - 1, -1, -1):
        out[pos + i] = _HEX[v & np.uint64(15)]
        v >>= np.uint64(4)
    return pos + n


@njit(cache=True)
def put_units(units, dp, out, pos):
    """cascade.units_to_str(units, dp) at out[pos:] (units >= 0): "0.693", "12", "0.00000001"."""
    if dp == 0:
        return put_dec(units, out, pos)
    scale = 1
    for _ in range(dp):
        scale *= 10
    pos = put_dec(units // scale, out, pos)
    frac = units % scale
    if frac == 0:
        return pos
    nd = dp
    while frac % 10 == 0:
        frac //= 10
        nd -= 1
    out[pos] = 46   # "."
    for i in range(nd, 0, -1):
        out[pos + i] = 48 + frac % 10
        frac //= 10
    return pos + nd + 1


@njit(cache=True)
def put(src, off, n, out, pos):
    for i in range(n):
        out[pos + i] = src[off + i]
    return pos + n


@njit(cache=True)
def hmac_sha256(ctl, msg, n, blk, w, out, out_off):
    """HMAC-SHA256 of msg[:n] with the keyed pad states in ctl[C_KEY:C_KEY + 16] (RFC 2104:
    the inner state has absorbed key ^ ipad, the outer key ^ opad); the 32-byte digest
    at out[out_off:]. blk: 128 bytes of scratch, w: 72 words (64 schedule + 8 state)."""
    st = w[64:72]
    sched = w[0:64]
    for i in range(8):
        st[i] = ctl[C_KEY + i]
    full = n // 64
    for b in range(full):
        sha256_block(st, msg, 64 * b, sched, _K)
    r = n - 64 * full
    for i in range(128):
        blk[i] = 0
    for i in range(r):
        blk[i] = msg[64 * full + i]
    blk[r] = 0x80
    nb = 64 if r < 56 else 128
    bits = (64 + n) * 8
    for i in range(8):
        blk[nb - 1 - i] = (bits >> (8 * i)) & 0xFF
    sha256_block(st, blk, 0, sched, _K)
    if nb == 128:
        sha256_block(st, blk, 64, sched, _K)
    # outer: H(key ^ opad || inner digest): one block of 32 digest bytes, 0x80, 768 bits
    for i in range(8):
        for j in range(4):
            blk[4 * i + j] = (st[i] >> (24 - 8 * j)) & 0xFF
    for i in range(32, 64):
        blk[i] = 0
    blk[32] = 0x80
    blk[62] = 0x03
    for i in range(8):
        st[i] = ctl[C_KEY + 8 + i]
    sha256_block(st, blk, 0, sched, _K)
    for i in range(8):
        for j in range(4):
            out[out_off + 4 * i + j] = (st[i] >> (24 - 8 * j)) & 0xFF


@njit(cache=True)
def put_b64_32(src, off, out, pos):
    """Standard base64 (with its one "=") of the 32 bytes src[off:off + 32]: 44 bytes."""
    for g in range(10):
        a, b, c = src[off + 3 * g], src[off + 3 * g + 1], src[off + 3 * g + 2]
        v = (int(a) << 16) | (int(b) << 8) | int(c)
        out[pos] = _B64[(v >> 18) & 63]
        out[pos + 1] = _B64[(v >> 12) & 63]
        out[pos + 2] = _B64[(v >> 6) & 63]
        out[pos + 3] = _B64[v & 63]
        pos += 4
    v = (int(src[off + 30]) << 16) | (int(src[off + 31]) << 8)
    out[pos] = _B64[(v >> 18) & 63]
    out[pos + 1] = _B64[(v >> 12) & 63]
    out[pos + 2] = _B64[(v >> 6) & 63]
    out[pos + 3] = 61   # "="
    return pos + 4


@njit(cache=True)
def build_request(slot, corr, tri, amount, best_bid, lim, lim_base, ts_ms, plan, body, tmpl, ctl,
                  req, info, scr, w):
    """The whole request of leg 0 of signal `corr` (triangle `tri`) into req[slot] and
    info[slot], timestamp ts_ms: a market order of `amount` of the start currency, or with
    leg0_order = ioc and lim > 0 a limit IOC of lim_base base at lim (executor.fire_leg's
    choice). Returns its length, or 0 when the kernel leaves the leg to Python
    (info[slot]["len"] is 0 then)."""
    inf = info[slot]
    inf["len"] = 0
    p = plan[tri]
    if p["ok"] == 0:
        return 0
    ioc = ctl[C_IOC] != 0 and lim > 0.0
    pu = 0
    if ioc:
        if p["ioc_ok"] == 0:
            return 0
        units, pu = size_limit_units(p, lim_base, lim)
    else:
        units = size_units(p, amount, best_bid)
    if units < 0:
        return 0
    # the prehash in scr: ts + "POST" + path + body; the body's span is copied to the request
    pos = put_dec(ts_ms, scr, 0)
    pos = put(tmpl, ctl[C_METHOD_PATH], ctl[C_METHOD_PATH + 1], scr, pos)
    b0 = pos
    at = p["ioc_at"] if ioc else 0
    pre = p["ioc_pre_len"] if ioc else p["pre_len"]
    mid = p["ioc_mid_len"] if ioc else p["mid_len"]
    pos = put(body[tri], at, pre, scr, pos)
    scr[pos] = 116      # "t"
    scr[pos + 1] = 97   # "a"
    pos = put_hex(corr, scr, pos + 2)
    scr[pos] = 115      # "s"
    pos = put_dec(slot, scr, pos + 1)
    scr[pos] = 108      # "l"
    scr[pos + 1] = 48   # "0"
    pos = put(body[tri], at + pre, mid, scr, pos + 2)
    at += pre + mid
    x0 = x1 = 0
    if ioc:             # the price, then the size (executor.ioc_formats)
        x0 = pos
        pos = put_units(pu, p["p_dp"], scr, pos)
        x1 = pos
        pos = put(body[tri], at, p["ioc_mid2_len"], scr, pos)
        at += p["ioc_mid2_len"]
    t0 = pos
    pos = put_units(units, p["b_dp"] if ioc else p["dp"], scr, pos)
    t1 = pos
    pos = put(body[tri], at, p["ioc_post_len"] if ioc else p["post_len"], scr, pos)
    n = pos
    blk = scr[SCR_CAP - 128:]
    out = req[slot]
    hmac_sha256(ctl, scr, n, blk, w, blk, 0)     # the digest over the first block's bytes
    q = put(tmpl, ctl[C_HEAD], ctl[C_HEAD + 1], out, 0)
    # (the digest is read before put_b64_32 writes: different arrays)
    q = put_b64_32(blk, 0, out, q)
    q = put(tmpl, ctl[C_TSHDR], ctl[C_TSHDR + 1], out, q)
    q = put(scr, 0, b0 - ctl[C_METHOD_PATH + 1], out, q)           # the timestamp's digits
    q = put(tmpl, ctl[C_TAIL], ctl[C_TAIL + 1], out, q)
    q = put_dec(n - b0, out, q)
    q = put(tmpl, ctl[C_END], ctl[C_END + 1], out, q)
    body_at = q
    q = put(scr, b0, n - b0, out, q)
    inf["corr"] = corr
    inf["text_off"] = body_at + (t0 - b0)
    inf["text_len"] = t1 - t0
    inf["units"] = units
    inf["px_units"] = pu
    inf["px_off"] = body_at + (x0 - b0) if ioc else 0
    inf["px_len"] = x1 - x0
    inf["signed_ns"] = rings.monotonic_ns()
    inf["len"] = q
    return q


@njit(cache=True)
def build_leg0(slot, stage, plan, body, tmpl, ctl, req, info, scr, w):
    """build_request for the signal just staged (stage[0]) when the kernel is enabled
    (ok_ctl[C_ENABLED]); the timestamp is now (wall clock) plus the venue's clock offset."""
    info[slot]["sent"] = 0
    if ctl[C_ENABLED] == 0:
        info[slot]["len"] = 0
        return 0
    s = stage[0]
    ts_ms = rings.realtime_ns() // 1_000_000 + ctl[C_OFFSET]
    n = build_request(slot, s["corr"], s["tri"], s["start_vol"], s["bid0"], s["lim0"], s["base0"],
                      ts_ms, plan, body, tmpl, ctl, req, info, scr, w)
    if n > 0 and ctl[C_SEND] != 0:
        send_built(slot, n, req, info, scr, ctl[C_TLS:C_TLS + 4])
    return n


# -- the write (leg0_send = kernel) -----------------------------------------------------------
# Measured on the EPYC host, 13-15 us p50 went between the request's signature and the start
# of its write: the kernel's return to Python, HotLoop._dispatch_signal and fire_leg0 before
# OrderConn.send (docs/design.md 9). So the kernel writes the request itself, on the slot's
# leg-0 connection, with the same two calls OrderConn.send makes (the idle check, a
# non-blocking send) and the GIL held throughout, which is what makes the descriptor safe to
# use: OrderConn changes `fd` in the same GIL-held step as its wire (orderwire.py), and closes
# a socket only after. fire_leg0 then only does the bookkeeping; when the kernel wrote nothing
# (no descriptor, a connection that is not idle, a full socket, an error), OrderConn.send
# writes the request as before, reconnecting first if it must. Over TLS with held I/O
# (tls_io = held, tlsio.py) the write is SSL_write on the connection's SSL*, called through
# libssl's addresses in ok_ctl, as tlsio.Held.write calls it (with the GIL held too); with
# tls_io = ssl the cell holds -1 and Python writes.

SENT_STALE = -(1 << 20)      # the connection was not idle (closed, reset, or unread bytes)
_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_DONTWAIT
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
_AGAIN = (_errno.EAGAIN, _errno.EWOULDBLOCK, _errno.EINTR)
_E_AGAIN, _E_WOULDBLOCK, _E_INTR = _AGAIN


def _io_codegen(symbol: str):
    """libc's send / recv(int fd, void *buf, size_t n, int flags) on an array's data, as LLVM
    IR (called by name, as rings' clocks are: nothing machine-specific is compiled in)."""
    def codegen(context, builder, sig, args):
        fd, arr, n, flags = args
        i8p, i32, i64 = ir.IntType(8).as_pointer(), ir.IntType(32), ir.IntType(64)
        data = context.make_array(sig.args[1])(context, builder, value=arr).data
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i32, i8p, i64, i32]),
                                            symbol)
        return builder.call(fn, [builder.trunc(fd, i32), builder.bitcast(data, i8p), n,
                                 builder.trunc(flags, i32)])
    return codegen


def _io_typer(arr):
    if isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.ndim == 1 and arr.layout == "C":
        return types.int64(types.int64, arr, types.int64, types.int64)
    return None


@intrinsic
def _c_send(typingctx, fd, arr, n, flags):
    sig = _io_typer(arr)
    return (sig, _io_codegen("send")) if sig is not None else None


@intrinsic
def _c_recv(typingctx, fd, arr, n, flags):
    sig = _io_typer(arr)
    return (sig, _io_codegen("recv")) if sig is not None else None


@intrinsic
def _c_errno(typingctx):
    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32.as_pointer(), []),
                                            "__errno_location")
        return builder.sext(builder.load(builder.call(fn, [])), ir.IntType(64))
    return types.int64(), codegen


_SSL_WANT = (tlsio.SSL_ERROR_WANT_READ, tlsio.SSL_ERROR_WANT_WRITE)
_W_READ, _W_WRITE = _SSL_WANT


def _fn_codegen(ret, argtys):
    """A call through a C function's address (args[0]) with the given LLVM argument types;
    arrays are passed as their data pointer. The address is a runtime value (ok_ctl), never
    a constant: the cached machine code must not hold one process's addresses."""
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ret, argtys)
        fp = builder.inttoptr(args[0], fnty.as_pointer())
        vals = []
        for ty, v, t in zip(argtys, args[1:], sig.args[1:]):
            if isinstance(t, types.Array):
                v = builder.bitcast(context.make_array(t)(context, builder, value=v).data, ty)
            elif isinstance(ty, ir.PointerType):
                v = builder.inttoptr(v, ty)
            elif ty.width < 64:
                v = builder.trunc(v, ty)
            vals.append(v)
        r = builder.call(fp, vals)
        return builder.sext(r, ir.IntType(64)) if ret != ir.VoidType() else context.get_dummy_value()
    return codegen


_I8P, _I32 = ir.IntType(8).as_pointer(), ir.IntType(32)


@intrinsic
def _ssl_write(typingctx, fn, ssl, arr, n):
    if _io_typer(arr) is None:
        return None
    return types.int64(types.int64, types.int64, arr, types.int64), _fn_codegen(_I32, (_I8P, _I8P, _I32))


@intrinsic
def _ssl_pending(typingctx, fn, ssl):
    return types.int64(types.int64, types.int64), _fn_codegen(_I32, (_I8P,))


@intrinsic
def _ssl_get_error(typingctx, fn, ssl, ret):
    return types.int64(types.int64, types.int64, types.int64), _fn_codegen(_I32, (_I8P, _I32))


@intrinsic
def _call_void(typingctx, fn):
    return types.none(types.int64), _fn_codegen(ir.VoidType(), ())


def tls_fns() -> np.ndarray:
    """The addresses send_built calls a TLS write through (ok_ctl[C_TLS:C_TLS + 4]): the
    libssl the ssl module uses (tlsio), or zeros when held TLS I/O is unavailable (then no
    connection names an SSL*, and Python writes)."""
    out = np.zeros(4, np.int64)
    if tlsio.available():
        for i, name in enumerate(("SSL_write", "SSL_pending", "SSL_get_error")):
            out[i] = ctypes.cast(tlsio._LIB[name], ctypes.c_void_p).value
        out[3] = ctypes.cast(tlsio._LIB["ERR_clear_error"], ctypes.c_void_p).value
    return out


def cell() -> np.ndarray:
    """A descriptor cell outside the engine's arrays (an ok_info row: fd -1, no SSL*), for
    OrderConn.attach_kernel in tests and profiles/probe_floor.py."""
    c = np.zeros(1, INFO_DTYPE)
    c["fd"] = -1
    return c


_libc = ctypes.CDLL(None, use_errno=True)


def peek_send(fd, ssl, buf, n, peek, fns):
    """Write buf[:n] (a C-contiguous uint8 array) to the connection on socket fd if it is
    open and idle (OrderConn's Wire.stale): no decrypted bytes held (TLS: SSL_pending), and a
    non-blocking peek of one byte into `peek` finding nothing. Then one non-blocking send,
    or with ssl != 0 one SSL_write through fns (tls_fns; all or nothing, tlsio.Held.write).
    Returns the bytes written (0: the socket took none; retry with the same bytes), SENT_STALE
    (nothing written), or a negative error (-errno, or -(1000 + SSL error)). Jitted callers get
    the calls inlined (the overload below); this body runs under NUMBA_DISABLE_JIT and in tests."""
    if ssl != 0 and tlsio._LIB["SSL_pending"](ssl) > 0:
        return SENT_STALE
    r = _libc.recv(int(fd), ctypes.c_void_p(peek.ctypes.data), 1, _PEEK_FLAGS)
    if r >= 0 or ctypes.get_errno() not in (_errno.EAGAIN, _errno.EWOULDBLOCK):
        return SENT_STALE
    if ssl != 0:
        r = tlsio._LIB["SSL_write"](ssl, ctypes.c_char_p(buf.ctypes.data), int(n))
        if r > 0:
            return r
        e = tlsio._LIB["SSL_get_error"](ssl, r)
        tlsio._LIB["ERR_clear_error"]()
        return 0 if e in _SSL_WANT else -(1000 + e)
    r = _libc.send(int(fd), ctypes.c_void_p(buf.ctypes.data), ctypes.c_size_t(int(n)), _SEND_FLAGS)
    if r >= 0:
        return r
    e = ctypes.get_errno()
    return 0 if e in _AGAIN else -e


@overload(peek_send)
def _peek_send_ol(fd, ssl, buf, n, peek, fns):
    def impl(fd, ssl, buf, n, peek, fns):
        if ssl != 0 and _ssl_pending(fns[1], ssl) > 0:
            return SENT_STALE
        r = _c_recv(fd, peek, 1, _PEEK_FLAGS)
        if r >= 0:
            return SENT_STALE
        e = _c_errno()
        if e != _E_AGAIN and e != _E_WOULDBLOCK:
            return SENT_STALE
        if ssl != 0:
            r = _ssl_write(fns[0], ssl, buf, n)
            if r > 0:
                return r
            e = _ssl_get_error(fns[2], ssl, r)
            _call_void(fns[3])          # leave no error queue behind for the ssl module
            if e == _W_READ or e == _W_WRITE:
                return 0
            return -(1000 + e)
        r = _c_send(fd, buf, n, _SEND_FLAGS)
        if r >= 0:
            return r
        e = _c_errno()
        if e == _E_AGAIN or e == _E_WOULDBLOCK or e == _E_INTR:
            return 0
        return -e
    return impl


@njit(cache=True)
def send_built(slot, n, req, info, scr, fns):
    """Write the n bytes just built in req[slot] to the slot's connection (info[slot]["fd"],
    and ["ssl"] over TLS), recording in info[slot] what was written, on which descriptor,
    and when (peek_send)."""
    inf = info[slot]
    fd = inf["fd"]
    if fd < 0:
        return 0
    r = peek_send(fd, inf["ssl"], req[slot], n, scr, fns)
    inf["sent_ns"] = rings.monotonic_ns()
    inf["sent_fd"] = fd
    inf["sent"] = r
    return r


@njit(cache=True)
def wire_write(fd, ssl, buf, n, peek, fns, out):
    """peek_send from Python, with out[0] = monotonic ns right after the write, as
    send_built stamps it (profiles/probe_floor.py writes its requests the engine's way)."""
    r = peek_send(fd, ssl, buf, n, peek, fns)
    out[0] = rings.monotonic_ns()
    return r
