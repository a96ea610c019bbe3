"""Byte-level parser of private orderChange frames into FILL records (hot thread).

Owner: the hot thread (hotctx.process_chunk calls `parse_order_change` for every frame
whose subject is orderChange, docs/kucoin.md 4.1, inside the chunk kernel). It reads
the frame bytes, decodes the clientOid route (rings.client_oid: ta<corr hex>s<slot>l<leg>)
and writes the FILL record, instead of simdjson object access, a regex and a dozen numpy
field writes from Python: measured ~40 us per private frame on the hot thread in a live
session (profiles/results/line_profile_hot.txt), and a leg's terminal event waits behind
the frames before it in its chunk (README, leg-to-leg gap).

Reuses l2wire's JSON scanning helpers (same number rules: decimals parse to the nearest
double, field order and whitespace free). Returns the slot (>= 0), OC_FOREIGN when the
clientOid is not one of ours (manual orders on the same account), or OC_BAD when the frame
cannot be read or carries numbers no real event does (negative; a match without a positive
price and size): the caller then takes the simdjson path, which logs and counts it.
Absent numbers are NaN, as in rings.FILL_DTYPE.
"""
from __future__ import annotations

import numpy as np
from numba import njit

import rings
from l2wire import (_after_member, _key_is, _read_key, _read_num, _skip_value, _string_end,
                    _ws)

OC_FOREIGN = -1
OC_BAD = -2


def _lit(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), np.uint8).copy()


_K_DATA = _lit("data")
_K_OID = _lit("clientOid")
_K_TYPE = _lit("type")
_K_MPX = _lit("matchPrice")
_K_MSZ = _lit("matchSize")
_K_FSZ = _lit("filledSize")
_K_RSZ = _lit("remainSize")
_K_RFUNDS = _lit("remainFunds")
_K_TS = _lit("ts")
_K_ORDER = _lit("orderId")
_K_TRADE = _lit("tradeId")
_T_RECEIVED = _lit("received")
_T_MATCH = _lit("match")
_T_FILLED = _lit("filled")
_T_CANCELED = _lit("canceled")
_T_UPDATE = _lit("update")
_T_OPEN = _lit("open")

_OID_LEN = rings.FILL_DTYPE["order_id"].itemsize
_TID_LEN = rings.FILL_DTYPE["trade_id"].itemsize
OID_OFF = rings.FILL_DTYPE.fields["order_id"][1]
TID_OFF = rings.FILL_DTYPE.fields["trade_id"][1]


def raw_view(dst: np.ndarray) -> np.ndarray:
    """The FILL records' bytes, for the kernel to write the id strings (a record's char
    field cannot be assigned a byte slice in nopython mode)."""
    return dst.view(np.uint8).reshape(len(dst), dst.dtype.itemsize)


@njit(nogil=True, cache=True, _nrt=False)
def _copy_str(buf, s, e, raw, row, off, width):
    """String value buf[s:e] (without quotes) into raw[row, off:off+width], NUL padded."""
    k = 0
    while k < width and s + k < e:
        raw[row, off + k] = buf[s + k]
        k += 1
    while k < width:
        raw[row, off + k] = 0
        k += 1


@njit(nogil=True, cache=True, _nrt=False)
def _route(buf, s, e, nslots):
    """clientOid buf[s:e] -> (corr, slot, leg) or slot -1: exactly ta<hex 1-16>s<dec 1-4>l<0-2>."""
    if e - s < 6 or buf[s] != 116 or buf[s + 1] != 97:           # "ta"
        return np.uint64(0), -1, -1
    i = s + 2
    corr = np.uint64(0)
    nd = 0
    while i < e and nd < 17:
        c = buf[i]
        if 48 <= c <= 57:
            corr = corr * np.uint64(16) + np.uint64(c - 48)
        elif 97 <= c <= 102:
            corr = corr * np.uint64(16) + np.uint64(c - 87)
        else:
            break
        i += 1
        nd += 1
    if nd == 0 or nd > 16 or i >= e or buf[i] != 115:               # "s"
        return np.uint64(0), -1, -1
    i += 1
    slot = 0
    nd = 0
    while i < e and 48 <= buf[i] <= 57 and nd < 5:
        slot = slot * 10 + (buf[i] - 48)
        i += 1
        nd += 1
    if nd == 0 or nd > 4 or i + 2 != e or buf[i] != 108:            # "l" + one digit, end
        return np.uint64(0), -1, -1
    leg = int(buf[i + 1]) - 48
    if leg < 0 or leg > 2 or slot >= nslots:
        return np.uint64(0), -1, -1
    return corr, slot, leg


@njit(nogil=True, cache=True, _nrt=False)
def _read_ns(buf, i, n):
    """A non-negative integer of up to 19 digits, quoted or bare (`ts` is ns since the epoch,
    19 digits: beyond l2wire._read_int's 18). (value, index after, status)."""
    q = i < n and buf[i] == 34
    if q:
        i += 1
    v = np.int64(0)
    nd = 0
    while i < n and 48 <= buf[i] <= 57:
        d = np.int64(buf[i] - 48)
        if nd == 19 or v > (np.int64(9223372036854775807) - d) // 10:
            return v, i, -3
        v = v * 10 + d
        nd += 1
        i += 1
    if nd == 0 or i >= n:
        return v, i, -3
    if q:
        if buf[i] != 34:
            return v, i, -3
        i += 1
    return v, i, 0


@njit(nogil=True, cache=True, _nrt=False)
def _kind(buf, s, e):
    if _key_is(buf, s, e, _T_MATCH):
        return rings.FILL_MATCH
    if _key_is(buf, s, e, _T_FILLED):
        return rings.FILL_FILLED
    if _key_is(buf, s, e, _T_CANCELED):
        return rings.FILL_CANCELED
    if _key_is(buf, s, e, _T_RECEIVED):
        return rings.FILL_RECEIVED
    if _key_is(buf, s, e, _T_UPDATE):
        return rings.FILL_UPDATE
    if _key_is(buf, s, e, _T_OPEN):
        return rings.FILL_OPEN
    return rings.FILL_UNKNOWN


@njit(nogil=True, cache=True, _nrt=False)
def _parse_data(buf, i, n, rec, raw, row, nslots):
    """The orderChange "data" object into rec; returns (index after, slot or OC_*)."""
    if i >= n or buf[i] != 123:
        return i, OC_BAD
    rec["match_px"] = np.nan
    rec["match_sz"] = np.nan
    rec["filled_sz"] = np.nan
    rec["remain_sz"] = np.nan
    rec["remain_funds"] = np.nan
    rec["ts_ns"] = 0
    rec["kind"] = rings.FILL_UNKNOWN
    _copy_str(buf, 0, 0, raw, row, OID_OFF, _OID_LEN)
    _copy_str(buf, 0, 0, raw, row, TID_OFF, _TID_LEN)
    slot = OC_BAD
    i = _ws(buf, i + 1, n)
    more = 1
    while more == 1:
        ks, ke, i, st = _read_key(buf, i, n)
        if st != 0:
            return i, OC_BAD
        if (_key_is(buf, ks, ke, _K_OID) or _key_is(buf, ks, ke, _K_TYPE)
                or _key_is(buf, ks, ke, _K_ORDER) or _key_is(buf, ks, ke, _K_TRADE)):
            if i >= n or buf[i] != 34:
                return i, OC_BAD
            e = _string_end(buf, i, n)
            if e < 0:
                return i, OC_BAD
            if _key_is(buf, ks, ke, _K_OID):
                corr, s, leg = _route(buf, i + 1, e - 1, nslots)
                if s < 0:
                    slot = OC_FOREIGN
                else:
                    slot = s
                    rec["corr"] = corr
                    rec["leg"] = leg
            elif _key_is(buf, ks, ke, _K_TYPE):
                rec["kind"] = _kind(buf, i + 1, e - 1)
            elif _key_is(buf, ks, ke, _K_ORDER):
                _copy_str(buf, i + 1, e - 1, raw, row, OID_OFF, _OID_LEN)
            else:
                _copy_str(buf, i + 1, e - 1, raw, row, TID_OFF, _TID_LEN)
            i = e
        elif _key_is(buf, ks, ke, _K_MPX):
            v, i, st = _read_num(buf, i, n)
            rec["match_px"] = v
        elif _key_is(buf, ks, ke, _K_MSZ):
            v, i, st = _read_num(buf, i, n)
            rec["match_sz"] = v
        elif _key_is(buf, ks, ke, _K_FSZ):
            v, i, st = _read_num(buf, i, n)
            rec["filled_sz"] = v
        elif _key_is(buf, ks, ke, _K_RSZ):
            v, i, st = _read_num(buf, i, n)
            rec["remain_sz"] = v
        elif _key_is(buf, ks, ke, _K_RFUNDS):
            v, i, st = _read_num(buf, i, n)
            rec["remain_funds"] = v
        elif _key_is(buf, ks, ke, _K_TS):
            t, i, st = _read_ns(buf, i, n)
            rec["ts_ns"] = t
        else:
            i = _skip_value(buf, i, n)
            st = i if i < 0 else 0
        if st != 0:
            return i, OC_BAD
        more, i, st = _after_member(buf, i, n)
        if st != 0:
            return i, OC_BAD
    if rec["kind"] == rings.FILL_UNKNOWN:
        return i, OC_BAD
    # Numbers no real event carries (docs/kucoin.md 4.1): negative, or a match without a
    # positive price and size. They would size the next leg (hotctx.route_fill's totals).
    # Absent numbers are NaN and pass the first test.
    if (rec["match_px"] < 0.0 or rec["match_sz"] < 0.0 or rec["filled_sz"] < 0.0
            or rec["remain_sz"] < 0.0 or rec["remain_funds"] < 0.0):
        return i, OC_BAD
    if rec["kind"] == rings.FILL_MATCH and not (rec["match_px"] > 0.0 and rec["match_sz"] > 0.0):
        return i, OC_BAD
    return i, slot


@njit(nogil=True, cache=True, _nrt=False)
def parse_order_change(frame, dst, raw, recv_ns, nslots):
    """One orderChange frame (uint8 array of the whole frame) into dst[0] (rings.FILL_DTYPE;
    raw = raw_view(dst)). Returns the slot, OC_FOREIGN or OC_BAD (module docstring)."""
    n = frame.shape[0]
    i = _ws(frame, 0, n)
    if i >= n or frame[i] != 123:
        return OC_BAD
    i = _ws(frame, i + 1, n)
    rec = dst[0]
    rec["recv_ns"] = recv_ns
    out = OC_BAD
    more = 1
    while more == 1:
        ks, ke, i, st = _read_key(frame, i, n)
        if st != 0:
            return OC_BAD
        if _key_is(frame, ks, ke, _K_DATA):
            i, out = _parse_data(frame, i, n, rec, raw, 0, nslots)
            if out == OC_BAD:
                return OC_BAD
        else:
            i = _skip_value(frame, i, n)
            if i < 0:
                return OC_BAD
        more, i, st = _after_member(frame, i, n)
        if st != 0:
            return OC_BAD
    return out
