"""Triangle reports: the one-line report, the JSONL journal record, the session summary.

Owns: `TriangleReport` / `LegReport` (plain records of one triangle attempt), `format_line`
(the seed's report line, docs/design.md 6),
`journal_line` (one JSON object per line, every field), and `SessionSummary` (counts, PnL per
primary quote, latency percentiles of docs/design.md 9 from `LatencyHistogram`: fixed size,
so a session of days keeps no list of latencies; percentiles within 0.8 %).

Thread: the slot's executor builds a record while it runs the legs and hands it to the log
thread, which calls `format_line` / `journal_line` and `SessionSummary.add`; run.py renders
the summary at exit. Nothing here is on the order critical path; nothing here does I/O.

Line format (FILLED is exactly the seed's; FAILED/ABORTED add `error=`/`reason=` and, when
a leg completed, `open=` = the amount and currency the failure left us holding):
  2026-05-26T17:55:53.719Z FILLED | corr=1f | triangle=['USDT','FLUX','USDC'] |
  predicted_bps=34.45 | effective_bps=-149.94 | book_ts=2026-05-26T17:55:53.512Z |
  profit=-0.0749 | timings=[...] | fills=[L0:buy FLUX-USDT USDT->FLUX 64.53@0.0774(fee=0
  USDT lat=82.9ms), ...] | books=[0.0774/0.0772 | 0.07796/0.07783 | 0.9991/0.999]
(one line; wrapped here). corr is hex, as in the clientOid `ta{corr:x}s{slot}l{leg}`, so a
line greps against the orders. timings are microseconds since the frame that triggered the
signal was received (time.monotonic_ns), `-` where a stage was not reached:
  timings=[parse=1.2 book=3.4 eval=5.6 push=7.0 wake=30.1 | L0 sign=32.0 sent=61.5 resp=950
  fill1=80211 fillN=82961 | L1 ...]
Amounts use up to 12 significant digits (`%.12g`, which hides float noise such as
0.07740000000000001 while keeping every digit a balance shows); exponents are expanded.
bps have 2 decimals. Missing profit/bps render as `n/a`.

Secrets: records have fixed fields (slots, no **extra), none of which is a credential, and
the formatters render only those fields; error text is flattened to one line.

Run the tests: `python -m pytest -q tests/test_report.py`.
"""
from __future__ import annotations

import array
import json
import math
import time

import numpy as np
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal

from cascade import leg_fee, leg_output, leg_spent, triangle_pnl

STATUS_FILLED = "FILLED"      # three legs done, each carried all it was sent (to the increment)
STATUS_PARTIAL = "PARTIAL"    # three legs done, but a leg filled less than it was sent
STATUS_FAILED = "FAILED"      # a leg was rejected, not sent, or ended with no fill
STATUS_ABORTED = "ABORTED"    # the cancel flag stopped it between legs
STATUS_UNKNOWN = "UNKNOWN"    # a leg's outcome could not be learned from the exchange in time
STATUS_MISSED = "MISSED"      # leg 0 was a limit IOC (leg0_order = ioc) and nothing filled at
                              # its price: the edge was gone; zero cost (docs/design.md 6.7)
STATUS_RECOVERED = "RECOVERED"  # a triangle an earlier session left in flight (killed), as the
                              # exchange says its orders ended; written at start-up (6.7)
STATUSES = (STATUS_FILLED, STATUS_PARTIAL, STATUS_FAILED, STATUS_ABORTED, STATUS_UNKNOWN,
            STATUS_MISSED, STATUS_RECOVERED)
FOLLOWUP = "FOLLOWUP"         # a later word from the exchange on an UNKNOWN leg (not a triangle)
UNWOUND = "UNWOUND"           # a triangle's leftovers sold back to its start currency (6.7):
                              # nothing sellable is left (dust below a minimum may remain)
UNWIND_FAILED = "UNWIND_FAILED"  # an unwind that left something sellable held: rejected, no
                              # route or book, or nothing filled within unwind_max_loss_bps
STARTUP = "STARTUP"           # the start-up reconciliation's summary (6.7; not a triangle)

SIDE_NAMES = ("buy", "sell")   # indexed by cascade.LEG_BUY / LEG_SELL

# Hot-thread stages stamped on the signal, in order, and their labels in timings=[...].
STAGES = (("parsed_ns", "parse"), ("book_ns", "book"), ("evaluated_ns", "eval"),
          ("pushed_ns", "push"), ("woke_ns", "wake"))
# Per-leg stamps and labels.
LEG_STAGES = (("signed_ns", "sign"), ("written_ns", "sent"), ("response_ns", "resp"),
              ("first_fill_ns", "fill1"), ("last_fill_ns", "fillN"))


@dataclass(slots=True)
class LegReport:
    """One leg as executed. Amounts are floats in the currency named; `order_text` is the
    exact decimal string sent to KuCoin in field `order_field` ('funds' or 'size').
    Stamps are time.monotonic_ns() values, 0 when the stage was not reached."""
    leg: int
    side: int                  # LEG_BUY / LEG_SELL
    symbol: str
    from_ccy: str
    to_ccy: str
    order_field: str = ""
    order_text: str = ""
    client_oid: str = ""
    order_id: str = ""
    filled_sz: float = 0.0     # base filled = sum(match_sz)
    filled_funds: float = 0.0  # quote notional = sum(match_px * match_sz)
    n_matches: int = 0
    fee: float = 0.0           # in fee_ccy (the symbol's quote, docs/kucoin.md 6.6)
    fee_ccy: str = ""
    spent: float = 0.0         # in from_ccy
    received: float = 0.0      # in to_ccy
    signed_ns: int = 0
    written_ns: int = 0
    response_ns: int = 0
    first_fill_ns: int = 0     # first match event received
    last_fill_ns: int = 0      # the event completing the leg (filled/canceled) received
    last_match_ns: int = 0     # last match event received (last_fill_ns - this: the venue's)
    unfilled: float = 0.0      # of the order amount (from_ccy), what did not execute beyond
                               # the increment rounding of a market order (0: carried all)
    source: str = ""           # whose figures: "feed" (private events), "rest" (order
                               # lookup), "paper"; "" when the leg has no order
    unknown: bool = False      # the outcome could not be learned: figures are what was seen
    order_type: str = "market"  # "limit": a limit IOC (leg0_order = ioc, unwind_max_loss_bps)
    limit_price: str = ""      # its price, as sent

    @property
    def avg_px(self) -> float:
        return self.filled_funds / self.filled_sz if self.filled_sz > 0.0 else 0.0

    @property
    def lat_ms(self) -> float | None:
        """Order bytes written -> last fill, ms."""
        if self.written_ns and self.last_fill_ns:
            return (self.last_fill_ns - self.written_ns) / 1e6
        return None

    def set_fills(self, filled_sz: float, filled_funds: float, fee_rate: float) -> None:
        """Fill in sizes, fee, spent and received from the accumulated matches (cascade)."""
        self.filled_sz = filled_sz
        self.filled_funds = filled_funds
        self.fee = leg_fee(filled_funds, fee_rate)
        self.spent = leg_spent(self.side, filled_sz, filled_funds, fee_rate)
        self.received = leg_output(self.side, filled_sz, filled_funds, fee_rate)


@dataclass(slots=True)
class TriangleReport:
    """One triangle attempt, FILLED / FAILED / ABORTED. Built by the slot's executor.

    `start_volume` is the signal's start in the primary quote (triangle[0]); `profit` and
    `effective_bps` come from `settle()` (leg 2 received - leg 0 spent). `books` holds each
    leg's (best ask, best bid) at signal time; `legs` the legs that were placed.
    """
    status: str
    ts_ms: int                              # wall clock (UTC ms) when the report was made
    corr: int                               # 64-bit correlation id of the signal
    mode: str                               # "live" | "paper"
    triangle: tuple[str, str, str]          # ccy0 (primary), ccy1, ccy2
    symbols: tuple[str, str, str]
    sides: tuple[int, int, int]
    predicted_bps: float
    start_volume: float
    book_ts_ms: int                         # exchange time of the oldest book used
    books: tuple = ()                       # ((ask, bid), (ask, bid), (ask, bid))
    expected_out: float = math.nan          # signal's predicted leg-2 output
    profit: float | None = None
    effective_bps: float | None = None
    recv_ns: int = 0                        # frame receipt on the hot thread
    parsed_ns: int = 0
    book_ns: int = 0
    evaluated_ns: int = 0
    pushed_ns: int = 0
    woke_ns: int = 0
    legs: list = field(default_factory=list)   # [LegReport]
    error: str = ""                         # FAILED
    reason: str = ""                        # ABORTED
    origin: str = "frame"                   # what made the signal: a level2 "frame", or a
                                            # "reeval" of refused candidates at a slot release
    open_values: list = field(default_factory=list)  # [(amount, ccy, value in triangle[0] or
                                            # None)] of held(), valued when the line is made

    def net(self) -> dict:
        """Per currency, received minus spent over every leg with fills: what the triangle's
        orders changed in the account (the exchange's figures; an UNKNOWN leg counts with
        what was seen of it)."""
        net = {}
        for lg in self.legs:
            net[lg.from_ccy] = net.get(lg.from_ccy, 0.0) - lg.spent
            net[lg.to_ccy] = net.get(lg.to_ccy, 0.0) + lg.received
        return net

    def settle(self) -> None:
        """profit = the start currency's real change (leg 2 received - leg 0 spent), for every
        status whose leg 0 filled; effective_bps when all three legs filled (cascade). What
        was left in other currencies is `held()` (`open=`), not profit."""
        if not self.legs or self.legs[0].spent <= 0.0:
            return
        if len(self.legs) == 3 and self.legs[2].received > 0.0:
            self.profit, self.effective_bps = triangle_pnl(self.legs[0].spent, self.legs[2].received)
        else:
            self.profit = self.net().get(self.triangle[0], 0.0)

    def held(self) -> list:
        """[(amount, currency)] the triangle left outside its start currency, for every
        status: per currency, received minus spent over the legs (negative when a leg sold
        more than the triangle brought, e.g. with await_balance). Float residue of an
        amount received and sold again in full is not a holding."""
        net, gross = self.net(), {}
        for lg in self.legs:
            gross[lg.to_ccy] = gross.get(lg.to_ccy, 0.0) + lg.received
            gross[lg.from_ccy] = gross.get(lg.from_ccy, 0.0) + lg.spent
        return [(net[c], c) for c in self.triangle[1:]
                if abs(net.get(c, 0.0)) > 1e-9 * gross.get(c, 0.0)]

    def value_open(self, valuer) -> None:
        """Value held() in the start currency at the books' best prices now (holdings.Valuer)."""
        self.open_values = [(a, c, valuer.value(a, c, self.triangle[0]) if valuer is not None else None)
                            for a, c in self.held()]

    @property
    def open_value(self):
        """Sum of the valued leftovers in the start currency (None if any has no value)."""
        if any(v is None for _, _, v in self.open_values):
            return None
        return sum(v for _, _, v in self.open_values)

    @property
    def net_result(self):
        """profit + the leftovers' value: the triangle's whole result in the start currency."""
        if not self.open_values:
            return None if self.held() else self.profit
        ov = self.open_value
        return None if ov is None else (self.profit or 0.0) + ov

    def unknown_legs(self) -> list:
        return [lg for lg in self.legs if lg.unknown]


@dataclass(slots=True)
class FollowUp:
    """What the exchange said later about a leg its triangle's line reported UNKNOWN: the
    order found done (its figures) or still not found when the follow-up bound passed.
    `changes` are the amounts this adds to the account beyond what the UNKNOWN line
    counted (exchange figures minus what was seen), per currency."""
    ts_ms: int
    corr: int
    triangle: tuple
    leg: LegReport                  # with the exchange's figures when found
    found: bool
    note: str = ""
    changes: list = field(default_factory=list)    # [(amount, ccy)]

    def held(self) -> list:
        """The changes outside the triangle's start currency (they join the holdings)."""
        return [(a, c) for a, c in self.changes if c != self.triangle[0]]

    @property
    def profit(self):
        """The change of the start currency, which joins the session's PnL."""
        got = [a for a, c in self.changes if c == self.triangle[0]]
        return got[0] if got else None


@dataclass(slots=True)
class UnwindReport:
    """One unwind (docs/design.md 6.7): a triangle's leftovers sold back to its start
    currency, by the unwind worker (unwind.Unwinder). `corr` is the triangle's. Each order is
    a LegReport (leg = its number within the unwind, 0, 1, ...), with the exchange's figures.

    cost_bps: what the leftovers fetched against their value at the signal's prices (the
    books the triangle was signalled on; for a leftover of an earlier session without them,
    the best prices when the unwind started), fees included; positive = a loss."""
    status: str                              # UNWOUND | UNWIND_FAILED
    ts_ms: int
    corr: int
    start: str                               # the triangle's start currency: the target
    reason: str                              # what asked for it: "FAILED", "startup", ...
    mode: str = ""
    requested: list = field(default_factory=list)   # [(amount, ccy)] asked to unwind
    legs: list = field(default_factory=list)        # [LegReport] orders placed, in order
    dust: list = field(default_factory=list)        # [(amount, ccy, why)] below a minimum
    kept: list = field(default_factory=list)        # [(amount, ccy)] in the `keep` list
    left: list = field(default_factory=list)        # [(amount, ccy, why)] sellable, still held
    ref_value: float | None = None           # the sold amounts' value at the reference prices
    error: str = ""

    def net(self) -> dict:
        net = {}
        for lg in self.legs:
            net[lg.from_ccy] = net.get(lg.from_ccy, 0.0) - lg.spent
            net[lg.to_ccy] = net.get(lg.to_ccy, 0.0) + lg.received
        return net

    @property
    def profit(self):
        """What the start currency received (the proceeds: a real change of it)."""
        return self.net().get(self.start) if self.legs else None

    @property
    def triangle(self) -> tuple:
        return (self.start,)

    def held(self) -> list:
        """The holdings this changed: sold leftovers negative, a two-hop route's middle
        currency what its second order did not take."""
        return [(a, c) for c, a in self.net().items() if c != self.start and a != 0.0]

    @property
    def received(self) -> float:
        return self.net().get(self.start, 0.0)

    @property
    def cost_bps(self):
        if not self.ref_value or not self.legs:
            return None
        return (self.ref_value - self.received) / self.ref_value * 1e4

    def unknown_legs(self) -> list:
        return [lg for lg in self.legs if lg.unknown]


@dataclass(slots=True)
class StartupReport:
    """The start-up reconciliation (docs/design.md 6.7): what earlier sessions left. One
    record; `text()` is the multi-line summary printed at start, `line()` its report line."""
    ts_ms: int
    account: str                              # the state file's account label
    previous: list = field(default_factory=list)    # run ids of earlier sessions on record
    dead: list = field(default_factory=list)        # [str] a RECOVERED line per dead triangle
    cancelled: list = field(default_factory=list)   # [(clientOid, symbol, outcome)] active orders of ours
    balances: list = field(default_factory=list)    # [(ccy, amount, value or None, note)]
    leftovers: list = field(default_factory=list)   # [(amount, ccy, start, corr)] ours, from records
    unwinds: list = field(default_factory=list)     # [(amount, ccy, start, corr)] asked to unwind
    ref: str = ""
    notes: list = field(default_factory=list)

    def line(self) -> str:
        bal = ",".join(f"{fmt_num(a)} {c}" + (f"(~{fmt_num(v)} {self.ref})" if v is not None else "")
                       + (f"[{n}]" if n else "") for c, a, v, n in self.balances) or "-"
        return " | ".join([
            f"{fmt_ts_ms(self.ts_ms)} {STARTUP}", "corr=-", f"account={self.account}",
            "previous=[" + ",".join(f"{r:x}" for r in self.previous) + "]",
            f"dead={len(self.dead)}", f"cancelled={len(self.cancelled)}",
            f"balances={bal}",
            "leftovers=" + (",".join(f"{fmt_num(a)} {c}->{s} corr={k:x}" for a, c, s, k in self.leftovers) or "-"),
            "unwind=" + (",".join(f"{fmt_num(a)} {c}->{s}" for a, c, s, _ in self.unwinds) or "-")]
            + ([f"notes={_one_line('; '.join(self.notes))}"] if self.notes else []))

    def text(self) -> str:
        out = [f"start-up reconciliation (account {self.account}; earlier sessions on record: "
               + (", ".join(f"{r:x}" for r in self.previous) or "none") + ")"]
        out.append(f"  triangles left in flight by an earlier session: {len(self.dead)}")
        out += [f"    {d}" for d in self.dead]
        out.append(f"  active orders of ours cancelled: {len(self.cancelled)}"
                   + "".join(f"\n    {c} {s}: {o}" for c, s, o in self.cancelled))
        out.append("  balances outside the primary quotes:" + (" none" if not self.balances else ""))
        for c, a, v, n in self.balances:
            out.append(f"    {c} {fmt_num(a)}" + (f" (~{fmt_num(v)} {self.ref})" if v is not None else " (no price)")
                       + (f" {n}" if n else ""))
        out.append("  leftovers of our triangles: " + (", ".join(
            f"{fmt_num(a)} {c} (start {s}, corr {k:x})" for a, c, s, k in self.leftovers) or "none"))
        out.append("  unwinding now: " + (", ".join(f"{fmt_num(a)} {c} -> {s}" for a, c, s, _ in self.unwinds)
                                          or "nothing"))
        out += [f"  note: {n}" for n in self.notes]
        return "\n".join(out)


# -- number and time formatting ------------------------------------------------------------

def fmt_num(x) -> str:
    """Shortest readable form with up to 12 significant digits, never an exponent."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    s = "%.12g" % x
    if "e" in s:
        s = format(Decimal(s), "f")
    if s == "-0":
        s = "0"
    return s


def fmt_bps(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"


def fmt_ts_ms(ts_ms: int) -> str:
    """UTC ISO-8601 with milliseconds: 2026-05-26T17:55:53.719Z."""
    s, ms = divmod(int(ts_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ms:03d}Z"


def fmt_us(ns_from: int, ns_to: int) -> str:
    """Microseconds between two monotonic stamps; `-` if either is missing."""
    if not ns_from or not ns_to:
        return "-"
    us = (ns_to - ns_from) / 1e3
    return f"{us:.1f}" if abs(us) < 100.0 else f"{us:.0f}"


def _one_line(text: str) -> str:
    # Error text comes from KuCoin or exceptions: keep the report one line, `|` for fields.
    return " ".join(str(text).split()).replace("|", "/")


# -- the report line -----------------------------------------------------------------------

def format_timings(rec: TriangleReport) -> str:
    parts = [" ".join(f"{label}={fmt_us(rec.recv_ns, getattr(rec, name))}" for name, label in STAGES)]
    for lg in rec.legs:
        parts.append(f"L{lg.leg} " + " ".join(
            f"{label}={fmt_us(rec.recv_ns, getattr(lg, name))}" for name, label in LEG_STAGES))
    return "[" + " | ".join(parts) + "]"


def format_fill(lg: LegReport) -> str:
    head = f"L{lg.leg}:{SIDE_NAMES[lg.side]} {lg.symbol} {lg.from_ccy}->{lg.to_ccy}"
    if lg.filled_sz <= 0.0:
        sent = f"{lg.order_field}={lg.order_text}" if lg.order_text else "not placed"
        if lg.order_type == "limit" and lg.order_text:
            sent += f" IOC@{lg.limit_price}"
        return f"{head} unfilled({sent})"
    lat = lg.lat_ms
    lat_s = f"{lat:.1f}ms" if lat is not None else "-"
    ioc = f" IOC@{lg.limit_price}" if lg.order_type == "limit" else ""
    return (f"{head} {fmt_num(lg.filled_sz)}@{fmt_num(lg.avg_px)}"
            f"(fee={fmt_num(lg.fee)} {lg.fee_ccy} lat={lat_s}{ioc})")


def format_followup(fu: FollowUp) -> str:
    lg = fu.leg
    what = (f"exchange: done {format_fill(lg)}" if fu.found
            else f"exchange: {fu.note or 'order not found'}")
    out = [f"{fmt_ts_ms(fu.ts_ms)} {FOLLOWUP}", f"corr={fu.corr:x}",
           "triangle=[" + ",".join(f"'{c}'" for c in fu.triangle) + "]",
           f"leg=L{lg.leg} {lg.client_oid} {SIDE_NAMES[lg.side]} {lg.symbol} {lg.order_field}={lg.order_text}",
           _one_line(what)]
    if fu.changes:
        out.append("changes=" + ",".join(f"{'+' if a > 0 else ''}{fmt_num(a)} {c}" for a, c in fu.changes))
    return " | ".join(out)


def format_line(rec: TriangleReport) -> str:
    """The report line (module docstring). Renders only the record's known fields."""
    if isinstance(rec, FollowUp):
        return format_followup(rec)
    if isinstance(rec, UnwindReport):
        return format_unwind(rec)
    if isinstance(rec, StartupReport):
        return rec.line()
    out = [
        f"{fmt_ts_ms(rec.ts_ms)} {rec.status}",
        f"corr={rec.corr:x}",
        "triangle=[" + ",".join(f"'{c}'" for c in rec.triangle) + "]",
        f"predicted_bps={fmt_bps(rec.predicted_bps)}",
        f"effective_bps={fmt_bps(rec.effective_bps)}",
        f"book_ts={fmt_ts_ms(rec.book_ts_ms) if rec.book_ts_ms else '-'}",
        f"profit={fmt_num(rec.profit)}",
    ]
    if rec.status in (STATUS_FAILED, STATUS_UNKNOWN, STATUS_PARTIAL) and rec.error:
        out.append(f"error={_one_line(rec.error)}")
    elif rec.status in (STATUS_FAILED, STATUS_UNKNOWN):
        out.append("error=unknown")
    elif rec.status in (STATUS_ABORTED, STATUS_MISSED, STATUS_RECOVERED):
        out.append(f"reason={_one_line(rec.reason) or 'unknown'}")
    unknown = rec.unknown_legs()
    if unknown:
        out.append("unknown=[" + ", ".join(
            f"L{lg.leg} {lg.client_oid} {SIDE_NAMES[lg.side]} {lg.symbol} {lg.order_field}={lg.order_text}"
            for lg in unknown) + "]")
    opens = rec.open_values or [(a, c, None) for a, c in rec.held()]
    if opens:
        start = rec.triangle[0]
        out.append("open=" + ",".join(
            f"{fmt_num(a)} {c}" + (f"(~{fmt_num(v)} {start})" if v is not None else "")
            for a, c, v in opens))
        out.append(f"net={fmt_num(rec.net_result)}")
    out.append(f"timings={format_timings(rec)}")
    out.append("fills=[" + ", ".join(format_fill(lg) for lg in rec.legs) + "]")
    out.append("books=[" + " | ".join(f"{fmt_num(a)}/{fmt_num(b)}" for a, b in rec.books) + "]")
    return " | ".join(out)


def format_unwind(u: UnwindReport) -> str:
    out = [f"{fmt_ts_ms(u.ts_ms)} {u.status}", f"corr={u.corr:x}", f"start={u.start}",
           f"reason={_one_line(u.reason) or '-'}",
           "requested=" + (",".join(f"{fmt_num(a)} {c}" for a, c in u.requested) or "-"),
           f"received={fmt_num(u.received)} {u.start}",
           f"cost_bps={fmt_bps(u.cost_bps)}"]
    if u.error:
        out.append(f"error={_one_line(u.error)}")
    if u.unknown_legs():
        out.append("unknown=[" + ", ".join(f"U{lg.leg} {lg.client_oid} {lg.symbol}" for lg in u.unknown_legs()) + "]")
    if u.dust:
        out.append("dust=" + ",".join(f"{fmt_num(a)} {c}({_one_line(w)})" for a, c, w in u.dust))
    if u.kept:
        out.append("kept=" + ",".join(f"{fmt_num(a)} {c}" for a, c in u.kept))
    if u.left:
        out.append("held=" + ",".join(f"{fmt_num(a)} {c}({_one_line(w)})" for a, c, w in u.left))
    out.append("fills=[" + ", ".join(format_fill(lg).replace(f"L{lg.leg}:", f"U{lg.leg}:", 1)
                                     for lg in u.legs) + "]")
    return " | ".join(out)


# -- the journal ---------------------------------------------------------------------------

def _json_num(x):
    # JSON has no NaN/inf: those become null.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


_LEG_FIELDS = tuple(f.name for f in fields(LegReport))


def _leg_dict(lg: LegReport) -> dict:
    """A leg's fields as a dict: what dataclasses.asdict gives for these scalar fields, without
    its deep copy of each value (the log thread holds the GIL meanwhile: a journal line now
    takes 2.5-3.6x less, profiles/README.md "The floor")."""
    return {k: _json_num(getattr(lg, k)) for k in _LEG_FIELDS}


def journal_dict(rec: TriangleReport) -> dict:
    if isinstance(rec, UnwindReport):
        d = {f.name: getattr(rec, f.name) for f in fields(UnwindReport) if f.name != "legs"}
        d = json.loads(json.dumps(d, default=str))
        d["legs"] = [_leg_dict(lg) | {"side_name": SIDE_NAMES[lg.side],
                                                                         "avg_px": lg.avg_px} for lg in rec.legs]
        d.update(ts=fmt_ts_ms(rec.ts_ms), corr_hex=f"{rec.corr:x}", received=rec.received,
                 cost_bps=_json_num(rec.cost_bps), held=[[a, c] for a, c in rec.held()],
                 ref_value=_json_num(rec.ref_value))
        return d
    if isinstance(rec, StartupReport):
        d = json.loads(json.dumps(asdict(rec), default=str))
        # corr null (corr=- on the line, whose shape stays "TS STATUS | corr=..."): a reader
        # that keys records by corr meets no triangle here
        d.update(status=STARTUP, ts=fmt_ts_ms(rec.ts_ms), corr=None, corr_hex="-", text=rec.text())
        return d
    if isinstance(rec, FollowUp):
        return {"status": FOLLOWUP, "ts": fmt_ts_ms(rec.ts_ms), "ts_ms": rec.ts_ms, "corr": rec.corr,
                "corr_hex": f"{rec.corr:x}", "triangle": list(rec.triangle), "found": rec.found,
                "note": rec.note, "leg": _leg_dict(rec.leg),
                "changes": [[a, c] for a, c in rec.changes]}
    d = {}
    for f in fields(TriangleReport):
        v = getattr(rec, f.name)
        if f.name == "legs":
            v = [_leg_dict(lg) | {
                    "side_name": SIDE_NAMES[lg.side], "avg_px": lg.avg_px, "lat_ms": lg.lat_ms}
                 for lg in rec.legs]
        elif f.name == "books":
            v = [[_json_num(a), _json_num(b)] for a, b in rec.books]
        elif f.name == "open_values":
            v = [[a, c, _json_num(x)] for a, c, x in rec.open_values]
        elif isinstance(v, tuple):
            v = list(v)
        d[f.name] = _json_num(v)
    d["ts"] = fmt_ts_ms(rec.ts_ms)
    d["corr_hex"] = f"{rec.corr:x}"
    d["held"] = [[a, c] for a, c in rec.held()]
    d["net"] = _json_num(rec.net_result)
    d["tick_to_fire_us"] = _us(rec.recv_ns, _leg_ns(rec, 0, "written_ns"))
    d["signal_to_fire_us"] = _us(rec.evaluated_ns, _leg_ns(rec, 0, "written_ns"))
    return d


def journal_line(rec: TriangleReport) -> str:
    """One JSON object (no newline) with every field; amounts as numbers, the decimal
    strings sent to KuCoin (`order_text`) as strings, NaN as null."""
    return json.dumps(journal_dict(rec), separators=(",", ":"), allow_nan=False)


# -- session summary -----------------------------------------------------------------------

def _leg_ns(rec: TriangleReport, k: int, name: str) -> int:
    return getattr(rec.legs[k], name) if len(rec.legs) > k else 0


def _us(a: int, b: int):
    return (b - a) / 1e3 if a and b else None


def percentile(sorted_vals: list, p: float) -> float:
    """Nearest-rank percentile of an ascending list (p in 0..100)."""
    n = len(sorted_vals)
    return sorted_vals[max(0, math.ceil(p / 100.0 * n) - 1)]


class LatencyHistogram:
    """Fixed-size log-linear histogram of latencies (us) for the session summary and the
    status line: constant memory and a few us per percentile query over a session of days,
    where a list of every latency grew without bound and was sorted, GIL held, for every
    status line.

    Buckets: SUB = 64 per power of two, so a bucket is at most 1/64 of its lower bound wide
    (1.6 %), for |values| from 2**-10 (~1 ns) to 2**41 us (~25 days); smaller ones share the
    first bucket, larger ones the last. Negative values (a clock step) have mirrored buckets,
    zero its own. count, min and max are exact. A nearest-rank percentile (as `percentile`
    of a sorted list) is the midpoint of the bucket holding that rank, clamped to [min, max],
    hence within 1/(2 SUB) = 0.78 % of the exact value; rank 1 is the exact min and rank n
    the exact max. Thread use: the log thread adds, the main thread reads; a read during an
    add may see that add half done (one count), never a wrong bucket."""

    SUB = 64
    EMIN = -9           # math.frexp exponents: 2**-10 <= |v| < 2**41
    EMAX = 41
    NB = (EMAX - EMIN + 1) * SUB      # buckets per sign

    __slots__ = ("counts", "_view", "n", "min", "max")

    def __init__(self):
        # [-big .. -small, 0, small .. big]; an array.array (an item add is ~40 ns, a numpy
        # item add ~1 us with the GIL held on the log thread) seen by numpy for the cumsum
        self.counts = array.array("q", bytes(8 * (2 * self.NB + 1)))
        self._view = np.frombuffer(self.counts, np.int64)
        self.n = 0
        self.min = math.inf
        self.max = -math.inf

    @classmethod
    def _bucket(cls, a: float) -> int:
        """Bucket (per sign) of a magnitude a > 0."""
        m, e = math.frexp(a)                  # a = m * 2**e, 0.5 <= m < 1
        if e < cls.EMIN:
            return 0
        if e > cls.EMAX:
            return cls.NB - 1
        return (e - cls.EMIN) * cls.SUB + int((m - 0.5) * 2 * cls.SUB)

    @classmethod
    def _mid(cls, k: int) -> float:
        e, sub = divmod(k, cls.SUB)
        return math.ldexp(0.5 + (sub + 0.5) / (2 * cls.SUB), e + cls.EMIN)

    def add(self, v: float) -> None:
        if not math.isfinite(v):
            return
        if v > 0.0:
            i = self.NB + 1 + self._bucket(v)
        elif v < 0.0:
            i = self.NB - 1 - self._bucket(-v)
        else:
            i = self.NB
        self.counts[i] += 1
        self.n += 1
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v

    def __len__(self) -> int:
        return self.n

    def percentiles(self, ps) -> list:
        """Nearest-rank percentiles (p in 0..100) as described above; [] when empty."""
        cum = np.cumsum(self._view)
        n = int(cum[-1])
        if n == 0:
            return []
        lo, hi = self.min, self.max
        out = []
        for p in ps:
            r = max(1, math.ceil(p / 100.0 * n))
            if r >= n:
                out.append(hi)
                continue
            if r == 1:
                out.append(lo)
                continue
            i = int(np.searchsorted(cum, r))
            if i > self.NB:
                v = self._mid(i - self.NB - 1)
            elif i < self.NB:
                v = -self._mid(self.NB - 1 - i)
            else:
                v = 0.0
            out.append(min(max(v, lo), hi))
        return out


ERRORS_MAX = 50      # distinct error texts counted by name; the rest under "(other errors)"


@dataclass(slots=True)
class SessionSummary:
    """Accumulates records: counts, PnL per primary quote, amounts left held by failures,
    error/reason counts, and latencies in us (docs/design.md 9):
    tick_to_fire = leg 0 bytes written - frame receipt; signal_to_fire = leg 0 bytes
    written - the evaluation that made the signal (the decision; with fire_from = executor
    it includes the ring push and the thread hand-off, the seed's "pipeline gap");
    leg_gap = the event completing leg k (filled/canceled, when its output is known) ->
    bytes written of leg k+1. Memory is bounded: latencies in LatencyHistogram, error texts
    (which may carry amounts) counted by name for the first ERRORS_MAX, then as one."""
    mode: str = ""
    tried: int = 0
    filled: int = 0
    failed: int = 0
    aborted: int = 0
    partial: int = 0
    unknown: int = 0                               # triangles with an UNKNOWN leg
    followups: int = 0                             # FOLLOWUP records (an UNKNOWN leg resolved)
    missed: int = 0                                # MISSED: leg 0 IOC filled nothing (not in tried)
    recovered: int = 0                             # RECOVERED: an earlier session's dead triangle
    unwound: int = 0                               # UNWOUND records
    unwind_failed: int = 0                         # UNWIND_FAILED records
    unwind_cost: dict = field(default_factory=dict)  # start ccy -> value at the reference
                                                   # prices minus what the unwinds fetched
    unresolved: dict = field(default_factory=dict)  # clientOid -> corr of UNKNOWN legs not yet
                                                   # resolved by a FOLLOWUP (found or not)
    pnl: dict = field(default_factory=dict)        # start ccy -> sum of its real change
    held: dict = field(default_factory=dict)       # ccy -> amount left outside start ccys
    errors: Counter = field(default_factory=Counter)
    tick_to_fire_us: LatencyHistogram = field(default_factory=LatencyHistogram)
    signal_to_fire_us: LatencyHistogram = field(default_factory=LatencyHistogram)
    leg_gap_us: LatencyHistogram = field(default_factory=LatencyHistogram)
    kills: list = field(default_factory=list)      # KILLED lines (the log thread; docs/design.md 12)
    state: str = ""                                # RUNNING / PAUSED ... / KILLED (paused) at the end

    def _error(self, text: str) -> None:
        key = _one_line(text)[:80]
        if key not in self.errors and len(self.errors) >= ERRORS_MAX:
            key = "(other errors)"
        self.errors[key] += 1

    def add(self, rec) -> None:
        if isinstance(rec, StartupReport):
            return
        if isinstance(rec, UnwindReport):
            if rec.status == UNWOUND:
                self.unwound += 1
            else:
                self.unwind_failed += 1
                self.errors[_one_line("unwind: " + rec.error)[:80]] += 1
            if rec.ref_value and rec.legs:
                self.unwind_cost[rec.start] = self.unwind_cost.get(rec.start, 0.0) + rec.ref_value - rec.received
            for lg in rec.unknown_legs():
                if len(self.unresolved) < 10_000:
                    self.unresolved[lg.client_oid] = rec.corr
            self._money(rec)
            return
        if isinstance(rec, TriangleReport) and rec.status == STATUS_RECOVERED:
            self.recovered += 1
            self._money(rec)
            return
        if isinstance(rec, TriangleReport) and rec.status == STATUS_MISSED:
            self.tried += 1
            self.missed += 1
            self._latencies(rec)
            return
        if isinstance(rec, FollowUp):
            self.followups += 1
            self.unresolved.pop(rec.leg.client_oid, None)
            self._money(rec)
            return
        self.tried += 1
        if rec.status == STATUS_FILLED:
            self.filled += 1
        elif rec.status == STATUS_PARTIAL:
            self.partial += 1
        elif rec.status == STATUS_FAILED:
            self.failed += 1
            self._error(rec.error)
        elif rec.status == STATUS_UNKNOWN:
            self.unknown += 1
            self._error(rec.error)
        else:
            self.aborted += 1
            self._error(rec.reason)
        for lg in rec.unknown_legs():
            if len(self.unresolved) < 10_000:
                self.unresolved[lg.client_oid] = rec.corr
        self._money(rec)
        self._latencies(rec)

    def _money(self, rec) -> None:
        if rec.profit is not None:
            p = rec.triangle[0]
            self.pnl[p] = self.pnl.get(p, 0.0) + rec.profit
        for amount, ccy in rec.held():
            self.held[ccy] = self.held.get(ccy, 0.0) + amount
            if self.held[ccy] == 0.0:
                del self.held[ccy]

    def _latencies(self, rec) -> None:
        w0 = _leg_ns(rec, 0, "written_ns")
        # tick-to-fire counts signals made by a frame; a re-evaluation at a slot release has
        # no frame (its recv_ns is the re-evaluation's time), it counts in signal-to-fire only
        ticks = rec.recv_ns if rec.origin == "frame" else 0
        for vals, a in ((self.tick_to_fire_us, ticks), (self.signal_to_fire_us, rec.evaluated_ns)):
            us = _us(a, w0)
            if us is not None:
                vals.add(us)
        for k in range(len(rec.legs) - 1):
            us = _us(rec.legs[k].last_fill_ns, rec.legs[k + 1].written_ns)
            if us is not None:
                self.leg_gap_us.add(us)

    @staticmethod
    def _stats(h: LatencyHistogram) -> dict:
        got = h.percentiles((50, 90, 99, 99.9, 100))
        if not got:
            return {"n": 0, "p50": None, "p90": None, "p99": None, "p999": None, "max": None}
        return {"n": len(h), "p50": got[0], "p90": got[1], "p99": got[2], "p999": got[3],
                "max": got[4]}

    def as_dict(self) -> dict:
        return {
            "mode": self.mode, "tried": self.tried, "filled": self.filled,
            "partial": self.partial, "failed": self.failed, "aborted": self.aborted,
            "unknown": self.unknown, "followups": self.followups, "missed": self.missed,
            "recovered": self.recovered, "unwound": self.unwound, "unwind_failed": self.unwind_failed,
            "unwind_cost": dict(self.unwind_cost),
            "unresolved": sorted(self.unresolved),
            "pnl": dict(self.pnl), "held": dict(self.held), "errors": dict(self.errors),
            "tick_to_fire_us": self._stats(self.tick_to_fire_us),
            "signal_to_fire_us": self._stats(self.signal_to_fire_us),
            "leg_gap_us": self._stats(self.leg_gap_us),
            "kills": list(self.kills), "state": self.state,
        }

    def render(self, valuer=None, ref: str = "USDT") -> str:
        """The summary text; with a holdings.Valuer, holdings are valued in `ref` too."""
        d = self.as_dict()
        lines = [f"session summary ({self.mode or '-'}): tried={self.tried} filled={self.filled} "
                 f"partial={self.partial} failed={self.failed} aborted={self.aborted} "
                 f"unknown={self.unknown} missed={self.missed}"
                 + (f" followups={self.followups}" if self.followups else "")
                 + (f" recovered={self.recovered}" if self.recovered else "")]
        if self.unwound or self.unwind_failed:
            cost = " ".join(f"{c}={fmt_num(v)}" for c, v in sorted(self.unwind_cost.items())) or "-"
            lines.append(f"  unwinds: unwound={self.unwound} unwind_failed={self.unwind_failed} "
                         f"cost (value at the signals' prices - received): {cost}")
        if self.state:
            lines.append(f"  state at the end: {self.state}")
        for k in self.kills:
            lines.append(f"  {k}")
        pnl = " ".join(f"{c}={fmt_num(v)}" for c, v in sorted(self.pnl.items())) or "-"
        lines.append(f"  pnl (start currencies' real change): {pnl}")
        if self.held:
            parts, total, unpriced = [], 0.0, []
            for c, v in sorted(self.held.items()):
                val = valuer.value(v, c, ref) if valuer is not None else None
                parts.append(f"{c}={fmt_num(v)}" + (f"(~{fmt_num(val)} {ref})" if val is not None else ""))
                if val is None:
                    unpriced.append(c)
                else:
                    total += val
            lines.append("  holdings left outside start currencies: " + " ".join(parts))
            if valuer is not None:
                lines.append(f"  holdings value: ~{fmt_num(total)} {ref} at the best bids now"
                             + (f" (no price for {', '.join(unpriced)})" if unpriced else ""))
        if self.unresolved:
            lines.append(f"  UNKNOWN legs not resolved ({len(self.unresolved)}): "
                         + " ".join(sorted(self.unresolved)[:20]))
        for name in ("tick_to_fire_us", "signal_to_fire_us", "leg_gap_us"):
            st = d[name]
            if st["n"]:
                lines.append(f"  {name}: n={st['n']} p50={st['p50']:.1f} p90={st['p90']:.1f} "
                             f"p99={st['p99']:.1f} max={st['max']:.1f}")
            else:
                lines.append(f"  {name}: n=0")
        for text, n in self.errors.most_common(5):
            lines.append(f"  {n}x {text}")
        return "\n".join(lines)


if __name__ == "__main__":
    # `python report.py runs/<start>` / `python report.py runs/`: the HTML session report
    # (session_report.py; imported here only, so matplotlib stays out of the engine).
    import sys

    import session_report
    sys.exit(session_report.main(sys.argv))
