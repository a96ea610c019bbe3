"""What the console shows: one short line per triangle, the status line, plain decimals.

Owns: `short_line` (a report record -> one line of ~100 characters: status, triangle, bps
predicted and effective, profit in the start currency, tick-to-fire; the full line stays in
report.log, report.format_line), `status_line` (msg/s, books, signals, outcomes, PnL per
currency and its total in the reference currency at the best bids of the moment, latency),
`plain` (a number as a plain decimal, never an exponent) and `bar` (a progress bar).

Threads: the log thread calls `short_line` for every record it writes; the main thread calls
`status_line` every status_interval_s. Both read; neither is on the trading path. Records
of a status this module does not know (the unwind and kill-switch work add some) are shown
with their status as it is.
"""
from __future__ import annotations

import math
import time
from decimal import Decimal


def plain(x, sig: int = 8, sign: bool = False) -> str:
    """x with up to `sig` significant digits as a plain decimal: 0.000092775, 12.5, 1234567.9;
    never an exponent. None/NaN -> 'n/a'."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x == 0:
        return "0"
    s = format(Decimal(f"{x:.{sig}g}"), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return ("+" + s) if sign and not s.startswith("-") and s != "0" else s


def _clock(ts_ms) -> str:
    t = (ts_ms or time.time() * 1000) / 1000.0
    return time.strftime("%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _tick_to_fire_us(rec):
    legs = getattr(rec, "legs", None) or []
    sent = getattr(legs[0], "written_ns", 0) if legs else 0
    recv = getattr(rec, "recv_ns", 0)
    return (sent - recv) / 1e3 if sent and recv else None


def short_line(rec) -> str:
    """One console line for a report record (a TriangleReport, a FollowUp, or a record of a
    status added later: anything with status, triangle and ts_ms)."""
    status = str(getattr(rec, "status", "") or "FOLLOWUP")
    tri = getattr(rec, "triangle", ()) or ()
    path = ">".join(tri) if tri else "-"
    head = f"{_clock(getattr(rec, 'ts_ms', 0))} {status:<8s} {path:<16s}"
    if not hasattr(rec, "predicted_bps"):           # a FOLLOWUP: what the exchange said later
        leg = getattr(rec, "leg", None)
        found = getattr(rec, "found", None)
        what = "found" if found else (getattr(rec, "note", "") or "not found")
        oid = getattr(leg, "client_oid", "") if leg is not None else ""
        prof = getattr(rec, "profit", None)
        start = tri[0] if tri else ""
        return (f"{head} {oid} {what}" + (f" | profit {plain(prof, sign=True)} {start}"
                                          if prof is not None else ""))
    start = tri[0] if tri else ""
    parts = [head,
             f"bps {plain_bps(getattr(rec, 'predicted_bps', None))} -> "
             f"{plain_bps(getattr(rec, 'effective_bps', None))}",
             f"profit {plain(getattr(rec, 'profit', None), sign=True)} {start}"]
    ttf = _tick_to_fire_us(rec)
    parts.append(f"tick-to-fire {ttf:.0f} us" if ttf is not None else "tick-to-fire -")
    opens = getattr(rec, "open_values", None) or []
    if opens:
        vals = [v for _, _, v in opens]
        parts.append("open " + (f"~{plain(sum(vals), 6)} {start}" if all(v is not None for v in vals)
                                else ",".join(c for _, c, _ in opens)))
    why = getattr(rec, "error", "") or getattr(rec, "reason", "")
    if why and status != "FILLED":
        why = " ".join(str(why).split())
        parts.append(why[:70] + ("..." if len(why) > 70 else ""))
    return " | ".join(parts)


def plain_bps(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2f}"


def pnl_total(pnl: dict, valuer, ref: str):
    """(total of pnl's currencies in ref at the current best prices, [currencies with no
    price]); total None when no currency could be valued."""
    total, missing, any_valued = 0.0, [], False
    for ccy, amount in pnl.items():
        v = valuer.value(amount, ccy, ref) if valuer is not None else None
        if v is None:
            missing.append(ccy)
        else:
            total += v
            any_valued = True
    return (total if any_valued or not pnl else None), missing


def book_syncs(book_state) -> tuple[int, int]:
    """(books synced at least once, snapshots synced after that: resyncs after a gap, a dead
    link or a refill). The first snapshot of every book at start-up is not a resync."""
    n_snap = book_state["n_snap"]
    first = int((n_snap > 0).sum())
    return first, int(n_snap.sum()) - first


def status_line(*, msgs_per_s: float, n_synced: int, n_books: int, book_state, counters, C,
                summary, valuer, ref: str, n_crossed=None, n_silent=None, state: str = "",
                extra: str = "") -> str:
    """The main thread's periodic line (docs/design.md 6.5). n_crossed / n_silent: books not
    counted as synced because they are crossed or silent (run.book_health); state: a
    PAUSED / KILLED prefix; extra: the risk controls' figures, appended."""
    first, again = book_syncs(book_state)
    s = summary
    d = s.as_dict() if s.tried else {}
    ttf = d.get("tick_to_fire_us") or {}
    pnl = dict(s.pnl)
    if pnl:
        per = ", ".join(f"{c} {plain(v, sign=True)}" for c, v in sorted(pnl.items()))
        total, missing = pnl_total(pnl, valuer, ref)
        tot = (f" = {plain(total, 6, sign=True)} {ref}" if total is not None else f" = n/a {ref}")
        if missing and total is not None:
            tot += f" (no price for {', '.join(sorted(missing))})"
        pnl_s = per + tot
    else:
        pnl_s = f"0 {ref}"
    outcomes = f"tried {s.tried} filled {s.filled} failed {s.failed} aborted {s.aborted}"
    for name in ("partial", "unknown", "missed", "unwound", "unwind_failed"):
        n = getattr(s, name, 0)
        if n:
            outcomes += f" {name} {n}"

    def us(v):
        return "-" if v is None else f"{v:.0f}"
    health = "" if n_crossed is None else f", {n_crossed} crossed, {n_silent or 0} silent"
    errors = f" errors {counters[C['hot_errors']]}" if "hot_errors" in C else ""
    return (f"status: {state}{msgs_per_s:,.0f} msg/s | books {n_synced}/{n_books} synced{health} "
            f"({first} at start-up, {again} resynced since) | gaps {counters[C['gaps']]} | "
            f"signals {counters[C['signals']]} (no slot {counters[C['no_slot']]}) | {outcomes} | "
            f"PnL {pnl_s} | tick-to-fire p50 {us(ttf.get('p50'))} p99 {us(ttf.get('p99'))} us | "
            f"bad frames {counters[C['bad_frames']]}{errors} reconnects {counters[C['reconnects']]}"
            f"{extra}")


def bar(done: int, total: int, width: int = 24) -> str:
    """[#########...............] for a progress line on a terminal."""
    k = 0 if total <= 0 else min(width, round(width * done / total))
    return "[" + "#" * k + "." * (width - k) + "]"
