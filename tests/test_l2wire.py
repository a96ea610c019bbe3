"""Tests for l2wire.py: the level2 frame parser and its exact decimal conversion.

Run: python -m pytest -q tests/test_l2wire.py
Data: tests/data/ws-public-2021-04-25.jsonl (real 2021 stream, `data` first, no `time`) and
tests/data/ws-samples-2025-12_2026-01.jsonl (2025 frames with `time`, docs field order).
"""
import json
import random
from pathlib import Path

import numpy as np
import pytest

import l2wire as W

DATA = Path(__file__).parent / "data"
DOCS_FRAME = (b'{"type":"message","topic":"/market/level2:BTC-USDT","subject":"trade.l2update",'
              b'"data":{"changes":{"asks":[["18906","0.00331","14103845"],'
              b'["18907.3","0.58751503","14103844"]],"bids":[["18891.9","0.15688","14103847"]]},'
              b'"sequenceEnd":14103847,"sequenceStart":14103844,"symbol":"BTC-USDT",'
              b'"time":1663747970273}}')
ERRORS = {W.W_TRUNCATED, W.W_SYNTAX, W.W_NUMBER, W.W_MISSING, W.W_TOO_MANY}


def level2_msgs(name):
    out = []
    for line in (DATA / name).read_text().splitlines():
        m = json.loads(line)["msg"]
        if isinstance(m, dict) and m.get("subject") == "trade.l2update":
            out.append(m)
    return out


@pytest.fixture(scope="module")
def msgs_2021():
    return level2_msgs("ws-public-2021-04-25.jsonl")


@pytest.fixture(scope="module")
def msgs_2025():
    return level2_msgs("ws-samples-2025-12_2026-01.jsonl")


def parse(frame: bytes, cap=W.CHANGES_CAP, kernel=W.parse_l2):
    ch, hdr = W.alloc_changes(cap), W.alloc_l2hdr()
    n = kernel(np.frombuffer(frame, np.uint8), ch, hdr)
    return n, hdr[0].copy(), ch[:max(n, 0)].copy()


def expected(msg):
    """(seq_start, seq_end, ts_ms, [(side, px, sz, seq)]) from json.loads + float()."""
    d = msg["data"]
    rows = []
    for key, side in (("asks", W.SIDE_ASK), ("bids", W.SIDE_BID)):
        for p, s, q in d["changes"][key]:
            rows.append((side, float(p), float(s), int(q)))
    return int(d["sequenceStart"]), int(d["sequenceEnd"]), int(d.get("time", -1)), rows


def assert_parsed_like_json(frame, msg):
    n, h, ch = parse(frame)
    s0, s1, ts, rows = expected(msg)
    assert n == len(rows)
    assert (h["seq_start"], h["seq_end"], h["ts_ms"]) == (s0, s1, ts)
    got = sorted((int(c["side"]), float(c["px"]), float(c["sz"]), int(c["seq"])) for c in ch)
    assert got == sorted(rows)   # exact float equality: the parser must match float(s)


def test_parse_when_docs_multi_change_example_then_header_and_changes_exact():
    n, h, ch = parse(DOCS_FRAME)
    assert n == 3
    assert (h["seq_start"], h["seq_end"], h["ts_ms"]) == (14103844, 14103847, 1663747970273)
    assert [(int(c["side"]), c["px"], c["sz"], int(c["seq"])) for c in ch] == [
        (W.SIDE_ASK, 18906.0, 0.00331, 14103845), (W.SIDE_ASK, 18907.3, 0.58751503, 14103844),
        (W.SIDE_BID, 18891.9, 0.15688, 14103847)]


@pytest.mark.parametrize("seps", [None, (",", ":")], ids=["dumps", "compact"])
def test_parse_when_every_recorded_2021_frame_then_equals_json_loads(msgs_2021, seps):
    assert len(msgs_2021) > 3000
    for m in msgs_2021:
        assert_parsed_like_json(json.dumps(m, separators=seps).encode(), m)


def test_parse_when_2021_frame_without_time_then_ts_is_minus_one(msgs_2021):
    n, h, _ = parse(json.dumps(msgs_2021[0]).encode())
    assert n >= 1 and h["ts_ms"] == -1


@pytest.mark.parametrize("seps", [None, (",", ":")], ids=["dumps", "compact"])
def test_parse_when_2025_samples_then_equals_json_loads(msgs_2025, seps):
    assert len(msgs_2025) >= 5
    for m in msgs_2025:
        frame = json.dumps(m, separators=seps).encode()
        assert_parsed_like_json(frame, m)
        assert parse(frame)[1]["ts_ms"] == m["data"]["time"] > 0


def test_parse_when_keys_shuffled_and_pretty_printed_then_same_result(msgs_2021):
    rng = random.Random(7)

    def shuffled(o):
        if isinstance(o, dict):
            items = list(o.items())
            rng.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(o, list):
            return [shuffled(v) for v in o]
        return o

    for m in msgs_2021[:300]:
        frame = ("\n  " + json.dumps(shuffled(m), indent=3) + "\r\n\t").encode()
        assert_parsed_like_json(frame, m)


def test_parse_when_numbers_bare_and_sequences_quoted_then_accepted():
    frame = (b'{ "data" : { "sequenceStart" : "5" , "sequenceEnd" : "6", "time":"7",'
             b' "changes" : { "bids" : [ [ 1.5 , 2E-3 , "6" ] ] , "asks" : [ ] } } }')
    n, h, ch = parse(frame)
    assert n == 1 and (h["seq_start"], h["seq_end"], h["ts_ms"]) == (5, 6, 7)
    assert (ch[0]["side"], ch[0]["px"], ch[0]["sz"], ch[0]["seq"]) == (W.SIDE_BID, 1.5, 0.002, 6)


def test_parse_when_unknown_keys_hold_brackets_and_escapes_then_skipped():
    frame = (b'{"x":{"a":[1,{"b":"]}\\"["}],"c":null},"topic":"/market/level2:A-B",'
             b'"data":{"symbol":"A-B","extra":[[["1"]]],"changes":{"other":{"k":"}"},'
             b'"asks":[["2","3","9"]]},"sequenceStart":8,"sequenceEnd":9,"flag":true}}')
    n, h, ch = parse(frame)
    assert n == 1 and ch[0]["px"] == 2.0 and (h["seq_start"], h["seq_end"]) == (8, 9)


def random_decimal(rng):
    kind = rng.random()
    if kind < 0.4:      # typical KuCoin price/size: up to 8 integer and 10 fraction digits
        ip = str(rng.randint(0, 10 ** rng.randint(0, 7)))
        fp = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 10)))
        return ip + ("." + fp if fp else "")
    if kind < 0.6:      # tiny prices: 0.0000002181
        return "0." + "0" * rng.randint(0, 12) + str(rng.randint(1, 10 ** rng.randint(1, 8)))
    if kind < 0.8:      # long mantissas (15-18 digits): past the 2**53 fast path
        d = "".join(rng.choice("0123456789") for _ in range(rng.randint(15, 18)))
        p = rng.randint(0, len(d))
        return d[:p] + "." + d[p:] + "0" * rng.randint(0, 3)
    m = str(rng.randint(1, 10 ** rng.randint(1, 15)))
    return m + rng.choice("eE") + str(rng.randint(-20, 6))


def test_decimal_when_random_strings_then_bit_equal_to_python_float():
    rng = random.Random(2024)
    for _ in range(40000):
        s = random_decimal(rng)
        a = np.frombuffer(s.encode(), np.uint8)
        v, end, st = W.parse_decimal(a, 0, len(a))
        assert st == 0 and end == len(a), s
        assert v == float(s) and np.signbit(v) == np.signbit(float(s)), s


@pytest.mark.parametrize("s", ["100000000000000000.5", "0.1234567890123456789", "1e-27",
                               "12345678901234567e9"])
def test_decimal_when_beyond_exact_range_then_number_error(s):
    a = np.frombuffer(s.encode(), np.uint8)
    assert W.parse_decimal(a, 0, len(a))[2] == W.W_NUMBER


@pytest.mark.parametrize("s", ["1e-26", "123456789012345678e-26", "9007199254740993",
                               "0.000000000000000000000001", "1000000000000000000000000e-20"])
def test_decimal_when_edge_of_exact_range_then_equals_python_float(s):
    a = np.frombuffer(s.encode(), np.uint8)
    v, end, st = W.parse_decimal(a, 0, len(a))
    assert st == 0 and v == float(s)


def test_parse_when_frame_truncated_at_any_byte_then_truncated_code():
    for k in range(len(DOCS_FRAME)):
        assert parse(DOCS_FRAME[:k])[0] == W.W_TRUNCATED, DOCS_FRAME[:k]


@pytest.mark.parametrize("frame,code", [
    (b"", W.W_TRUNCATED),
    (b"garbage", W.W_SYNTAX),
    (b"[1,2,3]", W.W_SYNTAX),
    (b"{}", W.W_MISSING),
    (b'{"type":"message"}', W.W_MISSING),
    (b'{"data":{"changes":{"asks":[],"bids":[]},"sequenceEnd":3}}', W.W_MISSING),
    (b'{"data":{"sequenceStart":3,"sequenceEnd":3}}', W.W_MISSING),
    (b'{"data":{"changes":{"asks":[["1x","2","3"]]},"sequenceStart":3,"sequenceEnd":3}}',
     W.W_NUMBER),
    (b'{"data":{"changes":{"asks":[["","2","3"]]},"sequenceStart":3,"sequenceEnd":3}}',
     W.W_NUMBER),
    (b'{"data":{"changes":{"asks":[["1","2","3.5"]]},"sequenceStart":3,"sequenceEnd":3}}',
     W.W_NUMBER),
    (b'{"data":{"changes":{"asks":[["1","2"]]},"sequenceStart":3,"sequenceEnd":3}}', W.W_SYNTAX),
    (b'{"data":{"changes":{"asks":[["1","2","3","4"]]},"sequenceStart":3,"sequenceEnd":3}}',
     W.W_SYNTAX),
    (b'{"data":{"changes":{"asks":[],"bids":[]},"sequenceStart":3,"sequenceEnd":3}} x',
     W.W_SYNTAX),
    (b'{"data":{"sequenceStart":99999999999999999999,"sequenceEnd":3}}', W.W_NUMBER),
])
def test_parse_when_malformed_then_error_code_not_exception(frame, code):
    assert parse(frame)[0] == code


def test_parse_when_more_changes_than_array_then_too_many():
    assert parse(DOCS_FRAME, cap=2)[0] == W.W_TOO_MANY
    assert parse(DOCS_FRAME, cap=3)[0] == 3


def test_parse_when_huge_frame_then_parsed_or_too_many():
    levels = ",".join(f'["{100 + i * 0.01:.2f}","{i + 1}","{i + 10}"]' for i in range(5000))
    frame = ('{"data":{"changes":{"asks":[' + levels + '],"bids":[]},'
             '"sequenceStart":10,"sequenceEnd":5009}}').encode()
    assert parse(frame)[0] == W.W_TOO_MANY
    n, h, ch = parse(frame, cap=5000)
    assert n == 5000 and ch[-1]["px"] == float("149.99") and h["seq_end"] == 5009
    assert parse(b"[" * 200000)[0] == W.W_SYNTAX
    assert parse(b'{"pad":"' + b"x" * 1_000_000)[0] == W.W_TRUNCATED


def test_parse_when_random_mutations_then_kernel_equals_py_func_and_never_raises(msgs_2021):
    rng = random.Random(11)
    frames = [json.dumps(m).encode() for m in msgs_2021[:200]]
    seen = set()
    for _ in range(3000):
        f = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            k = rng.randrange(len(f))
            if op < 0.4:
                f[k] = rng.choice(b'0123456789.,:[]{}" e-x\\')
            elif op < 0.7:
                del f[k]
            else:
                f.insert(k, rng.choice(b'0123456789.,[]" '))
        f = bytes(f)
        a = parse(f)
        b = parse(f, kernel=W.parse_l2.py_func)
        assert a[0] == b[0]
        assert a[0] >= 0 or a[0] in ERRORS
        if a[0] >= 0:
            assert a[1] == b[1] and np.array_equal(a[2], b[2])
        seen.add(a[0] if a[0] < 0 else "ok")
    assert {"ok", W.W_SYNTAX, W.W_NUMBER}.issubset(seen)


def test_parse_when_random_bytes_then_error_code():
    rng = np.random.default_rng(3)
    for _ in range(2000):
        f = rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes()
        assert parse(f)[0] in ERRORS


def test_topic_symbol_when_level2_frame_then_symbol_bytes_and_id():
    frame = json.dumps({"data": {}, "topic": "/market/level2:BCHSV-USDT"}).encode()
    assert W.topic_symbol(frame) == b"BCHSV-USDT"
    assert W.frame_symbol_id(frame, {b"X-Y": 0, b"BCHSV-USDT": 7}) == 7
    assert W.frame_symbol_id(frame, {b"X-Y": 0}) == -1
    assert W.topic_symbol(b'{"topic":"/market/ticker:BTC-USDT"}') is None
    assert W.topic_symbol(b'{"topic":"/market/level2:') is None
    assert W.parse_frame(DOCS_FRAME, W.alloc_changes(), W.alloc_l2hdr()) == 3
