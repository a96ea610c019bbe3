"""sim/exchange.py: the simulator's account and HF orders: validation, holds, matching
against the market's books, exact settlement, and the private events KuCoin pushes.

Owns: balances (Decimal, exact), orders by orderId and clientOid, order/trade ids.
Thread: the simulator's single asyncio thread; `place()` is synchronous, so an order's
matching is atomic with respect to the public stream (like KuCoin's matching engine).
Run/test: through sim/server.py; tests/test_sim.py checks events and balances by hand.

Fees (docs/kucoin.md 6.6): charged in the quote currency on both sides.
A market buy by funds F buys notional <= F (each fill floored to baseIncrement), pays
notional * fee on top, and holds F * (1 + fee) while matching; when funds are left that
cannot buy one more increment the order ends `canceled` (real capture in
tests/data/ws-samples-2025-12_2026-01.jsonl: funds 12, match 0.1481@80.99, remainFunds
0.005381, then type=canceled). A sell of size S receives notional - notional * fee.
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext, Context, Inexact, DivisionByZero, Overflow

from .book import SIDE_ASK, SIDE_BID, dec_str
from .market import Market

# Exact arithmetic: 60 digits is far more than any balance needs, and Inexact traps so a
# rounding anywhere in settlement is a loud bug rather than a silent cent.
EXACT = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
CLIENT_OID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")        # docs/kucoin.md 5.2
ZERO = Decimal(0)


class OrderError(Exception):
    """A business rejection: HTTP 200 with this code/msg (docs/kucoin.md 5.9)."""

    def __init__(self, code: str, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass
class Order:
    order_id: str
    client_oid: str
    symbol: str
    side: str
    type: str
    price: Decimal | None
    size: Decimal | None
    funds: Decimal | None
    tif: str
    created_ms: int
    deal_size: Decimal = ZERO
    deal_funds: Decimal = ZERO
    fee: Decimal = ZERO
    end_type: str = "filled"          # filled | canceled
    last_ms: int = 0
    fills: list = field(default_factory=list)


def _dec(v, what: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise OrderError("400100", f"Parameter Error: {what} must be a decimal string")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise OrderError("300000", "The quantity is invalid.") from None
    if not d.is_finite() or d <= 0:
        raise OrderError("300000", "The quantity is invalid.")
    return d


class Exchange:
    """One account on the simulated exchange. Private events are returned as lists of
    ("order", data) / ("balance", data) for sim/ws.py to wrap and push."""

    def __init__(self, market: Market, *, taker_fee: Decimal, maker_fee: Decimal,
                 balances: dict[str, Decimal], seed: int):
        self.market = market
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.bal: dict[str, list[Decimal]] = {c: [Decimal(v), ZERO] for c, v in balances.items()}
        self.account_ids: dict[str, str] = {}
        self.orders: dict[str, Order] = {}
        self.by_coid: dict[str, str] = {}
        self.seed = seed
        self._oid_n = (seed * 7919) % (1 << 40)
        self._event_n = 354689988084000 + seed
        self.partial_fill: list = [0, Decimal("0.5"), ""]   # fault: [count, fraction, clientOid suffix]
        self.counters = {"orders": 0, "test_orders": 0, "rejected": 0}

    # ---- ids -------------------------------------------------------------------------------
    def _new_order_id(self) -> str:
        self._oid_n += 1
        return f"{int(time.time()):08x}{self._oid_n:016x}"[-24:]

    def _event_id(self) -> str:
        self._event_n += 1
        return str(self._event_n)

    def account_id(self, ccy: str) -> str:
        if ccy not in self.account_ids:
            self.account_ids[ccy] = str(548674591753 + 17 * len(self.account_ids))
        return self.account_ids[ccy]

    def fee_rate(self, sym: str) -> Decimal:
        coef = Decimal(self.market.info[sym].get("takerFeeCoefficient", "1"))
        return self.taker_fee * coef

    # ---- balances --------------------------------------------------------------------------
    def balance(self, ccy: str) -> list[Decimal]:
        return self.bal.setdefault(ccy, [ZERO, ZERO])

    def set_balances(self, values: dict) -> None:
        for c, v in values.items():
            self.bal[c] = [Decimal(str(v)), ZERO]

    def _bal_event(self, ccy: str, d_avail: Decimal, d_hold: Decimal, event: str, ctx: dict, now_ms: int):
        """Apply a change and describe it as /account/balance data (docs/kucoin.md 4.2)."""
        b = self.balance(ccy)
        b[0] += d_avail
        b[1] += d_hold
        eid = self._event_id()
        return ("balance", {
            "accountId": self.account_id(ccy), "currency": ccy,
            "total": dec_str(b[0] + b[1]), "available": dec_str(b[0]), "hold": dec_str(b[1]),
            "availableChange": dec_str(d_avail), "holdChange": dec_str(d_hold),
            "relationContext": ctx, "relationEvent": event, "relationEventId": eid,
            "time": str(now_ms)})

    # ---- validation ------------------------------------------------------------------------
    def validate(self, body) -> dict:
        """Order checks in a fixed order; raises OrderError with docs/kucoin.md 5.9 texts."""
        if not isinstance(body, dict):
            raise OrderError("400100", "Parameter Error")
        coid = body.get("clientOid")
        if coid is not None and (not isinstance(coid, str) or not CLIENT_OID_RE.match(coid)):
            raise OrderError("400100", "Parameter Error: clientOid must be 1-40 characters of [A-Za-z0-9_-]")
        sym = body.get("symbol")
        if not isinstance(sym, str) or not sym:
            raise OrderError("400100", "Parameter Error: symbol is required")
        info = self.market.info.get(sym)
        if info is None:
            raise OrderError("900001", "symbol not exists")
        if not self.market.enabled.get(sym, True):
            raise OrderError("600203", f"Symbol {sym} cant be traded")
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise OrderError("400100", "Parameter Error: side must be buy or sell")
        otype = body.get("type")
        if otype not in ("market", "limit"):
            raise OrderError("400100", "Parameter Error: type must be market or limit")
        binc, qinc = Decimal(info["baseIncrement"]), Decimal(info["quoteIncrement"])
        pinc = Decimal(info["priceIncrement"])
        size = funds = price = None
        tif = body.get("timeInForce") or "GTC"
        if otype == "market":
            has_size, has_funds = body.get("size") not in (None, ""), body.get("funds") not in (None, "")
            if has_size == has_funds:
                raise OrderError("400100", "Parameter Error: a market order needs exactly one of size or funds")
            if has_size:
                size = _dec(body["size"], "size")
            else:
                funds = _dec(body["funds"], "funds")
            tif = "GTC"
        else:
            # Resting orders would need a maker model; the engine sends market orders. IOC/FOK
            # limits are supported as takers bounded by their price.
            if tif not in ("IOC", "FOK"):
                raise OrderError("400100", "Parameter Error: the simulator supports market orders and "
                                           "IOC/FOK limit orders only (no resting orders)")
            price = _dec(body.get("price"), "price")
            if body.get("funds") not in (None, ""):
                raise OrderError("400100", "Parameter Error: limit orders take size, not funds")
            size = _dec(body.get("size"), "size")
            with localcontext(EXACT):
                if price % pinc:
                    raise OrderError("400100", "Price increment invalid.")
        with localcontext(EXACT):
            if size is not None:
                if size % binc:
                    raise OrderError("400100", "Order size increment invalid.")
                if size < Decimal(info["baseMinSize"]):
                    raise OrderError("400100", "Order size below the minimum requirement.")
                if size > Decimal(info["baseMaxSize"]):
                    raise OrderError("400100", "Order size above the maximum requirement.")
            if funds is not None:
                if funds % qinc:
                    raise OrderError("400100", "Funds increment invalid.")
                if funds < Decimal(info["quoteMinSize"]):
                    raise OrderError("600100", "Funds below the minimum requirement.")
                if funds > Decimal(info["quoteMaxSize"]):
                    raise OrderError("400100", "Funds above the maximum requirement.")
            # minFunds (docs/kucoin.md 5.9): market buy funds >= minFunds; market sell
            # size * lastPrice >= minFunds (best bid used as last price); limit price*size.
            min_funds = Decimal(info["minFunds"])
            book = self.market.books[sym]
            if funds is not None:
                notional = funds
            elif price is not None:
                notional = price * size
            else:
                ref = book.best(SIDE_BID if side == "sell" else SIDE_ASK)
                notional = size * book.px(ref) if ref is not None else None
            if notional is not None and notional < min_funds:
                raise OrderError("600101", f"The order funds should more then {dec_str(min_funds)} {info['quoteCurrency']}.")
        return {"clientOid": coid, "symbol": sym, "side": side, "type": otype, "size": size,
                "funds": funds, "price": price, "tif": tif, "info": info}

    # ---- placement ---------------------------------------------------------------------------
    def _plan(self, o: dict, fee: Decimal) -> tuple[str, Decimal, list, int]:
        """Hold currency, hold amount, dry-walk fills and the consumed book side."""
        m, sym, info = self.market, o["symbol"], o["info"]
        b = m.books[sym]
        take_side = SIDE_ASK if o["side"] == "buy" else SIDE_BID
        plr = Decimal(info.get("priceLimitRate") or "0") or None
        limit_tick = None
        if o["price"] is not None:
            limit_tick = int(o["price"] / b.pinc)
            plr = None
        max_lots = int(o["size"] / b.binc) if o["size"] is not None else None
        fills = m.walk(sym, take_side, max_lots=max_lots, max_funds=o["funds"], limit_tick=limit_tick,
                       price_limit_rate=plr)
        if o["side"] == "buy":
            if o["funds"] is not None:
                hold = o["funds"] * (1 + fee)           # funds plus the taker fee on top
            elif o["price"] is not None:
                hold = o["price"] * o["size"] * (1 + fee)
            else:                                       # market buy by size: its walked cost
                hold = sum((b.px(t) * b.sz(l) for t, l in fills), ZERO) * (1 + fee)
            return info["quoteCurrency"], hold, fills, take_side
        if o["size"] is not None:
            hold = o["size"]
        else:                                           # market sell by funds: walked size
            hold = sum((b.sz(l) for _, l in fills), ZERO)
        return info["baseCurrency"], hold, fills, take_side

    def place(self, body, *, test: bool = False):
        """Validate, hold, match at arrival, settle. Returns (order, early, late): `early`
        events are pushed at once (received + hold), `late` ones after the matching
        (match..., filled/canceled, settlement), which the late_fills fault can delay."""
        with localcontext(EXACT):
            o = self.validate(body)
            coid = o["clientOid"]
            if coid is not None and coid in self.by_coid and not test:
                # KuCoin documents no spot-HF reaction to a reused clientOid (docs/kucoin.md
                # 5.2); rejecting it keeps fill routing by clientOid unambiguous.
                raise OrderError("400100", "clientOid duplicate")
            fee = self.fee_rate(o["symbol"])
            hold_ccy, hold, fills, take_side = self._plan(o, fee)
            if o["tif"] == "FOK" and sum(l for _, l in fills) * self.market.books[o["symbol"]].binc < o["size"]:
                fills = []
            # docs/kucoin.md 5.3: the test endpoint validates signature and parameters; whether
            # it checks balance is undocumented. We decided it does not: paper mode validates
            # legs 1 and 2 in currencies the account never received, and a balance check would
            # reject every one of them.
            if not test and self.balance(hold_ccy)[0] < hold:
                raise OrderError("200004", "Balance insufficient!")
            if test:
                self.counters["test_orders"] += 1
                return (Order(self._new_order_id(), coid or uuid.uuid4().hex, o["symbol"], o["side"], o["type"],
                              o["price"], o["size"], o["funds"], o["tif"], int(time.time() * 1000)), [], [])
            return self._execute(o, fee, hold_ccy, hold, fills, take_side)

    def _fields(self, od: Order) -> dict:
        d = {"clientOid": od.client_oid, "orderId": od.order_id, "orderTime": od.created_ms,
             "orderType": od.type, "side": od.side, "symbol": od.symbol}
        if od.funds is not None:
            d["funds"] = dec_str(od.funds)
        if od.size is not None:
            d["size"] = dec_str(od.size)
        if od.price is not None:
            d["price"] = dec_str(od.price)
        return d

    def _execute(self, o, fee, hold_ccy, hold, fills, take_side):
        m = self.market
        b = m.books[o["symbol"]]
        now_ms = int(time.time() * 1000)
        od = Order(self._new_order_id(), o["clientOid"] or uuid.uuid4().hex, o["symbol"], o["side"],
                   o["type"], o["price"], o["size"], o["funds"], o["tif"], now_ms)
        self.orders[od.order_id] = od
        self.by_coid[od.client_oid] = od.order_id
        self.counters["orders"] += 1
        if self.partial_fill[0] > 0 and fills and od.client_oid.endswith(self.partial_fill[2]):
            # fault: fill only a fraction, then cancel
            self.partial_fill[0] -= 1
            total = sum(l for _, l in fills)
            keep = int(total * self.partial_fill[1])
            cut = []
            for t, l in fills:
                if keep <= 0:
                    break
                cut.append((t, min(l, keep)))
                keep -= min(l, keep)
            fills = cut
        ctx = {"symbol": od.symbol, "orderId": od.order_id}
        ts_ns = time.time_ns()
        base, quote = b.base, b.quote
        # docs/kucoin.md 4.1: V2 `received` (status new) when the order enters matching.
        rec = dict(self._fields(od), status="new", type="received", ts=ts_ns)
        if od.funds is not None:
            rec["originFunds"] = dec_str(od.funds)
        if od.size is not None:
            rec["originSize"] = dec_str(od.size)
        early = [("order", rec),
                 self._bal_event(hold_ccy, -hold, hold, "trade.hold", dict(ctx), now_ms)]
        late = []
        m.execute(od.symbol, take_side, fills)
        held = hold
        for tick, lots in fills:
            px, sz = b.px(tick), b.sz(lots)
            notional = px * sz
            fee_amt = notional * fee
            m.trade_id += 1
            tid = str(m.trade_id)
            od.deal_size += sz
            od.deal_funds += notional
            od.fee += fee_amt
            od.fills.append({"tradeId": tid, "price": px, "size": sz, "funds": notional, "fee": fee_amt,
                             "ts_ms": now_ms})
            mt = dict(self._fields(od), feeType="takerFee", filledSize=dec_str(od.deal_size),
                      liquidity="taker", matchPrice=dec_str(px), matchSize=dec_str(sz),
                      pt=now_ms, status="match", tradeId=tid, ts=ts_ns, type="match")
            if od.funds is not None:
                mt["remainFunds"] = dec_str(od.funds - od.deal_funds)
            else:
                mt["remainSize"] = dec_str(od.size - od.deal_size)
            late.append(("order", mt))
            tctx = dict(ctx, tradeId=tid)
            if od.side == "buy":
                held -= notional + fee_amt
                late.append(self._bal_event(quote, ZERO, -(notional + fee_amt), "trade.setted", tctx, now_ms))
                late.append(self._bal_event(base, sz, ZERO, "trade.setted", dict(tctx), now_ms))
            else:
                held -= sz
                late.append(self._bal_event(base, ZERO, -sz, "trade.setted", tctx, now_ms))
                late.append(self._bal_event(quote, notional - fee_amt, ZERO, "trade.setted", dict(tctx), now_ms))
            if m.on_trade is not None:
                m.on_trade(od.symbol, od.side, px, sz, tid)
        if held:
            # Release what the order did not use; KuCoin's docs name no event for an unhold,
            # so it is a trade.hold with a negative holdChange.
            late.append(self._bal_event(hold_ccy, held, -held, "trade.hold", dict(ctx), now_ms))
        if od.funds is not None:
            done = od.deal_funds == od.funds
        else:
            done = od.deal_size == od.size
        od.end_type = "filled" if done else "canceled"
        od.last_ms = now_ms
        fin = dict(self._fields(od), filledSize=dec_str(od.deal_size), pt=now_ms, remainFunds="0",
                   remainSize="0", status="done", ts=ts_ns, type=od.end_type)
        if od.end_type == "canceled" and od.size is not None:
            fin["canceledSize"] = dec_str(od.size - od.deal_size)
        late.append(("order", fin))
        return od, early, late

    # ---- views -------------------------------------------------------------------------------
    def find(self, order_id: str | None = None, client_oid: str | None = None, symbol: str | None = None):
        if client_oid is not None:
            order_id = self.by_coid.get(client_oid)
        od = self.orders.get(order_id) if order_id else None
        if od is None or (symbol and od.symbol != symbol):
            return None
        return od

    def order_view(self, od: Order) -> dict:
        """REST order object (docs/kucoin.md 5.6). A market order ended by its remainder
        being canceled shows cancelExist=true and the unused funds/size as cancelled*."""
        canceled = od.end_type == "canceled"
        with localcontext(EXACT):
            if od.type == "limit":
                funds = od.price * od.size
                remain_funds, c_funds = funds - od.deal_funds, ZERO
            else:
                funds = od.funds or ZERO
                remain_funds = ZERO
                c_funds = (funds - od.deal_funds) if (canceled and od.funds is not None) else ZERO
            c_size = (od.size - od.deal_size) if (canceled and od.size is not None) else ZERO
        q = self.market.info[od.symbol]["quoteCurrency"]
        return {"id": od.order_id, "clientOid": od.client_oid, "symbol": od.symbol, "opType": "DEAL",
                "type": od.type, "side": od.side, "price": dec_str(od.price or ZERO),
                "size": dec_str(od.size or ZERO), "funds": dec_str(funds),
                "dealSize": dec_str(od.deal_size), "dealFunds": dec_str(od.deal_funds),
                "remainSize": "0", "remainFunds": dec_str(remain_funds),
                "cancelledSize": dec_str(c_size), "cancelledFunds": dec_str(c_funds),
                "fee": dec_str(od.fee), "feeCurrency": q, "stp": None, "timeInForce": od.tif,
                "postOnly": False, "hidden": False, "iceberg": False, "visibleSize": "0",
                "cancelAfter": 0, "channel": "API", "remark": None, "tags": None,
                "cancelExist": canceled, "tradeType": "TRADE", "inOrderBook": False, "active": False,
                "tax": "0", "createdAt": od.created_ms, "lastUpdatedAt": od.last_ms}

    def sync_view(self, od: Order) -> dict:
        """POST /api/v1/hf/orders/sync response (docs/kucoin.md 5.4, with the legacy HF
        market-order funds fields)."""
        canceled = od.end_type == "canceled"
        with localcontext(EXACT):
            c_size = (od.size - od.deal_size) if (canceled and od.size is not None) else ZERO
            c_funds = (od.funds - od.deal_funds) if (canceled and od.funds is not None) else ZERO
        return {"orderId": od.order_id, "clientOid": od.client_oid, "orderTime": od.created_ms,
                "originSize": dec_str(od.size or ZERO), "dealSize": dec_str(od.deal_size),
                "remainSize": "0", "canceledSize": dec_str(c_size),
                "originFunds": dec_str(od.funds or ZERO), "dealFunds": dec_str(od.deal_funds),
                "remainFunds": "0", "canceledFunds": dec_str(c_funds),
                "status": "done", "matchTime": od.last_ms}

    def fills_view(self, od: Order) -> list[dict]:
        """GET /api/v1/hf/fills items (docs/kucoin.md 5.7): ids are integers there."""
        q = self.market.info[od.symbol]["quoteCurrency"]
        return [{"id": int(f["tradeId"]) + 1, "orderId": od.order_id, "counterOrderId": "0" * 24,
                 "tradeId": int(f["tradeId"]), "symbol": od.symbol, "side": od.side, "liquidity": "taker",
                 "type": od.type, "forceTaker": False, "price": dec_str(f["price"]), "size": dec_str(f["size"]),
                 "funds": dec_str(f["funds"]), "fee": dec_str(f["fee"]), "feeRate": dec_str(self.fee_rate(od.symbol)),
                 "feeCurrency": q, "stop": "", "tradeType": "TRADE", "taxRate": "0", "tax": "0",
                 "createdAt": f["ts_ms"]} for f in od.fills]

    def accounts_view(self, currency: str | None, acct_type: str | None) -> list[dict]:
        """GET /api/v1/accounts (docs/kucoin.md 6.4): one `trade` account per currency held.
        REST spells it `holds`; `balance` = available + holds."""
        if acct_type not in (None, "", "trade"):
            return []
        out = []
        for c in sorted(self.bal):
            if currency and c != currency:
                continue
            a, h = self.bal[c]
            out.append({"id": self.account_id(c), "currency": c, "type": "trade",
                        "balance": dec_str(a + h), "available": dec_str(a), "holds": dec_str(h)})
        return out
