"""Tests of the simulator's wire protocol, driven directly with urllib3 and websocket-client.

Signatures are computed here with hmac/base64 (docs/kucoin.md 1.2, 1.3), independently of
the engine's signer. Two module simulators: `busy` (moving market, mispricings) for the
stream tests and `quiet` (no random walk, no mispricings) for exact order arithmetic.
Run: python -m pytest -q tests/test_sim.py
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import select
import time
from decimal import Decimal, localcontext

import pytest
import urllib3
import websocket

from conftest import SimProcess

HTTP = urllib3.PoolManager(retries=False, timeout=10.0)


# ---- helpers -------------------------------------------------------------------------------
def kc_headers(s, method, path_q, body=b"", *, ts=None, version="3", key=None, secret=None,
               passphrase=None, plain_passphrase=False, sign_path=None):
    ts = str(int(time.time() * 1000)) if ts is None else str(ts)
    sec = (secret or s.api_secret).encode()
    pre = (ts + method + (path_q if sign_path is None else sign_path)).encode() + body
    sig = base64.b64encode(hmac.new(sec, pre, hashlib.sha256).digest()).decode()
    pp = passphrase or s.api_passphrase
    if not plain_passphrase:
        pp = base64.b64encode(hmac.new(sec, pp.encode(), hashlib.sha256).digest()).decode()
    h = {"KC-API-KEY": key or s.api_key, "KC-API-SIGN": sig, "KC-API-TIMESTAMP": ts,
         "KC-API-PASSPHRASE": pp, "Content-Type": "application/json"}
    if version is not None:
        h["KC-API-KEY-VERSION"] = version
    return h


def call(s, method, path_q, body=None, *, signed=True, headers=None, drop=(), **kw):
    raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    h = kc_headers(s, method, path_q, raw, **kw) if signed else {}
    for k in drop:
        h.pop(k, None)
    if headers:
        h.update(headers)
    r = HTTP.request(method, s.base_url + path_q, body=raw or None, headers=h)
    return r.status, json.loads(r.data), r.headers


def bullet(s, private=False):
    st, body, _ = call(s, "POST", "/api/v1/bullet-private" if private else "/api/v1/bullet-public",
                       signed=private)
    assert st == 200 and body["code"] == "200000", body
    return body["data"]


def open_ws(s, private=False, cid="c1", token=None):
    b = bullet(s, private)
    tok = b["token"] if token is None else token
    # Raw token with '=' (hummingbot style, docs/kucoin.md 2.2).
    return websocket.create_connection(f"{b['instanceServers'][0]['endpoint']}?token={tok}&connectId={cid}",
                                       timeout=5)


def recv(ws, timeout=5.0):
    ws.settimeout(timeout)
    return json.loads(ws.recv())


def recv_until(ws, pred, timeout=5.0):
    """Read until pred(msg); returns (msg, everything read before it)."""
    seen, deadline = [], time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; last messages {seen[-3:]}"
        m = recv(ws, left)
        if pred(m):
            return m, seen
        seen.append(m)


def is_closed(ws, timeout=3.0):
    """True once the server closed the connection (close frame or EOF) within timeout."""
    ws.settimeout(timeout)
    try:
        while True:
            if ws.recv() == "":          # websocket-client returns "" for a close frame
                return True
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return True
    except websocket.WebSocketTimeoutException:
        return False


def subscribe(ws, topic, rid="s1", private=False):
    ws.send(json.dumps({"id": rid, "type": "subscribe", "topic": topic, "privateChannel": private,
                        "response": True}))
    return recv_until(ws, lambda m: m.get("id") == rid and m["type"] in ("ack", "error"))


def drain(ws, quiet_s=0.3, max_s=5.0):
    out, deadline = [], time.monotonic() + max_s
    while time.monotonic() < deadline:
        try:
            out.append(recv(ws, quiet_s))
        except websocket.WebSocketTimeoutException:
            break
    return out


def place(s, body, path="/api/v1/hf/orders"):
    st, resp, _ = call(s, "POST", path, body)
    assert st == 200
    return resp


def balances(s):
    return {c: (Decimal(v["available"]), Decimal(v["hold"])) for c, v in s.get("/sim/balances").items()}


def apply_l2(book, seq, data):
    """docs/kucoin.md 3.8 step 4-5 on a {"bids": {px: sz}, "asks": {...}} book; returns seq."""
    if data["sequenceEnd"] <= seq:
        return seq
    assert data["sequenceStart"] <= seq + 1, (data["symbol"], seq, data["sequenceStart"])
    for side in ("asks", "bids"):
        for px, sz, sq in data["changes"][side]:
            if int(sq) <= seq or px == "0":
                continue
            if Decimal(sz) == 0:
                book[side].pop(Decimal(px), None)
            else:
                book[side][Decimal(px)] = Decimal(sz)
    return data["sequenceEnd"]


def as_book(snap):
    return {side: {Decimal(p): Decimal(z) for p, z in snap[side]} for side in ("bids", "asks")}


@pytest.fixture(scope="module")
def busy():
    s = SimProcess(ws_connects_per_min=0, update_rate=300)
    yield s
    s.stop()
    assert "Traceback" not in s.stderr(), s.stderr()


@pytest.fixture(scope="module")
def quiet():
    s = SimProcess(ws_connects_per_min=0, update_rate=0, mispricing_rate=0, take_delay_ms=300)
    yield s
    s.stop()
    assert "Traceback" not in s.stderr(), s.stderr()


@pytest.fixture
def private_ws(quiet):
    ws = open_ws(quiet, private=True, cid="priv")
    assert recv(ws)["type"] == "welcome"
    assert subscribe(ws, "/spotMarket/tradeOrdersV2", "o", True)[0]["type"] == "ack"
    assert subscribe(ws, "/account/balance", "b", True)[0]["type"] == "ack"
    yield ws
    ws.close()


KCS_BOOK = {"symbol": "KCS-USDT", "bids": [["8.5", "1.2"], ["8.4", "5"]], "asks": [["8.6", "1.5"], ["8.7", "10"]]}


# ---- process, REST basics -----------------------------------------------------------------
def test_start_when_port_zero_then_prints_url_and_counts(sim):
    assert f"http://127.0.0.1:{sim.port}" in sim.start_line
    assert "symbols=60" in sim.start_line and "triangles=" in sim.start_line
    assert sim.get("/api/v1/timestamp")["code"] == "200000"


def test_stop_when_sigterm_then_exits_zero(sim_factory):
    s = sim_factory(update_rate=0)
    s.stop()
    assert s.proc.returncode == 0


def test_timestamp_when_requested_then_envelope_and_ratelimit_headers(busy):
    st, body, h = call(busy, "GET", "/api/v1/timestamp", signed=False)
    assert st == 200 and body["code"] == "200000" and abs(body["data"] - time.time() * 1000) < 5000
    assert h["gw-ratelimit-limit"] == "2000"
    assert 0 <= int(h["gw-ratelimit-remaining"]) < 2000 and 0 < int(h["gw-ratelimit-reset"]) <= 30000


def test_symbols_when_listed_then_v2_fields_with_string_decimals(busy):
    data = busy.get("/api/v2/symbols")["data"]
    assert len(data) == 60
    btc = next(s for s in data if s["symbol"] == "BTC-USDT")
    assert btc["baseIncrement"] == "0.00000001" and btc["enableTrading"] is True
    assert btc["feeCategory"] == 1 and btc["takerFeeCoefficient"] == "1.00"
    assert all(isinstance(s["minFunds"], str) and isinstance(s["priceIncrement"], str) for s in data)


def test_symbols_when_all_then_every_enabled_symbol(sim_factory):
    s = sim_factory(symbols="all", update_rate=0, mispricing_rate=0, depth=20)
    assert len(s.get("/api/v2/symbols")["data"]) == 1226


def test_seed_when_same_then_same_books_and_different_seed_differs(sim_factory):
    a, b, c = (sim_factory(seed=sd, paused=True, mispricing_rate=0, update_rate=0) for sd in (7, 7, 8))
    ba, bb, bc = (x.get("/sim/book?symbol=ETH-USDT") for x in (a, b, c))
    for k in ("sequence", "bids", "asks"):
        assert ba[k] == bb[k]
    assert ba["asks"] != bc["asks"]


def test_unknown_path_when_requested_then_404000_http_404(busy):
    st, body, h = call(busy, "GET", "/api/v1/nope", signed=False)
    assert st == 404 and body == {"code": "404000", "msg": "Url Not Found"}
    assert "gw-ratelimit-remaining" in h


def test_snapshot_when_level2_20_and_100_then_sorted_strings_and_sequence_string(busy):
    for n in (20, 100):
        d = busy.get(f"/api/v1/market/orderbook/level2_{n}?symbol=ETH-USDT")["data"]
        assert isinstance(d["sequence"], str) and isinstance(d["time"], int)
        assert len(d["bids"]) == n and len(d["asks"]) == n
        bids = [Decimal(p) for p, _ in d["bids"]]
        asks = [Decimal(p) for p, _ in d["asks"]]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]


def test_all_tickers_when_requested_then_buy_is_best_bid(quiet):
    d = quiet.get("/api/v1/market/allTickers")["data"]
    t = next(x for x in d["ticker"] if x["symbol"] == "ETH-USDT")
    book = quiet.get("/sim/book?symbol=ETH-USDT")
    assert t["buy"] == book["bids"][0][0] and t["sell"] == book["asks"][0][0]


# ---- auth ------------------------------------------------------------------------------------
def test_accounts_when_signed_v3_then_trade_accounts_match_sim_balances(quiet):
    st, body, h = call(quiet, "GET", "/api/v1/accounts?currency=USDT&type=trade")
    assert st == 200 and body["code"] == "200000"
    [acct] = body["data"]
    b = quiet.get("/sim/balances")["USDT"]
    assert acct["type"] == "trade" and acct["available"] == b["available"] and acct["holds"] == b["hold"]
    assert h["gw-ratelimit-limit"] == "2000"         # Management pool
    assert call(quiet, "GET", "/api/v1/accounts?type=main")[1]["data"] == []


def test_sign_when_query_encoded_then_decoded_and_raw_forms_accepted(quiet):
    path = "/api/v1/trade-fees?symbols=BTC-USDT%2CETH-USDT"
    for sp in ("/api/v1/trade-fees?symbols=BTC-USDT,ETH-USDT", path):     # docs/kucoin.md 1.2
        st, body, _ = call(quiet, "GET", path, sign_path=sp)
        assert st == 200 and [x["symbol"] for x in body["data"]] == ["BTC-USDT", "ETH-USDT"]
        assert body["data"][0]["takerFeeRate"] == "0.001"
    st, body, _ = call(quiet, "GET", path, sign_path="/api/v1/trade-fees?symbols=BTC-USDT")
    assert (st, body["code"]) == (401, "400005")


def test_trade_fees_when_more_than_10_symbols_then_400100(quiet):
    syms = ",".join(s["symbol"] for s in quiet.get("/api/v2/symbols")["data"][:11])
    st, body, _ = call(quiet, "GET", f"/api/v1/trade-fees?symbols={syms}")
    assert st == 200 and body["code"] == "400100"
    assert call(quiet, "GET", "/api/v1/base-fee")[1]["data"] == {"takerFeeRate": "0.001", "makerFeeRate": "0.001"}


@pytest.mark.parametrize("case,status,code,msg", [
    ("missing", 401, "400001", None),
    ("skew", 400, "400002", "Invalid KC-API-TIMESTAMP"),
    ("key", 401, "400003", "KC-API-KEY does not exist"),
    ("plain_pp_v3", 401, "400004", "Invalid KC-API-PASSPHRASE"),
    ("wrong_pp", 401, "400004", "Invalid KC-API-PASSPHRASE"),
    ("sign", 401, "400005", "Invalid KC-API-SIGN"),
    ("version", 400, "400009", "Invalid KC-API-KEY-VERSION"),
])
def test_auth_when_header_wrong_then_gateway_code_and_http_status(quiet, case, status, code, msg):
    kw = {"missing": dict(drop=("KC-API-PASSPHRASE",)), "skew": dict(ts=int(time.time() * 1000) - 6000),
          "key": dict(key="nope"), "plain_pp_v3": dict(plain_passphrase=True),
          "wrong_pp": dict(passphrase="other"), "sign": dict(secret="other-secret-for-sign"),
          "version": dict(version="7")}[case]
    if case == "sign":       # a wrong secret also breaks the passphrase: send the right one
        kw["headers"] = {"KC-API-PASSPHRASE": kc_headers(quiet, "GET", "/")["KC-API-PASSPHRASE"]}
    st, body, _ = call(quiet, "GET", "/api/v1/accounts", **kw)
    assert (st, body["code"]) == (status, code)
    if msg:
        assert body["msg"] == msg
    assert "data" not in body


def test_auth_when_v1_plain_passphrase_then_accepted(quiet):
    st, body, _ = call(quiet, "GET", "/api/v1/accounts", version=None, plain_passphrase=True)
    assert (st, body["code"]) == (200, "200000")


def test_post_when_content_type_not_json_then_415000(quiet):
    st, body, _ = call(quiet, "POST", "/api/v1/hf/orders/test", {"symbol": "BTC-USDT"},
                       headers={"Content-Type": "text/plain"})
    assert (st, body) == (415, {"code": "415000", "msg": "Unsupported Media Type"})


def test_ratelimit_when_public_pool_exhausted_then_429000_until_reset(busy):
    busy.control(rate_limits={"public": 30}, reset_rate_limits=True)
    try:
        for i in range(10):                         # timestamp weighs 3 (docs/kucoin.md 7.1)
            st, _, h = call(busy, "GET", "/api/v1/timestamp", signed=False)
            assert st == 200 and h["gw-ratelimit-remaining"] == str(27 - 3 * i)
        st, body, h = call(busy, "GET", "/api/v1/timestamp", signed=False)
        assert (st, body) == (429, {"code": "429000", "msg": "Too Many Requests"})
        assert h["gw-ratelimit-remaining"] == "0" and h["gw-ratelimit-limit"] == "30"
        st, _, h = call(busy, "GET", "/api/v1/accounts")         # other pools are separate
        assert st == 200
    finally:
        busy.control(rate_limits={"public": 2000}, reset_rate_limits=True)


# ---- WebSocket control protocol ---------------------------------------------------------------
def test_ws_when_connected_then_welcome_id_is_connect_id_and_ping_pongs_same_id(busy):
    ws = open_ws(busy, cid="hello123")
    assert recv(ws) == {"id": "hello123", "type": "welcome"}
    ws.send(json.dumps({"id": "p42", "type": "ping"}))
    pong = recv_until(ws, lambda m: m["type"] == "pong")[0]
    assert pong["id"] == "p42"
    ws.close()


def test_ws_when_connect_id_omitted_then_server_generates_one(busy):
    b = bullet(busy)
    ws = websocket.create_connection(f"{b['instanceServers'][0]['endpoint']}?token={b['token']}", timeout=5)
    w = recv(ws)
    assert w["type"] == "welcome" and w["id"]
    ws.close()


def test_connection_when_token_lifetime_ends_then_closed_despite_pings(sim_factory):
    s = sim_factory(token_ttl_s=1, update_rate=0, mispricing_rate=0)
    ws = open_ws(s, cid="old")
    assert recv(ws)["type"] == "welcome"
    t0, closed = time.monotonic(), False
    for i in range(40):                      # keep pinging: the close is not an idle timeout
        try:
            ws.send(json.dumps({"id": str(i), "type": "ping"}))
            ws.settimeout(2)
            if ws.recv() == "":              # close frame
                closed = True
                break
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            closed = True
            break
        time.sleep(0.1)
    assert closed and 0.8 <= time.monotonic() - t0 < 5.0
    assert s.get("/sim/state")["ws"]["counters"]["aged_closed"] == 1


def test_bullet_when_requested_then_endpoint_on_loopback_and_token_with_equals(busy):
    b = bullet(busy)
    srv = b["instanceServers"][0]
    assert srv["endpoint"] == f"ws://127.0.0.1:{busy.port}/endpoint"
    assert srv["protocol"] == "websocket" and srv["encrypt"] is False
    assert srv["pingInterval"] == 18000 and srv["pingTimeout"] == 10000 and "=" in b["token"]


def test_subscribe_when_response_true_then_ack_and_unsubscribe_acks(busy):
    ws = open_ws(busy)
    recv(ws)
    ws.send(json.dumps({"id": 1545910660739, "type": "subscribe", "topic": "/market/ticker:BTC-USDT,ETH-USDT",
                        "privateChannel": False, "response": True}))
    ack = recv_until(ws, lambda m: m["type"] == "ack")[0]
    assert ack == {"id": "1545910660739", "type": "ack"}        # numeric id echoed as string
    tick = recv_until(ws, lambda m: m.get("subject") == "trade.ticker")[0]
    assert tick["topic"] in ("/market/ticker:BTC-USDT", "/market/ticker:ETH-USDT")
    ws.send(json.dumps({"id": "u1", "type": "unsubscribe", "topic": "/market/ticker:BTC-USDT,ETH-USDT",
                        "privateChannel": False, "response": True}))
    assert recv_until(ws, lambda m: m["type"] == "ack")[0]["id"] == "u1"
    ws.close()


@pytest.mark.parametrize("topic,code,text", [
    ("/market/level2:BSV-BTC", 404, "topic /market/level2:BSV-BTC is not found"),
    ("/market/nothing:BTC-USDT", 404, "topic /market/nothing:BTC-USDT is not found"),
    ("/market/ticker:BUY XDC-BTC", 400, "topic /market/ticker:BUY XDC-BTC is invalid"),
])
def test_subscribe_when_topic_unknown_or_malformed_then_error_frame(busy, topic, code, text):
    ws = open_ws(busy)
    recv(ws)
    err = subscribe(ws, topic, "e1")[0]
    assert err == {"id": "e1", "type": "error", "code": code, "data": text}
    ws.close()


def test_subscribe_when_101_topics_in_one_request_then_509(busy):
    ws = open_ws(busy)
    recv(ws)
    err = subscribe(ws, "/market/level2:" + ",".join(["BTC-USDT"] * 101), "big")[0]
    assert (err["type"], err["code"]) == ("error", 509)
    assert err["data"] == "exceed max subscription count limitation of 100 per time"
    ws.close()


def test_subscribe_when_connection_passes_300_topics_then_509(busy):
    syms = ",".join(s["symbol"] for s in busy.get("/api/v2/symbols")["data"])        # 60 symbols
    ws = open_ws(busy)
    recv(ws)
    for i, p in enumerate(("/spotMarket/level1", "/spotMarket/level2Depth5", "/spotMarket/level2Depth50",
                           "/market/match", "/market/ticker")):
        assert subscribe(ws, f"{p}:{syms}", f"s{i}")[0]["type"] == "ack"                # 300 topics
    err = subscribe(ws, "/market/level2:BTC-USDT", "one-more")[0]
    assert (err["code"], err["data"]) == (509, "exceed max subscription count limitation of 300 per session")
    ws.close()


def test_client_messages_when_more_than_100_in_10s_then_509(busy):
    ws = open_ws(busy)
    recv(ws)
    for i in range(101):
        ws.send(json.dumps({"id": f"p{i}", "type": "ping"}))
    msgs = [recv(ws) for _ in range(101)]
    assert [m["type"] for m in msgs[:100]] == ["pong"] * 100
    assert msgs[100] == {"id": "p100", "type": "error", "code": 509, "data": "exceed max permits per 10 seconds"}
    ws.close()


def test_message_when_type_unknown_then_415(busy):
    ws = open_ws(busy)
    recv(ws)
    ws.send(json.dumps({"id": "x", "type": "openTunnel"}))
    assert recv(ws) == {"id": "x", "type": "error", "code": 415, "data": "type is not supported"}
    ws.close()


def test_private_topic_when_public_token_or_no_private_channel_then_403(busy):
    ws = open_ws(busy)
    recv(ws)
    assert subscribe(ws, "/spotMarket/tradeOrdersV2", "a", private=True)[0]["code"] == 403
    ws.close()
    ws = open_ws(busy, private=True)
    recv(ws)
    assert subscribe(ws, "/spotMarket/tradeOrdersV2", "b", private=False)[0]["code"] == 403
    assert subscribe(ws, "/spotMarket/tradeOrdersV2", "c", private=True)[0]["type"] == "ack"
    ws.close()


def test_connect_when_token_unknown_then_401_token_invalid(busy):
    ws = open_ws(busy, token="not-a-token")
    assert recv(ws) == {"type": "error", "code": 401, "data": "token is invalid"}
    assert is_closed(ws)


def test_connect_when_tokens_expired_then_401_token_expired_and_new_token_works(busy):
    b = bullet(busy)
    assert busy.control(expire_tokens=True)["expired_tokens"] >= 1
    url = f"{b['instanceServers'][0]['endpoint']}?token={b['token']}&connectId=x"
    ws = websocket.create_connection(url, timeout=5)
    assert recv(ws) == {"type": "error", "code": 401, "data": "token is expired"}
    assert is_closed(ws)
    ws = open_ws(busy)
    assert recv(ws)["type"] == "welcome"
    ws.close()


def test_connection_when_silent_past_ping_interval_plus_timeout_then_closed(busy):
    busy.control(ping_interval_ms=200, ping_timeout_ms=200)
    try:
        b = bullet(busy)
        assert b["instanceServers"][0]["pingInterval"] == 200
        ws = open_ws(busy, cid="idle")
        assert recv(ws)["type"] == "welcome"
        t0 = time.monotonic()
        err = recv_until(ws, lambda m: m["type"] == "error", timeout=3)[0]
        assert err == {"id": "idle", "type": "error", "code": 400, "data": "ping timeout"}
        assert time.monotonic() - t0 >= 0.3
        assert is_closed(ws)
    finally:
        busy.control(ping_interval_ms=18000, ping_timeout_ms=10000)


def test_connect_when_over_connects_per_minute_then_509_service_busy(busy):
    busy.control(ws_connects_per_min=2)
    try:
        w1, w2, w3 = (open_ws(busy, cid=f"r{i}") for i in range(3))
        assert recv(w1)["type"] == "welcome" and recv(w2)["type"] == "welcome"
        assert recv(w3) == {"type": "error", "code": 509, "data": "service busy, please retry later"}
        for w in (w1, w2, w3):
            w.close()
    finally:
        busy.control(ws_connects_per_min=0)


# ---- level2 -----------------------------------------------------------------------------------
def _l2_collect(s, syms, seconds, cid):
    ws = open_ws(s, cid=cid)
    recv(ws)
    ack, early = subscribe(ws, "/market/level2:" + ",".join(syms), "l2")
    assert ack["type"] == "ack"
    msgs = [m for m in early if m.get("subject") == "trade.l2update"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            m = recv(ws, 0.2)
        except websocket.WebSocketTimeoutException:
            continue
        if m.get("subject") == "trade.l2update":
            msgs.append(m)
    return ws, msgs


def test_level2_when_streamed_then_per_symbol_sequences_strictly_consecutive(busy):
    syms = [s["symbol"] for s in busy.get("/api/v2/symbols")["data"]]
    ws, msgs = _l2_collect(busy, syms, 1.0, "seq")
    ws.close()
    assert len(msgs) > 50
    last, seq_only = {}, 0
    for m in msgs:
        d = m["data"]
        assert m["topic"] == f"/market/level2:{d['symbol']}" and isinstance(d["sequenceStart"], int)
        entries = [int(e[2]) for side in ("asks", "bids") for e in d["changes"][side]]
        seq_only += sum(1 for side in ("asks", "bids") for e in d["changes"][side] if e[0] == "0")
        assert entries and max(entries) == d["sequenceEnd"] and min(entries) >= d["sequenceStart"]
        assert all(isinstance(x, str) for side in ("asks", "bids") for e in d["changes"][side] for x in e)
        if d["symbol"] in last:
            assert d["sequenceStart"] == last[d["symbol"]] + 1
        last[d["symbol"]] = d["sequenceEnd"]
    assert len(last) > 10 and seq_only >= 1      # ["0","0",seq] entries occur (docs/kucoin.md 3.6)


def test_level2_when_replayed_on_snapshots_then_equals_sim_book(busy):
    syms = ["BTC-USDT", "ETH-USDT", "ETH-BTC", "KCS-USDT", "XRP-USDT", "TRX-BTC", "USDC-USDT"]
    ws = open_ws(busy, cid="replay")
    recv(ws)
    ack, buffered = subscribe(ws, "/market/level2:" + ",".join(syms), "l2")      # 3.8 step 1: buffer
    assert ack["type"] == "ack"
    full = {s: busy.get(f"/sim/book?symbol={s}") for s in syms}                    # step 2: snapshots
    part = {s: busy.get(f"/api/v1/market/orderbook/level2_100?symbol={s}")["data"] for s in syms}
    buffered += drain(ws, quiet_s=0.2, max_s=1.0)
    busy.control(paused=True, mispricing_rate=0)
    try:
        time.sleep(0.7)                       # let any planted mispricing be taken
        buffered += drain(ws, quiet_s=0.3)
        final = {s: busy.get(f"/sim/book?symbol={s}") for s in syms}
    finally:
        busy.control(paused=False, mispricing_rate=0.5)
        ws.close()
    l2 = [m["data"] for m in buffered if m.get("subject") == "trade.l2update"]
    assert l2
    for s in syms:
        book, seq = as_book(full[s]), full[s]["sequence"]
        pbook, pseq = as_book(part[s]), int(part[s]["sequence"])
        for d in (d for d in l2 if d["symbol"] == s):
            seq = apply_l2(book, seq, d)
            pseq = apply_l2(pbook, pseq, d)
        want = as_book(final[s])
        assert seq == pseq == final[s]["sequence"]
        assert book == want                     # full snapshot + stream = the sim's book
        for side in ("bids", "asks"):           # 100-level snapshot + stream: a consistent subset
            assert all(want[side].get(p) == z for p, z in pbook[side].items())
        assert max(pbook["bids"]) == max(want["bids"]) and min(pbook["asks"]) == min(want["asks"])


# ---- orders and private events -------------------------------------------------------------
def _order_events(ws, coid, timeout=5.0):
    """orderChange data for clientOid up to its done event, the balance events seen, and
    every other message read meanwhile."""
    orders, bals, other = [], [], []
    deadline = time.monotonic() + timeout
    while not orders or orders[-1]["status"] != "done":
        m = recv(ws, max(0.01, deadline - time.monotonic()))
        if m.get("subject") == "orderChange" and m["data"]["clientOid"] == coid:
            assert m["topic"] == "/spotMarket/tradeOrdersV2" and m["channelType"] == "private"
            orders.append(m["data"])
        elif m.get("subject") == "account.balance":
            assert m["id"] == m["data"]["relationEventId"]
            bals.append(m["data"])
        else:
            other.append(m)
    for m in drain(ws, 0.15):
        (bals if m.get("subject") == "account.balance" else other).append(
            m["data"] if m.get("subject") == "account.balance" else m)
    return orders, bals, other


def test_market_buy_by_funds_when_two_levels_then_events_and_balances_exact(quiet, private_ws):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "100", "KCS": "0"})
    assert subscribe(private_ws, "/market/level2:KCS-USDT", "l2")[0]["type"] == "ack"
    seq0 = quiet.get("/sim/book?symbol=KCS-USDT")["sequence"]
    resp = place(quiet, {"clientOid": "buy-funds-1", "side": "buy", "symbol": "KCS-USDT", "type": "market",
                         "funds": "20"})
    assert resp["code"] == "200000" and resp["data"]["clientOid"] == "buy-funds-1"
    oid = resp["data"]["orderId"]
    assert len(oid) == 24 and int(oid, 16) >= 0
    orders, bals, other = _order_events(private_ws, "buy-funds-1")
    # By hand: 1.5 @ 8.6 = 12.9; 7.1 left buys floor(7.1 / 8.7 / 0.0001) * 0.0001 = 0.816 @ 8.7
    # = 7.0992; 0.0008 cannot buy one increment -> canceled. Fee 0.1 % on top of 19.9992.
    assert [(o["type"], o["status"]) for o in orders] == [("received", "new"), ("match", "match"),
                                                          ("match", "match"), ("canceled", "done")]
    rec, m1, m2, done = orders
    assert rec["originFunds"] == "20" and rec["orderType"] == "market" and rec["orderId"] == oid
    assert (m1["matchPrice"], m1["matchSize"], m1["filledSize"], m1["remainFunds"]) == ("8.6", "1.5", "1.5", "7.1")
    assert (m2["matchPrice"], m2["matchSize"], m2["filledSize"], m2["remainFunds"]) == ("8.7", "0.816", "2.316", "0.0008")
    assert m1["feeType"] == "takerFee" and m1["liquidity"] == "taker" and m1["tradeId"] != m2["tradeId"]
    assert (done["filledSize"], done["remainFunds"], done["remainSize"]) == ("2.316", "0", "0")
    assert rec["ts"] > 10 ** 18 and 10 ** 12 < rec["orderTime"] < 10 ** 13    # ts ns, orderTime ms
    hold = bals[0]
    assert (hold["currency"], hold["relationEvent"], hold["availableChange"], hold["holdChange"]) == \
        ("USDT", "trade.hold", "-20.02", "20.02")
    assert isinstance(hold["time"], str) and hold["relationContext"] == {"symbol": "KCS-USDT", "orderId": oid}
    with localcontext() as ctx:
        ctx.prec = 50
        spent = Decimal("12.9") + Decimal("7.0992")
        fee = spent * Decimal("0.001")
        want_usdt = Decimal(100) - spent - fee
    assert fee == Decimal("0.0199992") and want_usdt == Decimal("79.9808008")
    b = balances(quiet)
    assert b["USDT"] == (want_usdt, 0) and b["KCS"] == (Decimal("2.316"), 0)
    last_usdt = [x for x in bals if x["currency"] == "USDT"][-1]
    assert (last_usdt["available"], last_usdt["hold"], last_usdt["total"]) == ("79.9808008", "0", "79.9808008")
    for path in (f"/api/v1/hf/orders/{oid}?symbol=KCS-USDT", "/api/v1/hf/orders/client-order/buy-funds-1?symbol=KCS-USDT"):
        view = call(quiet, "GET", path)[1]["data"]
        assert (view["id"], view["dealSize"], view["dealFunds"], view["fee"]) == (oid, "2.316", "19.9992", "0.0199992")
        assert view["cancelExist"] is True and view["cancelledFunds"] == "0.0008" and view["active"] is False
    book = quiet.get("/sim/book?symbol=KCS-USDT")
    assert book["asks"] == [["8.7", "9.184"]]                     # the taker depleted the book
    [l2] = [m["data"] for m in other if m.get("subject") == "trade.l2update"]
    assert l2["changes"] == {"asks": [["8.6", "0", str(seq0 + 1)], ["8.7", "9.184", str(seq0 + 2)]], "bids": []}
    assert (l2["sequenceStart"], l2["sequenceEnd"]) == (seq0 + 1, seq0 + 2) == (seq0 + 1, book["sequence"])


def test_market_sell_by_size_when_book_deep_enough_then_filled_and_quote_net_of_fee(quiet, private_ws):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "0", "KCS": "3"})
    resp = place(quiet, {"clientOid": "sell-size-1", "side": "sell", "symbol": "KCS-USDT", "type": "market",
                         "size": "2"})
    assert resp["code"] == "200000"
    orders, bals, _ = _order_events(private_ws, "sell-size-1")
    assert [o["type"] for o in orders] == ["received", "match", "match", "filled"]
    assert [(o["matchPrice"], o["matchSize"], o["remainSize"]) for o in orders[1:3]] == \
        [("8.5", "1.2", "0.8"), ("8.4", "0.8", "0")]
    # 1.2 * 8.5 + 0.8 * 8.4 = 16.92 notional; fee 0.01692; received 16.90308.
    b = balances(quiet)
    assert b["USDT"] == (Decimal("16.90308"), 0) and b["KCS"] == (Decimal("1"), 0)
    assert bals[0]["currency"] == "KCS" and bals[0]["holdChange"] == "2"


def test_market_buy_by_size_when_placed_then_hold_is_walked_cost_and_filled(quiet, private_ws):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50", "KCS": "0"})
    place(quiet, {"clientOid": "buy-size-1", "side": "buy", "symbol": "KCS-USDT", "type": "market", "size": "2"})
    orders, bals, _ = _order_events(private_ws, "buy-size-1")
    assert [o["type"] for o in orders] == ["received", "match", "match", "filled"]
    assert orders[0]["originSize"] == "2" and orders[2]["remainSize"] == "0"
    # 1.5 @ 8.6 + 0.5 @ 8.7 = 17.25, fee 0.01725: held and spent 17.26725.
    assert bals[0]["holdChange"] == "17.26725"
    b = balances(quiet)
    assert b["USDT"] == (Decimal("32.73275"), 0) and b["KCS"] == (Decimal("2"), 0)


def test_sync_order_when_placed_then_done_state_in_response(quiet):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"})
    resp = place(quiet, {"clientOid": "sync-1", "side": "buy", "symbol": "KCS-USDT", "type": "market",
                         "funds": "8.6"}, path="/api/v1/hf/orders/sync")
    d = resp["data"]
    assert (d["status"], d["dealSize"], d["dealFunds"], d["originFunds"], d["canceledFunds"]) == \
        ("done", "1", "8.6", "8.6", "0")
    assert isinstance(d["orderTime"], int) and isinstance(d["matchTime"], int)


def test_test_order_when_valid_then_ok_without_state_change(quiet):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"})
    before = balances(quiet)
    resp = place(quiet, {"clientOid": "paper-1", "side": "buy", "symbol": "KCS-USDT", "type": "market",
                         "funds": "10"}, path="/api/v1/hf/orders/test")
    assert resp["code"] == "200000" and resp["data"]["clientOid"] == "paper-1"
    assert balances(quiet) == before
    st, body, _ = call(quiet, "GET", "/api/v1/hf/orders/client-order/paper-1?symbol=KCS-USDT")
    assert (st, body) == (200, {"code": "400100", "msg": "order not exist."})
    assert quiet.get("/sim/book?symbol=KCS-USDT")["asks"][0] == ["8.6", "1.5"]


def test_cancel_when_order_done_then_400100_not_allow(quiet):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"})
    oid = place(quiet, {"clientOid": "cx-1", "side": "buy", "symbol": "KCS-USDT", "type": "market",
                        "funds": "1"})["data"]["orderId"]
    for path in (f"/api/v1/hf/orders/{oid}?symbol=KCS-USDT", "/api/v1/hf/orders/client-order/cx-1?symbol=KCS-USDT"):
        st, body, _ = call(quiet, "DELETE", path)
        assert (st, body) == (200, {"code": "400100", "msg": "order_not_exist_or_not_allow_to_cancel"})


@pytest.mark.parametrize("body,code,msg", [
    ({"size": "0.00001"}, "400100", "Order size increment invalid."),
    ({"size": "0.01"}, "400100", "Order size below the minimum requirement."),
    ({"funds": "1.00001"}, "400100", "Funds increment invalid."),
    ({"funds": "0.05"}, "600100", "Funds below the minimum requirement."),
    ({"size": "0"}, "300000", "The quantity is invalid."),
    ({"size": "1", "funds": "10"}, "400100", None),
    ({}, "400100", None),
    ({"funds": "10", "symbol": "NOPE-USDT"}, "900001", "symbol not exists"),
    ({"funds": "10", "clientOid": "x" * 41}, "400100", None),
    ({"funds": "10", "clientOid": "bad oid!"}, "400100", None),
    ({"funds": "10", "side": "long"}, "400100", None),
    ({"funds": "10", "type": "stop"}, "400100", None),
    ({"funds": "60"}, "200004", "Balance insufficient!"),
    ({"type": "limit", "price": "8.6", "size": "1"}, "400100", None),
])
def test_order_when_invalid_then_business_error_http_200(quiet, body, code, msg):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50", "KCS": "10"})
    full = {"clientOid": None, "side": "buy", "symbol": "KCS-USDT", "type": "market", **body}
    full = {k: v for k, v in full.items() if v is not None}
    # The test endpoint validates parameters but not balances (sim_exchange.place).
    paths = ("/api/v1/hf/orders",) if code == "200004" else ("/api/v1/hf/orders", "/api/v1/hf/orders/test")
    for path in paths:
        resp = place(quiet, full, path=path)
        assert resp["code"] == code and set(resp) == {"code", "msg"}, resp
        if msg:
            assert resp["msg"] == msg
    assert balances(quiet)["USDT"] == (Decimal(50), 0)


def test_test_order_when_balance_short_then_accepted_and_nothing_held(quiet):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"})
    body = {"clientOid": "t-1", "side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "60"}
    assert place(quiet, body, path="/api/v1/hf/orders/test")["code"] == "200000"
    assert balances(quiet)["USDT"] == (Decimal(50), 0)


def test_order_when_client_oid_reused_then_400100_duplicate(quiet):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"})
    body = {"clientOid": "dup-1", "side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "1"}
    assert place(quiet, body)["code"] == "200000"
    assert place(quiet, body) == {"code": "400100", "msg": "clientOid duplicate"}


def test_order_when_symbol_disabled_then_600203(quiet):
    quiet.control(disable_symbol="KCS-USDT")
    try:
        resp = place(quiet, {"side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "1"})
        assert resp == {"code": "600203", "msg": "Symbol KCS-USDT cant be traded"}
        sym = next(s for s in quiet.get("/api/v2/symbols")["data"] if s["symbol"] == "KCS-USDT")
        assert sym["enableTrading"] is False
    finally:
        quiet.control(enable_symbol="KCS-USDT")


def test_ioc_limit_when_price_bounds_walk_then_only_levels_within_price(quiet):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "100"})
    resp = place(quiet, {"clientOid": "ioc-1", "side": "buy", "symbol": "KCS-USDT", "type": "limit",
                         "price": "8.6", "size": "3", "timeInForce": "IOC"}, path="/api/v1/hf/orders/sync")
    assert (resp["data"]["dealSize"], resp["data"]["canceledSize"]) == ("1.5", "1.5")


# ---- faults ---------------------------------------------------------------------------------------
def test_fault_when_drop_frames_count_then_exactly_that_many_gaps(busy):
    syms = [s["symbol"] for s in busy.get("/api/v2/symbols")["data"]]
    before = busy.get("/sim/state")["faults"]["counters"]["frames_dropped"]
    ws = open_ws(busy, cid="drop")
    recv(ws)
    assert subscribe(ws, "/market/level2:" + ",".join(syms), "l2")[0]["type"] == "ack"
    time.sleep(0.3)
    busy.control(drop_frames=3)
    # a gap shows at the dropped symbol's next message: read long enough for it (once, under a
    # loaded full suite, 1 s of silence ended the read before any came)
    msgs = [m for m in drain(ws, quiet_s=2.5, max_s=6.0) if m.get("subject") == "trade.l2update"]
    ws.close()
    assert busy.get("/sim/state")["faults"]["counters"]["frames_dropped"] - before == 3
    last, gaps = {}, 0
    for m in msgs:
        d = m["data"]
        if d["symbol"] in last and d["sequenceStart"] != last[d["symbol"]] + 1:
            gaps += 1
        last[d["symbol"]] = d["sequenceEnd"]
    assert 1 <= gaps <= 3, (gaps, len(msgs))   # a symbol whose drop was its last message shows no gap yet


def test_fault_when_drop_frames_probability_one_then_no_public_frames(busy):
    ws = open_ws(busy, cid="dropall")
    recv(ws)
    busy.control(drop_frames={"probability": 1.0})
    try:
        subscribe(ws, "/market/level2:" + ",".join(s["symbol"] for s in busy.get("/api/v2/symbols")["data"]))
        ws.send(json.dumps({"id": "alive", "type": "ping"}))
        msgs = drain(ws, quiet_s=0.5)
        assert [m["type"] for m in msgs] == ["pong"]             # control frames still flow
    finally:
        busy.control(reset_faults=True)
        ws.close()


def test_fault_when_drop_private_frame_then_that_order_event_missing(quiet, private_ws):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"}, drop_frames={"count": 1, "scope": "private"})
    try:
        place(quiet, {"clientOid": "dropp-1", "side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "5"})
        orders, _, _ = _order_events(private_ws, "dropp-1")
        assert [o["type"] for o in orders] == ["match", "canceled"]      # `received` was dropped
    finally:
        quiet.control(reset_faults=True)


def test_fault_when_delay_frames_then_data_frames_arrive_late(busy):
    ws = open_ws(busy, cid="delay")
    recv(ws)
    busy.control(delay_frames_ms=300)
    try:
        subscribe(ws, "/market/level2:" + ",".join(s["symbol"] for s in busy.get("/api/v2/symbols")["data"]))
        lags = []
        while len(lags) < 5:
            m = recv(ws)
            if m.get("subject") == "trade.l2update":
                lags.append(time.time() * 1000 - m["data"]["time"])
        assert min(lags) >= 250
    finally:
        busy.control(delay_frames_ms=0)
        ws.close()


def test_fault_when_sequence_gap_then_next_message_skips_withheld_sequences(quiet):
    ws = open_ws(quiet, cid="gap")
    recv(ws)
    subscribe(ws, "/market/level2:KCS-USDT")
    quiet.control(set_book=KCS_BOOK)
    drain(ws, 0.2)
    seq0 = quiet.get("/sim/book?symbol=KCS-USDT")["sequence"]
    quiet.control(sequence_gap={"symbol": "KCS-USDT", "count": 1})
    quiet.control(set_book={**KCS_BOOK, "bids": [["8.5", "2"], ["8.4", "5"]]})       # withheld: seq0+1
    quiet.control(set_book={**KCS_BOOK, "bids": [["8.5", "3"], ["8.4", "5"]]})       # sent: seq0+2
    msgs = [m["data"] for m in drain(ws, 0.3) if m.get("subject") == "trade.l2update"]
    ws.close()
    assert [(d["sequenceStart"], d["changes"]["bids"]) for d in msgs] == [(seq0 + 2, [["8.5", "3", str(seq0 + 2)]])]
    assert quiet.get("/sim/book?symbol=KCS-USDT")["sequence"] == seq0 + 2


def test_fault_when_disconnect_then_chosen_connections_closed(busy):
    a, b = open_ws(busy, cid="da"), open_ws(busy, cid="db")
    recv(a), recv(b)
    assert busy.control(disconnect="da")["disconnected"] == 1
    assert is_closed(a)
    b.send(json.dumps({"id": "still", "type": "ping"}))
    assert recv_until(b, lambda m: m["type"] == "pong")[0]["id"] == "still"
    assert busy.control(disconnect={"which": "all", "abrupt": True})["disconnected"] >= 1
    assert is_closed(b)


@pytest.mark.parametrize("status", [500, 503])
def test_fault_when_rest_5xx_then_next_n_requests_fail_with_500000(quiet, status):
    quiet.control(rest_5xx={"count": 2, "status": status})
    for _ in range(2):
        st, body, _ = call(quiet, "GET", "/api/v1/timestamp", signed=False)
        assert st == status and body["code"] == "500000"
    assert call(quiet, "GET", "/api/v1/timestamp", signed=False)[0] == 200


def test_fault_when_rest_429_then_next_request_429000(quiet):
    quiet.control(rest_429=1)
    assert call(quiet, "GET", "/api/v1/accounts")[:2] == (429, {"code": "429000", "msg": "Too Many Requests"})
    assert call(quiet, "GET", "/api/v1/accounts")[0] == 200


def test_fault_when_reject_orders_then_next_order_gets_given_code(quiet):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"},
                  reject_orders={"count": 1, "code": "400100", "msg": "Order creation for this pair suspended"})
    body = {"side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "1"}
    assert place(quiet, body) == {"code": "400100", "msg": "Order creation for this pair suspended"}
    assert place(quiet, body)["code"] == "200000"


def test_fault_when_partial_fill_then_half_filled_canceled_and_hold_released(quiet, private_ws):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "100", "KCS": "0"},
                  partial_fill={"count": 1, "fraction": "0.5"})
    place(quiet, {"clientOid": "part-1", "side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "20"})
    orders, _, _ = _order_events(private_ws, "part-1")
    # 2.316 would fill; half = 1.158 from the first level: 9.9588 + fee 0.0099588.
    assert [o["type"] for o in orders] == ["received", "match", "canceled"]
    assert orders[1]["matchSize"] == "1.158"
    b = balances(quiet)
    assert b["USDT"] == (Decimal("90.0312412"), 0) and b["KCS"] == (Decimal("1.158"), 0)


def test_fault_when_late_fills_then_match_events_follow_response_by_delay(quiet, private_ws):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"}, late_fills_ms=400)
    try:
        place(quiet, {"clientOid": "late-1", "side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "5"})
        t_resp = time.monotonic()
        first, _ = recv_until(private_ws, lambda m: m.get("subject") == "orderChange")
        assert first["data"]["type"] == "received"
        match, _ = recv_until(private_ws, lambda m: m.get("subject") == "orderChange")
        assert match["data"]["type"] == "match" and time.monotonic() - t_resp >= 0.3
        drain(private_ws, 0.2)
    finally:
        quiet.control(late_fills_ms=0)


def test_fault_when_events_before_response_then_frames_already_readable_on_response(quiet, private_ws):
    quiet.control(set_book=KCS_BOOK, set_balances={"USDT": "50"}, events_before_response=True)
    drain(private_ws, 0.1)
    place(quiet, {"clientOid": "ebr-1", "side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "5"})
    assert select.select([private_ws.sock], [], [], 0)[0]          # written before the HTTP answer
    orders = _order_events(private_ws, "ebr-1", timeout=0.5)[0]
    assert [o["type"] for o in orders] == ["received", "match", "canceled"]     # 0.00082 USDT left
    quiet.control(events_before_response=False)
    try:
        place(quiet, {"clientOid": "ebr-2", "side": "buy", "symbol": "KCS-USDT", "type": "market", "funds": "5"})
        assert _order_events(private_ws, "ebr-2")[0][-1]["status"] == "done"
    finally:
        quiet.control(events_before_response=True)


# ---- market model ---------------------------------------------------------------------------------
def _cycle_bps(s, rec, fee=Decimal("0.001")):
    """Top-of-book cycle return after taker fees, exact, from /sim/book."""
    amt = Decimal(1)
    for side, sym in zip(rec["sides"], rec["symbols"]):
        b = s.get(f"/sim/book?symbol={sym}")
        amt = amt / (Decimal(b["asks"][0][0]) * (1 + fee)) if side == "buy" else amt * Decimal(b["bids"][0][0]) * (1 - fee)
    return float((amt - 1) * 10000)


def test_plant_when_requested_then_triangle_profitable_until_taken(quiet):
    rec = quiet.control(plant={"bps": 40, "primary": "USDT"})["mispricing"]
    assert rec["currencies"][0] == "USDT" and len(set(rec["symbols"])) == 3 and rec["size"] > 0
    assert rec["bps"] >= 39 and rec["taken_t_ms"] is None
    assert abs(_cycle_bps(quiet, rec) - rec["bps"]) < 0.5
    deadline = time.monotonic() + 3
    while quiet.get("/sim/mispricings")[-1]["taken_t_ms"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = quiet.get("/sim/mispricings")[-1]
    assert done["id"] == rec["id"] and done["taken_t_ms"] - done["t_ms"] >= 250
    assert _cycle_bps(quiet, rec) < 0


def test_mispricings_when_market_runs_then_planted_and_taken(busy):
    busy.control(mispricing_rate=10)
    try:
        time.sleep(1.5)
        recs = busy.get("/sim/mispricings")
    finally:
        busy.control(mispricing_rate=0.5)
    assert len(recs) >= 2 and any(r["taken_t_ms"] for r in recs)
    assert all(r["currencies"][0] in ("USDT", "USDC", "BTC", "ETH", "KCS") for r in recs)


def test_spin_selector_when_data_or_timeout_then_returns_like_epoll():
    import selectors
    import socket as socketmod
    import time as timemod
    from sim.server import SpinSelector
    a, b = socketmod.socketpair()
    sel = SpinSelector()
    try:
        sel.register(a, selectors.EVENT_READ)
        t0 = timemod.monotonic()
        assert sel.select(0.05) == [] and timemod.monotonic() - t0 >= 0.05
        assert sel.select(0) == []
        b.send(b"x")
        ready = sel.select(5.0)
        assert [key.fileobj for key, _ in ready] == [a]
    finally:
        sel.close()
        a.close()
        b.close()


# ---- inject_frame: raw frames for robustness tests ----------------------------------------

def open_raw_ws(s, private, cid):
    """A connection that reads raw frames (opcode, bytes) and accepts invalid UTF-8."""
    b = bullet(s, private)
    ws = websocket.create_connection(f"{b['instanceServers'][0]['endpoint']}?token={b['token']}"
                                     f"&connectId={cid}", timeout=5, skip_utf8_validation=True)
    assert json.loads(ws.recv())["type"] == "welcome"
    return ws


def recv_frame(ws, timeout=5.0):
    ws.settimeout(timeout)
    return ws.recv_data()


def test_inject_frame_when_text_or_b64_then_exact_bytes_to_every_connection_of_the_scope(quiet):
    pub1, pub2 = open_raw_ws(quiet, False, "inj-p1"), open_raw_ws(quiet, False, "inj-p2")
    priv = open_raw_ws(quiet, True, "inj-v1")
    try:
        n_pub = sum(not c["private"] for c in quiet.get("/sim/state")["ws"]["connections"])
        text = '{"type":"pong","id":123456789012345678901234567890}'
        assert quiet.control(inject_frame={"scope": "public", "data": text})["injected"] == n_pub >= 2
        for ws in (pub1, pub2):
            assert recv_frame(ws) == (websocket.ABNF.OPCODE_TEXT, text.encode())
        raw = b"\xff\xfe\x00 not utf-8 " + bytes(range(256))
        out = quiet.control(inject_frame={"scope": "private", "b64": base64.b64encode(raw).decode()})
        assert out["injected"] == 1
        assert recv_frame(priv) == (websocket.ABNF.OPCODE_TEXT, raw)      # a text frame, as given
        deep = "[" * 1025 + "]" * 1025
        quiet.control(inject_frame={"scope": "private", "data": deep, "opcode": 2})
        assert recv_frame(priv) == (websocket.ABNF.OPCODE_BINARY, deep.encode())
        # the public connections got nothing of the private injections
        with pytest.raises(websocket.WebSocketTimeoutException):
            recv_frame(pub1, 0.5)
        assert quiet.get("/sim/state")["ws"]["counters"]["frames_injected"] >= n_pub + 2
    finally:
        for ws in (pub1, pub2, priv):
            ws.close()


@pytest.mark.parametrize("bad", [{"scope": "all", "data": "x"}, {"scope": "public"},
                                 {"scope": "public", "data": "x", "b64": "eA=="},
                                 {"scope": "public", "b64": "not base64!"},
                                 {"scope": "public", "data": 5},
                                 {"scope": "public", "data": "x", "opcode": 9}, "public"])
def test_inject_frame_when_malformed_request_then_400(quiet, bad):
    out = quiet.post("/sim/control", {"inject_frame": bad})
    assert out["ok"] is False and "rror" in out["error"]


def test_plant_log_when_set_then_one_monotonic_stamp_per_planted_mispricing(sim_factory, tmp_path):
    # profiles/bench_latency.py's plant -> receipt reads these stamps against the engine's
    # own time.monotonic_ns (the same clock on one host)
    log = tmp_path / "plants.txt"
    s = sim_factory(update_rate=0, mispricing_rate=0, plant_log=log)
    t0 = time.monotonic_ns()
    planted = sum(s.control(plant={})["mispricing"] is not None for _ in range(3))
    t1 = time.monotonic_ns()
    stamps = [int(x) for x in log.read_text().split()]
    assert planted >= 1 and len(stamps) == planted
    assert all(t0 <= x <= t1 for x in stamps) and stamps == sorted(stamps)
