"""Reconciliation of an engine run against the simulator's own books: the check every fault
test ends in (docs/design.md 10).

`reconcile(records, orders, before, after)` asserts, and returns what it matched:
1. every order the simulator executed (GET /sim/orders: dealSize > 0) of ours (clientOid
   `ta...`) appears as a leg in exactly one report record, with the exchange's figures
   (dealSize, dealFunds), unless that leg is UNKNOWN and a FOLLOWUP record gives them;
2. no record shows fills for an order the simulator does not have;
3. per currency, the balance change (after - before, /sim/balances totals) equals what the
   records imply: the sum over records of received minus spent per currency (which is each
   line's profit in its start currency plus its `open=` holdings), plus FOLLOWUP changes.
Floats: the records carry float sums of exact decimals; the tolerance is 1e-9 of the amount
plus 1e-12 of everything that moved through the currency.
"""
from __future__ import annotations

import json
from dataclasses import fields
from decimal import Decimal
from pathlib import Path

import report

REL = 1e-9


def _close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-15


def balances_total(balances: dict) -> dict:
    return {c: Decimal(v["total"]) for c, v in balances.items()}


def reconcile(records: list, orders: list, before: dict, after: dict) -> dict:
    """records: report.TriangleReport and report.FollowUp objects of one run (its log
    thread's list); orders: /sim/orders; before/after: {ccy: Decimal total}."""
    ours = {o["clientOid"]: o for o in orders if o["clientOid"].startswith("ta")}
    executed = {c: o for c, o in ours.items() if Decimal(o["dealSize"]) > 0}
    triangles = [r for r in records if isinstance(r, report.TriangleReport)]
    followups = {f.leg.client_oid: f for f in records if isinstance(f, report.FollowUp)}
    seen: dict[str, int] = {}
    problems = []
    net: dict[str, float] = {}
    gross: dict[str, float] = {}

    def add(c, a):
        net[c] = net.get(c, 0.0) + a
        gross[c] = gross.get(c, 0.0) + abs(a)

    for r in triangles:
        for lg in r.legs:
            if not lg.client_oid:
                continue
            seen[lg.client_oid] = seen.get(lg.client_oid, 0) + 1
            o = ours.get(lg.client_oid)
            if lg.filled_sz > 0 and o is None:
                problems.append(f"{lg.client_oid}: the record shows fills, the simulator has no order")
            elif o is not None and not lg.unknown:
                if not (_close(lg.filled_sz, float(o["dealSize"])) and _close(lg.filled_funds, float(o["dealFunds"]))):
                    problems.append(f"{lg.client_oid}: record {lg.filled_sz}/{lg.filled_funds} against "
                                    f"exchange {o['dealSize']}/{o['dealFunds']} ({r.status})")
            add(lg.from_ccy, -lg.spent)
            add(lg.to_ccy, lg.received)
    for coid, f in followups.items():
        o = ours.get(coid)
        if f.found and o is not None and not (_close(f.leg.filled_sz, float(o["dealSize"]))
                                              and _close(f.leg.filled_funds, float(o["dealFunds"]))):
            problems.append(f"{coid}: FOLLOWUP {f.leg.filled_sz}/{f.leg.filled_funds} against "
                            f"exchange {o['dealSize']}/{o['dealFunds']}")
        for a, c in f.changes:
            add(c, a)
    for coid, o in executed.items():
        n = seen.get(coid, 0)
        if n != 1:
            problems.append(f"{coid}: executed ({o['dealSize']} {o['symbol']}) and in {n} record legs")
            continue
        lg = next(lg for r in triangles for lg in r.legs if lg.client_oid == coid)
        if lg.unknown and coid not in followups:
            problems.append(f"{coid}: executed, reported UNKNOWN, and no FOLLOWUP gave its figures")
    for c in set(before) | set(after) | set(net):
        delta = float(after.get(c, Decimal(0)) - before.get(c, Decimal(0)))
        want = net.get(c, 0.0)
        if abs(delta - want) > REL * abs(delta) + 1e-12 * gross.get(c, 0.0) + 1e-15:
            problems.append(f"{c}: balance changed by {delta!r}, the records imply {want!r}")
    assert not problems, "reconciliation failed:\n  " + "\n  ".join(problems)
    return {"orders": len(ours), "executed": len(executed), "records": len(triangles),
            "followups": len(followups), "net": net}


def records_from_journal(path: Path) -> list:
    """The report records of a journal.jsonl (a run in another process): TriangleReport and
    FollowUp objects with the fields reconcile() reads; KILLED lines are skipped."""
    leg_names = {f.name for f in fields(report.LegReport)}
    tri_names = {f.name for f in fields(report.TriangleReport)}

    def leg(d):
        return report.LegReport(**{k: v for k, v in d.items() if k in leg_names and v is not None})
    out = []
    for line in Path(path).read_text().splitlines():
        d = json.loads(line)
        if d["status"] == report.FOLLOWUP:
            out.append(report.FollowUp(ts_ms=d["ts_ms"], corr=d["corr"], triangle=tuple(d["triangle"]),
                                       leg=leg(d["leg"]), found=d["found"], note=d["note"],
                                       changes=[tuple(c) for c in d["changes"]]))
        elif d["status"] in report.STATUSES:
            kw = {k: v for k, v in d.items()
                  if k in tri_names and v is not None and k not in ("legs", "open_values", "books")}
            rec = report.TriangleReport(**kw)
            rec.legs = [leg(x) for x in d["legs"]]
            out.append(rec)
    return out
