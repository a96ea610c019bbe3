"""privwire.py: orderChange bytes -> FILL record, against the simdjson/Python reference path."""
import json
from pathlib import Path

import numpy as np
import pytest

import privwire
import rings

DATA = Path(__file__).parent / "data" / "ws-samples-2025-12_2026-01.jsonl"
OID = "ta6b0640e8000001s1l2"


def captures():
    return [json.loads(l)["msg"] for l in open(DATA) if "orderChange" in l]


def parse(msg, nslots=2, text=None):
    dst = np.zeros(1, rings.FILL_DTYPE)
    raw = privwire.raw_view(dst)
    frame = np.frombuffer((text if text is not None else json.dumps(msg)).encode(), np.uint8)
    return privwire.parse_order_change(frame, dst, raw, 777, nslots), dst[0]


def same(a, b):
    for f in rings.FILL_DTYPE.names:
        x, y = a[f], b[f]
        if isinstance(x, float) and np.isnan(x):
            if not np.isnan(y):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("sep", [(",", ":"), (", ", ": ")])
def test_parse_when_real_captures_then_same_record_as_reference_path(sep):
    msgs = captures()
    assert len(msgs) == 8
    kinds = set()
    for m in msgs:
        m["data"]["clientOid"] = OID
        slot, rec = parse(m, text=json.dumps(m, separators=sep))
        ref = np.zeros(1, rings.FILL_DTYPE)
        rings.fill_from_order_change(ref, 0, m["data"], 0x6b0640e8000001, 2, 777)
        assert slot == 1 and same(rec, ref[0]), (rec, ref[0])
        kinds.add(int(rec["kind"]))
    assert {rings.FILL_MATCH, rings.FILL_FILLED, rings.FILL_CANCELED} <= kinds


def test_parse_when_ts_has_19_digits_then_exact():
    m = captures()[0]
    m["data"]["clientOid"] = OID
    m["data"]["ts"] = 1768823076296123456
    assert parse(m)[1]["ts_ns"] == 1768823076296123456


@pytest.mark.parametrize("oid", ["5c52e11203aa677f33e493fc", "ta6bs9l0", "ta6bs1l3", "tas1l0",
                                 "ta6bs1l0x", "TA6bs1l0", "ta12345678901234567s1l0", ""])
def test_parse_when_clientoid_not_ours_or_slot_out_of_range_then_foreign(oid):
    m = captures()[0]
    m["data"]["clientOid"] = oid
    assert parse(m, nslots=2)[0] == privwire.OC_FOREIGN


def test_parse_when_truncated_or_garbage_then_bad_never_raises():
    m = captures()[0]
    m["data"]["clientOid"] = OID
    text = json.dumps(m)
    for cut in range(0, len(text) - 1, 7):
        assert parse(None, text=text[:cut])[0] == privwire.OC_BAD
    for junk in ("[]", "null", '{"data":[1,2]}', '{"data":{"type":"match","matchSize":"1x"}}',
                 '{"data":{"clientOid":"ta1s0l0"}}', "\x00" * 40):
        assert parse(None, text=junk)[0] == privwire.OC_BAD


def test_kernel_when_jitted_then_agrees_with_py_func():
    m = captures()[2]
    m["data"]["clientOid"] = OID
    frame = np.frombuffer(json.dumps(m).encode(), np.uint8)
    a, b = np.zeros(1, rings.FILL_DTYPE), np.zeros(1, rings.FILL_DTYPE)
    ra = privwire.parse_order_change(frame, a, privwire.raw_view(a), 5, 2)
    rb = privwire.parse_order_change.py_func(frame, b, privwire.raw_view(b), 5, 2)
    assert ra == rb == 1 and same(a[0], b[0])


@pytest.mark.parametrize("field,value", [("matchSize", "-1"), ("matchPrice", "-0.5"),
                                         ("matchSize", "0"), ("filledSize", "-3"),
                                         ("remainSize", "-1e-8"), ("remainFunds", "-2"),
                                         ("matchPrice", None)])
def test_parse_when_our_order_carries_impossible_numbers_then_bad(field, value):
    """They would size the next leg (hotctx.route_fill's totals): refused, counted by the
    Python path as bad frames (hot.HotLoop._on_order_change refuses them too)."""
    m = next(x for x in captures() if x["data"]["type"] == "match")
    m["data"]["clientOid"] = OID
    if value is None:
        del m["data"][field]
    else:
        m["data"][field] = value
    assert parse(m)[0] == privwire.OC_BAD
    m2 = next(x for x in captures() if x["data"]["type"] == "match")
    m2["data"]["clientOid"] = OID
    assert parse(m2)[0] == 1                     # the untouched event is read
