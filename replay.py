"""replay.py: a recorded market through the engine's own kernels, at full speed, deterministically.

    python replay.py FEED [--ini X.ini] [--set key=value ...] [--sweep key=v1,v2,...]
                          [--snapshots SNAPS.jsonl] [--out DIR] [--hold-ms MS] [--no-verify]

FEED is a recording (`runs/<start>/feed.zst`, written with `record = true`; feed.py) or a
JSONL capture such as tests/data/ws-public-2021-04-25.jsonl (its REST snapshots come from
--snapshots, by default the orderbook-level2-snapshots-<same date>.jsonl beside it).

Every socket read goes through `hotctx.hot_chunk` (frame cutter, topic table, level2 parser,
book under KuCoin's sequence rules, evaluation, slot pick, staged signal, opportunity
tracking) exactly as the hot thread calls it; snapshots through `books.book_sync_snapshot`
at the point of the stream where the hot thread applied them. No wall clock: with
`pipeline.P_VCLOCK` every stamp, book age and retrigger interval uses the recorded receive
times, so the same recording and settings give the same output, byte for byte.

What it cannot know is when a live triangle ended and freed its slot. `--slots recorded`
(the default for a recording replayed with its own settings) releases a slot where the
recording's wake-up says the live session had released it (feed.K_REEVAL); otherwise a
slot is busy for `--hold-ms` of recorded time after its signal. Balances: the recording's
start balances, then its private balance frames.

Output (printed, and written to --out, default runs/replay/<feed name>/): signals.jsonl
(the signals the engine would have made), opportunities.jsonl, summary.txt (counters, the
book check against the recorded snapshots, the opportunity table). `--sweep key=a,b,c`
runs once per value and prints one row each.

Settings: the recording's own [engine] config (or, for a capture, the defaults below),
then --ini's [engine] section, then each --set. Test: tests/test_replay.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import books  # noqa: E402
import feed  # noqa: E402
import hotctx  # noqa: E402
import maint  # noqa: E402
import opportunity  # noqa: E402
import paperbook  # noqa: E402
import pipeline  # noqa: E402
import rings  # noqa: E402
import slots as slotmod  # noqa: E402
import wsread  # noqa: E402

BALANCE_MARK = b'"subject":"account.balance"'
# A capture has no config: these settings (0.1 % taker fee: KuCoin's base rate)
CAPTURE_DEFAULTS = {"primary_quotes": "USDT,BTC,ETH", "max_start": "USDT=100,BTC=0.002,ETH=0.05",
                    "default_taker_fee": "0.001", "max_book_age_ms": "3600000",
                    "retrigger_ms": "1000", "slots": "2"}
# keys replay.py takes from the recording but that make no sense to parse here
NOT_REPLAYED = {"venue", "rest_url", "mode", "cpus", "log_dir", "record", "run_seconds"}


class BufReader(wsread.FrameReader):
    """A FrameReader over recorded bytes (no socket): fragments joined as the hot thread does."""

    def __init__(self):  # noqa: D107 (no socket, no super().__init__)
        self.buf = np.zeros(2 * wsread.CHUNK, np.uint8)
        self.blen = 0
        self._frag_op = -1
        self._frag = bytearray()
        self.tls = False


# -- inputs ------------------------------------------------------------------------------------

class Source:
    """A recording or a capture as (header, events)."""

    def __init__(self, path, snapshots=None):
        self.path = Path(path)
        if self.path.suffix == ".jsonl":
            snaps = Path(snapshots) if snapshots else self._sibling_snapshots()
            known = json.loads((HERE / "data" / "symbols-2024-09.json").read_text())
            syms, derived = feed.capture_symbols(self.path, snaps, known)
            self.header = {"config": dict(CAPTURE_DEFAULTS), "symbols": syms, "fees": {},
                           "default_taker_fee": 0.001, "balances": None, "run_id": 0,
                           "capture": True, "derived_symbols": derived}
            self._events = feed.capture_events(self.path, snaps)
            self.snapshots_path = snaps
        else:
            try:
                self.header = feed.header_of(self.path)
            except ValueError as e:
                raise SystemExit(f"replay: {e}") from None
            self._events = None          # a recording is read again per run: hours of it
            self.snapshots_path = None   # do not fit in memory as records

    @property
    def events(self):
        """The events in order: a capture's list, or a recording's records read anew."""
        if self._events is not None:
            return self._events
        recs = feed.read_records(self.path)
        next(recs)                       # the header
        return recs

    def has_wakes(self) -> bool:
        """Does the recording mark the hot thread's wake-ups (feed.K_REEVAL)? The first comes
        as soon as a link is handed over, so this reads only the beginning."""
        if self._events is not None:
            return False
        return any(r.kind == feed.K_REEVAL for r in self.events)

    def _sibling_snapshots(self):
        date = self.path.stem.rsplit("-", 3)
        cand = sorted(self.path.parent.glob("orderbook-level2-snapshots-" + "-".join(date[-3:]) + ".jsonl"))
        return cand[0] if cand else None

    @property
    def is_capture(self):
        return bool(self.header.get("capture"))


def build_config(source: Source, ini_path=None, sets=()):
    from config import SCHEMA, parse_config
    eng = {k: v for k, v in source.header["config"].items() if k in SCHEMA["engine"]}
    if ini_path:
        import configparser
        cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
        cp.read(ini_path)
        if cp.has_section("engine"):
            eng.update(dict(cp["engine"]))
    for kv in sets:
        k, _, v = kv.partition("=")
        if k.strip() not in SCHEMA["engine"]:
            raise SystemExit(f"replay: --set {kv!r}: unknown [engine] key")
        eng[k.strip()] = v.strip()
    for k in NOT_REPLAYED:
        eng.pop(k, None)
    eng["venue"] = "sim"
    text = "[engine]\n" + "".join(f"{k} = {v}\n" for k, v in eng.items())
    return parse_config(text, "replay", environ={})


# -- the run ------------------------------------------------------------------------------------

class Replay:
    def __init__(self, source: Source, cfg, hold_ms: float = 3.0, slot_mode: str = "hold",
                 verify: bool = True):
        import run
        import universe
        self.src = source
        self.cfg = cfg
        h = source.header
        only = set(cfg.symbols) if cfg.symbols else None
        self.uni = universe.Universe(h["symbols"], cfg.primary_quotes, h.get("fees") or {},
                                     h.get("default_taker_fee", cfg.default_taker_fee),
                                     only_symbols=only, keep_all=source.is_capture)
        bal = h.get("balances")
        if bal is None:    # a capture: the account holds max_start of each primary
            bal = {k: str(v) for k, v in cfg.max_start.items()}
        self.sh = sh = run.allocate(cfg, self.uni, {k: Decimal(str(v)) for k, v in bal.items()},
                                    int(h.get("run_id") or 0), "replay")
        sh.pstate[pipeline.P_VCLOCK] = 1
        self.hold_ns = int(hold_ms * 1e6)
        self.slot_mode = slot_mode
        self.verify = verify
        self.tab = sh.hot_table.tab
        self.res = hotctx.alloc_result()
        self.res1 = hotctx.alloc_result()
        self.readers: dict[int, BufReader] = {}
        self.link_kind = {1: "public"} if source.is_capture else {}
        self.link_syms: dict[int, list] = {}
        self.signals: list[dict] = []
        self.acq_ns = np.zeros(len(sh.slots), np.int64)
        self.opps: list[dict] = []
        self._opp = np.zeros(1, opportunity.OPP_DTYPE)
        self.t0 = None
        self.last_ns = 0
        self.sym_index = {s.encode(): i for i, s in enumerate(self.uni.symbols)}
        self.check = BookCheck(self.uni, sh) if verify else None
        self.snaps = {"applied": 0, "too_old": 0, "ignored": 0, "bad": 0}
        # hold mode with paper_consume: each signal's three legs take their levels off the
        # book when its slot frees, as a paper session does (paperbook.py); recorded mode
        # replays the recorded consumption instead. A live recording's stream already shows
        # our own fills: not modelled.
        self.model_consume = (slot_mode == "hold" and cfg.paper_consume
                              and source.header.get("mode") != "live")
        self.pending_consume: dict[int, np.ndarray] = {}

    # -- slots -------------------------------------------------------------------------------
    def _release(self, k: int) -> None:
        recs = self.pending_consume.pop(k, None)
        if recs is not None:
            sh = self.sh
            for r in recs:
                paperbook.apply_held(r, sh.book_state, sh.book_px, sh.book_sz)
                if self.check is not None:
                    self.check.consume(r)
        slotmod.release(self.sh.slots, k)

    def _model_legs(self, slot: int, t: int, start_vol: float) -> None:
        """The levels the signal's three legs would take (the candidate's predicted order
        amounts: funds of a buy, size of a sell), walked on the book as it is now."""
        sh = self.sh
        c = sh.cands
        row = None
        for i in range(len(c)):
            if int(c[i]["tri"]) == t and c[i]["start_vol"] == start_vol:
                row = c[i]
                break
        if row is None:
            return
        tr = self.uni.tris[t]
        recs = np.zeros(3, paperbook.CONSUME_DTYPE)
        for k in range(3):
            sym = int(tr[f"sym{k}"])
            side = books.SIDE_ASK if int(tr[f"side{k}"]) == 0 else books.SIDE_BID
            r = recs[k]
            r["sym"], r["side"], r["slot"] = sym, side, slot
            r["n"] = paperbook.walk_levels(sh.book_px, sh.book_sz, sym, side, float(row[f"amt{k}"]),
                                           float(self.uni.symtab[sym]["base_inc"]), r["px"], r["sz"])
        self.pending_consume[slot] = recs

    def _release_due(self, ns: int) -> None:
        t = self.sh.slots
        for k in range(len(t)):
            if slotmod.is_busy(t, k) and ns - self.acq_ns[k] >= self.hold_ns:
                self._release(k)

    def _release_recorded(self, released) -> None:
        t = self.sh.slots
        for k in range(min(len(t), len(released))):
            if slotmod.is_busy(t, k) and int(released[k]) >= int(t[k]["acquired_seq"]):
                self._release(k)

    def _signal(self, slot: int, ns: int) -> None:
        s = self.sh.sig_stage[0]
        t = int(s["tri"])
        tr = self.uni.tris[t]
        self.acq_ns[slot] = ns
        if self.model_consume:
            self._model_legs(slot, t, float(s["start_vol"]))
        self.signals.append({
            "n": len(self.signals), "t_ms": round((int(s["recv_ns"]) - self.t0) / 1e6, 3),
            "recv_ns": int(s["recv_ns"]), "origin": "reeval" if int(s["origin"]) != 0 else "frame",
            "corr": f"{int(s['corr']):x}", "slot": slot, "triangle": self.uni.tri_currencies(t),
            "symbols": [self.uni.symbols[int(tr[f"sym{k}"])] for k in range(3)],
            "start_volume": float(f"{float(s['start_vol']):.12g}"),
            "predicted_bps": round(float(s["pred_bps"]), 4),
            "expected_out": float(f"{float(s['exp_out']):.12g}"),
            "book_ts_ms": int(s["book_ts_ms"])})

    # -- events ------------------------------------------------------------------------------
    def _chunk(self, buf, blen, ns, res, link_rd):
        tab = self.tab
        try:
            while True:
                slot = hotctx.hot_chunk(tab, buf, blen, ns, res)
                if slot >= 0:
                    self._signal(slot, ns)
                elif slot == hotctx.OTHERS_FULL:
                    self._others(link_rd, res, ns)
                elif slot == hotctx.FILL_EVENT:
                    continue      # one of the live session's orders: nothing to fill here
                else:
                    break
            if link_rd is not None:
                self._others(link_rd, res, ns)
            return int(res[hotctx.R_POS])
        finally:
            hotctx.reset_result(res)

    def _others(self, rd, res, ns):
        for q in range(int(res[hotctx.R_NOTHER])):
            k = hotctx.R_OTHERS + 3 * q
            m = rd.message(int(res[k]), int(res[k + 1]), int(res[k + 2]))
            if m is None:
                continue
            op, data = m
            if op != wsread.OP_TEXT:
                continue
            if b'"subject":"trade.l2update"' in data:       # a joined fragmented frame
                b = np.frombuffer(wsread.text_header(len(data)) + data, np.uint8).copy()
                self._chunk(b, len(b), ns, self.res1, None)
            elif BALANCE_MARK in data:
                self._balance(data)
        res[hotctx.R_NOTHER] = 0

    def _balance(self, data: bytes) -> None:
        try:
            d = json.loads(data)["data"]
        except (ValueError, KeyError):
            return
        ccy = self.uni.ccy_index.get(d.get("currency"))
        if ccy is not None:
            self.sh.balances[ccy] = float(d["available"])

    def _read(self, link: int, ns: int, data: bytes) -> None:
        rd = self.readers.get(link)
        if rd is None:
            rd = self.readers[link] = BufReader()
        rd.feed(data)
        if self.check is not None and self.link_kind.get(link) == "public":
            self.check.frames(data)
        pos = self._chunk(rd.buf, rd.blen, ns, self.res, rd)
        rd.consume(pos)

    def _snapshot_record(self, payload: bytes, depth: int, ns: int) -> None:
        rec = np.frombuffer(payload, maint.snapshot_dtype(depth))[0]
        if rec["status"] != maint.SNAP_OK:
            return
        sym = int(rec["sym"])
        data = {"sequence": int(rec["seq"]),
                "bids": [(float(rec["px"][0, i]), float(rec["sz"][0, i])) for i in range(rec["n_bid"])],
                "asks": [(float(rec["px"][1, i]), float(rec["sz"][1, i])) for i in range(rec["n_ask"])]}
        self._apply_snapshot(sym, int(rec["seq"]), int(rec["ts_ms"]), ns, rec["px"], rec["sz"],
                             int(rec["n_bid"]), int(rec["n_ask"]), depth, data)

    def _snapshot_rest(self, ns: int, symbol: str, data: dict) -> None:
        sym = self.uni.sym_index.get(symbol)
        if sym is None:
            return
        seq, ts, px, sz, n = books.snapshot_arrays(data, self.cfg.book_depth + 1)
        ref = {"sequence": seq, "bids": [(float(p), float(s)) for p, s in data["bids"]],
               "asks": [(float(p), float(s)) for p, s in data["asks"]]}
        self._apply_snapshot(sym, seq, ts, ns, px, sz, int(n[books.SIDE_BID]),
                             int(n[books.SIDE_ASK]), 0, ref, rest=data)

    def _apply_snapshot(self, sym, seq, ts, ns, px, sz, nb, na, limit, ref, rest=None):
        sh = self.sh
        if self.check is not None:
            self.check.snapshot(sym, ref, rest)
        st = books.book_sync_snapshot(sh.book_state, sh.book_px, sh.book_sz, sh.pend, sh.pctl,
                                      sym, seq, ts, ns, px, sz, nb, na, limit)
        key = {books.SNAP_SYNCED: "applied", books.SNAP_TOO_OLD: "too_old",
               books.SNAP_IGNORED: "ignored"}.get(st, "bad")
        self.snaps[key] += 1
        if st == books.SNAP_SYNCED:
            sh.counters[pipeline.C["snapshots"]] += 1

    def _reeval(self, ns: int, released) -> None:
        if self.slot_mode == "recorded":
            self._release_recorded(released)
        while True:
            slot = hotctx.hot_reeval(self.tab, ns)
            if slot < 0:
                return
            self._signal(slot, ns)

    def _drain_opps(self) -> None:
        sh = self.sh
        while rings.ring_pop(sh.opp_ring[0], sh.opp_ring[1], self._opp, 0):
            o = opportunity.record_dict(self._opp[0], self.uni)
            o["start_ms"] = round((o["start_ns"] - self.t0) / 1e6, 3)
            self.opps.append(o)

    def run(self) -> "Replay":
        for ev in self.src.events:
            if isinstance(ev, tuple):          # a capture's events
                kind = ev[0]
                ns = ev[2] if kind == "read" else ev[1]
            else:
                kind = feed.KIND_NAMES.get(ev.kind, "?")
                ns = ev.ns
            if self.t0 is None:
                self.t0 = ns
            self.last_ns = max(self.last_ns, ns)
            if self.slot_mode == "hold" or kind == "read":
                # hold: a triangle frees its slot hold_ms after its signal; recorded: also a
                # fallback for signals the live session never made (10 x hold_ms, >= 1 s)
                self._release_due(ns) if self.slot_mode == "hold" else self._release_stale(ns)
            if kind == "read":
                if isinstance(ev, tuple):
                    self._read(ev[1], ns, ev[3])
                elif self.link_kind.get(ev.link) == "private":
                    self._private(ev.link, ev.payload)
                else:
                    self._read(ev.link, ns, ev.payload)
            elif kind == "snap_rest":
                self._snapshot_rest(ns, ev[2], ev[3])
            elif kind == "snap":
                self._snapshot_record(ev.payload, ev.flags, ns)
            elif kind == "link":
                d = ev.json()
                self.link_kind[ev.link] = d["kind"]
                self.link_syms[ev.link] = d["symbols"]
                self.readers.pop(ev.link, None)
            elif kind == "down":
                for s in self.link_syms.get(ev.link, ()):
                    i = self.uni.sym_index.get(s)
                    if i is not None:
                        if self.check is not None:   # the book as it was, before it is lost
                            self.check.check_book(i)
                            self.check.reset(i)
                        books.book_reset(self.sh.book_state, i)
                self.readers.pop(ev.link, None)
            elif kind == "reeval":
                self._reeval(ns, np.frombuffer(ev.payload, "<i8"))
            elif kind == "halt":
                self.sh.control[0] = 1
            elif kind == "consume" and self.slot_mode == "recorded":
                # a live paper leg's levels, taken off the book where the live hot thread did
                # (paperbook.py); a what-if replay makes other signals, so it skips them
                rec = np.frombuffer(ev.payload, paperbook.CONSUME_DTYPE)
                paperbook.apply_held(rec[0], self.sh.book_state, self.sh.book_px, self.sh.book_sz)
                if self.check is not None:
                    self.check.consume(rec[0])
            self._drain_opps()
        sh = self.sh
        end_ns = self.last_ns if self.t0 is not None else 0
        while opportunity.close_all(end_ns, sh.tri_last_ns, sh.opp_state, sh.opp_ring[0],
                                    sh.opp_ring[1], sh.opp_ctl, opportunity.RING_CAP // 2):
            self._drain_opps()
        self._drain_opps()
        if self.check is not None:
            self.check.finish()
        return self

    def _release_stale(self, ns: int) -> None:
        t = self.sh.slots
        for k in range(len(t)):
            if slotmod.is_busy(t, k) and ns - self.acq_ns[k] >= max(10 * self.hold_ns, 1_000_000_000):
                self._release(k)

    def _private(self, link: int, data: bytes) -> None:
        rd = self.readers.get(link)
        if rd is None:
            rd = self.readers[link] = BufReader()
        rd.feed(data)
        for op, payload in rd.frames():
            if op == wsread.OP_TEXT and BALANCE_MARK in payload:
                self._balance(payload)

    # -- output ------------------------------------------------------------------------------
    def summary(self) -> dict:
        import triangles
        c = self.sh.counters
        tb = opportunity.table(self.opps)
        out = {
            "feed": self.src.path.name, "frames_s": round((self.last_ns - (self.t0 or 0)) / 1e9, 3),
            "universe": self.uni.summary(),
            "counters": {k: int(v) for k, v in zip(pipeline.HOT_COUNTERS, c) if v},
            "evaluation": {k: int(self.sh.evc[v]) for k, v in (
                ("triangles", triangles.EVC_TRIANGLES), ("not_synced", triangles.EVC_NOT_SYNCED),
                ("stale", triangles.EVC_STALE), ("no_edge", triangles.EVC_NO_EDGE),
                ("candidates", triangles.EVC_CANDIDATES))},
            "signals": len(self.signals),
            "signals_from_frames": sum(1 for s in self.signals if s["origin"] == "frame"),
            "predicted_profit": _sum_by(self.signals, "triangle", "expected_out", "start_volume"),
            "snapshots": self.snaps,
            "opportunities": tb,
        }
        if self.check is not None:
            out["book_check"] = self.check.result()
        return out

    def render(self, s: dict) -> str:
        cfg = self.cfg
        lines = [f"replay of {s['feed']}: {s['frames_s']} s of recorded time; universe "
                 f"{s['universe']['symbols']} symbols, {s['universe']['triangles']} triangles; "
                 f"min_profit_bps={cfg.min_profit_bps:g} slots={cfg.slots} retrigger_ms={cfg.retrigger_ms:g} "
                 f"slot release={self.slot_mode}" + (f" ({self.hold_ns / 1e6:g} ms)" if self.slot_mode == "hold" else ""),
                 "counters " + " ".join(f"{k}={v}" for k, v in s["counters"].items()),
                 "evaluation " + " ".join(f"{k}={v}" for k, v in s["evaluation"].items()),
                 "snapshots " + " ".join(f"{k}={v}" for k, v in s["snapshots"].items()),
                 f"signals {s['signals']} ({s['signals_from_frames']} from frames); predicted "
                 "profit " + (", ".join(f"{k} {v:+.8g}" for k, v in s["predicted_profit"].items()) or "0")]
        if "book_check" in s:
            b = s["book_check"]
            lines.append(f"books checked against the recorded snapshots: {b['snapshot_checks']} "
                         f"snapshot(s) compared with the stream since the previous one, "
                         f"{b['book_checks']} book(s) compared with snapshot + stream at the end; "
                         f"mismatches {b['mismatches']}" + (f" ({'; '.join(b['details'][:3])})" if b["details"] else ""))
        if self.src.is_capture and self.src.header.get("derived_symbols"):
            lines.append("symbols not in data/symbols-2024-09.json, increments derived from the "
                         "data: " + ", ".join(self.src.header["derived_symbols"]))
        lines.append(opportunity.render_table(s["opportunities"], cfg.opportunity_floor_bps,
                                              f", taker fee {cfg.default_taker_fee:g} where the venue gave none"))
        return "\n".join(lines)

    def write(self, out: Path, s: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "signals.jsonl", "w", encoding="utf-8") as f:
            for x in self.signals:
                f.write(json.dumps(x, separators=(",", ":")) + "\n")
        with open(out / "opportunities.jsonl", "w", encoding="utf-8") as f:
            for o in self.opps:
                f.write(json.dumps(o, separators=(",", ":")) + "\n")
        (out / "summary.txt").write_text(self.render(s) + "\n", encoding="utf-8")


def _sum_by(rows, key, out_key, in_key):
    acc = {}
    for r in rows:
        k = r[key][0]
        acc[k] = acc.get(k, 0.0) + r[out_key] - r[in_key]
    return dict(sorted(acc.items()))


# -- the book check ------------------------------------------------------------------------------

class BookCheck:
    """Books against the recorded snapshots, by an independent reference (Decimal-free
    Python dicts over the frames' own decimal strings, KuCoin's rules, docs/kucoin.md 3.8):
    (1) each snapshot of a symbol that already had one is compared with the previous
    snapshot plus the recorded stream up to the new snapshot's sequence (change by change:
    every change carries its sequence); (2) at the end, each synced engine book is compared,
    inside its horizon, with its last snapshot plus the stream after it."""

    def __init__(self, uni, sh):
        self.uni = uni
        self.sh = sh
        self.base: dict[int, dict] = {}        # sym -> {"seq", "bids", "asks"} last snapshot
        self.msgs: dict[int, list] = {}        # sym -> level2 data since that snapshot
        self.snapshot_checks = 0
        self.book_checks = 0
        self.mismatches = 0
        self.details: list[str] = []
        self.rd = BufReader()

    def frames(self, data: bytes) -> None:
        rd = self.rd
        rd.feed(data)
        for op, payload in rd.frames():
            if op != wsread.OP_TEXT or b'"trade.l2update"' not in payload:
                continue
            try:
                d = json.loads(payload)["data"]
            except (ValueError, KeyError):
                continue
            sym = self.uni.sym_index.get(d.get("symbol"))
            if sym is not None and sym in self.base:
                self.msgs[sym].append(d)

    def consume(self, rec) -> None:
        """A paper leg's levels came off the engine's book (paperbook.py): the end check
        takes them off the reference too; the snapshot check (the venue's view) does not."""
        sym = int(rec["sym"])
        if sym in self.base:
            key = "bids" if int(rec["side"]) == books.SIDE_BID else "asks"
            self.msgs[sym].append({"consume": key, "levels": [(float(rec["px"][j]), float(rec["sz"][j]))
                                                              for j in range(int(rec["n"]))]})

    def reset(self, sym: int) -> None:
        """The link of `sym` died: the book is unknown until its next snapshot."""
        self.base.pop(sym, None)
        self.msgs.pop(sym, None)

    @staticmethod
    def _build(base, msgs, upto=None, consumed=False):
        side = {"bids": {float(p): float(s) for p, s in base["bids"]},
                "asks": {float(p): float(s) for p, s in base["asks"]}}
        seq = int(base["sequence"])
        for d in msgs:
            if "consume" in d:
                if consumed:
                    lv = side[d["consume"]]
                    for p, taken in d["levels"]:
                        if p in lv:
                            left = lv[p] - taken
                            if left > 1e-9 * taken:
                                lv[p] = left
                            else:
                                del lv[p]
                continue
            if d["sequenceEnd"] <= seq:
                continue
            if d["sequenceStart"] > seq + 1:
                return None, seq           # a gap: the reference is lost
            for key in ("asks", "bids"):
                for p, s, q in d["changes"][key]:
                    q = int(q)
                    if q <= seq or (upto is not None and q > upto) or p == "0":
                        continue
                    if float(s) == 0.0:
                        side[key].pop(float(p), None)
                    else:
                        side[key][float(p)] = float(s)
            seq = d["sequenceEnd"] if upto is None else min(d["sequenceEnd"], upto)
            if upto is not None and seq >= upto:
                break
        return side, seq

    def snapshot(self, sym: int, snap: dict, rest=None) -> None:
        if sym in self.base:
            old = self.base[sym]
            side, seq = self._build(old, self.msgs.get(sym, []), int(snap["sequence"]))
            if side is not None and seq == int(snap["sequence"]):
                self.snapshot_checks += 1
                # inside both snapshots' depth: levels better than either one's last level
                for key, sign in (("bids", -1), ("asks", 1)):
                    lims = [sign * old[key][-1][0] if old[key] else np.inf,
                            sign * snap[key][-1][0] if snap[key] else np.inf]
                    lim = min(lims)
                    want = sorted(((p, s) for p, s in snap[key] if sign * p < lim), key=lambda x: sign * x[0])
                    got = sorted(((p, s) for p, s in side[key].items() if sign * p < lim),
                                 key=lambda x: sign * x[0])
                    if want != got:
                        self._bad(f"{self.uni.symbols[sym]} {key} at seq {seq}: stream != snapshot")
        self.base[sym] = {"sequence": int(snap["sequence"]), "bids": list(snap["bids"]),
                          "asks": list(snap["asks"])}
        self.msgs[sym] = []

    def _bad(self, what: str) -> None:
        self.mismatches += 1
        if len(self.details) < 20:
            self.details.append(what)

    def finish(self) -> None:
        for sym in list(self.base):
            self.check_book(sym)

    def check_book(self, sym: int) -> None:
        sh = self.sh
        base = self.base.get(sym)
        b = sh.book_state[sym]
        if base is not None and b["status"] == books.BOOK_SYNCED:
            side, seq = self._build(base, self.msgs.get(sym, []), consumed=True)
            if side is None or seq != int(b["seq"]):
                return
            self.book_checks += 1
            for key, s, hz, n in (("bids", books.SIDE_BID, -b["hz_bid_px"], b["n_bid"]),
                                  ("asks", books.SIDE_ASK, b["hz_ask_px"], b["n_ask"])):
                sign = -1 if key == "bids" else 1
                want = sorted(((p, z) for p, z in side[key].items() if sign * p < hz),
                              key=lambda x: sign * x[0])
                got = [(float(sh.book_px[sym, s, i]), float(sh.book_sz[sym, s, i])) for i in range(n)]
                if got != want:
                    self._bad(f"{self.uni.symbols[sym]} {key}: engine book != snapshot + stream")

    def result(self) -> dict:
        return {"snapshot_checks": self.snapshot_checks, "book_checks": self.book_checks,
                "mismatches": self.mismatches, "details": self.details}


# -- CLI -----------------------------------------------------------------------------------------

def replay_once(source, ini=None, sets=(), hold_ms=3.0, slots="auto", verify=True):
    cfg = build_config(source, ini, sets)
    mode = slots if slots != "auto" else (
        "recorded" if not sets and not ini and source.has_wakes() else "hold")
    r = Replay(source, cfg, hold_ms=hold_ms, slot_mode=mode, verify=verify).run()
    sh = r.sh
    for fd in sh.slot_fds + [sh.hot_wake_fd, sh.maint_wake_fd]:   # run.allocate's eventfds:
        os.close(fd)                                             # a sweep makes many
    return r, r.summary()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="replay a recorded feed through the engine's kernels")
    ap.add_argument("feed")
    ap.add_argument("--ini", default=None, help="[engine] settings over the recording's own")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--sweep", default=None, metavar="KEY=V1,V2,...",
                    help="one run per value; one row each")
    ap.add_argument("--snapshots", default=None, help="a capture's REST snapshots (JSONL)")
    ap.add_argument("--out", default=None, help="default runs/replay/<feed name>")
    ap.add_argument("--hold-ms", type=float, default=3.0,
                    help="recorded time a signalled triangle keeps its slot (slot release = hold)")
    ap.add_argument("--slots", choices=("auto", "recorded", "hold"), default="auto",
                    help="slot release: as the recording says (recorded), after --hold-ms (hold)")
    ap.add_argument("--no-verify", action="store_true", help="skip the book check")
    a = ap.parse_args(argv)
    src = Source(a.feed, a.snapshots)
    name = src.path.name.replace(".", "_")
    out = Path(a.out) if a.out else HERE / "runs" / "replay" / name
    if a.sweep:
        key, _, vals = a.sweep.partition("=")
        rows = []
        print(f"{'sweep ' + key:<28}{'signals':>9}{'opps':>7}{'signalled':>11}{'caught':>8}"
              f"{'capture':>9}{'med life ms':>13}{'med peak bps':>14}  predicted profit")
        for v in vals.split(","):
            r, s = replay_once(src, a.ini, list(a.sets) + [f"{key}={v}"], a.hold_ms, a.slots,
                               verify=False)
            tb = s["opportunities"]
            row = (f"{key + '=' + v:<28}{s['signals']:>9}{tb['seen']:>7}{tb['signalled']:>11}"
                   f"{tb['caught']:>8}" + (f"{tb['capture_ratio']:>9.3f}" if tb["capture_ratio"] is not None else f"{'-':>9}")
                   + (f"{tb['median_lifetime_ms']:>13g}{tb['median_peak_bps']:>14.2f}" if tb["seen"] else f"{'-':>13}{'-':>14}")
                   + "  " + (", ".join(f"{k} {x:+.6g}" for k, x in s["predicted_profit"].items()) or "0"))
            print(row, flush=True)
            rows.append(row)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"sweep_{key}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
        return 0
    r, s = replay_once(src, a.ini, a.sets, a.hold_ms, a.slots, verify=not a.no_verify)
    text = r.render(s)
    print(text)
    r.write(out, s)
    print(f"replay: wrote {out.relative_to(HERE) if out.is_relative_to(HERE) else out}/"
          "{signals.jsonl,opportunities.jsonl,summary.txt}")
    return 1 if s.get("book_check", {}).get("mismatches") else 0


if __name__ == "__main__":
    sys.exit(main())
