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

import report

REL = 1e-9


def _close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-15


def balances_total(balances: dict) -> dict:
    return {c: Decimal(v["total"]) for c, v in balances.items()}


def reconcile(records: list, orders: list, before: dict, after: dict) -> dict:
    """records: report.TriangleReport and report.FollowUp objects of one run (its log
    thread's list); orders: /sim/orders; before/after: {ccy: Decimal total}."""
    # ta...: triangle legs; tu...: unwind orders (unwind.client_oid), each in an UNWOUND /
    # UNWIND_FAILED record; RECOVERED records carry a dead session's legs (docs/design.md 6.7)
    ours = {o["clientOid"]: o for o in orders if o["clientOid"].startswith(("ta", "tu"))}
    executed = {c: o for c, o in ours.items() if Decimal(o["dealSize"]) > 0}
    triangles = [r for r in records if isinstance(r, (report.TriangleReport, report.UnwindReport))]
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


def records_from_journal(path) -> list:
    """The records of a run that cannot hand its objects over (a killed process): rebuilt
    from its journal.jsonl (every field is there, docs/design.md 6.5)."""
    out = []
    leg_names = {f.name for f in fields(report.LegReport)}
    for line in open(path, encoding="utf-8"):
        try:
            d = json.loads(line)
        except ValueError:
            continue                       # a line torn by the kill
        legs = [report.LegReport(**{k: v for k, v in lg.items() if k in leg_names}) for lg in d.get("legs", [])]
        if d.get("status") in report.STATUSES:
            names = {f.name for f in fields(report.TriangleReport)}
            kw = {k: v for k, v in d.items() if k in names and k != "legs"}
            for k in ("triangle", "symbols", "sides"):
                kw[k] = tuple(kw[k])
            kw["books"] = tuple(tuple(b) for b in kw.get("books", ()))
            kw["open_values"] = []
            out.append(report.TriangleReport(**kw, legs=legs))
        elif d.get("status") in (report.UNWOUND, report.UNWIND_FAILED):
            names = {f.name for f in fields(report.UnwindReport)}
            out.append(report.UnwindReport(**{k: v for k, v in d.items() if k in names and k != "legs"}, legs=legs))
        elif d.get("status") == report.FOLLOWUP:
            lg = report.LegReport(**{k: v for k, v in d["leg"].items() if k in leg_names})
            out.append(report.FollowUp(ts_ms=d["ts_ms"], corr=d["corr"], triangle=tuple(d["triangle"]), leg=lg,
                                       found=d["found"], note=d["note"], changes=[tuple(c) for c in d["changes"]]))
    return out
