"""Unwind: sell a triangle's leftovers back to its start currency (docs/design.md 6.7).

Owns: `Unwinder`, the unwind worker (its own thread, `Unwinder.run`, started by run.py when
`unwind = market`), its orders and their report records (report.UnwindReport, one per
request: UNWOUND or UNWIND_FAILED, linked to the triangle's corr).

API (for any thread: executors after a FAILED / ABORTED / PARTIAL triangle, run.py at
start-up for earlier sessions' leftovers, the kill switch):

    unwinder.request(held, start_ccy, corr, reason, ref_books=None)   # never blocks
    unwinder.drain(timeout) -> bool     # True once every request so far is reported

`held` is [(amount, currency)]; amounts <= 0 and the start currency itself are ignored.
`ref_books` maps a symbol to the (best ask, best bid) the triangle was signalled on: the
reference of the cost in bps and of `unwind_max_loss_bps` (without it, the book's best
prices when the unwind starts).

Per currency: currencies in `keep` are never sold (reported `kept=`); the route is the
direct symbol when one has a price, else the best two-hop path through the books held
(holdings.Valuer's pairs); each order is sized exactly like a triangle leg (cascade.size_leg: fee hold,
increments, minimums); an amount below the first symbol's minimum is dust (reported
`dust=`, never sent). With `unwind_max_loss_bps` > 0 every order is a limit IOC at the
reference price moved by that many bps against us (cascade.size_limit), so what would fill
worse is not sold and stays reported as held (`held=`); with 0 a market order.

Orders: clientOid `tu<corr hex>r<session hex>n<n>` (at most 40 characters, docs/kucoin.md
5.2): ours (the `t` prefix), never a triangle leg (the hot thread routes only `ta...`,
privwire / rings.parse_client_oid). Live: POST /api/v1/hf/orders/sync (the answer carries the
exchange's figures, docs/kucoin.md 5.4); an ambiguous answer (5xx, lost) is looked up by
clientOid for order_lookup_ms (5.11), and a leg still unknown then is reported unknown;
a clear rejection means not placed. Paper: the order-test endpoint, then a fill walked on
the local book, as the executors do.

Isolation (docs/design.md 5.4): while an unwind order is out, the worker sets the last cell
of `rate_backoff_ns` (its own cell; the hot thread signals nothing while a cell lies in the
future, pipeline.pick_and_stage, and counts it as rate_backoff) and first waits until no
in-flight triangle uses the order's symbol: an unwind never takes depth a triangle counted on.
"""
from __future__ import annotations

import math
import queue
import threading
import time

import books
import cascade
import holdings
import report
import slots as slotmod
from kucoin import KucoinError, NotFound, OrderRejected, RateLimited, AuthError

PAUSE_NS = 5_000_000_000       # an unwind order's pause of new signals (cleared when done)


def client_oid(corr: int, session: int, n: int) -> str:
    """An unwind order's clientOid: at most 2 + 16 + 1 + 8 + 1 + 6 = 34 characters."""
    return f"tu{corr:x}r{session & 0xFFFFFFFF:x}n{n}"


def is_unwind_oid(oid: str) -> bool:
    return oid.startswith("tu")


class Unwinder:
    def __init__(self, sh, cfg, client, emit, log, session: int):
        self.sh = sh
        self.uni = sh.universe
        self.cfg = cfg
        self.client = client
        self.emit = emit
        self.log = log
        self.session = session
        self.paper = cfg.mode == "paper"
        self.keep = set(cfg.keep)
        self.max_loss_bps = float(cfg.unwind_max_loss_bps)
        self.lookup_s = cfg.order_lookup_ms / 1000.0
        self.valuer = holdings.Valuer(sh.universe, sh.book_px, sh.book_sz)
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.cv = threading.Condition()
        self.pending = 0
        self.n = 0
        self.pause_cell = len(sh.rate_backoff_ns) - 1
        self.book_wait_s = 15.0

    # -- API --------------------------------------------------------------------------------
    def request(self, held, start_ccy: str, corr: int, reason: str, ref_books=None) -> None:
        """Queue an unwind; returns at once. See the module docstring."""
        with self.cv:
            self.pending += 1
        self.q.put(([(float(a), str(c)) for a, c in held], str(start_ccy), int(corr), str(reason),
                    dict(ref_books or {})))

    def drain(self, timeout: float) -> bool:
        """Wait until every request so far has its record out (True), or timeout (False)."""
        with self.cv:
            return self.cv.wait_for(lambda: self.pending == 0, timeout)

    # -- the worker -------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            try:
                item = self.q.get(timeout=0.25)
            except queue.Empty:
                if self.sh.stop.is_set():
                    return
                continue
            try:
                self.unwind(*item)
            finally:
                with self.cv:
                    self.pending -= 1
                    self.cv.notify_all()

    def unwind(self, held, start: str, corr: int, reason: str, ref_books: dict) -> report.UnwindReport:
        rec = report.UnwindReport(status=report.UNWOUND, ts_ms=0, corr=corr, start=start, reason=reason,
                                  mode=self.cfg.mode, requested=[(a, c) for a, c in held if a > 0 and c != start])
        ref_value = 0.0
        for amount, ccy in rec.requested:
            if ccy in self.keep:
                rec.kept.append((amount, ccy))
                continue
            sold_before = sum(lg.spent for lg in rec.legs if lg.from_ccy == ccy)
            try:
                self._one(rec, amount, ccy, start, ref_books)
            except Exception as e:   # never lose the record of orders already placed
                rec.left.append((amount, ccy, f"{e.__class__.__name__}: {e}"))
            sold = sum(lg.spent for lg in rec.legs if lg.from_ccy == ccy) - sold_before
            if sold > 0.0:
                rate = self._ref_rate(ccy, start, ref_books)
                ref_value += sold * rate if rate else math.nan
        rec.ref_value = ref_value if rec.legs and math.isfinite(ref_value) and ref_value > 0 else None
        if rec.left or rec.unknown_legs():
            rec.status = report.UNWIND_FAILED
            rec.error = "; ".join(f"{report.fmt_num(a)} {c}: {w}" for a, c, w in rec.left) or "an order's outcome is unknown"
        rec.ts_ms = time.time_ns() // 1_000_000
        self.emit(rec)
        return rec

    # -- one currency -----------------------------------------------------------------------
    def _one(self, rec, amount: float, ccy: str, start: str, ref_books: dict) -> None:
        route = self._route(ccy, start)
        if route is None:
            rec.left.append((amount, ccy, f"no route from {ccy} to {start} through synced books"))
            return
        factor = None
        if self.max_loss_bps > 0.0:
            # the bound is on the whole route: what the leftover fetches, before fees, is never
            # below its value at the reference prices less unwind_max_loss_bps; each hop's
            # limit is its best price now moved by the same share of the room left
            ref = self._ref_rate(ccy, start, ref_books)
            cur = 1.0
            for sym, side, _, _ in route:
                cur *= self._px_rate(sym, side, self._best_px(sym, side))
            if not (ref and cur > 0.0):
                rec.left.append((amount, ccy, "no reference price for unwind_max_loss_bps"))
                return
            factor = (ref * (1.0 - self.max_loss_bps / 1e4) / cur) ** (1.0 / len(route))
        amt, first = amount, True
        for sym, side, frm, to in route:
            rules = self.uni.rules[sym]
            lg = self._order(rec, sym, side, frm, to, amt, factor, first)
            if isinstance(lg, str):          # not placed: dust (first hop) or held
                why = lg
                if first and ("below" in why):
                    rec.dust.append((amt, frm, why))
                else:
                    rec.left.append((amt, frm, why))
                return
            if lg.unknown:
                return
            rest = amt - lg.spent
            if first and rest > 0.0 and (lg.filled_sz <= 0.0 or lg.unfilled > 0.0):
                rec.left.append((rest, frm, "not filled within unwind_max_loss_bps" if self.max_loss_bps > 0
                                 else "not filled"))
            elif rest > 1e-9 * amt:
                rec.dust.append((rest, frm, f"increment rounding on {rules.symbol}"))
            if lg.received <= 0.0:
                return
            amt, first = lg.received, False

    def _route(self, a: str, b: str):
        """[(sym, side, from, to)] of the best direct or two-hop route at the current best
        prices (waiting up to book_wait_s for the books to sync), or None."""
        deadline = time.monotonic() + self.book_wait_s
        while True:
            best, best_rate = None, 0.0
            for hops in self._routes(a, b):
                if best is not None and len(hops) > len(best):
                    # a direct symbol with a price wins over any two-hop path: one order, one
                    # fee; a two-hop path that beats it after two fees is a mispricing other
                    # traders race for, so its IOC orders often come back unfilled
                    break
                rate = 1.0
                for sym, side, _, _ in hops:
                    r = self._hop_rate(sym, side)
                    if r is None:
                        rate = 0.0
                        break
                    rate *= r
                if rate > best_rate:
                    best, best_rate = hops, rate
            if best is not None or time.monotonic() >= deadline or self.sh.stop.is_set():
                return best
            time.sleep(0.1)

    def _routes(self, a: str, b: str):
        pairs = self.valuer.pairs
        for sym, _bs, invert in pairs.get((a, b), ()):
            yield [(sym, cascade.LEG_BUY if invert else cascade.LEG_SELL, a, b)]
        for m in sorted(self.valuer.neighbours.get(a, ())):
            if m == b:
                continue
            for s1, _, i1 in pairs.get((a, m), ()):
                for s2, _, i2 in pairs.get((m, b), ()):
                    yield [(s1, cascade.LEG_BUY if i1 else cascade.LEG_SELL, a, m),
                           (s2, cascade.LEG_BUY if i2 else cascade.LEG_SELL, m, b)]

    def _hop_rate(self, sym: int, side: int):
        if self.sh.book_state["status"][sym] != books.BOOK_SYNCED:
            return None
        bs = books.SIDE_ASK if side == cascade.LEG_BUY else books.SIDE_BID
        p = float(self.sh.book_px[sym, bs, 0])
        if not (p > 0.0 and float(self.sh.book_sz[sym, bs, 0]) > 0.0):
            return None
        fee = self.uni.rules[sym].taker_fee
        return (1.0 / p if side == cascade.LEG_BUY else p) * (1.0 - fee)

    def _best_px(self, sym: int, side: int) -> float:
        bs = books.SIDE_ASK if side == cascade.LEG_BUY else books.SIDE_BID
        return float(self.sh.book_px[sym, bs, 0])

    @staticmethod
    def _px_rate(sym: int, side: int, p: float) -> float:
        return (1.0 / p if side == cascade.LEG_BUY else p) if p > 0.0 and math.isfinite(p) else 0.0

    def _ref_rate(self, a: str, b: str, ref_books: dict):
        """Units of b per unit of a at the reference prices, no fee: the best route whose
        every symbol the triangle was signalled on (ref_books), else the best route now."""
        best = None
        for hops in self._routes(a, b):
            rate = 1.0
            for sym, side, _, _ in hops:
                pair = ref_books.get(self.uni.symbols[sym])
                p = (pair[0] if side == cascade.LEG_BUY else pair[1]) if pair else 0.0
                rate *= self._px_rate(sym, side, float(p or 0.0))
            if rate > 0.0 and (best is None or rate > best):
                best = rate
        if best is not None:
            return best
        route = self._route(a, b)
        if route is None:
            return None
        rate = 1.0
        for sym, side, _, _ in route:
            rate *= self._px_rate(sym, side, self._best_px(sym, side))
        return rate or None

    # -- one order --------------------------------------------------------------------------
    def _order(self, rec, sym: int, side: int, frm: str, to: str, amount: float, factor,
               first: bool):
        rules = self.uni.rules[sym]
        best_bid = float(self.sh.book_px[sym, books.SIDE_BID, 0])
        limit_text = ""
        if factor is not None:
            cur = self._best_px(sym, side)
            if side == cascade.LEG_SELL:
                sized = cascade.size_limit(rules, side, amount, cur * factor, cascade.ROUND_UP)
            else:
                bound = cur / factor
                sized = cascade.size_limit(rules, side, amount / (bound * (1.0 + rules.taker_fee)), bound,
                                           cascade.ROUND_DOWN)
            if isinstance(sized, str):
                return sized
            text, value, limit_text, limit = sized
            field, otype = cascade.FIELD_SIZE, "limit"
        else:
            sized = cascade.size_leg(rules, side, amount, best_bid)
            if isinstance(sized, str):
                return sized
            field, text, value = sized
            otype, limit = "market", 0.0
        coid = client_oid(rec.corr, self.session, self.n)
        self.n += 1
        lg = report.LegReport(leg=len(rec.legs), side=side, symbol=rules.symbol, from_ccy=frm, to_ccy=to,
                              order_field=field, order_text=text, client_oid=coid, fee_ccy=rules.quote,
                              order_type=otype, limit_price=limit_text)
        self._pause(sym)
        try:
            self._place(lg, rules, side, field, text, limit_text, sym, value, limit)
        finally:
            self.sh.rate_backoff_ns[self.pause_cell] = 0
        if lg.order_text and not lg.unknown and lg.filled_sz > 0.0:
            lg.unfilled = max(0.0, value - (lg.filled_sz if field == cascade.FIELD_SIZE else lg.filled_funds))
            if field == cascade.FIELD_SIZE and lg.unfilled <= 0.5 * rules.base_inc.value:
                lg.unfilled = 0.0
            elif field == cascade.FIELD_FUNDS and lg.unfilled <= lg.avg_px * rules.base_inc.value * 1.05:
                lg.unfilled = 0.0
        if lg.source:
            rec.legs.append(lg)
        if lg.source == "" and not lg.unknown:
            return lg.order_text or "not placed"
        return lg

    def _pause(self, sym: int) -> None:
        """No new triangle while this order is out, and none in flight on its book."""
        self.sh.rate_backoff_ns[self.pause_cell] = time.monotonic_ns() + PAUSE_NS
        time.sleep(0.002)           # a kernel call that read the cell before the store ends
        deadline = time.monotonic() + 30.0
        table = self.sh.slots
        while time.monotonic() < deadline and not self.sh.stop.is_set():
            if not any(slotmod.is_busy(table, k) and sym in (int(table[k]["sym0"]), int(table[k]["sym1"]),
                                                             int(table[k]["sym2"]))
                       for k in range(len(table))):
                break
            time.sleep(0.005)
        self.sh.rate_backoff_ns[self.pause_cell] = time.monotonic_ns() + PAUSE_NS

    def _place(self, lg, rules, side: int, field: str, text: str, limit_text: str, sym: int,
               value: float, limit: float) -> None:
        """Send the order and fill lg with the exchange's figures (source rest / paper), or
        leave lg.source empty with the reason in order_text when it was not placed, or mark
        it unknown."""
        c = self.client
        kw = {"size": text} if field == cascade.FIELD_SIZE else {"funds": text}
        otype = "limit" if limit_text else "market"
        sname = "buy" if side == cascade.LEG_BUY else "sell"
        lg.written_ns = time.monotonic_ns()
        try:
            if self.paper:
                c.test_order(rules.symbol, sname, lg.client_oid, type=otype, price=limit_text or None,
                             time_in_force="IOC" if limit_text else None, **kw)
            else:
                o = c.place_order_sync(rules.symbol, sname, lg.client_oid, type=otype,
                                       price=limit_text or None, time_in_force="IOC" if limit_text else None,
                                       **kw)
        except (OrderRejected, RateLimited, AuthError) as e:
            # a clear rejection: not placed (docs/kucoin.md 1.6, 5.9)
            lg.response_ns = time.monotonic_ns()
            self.log(f"unwind: {lg.client_oid} {rules.symbol} {sname} {field}={text} rejected: {e}")
            lg.order_text = f"rejected: {getattr(e, 'code', '')} {e}".strip()
            return
        except KucoinError as e:
            lg.response_ns = time.monotonic_ns()
            self._settle(lg, rules, f"ambiguous answer: {e}")
            return
        lg.response_ns = time.monotonic_ns()
        if self.paper:
            if limit_text:
                from executor import books_walk_limit
                base, notional = books_walk_limit(self.sh.book_px, self.sh.book_sz, sym, side, value, limit)
            elif side == cascade.LEG_BUY:
                base, notional = books.walk_buy_funds(self.sh.book_px, self.sh.book_sz, sym, value,
                                                      rules.base_inc.value)
            else:
                base = value
                notional = books.walk_sell_size(self.sh.book_px, self.sh.book_sz, sym, value)
            lg.set_fills(base, notional, rules.taker_fee)
            lg.source = "paper"
        else:
            lg.order_id = str(o.get("orderId") or o.get("id") or "")
            lg.set_fills(float(o.get("dealSize") or 0), float(o.get("dealFunds") or 0), rules.taker_fee)
            lg.source = "rest"
        lg.n_matches = 1 if lg.filled_sz > 0 else 0
        lg.last_fill_ns = time.monotonic_ns()

    def _settle(self, lg, rules, why: str) -> None:
        """An ambiguous answer: look the order up by clientOid (docs/kucoin.md 5.11) until it
        is found done, or order_lookup_ms passes (then it is unknown). An active order is
        cancelled first."""
        self.log(f"unwind: {lg.client_oid}: {why}; looking it up")
        deadline = time.monotonic() + self.lookup_s
        pause, cancelled = 0.05, False
        while True:
            try:
                o = self.client.get_order_by_client_oid(lg.client_oid, rules.symbol)
            except NotFound:
                o = None
            except KucoinError as e:
                self.log(f"unwind: lookup {lg.client_oid}: {e}")
                o = None
            if o is not None:
                if o.get("active") or o.get("isActive"):
                    if not cancelled:
                        cancelled = True
                        try:
                            self.client.cancel_order_by_client_oid(lg.client_oid, rules.symbol)
                        except KucoinError:
                            pass
                else:
                    lg.order_id = str(o.get("id") or "")
                    lg.set_fills(float(o.get("dealSize") or 0), float(o.get("dealFunds") or 0), rules.taker_fee)
                    lg.source = "rest"
                    return
            if time.monotonic() >= deadline:
                lg.unknown = True
                lg.source = "rest"
                self.log(f"unwind: {lg.client_oid}: outcome unknown after {self.lookup_s:.1f}s")
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
