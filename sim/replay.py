"""sim/replay.py: the simulator's market served from a recording (`python -m sim --replay FEED`).

Owns: `ReplayMarket` (a sim.market.Market whose books are the recorded ones and whose
level2 stream is the recorded stream, replayed in recorded time, optionally faster) and
its competitors: other traders who take every triangular edge the books show, after a
delay drawn per edge (`--take-delay-ms`, or `--take-latency lognormal:MEDIAN_MS:SIGMA` /
`uniform:LO_MS:HI_MS`).
Thread: the simulator's single asyncio thread (sim/server.py); nothing blocks.
Run/test: `python -m sim --replay runs/<start>/feed.zst --replay-speed 1`;
tests/test_sim_replay.py runs the engine live against a recording end to end.

How the recording becomes a market: each symbol's book starts as its first recorded REST
snapshot (the engine's own, feed.K_SNAP; or a capture's), at recorded time zero; every
recorded level2 change after that snapshot's sequence sets its level's absolute size on the
simulator's book (docs/kucoin.md 3.8), which the simulator then publishes with its own
sequence numbers (our orders change the books too, so the numbering cannot be the
recording's). A later recorded snapshot, newer than the stream applied so far, replaces
the book (the venue's view). Our market orders take liquidity from these books exactly as
on the synthetic market (sim/exchange.py); a recorded update of a level we took from later
restores the venue's size there, as if other traders had refilled it.

Competitors: after each recorded message, every triangle through its symbol whose
top-of-book cycle yields more than 1 after taker fees (either direction) gets a take
scheduled `delay` later; at that moment, while the cycle still pays, the competitor takes
the size the three top levels allow (mispricing.capacity) from all three books. So an edge
the recording shows lives `delay` ms for us, as it would against traders that fast.
Which symbols: those of the recording that have a snapshot. Determinism: the delays come
from a generator seeded by --seed; the stream from the recording.
"""
from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from pathlib import Path

from . import mispricing
from .book import SIDE_ASK, SIDE_BID, Book
from .market import Market, find_triangles


def parse_latency(spec: str, default_ms: float):
    """'' -> constant default_ms; 'lognormal:MEDIAN_MS:SIGMA'; 'uniform:LO_MS:HI_MS';
    'const:MS'. Returns a function rng -> ms."""
    if not spec:
        return lambda rng: default_ms
    kind, *a = spec.split(":")
    try:
        v = [float(x) for x in a]
    except ValueError:
        raise SystemExit(f"--take-latency {spec!r}: numbers expected") from None
    if kind == "lognormal" and len(v) == 2:
        return lambda rng: v[0] * math.exp(rng.gauss(0.0, v[1]))
    if kind == "uniform" and len(v) == 2:
        return lambda rng: rng.uniform(v[0], v[1])
    if kind == "const" and len(v) == 1:
        return lambda rng: v[0]
    raise SystemExit(f"--take-latency {spec!r}: expected lognormal:MEDIAN_MS:SIGMA, "
                     "uniform:LO_MS:HI_MS or const:MS")


def load_recording(path: str):
    """(symbol dicts, events, taker fee) of a feed recording or a JSONL capture; events are
    (t_ns, kind, symbol, data) with kind 'l2' (the level2 data dict) or 'snap' (REST-like
    {sequence, bids, asks} of decimal strings)."""
    import sys
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import feed
    import wsread
    p = Path(path)
    events = []
    if p.suffix == ".jsonl":
        date = p.stem.rsplit("-", 3)
        snaps = sorted(p.parent.glob("orderbook-level2-snapshots-" + "-".join(date[-3:]) + ".jsonl"))
        known = json.loads((root / "data" / "symbols-2024-09.json").read_text())
        syms, _ = feed.capture_symbols(p, snaps[0] if snaps else None, known)
        for ev in feed.capture_events(p, snaps[0] if snaps else None):
            if ev[0] == "snap_rest":
                events.append((ev[1], "snap", ev[2], ev[3]))
            else:
                _l2_event(events, ev[2], _payload(ev[3]))
        return syms, events, 0.001
    recs = feed.read_records(p)
    head = next(recs).json()
    names = {}
    links = {}
    import numpy as np
    import maint
    bufs = {}
    for r in recs:
        if r.kind == feed.K_LINK:
            links[r.link] = r.json()["kind"]
        elif r.kind == feed.K_READ and links.get(r.link) == "public":
            buf = bufs.get(r.link, b"") + r.payload
            pos = 0
            arr = np.frombuffer(buf, np.uint8)
            while True:
                st, b0, s, e = wsread.next_frame(arr, pos, len(arr))
                if st != wsread.F_OK:
                    break
                pos = int(e)
                if b0 & 0x0F == wsread.OP_TEXT:
                    _l2_event(events, r.ns, buf[s:e])
            bufs[r.link] = buf[pos:]
        elif r.kind == feed.K_SNAP:
            rec = np.frombuffer(r.payload, maint.snapshot_dtype(r.flags))[0]
            if rec["status"] != maint.SNAP_OK:
                continue
            if not names:
                import universe
                uni = universe.Universe(head["symbols"], [c for c in head["config"]["primary_quotes"].split(",") if c],
                                        head.get("fees") or {}, head.get("default_taker_fee", 0.001),
                                        only_symbols=[s for s in head["config"].get("symbols", "").split(",") if s] or None)
                names = dict(enumerate(uni.symbols))
            events.append((r.ns, "snap", names[int(rec["sym"])], {
                "sequence": str(int(rec["seq"])),
                "bids": [[repr(float(rec["px"][0, i])), repr(float(rec["sz"][0, i]))] for i in range(rec["n_bid"])],
                "asks": [[repr(float(rec["px"][1, i])), repr(float(rec["sz"][1, i]))] for i in range(rec["n_ask"])]}))
    fee = float(head.get("default_taker_fee") or 0.001)
    return head["symbols"], events, fee


def _payload(framed: bytes) -> bytes:
    n = framed[1] & 0x7F
    return framed[2 + (2 if n == 126 else 8 if n == 127 else 0):]


def _l2_event(events, ns, text: bytes) -> None:
    if b'"trade.l2update"' not in text:
        return
    try:
        d = json.loads(text)["data"]
    except (ValueError, KeyError):
        return
    events.append((ns, "l2", d["symbol"], d))


def _dec_tick(v: str, inc: Decimal) -> int:
    q = Decimal(v) / inc
    return int(q.to_integral_value())


class ReplayMarket(Market):
    """A Market over a recording (module docstring)."""

    def __init__(self, path: str, *, seed: int, speed: float = 1.0, take_delay_ms: float = 400.0,
                 take_latency: str = "", taker_fee: float | None = None):
        syms, events, fee = load_recording(path)
        first_snap = {}
        for ns, kind, sym, data in events:
            if kind == "snap" and sym not in first_snap:
                first_snap[sym] = ns
        infos = [dict(d, enableTrading=True) for d in syms if d["symbol"] in first_snap]
        if not infos:
            raise SystemExit(f"sim: {path}: no symbol with a snapshot in the recording")
        super().__init__(infos, seed=seed, depth=120, update_rate=0.0, mispricing_rate=0.0,
                         take_delay_ms=int(take_delay_ms), taker_fee=fee if taker_fee is None else taker_fee)
        self.triangles = find_triangles(infos)             # competitors watch every triangle
        self.tri_by_sym: dict[str, list] = {}
        for t in self.triangles:
            for s in t[1].values():
                self.tri_by_sym.setdefault(s, []).append(t)
        self.events = sorted((e for e in events if e[2] in first_snap), key=lambda e: e[0])
        self.t0_ns = min(first_snap.values())
        self.speed = speed
        self.delay = parse_latency(take_latency, take_delay_ms)
        self.take_rng = random.Random(seed ^ 0x5EED)
        self.i = 0
        self.ready = None          # set by the server: True once a client subscribed to level2
        self.wait_ms = 0.0         # ... and the recording starts this long after that
        self.start_vt = None
        self._now_vt = 0.0
        self.rec_seq: dict[str, int] = {}
        self.started: set[str] = set()
        self.scheduled: dict[tuple, float] = {}             # (triangle ccys, direction) -> vt
        self.counters.update({"replayed": 0, "edges_seen": 0, "edges_taken": 0, "competitor_fills": 0})
        self.done = False
        # every symbol's first snapshot (and what came before it) is the market at start
        last_first = max(first_snap.values())
        while self.i < len(self.events) and self.events[self.i][0] <= last_first:
            self._event(*self.events[self.i])
            self.i += 1
        self.scheduled.clear()
        self.base_ns = last_first

    # -- the recorded stream --------------------------------------------------------------
    def _snapshot(self, sym: str, data: dict) -> None:
        seq = int(data["sequence"])
        if sym in self.started and seq <= self.rec_seq.get(sym, -1):
            return      # older than what was already applied
        b = self.books[sym]
        want = {SIDE_BID: {}, SIDE_ASK: {}}
        for side, key in ((SIDE_BID, "bids"), (SIDE_ASK, "asks")):
            for p, s in data[key]:
                t, lots = _dec_tick(p, b.pinc), _dec_tick(s, b.binc)
                if t > 0 and lots > 0:
                    want[side][t] = lots
        if sym not in self.started:
            for side in (SIDE_BID, SIDE_ASK):
                for t, _ in b.levels(side):
                    b.set(side, t, 0)
                for t, lots in want[side].items():
                    b.set(side, t, lots)
            b.seq = seq
            self.started.add(sym)
        else:
            for side in (SIDE_BID, SIDE_ASK):
                for t, _ in b.levels(side):
                    if t not in want[side]:
                        self.change(b, side, t, 0)
                for t, lots in want[side].items():
                    if b.get(side, t) != lots:
                        self.change(b, side, t, lots)
            self.flush(sym)
        self.rec_seq[sym] = seq

    def _l2(self, sym: str, d: dict) -> None:
        if sym not in self.started:
            return
        b = self.books[sym]
        last = self.rec_seq[sym]
        if d["sequenceEnd"] <= last:
            return
        for key, side in (("asks", SIDE_ASK), ("bids", SIDE_BID)):
            for p, s, q in d["changes"][key]:
                if int(q) <= last:
                    continue
                if p == "0":
                    self.seq_only(b, side)
                    continue
                self.change(b, side, _dec_tick(p, b.pinc), _dec_tick(s, b.binc))
        self.rec_seq[sym] = d["sequenceEnd"]
        self.counters["replayed"] += 1
        self.flush(sym)
        self._watch(sym)

    def _event(self, ns, kind, sym, data) -> None:
        if kind == "snap":
            self._snapshot(sym, data)
        else:
            self._l2(sym, data)

    # -- competitors ------------------------------------------------------------------------
    def _cycles(self, t):
        ccys, syms = t
        a, b, c = ccys
        return (("fwd", [a, b, c]), ("rev", [a, c, b]))

    def _watch(self, sym: str) -> None:
        for t in self.tri_by_sym.get(sym, ()):
            if not all(s in self.started for s in t[1].values()):
                continue
            for name, cyc in self._cycles(t):
                key = (tuple(t[0]), name)
                if key in self.scheduled:
                    continue
                legs = mispricing.triangle_legs(self, cyc, t[1])
                rates = mispricing.leg_rates(self, legs)
                if rates is not None and math.prod(rates) > 1.0:
                    self.counters["edges_seen"] += 1
                    self.scheduled[key] = self._now_vt + max(0.0, self.delay(self.take_rng))

    def _take(self, key) -> None:
        ccys, name = key
        t = next(t for t in self.triangles if tuple(t[0]) == ccys)
        cyc = dict(self._cycles(t))[name]
        legs = mispricing.triangle_legs(self, cyc, t[1])
        took = False
        for _ in range(20):
            rates = mispricing.leg_rates(self, legs)
            if rates is None or math.prod(rates) <= 1.0:
                break
            amount = mispricing.capacity(self, legs, rates)
            moved = False
            for (side, sym), r in zip(legs, rates):
                b = self.books[sym]
                if side == "buy":
                    tick, lots = b.level_at(SIDE_ASK, 0)
                    want = min(lots, max(1, int(amount / (tick * b.pinc_f * (1 + self.taker_fee)) / b.binc_f)))
                    self._fill(b, SIDE_ASK, tick, want)
                    amount = want * b.binc_f
                else:
                    tick, lots = b.level_at(SIDE_BID, 0)
                    want = min(lots, max(1, int(amount / b.binc_f)))
                    self._fill(b, SIDE_BID, tick, want)
                    amount = want * b.binc_f * tick * b.pinc_f * (1 - self.taker_fee)
                moved = moved or want > 0
            took = took or moved
            if not moved:
                break
        if took:
            self.counters["edges_taken"] += 1

    def _fill(self, b: Book, side: int, tick: int, lots: int) -> None:
        self.trade_id += 1
        if self.on_trade is not None:
            self.on_trade(b.symbol, "buy" if side == SIDE_ASK else "sell", b.px(tick), b.sz(lots),
                          str(self.trade_id))
        self.change(b, side, tick, b.get(side, tick) - lots)
        self.flush(b.symbol)
        self.counters["competitor_fills"] += 1

    # -- time -------------------------------------------------------------------------------
    def advance(self, target_vt_ms: float, max_steps: int = 50) -> None:
        """Recorded events up to (target - start) * speed of recorded time, each with the
        takes due before it, then the takes due now. The recording starts wait_ms after the
        first level2 subscription (the client has its snapshots by then)."""
        self.vt_ms = max(self.vt_ms, target_vt_ms)
        if self.start_vt is None:
            if self.ready is not None and not self.ready():
                return
            self.start_vt = self.vt_ms + self.wait_ms
        rec_ms = (self.vt_ms - self.start_vt) * self.speed
        if rec_ms < 0:
            return
        horizon_ns = self.base_ns + rec_ms * 1e6
        ev = self.events
        while self.i < len(ev) and ev[self.i][0] <= horizon_ns:
            ns = ev[self.i][0]
            self._now_vt = self.start_vt + (ns - self.base_ns) / 1e6 / self.speed
            self._takes_due(self._now_vt)
            self._event(*ev[self.i])
            self.i += 1
        self._now_vt = self.vt_ms
        self._takes_due(self.vt_ms)
        self.done = self.i >= len(ev)

    def _takes_due(self, vt: float) -> None:
        for key, at in sorted(self.scheduled.items(), key=lambda kv: kv[1]):
            if at <= vt:
                del self.scheduled[key]
                self._take(key)
