"""Executor slots: run a triangle's three legs and write its report.

Owner: one executor thread per slot (run.py starts `Executor.run` for each). The slot's
execution state lives in one row of the shared EXEC array (EXEC_DTYPE), not on a thread's
stack, and `fire_leg` ("size and fire leg k") is one function either thread can call. With
fire_from = hot the hot thread fires leg 0 when it signals (`fire_leg0`) and, in live mode,
legs 1 and 2 when it routes the previous leg's terminal event (`fire_next_from_hot`): no GIL
hand-off before an order (docs/design.md 2 and 9). Otherwise the executor fires them.
Whoever fires a leg writes that leg's fields, the phase last; exactly one thread fires each
leg (`claim`: one dict.setdefault under the GIL); the signal ring's push orders the hot
thread's leg-0 writes before the executor reads them.

Per leg (docs/design.md 6): input = start volume (leg 0) or the previous leg's output ->
cascade.size_leg (fee hold for a buy by funds, floor to the increment, minimum checks) ->
POST on the slot's kept-alive connection for that leg (orderwire) -> the answer, classified
(kucoin.classify_order_answer: accepted, clearly rejected, or ambiguous) -> live: the
private feed's match events from the slot's fill ring until the terminal event, whose
cumulative filledSize must equal their sum; an ambiguous or lost answer, a terminal that
disagrees, or no terminal within fill_timeout_ms is settled by looking the order up by
clientOid (for order_lookup_ms, "not exist" retried: the lookup lags the placement) while
the feed keeps being read; paper: /api/v1/hf/orders/test validates the order and the fill
is simulated by walking the live book with the same rounding and fees -> output (base
received on a buy; quote received less fee on a sell) -> optional balance override from the
private balance feed -> next leg. The cancel flag is honoured between legs. Exactly one
report line per signal: FILLED / PARTIAL / FAILED / ABORTED / UNKNOWN (report.py).

Every fill event reaching the slot is accounted for: events of the current leg accumulate;
events of an UNKNOWN leg trigger its follow-up lookup (a FOLLOWUP record with the exchange's
figures); any other late event is logged as STRAY with its figures, because it means money
moved that no report line shows.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import simdjson

import books
import cascade
import holdings
import kucoin
import orderkern
import paperbook
import report
import rings
import risk
import slots as slotmod
from kucoin import KucoinClient, KucoinError, NotFound
from orderwire import OrderConn, OrderWireError, ResponseLost

# how often an idle executor looks at its order connections (orderwire.OrderConn.refresh)
TEND_INTERVAL_S = 0.25

PATH_PLACE = "/api/v1/hf/orders"
PATH_TEST = "/api/v1/hf/orders/test"    # docs/kucoin.md 5.3: validated, never matched
PATH_SYNC = "/api/v1/hf/orders/sync"    # docs/kucoin.md 5.4: answers after matching

# Leg phase codes (EXEC_DTYPE.phase[k])
PH_IDLE = 0
PH_SENT = 1       # bytes written, response not read yet
PH_OPEN = 2       # accepted, waiting for fills
PH_DONE = 3       # its outcome is known: terminal event checked, or the order looked up
PH_FAILED = 4     # not placed: rejected, not sent, or not sized
PH_UNKNOWN = 5    # the outcome could not be learned in order_lookup_ms (docs/design.md 6)

EXEC_DTYPE = np.dtype([
    # written by whoever fires leg 0 (hot thread or executor), before the signal is pushed
    ("corr", "u8"), ("tri", "i4"), ("fired0_by_hot", "u1"),
    ("in_amt", "f8", (3,)),          # amount of the held currency offered to leg k
    ("order_amt", "f8", (3,)),       # funds (buy) or size (sell) sent, float of the text
    ("phase", "i4", (3,)),
    ("signed_ns", "i8", (3,)), ("sent_ns", "i8", (3,)), ("resp_ns", "i8", (3,)),
    ("first_fill_ns", "i8", (3,)),   # receipt of the leg's first match event
    ("last_fill_ns", "i8", (3,)),    # receipt of the event that completes the leg (filled /
                                     # canceled, 4.1): its output is known from then on
    ("last_match_ns", "i8", (3,)),   # receipt of its last match event
    # written by the slot's executor only
    ("filled_sz", "f8", (3,)),       # sum of match sizes (base)
    ("filled_funds", "f8", (3,)),    # sum of match px * sz (quote notional)
    ("n_match", "i4", (3,)),
    ("terminal", "i1", (3,)),        # 0 or rings.FILL_FILLED / FILL_CANCELED
    ("term_filled_sz", "f8", (3,)),  # the terminal event's cumulative filledSize (NaN: absent)
    ("source", "i1", (3,)),          # SRC_*: whose figures filled_sz/filled_funds are
    ("woke_ns", "i8"),
    ("coid", "S40", (3,)), ("order_id", "S24", (3,)), ("order_text", "S40", (3,)),
    ("order_field", "S8", (3,)), ("fail", "S200", (3,)),
    ("limit_px", "f8", (3,)),        # a limit IOC's price (leg0_order = ioc), 0.0: market
    ("limit_text", "S24", (3,)),     # that price as sent
])




MAX_429_RETRIES = 3   # a leg 1 or 2 answered 429000 goes again after the reset, at most this often

SRC_NONE = 0
SRC_FEED = 1      # summed private match events, checked against the terminal event
SRC_REST = 2      # the order looked up by clientOid (the exchange's own totals)
SRC_PAPER = 3     # a paper fill walked on the local book
SOURCE_NAMES = ("", "feed", "rest", "paper")

# The fire path reads and writes these records with struct (rings.record_struct): one small
# C call, where each numpy field access costs ~2 us cold between two orders.
SIG_FIRE = rings.record_struct(rings.SIGNAL_DTYPE, ("corr", "tri", "start_vol", "bid0", "ask0", "bid1",
                                                    "ask1", "bid2", "ask2", "lim0", "base0"))
ROW_CORR_TRI = rings.record_struct(EXEC_DTYPE, ("corr", "tri"))
ROW_PHASES = rings.record_struct(EXEC_DTYPE, ("phase",))
SLOT_CANCEL = rings.record_struct(slotmod.INFLIGHT_DTYPE, ("cancel",))
OK_INFO_FIELDS = ("corr", "len", "text_off", "text_len", "units", "signed_ns", "px_units", "px_off",
                  "px_len", "sent", "sent_fd", "sent_ns")
OK_INFO = rings.record_struct(orderkern.INFO_DTYPE, OK_INFO_FIELDS)
OK_SENT = OK_INFO_FIELDS.index("sent")     # > 0: the kernel wrote the request (orderkern.send_built)


class _Watch:
    """An UNKNOWN leg followed up after its triangle's line (Executor._follow_up)."""
    __slots__ = ("lg", "triangle", "corr", "until", "next_at", "events")

    def __init__(self, lg, triangle, corr: int, until: float):
        self.lg, self.triangle, self.corr, self.until = lg, triangle, corr, until
        self.next_at = 0.0
        self.events = 0


def alloc_exec(n_slots: int) -> np.ndarray:
    return np.zeros(n_slots, EXEC_DTYPE)


def leg_plans(uni) -> list:
    """Per triangle, per leg: (symbol id, side, cascade.SymbolRules, order body format with
    %s for clientOid and amount). Made once and shared by every executor (cached on the
    universe): firing a leg then formats one string instead of reading numpy records."""
    plans = getattr(uni, "leg_plans", None)
    if plans is None:
        plans = []
        for t in uni.tris:
            legs = []
            for k in range(3):
                sym, side = int(t[f"sym{k}"]), int(t[f"side{k}"])
                rules = uni.rules[sym]
                field = cascade.FIELD_FUNDS if side == cascade.LEG_BUY else cascade.FIELD_SIZE
                fmt = ('{"clientOid":"%%s","side":"%s","symbol":"%s","type":"market","%s":"%%s"}'
                       % ("buy" if side == cascade.LEG_BUY else "sell", rules.symbol, field))
                legs.append((sym, side, rules, fmt))
            plans.append(tuple(legs))
        uni.leg_plans = plans
    return plans


def ioc_formats(uni) -> list:
    """Per triangle: leg 0's body as a limit IOC order (leg0_order = ioc, docs/kucoin.md 5.10),
    with %s for clientOid, price and size. Made once at start-up, like leg_plans."""
    fmts = getattr(uni, "ioc_formats", None)
    if fmts is None:
        fmts = []
        for t in uni.tris:
            side, rules = int(t["side0"]), uni.rules[int(t["sym0"])]
            fmts.append('{"clientOid":"%%s","side":"%s","symbol":"%s","type":"limit","price":"%%s",'
                        '"size":"%%s","timeInForce":"IOC"}'
                        % ("buy" if side == cascade.LEG_BUY else "sell", rules.symbol))
        uni.ioc_formats = fmts
    return fmts


class Executor:
    def __init__(self, slot: int, sh, cfg, signer, client: KucoinClient, emit, log, intent=None,
                 unwinder=None):
        """emit(report.TriangleReport) and log(str) hand lines to the log thread; never block.
        intent(tuple): the durable record of an order whose bytes are out (run.LogWriter.intent,
        docs/design.md 6.7); unwinder: unwind.Unwinder when unwind = market, else None."""
        self.slot = slot
        self.sh = sh
        self.uni = sh.universe
        self.cfg = cfg
        self.paper = cfg.mode == "paper"
        self.path = PATH_TEST if self.paper else (PATH_SYNC if cfg.order_path == "sync" else PATH_PLACE)
        self.path_b = self.path.encode()
        self.signer = signer
        self.client = client
        self.emit = emit
        self.log = log
        self.row = sh.exec_state[slot:slot + 1]      # a view: fields are written in place
        self.row_mv = rings.record_bytes(self.row)   # the same bytes (_reset, ROW_* structs)
        self.zero_row = bytes(EXEC_DTYPE.itemsize)
        self.sig_mv = rings.record_bytes(sh.sig_stage)     # the hot thread's staged signal
        self.slots_mv = rings.record_bytes(sh.slots)
        self.slot_base = slot * sh.slots.dtype.itemsize
        self.best_bid = books.BestBid(sh.book_px, sh.book_sz)   # best_bid(sym), 0.0 if none
        self.corr = 0                                # corr of the row (written by _reset)
        self.sig = np.zeros(1, rings.SIGNAL_DTYPE)
        self.fill = np.zeros(1, rings.FILL_DTYPE)
        tls_held = getattr(cfg, "tls_io", "held") == "held"
        ca_file = getattr(sh, "ca_file", "")
        self.conns = [OrderConn(sh.rest_url, timeout_s=cfg.fill_timeout_ms / 1000.0, tls_held=tls_held,
                                ca_file=ca_file) for _ in range(3)]
        self._next_tend = 0.0
        self.parser = simdjson.Parser()
        self.fill_timeout_s = cfg.fill_timeout_ms / 1000.0
        self.lookup_s = getattr(cfg, "order_lookup_ms", 15000) / 1000.0
        self.followup_s = float(getattr(cfg, "unknown_followup_s", 900))
        self.unknown: dict[str, _Watch] = {}      # clientOid -> UNKNOWN leg being followed up
        self.valuer = holdings.Valuer(sh.universe, sh.book_px, sh.book_sz)
        self.await_balance = cfg.await_balance
        self.stray = 0
        # Field views of this slot's EXEC row: per-leg fields are length-3 views, scalar
        # fields 1-element views; writing through them is one numpy item store.
        ex = sh.exec_state
        self.f = {n: (ex[n][slot] if ex.dtype[n].shape else ex[n][slot:slot + 1]) for n in ex.dtype.names}
        self.coid_fmt = [f"ta%xs{slot}l{k}" for k in range(3)]   # rings.client_oid's format
        self.plans = leg_plans(sh.universe)
        self.claims: dict = {}                # (corr, leg) -> thread ident that fires it
        self.hot_fires_legs = cfg.fire_from == "hot" and cfg.mode == "live"
        self.plan = self.plans[0] if self.plans else None
        self.ioc = getattr(cfg, "leg0_order", "market") == "ioc"
        self.ioc_fmts = ioc_formats(sh.universe) if self.ioc else None
        # leg 0's request as the chunk kernel built it (orderkern.py; leg0_build = kernel)
        self.ok_req = sh.ok_req[slot]
        self.ok_info_mv = rings.record_bytes(sh.ok_info[slot:slot + 1])
        self.intent = intent
        self.unwinder = unwinder
        self.tri = 0
        self.refs = ()            # the signal's (ask, bid) per leg, for the intent record
        self.run_id = int(getattr(sh, "run_id", 0))
        self.late_earlier = 0     # events of an earlier session's orders (docs/design.md 6.7)
        # docs/design.md 12: this executor's stop cell (429 reset, rejection back-off, the rate
        # budget's gate), the budget every answer feeds, the shared rejection back-off
        self.cell = risk.StopCell(sh.rate_backoff_ns, slot)
        self.budget = getattr(sh, "budget", None)
        self.rejects = getattr(sh, "rejects", None)
        self.limited_ms = None        # the last answer was 429000: ms to the pool's reset
        self.retries_429 = 0
        # paper_consume: a paper leg's levels come off the local book (paperbook.py)
        self.paper_book = (paperbook.PaperBook(sh, slot, sh.hot_wake_fd)
                           if self.paper and getattr(cfg, "paper_consume", False)
                           and hasattr(sh, "paper_rings") else None)

    # -- start-up -------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the three kept-alive order connections before trading starts."""
        for c in self.conns:
            c.connect()

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        sh = self.sh
        fd = sh.slot_fds[self.slot]
        buf, ctrl = sh.sig_rings[self.slot]
        while True:
            if rings.ring_pop(buf, ctrl, self.sig, 0):
                self.row["woke_ns"][0] = time.monotonic_ns()
                try:
                    self.execute(self.sig[0])
                finally:
                    if self.paper_book is not None:
                        self.paper_book.publish()   # the book shows our legs before the slot frees
                    slotmod.release(sh.slots, self.slot)
                    rings.wake(sh.hot_wake_fd)   # refused candidates may now get this slot
                continue
            if sh.stop.is_set() and not slotmod.is_busy(sh.slots, self.slot):
                return
            self._gate()      # answers read by other threads may have moved the budget
            rings.wait(fd, TEND_INTERVAL_S)
            self._drain_fills()   # events between triangles: follow-ups or strays
            if self.unknown:
                self._follow_up()
            self._tend_conns()

    def _tend_conns(self) -> None:
        """Off the order path, while the slot is idle: replace an order connection the venue
        closed (keep-alive timeout, restart) with a new one, TLS handshake included, so
        that a fire finds it open (orderwire.OrderConn.refresh). At most every
        TEND_INTERVAL_S; each check is a GIL-holding peek at the raw socket."""
        now = time.monotonic()
        if now < self._next_tend:
            return
        self._next_tend = now + TEND_INTERVAL_S
        for k, c in enumerate(self.conns):
            if slotmod.is_busy(self.sh.slots, self.slot) or self.sh.stop.is_set():
                return
            try:
                why = c.refresh()
            except OrderWireError as e:
                self.log(f"executor {self.slot}: order connection L{k} could not be replaced: {e}")
                continue
            if why:
                self.log(f"executor {self.slot}: order connection L{k} replaced ({why}) in "
                         f"{c.last_connect_us / 1000:.1f} ms")

    # -- firing -----------------------------------------------------------------------------
    def fire_leg0(self) -> int:
        """Hot thread, fire_from = hot: fire leg 0 of the staged signal (sh.sig_stage) on
        this thread, with the request the chunk kernel built for it when there is one
        (orderkern.py; returns 1 then, 2 when the kernel also wrote it: leg0_send = kernel),
        else sized and signed here (returns 0)."""
        corr, tri, start_vol, bid0, a0, b1, a1, b2, a2, lim0, base0 = SIG_FIRE.unpack_from(self.sig_mv, 0)
        self.corr = corr                 # the clientOid's; the row is reset once the bytes are out
        self.plan = self.plans[tri]
        self.refs = (a0, bid0, a1, b1, a2, b2)
        info = OK_INFO.unpack_from(self.ok_info_mv, 0)
        built = info[1] != 0 and info[0] == corr
        if built:
            self._fire_built(tri, start_vol, info)
            if info[OK_SENT] > 0:
                built = 2
        elif self.ioc:
            self.fire_leg(0, start_vol, bid0, new_tri=tri, lim=lim0, lim_base=base0)
        else:
            self.fire_leg(0, start_vol, bid0, new_tri=tri)
        # read by execute() only after the signal is pushed, which is after this
        self.f["fired0_by_hot"][0] = 1
        return built

    def _fire_built(self, tri: int, amount: float, info: tuple) -> bool:
        """Leg 0 of the staged signal with the request the chunk kernel built for it
        (orderkern.build_leg0: fire_leg's sizing, body, signature and framing, the same
        bytes). Writes it, unless the kernel already did (leg0_send = kernel: then the rest
        of it, if the socket took only part), then the same bookkeeping as fire_leg."""
        _corr, n, t_off, t_len, units, signed_ns, pu, p_off, p_len, sent, sent_fd, sent_ns = info
        req = self.ok_req[:n].tobytes()
        try:
            if sent > 0:
                sent_ns = self.conns[0].kernel_sent(sent_fd, sent, req, sent_ns)
            else:      # not written by the kernel (orderkern.send_built says why): as before
                sent_ns = self.conns[0].send(req)
        except OrderWireError as e:
            return self._leg_failed(0, amount, signed_ns, f"L0 not sent: {e}", tri)
        rules = self.plan[0][2]
        text = req[t_off:t_off + t_len].decode()
        if pu:          # a limit IOC (leg0_order = ioc): a size of base at a price
            return self._sent(0, amount, signed_ns, sent_ns, cascade.FIELD_SIZE, text,
                              units / rules.base_inc.scale, tri, pu / rules.price_inc.scale,
                              req[p_off:p_off + p_len].decode())
        if self.plan[0][1] == cascade.LEG_BUY:
            return self._sent(0, amount, signed_ns, sent_ns, cascade.FIELD_FUNDS, text,
                              units / rules.quote_inc.scale, tri)
        return self._sent(0, amount, signed_ns, sent_ns, cascade.FIELD_SIZE, text,
                          units / rules.base_inc.scale, tri)

    def warm(self, tri: int) -> int:
        """Run fire_leg's work for leg 0 of triangle `tri` on scratch values without sending
        or touching the slot's state: sizing, body, signature, request bytes. The hot thread
        calls it when it has nothing to do, because the fire path runs only a few dozen
        times a second and is cold each time: measured 15x slower than in a loop (docs/design.md
        9; README latency table). Returns the request length (so nothing is
        optimised away)."""
        sym, side, rules, body_fmt = self.plans[tri][0]
        if self.ioc:
            # a size and price that pass the checks, so that the whole sizing path runs
            px = max(1.0, rules.min_funds_f)
            sized = cascade.size_limit(rules, side, max(float(rules.base_min), 1.0) * 2.0, px)
            text = sized[0] if type(sized) is tuple else "1"
            body = (self.ioc_fmts[tri] % (self.coid_fmt[0] % 0, sized[2] if type(sized) is tuple else "1",
                                          text)).encode()
        else:
            sized = cascade.size_leg(rules, side, 1e9, 1.0)
            text = sized[1] if type(sized) is tuple else "1"
            body = (body_fmt % (self.coid_fmt[0] % 0, text)).encode()
        req = self.conns[0].post_request(self.signer, self.path_b,
                                         time.time_ns() // 1_000_000 + self.client.clock_offset_ms, body)
        return len(req)

    def _reset(self, corr: int, tri: int) -> None:
        # Every byte of the row to zero: 0, 0.0 and b"" in every field. Not `r[0] = 0`:
        # numpy casts that 0 to b"0" in the bytes fields (a leg never placed showed "0=0");
        # and not `r[0] = np.zeros((), EXEC_DTYPE)`: a structured copy field by field, measured
        # 7.4 us p50 live on the way to leg 0. A memoryview copy and one struct write: the
        # numpy memset and item writes that replaced it still cost ~2 us each, cold. On the
        # hot thread's leg 0 this runs after the bytes are out (fire_leg's new_tri).
        self.row_mv[:] = self.zero_row
        ROW_CORR_TRI.pack_into(self.row_mv, 0, corr, tri)
        self.corr = corr
        self.tri = tri
        self.plan = self.plans[tri]

    def fire_leg(self, k: int, amount: float, best_bid: float, new_tri: int = -1,
                 lim: float = 0.0, lim_base: float = 0.0) -> bool:
        """Size leg k from `amount` of the held currency and write the order. Returns False
        (with the reason in fail[k]) when the leg cannot be placed or was not sent.

        This runs between a decision (or a fill) and the order's bytes, so it touches only
        precomputed Python objects: the triangle's leg plan (symbol rules and a body format
        made once at start-up) and this slot's field views (one numpy item write each).
        new_tri >= 0: leg 0 of a new signal (fire_leg0; self.corr and self.plan already
        set); the slot row is reset (_reset) once the bytes are out, not before.
        lim > 0 (leg 0, leg0_order = ioc): a limit IOC order of lim_base base at price lim, the
        worst level the evaluation walked (docs/kucoin.md 5.10, docs/design.md 6.7)."""
        sym, side, rules, body_fmt = self.plan[k]
        coid = self.coid_fmt[k] % self.corr
        if lim > 0.0:
            sized = cascade.size_limit(rules, side, lim_base, lim)
            if type(sized) is str:
                self._leg_failed(k, amount, 0, f"L{k} not placed (IOC at {lim!r}): {sized}", new_tri)
                self.f["limit_px"][k] = lim
                return False
            text, value, lim_text, lim = sized
            field = cascade.FIELD_SIZE
            body = (self.ioc_fmts[self.tri if new_tri < 0 else new_tri] % (coid, lim_text, text)).encode()
        else:
            sized = cascade.size_leg(rules, side, amount, best_bid)
            if type(sized) is str:
                return self._leg_failed(k, amount, 0, f"L{k} not placed: {sized}", new_tri)
            field, text, value = sized
            lim_text = ""
            # docs/kucoin.md 0 and 8.6: compact JSON, signed over exactly the bytes sent.
            body = (body_fmt % (coid, text)).encode()
        conn = self.conns[k]
        req = conn.post_request(self.signer, self.path_b,
                                time.time_ns() // 1_000_000 + self.client.clock_offset_ms, body)
        signed_ns = time.monotonic_ns()
        try:
            sent_ns = conn.send(req)
        except OrderWireError as e:
            return self._leg_failed(k, amount, signed_ns, f"L{k} not sent: {e}", new_tri)
        return self._sent(k, amount, signed_ns, sent_ns, field, text, value, new_tri, lim, lim_text)

    def _sent(self, k: int, amount: float, signed_ns: int, sent_ns: int, field: str, text: str,
              value: float, new_tri: int, lim: float = 0.0, lim_text: str = "") -> bool:
        """Leg k's request is on the wire: its fields in the slot row, and its intent record."""
        # bookkeeping after the bytes are out (each numpy item write costs ~1 us cold); the
        # phase last: a thread waiting for it (_await_hot_fire) then reads complete fields
        if new_tri >= 0:
            self._reset(self.corr, new_tri)
        coid = self.coid_fmt[k] % self.corr
        f = self.f
        f["sent_ns"][k] = sent_ns
        f["in_amt"][k] = amount
        f["signed_ns"][k] = signed_ns
        f["coid"][k] = coid.encode()
        f["order_text"][k] = text.encode()
        f["order_field"][k] = field.encode()
        f["order_amt"][k] = value
        if lim > 0.0:
            f["limit_px"][k] = lim
            f["limit_text"][k] = lim_text.encode()
        f["phase"][k] = PH_SENT
        if self.intent is not None:
            # docs/design.md 6.7: the durable record of this order, written (and fsynced) by
            # the log thread; on this thread only a tuple on its queue, after the bytes are out
            self.intent((self.slot, self.corr, self.tri, k, coid, field, text, amount,
                         lim_text if lim > 0.0 else "", self.refs if k == 0 else ()))
        return True

    def _leg_failed(self, k: int, amount: float, signed_ns: int, why: str, new_tri: int) -> bool:
        if new_tri >= 0:
            self._reset(self.corr, new_tri)
        f = self.f
        f["in_amt"][k] = amount
        f["signed_ns"][k] = signed_ns
        f["fail"][k] = why[:200].encode()
        f["phase"][k] = PH_FAILED
        return False

    # -- one triangle ---------------------------------------------------------------------
    def execute(self, sig) -> None:
        r = self.row
        uni = self.uni
        corr, tri_id = int(sig["corr"]), int(sig["tri"])
        tri = uni.tris[tri_id]
        rec = self._new_report(sig)
        if not (r["fired0_by_hot"][0] and int(r["corr"][0]) == corr):
            woke = int(r["woke_ns"][0])
            self._reset(corr, tri_id)
            r["woke_ns"][0] = woke
            self.refs = tuple(float(sig[f]) for f in ("ask0", "bid0", "ask1", "bid1", "ask2", "bid2"))
            if self.ioc:
                self.fire_leg(0, float(sig["start_vol"]), float(sig["bid0"]), lim=float(sig["lim0"]),
                              lim_base=float(sig["base0"]))
            else:
                self.fire_leg(0, float(sig["start_vol"]), float(sig["bid0"]))
        amount = float(sig["start_vol"])
        self.retries_429 = 0
        try:
            self._run_legs(rec, corr, tri, amount)
        finally:
            self.claims.pop((corr, 1), None)
            self.claims.pop((corr, 2), None)

    def _run_legs(self, rec, corr: int, tri, amount: float) -> None:
        r = self.row
        for k in range(3):
            if k > 0:
                if self.claim(corr, k):
                    if self.sh.slots[self.slot]["cancel"]:
                        return self._finish(rec, report.STATUS_ABORTED, reason=f"cancel requested before L{k}")
                    amount = self._leg_input(k, tri, amount)
                    self.fire_leg(k, amount, self.best_bid(int(tri[f"sym{k}"])))
                else:
                    self._await_hot_fire(k)
            while True:
                if r["phase"][0, k] == PH_FAILED:
                    return self._finish(rec, report.STATUS_FAILED, error=r["fail"][0, k].decode())
                ok = self._complete_leg(k, tri)
                if ok or k == 0 or self.limited_ms is None or self.retries_429 >= MAX_429_RETRIES:
                    break
                # docs/kucoin.md 7.1: a 429 on leg 1 or 2 placed nothing; abandoning the leg
                # would leave the previous legs' coins held. The same order (same clientOid:
                # a duplicate would be refused, never doubled) goes again after the reset.
                if not self._wait_for_reset(k):
                    return self._finish(rec, report.STATUS_ABORTED,
                                        reason=f"cancel requested while L{k} waited for the rate-limit reset")
                self.retries_429 += 1
                self.fire_leg(k, float(r["in_amt"][0, k]), self.best_bid(int(tri[f"sym{k}"])))
            self._fill_report_leg(rec, k, tri)
            if r["phase"][0, k] == PH_UNKNOWN:
                # Never guess: no later leg is sized from an amount nobody knows. The clientOid
                # is followed up in the background (_follow_up) and a FOLLOWUP line written.
                self._watch_unknown(rec, k)
                return self._finish(rec, report.STATUS_UNKNOWN, error=r["fail"][0, k].decode())
            if k == 0 and r["limit_px"][0, 0] > 0.0 and r["phase"][0, 0] == PH_DONE and rec.legs[0].filled_sz <= 0.0:
                # docs/design.md 6.7: an IOC leg 0 that took nothing at its price: the edge was
                # gone before it arrived; nothing was spent, nothing is held
                return self._finish(rec, report.STATUS_MISSED, reason=(
                    f"L0 IOC {rec.legs[0].order_text} @ {rec.legs[0].limit_price} filled nothing"))
            if not ok:
                return self._finish(rec, report.STATUS_FAILED, error=r["fail"][0, k].decode())
            amount = rec.legs[k].received
        short = [lg for lg in rec.legs if lg.unfilled > 0.0]
        if short:
            return self._finish(rec, report.STATUS_PARTIAL, error="; ".join(
                f"L{lg.leg} filled {lg.spent:.12g} of {lg.order_text} {lg.from_ccy}" for lg in short))
        self._finish(rec, report.STATUS_FILLED)

    # -- legs 1 and 2 fired by the hot thread ----------------------------------------------
    def claim(self, corr: int, k: int) -> bool:
        """Exactly one thread fires leg k of signal corr: the hot thread when it routes the
        previous leg's terminal fill event (fire_next_from_hot), or this executor. dict.
        setdefault is one atomic step under the GIL, so two claimants cannot both win."""
        me = threading.get_ident()
        return self.claims.setdefault((corr, k), me) == me

    def fire_next_from_hot(self, corr: int, k: int, filled_sz: float, filled_funds: float,
                           term_sz: float) -> bool:
        """Hot thread: leg k's terminal event (filled/canceled, docs/kucoin.md 4.1) was just
        routed; fire leg k+1 from the hot thread's own running totals of leg k's matches,
        without waking this executor first (the GIL hand-off measured at 100-400 us, docs/design.md
        2 and 9). Same sizing as the executor would do (cascade.size_leg on the leg's
        output). Declines (False) when the executor owns the decision: another corr, leg k not
        open, cancel requested, await_balance (needs the balance feed), nothing received, or
        the terminal event's cumulative filledSize (term_sz) disagrees with the summed matches
        (a match event was lost: the executor takes the figures from REST, docs/design.md 6)."""
        if self.hot_fires_legs is False or self.corr != corr or k >= 2 or self.await_balance:
            return False
        if not abs(filled_sz - term_sz) <= 1e-9 * filled_sz:   # NaN (absent) disagrees too
            return False
        phase = ROW_PHASES.unpack_from(self.row_mv, 0)
        if (phase[k] != PH_SENT and phase[k] != PH_OPEN) or phase[k + 1] != PH_IDLE:
            return False
        if SLOT_CANCEL.unpack_from(self.slots_mv, self.slot_base)[0]:
            return False
        side, rules = self.plan[k][1], self.plan[k][2]
        out = filled_sz if side == cascade.LEG_BUY else filled_funds * (1.0 - rules.taker_fee)
        if not out > 0.0 or not self.claim(corr, k + 1):
            return False
        self.fire_leg(k + 1, out, self.best_bid(self.plan[k + 1][0]))
        return True

    def _await_hot_fire(self, k: int) -> None:
        """The hot thread claimed leg k: wait until its fire_leg has finished (phase leaves
        IDLE). It holds the GIL while firing, so this is at most one switch interval."""
        deadline = time.monotonic() + 1.0
        while self.f["phase"][k] == PH_IDLE and time.monotonic() < deadline:
            time.sleep(0)
        if self.f["phase"][k] == PH_IDLE:   # cannot happen: fail loudly rather than hang
            self.f["fail"][k] = f"L{k} claimed by the hot thread but never fired".encode()
            self.f["phase"][k] = PH_FAILED

    # -- the rate budget and back-offs (docs/design.md 12) ----------------------------------
    def _gate(self) -> None:
        """This executor's cell: the spot pool's gate for a new triangle, from every answer
        the budget has seen (docs/kucoin.md 7.1)."""
        if self.budget is not None:
            self.cell.hold("budget", self.budget.triangle_gate(time.monotonic_ns()))

    def _wait_for_reset(self, k: int) -> bool:
        """Wait until the pool's window resets (limited_ms from the 429's header, at most
        30 s), honouring the cancel flag. False: cancelled."""
        wait_s = min(self.limited_ms if self.limited_ms is not None else 1000.0, 30000.0) / 1000.0 + 0.05
        self.log(f"executor {self.slot}: L{k} {self.row['coid'][0, k].decode()} got 429000: the same "
                 f"order goes again in {wait_s:.2f}s, after the pool's reset")
        deadline = time.monotonic() + wait_s
        fd = self.sh.slot_fds[self.slot]
        while time.monotonic() < deadline:
            if self.sh.slots[self.slot]["cancel"]:
                return False
            rings.wait(fd, min(0.05, max(0.0, deadline - time.monotonic())))
            self._drain_fills()
        return not self.sh.slots[self.slot]["cancel"]

    def _answered(self, headers, verdict: int, code: str, status: int) -> None:
        """Every order answer: feed the budget; a 429 holds signalling until the reset; a
        rejection backs off, more for each rejection of the same code in a row; an accepted
        order clears the back-off."""
        now = time.monotonic_ns()
        self.limited_ms = None
        if self.budget is not None and headers:
            self.budget.observe_headers(self.path, headers, now)
        if verdict == kucoin.ANSWER_REJECTED:
            if code == "429000" or status == 429:
                try:
                    reset_ms = float(headers.get("gw-ratelimit-reset", "") or 1000.0)
                except ValueError:
                    reset_ms = 1000.0
                self.limited_ms = max(0.0, reset_ms)
                self.cell.hold("429", now + int(min(self.limited_ms, 30000.0) * 1e6))
            elif self.rejects is not None:
                n, delay = self.rejects.rejected(code, now)
                self.cell.hold("reject", now + delay)
                if n >= 2:
                    self.log(f"executor {self.slot}: rejection {code} {n} times in a row: no new "
                             f"triangle for {delay / 1e6:.0f} ms")
        elif verdict == kucoin.ANSWER_ACCEPTED and self.rejects is not None:
            self.rejects.accepted()
            if self.cell.until.get("reject"):
                self.cell.hold("reject", 0)
        self._gate()

    def _leg_input(self, k: int, tri, previous_output: float) -> float:
        side = int(tri[f"side{k}"])
        if self.await_balance and side == cascade.LEG_SELL:
            ccy = int(tri[f"ccy{k}"])
            return cascade.balance_override(previous_output, float(self.sh.balances[ccy]))
        return previous_output

    def _complete_leg(self, k: int, tri) -> bool:
        """Read the order's answer, then learn its outcome: the private feed's events (live),
        a simulated fill (paper), or the exchange's own figures when anything is ambiguous.
        True: the leg is done with fills. False: PH_FAILED (not placed), PH_DONE with no fill,
        or PH_UNKNOWN (the outcome could not be learned; docs/design.md 6)."""
        r = self.row
        try:
            status, headers, body = self.conns[k].read_response()
        except ResponseLost as e:
            # The request left: the order may exist and may have executed. Never resend
            # (that could double it); learn its fate by clientOid (docs/kucoin.md 1.6, 5.1).
            r["resp_ns"][0, k] = time.monotonic_ns()
            return self._settle(k, tri, f"answer lost ({e})", accepted=False)
        r["resp_ns"][0, k] = time.monotonic_ns()
        verdict, code, msg, order_id = kucoin.classify_order_answer(status, body)
        # docs/kucoin.md 7.1: the budget, a 429's reset, the rejection back-off (this slot's
        # cell; one writer each)
        self._answered(headers, verdict, code, status)
        if verdict == kucoin.ANSWER_REJECTED:
            self._drain_fills()
            if r["n_match"][0, k] or r["terminal"][0, k]:
                # the feed says the order exists: the feed is the faster truth, REST the final
                self.limited_ms = None
                return self._settle(k, tri, f"rejected ({code}) but fill events arrived", accepted=False)
            if self.limited_ms is not None:
                self.log(f"executor {self.slot}: 429000 on L{k}; no new signals for {self.limited_ms:.0f} ms")
            r["fail"][0, k] = f"L{k} rejected: {code} {msg} (HTTP {status})"[:200].encode()
            r["phase"][0, k] = PH_FAILED
            return False
        if verdict == kucoin.ANSWER_AMBIGUOUS:
            return self._settle(k, tri, f"ambiguous answer {code} {msg}".strip(), accepted=False)
        r["order_id"][0, k] = order_id.encode()[:24]
        r["phase"][0, k] = PH_OPEN
        if self.paper:
            return self._paper_fill(k, tri)
        return self._await_fills(k, tri)

    def _paper_fill(self, k: int, tri) -> bool:
        """Paper mode: walk the book as it stands now with the live path's rounding and fees.
        The hot thread may be updating that book at this moment; a torn read can only make a
        paper fill slightly off, never a live order."""
        r = self.row
        sh = self.sh
        sym = int(tri[f"sym{k}"])
        rules = self.uni.rules[sym]
        if r["limit_px"][0, k] > 0.0:
            base, notional = books_walk_limit(sh.book_px, sh.book_sz, sym, int(tri[f"side{k}"]),
                                              float(r["order_amt"][0, k]), float(r["limit_px"][0, k]))
        elif int(tri[f"side{k}"]) == cascade.LEG_BUY:
            base, notional = books.walk_buy_funds(sh.book_px, sh.book_sz, sym,
                                                  float(r["order_amt"][0, k]), rules.base_inc.value)
        else:
            base = float(r["order_amt"][0, k])
            notional = books.walk_sell_size(sh.book_px, sh.book_sz, sym, base)
        if self.paper_book is not None and base > 0.0:
            buy = int(tri[f"side{k}"]) == cascade.LEG_BUY
            self.paper_book.took(sym, books.SIDE_ASK if buy else books.SIDE_BID,
                                 float(r["order_amt"][0, k]), rules.base_inc.value)
        now = time.monotonic_ns()
        r["filled_sz"][0, k] = base
        r["filled_funds"][0, k] = notional
        r["n_match"][0, k] = 1 if base > 0 else 0
        r["first_fill_ns"][0, k] = r["last_fill_ns"][0, k] = r["last_match_ns"][0, k] = now
        r["terminal"][0, k] = rings.FILL_FILLED
        r["source"][0, k] = SRC_PAPER
        r["phase"][0, k] = PH_DONE
        if base <= 0.0:
            r["terminal"][0, k] = rings.FILL_CANCELED
            r["fail"][0, k] = f"L{k} paper fill empty: no depth on {rules.symbol}".encode()
            return False
        return True

    def _feed_agrees(self, k: int) -> bool:
        """The terminal event's cumulative filledSize equals the summed matches (and a
        terminal with no matches says filledSize 0 only through REST, never by itself)."""
        r = self.row
        n, got, term = int(r["n_match"][0, k]), float(r["filled_sz"][0, k]), float(r["term_filled_sz"][0, k])
        if n == 0 and term == 0.0 and r["limit_px"][0, k] > 0.0 and r["terminal"][0, k] == rings.FILL_CANCELED:
            # a limit IOC with nothing at its price: `received` -> `canceled` with filledSize
            # 0 is its documented end (docs/kucoin.md 5.10), not a lost event
            return True
        return n > 0 and abs(got - term) <= 1e-9 * got

    def _await_fills(self, k: int, tri) -> bool:
        r = self.row
        fd = self.sh.slot_fds[self.slot]
        deadline = time.monotonic() + self.fill_timeout_s
        while True:
            self._drain_fills()
            if r["terminal"][0, k]:
                if self._feed_agrees(k):
                    r["source"][0, k] = SRC_FEED
                    r["phase"][0, k] = PH_DONE
                    return True
                # A terminal without matches, or whose filledSize is not their sum: events were
                # lost. The exchange's totals decide (docs/design.md 6).
                why = (f"terminal event filledSize {r['term_filled_sz'][0, k]:.12g} against "
                       f"{int(r['n_match'][0, k])} matches summing {r['filled_sz'][0, k]:.12g}")
                return self._settle(k, tri, why, accepted=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._settle(k, tri, f"no terminal event in {self.fill_timeout_s:.3f}s", accepted=True)
            rings.wait(fd, remaining)

    def _drain_fills(self) -> None:
        sh = self.sh
        buf, ctrl = sh.fill_rings[self.slot]
        r = self.row
        f = self.fill
        while rings.ring_pop(buf, ctrl, f, 0):
            e = f[0]
            k = int(e["leg"])
            # Only a leg whose outcome is still open (sent, accepted, being settled) takes
            # events: a leg that is done must not count late events again. Others are events
            # of an earlier triangle: an UNKNOWN leg being followed up (_follow_up takes them)
            # or a stray, logged with its figures because it means money moved.
            if int(e["corr"]) != int(r["corr"][0]) or not 0 <= k < 3 or r["phase"][0, k] not in (PH_SENT, PH_OPEN):
                self._late_event(e)
                continue
            kind = int(e["kind"])
            if kind == rings.FILL_MATCH:
                r["filled_sz"][0, k] += e["match_sz"]
                r["filled_funds"][0, k] += e["match_px"] * e["match_sz"]
                r["n_match"][0, k] += 1
                if not r["first_fill_ns"][0, k]:
                    r["first_fill_ns"][0, k] = e["recv_ns"]
                r["last_match_ns"][0, k] = e["recv_ns"]
                if not r["order_id"][0, k]:
                    r["order_id"][0, k] = e["order_id"]
            elif kind in (rings.FILL_FILLED, rings.FILL_CANCELED):
                r["terminal"][0, k] = kind
                r["term_filled_sz"][0, k] = e["filled_sz"]
                r["last_fill_ns"][0, k] = e["recv_ns"]
                if not r["order_id"][0, k]:
                    r["order_id"][0, k] = e["order_id"]

    def _late_event(self, e) -> None:
        coid = rings.client_oid(int(e["corr"]), self.slot, int(e["leg"]))
        watch = self.unknown.get(coid)
        if watch is not None:
            watch.events += 1            # the follow-up asks REST at once (_follow_up)
            watch.next_at = 0.0
            return
        if self.run_id and int(e["corr"]) >> 24 != self.run_id:
            # corr = run_id << 24 | n (pipeline.alloc_pstate): an order of an earlier session,
            # which the start-up reconciliation looked up by clientOid (docs/design.md 6.7)
            self.late_earlier += 1
            self.log(f"executor {self.slot}: event of an earlier session's order {coid} kind="
                     f"{int(e['kind'])} match={e['match_sz']}@{e['match_px']} (its figures are in "
                     f"the start-up reconciliation)")
            return
        self.stray += 1
        self.log(f"executor {self.slot}: STRAY fill event corr={int(e['corr']):x} leg={int(e['leg'])} "
                 f"kind={int(e['kind'])} match={e['match_sz']}@{e['match_px']} "
                 f"order={e['order_id'].decode()} {coid} (not part of an open leg)")

    def _settle(self, k: int, tri, why: str, accepted: bool) -> bool:
        if self.paper:
            # The order-test endpoint matches nothing and its orders cannot be looked up
            # (docs/kucoin.md 5.3): no money moved, the leg simply did not happen.
            self.row["fail"][0, k] = f"L{k} paper order-test: {why}"[:200].encode()
            self.row["phase"][0, k] = PH_FAILED
            return False
        return self._settle_live(k, tri, why, accepted)

    def _settle_live(self, k: int, tri, why: str, accepted: bool) -> bool:
        """Learn leg k's outcome from the exchange: look the order up by clientOid until it is
        found done (its dealSize / dealFunds are then the leg's figures) or order_lookup_ms
        passes, while the private feed keeps being read (a consistent terminal event settles
        it too). An active order is cancelled and looked up again. "Not exist" is never
        "not placed" here: KuCoin's lookup can lag the placement (docs/kucoin.md 5.6), and an
        ambiguous answer may hide an executed order (1.6). At the bound the leg is UNKNOWN."""
        r = self.row
        sym = self.uni.symbols[int(tri[f"sym{k}"])]
        coid = r["coid"][0, k].decode()
        self.log(f"executor {self.slot}: L{k} {coid}: {why}; looking it up")
        t0 = time.monotonic()
        deadline = t0 + self.lookup_s
        pause, last_err, asked, cancel_sent = 0.02, "", 0, False
        fd = self.sh.slot_fds[self.slot]
        while True:
            self._drain_fills()
            if r["terminal"][0, k] and self._feed_agrees(k):
                r["source"][0, k] = SRC_FEED
                r["phase"][0, k] = PH_DONE
                self.log(f"executor {self.slot}: L{k} {coid} settled by the private feed "
                         f"after {time.monotonic() - t0:.3f}s")
                return True
            if self.budget is not None:
                # docs/kucoin.md 7.1: a lookup the pool cannot take would only get a 429
                wait_s = self.budget.wait_s("spot", risk.LOOKUP_WEIGHT, time.monotonic_ns())
                if wait_s > 0.0:
                    rings.wait(fd, min(wait_s, max(0.0, deadline - time.monotonic())))
                    if time.monotonic() >= deadline:
                        break
            try:
                asked += 1
                o = self.client.get_order_by_client_oid(coid, sym)
            except NotFound:
                last_err = "not exist"
            except kucoin.RateLimited as e:
                last_err = "429000"
                reset_s = (getattr(e, "reset_ms", None) or 1000) / 1000.0
                rings.wait(fd, min(reset_s, max(0.0, deadline - time.monotonic())))
            except KucoinError as e:
                last_err = f"{e.__class__.__name__} {getattr(e, 'code', '')}".strip()
            else:
                if o.get("active") or o.get("isActive"):
                    last_err = "still active"
                    if not cancel_sent:
                        cancel_sent = True
                        try:
                            self.client.cancel_order_by_client_oid(coid, sym)
                        except KucoinError as e:
                            self.log(f"executor {self.slot}: cancel {coid}: {e}")
                else:
                    return self._take_rest_figures(k, o, coid, time.monotonic() - t0)
            if time.monotonic() >= deadline:
                break
            rings.wait(fd, min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2.0, 0.5)
        self._drain_fills()
        r["phase"][0, k] = PH_UNKNOWN
        seen = (f"; the feed showed {int(r['n_match'][0, k])} match(es) for {r['filled_sz'][0, k]:.12g}"
                if r["n_match"][0, k] else "")
        r["fail"][0, k] = (f"L{k} {coid} outcome unknown after {self.lookup_s:.1f}s ({why}; "
                           f"{asked} lookups, last: {last_err}{seen})").encode()[:200]
        return False

    def _take_rest_figures(self, k: int, o: dict, coid: str, waited_s: float) -> bool:
        """The order is done per REST: its cumulative figures are the exchange's own and
        replace whatever the feed delivered (events may have been lost or be late)."""
        r = self.row
        self._drain_fills()
        r["filled_sz"][0, k] = float(o.get("dealSize") or 0)
        r["filled_funds"][0, k] = float(o.get("dealFunds") or 0)
        r["order_id"][0, k] = str(o.get("id") or "").encode()[:24]
        r["terminal"][0, k] = rings.FILL_FILLED if not o.get("cancelExist") else rings.FILL_CANCELED
        r["source"][0, k] = SRC_REST
        r["phase"][0, k] = PH_DONE
        now = time.monotonic_ns()
        r["last_fill_ns"][0, k] = now
        if not r["first_fill_ns"][0, k]:
            r["first_fill_ns"][0, k] = now
        self.log(f"executor {self.slot}: L{k} figures taken from REST for {coid} after {waited_s:.3f}s: "
                 f"dealSize {o.get('dealSize')} dealFunds {o.get('dealFunds')}")
        if r["filled_sz"][0, k] <= 0.0:
            r["fail"][0, k] = f"L{k} order {coid} done with no fill".encode()
            return False
        return True

    # -- UNKNOWN legs: followed up after the triangle's line ---------------------------------
    def _watch_unknown(self, rec, k: int) -> None:
        if self.followup_s <= 0 or len(self.unknown) >= 1000:
            return
        lg = rec.legs[k]
        self.unknown[lg.client_oid] = _Watch(lg=lg, triangle=rec.triangle, corr=rec.corr,
                                            until=time.monotonic() + self.followup_s)

    def _follow_up(self) -> None:
        """Between triangles: ask REST about each UNKNOWN leg (at once after a late event of
        it, else every few seconds); when the exchange answers done, or the follow-up bound
        passes, write a FOLLOWUP record with what the leg really did (report.FollowUp)."""
        now = time.monotonic()
        for coid, w in list(self.unknown.items()):
            if now < w.next_at:
                continue
            w.next_at = now + 5.0
            try:
                o = self.client.get_order_by_client_oid(coid, w.lg.symbol)
            except NotFound:
                o = None
            except KucoinError as e:
                self.log(f"executor {self.slot}: follow-up of {coid}: {e}")
                continue
            if o is not None and not (o.get("active") or o.get("isActive")):
                self._emit_followup(coid, w, o)
            elif now >= w.until:
                self._emit_followup(coid, w, None)

    def _emit_followup(self, coid: str, w, o) -> None:
        del self.unknown[coid]
        seen = w.lg
        lg = report.LegReport(leg=seen.leg, side=seen.side, symbol=seen.symbol, from_ccy=seen.from_ccy,
                              to_ccy=seen.to_ccy, order_field=seen.order_field, order_text=seen.order_text,
                              client_oid=coid, fee_ccy=seen.fee_ccy, source="rest")
        changes = []
        if o is not None:
            lg.order_id = str(o.get("id") or "")
            rules = self.uni.rules[self.uni.sym_index[seen.symbol]]
            lg.set_fills(float(o.get("dealSize") or 0), float(o.get("dealFunds") or 0), rules.taker_fee)
            for amount, ccy in ((seen.spent - lg.spent, seen.from_ccy), (lg.received - seen.received, seen.to_ccy)):
                if amount:
                    changes.append((amount, ccy))
        note = "" if o is not None else f"order not found within unknown_followup_s ({self.followup_s:.0f}s)"
        self.emit(report.FollowUp(ts_ms=time.time_ns() // 1_000_000, corr=w.corr, triangle=w.triangle,
                                  leg=lg, found=o is not None, note=note, changes=changes))

    # -- reporting -------------------------------------------------------------------------
    def _new_report(self, sig) -> report.TriangleReport:
        uni = self.uni
        tri = uni.tris[int(sig["tri"])]
        return report.TriangleReport(
            status="", ts_ms=0, corr=int(sig["corr"]), mode=self.cfg.mode,
            triangle=tuple(uni.currencies[int(tri[f"ccy{k}"])] for k in range(3)),
            symbols=tuple(uni.symbols[int(tri[f"sym{k}"])] for k in range(3)),
            sides=tuple(int(tri[f"side{k}"]) for k in range(3)),
            predicted_bps=float(sig["pred_bps"]), start_volume=float(sig["start_vol"]),
            book_ts_ms=int(sig["book_ts_ms"]),
            books=tuple((float(sig[f"ask{k}"]), float(sig[f"bid{k}"])) for k in range(3)),
            expected_out=float(sig["exp_out"]),
            recv_ns=int(sig["recv_ns"]), parsed_ns=int(sig["parsed_ns"]), book_ns=int(sig["book_ns"]),
            evaluated_ns=int(sig["eval_ns"]), pushed_ns=int(sig["push_ns"]), woke_ns=0,
            origin="reeval" if int(sig["origin"]) == rings.ORIGIN_REEVAL else "frame",
        )

    def _fill_report_leg(self, rec, k: int, tri) -> None:
        r = self.row
        sym = int(tri[f"sym{k}"])
        rules = self.uni.rules[sym]
        side = int(tri[f"side{k}"])
        lg = report.LegReport(
            leg=k, side=side, symbol=rules.symbol,
            fee_ccy=rules.quote,     # docs/kucoin.md 6.6: the fee is in the quote, either side
            from_ccy=self.uni.currencies[int(tri[f"ccy{k}"])],
            to_ccy=self.uni.currencies[int(tri[f"ccy{(k + 1) % 3}"])],
            order_field=r["order_field"][0, k].decode(), order_text=r["order_text"][0, k].decode(),
            client_oid=r["coid"][0, k].decode(), order_id=r["order_id"][0, k].decode(),
            signed_ns=int(r["signed_ns"][0, k]), written_ns=int(r["sent_ns"][0, k]),
            response_ns=int(r["resp_ns"][0, k]), first_fill_ns=int(r["first_fill_ns"][0, k]),
            last_fill_ns=int(r["last_fill_ns"][0, k]), last_match_ns=int(r["last_match_ns"][0, k]),
        )
        lg.n_matches = int(r["n_match"][0, k])
        lg.set_fills(float(r["filled_sz"][0, k]), float(r["filled_funds"][0, k]), rules.taker_fee)
        lg.source = SOURCE_NAMES[int(r["source"][0, k])]
        lg.unknown = int(r["phase"][0, k]) == PH_UNKNOWN
        if r["limit_px"][0, k] > 0.0:
            lg.order_type = "limit"
            lg.limit_price = r["limit_text"][0, k].decode()
        if int(r["phase"][0, k]) == PH_DONE and lg.filled_sz > 0.0:
            lg.unfilled = _unfilled(rules, side, float(r["order_amt"][0, k]), lg)
        rec.legs.append(lg)

    def _finish(self, rec, status: str, error: str = "", reason: str = "") -> None:
        r = self.row
        # a leg that failed before a response still shows what was sent
        k = len(rec.legs)
        if k < 3 and r["phase"][0, k] != PH_IDLE and status != report.STATUS_FILLED:
            self._fill_report_leg(rec, k, self.uni.tris[int(r["tri"][0])])
        rec.status = status
        rec.error = error
        rec.reason = reason
        rec.woke_ns = int(r["woke_ns"][0])
        rec.ts_ms = time.time_ns() // 1_000_000
        rec.settle()
        rec.value_open(self.valuer)
        self.emit(rec)
        if self.unwinder is not None and status in (report.STATUS_FAILED, report.STATUS_ABORTED,
                                                    report.STATUS_PARTIAL):
            # docs/design.md 6.7: what the failure left is sold back to the start currency by
            # the unwind worker (never here: this slot's triangle is over; its line is out)
            held = [(a, c) for a, c in rec.held() if a > 0.0]
            if held:
                self.unwinder.request(held, rec.triangle[0], rec.corr, status,
                                      ref_books=dict(zip(rec.symbols, rec.books)))


def books_walk_limit(book_px, book_sz, sym: int, side: int, size: float, limit: float) -> tuple:
    """Paper fill of a limit IOC order of `size` base at `limit`: (base, notional) walked on
    the local book, levels at the limit or better only (docs/kucoin.md 5.10)."""
    bs = books.SIDE_ASK if side == cascade.LEG_BUY else books.SIDE_BID
    left, base, notional = size, 0.0, 0.0
    for i in range(book_px.shape[2]):
        p, q = float(book_px[sym, bs, i]), float(book_sz[sym, bs, i])
        if not q > 0.0 or left <= size * 1e-12:
            break
        if (side == cascade.LEG_BUY and p > limit * (1 + 1e-12)) or (side == cascade.LEG_SELL and p < limit * (1 - 1e-12)):
            break
        take = min(q, left)
        base += take
        notional += take * p
        left -= take
    return base, notional


def _unfilled(rules, side: int, order_amt: float, lg) -> float:
    """What a done market order left unexecuted beyond its own rounding, in the order's
    currency (0.0 when it carried everything it could). A sell by size is short when more
    than half a base increment is left; a buy by funds when the funds left (notional plus
    fee held) would have bought at least one more base increment at its average price plus
    5 % (the last level walked costs more than the average), which is the leftover KuCoin
    leaves on every full fill (docs/kucoin.md 6.6)."""
    if side == cascade.LEG_SELL or lg.order_type == "limit":   # an order by size
        left = order_amt - lg.filled_sz
        return left if left > 0.5 * rules.base_inc.value else 0.0
    left = order_amt - lg.filled_funds
    one_more = lg.avg_px * rules.base_inc.value
    return left if left > one_more * 1.05 else 0.0
