"""Tests for kucoin.py.

Part 1 (no simulator): a tiny HTTP/1.1 stub server on 127.0.0.1 inside this file answers
with chosen envelopes, statuses, headers, delays and dropped connections; it records every
request so the tests check signing, bodies, retries and keep-alive. Payloads of the
decimal tests are KuCoin's documented examples from tests/data/docs-examples-2024-2025.json.

Part 2 (simulator): every client call against the simulator through the `sim` fixture of
tests/conftest.py, down to balances after a market buy and sell.

Run: python -m pytest -q tests/test_kucoin.py
"""
import json
import socket
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import urllib3

import kucoin
from kucoin import (AuthError, KucoinClient, KucoinError, NotFound, OrderRejected,
                    RateLimited, ServerError, TransportError)
from signer import Signer

DATA = Path(__file__).parent / "data"
DOCS = json.loads((DATA / "docs-examples-2024-2025.json").read_text())["rest"]

SECRET = "stub-secret-5c39-4aaa"
PASSPHRASE = "stub-passphrase-9b20"
SENTINELS = (SECRET, PASSPHRASE)
ORDER_ID = "670fd33bf9406e0007ab3945"


def envelope(data):
    return {"code": "200000", "data": data}


class Stub:
    """Routes (METHOD, path) -> list of actions consumed in order (the last one repeats).

    An action is (status, body, headers) where body is dict/bytes, or "drop" (close the
    socket without answering), or ("sleep", seconds, action), or ("close_after", action)
    (answer, then close the kept-alive socket as an idle timeout would), or a function of
    the recorded request returning an action.
    """

    def __init__(self):
        self.routes = {}
        self.requests = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path = urlsplit(self.path).path
                req = {"method": self.command, "raw_path": self.path,
                       "headers": dict(self.headers), "body": body,
                       "client_port": self.client_address[1]}
                with stub.lock:
                    stub.requests.append(req)
                    actions = stub.routes.get((self.command, path))
                    if actions is None:
                        action = (404, {"code": "404000", "msg": "Url Not Found"}, {})
                    else:
                        action = actions.pop(0) if len(actions) > 1 else actions[0]
                if callable(action):
                    action = action(req)
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    action = action[2]
                close_after = isinstance(action, tuple) and action[0] == "close_after"
                if close_after:
                    action = action[1]
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, payload, headers = action
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                    if close_after:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def route(self, method, path, *actions):
        self.routes[(method, path)] = list(actions)

    def ok(self, method, path, data, headers=None):
        self.route(method, path, (200, envelope(data), headers or {}))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


@pytest.fixture
def client(stub):
    c = KucoinClient(stub.base_url, Signer("stub-key", SECRET, PASSPHRASE), timeout_s=2.0)
    yield c
    c.close()


def assert_no_secrets(err):
    texts = [str(err), repr(err), str(err.__cause__), repr(err.__cause__), str(vars(err))]
    signer = Signer("stub-key", SECRET, PASSPHRASE)
    for text in texts:
        for sentinel in SENTINELS + (signer.passphrase_header,):
            assert sentinel not in text


def verify_signature(req):
    """What KuCoin does (docs/kucoin.md 1.2): HMAC over ts + METHOD + un-encoded path + body."""
    h = req["headers"]
    prehash = (h["KC-API-TIMESTAMP"] + req["method"] + unquote(req["raw_path"])).encode() \
        + req["body"]
    return Signer("stub-key", SECRET, PASSPHRASE).sign(prehash) == h["KC-API-SIGN"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- time and clock ------------------------------------------------------------------

def test_server_time_when_envelope_then_int_ms(stub, client):
    stub.ok("GET", "/api/v1/timestamp", 1729100692873)
    assert client.server_time_ms() == 1729100692873


def test_sync_clock_when_server_ahead_100s_then_offset_applied_to_signed_timestamp(stub,
                                                                                    client):
    # The stub answers with its own clock + 100 s for every request.
    stub.route("GET", "/api/v1/timestamp",
               lambda req: (200, envelope(int(time.time() * 1000) + 100_000), {}))
    offset = client.sync_clock()
    assert abs(offset - 100_000) < 1_000
    stub.ok("GET", "/api/v1/accounts", [])
    before = time.time() * 1000
    client.accounts()
    ts = int(stub.requests[-1]["headers"]["KC-API-TIMESTAMP"])
    assert abs(ts - (before + 100_000)) < 1_000


# ---- signing, encoding, bodies -------------------------------------------------------

def test_trade_fees_when_23_symbols_then_3_signed_batches_of_at_most_10_merged(stub, client):
    syms = [f"C{i}-USDT" for i in range(23)]

    def echo(req):  # one row per requested symbol, like KuCoin
        asked = unquote(req["raw_path"]).split("symbols=")[1].split(",")
        return (200, envelope([{"symbol": s, "takerFeeRate": "0.001", "makerFeeRate": "0.002"}
                               for s in asked]), {})

    stub.route("GET", "/api/v1/trade-fees", echo)
    fees = client.trade_fees(syms)
    assert sorted(fees) == sorted(syms)
    assert fees["C7-USDT"]["takerFeeRate"] == Decimal("0.001")
    reqs = [r for r in stub.requests if r["raw_path"].startswith("/api/v1/trade-fees")]
    assert [len(unquote(r["raw_path"]).split("=")[1].split(",")) for r in reqs] == [10, 10, 3]
    # docs/kucoin.md 1.2: comma sent raw, so what is signed is what is sent.
    assert "," in reqs[0]["raw_path"] and "%2C" not in reqs[0]["raw_path"]
    assert all(verify_signature(r) for r in reqs)


def test_trade_fees_when_empty_list_then_no_request(stub, client):
    assert client.trade_fees([]) == {}
    assert stub.requests == []


def test_place_order_when_funds_str_then_compact_body_signed_over_sent_bytes(stub, client):
    stub.ok("POST", "/api/v1/hf/orders", {"orderId": ORDER_ID, "clientOid": "a1b2c3"})
    out = client.place_order("BTC-USDT", "buy", "a1b2c3", funds="10")
    assert out == {"orderId": ORDER_ID, "clientOid": "a1b2c3"}
    req = stub.requests[-1]
    # docs/kucoin.md 1.5 vector body, byte for byte.
    assert req["body"] == (b'{"clientOid":"a1b2c3","side":"buy","symbol":"BTC-USDT",'
                           b'"type":"market","funds":"10"}')
    assert verify_signature(req)
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["KC-API-KEY-VERSION"] == "3"


def test_place_order_when_decimal_size_with_exponent_then_plain_string_sent(stub, client):
    stub.ok("POST", "/api/v1/hf/orders", {"orderId": ORDER_ID, "clientOid": "x"})
    client.place_order("BTC-USDT", "sell", "x", size=Decimal("1E-8"))
    assert b'"size":"0.00000001"' in stub.requests[-1]["body"]


@pytest.mark.parametrize("kw", [{"size": 0.5}, {"funds": 10.0}, {"funds": 10}])
def test_place_order_when_float_or_int_amount_then_type_error_and_nothing_sent(stub, client,
                                                                              kw):
    with pytest.raises(TypeError):
        client.place_order("BTC-USDT", "buy", "a1", **kw)
    assert stub.requests == []


@pytest.mark.parametrize("kw", [
    {"size": "1", "funds": "1"}, {}, {"funds": "1e-8"}, {"funds": "-1"}, {"funds": " 1"},
    {"funds": "1", "clientOid": "x" * 41}, {"funds": "1", "clientOid": "bad oid"},
    {"funds": "1", "side": "BUY"}, {"funds": "1", "type": "stop"},
    {"size": "1", "type": "limit"},
])
def test_place_order_when_invalid_arguments_then_value_error(stub, client, kw):
    args = {"symbol": "BTC-USDT", "side": "buy", "clientOid": "ok-1"}
    args.update(kw)
    with pytest.raises(ValueError):
        client.place_order(**args)
    assert stub.requests == []


def test_place_order_when_limit_then_price_and_size_in_body(stub, client):
    stub.ok("POST", "/api/v1/hf/orders", {"orderId": ORDER_ID, "clientOid": "l1"})
    client.place_order("BTC-USDT", "buy", "l1", size="0.00001", price="50000", type="limit")
    assert stub.requests[-1]["body"] == (b'{"clientOid":"l1","side":"buy","symbol":"BTC-USDT",'
                                         b'"type":"limit","price":"50000","size":"0.00001"}')


@pytest.mark.parametrize("method,path", [
    ("test_order", "/api/v1/hf/orders/test"), ("place_order_sync", "/api/v1/hf/orders/sync")])
def test_order_variants_when_called_then_post_to_their_endpoint(stub, client, method, path):
    stub.route("POST", path, (200, DOCS["POST /api/v1/hf/orders/sync"], {}))
    out = getattr(client, method)("BTC-USDT", "buy", "v1", size="0.00001")
    assert stub.requests[-1]["raw_path"] == path and stub.requests[-1]["method"] == "POST"
    assert verify_signature(stub.requests[-1])
    assert out["originSize"] == Decimal("0.00001") and out["canceledSize"] == Decimal("0")


def test_cancel_and_get_when_called_then_signed_paths_with_symbol_query(stub, client):
    stub.ok("DELETE", f"/api/v1/hf/orders/{ORDER_ID}", {"orderId": ORDER_ID})
    stub.ok("DELETE", "/api/v1/hf/orders/client-order/c-1", {"clientOid": "c-1"})
    stub.route("GET", f"/api/v1/hf/orders/{ORDER_ID}",
               (200, DOCS["GET /api/v1/hf/orders/{orderId}"], {}))
    stub.route("GET", "/api/v1/hf/orders/client-order/c-1",
               (200, DOCS["GET /api/v1/hf/orders/{orderId}"], {}))
    assert client.cancel_order(ORDER_ID, "BTC-USDT") == {"orderId": ORDER_ID}
    assert client.cancel_order_by_client_oid("c-1", "BTC-USDT") == {"clientOid": "c-1"}
    client.get_order(ORDER_ID, "BTC-USDT")
    client.get_order_by_client_oid("c-1", "BTC-USDT")
    paths = [(r["method"], r["raw_path"]) for r in stub.requests]
    assert paths == [
        ("DELETE", f"/api/v1/hf/orders/{ORDER_ID}?symbol=BTC-USDT"),
        ("DELETE", "/api/v1/hf/orders/client-order/c-1?symbol=BTC-USDT"),
        ("GET", f"/api/v1/hf/orders/{ORDER_ID}?symbol=BTC-USDT"),
        ("GET", "/api/v1/hf/orders/client-order/c-1?symbol=BTC-USDT")]
    assert all(verify_signature(r) and r["body"] == b"" for r in stub.requests)


def test_accounts_when_filters_then_query_in_given_order(stub, client):
    stub.ok("GET", "/api/v1/accounts", [])
    client.accounts(currency="USDT", type="trade")
    client.accounts()
    assert stub.requests[0]["raw_path"] == "/api/v1/accounts?currency=USDT&type=trade"
    assert stub.requests[1]["raw_path"] == "/api/v1/accounts"
    assert all(verify_signature(r) for r in stub.requests)


def test_bullets_when_called_then_public_unsigned_private_signed_empty_body(stub, client):
    stub.route("POST", "/api/v1/bullet-public", (200, DOCS["POST /api/v1/bullet-public"], {}))
    stub.route("POST", "/api/v1/bullet-private", (200, DOCS["POST /api/v1/bullet-private"], {}))
    pub = client.bullet_public()
    prv = client.bullet_private()
    assert pub["instanceServers"][0]["pingInterval"] == 18000
    assert prv["token"].endswith("==")
    assert "KC-API-SIGN" not in stub.requests[0]["headers"]
    assert stub.requests[1]["body"] == b"" and verify_signature(stub.requests[1])


def test_private_call_when_no_signer_then_runtime_error_and_nothing_sent(stub):
    c = KucoinClient(stub.base_url)
    with pytest.raises(RuntimeError):
        c.accounts()
    assert stub.requests == []


# ---- decimals and payloads -----------------------------------------------------------

def test_symbols_when_docs_example_then_decimals_exact_and_nulls_kept(stub, client):
    stub.route("GET", "/api/v2/symbols", (200, DOCS["GET /api/v2/symbols"], {}))
    (row,) = client.symbols()
    assert row["baseIncrement"] == Decimal("0.00000001")
    assert str(row["quoteIncrement"]) == "0.000001"
    assert row["takerFeeCoefficient"] == Decimal("1.00")
    assert row["callauctionPriceFloor"] is None
    assert row["feeCategory"] == 1 and row["enableTrading"] is True


def test_order_when_docs_example_then_all_amounts_decimal(stub, client):
    stub.route("GET", f"/api/v1/hf/orders/{ORDER_ID}",
               (200, DOCS["GET /api/v1/hf/orders/{orderId}"], {}))
    o = client.get_order(ORDER_ID, "BTC-USDT")
    assert o["dealFunds"] == Decimal("0.677176") and o["fee"] == Decimal("0.000677176")
    assert o["funds"] - o["dealFunds"] == o["remainFunds"]
    assert o["createdAt"] == 1729577515444 and o["stp"] is None


def test_fees_and_accounts_when_docs_examples_then_decimal(stub, client):
    stub.route("GET", "/api/v1/base-fee", (200, DOCS["GET /api/v1/base-fee"], {}))
    stub.ok("GET", "/api/v1/accounts", [
        {"id": "548674591753", "currency": "USDT", "type": "trade",
         "balance": "26.66759503", "available": "26.66759503", "holds": "0"}])
    assert client.base_fee() == {"takerFeeRate": Decimal("0.001"),
                                 "makerFeeRate": Decimal("0.001")}
    (acc,) = client.accounts()
    assert acc["balance"] == Decimal("26.66759503") and acc["holds"] == Decimal(0)


def test_decimal_field_when_json_number_then_decimal_of_printed_text(stub, client):
    stub.route("GET", "/api/v1/accounts",
               (200, b'{"code":"200000","data":[{"balance":0.1,"available":3,"holds":"0"}]}',
                {}))
    (acc,) = client.accounts()
    assert acc["balance"] == Decimal("0.1") and acc["available"] == Decimal(3)


def test_decimal_field_when_garbage_then_kucoin_error(stub, client):
    stub.ok("GET", "/api/v1/accounts", [{"balance": "1,5"}])
    with pytest.raises(KucoinError) as ei:
        client.accounts()
    assert type(ei.value) is KucoinError and "balance" in ei.value.msg


@pytest.mark.parametrize("depth", [20, 100])
def test_level2_snapshot_when_depth_then_endpoint_and_raw_strings_with_int_sequence(
        stub, client, depth):
    stub.route("GET", f"/api/v1/market/orderbook/level2_{depth}",
               (200, DOCS["GET /api/v1/market/orderbook/level2_{size}"], {}))
    snap = client.level2_snapshot("BTC-USDT", depth)
    assert snap["sequence"] == 14610502970 and snap["time"] == 1729176273859
    assert snap["bids"][0] == ["66976.4", "0.69109872"]
    assert snap["asks"][-1] == ["66976.8", "0.0005"]
    assert stub.requests[-1]["raw_path"] == \
        f"/api/v1/market/orderbook/level2_{depth}?symbol=BTC-USDT"
    assert "KC-API-SIGN" not in stub.requests[-1]["headers"]


def test_level2_snapshot_when_depth_50_then_value_error(client):
    with pytest.raises(ValueError):
        client.level2_snapshot("BTC-USDT", 50)


# ---- error envelopes -----------------------------------------------------------------

@pytest.mark.parametrize("status,code,msg", [
    (401, "400005", "Invalid KC-API-SIGN"), (401, "400004", "Invalid KC-API-PASSPHRASE"),
    (400, "400002", "Invalid KC-API-TIMESTAMP"), (401, "400003", "KC-API-KEY not exists"),
    (400, "400009", "Invalid KC-API-KEY-VERSION")])
def test_request_when_auth_envelope_then_auth_error_without_secrets(stub, client, status,
                                                                    code, msg):
    stub.route("GET", "/api/v1/accounts", (status, {"code": code, "msg": msg}, {}))
    with pytest.raises(AuthError) as ei:
        client.accounts()
    e = ei.value
    assert (e.code, e.msg, e.http_status, e.path) == (code, msg, status, "/api/v1/accounts")
    assert_no_secrets(e)


def test_request_when_429_with_headers_then_rate_limited_and_rate_limit_recorded(stub,
                                                                                 client):
    hdr = {"gw-ratelimit-limit": "4000", "gw-ratelimit-remaining": "0",
           "gw-ratelimit-reset": "1234"}
    stub.route("POST", "/api/v1/hf/orders",
               (429, {"code": "429000", "msg": "Too Many Requests"}, hdr))
    with pytest.raises(RateLimited) as ei:
        client.place_order("BTC-USDT", "buy", "r1", funds="1")
    assert ei.value.code == "429000" and ei.value.http_status == 429
    assert ei.value.reset_ms == 1234
    assert client.rate_limit == {"limit": 4000, "remaining": 0, "reset_ms": 1234,
                                 "path": "/api/v1/hf/orders"}
    assert len(stub.requests) == 1  # an order POST is never retried


def test_request_when_success_with_ratelimit_headers_then_recorded_per_thread(stub, client):
    stub.ok("GET", "/api/v1/timestamp", 1,
            {"gw-ratelimit-limit": "2000", "gw-ratelimit-remaining": "1997",
             "gw-ratelimit-reset": "29000"})
    client.server_time_ms()
    assert client.rate_limit["remaining"] == 1997
    seen = {}

    def other():
        seen["before"] = dict(client.rate_limit)
        client.server_time_ms()
        seen["after"] = dict(client.rate_limit)
        client.close()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen["before"] == {} and seen["after"]["limit"] == 2000


@pytest.mark.parametrize("status,payload,code", [
    (500, {"code": "500000", "msg": "Internal Server Error"}, "500000"),
    (503, b"<html>Service Unavailable</html>", None),
    (502, b"", None),
    (200, {"code": "500000", "msg": "Internal Server Error"}, "500000")])
def test_request_when_5xx_or_500000_then_server_error(stub, client, status, payload, code):
    stub.route("GET", "/api/v2/symbols", (status, payload, {}))
    with pytest.raises(ServerError) as ei:
        client.symbols()
    assert ei.value.code == code and ei.value.http_status == status


@pytest.mark.parametrize("code,msg", [
    ("400100", "Order size increment invalid."), ("200004", "Balance insufficient!"),
    ("600100", "Funds below the minimum requirement."), ("300000", "The quantity is invalid."),
    ("900001", "symbol not exists")])
def test_place_order_when_business_code_http_200_then_order_rejected(stub, client, code, msg):
    stub.route("POST", "/api/v1/hf/orders", (200, {"code": code, "msg": msg}, {}))
    with pytest.raises(OrderRejected) as ei:
        client.place_order("BTC-USDT", "buy", "o1", funds="1")
    assert (ei.value.code, ei.value.msg, ei.value.http_status) == (code, msg, 200)
    assert_no_secrets(ei.value)


@pytest.mark.parametrize("method,status,payload", [
    ("get_order", 404, {"code": "404000", "msg": "Url Not Found"}),
    ("get_order", 200, {"code": "400100", "msg": "order not exist."}),
    ("get_order", 404, b"Not Found"),
    ("cancel_order", 200, {"code": "400100", "msg": "order_not_exist_or_not_allow_to_cancel"}),
    ("cancel_order", 200, {"msg": "Order not exist or not allow to be cancelled",
                           "code": "400100"})])
def test_lookup_when_order_unknown_then_not_found(stub, client, method, status, payload):
    http = "GET" if method == "get_order" else "DELETE"
    stub.route(http, f"/api/v1/hf/orders/{ORDER_ID}", (status, payload, {}))
    with pytest.raises(NotFound) as ei:
        getattr(client, method)(ORDER_ID, "BTC-USDT")
    assert ei.value.http_status == status


def test_request_when_business_code_on_non_order_endpoint_then_plain_kucoin_error(stub,
                                                                                  client):
    stub.route("GET", "/api/v1/accounts", (200, {"code": "400100", "msg": "Parameter Error"},
                                           {}))
    with pytest.raises(KucoinError) as ei:
        client.accounts()
    assert type(ei.value) is KucoinError and ei.value.code == "400100"


def test_kucoin_error_when_pickled_then_fields_survive():
    import pickle
    e = pickle.loads(pickle.dumps(OrderRejected("400100", "m", 200, "/p")))
    assert type(e) is OrderRejected and (e.code, e.msg, e.http_status, e.path) == \
        ("400100", "m", 200, "/p")


# ---- transport -----------------------------------------------------------------------

def test_request_when_read_timeout_then_transport_error_wrapping_urllib3(stub):
    stub.route("GET", "/api/v1/timestamp", ("sleep", 1.0, (200, envelope(1), {})))
    c = KucoinClient(stub.base_url, timeout_s=0.2)
    with pytest.raises(TransportError) as ei:
        c.server_time_ms()
    assert isinstance(ei.value.__cause__, urllib3.exceptions.ReadTimeoutError)
    assert ei.value.http_status is None and ei.value.code is None
    assert len(stub.requests) == 1  # a timeout is not a dropped connection: no retry


def test_request_when_connection_refused_then_transport_error():
    c = KucoinClient(f"http://127.0.0.1:{free_port()}", timeout_s=1.0)
    with pytest.raises(TransportError) as ei:
        c.server_time_ms()
    assert "connect" in ei.value.msg


def test_get_when_connection_dropped_then_retried_once_and_succeeds(stub, client):
    stub.route("GET", "/api/v1/timestamp", "drop", (200, envelope(7), {}))
    assert client.server_time_ms() == 7
    assert len(stub.requests) == 2


def test_get_when_dropped_twice_then_transport_error_after_two_attempts(stub, client):
    stub.route("GET", "/api/v1/timestamp", "drop")
    with pytest.raises(TransportError):
        client.server_time_ms()
    assert len(stub.requests) == 2


@pytest.mark.parametrize("method", ["place_order", "test_order", "place_order_sync"])
def test_order_post_when_connection_dropped_then_transport_error_without_retry(
        stub, client, method):
    path = {"place_order": "/api/v1/hf/orders", "test_order": "/api/v1/hf/orders/test",
            "place_order_sync": "/api/v1/hf/orders/sync"}[method]
    stub.route("POST", path, "drop", (200, envelope({"orderId": ORDER_ID}), {}))
    with pytest.raises(TransportError) as ei:
        getattr(client, method)("BTC-USDT", "buy", "d1", funds="1")
    assert len(stub.requests) == 1
    assert_no_secrets(ei.value)


def test_order_post_when_server_closed_idle_connection_then_new_connection_one_request(
        stub, client):
    # The server answers the GET and then closes the kept-alive socket (idle timeout).
    # urllib3 notices the dead socket before writing, so the order goes out exactly once.
    stub.route("GET", "/api/v1/timestamp", ("close_after", (200, envelope(1), {})))
    stub.ok("POST", "/api/v1/hf/orders", {"orderId": ORDER_ID, "clientOid": "i1"})
    client.server_time_ms()
    time.sleep(0.05)
    assert client.place_order("BTC-USDT", "buy", "i1", funds="1")["orderId"] == ORDER_ID
    posts = [r for r in stub.requests if r["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["client_port"] != stub.requests[0]["client_port"]


def test_cancel_when_connection_dropped_then_not_retried(stub, client):
    stub.route("DELETE", f"/api/v1/hf/orders/{ORDER_ID}", "drop",
               (200, envelope({"orderId": ORDER_ID}), {}))
    with pytest.raises(TransportError):
        client.cancel_order(ORDER_ID, "BTC-USDT")
    assert len(stub.requests) == 1


def test_requests_when_sequential_then_one_kept_alive_connection(stub, client):
    stub.ok("GET", "/api/v1/timestamp", 1)
    stub.ok("POST", "/api/v1/hf/orders", {"orderId": ORDER_ID, "clientOid": "k"})
    for _ in range(3):
        client.server_time_ms()
    client.place_order("BTC-USDT", "buy", "k", funds="1")
    assert len({r["client_port"] for r in stub.requests}) == 1


def test_requests_when_two_threads_then_separate_pools_and_connections(stub, client):
    stub.ok("GET", "/api/v1/timestamp", 1)
    pools = []

    def work():
        client.server_time_ms()
        pools.append(client._state().pool)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pools[0] is not pools[1]
    assert len({r["client_port"] for r in stub.requests}) == 2


def test_client_when_bad_base_url_then_value_error():
    for bad in ("ftp://x", "127.0.0.1:80", "http://h/api"):
        with pytest.raises(ValueError):
            KucoinClient(bad)


def test_client_when_https_base_url_then_verified_https_pool_on_443_without_connecting():
    c = KucoinClient("https://api.kucoin.com")
    pool = c._state().pool
    assert isinstance(pool, urllib3.HTTPSConnectionPool)
    assert (pool.host, pool.port, pool.num_connections) == ("api.kucoin.com", 443, 0)
    assert pool.cert_reqs in (None, "CERT_REQUIRED")  # urllib3 2 default: verify
    c.close()


def test_client_repr_when_signed_then_no_secrets(client):
    text = repr(client)
    assert all(s not in text for s in SENTINELS)


def test_build_query_when_reserved_chars_then_sent_encoded_signed_raw():
    sent, signed = kucoin.build_query([("a", "x y"), ("b", None), ("s", "A-B,C-D")])
    assert sent == "?a=x%20y&s=A-B,C-D" and signed == "?a=x y&s=A-B,C-D"


# ======================================================================================
# Part 2: against the simulator (fixtures `sim`, `sim_fn`, `sim_factory` of conftest.py)
# ======================================================================================

SYM = "BTC-USDT"  # in the simulator's default 60-symbol market


def sim_client(s, **kw):
    signer = Signer(s.api_key, s.api_secret, s.api_passphrase)
    return KucoinClient(s.base_url, signer, **kw)


@pytest.fixture(scope="module")
def simc(sim):
    c = sim_client(sim)
    c.sync_clock()
    yield c
    c.close()


def balances(client):
    """{currency: (balance, available, holds)} of the trade accounts, via GET /api/v1/accounts."""
    return {a["currency"]: (a["balance"], a["available"], a["holds"])
            for a in client.accounts(type="trade")}


def test_sim_server_time_when_asked_then_close_to_local_clock(simc):
    assert abs(simc.server_time_ms() - time.time() * 1000) < 5_000


def test_sim_sync_clock_when_measured_then_small_offset_and_rtt(sim):
    c = sim_client(sim)
    offset = c.sync_clock(samples=3)
    assert offset == c.clock_offset_ms and abs(offset) < 1_000
    assert 0 < c.clock_rtt_ms < 5_000


def test_sim_signed_call_when_offset_wrong_by_60s_then_400002_until_sync_clock(sim):
    c = sim_client(sim)
    c.clock_offset_ms = -60_000  # docs/kucoin.md 1.4: more than 5 s of skew is refused
    with pytest.raises(AuthError) as ei:
        c.accounts()
    assert (ei.value.code, ei.value.http_status) == ("400002", 400)
    c.sync_clock()
    assert c.accounts()


def test_sim_requests_when_many_then_one_kept_alive_connection_per_thread(sim):
    c = sim_client(sim)
    for _ in range(5):
        c.server_time_ms()
        c.accounts()
    assert c._state().pool.num_connections == 1
    other = []
    t = threading.Thread(target=lambda: other.append((c.server_time_ms(), c._state().pool)))
    t.start()
    t.join()
    assert other[0][1] is not c._state().pool and other[0][1].num_connections == 1


def test_sim_symbols_when_listed_then_decimal_increments_and_enabled(simc):
    rows = simc.symbols()
    by = {r["symbol"]: r for r in rows}
    assert len(rows) == 60 and SYM in by
    btc = by[SYM]
    assert btc["baseIncrement"] == Decimal("0.00000001")
    assert btc["quoteIncrement"] == Decimal("0.000001")
    assert btc["priceIncrement"] == Decimal("0.1")
    assert btc["enableTrading"] is True
    assert all(isinstance(r["baseMinSize"], Decimal) for r in rows)


def test_sim_trade_fees_when_60_symbols_then_6_batches_merged(simc):
    syms = [r["symbol"] for r in simc.symbols()]
    fees = simc.trade_fees(syms)
    assert sorted(fees) == sorted(syms)
    assert {f["takerFeeRate"] for f in fees.values()} == {Decimal("0.001")}
    assert simc.rate_limit["path"].startswith("/api/v1/trade-fees?symbols=")


def test_sim_base_fee_when_asked_then_decimal_rates(simc):
    assert simc.base_fee() == {"takerFeeRate": Decimal("0.001"),
                               "makerFeeRate": Decimal("0.001")}


def test_sim_accounts_when_filtered_then_only_matching_rows(simc):
    usdt = simc.accounts(currency="USDT")
    assert [a["currency"] for a in usdt] == ["USDT"]
    assert isinstance(usdt[0]["balance"], Decimal)
    assert usdt[0]["balance"] == usdt[0]["available"] + usdt[0]["holds"]
    assert simc.accounts(type="main") == []


def test_sim_bullets_when_asked_then_loopback_ws_endpoint_and_tokens(sim, simc):
    pub, prv = simc.bullet_public(), simc.bullet_private()
    for b in (pub, prv):
        server = b["instanceServers"][0]
        assert server["endpoint"] == f"ws://127.0.0.1:{sim.port}/endpoint"
        assert server["pingInterval"] > 0 and b["token"]
    assert pub["token"] != prv["token"]


@pytest.mark.parametrize("depth", [20, 100])
def test_sim_level2_snapshot_when_depth_then_sorted_sides_within_depth(simc, depth):
    snap = simc.level2_snapshot(SYM, depth)
    bids = [Decimal(p) for p, _ in snap["bids"]]
    asks = [Decimal(p) for p, _ in snap["asks"]]
    assert 0 < len(bids) <= depth and 0 < len(asks) <= depth
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0]
    assert isinstance(snap["sequence"], int) and snap["sequence"] > 0
    assert all(isinstance(x, str) for lvl in snap["bids"] for x in lvl)


def test_sim_test_order_when_valid_then_ids_and_nothing_matched(simc):
    before = balances(simc)
    out = simc.test_order(SYM, "buy", "t-test-1", funds="5")
    assert out["orderId"] and out["clientOid"] == "t-test-1"
    assert balances(simc) == before
    with pytest.raises(NotFound):  # docs/kucoin.md 5.3: a test order cannot be queried
        simc.get_order_by_client_oid("t-test-1", SYM)


def test_sim_place_get_cancel_when_market_buy_then_done_and_cancel_not_found(simc):
    out = simc.place_order(SYM, "buy", "t-place-1", funds="5")
    assert out["clientOid"] == "t-place-1"
    o = simc.get_order(out["orderId"], SYM)
    o2 = simc.get_order_by_client_oid("t-place-1", SYM)
    assert o["id"] == o2["id"] == out["orderId"]
    assert o["active"] is False and o["side"] == "buy" and o["funds"] == Decimal("5")
    assert 0 < o["dealFunds"] <= Decimal("5")
    assert o["fee"] == o["dealFunds"] * Decimal("0.001")
    # docs/kucoin.md 5.8: the order is done, so cancel answers 400100 "not exist".
    with pytest.raises(NotFound) as ei:
        simc.cancel_order(out["orderId"], SYM)
    assert ei.value.code == "400100" and ei.value.http_status == 200
    with pytest.raises(NotFound):
        simc.cancel_order_by_client_oid("t-place-1", SYM)


def test_sim_place_order_sync_when_market_sell_then_done_state(simc):
    out = simc.place_order_sync(SYM, "sell", "t-sync-1", size="0.0001")
    assert out["clientOid"] == "t-sync-1" and out["status"] == "done"
    assert out["dealSize"] == Decimal("0.0001") and out["originSize"] == Decimal("0.0001")


def test_sim_get_order_when_unknown_id_then_not_found(simc):
    with pytest.raises(NotFound):
        simc.get_order("0123456789abcdef01234567", SYM)


@pytest.mark.parametrize("kw,code,msg", [
    ({"size": "0.000000001"}, "400100", "Order size increment invalid."),
    ({"funds": "0.0000001"}, "400100", "Funds increment invalid."),
    ({"funds": "1000000"}, "200004", "Balance insufficient!")])
def test_sim_place_order_when_invalid_then_order_rejected_with_code_and_msg(simc, kw, code,
                                                                          msg):
    side = "sell" if "size" in kw else "buy"
    with pytest.raises(OrderRejected) as ei:
        simc.place_order(SYM, side, "t-rej-1", **kw)
    assert (ei.value.code, ei.value.msg, ei.value.http_status) == (code, msg, 200)


def test_sim_place_order_when_reject_fault_then_order_rejected_300000(sim, simc):
    sim.control(reject_orders={"count": 1, "code": "300000", "msg": "The quantity is invalid."})
    try:
        with pytest.raises(OrderRejected) as ei:
            simc.place_order(SYM, "buy", "t-rej-2", funds="5")
        assert (ei.value.code, ei.value.msg) == ("300000", "The quantity is invalid.")
    finally:
        sim.control(reset_faults=True)


class _SignsOtherTimestamp(Signer):
    """Right key and passphrase, signature over a different timestamp: only KC-API-SIGN is
    wrong (a wrong secret would already fail the passphrase check, 400004)."""

    __slots__ = ()

    def headers(self, ts_ms, method, path_with_query, body=b""):
        h = super().headers(ts_ms, method, path_with_query, body)
        h["KC-API-SIGN"] = super().headers(int(ts_ms) + 1, method, path_with_query,
                                           body)["KC-API-SIGN"]
        return h


@pytest.mark.parametrize("field,codes", [("api_passphrase", {"400004"}), ("api_key", {"400003"}),
                                         ("api_secret", {"400004", "400005"})])
def test_sim_auth_when_wrong_credential_then_auth_error_401_without_secrets(sim, field, codes):
    creds = {"api_key": sim.api_key, "api_secret": sim.api_secret,
             "api_passphrase": sim.api_passphrase}
    creds[field] = "wrong-" + creds[field]
    c = KucoinClient(sim.base_url, Signer(**creds))
    with pytest.raises(AuthError) as ei:
        c.accounts()
    assert ei.value.code in codes and ei.value.http_status == 401
    for text in (str(ei.value), repr(ei.value)):
        assert sim.api_secret not in text and sim.api_passphrase not in text
        assert creds["api_secret"] not in text and creds["api_passphrase"] not in text


def test_sim_auth_when_signature_wrong_then_auth_error_400005_401(sim):
    c = KucoinClient(sim.base_url, _SignsOtherTimestamp(sim.api_key, sim.api_secret,
                                                        sim.api_passphrase))
    with pytest.raises(AuthError) as ei:
        c.place_order(SYM, "buy", "t-badsign-1", funds="5")
    assert (ei.value.code, ei.value.msg, ei.value.http_status) == \
        ("400005", "Invalid KC-API-SIGN", 401)


def test_sim_request_when_429_fault_then_rate_limited_then_recovers(sim, simc):
    sim.control(rest_429=1)
    try:
        with pytest.raises(RateLimited) as ei:
            simc.accounts()
        assert (ei.value.code, ei.value.http_status) == ("429000", 429)
        assert ei.value.reset_ms is not None
    finally:
        sim.control(reset_faults=True)
    assert simc.accounts()


def test_sim_request_when_pool_quota_exhausted_then_rate_limited_with_headers(sim_fn):
    c = sim_client(sim_fn)
    sim_fn.control(rate_limits={"management": 10})  # accounts weigh 5 (docs/kucoin.md 7.1)
    c.accounts()
    c.accounts()
    assert c.rate_limit["limit"] == 10 and c.rate_limit["remaining"] == 0
    with pytest.raises(RateLimited) as ei:
        c.accounts()
    assert 0 < ei.value.reset_ms <= 30_000


@pytest.mark.parametrize("status", [500, 503])
def test_sim_request_when_5xx_fault_then_server_error_and_no_retry(sim, simc, status):
    sim.control(rest_5xx={"count": 1, "status": status})
    try:
        with pytest.raises(ServerError) as ei:
            simc.server_time_ms()
        assert ei.value.http_status == status and ei.value.code == "500000"
    finally:
        sim.control(reset_faults=True)
    assert simc.server_time_ms() > 0


def test_sim_place_order_when_5xx_fault_then_server_error_and_order_not_placed(sim, simc):
    sim.control(rest_5xx=1)
    try:
        with pytest.raises(ServerError):
            simc.place_order(SYM, "buy", "t-5xx-1", funds="5")
    finally:
        sim.control(reset_faults=True)
    with pytest.raises(NotFound):  # the 5xx came first and nothing was retried
        simc.get_order_by_client_oid("t-5xx-1", SYM)


# ---- Done criterion: balances after a market buy and a market sell --------------------

# A fixed BTC-USDT book (priceIncrement 0.1, baseIncrement 0.00000001, quoteIncrement
# 0.000001) on a paused market without planted mispricings, so every number is hand-made.
DONE_ASKS = [["60000", "0.0001"], ["60010", "0.01"]]
DONE_BIDS = [["59990", "0.00005"], ["59980", "0.01"]]


def test_sim_market_buy_then_sell_when_done_then_balances_match_hand_computation(
        sim_factory):
    s = sim_factory(paused=True, mispricing_rate=0)
    s.control(set_book={"symbol": SYM, "bids": DONE_BIDS, "asks": DONE_ASKS})
    c = sim_client(s)
    c.sync_clock()
    sym = {r["symbol"]: r for r in c.symbols()}[SYM]
    rate = c.trade_fees([SYM])[SYM]["takerFeeRate"] * sym["takerFeeCoefficient"]
    assert rate == Decimal("0.001")
    start = balances(c)
    assert start["USDT"][0] == Decimal("1000") and start["BTC"][0] == Decimal("0.02")

    # Market buy by funds 10 (docs/kucoin.md 6.6): 0.0001 @ 60000 = 6, then
    # floor(4 / 60010 to 0.00000001) = 0.00006665 @ 60010 = 3.9996665; the 0.0003335 left
    # cannot buy one more increment (0.0006001), so the order ends canceled.
    buy = c.place_order(SYM, "buy", "done-buy-1", funds="10")
    ob = c.get_order(buy["orderId"], SYM)
    assert ob["dealSize"] == Decimal("0.00016665")
    assert ob["dealFunds"] == Decimal("9.9996665")
    assert ob["fee"] == Decimal("0.0099996665") == ob["dealFunds"] * rate  # on top of notional
    assert ob["cancelExist"] is True and ob["dealFunds"] <= Decimal("10")
    after_buy = balances(c)
    # Hand computation: 1000 - 9.9996665 - 0.0099996665; 0.02 + 0.00016665.
    assert after_buy["USDT"] == (Decimal("989.9903338335"), Decimal("989.9903338335"), 0)
    assert after_buy["BTC"] == (Decimal("0.02016665"), Decimal("0.02016665"), 0)
    # The same from the order's own fields.
    assert after_buy["USDT"][0] == start["USDT"][0] - ob["dealFunds"] - ob["fee"]
    assert after_buy["BTC"][0] == start["BTC"][0] + ob["dealSize"]

    # Market sell of what was bought: 0.00005 @ 59990 = 2.9995, 0.00011665 @ 59980 =
    # 6.996667; notional 9.996167, fee 0.009996167, received 9.986170833.
    size = ob["dealSize"]
    sell = c.place_order(SYM, "sell", "done-sell-1", size=size)
    osl = c.get_order(sell["orderId"], SYM)
    assert osl["dealSize"] == size and osl["cancelExist"] is False
    assert osl["dealFunds"] == Decimal("9.996167")
    assert osl["fee"] == Decimal("0.009996167") == osl["dealFunds"] * rate
    end = balances(c)
    assert end["USDT"] == (Decimal("999.9765046665"), Decimal("999.9765046665"), 0)
    assert end["BTC"] == (Decimal("0.02"), Decimal("0.02"), 0)
    assert end["USDT"][0] == (start["USDT"][0] - ob["dealFunds"] * (1 + rate)
                              + osl["dealFunds"] * (1 - rate))
    assert end["BTC"][0] == start["BTC"][0]
    # Untouched currencies stay exact.
    assert {k: v for k, v in end.items() if k not in ("USDT", "BTC")} == \
        {k: v for k, v in start.items() if k not in ("USDT", "BTC")}


# -- what an order's answer says about the order ---------------------------------------------

@pytest.mark.parametrize("status,body,verdict,code", [
    (200, b'{"code":"200000","data":{"orderId":"670fd33bf9406e0007ab3945","clientOid":"c1"}}',
     kucoin.ANSWER_ACCEPTED, "200000"),
    (200, b'{"code":"200004","msg":"Balance insufficient!"}', kucoin.ANSWER_REJECTED, "200004"),
    (200, b'{"code":"400100","msg":"Order size increment invalid."}', kucoin.ANSWER_REJECTED, "400100"),
    (401, b'{"code":"400005","msg":"Invalid KC-API-SIGN"}', kucoin.ANSWER_REJECTED, "400005"),
    (429, b'{"code":"429000","msg":"Too Many Requests"}', kucoin.ANSWER_REJECTED, "429000"),
    (502, b"<html><head><title>502 Bad Gateway</title></head></html>", kucoin.ANSWER_AMBIGUOUS, ""),
    (504, b"", kucoin.ANSWER_AMBIGUOUS, ""),
    (500, b'{"code":"500000","msg":"Internal Server Error"}', kucoin.ANSWER_AMBIGUOUS, "500000"),
    (200, b'{"code":"500000","msg":"Internal Server Error"}', kucoin.ANSWER_AMBIGUOUS, "500000"),
    (200, b'{"code":"200000","data":null}', kucoin.ANSWER_AMBIGUOUS, "200000"),
    (200, b"not json at all", kucoin.ANSWER_AMBIGUOUS, ""),
    (200, b'["code","200004"]', kucoin.ANSWER_AMBIGUOUS, ""),
    (503, b'{"code":"200004","msg":"x"}', kucoin.ANSWER_AMBIGUOUS, "200004"),
    (200, b'{"code":"400100","msg":"clientOid duplicate"}', kucoin.ANSWER_AMBIGUOUS, "400100"),
])
def test_classify_order_answer_when_each_answer_then_only_clear_rejections_mean_not_placed(
        status, body, verdict, code):
    got = kucoin.classify_order_answer(status, body)
    assert got[0] == verdict and got[1] == code
    if verdict == kucoin.ANSWER_ACCEPTED:
        assert got[3] == "670fd33bf9406e0007ab3945"


def test_classify_order_answer_when_random_bytes_then_never_raises():
    import random
    rng = random.Random(5)
    for _ in range(2000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        v = kucoin.classify_order_answer(rng.choice((200, 400, 500, 502)), body)
        assert v[0] in (kucoin.ANSWER_REJECTED, kucoin.ANSWER_AMBIGUOUS, kucoin.ANSWER_ACCEPTED)
