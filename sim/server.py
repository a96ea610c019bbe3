"""sim/server.py: a KuCoin-compatible spot exchange simulator on 127.0.0.1 (docs/design.md 7).

One asyncio process, one port: KuCoin's REST API (sim/rest.py) and its WebSocket at
/endpoint (sim/ws.py) over a moving market with planted triangular mispricings
(sim/market.py, sim/book.py, sim/mispricing.py) and one account that trades by market
orders (sim/exchange.py), with faults on demand (sim/faults.py).

Run:   python -m sim --port 0 --seed 1 --symbols 60 --balances USDT=1000
       prints one line "sim: serving http://127.0.0.1:PORT ws=... symbols=N ..." and
       exits cleanly on SIGTERM/SIGINT. With --tls it serves https and wss on the same port
       (as KuCoin, docs/kucoin.md 2.1, 2.2), with a certificate from a test CA made at
       start-up (sim/certs.py); the start line then reads "sim: serving https://127.0.0.1:PORT
       ws=wss://127.0.0.1:PORT/endpoint ... ca=PATH", PATH being the CA certificate (PEM) to
       trust (--ca-out PATH chooses it; otherwise a temporary file removed at exit). Credentials: --api-key/--api-secret/--api-passphrase
       or SIM_API_KEY/SIM_API_SECRET/SIM_API_PASSPHRASE (the secret and passphrase are
       never printed).
Test:  python -m pytest -q tests/test_sim.py
       (tests/conftest.py has the fixtures that start this process).

Control/inspection API (not KuCoin; unsigned; loopback only):
  GET  /sim/mispricings         planted mispricings [{id, t_ms, currencies, symbols, sides,
                                moved_symbol, moved_side, moved_price, bps, size,
                                size_currency, taken_t_ms}]
  GET  /sim/book?symbol=S       the full book {symbol, sequence (int), time, bids, asks}
  GET  /sim/balances            {ccy: {available, hold, total}} exact strings
  GET  /sim/orders              every order as its REST view
  GET  /sim/state               faults, counters, connections, market settings
  POST /sim/control  JSON, any of:
    drop_frames (p<1 | n>=1 | {probability|count, scope: public|private|all, kind: an
    orderChange type such as "match" or "filled", or "balance": private frames of that kind only}),
    delay_frames_ms, sequence_gap ({symbol, count}), disconnect ("all"|"public"|"private"|
    connectId, or {which, abrupt}), expire_tokens (true), rest_5xx (n | {count, status}),
    rest_429 (n), rest_5xx_after_execute (n | {count, status: 500|502|503|504|"reset"|"hang",
    hang_ms}: the next n order placements execute and push their events, then the answer
    is a gateway HTML page with that status, a reset connection, or nothing for hang_ms),
    order_visibility_delay_ms (lookups by orderId/clientOid answer "order not exist." until
    the order is this old), reject_orders (n | {count, code, msg}), partial_fill (n | {count, fraction}),
    (rest_5xx_after_execute, reject_orders and partial_fill also take "client_oid_suffix": only
    orders whose clientOid ends with it count, e.g. "l1" for a triangle's leg 1),
    late_fills_ms, events_before_response (bool), reset_faults (true),
    close_rest_conns (true: close every kept-alive REST connection but the control
    request's own, as a venue's idle timeout does), paused (bool), update_rate, mispricing_rate, mispricing_bps, take_delay_ms,
    plant ({bps?, primary?} -> the record), set_book ({symbol, bids, asks}),
    set_balances ({ccy: amount}), enable_symbol / disable_symbol (symbol),
    rate_limits ({spot|public|management: quota}), reset_rate_limits (true), rate_window_ms
    (the windows' length, 30000 as on KuCoin; GET /sim/state shows each pool's `limited`
    count of requests refused for quota and its `peak` weight in one window),
    reject_orders {after: n} lets n placements through first, and code "429000" answers
    HTTP 429; move_price ({currency, factor}: its fair price times factor, its books requoted
    at once), clock_offset_ms (this exchange's clock runs that far ahead of the host's),
    ping_interval_ms, ping_timeout_ms, ws_connects_per_min, pong_id (bool: false answers
    pings with {"type":"pong","timestamp":...} and no id, as in the real captures),
    inject_frame ({scope: "public"|"private", data: "<text>"} or {scope, b64: "<base64>"},
      optional opcode: 1 text (default) | 2 binary): sends the bytes exactly as given (data
      as UTF-8; b64 decoded, so invalid UTF-8 and any byte are possible; no JSON
      re-encoding) as one WebSocket frame to every connection of that scope (public = every
      public WS connection, private = every private one, subscribed or not), queued after
      what each already has, never dropped or delayed by the other faults. Answers
      {"injected": number of connections}. For robustness tests: a frame no venue sends.
  Answers {"ok": true, ...results}; a bad value answers HTTP 400 {"ok": false, "error"}.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import selectors
import signal
import socket
import time
from decimal import Decimal

from aiohttp import web

from .exchange import Exchange
from .faults import Faults
from .book import dec_str
from .market import DEFAULT_DATA, Market, load_symbols, select_symbols
from .rest import Rest, VIP_QUOTAS
from .ws import WsHub

DEFAULT_BALANCES = "USDT=1000,USDC=1000,BTC=0.02,ETH=0.4,KCS=100"


def parse_balances(s: str) -> dict[str, Decimal]:
    out = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        ccy, _, amt = part.partition("=")
        out[ccy.strip().upper()] = Decimal(amt.strip())
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="KuCoin-compatible exchange simulator (loopback only)")
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port (printed)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--symbols", default="60", help="N symbols rich in hub triangles, or 'all'")
    ap.add_argument("--symbols-file", default=str(DEFAULT_DATA))
    ap.add_argument("--depth", type=int, default=120, help="levels per side")
    ap.add_argument("--api-key", default=os.environ.get("SIM_API_KEY", "sim-api-key"))
    ap.add_argument("--api-secret", default=os.environ.get("SIM_API_SECRET", "sim-api-secret"))
    ap.add_argument("--api-passphrase", default=os.environ.get("SIM_API_PASSPHRASE", "sim-api-passphrase"))
    ap.add_argument("--balances", default=DEFAULT_BALANCES)
    ap.add_argument("--taker-fee", default="0.001")
    ap.add_argument("--maker-fee", default=None, help="default: the taker fee")
    ap.add_argument("--update-rate", type=float, default=200.0, help="level2 messages/s over all symbols")
    ap.add_argument("--mispricing-rate", type=float, default=0.5, help="planted mispricings per second")
    ap.add_argument("--mispricing-bps", type=float, default=25.0, help="profit after taker fees")
    ap.add_argument("--take-delay-ms", type=int, default=400, help="other traders take a mispricing after")
    ap.add_argument("--vip", type=int, default=0, choices=sorted(VIP_QUOTAS))
    ap.add_argument("--rate-limits", default="", help="quota overrides per 30 s, e.g. public=2000,spot=4000")
    ap.add_argument("--ping-interval-ms", type=int, default=18000)
    ap.add_argument("--ping-timeout-ms", type=int, default=10000)
    ap.add_argument("--no-pong-id", action="store_true",
                    help="answer pings without an id, as the real captures show (docs/kucoin.md 8.15)")
    ap.add_argument("--token-ttl-s", type=float, default=86400.0)
    ap.add_argument("--ws-connects-per-min", type=int, default=30, help="0 = unlimited")
    ap.add_argument("--late-fills-ms", type=int, default=0)
    ap.add_argument("--delay-frames-ms", type=int, default=0)
    ap.add_argument("--drop-frames", type=float, default=0.0, help="<1 probability, >=1 count")
    ap.add_argument("--events-after-response", action="store_true",
                    help="answer order REST calls before pushing their private events")
    ap.add_argument("--paused", action="store_true", help="start with the random walk paused")
    ap.add_argument("--nice", type=int, default=0, help="lower the simulator's CPU priority "
                    "(e.g. 19) so that waking it never preempts the engine on a shared core")
    ap.add_argument("--cpus", default="", help="pin the simulator to these CPUs, e.g. 1 or 2,3 "
                    "(keeps it from preempting the engine on a shared core; see README latency)")
    ap.add_argument("--tls", action="store_true",
                    help="serve https:// and wss:// (as KuCoin) with a certificate from a test CA "
                    "made at start-up; the CA certificate's path is printed as ca=PATH")
    ap.add_argument("--ca-out", default="", help="with --tls: write the CA certificate (PEM) here")
    ap.add_argument("--tls-names", default="127.0.0.1,localhost,::1",
                    help="with --tls: the names the server certificate is valid for")
    ap.add_argument("--replay", default="", metavar="FEED",
                    help="serve a recording (runs/<start>/feed.zst, or a tests/data capture) as the "
                    "market instead of the synthetic one (sim/replay.py)")
    ap.add_argument("--replay-speed", type=float, default=1.0, help="recorded seconds per second")
    ap.add_argument("--replay-wait-ms", type=float, default=1000.0,
                    help="the recording starts this long after the first level2 subscription")
    ap.add_argument("--take-latency", default="", help="with --replay: other traders take an edge "
                    "after lognormal:MEDIAN_MS:SIGMA, uniform:LO_MS:HI_MS or const:MS (default "
                    "--take-delay-ms)")
    ap.add_argument("--plant-log", default="", metavar="FILE",
                    help="append the time.monotonic_ns of every planted mispricing to FILE, one per "
                    "line (profiles/bench_latency.py: plant -> receipt, the wait before a read)")
    ap.add_argument("--busy-poll", action="store_true",
                    help="the event loop polls without sleeping (SpinSelector): a latency rig "
                    "setting that burns a CPU; see SpinSelector")
    return ap


class Sim:
    """Wiring of market, exchange, WS hub, REST and faults; /sim/ control endpoints."""

    def __init__(self, args):
        syms = load_symbols(args.symbols_file)
        n = None if str(args.symbols).lower() == "all" else int(args.symbols)
        chosen = select_symbols(syms, n)
        self.api_key, self.api_secret, self.api_passphrase = args.api_key, args.api_secret, args.api_passphrase
        self.passphrase_hmac = base64.b64encode(
            hmac.new(args.api_secret.encode(), args.api_passphrase.encode(), hashlib.sha256).digest()).decode()
        self.vip = args.vip
        self.seed = args.seed
        taker = Decimal(args.taker_fee)
        if getattr(args, "replay", ""):      # a recorded market (sim/replay.py)
            from .replay import ReplayMarket
            self.market = ReplayMarket(args.replay, seed=args.seed, speed=args.replay_speed,
                                       take_delay_ms=args.take_delay_ms,
                                       take_latency=args.take_latency, taker_fee=float(taker))
            self.market.wait_ms = args.replay_wait_ms
        else:
            self.market = Market(chosen, seed=args.seed, depth=args.depth, update_rate=args.update_rate,
                                 mispricing_rate=args.mispricing_rate, mispricing_bps=args.mispricing_bps,
                                 take_delay_ms=args.take_delay_ms, taker_fee=float(taker))
        self.market.paused = args.paused
        if getattr(args, "plant_log", ""):
            self.market.plant_log = open(args.plant_log, "ab", buffering=0)
        self.faults = Faults(args.seed)
        self.faults.late_fills_ms = args.late_fills_ms
        self.faults.delay_frames_ms = args.delay_frames_ms
        if args.drop_frames:
            self.faults.set_drop(args.drop_frames if args.drop_frames < 1 else int(args.drop_frames))
        self.faults.events_before_response = not args.events_after_response
        self.exchange = Exchange(self.market, taker_fee=taker,
                                 maker_fee=Decimal(args.maker_fee) if args.maker_fee else taker,
                                 balances=parse_balances(args.balances), seed=args.seed)
        self.user_id = hashlib.sha1(f"sim-user-{args.api_key}".encode()).hexdigest()[:24]
        self.hub = WsHub(self.market, self.faults, user_id=self.user_id, ping_interval_ms=args.ping_interval_ms,
                         ping_timeout_ms=args.ping_timeout_ms, token_ttl_s=args.token_ttl_s,
                         connects_per_min=args.ws_connects_per_min)
        self.hub.pong_id = not args.no_pong_id
        if getattr(args, "replay", ""):      # the recording waits for a level2 subscriber
            self.market.ready = lambda: any(k[0] == "/market/level2" and v for k, v in self.hub.subs.items())
        self.rest = Rest(self)
        for part in filter(None, args.rate_limits.split(",")):
            pool, _, q = part.partition("=")
            if pool.strip() not in self.rest.limiter.quota:
                raise SystemExit(f"--rate-limits: unknown pool {pool!r} (spot, management, public)")
            self.rest.limiter.quota[pool.strip()] = int(q)
        self.started_mono = time.monotonic()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/endpoint", self.hub.handle)
        app.router.add_get("/sim/mispricings", self.sim_mispricings)
        app.router.add_get("/sim/book", self.sim_book)
        app.router.add_get("/sim/balances", self.sim_balances)
        app.router.add_get("/sim/orders", self.sim_orders)
        app.router.add_get("/sim/state", self.sim_state)
        app.router.add_post("/sim/control", self.sim_control)
        app.router.add_route("*", "/{tail:.*}", self.rest.dispatch)
        return app

    async def market_loop(self) -> None:
        """Advance the market's virtual clock to the wall clock every 10 ms."""
        while True:
            await asyncio.sleep(0.01)
            self.market.advance((time.monotonic() - self.started_mono) * 1000.0)

    # ---- /sim/ ---------------------------------------------------------------------------
    async def sim_mispricings(self, request):
        return web.json_response(self.market.public_records())

    async def sim_book(self, request):
        b = self.market.books.get(request.query.get("symbol", ""))
        if b is None:
            return web.json_response({"error": "unknown symbol"}, status=404)
        snap = b.snapshot(None)
        return web.json_response({"symbol": b.symbol, "sequence": b.seq, "time": snap["time"],
                                  "bids": snap["bids"], "asks": snap["asks"]})

    async def sim_balances(self, request):
        return web.json_response({c: {"available": dec_str(a), "hold": dec_str(h), "total": dec_str(a + h)}
                                  for c, (a, h) in sorted(self.exchange.bal.items())})

    async def sim_orders(self, request):
        return web.json_response([self.exchange.order_view(o) for o in self.exchange.orders.values()])

    async def sim_state(self, request):
        m = self.market
        return web.json_response({
            "faults": self.faults.state(), "ws": self.hub.state(), "market": {
                "symbols": len(m.symbols), "triangles": len(m.triangles), "paused": m.paused,
                "update_rate": m.update_rate, "mispricing_rate": m.mispricing_rate,
                "mispricing_bps": m.mispricing_bps, "take_delay_ms": m.take_delay_ms,
                "frozen": sorted(m.frozen), "counters": dict(m.counters)},
            "exchange": dict(self.exchange.counters),
            "rate_limits": {"quota": self.rest.limiter.quota, "used": self.rest.limiter.used,
                            "limited": self.rest.limiter.limited, "peak": self.rest.limiter.peak,
                            "window_ms": self.rest.limiter.window_ms},
            "clock_offset_ms": self.rest.clock_offset_ms})

    async def sim_control(self, request):
        try:
            kw = await request.json()
            if not isinstance(kw, dict):
                raise ValueError("body must be a JSON object")
            out = await self.control(kw, keep=request.transport)
        except (ValueError, KeyError, TypeError, ArithmeticError) as e:
            return web.json_response({"ok": False, "error": f"{type(e).__name__}: {e}"}, status=400)
        return web.json_response(dict(ok=True, **out))

    async def control(self, kw: dict, keep=None) -> dict:
        f, m, hub, out = self.faults, self.market, self.hub, {}
        known = {"reset_faults", "drop_frames", "delay_frames_ms", "sequence_gap", "disconnect", "expire_tokens",
                 "rest_5xx", "rest_429", "rest_5xx_after_execute", "order_visibility_delay_ms", "reject_orders", "partial_fill", "late_fills_ms", "events_before_response",
                 "paused", "update_rate", "mispricing_rate", "mispricing_bps", "take_delay_ms", "plant", "set_book",
                 "set_balances", "enable_symbol", "disable_symbol", "rate_limits", "reset_rate_limits",
                 "ping_interval_ms", "ping_timeout_ms", "ws_connects_per_min", "pong_id", "inject_frame",
                 "close_rest_conns", "rate_window_ms", "move_price", "clock_offset_ms"}
        bad = set(kw) - known
        if bad:
            raise ValueError(f"unknown control keys {sorted(bad)}")
        if kw.get("reset_faults"):
            f.reset()
            self.exchange.partial_fill[0] = 0
            m.withhold.clear()
        if "drop_frames" in kw:
            f.set_drop(kw["drop_frames"])
        if "delay_frames_ms" in kw:
            f.delay_frames_ms = int(kw["delay_frames_ms"])
        if "sequence_gap" in kw:
            g = kw["sequence_gap"]
            if g["symbol"] not in m.books:
                raise ValueError(f"unknown symbol {g['symbol']}")
            m.withhold[g["symbol"]] = int(g.get("count", 1))
        if "rest_5xx" in kw:
            v = kw["rest_5xx"]
            f.rest_5xx, f.rest_5xx_status = (int(v["count"]), int(v.get("status", 500))) if isinstance(v, dict) \
                else (int(v), 500)
        if "rest_429" in kw:
            f.rest_429 = int(kw["rest_429"])
        if "rest_5xx_after_execute" in kw:
            f.set_after_execute(kw["rest_5xx_after_execute"])
        if "order_visibility_delay_ms" in kw:
            f.order_visibility_delay_ms = max(0, int(kw["order_visibility_delay_ms"]))
        if "reject_orders" in kw:
            v = kw["reject_orders"]
            if isinstance(v, dict):
                f.reject = int(v["count"])
                f.reject_after = int(v.get("after", 0))
                f.reject_code = str(v.get("code", f.reject_code))
                f.reject_msg = str(v.get("msg", f.reject_msg))
                f.reject_match = str(v.get("client_oid_suffix", ""))
            else:
                f.reject = int(v)
                f.reject_after = 0
                f.reject_match = ""
        if "partial_fill" in kw:
            v = kw["partial_fill"]
            if isinstance(v, dict):
                self.exchange.partial_fill = [int(v["count"]), Decimal(str(v.get("fraction", "0.5"))),
                                              str(v.get("client_oid_suffix", ""))]
            else:
                self.exchange.partial_fill = [int(v), Decimal("0.5"), ""]
        if "late_fills_ms" in kw:
            f.late_fills_ms = int(kw["late_fills_ms"])
        if "events_before_response" in kw:
            f.events_before_response = bool(kw["events_before_response"])
        if "paused" in kw:
            m.paused = bool(kw["paused"])
        if "update_rate" in kw:
            m.update_rate = float(kw["update_rate"])
        if "mispricing_bps" in kw:
            m.mispricing_bps = float(kw["mispricing_bps"])
        if "take_delay_ms" in kw:
            m.take_delay_ms = int(kw["take_delay_ms"])
        if "mispricing_rate" in kw:
            m.set_mispricing_rate(float(kw["mispricing_rate"]))
        if "set_balances" in kw:
            self.exchange.set_balances(kw["set_balances"])
        if "enable_symbol" in kw:
            m.enabled[kw["enable_symbol"]] = True
        if "disable_symbol" in kw:
            if kw["disable_symbol"] not in m.enabled:
                raise ValueError("unknown symbol")
            m.enabled[kw["disable_symbol"]] = False
        if "set_book" in kw:
            v = kw["set_book"]
            if v["symbol"] not in m.books:
                raise ValueError(f"unknown symbol {v['symbol']}")
            m.set_book(v["symbol"], v.get("bids", []), v.get("asks", []))
            out["sequence"] = m.books[v["symbol"]].seq
        if "plant" in kw:
            v = kw["plant"] if isinstance(kw["plant"], dict) else {}
            rec = m.plant(bps=v.get("bps"), primary=v.get("primary"))
            out["mispricing"] = None if rec is None else {k: x for k, x in rec.items() if not k.startswith("_")}
        if "rate_limits" in kw:
            for pool, q in kw["rate_limits"].items():
                if pool not in self.rest.limiter.quota:
                    raise ValueError(f"unknown pool {pool}")
                self.rest.limiter.quota[pool] = int(q)
        if kw.get("reset_rate_limits"):
            self.rest.limiter.reset_all()
        if "rate_window_ms" in kw:
            self.rest.limiter.window_ms = max(100, int(kw["rate_window_ms"]))
        if "clock_offset_ms" in kw:
            self.rest.clock_offset_ms = int(kw["clock_offset_ms"])
        if "move_price" in kw:
            # every book with this currency follows its fair price at once (a market move)
            v = kw["move_price"]
            ccy, factor = str(v["currency"]), float(v["factor"])
            if ccy not in m.fair or ccy == "USDT" or not factor > 0:
                raise ValueError(f"move_price: unknown currency {ccy} or factor {factor}")
            m.fair[ccy] *= factor
            moved = [s for s, b in m.books.items() if ccy in (b.base, b.quote) and s not in m.frozen]
            for sym in moved:
                m.walk_symbol(sym)
            out["moved"] = moved
        if "ping_interval_ms" in kw:
            hub.ping_interval_ms = int(kw["ping_interval_ms"])
        if "ping_timeout_ms" in kw:
            hub.ping_timeout_ms = int(kw["ping_timeout_ms"])
        if "pong_id" in kw:
            hub.pong_id = bool(kw["pong_id"])
        if "ws_connects_per_min" in kw:
            hub.connects_per_min = int(kw["ws_connects_per_min"])
            hub.connect_times.clear()
        if kw.get("expire_tokens"):
            out["expired_tokens"] = hub.expire_tokens()
        if "inject_frame" in kw:
            v = kw["inject_frame"]
            if not isinstance(v, dict) or ("data" in v) == ("b64" in v):
                raise ValueError("inject_frame: {scope, data} or {scope, b64}, optional opcode")
            if "data" in v:
                if not isinstance(v["data"], str):
                    raise TypeError("inject_frame data must be a string")
                raw = v["data"].encode("utf-8")
            else:
                raw = base64.b64decode(v["b64"], validate=True)
            out["injected"] = hub.inject(v.get("scope"), raw, int(v.get("opcode", 1)))
        if kw.get("close_rest_conns"):
            out["closed_rest_conns"] = self.rest.close_conns(keep)
        if "disconnect" in kw:
            v = kw["disconnect"]
            which, abrupt = (v.get("which", "all"), bool(v.get("abrupt"))) if isinstance(v, dict) else (v, False)
            out["disconnected"] = await hub.close_conns(which if which is not True else "all", abrupt)
        return out


async def serve(args) -> int:
    sim = Sim(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))                 # loopback only, by design
    port = sock.getsockname()[1]
    sim.hub.port = port
    tls = None
    if args.tls:
        from .certs import ServerTls
        tls = ServerTls([n for n in args.tls_names.split(",") if n], args.ca_out)
        sim.hub.scheme = "wss"          # the bullet answers announce wss:// (docs/kucoin.md 2.1)
    runner = web.AppRunner(sim.app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=tls.context if tls else None)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(c) for c in (sim.market_loop(), sim.hub.flush_loop(), sim.hub.idle_loop())]
    m = sim.market
    http, ws = ("https", "wss") if tls else ("http", "ws")
    print(f"sim: serving {http}://127.0.0.1:{port} ws={ws}://127.0.0.1:{port}/endpoint symbols={len(m.symbols)} "
          f"currencies={len(m.fair)} triangles={len(m.triangles)} seed={args.seed} key={args.api_key}"
          + (f" ca={tls.ca_path}" if tls else ""), flush=True)
    try:
        await stop.wait()
        for t in tasks:
            t.cancel()
        await sim.hub.close_conns("all", abrupt=True)
        await runner.cleanup()
    finally:
        if tls is not None:
            tls.cleanup()
    return 0


class SpinSelector(selectors.EpollSelector):
    """An epoll selector whose select() polls (timeout 0) until something is ready or the
    timeout passes, never sleeping in the kernel (--busy-poll).

    Why a simulator would spin: on loopback, the engine's send() of an order runs our TCP
    receive path inside the engine's syscall, and when our thread sleeps in epoll_wait it
    also wakes it, which on this rig (a nested VM) means an inter-processor interrupt to a
    halted vCPU: profiles/probe_send.py measured 25-44 us per send() to a sleeping receiver
    and 10-14 us to a spinning one. A real exchange's sleeping threads are not woken inside
    our send(). Spinning removes that rig cost (not the loopback receive path, which a NIC
    does not run either); profiles/bench_latency.py --sim-busy-poll reports with it."""

    def select(self, timeout=None):
        end = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            ready = super().select(0)
            if ready or (end is not None and time.monotonic() >= end):
                return ready


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.nice:
        os.nice(args.nice)
    factory = (lambda: asyncio.SelectorEventLoop(SpinSelector())) if args.busy_poll else None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(serve(args))
    except KeyboardInterrupt:
        return 0

