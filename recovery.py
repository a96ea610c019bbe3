"""Recovery: the durable record of orders sent, and the start-up reconciliation
(docs/design.md 6.7).

Owns: `StateLog`, an append-only JSON-lines file per account that survives SIGKILL, and
`reconcile`, which reads what earlier sessions left in it and asks the exchange what
happened.

The state file (one JSON object a line, fsynced after each write by the log thread; the
only thread that writes it once trading starts):
  {"t":"session","run":R}              a session started (R = its run id, corr >> 24)
  {"t":"intent","corr":..,"slot":..,"leg":k,"coid":..,...}
                                        an order's bytes are out (Executor.fire_leg puts a
                                        tuple on the log queue right after the send, so the
                                        hot thread does no disk I/O, docs/design.md 2)
  {"t":"report","corr":..,"status":..,"start":..,"held":[[amount,ccy],...],"ref":{...}}
                                        the triangle's report line is written (FIFO after its
                                        intents): it is no longer in flight; `held` is its open=
  {"t":"followup"|"unwind","corr":..,"start":..,"changes":[[amount,ccy],...]}
                                        later changes of what a triangle left
  {"t":"held","corr":..,"start":..,"held":[...],"ref":{...}}
                                        carried over by a start-up compaction
A triangle with intents and no report was in flight when its session died. The file lives
at <log_dir>/state/<account>.jsonl (account: a hash of the REST URL and API key, never the
key), beside a <account>.lock that one engine holds while it runs (a second engine on the
same account exits). With venue = sim the engine starts a fresh simulator, so its state is
per run (in the run folder) and there is nothing earlier to reconcile.

A crash can lose only what the log thread had not yet written: the intent of an order sent
in the last moments (the clientOid format still names it: `ta<corr>s<slot>l<leg>`, and the
corr carries the session, pipeline.alloc_pstate).

Thread: main at start-up (`load`, `reconcile`, `StateLog.compact`), then the log thread.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cascade
import report
from kucoin import KucoinError, NotFound


def account_label(rest_url: str, api_key: str) -> str:
    return hashlib.sha256(f"{rest_url}\0{api_key}".encode()).hexdigest()[:16]


@dataclass
class Prior:
    """What the state file says earlier sessions left."""
    runs: list = field(default_factory=list)
    dead: dict = field(default_factory=dict)      # corr -> {leg: intent dict}
    held: dict = field(default_factory=dict)      # corr -> {"start", "amounts": {ccy: a}, "ref"}
    bad_lines: int = 0


def load(path: Path) -> Prior:
    """Replay the state file (a missing file is an empty history; a torn last line, from a
    kill mid-write, is skipped and counted)."""
    p = Prior()
    intents: dict = {}
    closed = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return p
    for line in lines:
        try:
            o = json.loads(line)
            t = o["t"]
        except (ValueError, KeyError, TypeError):
            p.bad_lines += 1
            continue
        if t == "session":
            p.runs.append(int(o["run"]))
        elif t == "intent":
            intents.setdefault(int(o["corr"]), {})[int(o["leg"])] = o
        elif t in ("report", "held"):
            corr = int(o["corr"])
            closed.add(corr)
            amounts = {c: float(a) for a, c in o.get("held", []) if c != o["start"] and float(a) > 0}
            if amounts:
                h = p.held.setdefault(corr, {"start": o["start"], "amounts": {}, "ref": o.get("ref") or {}})
                for c, a in amounts.items():
                    h["amounts"][c] = h["amounts"].get(c, 0.0) + a
        elif t in ("followup", "unwind"):
            corr = int(o["corr"])
            h = p.held.setdefault(corr, {"start": o["start"], "amounts": {}, "ref": o.get("ref") or {}})
            for a, c in o.get("changes", []):
                if c != h["start"]:
                    h["amounts"][c] = h["amounts"].get(c, 0.0) + float(a)
    p.dead = {c: legs for c, legs in intents.items() if c not in closed}
    for corr in list(p.held):
        h = p.held[corr]
        h["amounts"] = {c: a for c, a in h["amounts"].items() if a > 1e-12}
        if not h["amounts"]:
            del p.held[corr]
    return p


def _private(path: Path, mode: str):
    """open(path, mode) with the file created 0600 (owner only), as the run folder's files."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return open(fd, mode, encoding="utf-8")


class StateLog:
    """The append-only state file. `write` flushes and fsyncs each line."""

    def __init__(self, path: Path, uni, run_id: int, lock: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)    # the account's orders and holdings: owner only
        self.uni = uni
        self.run_id = run_id
        self._tri_parts: dict = {}      # tri -> (triangle, symbols, sides): read once per triangle
        self.lock_f = None
        if lock:
            self.lock_f = _private(self.path.with_suffix(".lock"), "a")
            try:
                fcntl.flock(self.lock_f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.lock_f.close()
                raise SystemExit(f"run: another engine holds {self.path.with_suffix('.lock')}: one engine "
                                 f"per account (its state file records the orders in flight)")
        self.f = None

    def open(self) -> None:
        self.f = _private(self.path, "a")

    def compact(self, prior: Prior, held_carry: dict, keep_dead: set) -> None:
        """Rewrite the file atomically (write, fsync, rename): this session's line, what earlier
        triangles still leave held (`held_carry`: corr -> held entry), and the intents of the
        dead triangles in `keep_dead` (those RECOVERED records will close). Then open it for
        appending."""
        tmp = self.path.with_suffix(".tmp")
        with _private(tmp, "w") as f:
            f.write(json.dumps({"t": "session", "run": self.run_id, "ts_ms": time.time_ns() // 1_000_000}) + "\n")
            for corr, h in held_carry.items():
                f.write(json.dumps({"t": "held", "corr": corr, "start": h["start"], "ref": h.get("ref") or {},
                                    "held": [[a, c] for c, a in h["amounts"].items()]}) + "\n")
            for corr in keep_dead:
                for leg in sorted(prior.dead.get(corr, {})):
                    f.write(json.dumps(prior.dead[corr][leg]) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.open()

    def write(self, obj: dict) -> None:
        if self.f is None:
            self.open()
        self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def write_intent(self, t: tuple) -> None:
        slot, corr, tri, k, coid, fld, text, amount, limit_text, refs = t
        parts = self._tri_parts.get(tri)
        if parts is None:
            # nine numpy field reads, ~2 us each, on the log thread, which holds the GIL
            # meanwhile: once per triangle of the universe, not three times per triangle traded
            uni = self.uni
            tr = uni.tris[tri]
            parts = self._tri_parts[tri] = (
                [uni.currencies[int(tr[f"ccy{i}"])] for i in range(3)],
                [uni.symbols[int(tr[f"sym{i}"])] for i in range(3)],
                [int(tr[f"side{i}"]) for i in range(3)])
        o = {"t": "intent", "corr": corr, "slot": slot, "leg": k, "coid": coid,
             "triangle": parts[0], "symbols": parts[1], "sides": parts[2],
             "field": fld, "text": text, "amount": amount, "ts_ms": time.time_ns() // 1_000_000}
        if limit_text:
            o["limit_price"] = limit_text
        if refs:
            o["books"] = [[refs[2 * i], refs[2 * i + 1]] for i in range(3)]
        self.write(o)

    def write_record(self, rec) -> None:
        if isinstance(rec, report.TriangleReport):
            self.write({"t": "report", "corr": rec.corr, "status": rec.status, "start": rec.triangle[0],
                        "held": [[a, c] for a, c in rec.held()],
                        "ref": {s: list(b) for s, b in zip(rec.symbols, rec.books)}})
        elif isinstance(rec, report.FollowUp):
            self.write({"t": "followup", "corr": rec.corr, "start": rec.triangle[0],
                        "changes": [[a, c] for a, c in rec.changes]})
        elif isinstance(rec, report.UnwindReport):
            self.write({"t": "unwind", "corr": rec.corr, "start": rec.start, "status": rec.status,
                        "changes": [[a, c] for c, a in rec.net().items()]})

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
        if self.lock_f is not None:
            self.lock_f.close()


# -- the start-up reconciliation -----------------------------------------------------------

def _rules_by_symbol(symbols_raw: list, fees: dict, default_fee: float) -> dict:
    out = {}
    for d in symbols_raw:
        try:
            out[d["symbol"]] = cascade.SymbolRules.from_kucoin(
                d, cascade.effective_taker_fee(d, fees.get(d["symbol"], default_fee)))
        except (KeyError, ValueError, TypeError):
            continue
    return out


class _Prices:
    """Best prices over REST (level1), for start-up valuation only: the books are not synced
    yet. rate(a, b): direct symbol, else through each primary."""

    def __init__(self, client, rules: dict, primaries):
        self.client, self.rules, self.primaries = client, rules, list(primaries)
        self.by_pair = {}
        for name, r in rules.items():
            self.by_pair[(r.base, r.quote)] = (name, False)
            self.by_pair[(r.quote, r.base)] = (name, True)
        self.cache = {}

    def _l1(self, name):
        if name not in self.cache:
            try:
                d = self.client.level1(name)
                self.cache[name] = (float(d.get("bestBid") or 0), float(d.get("bestAsk") or 0))
            except (KucoinError, ValueError, TypeError):
                self.cache[name] = (0.0, 0.0)
        return self.cache[name]

    def _direct(self, a, b):
        hit = self.by_pair.get((a, b))
        if hit is None:
            return None
        bid, ask = self._l1(hit[0])
        if hit[1]:
            return 1.0 / ask if ask > 0 else None
        return bid if bid > 0 else None

    def rate(self, a, b):
        if a == b:
            return 1.0
        r = self._direct(a, b)
        if r is not None:
            return r
        for m in self.primaries:
            if m in (a, b):
                continue
            r1 = self._direct(a, m)
            r2 = self._direct(m, b) if r1 is not None else None
            if r2 is not None:
                return r1 * r2
        return None


def _lookup(client, coid: str, symbol: str, patient_s: float, log):
    """(order dict or None, error text). Retries "not exist" for patient_s (docs/kucoin.md
    5.11: a lookup can lag a placement); an active order is cancelled and looked up again."""
    deadline = time.monotonic() + patient_s
    pause, cancelled, err = 0.05, False, ""
    while True:
        try:
            o = client.get_order_by_client_oid(coid, symbol)
        except NotFound:
            o, err = None, "not found"
        except KucoinError as e:
            o, err = None, f"{e.__class__.__name__} {e}"
        if o is not None:
            if not (o.get("active") or o.get("isActive")):
                return o, ""
            err = "still active"
            if not cancelled:
                cancelled = True
                try:
                    client.cancel_order_by_client_oid(coid, symbol)
                    log(f"run: start-up: cancelled {coid} on {symbol} (an earlier session's order, still active)")
                except KucoinError as e:
                    log(f"run: start-up: cancel {coid}: {e}")
        if time.monotonic() >= deadline:
            return None, err
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _recover(client, corr: int, legs: dict, rules: dict, mode: str, lookup_s: float, log):
    """A dead triangle -> (TriangleReport RECOVERED, resolved: bool)."""
    first = legs[min(legs)]
    ccys, syms, sides = first["triangle"], first["symbols"], first["sides"]
    slot = int(first["slot"])
    rec = report.TriangleReport(
        status=report.STATUS_RECOVERED, ts_ms=0, corr=corr, mode=mode, triangle=tuple(ccys),
        symbols=tuple(syms), sides=tuple(int(s) for s in sides), predicted_bps=math.nan,
        start_volume=float(legs[0]["amount"]) if 0 in legs else math.nan, book_ts_ms=0,
        books=tuple(tuple(b) for b in legs[0].get("books", ())) if 0 in legs else ())
    said, resolved = [], True
    for k in range(3):
        intent = legs.get(k)
        coid = intent["coid"] if intent else f"ta{corr:x}s{slot}l{k}"
        # an order with an intent was sent: "not exist" may be lookup lag, be patient; one
        # without was most likely never sent (the session died first), one lookup says so
        o, err = _lookup(client, coid, syms[k], lookup_s if intent else 0.0, log)
        if o is None:
            if err != "not found":
                resolved = False
                said.append(f"L{k} {coid}: {err}")
            else:
                said.append(f"L{k} {coid}: " + ("sent, but the exchange has no such order" if intent
                                                 else "never placed"))
            break
        r = rules.get(syms[k])
        fee = r.taker_fee if r is not None else 0.0
        lg = report.LegReport(leg=k, side=int(sides[k]), symbol=syms[k], from_ccy=ccys[k],
                              to_ccy=ccys[(k + 1) % 3], client_oid=coid, order_id=str(o.get("id") or ""),
                              fee_ccy=r.quote if r is not None else "", source="rest",
                              order_type=str(o.get("type") or "market"))
        if intent:
            lg.order_field, lg.order_text = intent["field"], intent["text"]
            lg.limit_price = intent.get("limit_price", "")
        lg.set_fills(float(o.get("dealSize") or 0), float(o.get("dealFunds") or 0), fee)
        lg.n_matches = 1 if lg.filled_sz > 0 else 0
        rec.legs.append(lg)
        said.append(f"L{k} {coid}: done, {report.fmt_num(lg.filled_sz)} {syms[k]} filled"
                    + (" (canceled remainder)" if o.get("cancelExist") else ""))
        if lg.filled_sz <= 0:
            break
    rec.reason = f"session {corr >> 24:x} ended with it in flight; the exchange says: " + "; ".join(said)
    rec.ts_ms = time.time_ns() // 1_000_000
    rec.settle()
    return rec, resolved


def reconcile(client, cfg, prior: Prior, symbols_raw: list, fees: dict, balances: dict, log,
              account: str):
    """The start-up reconciliation: (StartupReport, [RECOVERED TriangleReport], unwind
    requests [(held, start, corr, reason, ref_books)], held carried {corr: entry}, dead corrs
    not resolved). `balances`: currency -> total (Decimal or float)."""
    su = report.StartupReport(ts_ms=time.time_ns() // 1_000_000, account=account,
                              previous=list(prior.runs), ref=cfg.ref_currency)
    if prior.bad_lines:
        su.notes.append(f"{prior.bad_lines} unreadable line(s) in the state file (a kill mid-write)")
    rules = _rules_by_symbol(symbols_raw, fees, cfg.default_taker_fee)
    # 1. active orders of ours (HF, by symbol; recognised by the clientOid prefix)
    try:
        active_syms = client.active_order_symbols()
    except KucoinError as e:
        active_syms = sorted({s for legs in prior.dead.values() for it in legs.values() for s in it["symbols"]})
        su.notes.append(f"active-order symbols not listed ({e}); checked the dead triangles' symbols")
    for sym in active_syms:
        try:
            orders = client.active_orders(sym)
        except KucoinError as e:
            su.notes.append(f"active orders of {sym} not listed: {e}")
            continue
        for o in orders:
            coid = str(o.get("clientOid") or "")
            if not (coid.startswith("ta") or coid.startswith("tu")):
                continue
            try:
                client.cancel_order_by_client_oid(coid, sym)
                su.cancelled.append((coid, sym, "cancelled"))
            except NotFound:
                su.cancelled.append((coid, sym, "already done"))
            except KucoinError as e:
                su.cancelled.append((coid, sym, f"cancel failed: {e}"))
    # 2. triangles an earlier session left in flight
    recovered, unresolved, requests = [], set(), []
    for corr in sorted(prior.dead):
        rec, ok = _recover(client, corr, prior.dead[corr], rules, cfg.mode, cfg.order_lookup_ms / 1000.0, log)
        if not ok:
            unresolved.add(corr)
            su.notes.append(f"corr {corr:x}: the exchange did not answer about every leg; kept for the next start")
            continue
        recovered.append(rec)
        su.dead.append(report.format_line(rec))
    # 3. what our records say earlier triangles left, capped by what the account holds
    avail = {c: float(v) for c, v in balances.items()}
    claims = []
    for rec in recovered:
        for a, c in rec.held():
            if a > 0:
                claims.append((a, c, rec.triangle[0], rec.corr, {s: list(b) for s, b in zip(rec.symbols, rec.books)}))
    carry = {}
    for corr in sorted(prior.held, reverse=True):        # newest first
        h = prior.held[corr]
        for c, a in h["amounts"].items():
            claims.append((a, c, h["start"], corr, h.get("ref") or {}))
    for a, c, start, corr, ref in claims:
        take = min(a, max(0.0, avail.get(c, 0.0)))
        avail[c] = avail.get(c, 0.0) - take
        if take <= 0:
            su.notes.append(f"{report.fmt_num(a)} {c} of corr {corr:x} is no longer in the account")
            continue
        su.leftovers.append((take, c, start, corr))
        if corr in prior.held:
            e = carry.setdefault(corr, {"start": start, "amounts": {}, "ref": ref})
            e["amounts"][c] = e["amounts"].get(c, 0.0) + take
        if c in cfg.keep:
            continue
        for held, s0, k, _, _ in requests:       # one unwind (one line) per triangle
            if k == corr:
                held.append((take, c))
                break
        else:
            requests.append(([(take, c)], start, corr, "startup", ref))
    # 4. balances outside the primary quotes
    prices = _Prices(client, rules, cfg.primary_quotes)
    ours = {}
    for a, c, *_ in su.leftovers:
        ours[c] = ours.get(c, 0.0) + a
    dust_n = 0
    for c in sorted(balances):
        amount = float(balances[c])
        if c in cfg.primary_quotes or amount <= 0:
            continue
        v = prices.rate(c, cfg.ref_currency)
        value = amount * v if v is not None else None
        mins = [r for n, r in rules.items() if r.base == c and r.quote in cfg.primary_quotes]
        if mins and all(amount < float(r.base_min) for r in mins):
            dust_n += 1
            continue
        note = []
        if c in ours:
            note.append(f"ours: {report.fmt_num(ours[c])} from our triangles")
        if c in cfg.keep:
            note.append("keep: never unwound")
        if c not in ours:
            note.append("not from our triangles: left alone")
        su.balances.append((c, amount, value, "; ".join(note)))
    if dust_n:
        su.notes.append(f"{dust_n} balance(s) below every primary symbol's minimum (dust) not listed")
    if requests and cfg.unwind == "off":
        su.notes.append("unwind = off: leftovers stay held (set unwind = market to sell them)")
    else:
        su.unwinds = [(a, c, s, corr) for h, s, corr, _, _ in requests for a, c in h]
    return su, recovered, (requests if cfg.unwind != "off" else []), carry, unresolved
