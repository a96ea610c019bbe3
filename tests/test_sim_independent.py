"""The simulator driven by KuCoin's official kucoin-universal-sdk (Python), pointed at the
simulator's base URL with ClientOptionBuilder.set_spot_endpoint. The SDK signs, encodes
queries, parses envelopes and drives the WebSocket in its own way (docs/kucoin.md 1.2, 2.2:
it signs the raw query but sends it urlencoded, and urlencodes the token), so these tests
show the simulator speaks KuCoin's protocol, not only our own client's dialect.
Run: python -m pytest -q tests/test_sim_independent.py
"""
from __future__ import annotations

import threading
import time
import warnings
from decimal import Decimal

import pytest

pytest.importorskip("kucoin_universal_sdk")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"kucoin_universal_sdk\..*")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pydantic\..*")

from kucoin_universal_sdk.api.client import DefaultClient                      # noqa: E402
from kucoin_universal_sdk.generate.account.account.model_get_spot_account_list_req import \
    GetSpotAccountListReqBuilder                                                  # noqa: E402
from kucoin_universal_sdk.generate.spot.market.model_get_all_symbols_req import GetAllSymbolsReqBuilder  # noqa: E402
from kucoin_universal_sdk.generate.spot.market.model_get_part_order_book_req import \
    GetPartOrderBookReqBuilder                                                    # noqa: E402
from kucoin_universal_sdk.generate.spot.order.model_add_order_req import AddOrderReq, AddOrderReqBuilder  # noqa: E402
from kucoin_universal_sdk.generate.spot.order.model_get_order_by_order_id_req import \
    GetOrderByOrderIdReqBuilder                                                   # noqa: E402
from kucoin_universal_sdk.model.client_option import ClientOptionBuilder         # noqa: E402
from kucoin_universal_sdk.model.common import RestError                          # noqa: E402
from kucoin_universal_sdk.model.transport_option import TransportOptionBuilder    # noqa: E402
from kucoin_universal_sdk.model.websocket_option import WebSocketClientOptionBuilder  # noqa: E402


def sdk_client(sim, passphrase=None):
    opt = (ClientOptionBuilder().set_key(sim.api_key).set_secret(sim.api_secret)
           .set_passphrase(passphrase or sim.api_passphrase).set_spot_endpoint(sim.base_url)
           .set_transport_option(TransportOptionBuilder().set_max_retries(0).build())
           .set_websocket_client_option(WebSocketClientOptionBuilder().with_reconnect(False).build())
           .build())
    return DefaultClient(opt)


def stop_sdk_ws(sim, ws):
    """websocket-client's reader notices a local close only on its next select timeout
    (10 s when no frame arrives), so the server closes first and the SDK's stop() is quick."""
    sim.control(disconnect="all")
    time.sleep(0.2)
    ws.stop()


@pytest.fixture(scope="module")
def client(sim):
    return sdk_client(sim)


def test_sdk_when_server_time_and_symbols_then_parsed(sim, client):
    market = client.rest_service().get_spot_service().get_market_api()
    t = market.get_server_time()
    assert abs(t.data - time.time() * 1000) < 5000
    assert t.common_response.rate_limit.limit == 2000          # gw-ratelimit-* headers read
    syms = market.get_all_symbols(GetAllSymbolsReqBuilder().build()).data
    assert len(syms) == 60
    btc = next(s for s in syms if s.symbol == "BTC-USDT")
    assert btc.base_increment == "0.00000001" and btc.enable_trading is True


def test_sdk_when_part_order_book_then_matches_sim_book(sim, client):
    sim.control(paused=True, mispricing_rate=0)
    try:
        time.sleep(0.6)
        market = client.rest_service().get_spot_service().get_market_api()
        ob = market.get_part_order_book(GetPartOrderBookReqBuilder().set_symbol("ETH-USDT").set_size("20").build())
        book = sim.get("/sim/book?symbol=ETH-USDT")
        assert int(ob.sequence) == book["sequence"] and ob.bids == book["bids"][:20]
    finally:
        sim.control(paused=False, mispricing_rate=0.5)


def test_sdk_when_market_order_placed_then_readable_and_balances_consistent(sim, client):
    acct = client.rest_service().get_account_service().get_account_api()
    before = {a.currency: Decimal(a.available) for a in
              acct.get_spot_account_list(GetSpotAccountListReqBuilder().set_type("trade").build()).data}
    orders = client.rest_service().get_spot_service().get_order_api()
    resp = orders.add_order(AddOrderReqBuilder().set_client_oid("sdk-1").set_side(AddOrderReq.SideEnum.BUY)
                            .set_symbol("KCS-USDT").set_type(AddOrderReq.TypeEnum.MARKET).set_funds("10").build())
    assert len(resp.order_id) == 24 and resp.client_oid == "sdk-1"
    od = orders.get_order_by_order_id(GetOrderByOrderIdReqBuilder().set_symbol("KCS-USDT")
                                      .set_order_id(resp.order_id).build())
    assert od.id == resp.order_id and od.active is False and Decimal(od.deal_size) > 0
    after = {a.currency: Decimal(a.available) for a in
             acct.get_spot_account_list(GetSpotAccountListReqBuilder().build()).data}
    spent = Decimal(od.deal_funds) + Decimal(od.fee)
    assert before["USDT"] - after["USDT"] == spent and spent <= Decimal("10") * Decimal("1.001")
    assert after["KCS"] - before.get("KCS", Decimal(0)) == Decimal(od.deal_size)


def test_sdk_when_passphrase_wrong_then_rest_error_with_400004(sim):
    market = sdk_client(sim, passphrase="wrong").rest_service().get_account_service().get_account_api()
    with pytest.raises(RestError) as ei:
        market.get_spot_account_list(GetSpotAccountListReqBuilder().build())
    assert "401" in str(ei.value) and "400004" in str(ei.value)


def test_sdk_when_ws_public_orderbook_increment_then_sequenced_events(sim, client):
    ws = client.ws_service().new_spot_public_ws()
    got, done = [], threading.Event()

    def on_event(topic, subject, data):
        got.append(data)
        if len(got) >= 3:
            done.set()

    ws.start()
    try:
        syms = [s["symbol"] for s in sim.get("/api/v2/symbols")["data"]]
        ws.orderbook_increment(syms[:20], on_event)
        assert done.wait(10)
    finally:
        stop_sdk_ws(sim, ws)
    assert all(d.sequence_start <= d.sequence_end for d in got)


def test_sdk_when_ws_private_order_v2_then_received_match_done(sim, client):
    ws = client.ws_service().new_spot_private_ws()
    events, done = [], threading.Event()

    def on_order(topic, subject, data):
        if data.client_oid == "sdk-ws-1":
            events.append(data)
            if data.status.value == "done":
                done.set()

    ws.start()
    try:
        ws.order_v2(on_order)
        orders = client.rest_service().get_spot_service().get_order_api()
        orders.add_order(AddOrderReqBuilder().set_client_oid("sdk-ws-1").set_side(AddOrderReq.SideEnum.SELL)
                         .set_symbol("KCS-USDT").set_type(AddOrderReq.TypeEnum.MARKET).set_size("1").build())
        assert done.wait(10)
    finally:
        stop_sdk_ws(sim, ws)
    assert [e.type.value for e in events][0] == "received" and events[-1].type.value in ("filled", "canceled")
    assert any(e.type.value == "match" for e in events)
