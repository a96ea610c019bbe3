"""Tests of orderkern.py: the leg-0 request built in the kernel is the one Python builds.

Each part against its Python reference: HMAC-SHA256 against hmac, the amount's text
against cascade.units_to_str, the sizing against cascade.size_leg over every real symbol
(data/symbols-2024-09.json) at amounts of every magnitude and just around multiples of the
increment, and the whole request against executor's body format, Signer and
OrderConn.post_request, byte for byte.
Run: python -m pytest -q tests/test_orderkern.py
"""
import hashlib
import hmac
import json
import random
from pathlib import Path

import numpy as np
import pytest

import cascade
import executor
import orderkern
import rings
import triangles
from orderwire import OrderConn
from signer import Signer

SYMBOLS_PATH = Path(__file__).resolve().parent.parent / "data" / "symbols-2024-09.json"
SECRET = "f03a5284-5c39-4aaa-9b20-dea10bdcf8e3"


@pytest.fixture(scope="module")
def symbols():
    with open(SYMBOLS_PATH) as f:
        return [d for d in json.load(f) if d.get("enableTrading")]


def _ctl(sgn):
    ctl = np.zeros(orderkern.CTL_LEN, np.int64)
    ctl[:16] = sgn.kernel_parts()[0]
    return ctl


@pytest.mark.parametrize("secret", [SECRET, "k" * 64, "long-" * 30])
def test_hmac_matches_hmac_module(secret):
    rng = random.Random(1)
    ctl = _ctl(Signer("key", secret, "pass", 3))
    w = np.zeros(72, np.int64)
    for n in list(range(0, 140)) + [200, 311, 512, 1000]:
        msg = bytes(rng.randrange(256) for _ in range(n))
        buf = np.zeros(max(1, n), np.uint8)
        buf[:n] = np.frombuffer(msg, np.uint8)
        blk, out = np.zeros(128, np.uint8), np.zeros(32, np.uint8)
        orderkern.hmac_sha256(ctl, buf, n, blk, w, out, 0)
        assert out.tobytes() == hmac.new(secret.encode(), msg, hashlib.sha256).digest(), n


def test_text_writers_match_python():
    rng = random.Random(2)
    out = np.zeros(64, np.uint8)
    for _ in range(3000):
        dp = rng.randrange(0, 19)
        units = rng.choice([0, 1, 10, 10 ** dp, rng.randrange(10 ** rng.randrange(1, 17))])
        n = orderkern.put_units(units, dp, out, 3)
        assert out[3:n].tobytes().decode() == cascade.units_to_str(units, dp), (units, dp)
    for v in [0, 1, 15, 16, 255, 2 ** 63, 2 ** 64 - 1] + [rng.randrange(2 ** 64) for _ in range(500)]:
        n = orderkern.put_hex(np.uint64(v), out, 0)
        assert out[:n].tobytes().decode() == f"{v:x}"
        n = orderkern.put_dec(v % 2 ** 62, out, 0)
        assert out[:n].tobytes().decode() == str(v % 2 ** 62)
    digest = bytes(rng.randrange(256) for _ in range(32))
    n = orderkern.put_b64_32(np.frombuffer(digest, np.uint8), 0, out, 0)
    import base64
    assert out[:n].tobytes() == base64.b64encode(digest)


def _amounts(rules, side, rng):
    """Amounts of every magnitude, and just around multiples of the increment (the floor's
    tolerance), for a leg spending quote (buy) or base (sell)."""
    inc = rules.quote_inc if side == cascade.LEG_BUY else rules.base_inc
    fee = 1.0 + rules.taker_fee if side == cascade.LEG_BUY else 1.0
    out = [0.0, -1.0, float("nan"), float("inf"), 1e-12, 1e300]
    for _ in range(12):
        out.append(10.0 ** rng.uniform(-6, 9))
        k = rng.randrange(1, 10 ** rng.randrange(1, 12))
        x = k * inc.inc_units / inc.scale * fee
        out += [x, np.nextafter(x, 0.0), np.nextafter(x, np.inf), x * (1 - 3e-15), x * (1 - 1e-13)]
    return out


def test_sizing_matches_size_leg(symbols):
    """Where the kernel sizes a leg, the text is size_leg's; where it does not, size_leg
    refuses too, or the amount is beyond the kernel's range (2**52 increments)."""
    rng = random.Random(3)
    built = deferred = 0
    for d in symbols:
        rules = cascade.SymbolRules.from_kucoin(d, rng.choice([0.001, 0.0008, 0.0]))
        for side in (cascade.LEG_BUY, cascade.LEG_SELL):
            p = _plan_row(rules, side)
            inc = rules.quote_inc if side == cascade.LEG_BUY else rules.base_inc
            for amount in _amounts(rules, side, rng):
                bid = rng.choice([0.0, rng.uniform(1e-6, 1e5)])
                units = orderkern.size_units(p, amount, bid)
                ref = cascade.size_leg(rules, side, amount, bid)
                if units >= 0:
                    built += 1
                    assert type(ref) is tuple, (d["symbol"], side, amount, ref)
                    assert cascade.units_to_str(units, inc.dp) == ref[1]
                    assert units / inc.scale == ref[2]
                else:
                    deferred += 1
                    if type(ref) is tuple:   # Python places it: only beyond the kernel's range
                        q = (amount / (1.0 + rules.taker_fee) if side == cascade.LEG_BUY else amount) * inc.per_inc
                        assert q >= 2.0 ** 52 or orderkern.floor_units(q / inc.per_inc, inc.per_inc, inc.inc_units) >= 2 ** 53, \
                            (d["symbol"], side, amount, ref)
    assert built > 10000 and deferred > 1000


def _plan_row(rules, side, ioc=False):
    plan = np.zeros(1, orderkern.PLAN_DTYPE)
    fmt = '{"clientOid":"%s","side":"x","symbol":"y","type":"market","f":"%s"}'
    fmt_ioc = '{"clientOid":"%s","side":"x","symbol":"y","type":"limit","price":"%s","size":"%s"}'
    arrays = orderkern.alloc(1, 1)
    arrays["ok_plan"] = plan
    orderkern.fill(arrays, [((0, side, rules, fmt),) * 3], Signer("k", SECRET, "p", 3), b"/p", b"h", True,
                   [fmt_ioc] if ioc else None)
    assert plan[0]["ok"] == 1 and plan[0]["ioc_ok"] == int(ioc)
    return plan[0]


class _Uni:
    """What executor.leg_plans reads of a universe: tris and rules."""

    def __init__(self, rules_list):
        self.rules = rules_list
        n = len(rules_list)
        self.tris = np.zeros(n, triangles.TRIANGLE_DTYPE)
        for t in range(n):
            self.tris[t]["sym0"] = t
            self.tris[t]["side0"] = t % 2
            self.tris[t]["sym1"] = self.tris[t]["sym2"] = t


@pytest.mark.parametrize("path", [executor.PATH_PLACE, executor.PATH_TEST])
def test_request_is_post_requests_bytes(symbols, path):
    """The whole request, for a sample of real symbols, both sides, two slots: what
    executor.fire_leg would send (its body format, size_leg, Signer, post_request)."""
    rng = random.Random(4)
    sample = rng.sample(symbols, 60)
    rules = [cascade.SymbolRules.from_kucoin(d, 0.001) for d in sample]
    uni = _Uni(rules)
    plans = executor.leg_plans(uni)
    sgn = Signer("6650a1b2c3d4e5f6a7b8c9d0", SECRET, "my passphrase", 3)
    conn = OrderConn("http://127.0.0.1:18080")
    arrays = orderkern.alloc(2, len(plans))
    n_ok = orderkern.fill(arrays, plans, sgn, path.encode(), conn.host_header, True)
    assert n_ok == len(plans)
    a = arrays
    checked = 0
    for t, legs in enumerate(plans):
        _sym, side, r, fmt = legs[0]
        for slot in (0, 1):
            corr = rng.randrange(2 ** 64)
            amount = 10.0 ** rng.uniform(-2, 6)
            ts = 1_760_000_000_000 + rng.randrange(10 ** 9)
            n = orderkern.build_request(slot, np.uint64(corr), t, amount, 1e9, 0.0, 0.0, ts, a["ok_plan"], a["ok_body"],
                                        a["ok_tmpl"], a["ok_ctl"], a["ok_req"], a["ok_info"], a["ok_scr"],
                                        a["ok_w"])
            sized = cascade.size_leg(r, side, amount, 1e9)
            if type(sized) is str:
                assert n == 0 and a["ok_info"][slot]["len"] == 0
                continue
            coid = rings.client_oid(corr, slot, 0)
            body = (fmt % (coid, sized[1])).encode()
            want = conn.post_request(sgn, path.encode(), ts, body)
            got = a["ok_req"][slot, :n].tobytes()
            assert got == want
            info = a["ok_info"][slot]
            assert int(info["corr"]) == corr and info["len"] == n
            assert got[info["text_off"]:info["text_off"] + info["text_len"]].decode() == sized[1]
            checked += 1
    assert checked > 60


def test_ioc_sizing_matches_size_limit(symbols):
    """leg0_order = ioc: where the kernel sizes the limit IOC, size and price texts are
    cascade.size_limit's (ROUND_NEAREST: Python's round, half to even, included)."""
    rng = random.Random(5)
    built = deferred = 0
    for d in symbols:
        rules = cascade.SymbolRules.from_kucoin(d, 0.001)
        p = _plan_row(rules, 0, ioc=True)
        pi, bi = rules.price_inc, rules.base_inc
        for base in _amounts(rules, cascade.LEG_SELL, rng)[:30]:
            k = rng.randrange(1, 10 ** rng.randrange(1, 9))
            for price in (k / pi.per_inc, (k + 0.5) / pi.per_inc, (k + 1.5) / pi.per_inc,
                          10.0 ** rng.uniform(-8, 6), 0.0, float("nan")):
                units, pu = orderkern.size_limit_units(p, base, price)
                ref = cascade.size_limit(rules, 0, base, price)
                if units >= 0:
                    built += 1
                    assert type(ref) is tuple, (d["symbol"], base, price, ref)
                    assert (cascade.units_to_str(units, bi.dp), cascade.units_to_str(pu, pi.dp)) == (ref[0], ref[2])
                    assert pu / pi.scale == ref[3]
                else:
                    deferred += 1
                    # beyond the kernel's range: 2**52 increments of size, 2**53 units of price
                    assert (type(ref) is str or base * bi.per_inc >= 2.0 ** 52
                            or price * pi.per_inc >= 2.0 ** 52 or ref[3] * pi.scale >= 2.0 ** 53), \
                        (d["symbol"], base, price, ref)
    assert built > 5000 and deferred > 1000


def test_ioc_request_is_fire_legs_bytes(symbols):
    rng = random.Random(6)
    rules = [cascade.SymbolRules.from_kucoin(d, 0.001) for d in rng.sample(symbols, 40)]
    uni = _Uni(rules)
    plans, fmts = executor.leg_plans(uni), executor.ioc_formats(uni)
    sgn = Signer("6650a1b2c3d4e5f6a7b8c9d0", SECRET, "my passphrase", 3)
    conn = OrderConn("http://127.0.0.1:18080")
    a = orderkern.alloc(1, len(plans))
    assert orderkern.fill(a, plans, sgn, b"/api/v1/hf/orders", conn.host_header, True, fmts) == len(plans)
    checked = 0
    for t, legs in enumerate(plans):
        r = legs[0][2]
        for lim in (0.0, rng.uniform(0.5, 2.0) * 10 ** rng.randrange(-4, 4)):
            corr, ts, base = rng.randrange(2 ** 64), 1_760_000_000_123, 10.0 ** rng.uniform(-1, 5)
            n = orderkern.build_request(0, np.uint64(corr), t, 500.0, 1e9, lim, base, ts, a["ok_plan"],
                                        a["ok_body"], a["ok_tmpl"], a["ok_ctl"], a["ok_req"], a["ok_info"],
                                        a["ok_scr"], a["ok_w"])
            coid = rings.client_oid(corr, 0, 0)
            if lim > 0.0:       # executor.fire_leg: an IOC when the signal has a price
                sized = cascade.size_limit(r, legs[0][1], base, lim)
                body = None if type(sized) is str else (fmts[t] % (coid, sized[2], sized[0])).encode()
            else:
                sized = cascade.size_leg(r, legs[0][1], 500.0, 1e9)
                body = None if type(sized) is str else (legs[0][3] % (coid, sized[1])).encode()
            if body is None:
                assert n == 0
                continue
            got = a["ok_req"][0, :n].tobytes()
            assert got == conn.post_request(sgn, b"/api/v1/hf/orders", ts, body)
            info = a["ok_info"][0]
            if lim > 0.0:
                assert got[info["px_off"]:info["px_off"] + info["px_len"]].decode() == sized[2]
                assert got[info["text_off"]:info["text_off"] + info["text_len"]].decode() == sized[0]
                checked += 1
    assert checked > 20


def test_disabled_or_unfit_builds_nothing(symbols):
    rules = [cascade.SymbolRules.from_kucoin(symbols[0], 0.001)]
    plans = executor.leg_plans(_Uni(rules))
    sgn = Signer("k", SECRET, "p", 3)
    a = orderkern.alloc(1, 1)
    assert orderkern.fill(a, plans, sgn, b"/api/v1/hf/orders", b"h:1", False) == 0
    stage = np.zeros(1, rings.SIGNAL_DTYPE)
    stage[0]["start_vol"] = 1000.0
    args = (a["ok_plan"], a["ok_body"], a["ok_tmpl"], a["ok_ctl"], a["ok_req"], a["ok_info"], a["ok_scr"], a["ok_w"])
    a["ok_info"][0]["len"] = 99
    assert orderkern.build_leg0(0, stage, *args) == 0 and a["ok_info"][0]["len"] == 0
    orderkern.fill(a, plans, sgn, b"/api/v1/hf/orders", b"h:1", True)
    assert orderkern.build_leg0(0, stage, *args) > 0
    # a body format of another shape is left to Python
    fmt3 = [((0, 0, rules[0], '{"clientOid":"%s","price":"%s","size":"%s"}'),) * 3]
    assert orderkern.fill(a, fmt3, sgn, b"/p", b"h", True) == 0
    assert orderkern.build_leg0(0, stage, *args) == 0
