"""sim/rest.py: the simulator's KuCoin REST API: routing, signature/passphrase/timestamp
checks, per-pool rate limits, the envelope, and the market/account/HF-order handlers.

Owns: the route table (path, pool, weight, signed?) and the rate-limit windows.
Thread: the simulator's single asyncio thread (aiohttp handlers).
Run/test: through sim/server.py; tests/test_sim.py signs requests itself with hmac/base64 and
checks every error code and HTTP status; tests/test_sim_independent.py drives it with
KuCoin's own universal SDK.

Envelope (docs/kucoin.md 0): {"code":"200000","data":...}; errors {"code","msg"} with HTTP
200 for business errors and the gateway statuses of docs/kucoin.md 1.6. Every response
carries gw-ratelimit-limit/remaining/reset for the endpoint's pool (docs/kucoin.md 7.1).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from urllib.parse import unquote, unquote_plus

from aiohttp import web

from .exchange import OrderError
from .book import dec_str

WINDOW_MS = 30_000                     # docs/kucoin.md 7.1: 30 s windows
VIP_QUOTAS = {                         # (spot, management, public) per 30 s, docs/kucoin.md 7.1
    0: (4000, 2000, 2000), 1: (6000, 2000, 2000), 2: (8000, 4000, 2000), 3: (10000, 5000, 2000),
    4: (13000, 6000, 2000), 5: (16000, 7000, 2000), 6: (20000, 8000, 2000), 7: (23000, 10000, 2000),
    8: (26000, 12000, 2000), 9: (30000, 14000, 2000), 10: (33000, 16000, 2000),
    11: (36000, 18000, 2000), 12: (40000, 20000, 2000)}
TS_SKEW_MS = 5000                      # docs/kucoin.md 1.4


def err_body(code: str, msg: str) -> dict:
    return {"code": code, "msg": msg}


class RateLimiter:
    """Per-pool weight budget; each window starts at the pool's first request and lasts 30 s."""

    def __init__(self, vip: int = 0):
        spot, mgmt, public = VIP_QUOTAS[vip]
        self.quota = {"spot": spot, "management": mgmt, "public": public}
        self.window_ms = WINDOW_MS            # a test may shorten it (control rate_window_ms)
        self.reset_all()

    def reset_all(self) -> None:
        self.used = {p: 0 for p in self.quota}
        self.start = {p: None for p in self.quota}
        # requests refused because the pool was empty (not the rest_429 fault), and the most
        # weight any window of the pool carried: what a test of the engine's budget reads
        self.limited = {p: 0 for p in self.quota}
        self.peak = {p: 0 for p in self.quota}

    def _roll(self, pool: str, now: int) -> None:
        st = self.start[pool]
        if st is None or now >= st + self.window_ms:
            self.start[pool], self.used[pool] = now, 0

    def take(self, pool: str, weight: int, now: int) -> bool:
        self._roll(pool, now)
        if self.used[pool] + weight > self.quota[pool]:
            self.limited[pool] += 1
            return False
        self.used[pool] += weight
        self.peak[pool] = max(self.peak[pool], self.used[pool])
        return True

    def headers(self, pool: str, now: int) -> dict:
        self._roll(pool, now)
        return {"gw-ratelimit-limit": str(self.quota[pool]),
                "gw-ratelimit-remaining": str(self.quota[pool] - self.used[pool]),
                "gw-ratelimit-reset": str(self.start[pool] + self.window_ms - now)}


class Rest:
    def __init__(self, sim):
        self.sim = sim                  # sim.Sim: market, exchange, hub, faults, credentials
        self.limiter = RateLimiter(sim.vip)
        self.transports: set = set()    # HTTP connections seen (for the close_rest_conns fault)
        self.clock_offset_ms = 0        # control clock_offset_ms: this exchange's clock runs ahead
        p = r"(?P<id>[^/]+)"
        # (method, regex, handler, pool, weight, signed) — pools/weights of docs/kucoin.md 3.7, 5.1, 7.1
        self.routes = [(m, re.compile("^" + rx + "$"), h, pool, w, signed) for m, rx, h, pool, w, signed in [
            ("GET", r"/api/v1/timestamp", self.timestamp, "public", 3, False),
            ("GET", r"/api/v1/status", self.status, "public", 3, False),
            ("GET", r"/api/v2/symbols", self.symbols, "public", 4, False),
            ("GET", r"/api/v2/symbols/" + p, self.symbol_one, "public", 4, False),
            ("GET", r"/api/v1/market/allTickers", self.all_tickers, "public", 15, False),
            ("GET", r"/api/v1/market/orderbook/level1", self.level1, "public", 2, False),
            ("GET", r"/api/v1/market/orderbook/level2_20", self.level2_20, "public", 2, False),
            ("GET", r"/api/v1/market/orderbook/level2_100", self.level2_100, "public", 2, False),
            ("GET", r"/api/v3/market/orderbook/level2", self.level2_full, "spot", 3, True),
            ("POST", r"/api/v1/bullet-public", self.bullet_public, "public", 10, False),
            ("POST", r"/api/v1/bullet-private", self.bullet_private, "spot", 10, True),
            ("GET", r"/api/v1/trade-fees", self.trade_fees, "spot", 3, True),
            ("GET", r"/api/v1/base-fee", self.base_fee, "spot", 3, True),
            ("GET", r"/api/v1/accounts", self.accounts, "management", 5, True),
            ("GET", r"/api/v1/hf/accounts/opened", self.hf_opened, "spot", 30, True),
            ("POST", r"/api/v1/hf/orders", self.order_place, "spot", 1, True),
            ("POST", r"/api/v1/hf/orders/test", self.order_test, "spot", 1, True),
            ("POST", r"/api/v1/hf/orders/sync", self.order_sync, "spot", 1, True),
            ("GET", r"/api/v1/hf/orders/active", self.orders_active, "spot", 2, True),
            ("GET", r"/api/v1/hf/orders/active/symbols", self.orders_active_symbols, "spot", 2, True),
            ("GET", r"/api/v1/hf/fills", self.fills, "spot", 2, True),
            ("GET", r"/api/v1/hf/orders/client-order/" + p, self.order_get, "spot", 2, True),
            ("GET", r"/api/v1/hf/orders/" + p, self.order_get, "spot", 2, True),
            ("DELETE", r"/api/v1/hf/orders/sync/client-order/" + p, self.order_cancel, "spot", 1, True),
            ("DELETE", r"/api/v1/hf/orders/sync/" + p, self.order_cancel, "spot", 1, True),
            ("DELETE", r"/api/v1/hf/orders/client-order/" + p, self.order_cancel, "spot", 1, True),
            ("DELETE", r"/api/v1/hf/orders/" + p, self.order_cancel, "spot", 1, True),
        ]]

    # ---- dispatch ----------------------------------------------------------------------------
    def track(self, transport) -> None:
        if transport is not None and transport not in self.transports:
            if len(self.transports) > 64:
                self.transports = {t for t in self.transports if not t.is_closing()}
            self.transports.add(transport)

    def close_conns(self, keep=None) -> int:
        """Fault: close every kept-alive HTTP connection (an idle timeout or a restart on the
        venue's side) except `keep` (the control request's own). Returns how many."""
        n = 0
        for t in list(self.transports):
            if t is keep or t.is_closing():
                continue
            t.close()
            n += 1
        self.transports = {t for t in self.transports if not t.is_closing()}
        return n

    def _json(self, status: int, body, pool: str, now: int) -> web.Response:
        return web.Response(status=status, text=json.dumps(body, separators=(",", ":")),
                            content_type="application/json", headers=self.limiter.headers(pool, now))

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        now = int(time.time() * 1000)
        self.track(request.transport)
        now = int(time.time() * 1000) + self.clock_offset_ms
        path = request.path
        match = None
        for method, rx, handler, pool, weight, signed in self.routes:
            mm = rx.match(path)
            if mm and method == request.method:
                match = (handler, pool, weight, signed, mm)
                break
        pool = match[1] if match else "public"
        fault = self.sim.faults.take_rest_fault()
        if fault is not None:
            return self._json(fault[0], err_body(fault[1], fault[2]), pool, now)
        if match is None:
            return self._json(404, err_body("404000", "Url Not Found"), "public", now)
        handler, pool, weight, signed, mm = match
        body = await request.read()
        if signed:
            auth_err = self._check_auth(request, body, now)
            if auth_err is not None:
                return self._json(auth_err[0], err_body(auth_err[1], auth_err[2]), pool, now)
        if not self.limiter.take(pool, weight, now):
            return self._json(429, err_body("429000", "Too Many Requests"), pool, now)
        if request.method == "POST" and body:
            ctype = request.headers.get("Content-Type", "")
            if not ctype.split(";")[0].strip().lower() == "application/json":
                return self._json(415, err_body("415000", "Unsupported Media Type"), pool, now)   # docs/kucoin.md 0
        try:
            result = await handler(request, body, mm, pool, now)
        except OrderError as e:          # business errors: HTTP 200 (docs/kucoin.md 0, 5.9)
            # a rejection injected as 429000 answers as the gateway would (docs/kucoin.md 7.1)
            return self._json(429 if e.code == "429000" else 200, err_body(e.code, e.msg), pool, now)
        if isinstance(result, web.StreamResponse):
            return result
        return self._json(200, {"code": "200000", "data": result}, pool, now)

    def _check_auth(self, request: web.Request, body: bytes, now: int):
        """(http_status, code, msg) or None. Order of checks: headers present, key version,
        key, timestamp, passphrase, signature (KuCoin does not document its order)."""
        h = request.headers
        key, sign, ts, pp = (h.get("KC-API-KEY"), h.get("KC-API-SIGN"), h.get("KC-API-TIMESTAMP"),
                             h.get("KC-API-PASSPHRASE"))
        sim = self.sim
        if not key or not sign or not ts or not pp:
            return 401, "400001", ("Please check the header of your request for KC-API-KEY, KC-API-SIGN, "
                                   "KC-API-TIMESTAMP, KC-API-PASSPHRASE")
        version = h.get("KC-API-KEY-VERSION", "1")
        if version not in ("1", "2", "3"):
            return 400, "400009", "Invalid KC-API-KEY-VERSION"
        if key != sim.api_key:
            return 401, "400003", "KC-API-KEY does not exist"
        try:
            skew = abs(int(ts) - now)
        except ValueError:
            skew = TS_SKEW_MS + 1
        if skew > TS_SKEW_MS:
            return 400, "400002", "Invalid KC-API-TIMESTAMP"             # docs/kucoin.md 1.4
        secret = sim.api_secret.encode()
        # docs/kucoin.md 1.3: v2/v3 send base64(HMAC(secret, passphrase)); v1 sends it plain.
        if version == "1":
            pp_ok = hmac.compare_digest(pp, sim.api_passphrase)
        else:
            pp_ok = hmac.compare_digest(pp, sim.passphrase_hmac)
        if not pp_ok:
            return 401, "400004", "Invalid KC-API-PASSPHRASE"
        # docs/kucoin.md 1.2: docs-new signs the percent-decoded path+query, clients differ:
        # accept the raw-as-sent form and the decoded forms.
        raw = request.raw_path
        cands = {raw, unquote(raw)}
        if "?" in raw:
            pth, _, q = raw.partition("?")
            cands.add(pth + "?" + unquote_plus(q))
        for c in cands:
            pre = ts.encode() + request.method.encode() + c.encode() + body
            mac = base64.b64encode(hmac.new(secret, pre, hashlib.sha256).digest()).decode()
            if hmac.compare_digest(mac, sign):
                return None
        return 401, "400005", "Invalid KC-API-SIGN"

    # ---- market ------------------------------------------------------------------------------
    async def timestamp(self, request, body, mm, pool, now):
        return now

    async def status(self, request, body, mm, pool, now):
        return {"status": "open", "msg": ""}

    def _symbol_view(self, s: dict) -> dict:
        """v2 symbol (docs/kucoin.md 6.1); fields the 2024 file lacks take the documented defaults."""
        d = dict(s)
        d["enableTrading"] = self.sim.market.enabled.get(s["symbol"], True)
        d.setdefault("feeCategory", 1)
        d.setdefault("makerFeeCoefficient", "1.00")
        d.setdefault("takerFeeCoefficient", "1.00")
        d.setdefault("st", False)
        for k in ("callauctionIsEnabled",):
            d.setdefault(k, False)
        for k in ("callauctionPriceFloor", "callauctionPriceCeiling", "callauctionFirstStageStartTime",
                  "callauctionSecondStageStartTime", "callauctionThirdStageStartTime", "tradingStartTime"):
            d.setdefault(k, None)
        return d

    async def symbols(self, request, body, mm, pool, now):
        market = request.query.get("market")
        return [self._symbol_view(s) for s in self.sim.market.info.values()
                if not market or s.get("market") == market]

    async def symbol_one(self, request, body, mm, pool, now):
        s = self.sim.market.info.get(mm["id"])
        if s is None:
            raise OrderError("900001", "symbol not exists")
        return self._symbol_view(s)

    def _book(self, request):
        sym = request.query.get("symbol")
        if not sym:
            raise OrderError("400100", "Parameter Error: symbol is required")
        b = self.sim.market.books.get(sym)
        if b is None:
            raise OrderError("900001", "symbol not exists")
        return b

    async def level2_20(self, request, body, mm, pool, now):
        return self._book(request).snapshot(20)

    async def level2_100(self, request, body, mm, pool, now):
        return self._book(request).snapshot(100)

    async def level2_full(self, request, body, mm, pool, now):
        return self._book(request).snapshot(None)

    async def level1(self, request, body, mm, pool, now):
        b = self._book(request)
        t = self.sim.hub._ticker(b.symbol, now)
        return {"time": now, "sequence": t["sequence"], "price": t["price"], "size": t["size"],
                "bestBid": t["bestBid"], "bestBidSize": t["bestBidSize"], "bestAsk": t["bestAsk"],
                "bestAskSize": t["bestAskSize"]}

    async def all_tickers(self, request, body, mm, pool, now):
        """docs/kucoin.md 3.10: buy = best bid, sell = best ask; fee fields are base rates."""
        out = []
        for sym in self.sim.market.symbols:
            t = self.sim.hub._ticker(sym, now)
            out.append({"symbol": sym, "symbolName": sym, "buy": t["bestBid"], "bestBidSize": t["bestBidSize"],
                        "sell": t["bestAsk"], "bestAskSize": t["bestAskSize"], "changeRate": "0",
                        "changePrice": "0", "high": t["price"], "low": t["price"], "vol": "0", "volValue": "0",
                        "last": t["price"], "averagePrice": t["price"], "takerFeeRate": "0.001",
                        "makerFeeRate": "0.001", "takerCoefficient": "1", "makerCoefficient": "1"})
        return {"time": now, "ticker": out}

    async def bullet_public(self, request, body, mm, pool, now):
        return self.sim.hub.issue_token(False)

    async def bullet_private(self, request, body, mm, pool, now):
        return self.sim.hub.issue_token(True)

    # ---- account -----------------------------------------------------------------------------
    async def trade_fees(self, request, body, mm, pool, now):
        syms = [s for s in request.query.get("symbols", "").split(",") if s]
        if not syms:
            raise OrderError("400100", "Parameter Error: symbols is required")
        if len(syms) > 10:               # docs/kucoin.md 6.2: up to 10 symbols per call
            raise OrderError("400100", "Parameter Error: at most 10 symbols per request")
        ex = self.sim.exchange
        out = []
        for s in syms:
            if s not in self.sim.market.info:
                raise OrderError("900001", "symbol not exists")
            out.append({"symbol": s, "takerFeeRate": dec_str(ex.taker_fee), "makerFeeRate": dec_str(ex.maker_fee)})
        return out

    async def base_fee(self, request, body, mm, pool, now):
        ex = self.sim.exchange
        return {"takerFeeRate": dec_str(ex.taker_fee), "makerFeeRate": dec_str(ex.maker_fee)}

    async def accounts(self, request, body, mm, pool, now):
        return self.sim.exchange.accounts_view(request.query.get("currency"), request.query.get("type"))

    async def hf_opened(self, request, body, mm, pool, now):
        return True

    # ---- HF orders ---------------------------------------------------------------------------
    def _order_body(self, body: bytes):
        try:
            return json.loads(body) if body else None
        except ValueError:
            raise OrderError("400100", "Parameter Error: body is not valid JSON") from None

    async def _place(self, request, body, pool, now, view):
        sim = self.sim
        doc = self._order_body(body)
        coid = doc.get("clientOid") if isinstance(doc, dict) and isinstance(doc.get("clientOid"), str) else ""
        rej = sim.faults.take_reject(coid)
        if rej is not None:
            raise OrderError(*rej)
        od, early, late = sim.exchange.place(doc)
        data = view(od)
        late_ms = sim.faults.late_fills_ms
        if late_ms and late:
            asyncio.get_running_loop().call_later(late_ms / 1000.0, sim.hub.publish_private, late)
            now_events = early
        else:
            now_events = early + late
        lost = sim.faults.take_after_execute(od.client_oid)
        if lost is not None:
            return await self._lost_answer(request, lost, now_events)
        resp = self._json(200, {"code": "200000", "data": data}, pool, now)
        if sim.faults.events_before_response:
            # Real KuCoin often pushes orderChange before the REST answer (brief): write the
            # frames first and answer once they are on the wire (1 s cap).
            futs = sim.hub.publish_private(now_events)
            if futs:
                await asyncio.wait(futs, timeout=1.0)
            return resp
        await resp.prepare(request)
        await resp.write_eof()
        sim.hub.publish_private(now_events)
        return resp

    async def _lost_answer(self, request, how, events) -> web.StreamResponse:
        """The order executed (its events go out as usual), but its answer is lost: what a
        client sees when the gateway fails after the matching engine took the order
        (docs/kucoin.md 1.6). A gateway page is HTML, not KuCoin's JSON envelope."""
        sim = self.sim
        futs = sim.hub.publish_private(events)
        if futs:
            await asyncio.wait(futs, timeout=1.0)
        if how == "reset":
            if request.transport is not None:
                request.transport.abort()      # RST: the client's read fails mid-response
            raise asyncio.CancelledError()
        if how == "hang":
            await asyncio.sleep(sim.faults.after_execute_hang_ms / 1000.0)
            how = 504
        title = {500: "500 Internal Server Error", 502: "502 Bad Gateway",
                 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}[how]
        page = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}"
                f"</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n")
        return web.Response(status=how, text=page, content_type="text/html")

    async def order_place(self, request, body, mm, pool, now):
        return await self._place(request, body, pool, now,
                                 lambda od: {"orderId": od.order_id, "clientOid": od.client_oid})

    async def order_sync(self, request, body, mm, pool, now):
        return await self._place(request, body, pool, now, self.sim.exchange.sync_view)

    async def order_test(self, request, body, mm, pool, now):
        # docs/kucoin.md 5.3: validated (signature, parameters, increments), never matched,
        # not queryable; the balance is not checked (exchange.place(test=True)).
        rej = self.sim.faults.take_reject()
        if rej is not None:
            raise OrderError(*rej)
        od, _, _ = self.sim.exchange.place(self._order_body(body), test=True)
        return {"orderId": od.order_id, "clientOid": od.client_oid}

    def _lookup(self, request, mm):
        sym = request.query.get("symbol")
        if not sym:
            raise OrderError("400100", "Parameter Error: symbol is required")
        by_coid = "/client-order/" in request.path
        od = self.sim.exchange.find(order_id=None if by_coid else mm["id"],
                                    client_oid=mm["id"] if by_coid else None, symbol=sym)
        if od is not None and self.sim.faults.hidden(od.created_ms, int(time.time() * 1000)):
            return None
        return od

    async def order_get(self, request, body, mm, pool, now):
        od = self._lookup(request, mm)
        if od is None:
            # docs/kucoin.md 5.8: texts seen "order not exist."; HTTP status not documented.
            raise OrderError("400100", "order not exist.")
        return self.sim.exchange.order_view(od)

    async def order_cancel(self, request, body, mm, pool, now):
        # Every simulated order is done at arrival (market / IOC / FOK), so a cancel always
        # meets a done or unknown order: docs/kucoin.md 5.8.
        self._lookup(request, mm)
        raise OrderError("400100", "order_not_exist_or_not_allow_to_cancel")

    async def orders_active(self, request, body, mm, pool, now):
        if not request.query.get("symbol"):
            raise OrderError("400100", "Parameter Error: symbol is required")
        return []

    async def orders_active_symbols(self, request, body, mm, pool, now):
        # Nothing rests on the simulator (market / IOC / FOK only): no symbol has an active order.
        return {"symbols": []}

    async def fills(self, request, body, mm, pool, now):
        ex = self.sim.exchange
        sym, oid = request.query.get("symbol"), request.query.get("orderId")
        if not sym:
            raise OrderError("400100", "Parameter Error: symbol is required")
        items = []
        for od in ex.orders.values():
            if od.symbol == sym and (not oid or od.order_id == oid):
                items.extend(ex.fills_view(od))
        items.sort(key=lambda f: -f["id"])
        return {"items": items[:100], "lastId": items[-1]["id"] if items else 0}
