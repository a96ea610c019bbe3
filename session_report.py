"""The session report: `summary.html` with its plots, for one run folder or for all of them.

Owns: reading a run folder (`journal.jsonl`, the `summary.json` run.py writes at the end, an
`opportunities.jsonl` when the session kept one), valuing each record's profit in the
reference currency, the plots (matplotlib, PNG embedded in the page, so the file stands
alone) and the pages: `write_session(run_dir)` -> run_dir/summary.html;
`write_index(runs_dir)` -> runs_dir/index.html, every session in one table and one PnL curve.

Run it: `python report.py runs/<start>` or `python report.py runs/` (report.py's __main__
calls `main`). run.py calls `write_session` on the log thread at the end of every session,
after trading has stopped (`html_report = false` turns it off). Nothing else imports this
module, so matplotlib never loads in the engine's process before then.

Latencies come from the journal's ns stamps (one record per triangle, report.journal_dict),
not from the session summary. Reference-currency values: each currency's rate at the
session's end (summary.json `rates_to_ref`, the best bids then); without it (a session that
did not end cleanly), rates from the journal's own fills (each leg's average price), which
is marked on the page. A currency with no rate is left out of the totals and named.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

STAGES = (("frame -> parsed", "recv_ns", "parsed_ns"), ("parsed -> book", "parsed_ns", "book_ns"),
          ("book -> decision", "book_ns", "evaluated_ns"))
LEG_STAGES = (("sign -> bytes sent", "signed_ns", "written_ns"),
              ("sent -> response", "written_ns", "response_ns"),
              ("sent -> leg done", "written_ns", "last_fill_ns"))
COLORS = {"FILLED": "#2e7d32", "PARTIAL": "#f9a825", "FAILED": "#c62828", "ABORTED": "#6d4c41",
          "UNKNOWN": "#6a1b9a", "KILLED": "#000000", "FOLLOWUP": "#90a4ae"}


# -- reading a run folder -------------------------------------------------------------------

def load_records(run_dir: Path) -> list[dict]:
    out = []
    p = Path(run_dir) / "journal.jsonl"
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue          # a line cut by a crash
    return out


def load_facts(run_dir: Path) -> dict:
    p = Path(run_dir) / "summary.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def rates_from_fills(records: list[dict], ref: str) -> dict:
    """{currency: units of ref per unit} from the journal's own fills: the last average price
    of each symbol traded, direct or through one other currency."""
    pair = {}
    for r in records:
        for lg in r.get("legs") or []:
            px = lg.get("avg_px") or 0.0
            sym = lg.get("symbol") or ""
            if px > 0 and "-" in sym:
                base, quote = sym.split("-", 1)
                pair[(base, quote)] = px
                pair[(quote, base)] = 1.0 / px
    ccys = {c for k in pair for c in k} | {ref}
    out = {ref: 1.0}
    for c in ccys:
        if c in out:
            continue
        if (c, ref) in pair:
            out[c] = pair[(c, ref)]
            continue
        for m in ccys:
            if (c, m) in pair and (m, ref) in pair:
                out[c] = pair[(c, m)] * pair[(m, ref)]
                break
    return out


def record_profit(r: dict):
    """(start currency, profit) of a journal record; a FOLLOWUP's change of its start currency."""
    tri = r.get("triangle") or []
    start = tri[0] if tri else ""
    if r.get("status") == "FOLLOWUP":
        got = [a for a, c in r.get("changes") or [] if c == start]
        return start, (got[0] if got else None)
    return start, r.get("profit")


def _us(a, b):
    return (b - a) / 1e3 if a and b else None


def session_data(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    records = load_records(run_dir)
    facts = load_facts(run_dir)
    ref = facts.get("ref_currency") or "USDT"
    rates = facts.get("rates_to_ref") or {}
    rates_source = "best bids at the session's end"
    if not rates:
        rates = rates_from_fills(records, ref)
        rates_source = "the journal's own fills (the session has no summary.json)"
    rows, unpriced = [], set()
    for r in records:
        start, profit = record_profit(r)
        rate = rates.get(start)
        pref = profit * rate if (profit is not None and rate is not None) else None
        if profit is not None and rate is None:
            unpriced.add(start)
        legs = r.get("legs") or []
        w0 = legs[0].get("written_ns") if legs else 0
        rows.append({
            "ts_ms": r.get("ts_ms") or 0, "status": r.get("status") or "?",
            "triangle": ">".join(r.get("triangle") or []), "start": start, "profit": profit,
            "profit_ref": pref, "pred_bps": r.get("predicted_bps"), "eff_bps": r.get("effective_bps"),
            "tick_to_fire_us": _us(r.get("recv_ns"), w0) if r.get("origin", "frame") == "frame" else None,
            "leg_gaps_us": [g for g in (_us(a.get("last_fill_ns"), b.get("written_ns"))
                                        for a, b in zip(legs, legs[1:])) if g is not None],
            "stages": _stages(r, legs),
        })
    rows.sort(key=lambda x: x["ts_ms"])
    opp = load_opportunities(run_dir)
    return {"run": run_dir.name, "records": rows, "facts": facts, "ref": ref, "rates": rates,
            "rates_source": rates_source, "unpriced": sorted(unpriced), "opportunities": opp}


def _stages(r: dict, legs: list) -> dict:
    out = {}
    for label, a, b in STAGES:
        v = _us(r.get(a), r.get(b))
        if v is not None:
            out[label] = v
    for k, lg in enumerate(legs):
        for label, a, b in LEG_STAGES:
            v = _us(lg.get(a), lg.get(b))
            if v is not None:
                out[f"L{k} {label}"] = v
        if k > 0:
            v = _us(legs[k - 1].get("last_fill_ns"), lg.get("written_ns"))
            if v is not None:
                out[f"L{k - 1} done -> L{k} sent"] = v
    return out


def load_opportunities(run_dir: Path):
    """opportunities.jsonl (one JSON object per opportunity seen: `ts_ms`, and `caught` or
    the `corr` of the signal that took it), or None when the session kept none."""
    p = Path(run_dir) / "opportunities.jsonl"
    if not p.exists():
        return None
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        caught = d.get("caught")
        if caught is None:
            caught = bool(d.get("corr"))
        out.append((d.get("ts_ms") or 0, bool(caught)))
    return out


# -- plots ----------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _times(rows):
    import datetime
    return [datetime.datetime.fromtimestamp(r["ts_ms"] / 1000, datetime.timezone.utc) for r in rows]


def plot_pnl(rows, ref, title="Cumulative PnL") -> str | None:
    pts = [r for r in rows if r["profit_ref"] is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3))
    cum, total = [], 0.0
    for r in pts:
        total += r["profit_ref"]
        cum.append(total)
    ax.step(_times(pts), cum, where="post", color="#1565c0")
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_title(f"{title} in {ref}")
    ax.set_ylabel(ref)
    ax.set_xlabel("UTC")
    fig.autofmt_xdate()
    return _png(fig)


def plot_outcomes(rows) -> str | None:
    if not rows:
        return None
    plt = _plt()
    t0, t1 = rows[0]["ts_ms"], rows[-1]["ts_ms"]
    width = max(1000, (t1 - t0) / 30 + 1)
    nb = int((t1 - t0) // width) + 1
    statuses = sorted({r["status"] for r in rows}, key=lambda s: (s != "FILLED", s))
    counts = {s: [0] * nb for s in statuses}
    for r in rows:
        k = min(nb - 1, int((r["ts_ms"] - t0) / width))
        counts[r["status"]][k] += 1
    import datetime
    xs = [datetime.datetime.fromtimestamp((t0 + (k + 0.5) * width) / 1000, datetime.timezone.utc)
          for k in range(nb)]
    fig, ax = plt.subplots(figsize=(9, 3))
    bottom = [0] * nb
    w = datetime.timedelta(milliseconds=width * 0.9)
    for s in statuses:
        ax.bar(xs, counts[s], width=w, bottom=bottom, label=s, color=COLORS.get(s, None))
        bottom = [a + b for a, b in zip(bottom, counts[s])]
    ax.set_title(f"Outcomes over time (per {width / 1000:.0f} s)")
    ax.set_xlabel("UTC")
    ax.set_ylabel("triangles")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # beside, not over, the bars
    fig.autofmt_xdate()
    return _png(fig)


def plot_latency_hists(rows) -> str | None:
    ttf = [r["tick_to_fire_us"] for r in rows if r["tick_to_fire_us"] is not None]
    gaps = [g for r in rows for g in r["leg_gaps_us"]]
    if not ttf and not gaps:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, vals, title in ((axes[0], ttf, "tick-to-fire"), (axes[1], gaps, "leg-to-leg gap")):
        if vals:
            hi = sorted(vals)[max(0, math.ceil(0.99 * len(vals)) - 1)]
            shown = [min(v, hi * 1.5) for v in vals]
            ax.hist(shown, bins=40, color="#5c6bc0")
            p50 = statistics.median(vals)
            ax.axvline(p50, color="#c62828", lw=1)
            ax.set_title(f"{title} (us): n={len(vals)} p50={p50:.0f} p99={hi:.0f}")
        else:
            ax.set_title(f"{title}: no data")
        ax.set_xlabel("us")
    return _png(fig)


def plot_stages(rows) -> str | None:
    per: dict[str, list] = {}
    for r in rows:
        for k, v in r["stages"].items():
            per.setdefault(k, []).append(v)
    if not per:
        return None
    order = [lbl for lbl, _, _ in STAGES] + [f"L{k} {lbl}" for k in range(3) for lbl, _, _ in LEG_STAGES]
    order += [f"L{k} done -> L{k + 1} sent" for k in range(2)]
    names = [n for n in order if n in per]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(names) + 1))
    p50 = [statistics.median(per[n]) for n in names]
    p90 = [sorted(per[n])[max(0, math.ceil(0.9 * len(per[n])) - 1)] for n in names]
    ys = list(range(len(names)))[::-1]
    ax.barh(ys, p90, color="#c5cae9", label="p90")
    ax.barh(ys, p50, color="#3949ab", label="p50")
    ax.set_yticks(ys, names)
    ax.set_xscale("log")
    ax.set_xlabel("us (log scale)")
    ax.set_title("Per-stage latency (from the journal's stamps)")
    ax.legend(loc="lower right")
    for y, v in zip(ys, p50):
        ax.text(v, y, f" {v:.0f}", va="center", fontsize=7, color="#111")
    return _png(fig)


def triangle_table(rows, n=8):
    by: dict[str, list] = {}
    for r in rows:
        if r["status"] == "FOLLOWUP":
            continue
        by.setdefault(r["triangle"], []).append(r)
    out = []
    for tri, rs in by.items():
        vals = [r["profit_ref"] for r in rs if r["profit_ref"] is not None]
        bps = [r["eff_bps"] for r in rs if r["eff_bps"] is not None]
        out.append({"triangle": tri, "n": len(rs), "filled": sum(r["status"] == "FILLED" for r in rs),
                    "profit_ref": sum(vals) if vals else None,
                    "bps": statistics.median(bps) if bps else None})
    priced = sorted((t for t in out if t["profit_ref"] is not None), key=lambda t: -t["profit_ref"])
    best = priced[:n]
    worst = [t for t in priced[::-1][:n] if t not in best] if len(priced) > n else []
    return best, worst


def plot_triangles(best, worst, ref) -> str | None:
    items = best + worst[::-1]          # best at the top, the very worst at the bottom
    if not items:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(items) + 1))
    ys = list(range(len(items)))[::-1]
    vals = [t["profit_ref"] for t in items]
    ax.barh(ys, vals, color=["#2e7d32" if v >= 0 else "#c62828" for v in vals])
    ax.set_yticks(ys, [t["triangle"] for t in items])
    ax.axvline(0, color="#888", lw=0.8)
    ax.set_xlabel(ref)
    ax.set_title(f"Best and worst triangles (session PnL in {ref})")
    return _png(fig)


def plot_opportunities(opp) -> str | None:
    if not opp:
        return None
    plt = _plt()
    import datetime
    opp = sorted(opp)
    t0, t1 = opp[0][0], opp[-1][0]
    width = max(1000, (t1 - t0) / 30 + 1)
    nb = int((t1 - t0) // width) + 1
    seen, caught = [0] * nb, [0] * nb
    for ts, c in opp:
        k = min(nb - 1, int((ts - t0) / width))
        seen[k] += 1
        caught[k] += c
    xs = [datetime.datetime.fromtimestamp((t0 + (k + 0.5) * width) / 1000, datetime.timezone.utc)
          for k in range(nb)]
    fig, ax = plt.subplots(figsize=(9, 3))
    w = datetime.timedelta(milliseconds=width * 0.9)
    ax.bar(xs, seen, width=w, color="#b0bec5", label="seen")
    ax.bar(xs, caught, width=w, color="#2e7d32", label="caught")
    ax.set_title(f"Opportunities seen vs caught: {sum(caught)} of {len(opp)}")
    ax.set_xlabel("UTC")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.autofmt_xdate()
    return _png(fig)


# -- pages ----------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:980px;
color:#212121;line-height:1.4;padding:0 12px}h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;
margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:3px}.warn{background:#fff3e0;border:1px solid
#ffb74d;padding:8px 12px;border-radius:4px}.note{color:#666;font-size:13px}table{border-collapse:collapse;
font-size:13px;margin:6px 0}td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;
margin:6px 0}.pos{color:#2e7d32}.neg{color:#c62828}code{background:#f5f5f5;padding:0 3px}"""


def _num(x, sig=6, sign=False) -> str:
    import console
    return console.plain(x, sig, sign=sign)


def _img(b64, alt) -> str:
    if not b64:
        return f'<p class="note">{html.escape(alt)}: no data in this session.</p>'
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _table(head, rows) -> str:
    h = ("<tr>" + "".join(f"<th>{html.escape(str(x))}</th>" for x in head) + "</tr>") if head else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{h}{body}</table>"


def _signed(x, sig=6) -> str:
    if x is None:
        return "n/a"
    cls = "pos" if x > 0 else ("neg" if x < 0 else "")
    return f'<span class="{cls}">{_num(x, sig, sign=True)}</span>'


def render_session(d: dict) -> str:
    rows, facts, ref = d["records"], d["facts"], d["ref"]
    summ = facts.get("summary") or {}
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    pnl: dict[str, float] = {}
    for r in rows:
        if r["profit"] is not None:
            pnl[r["start"]] = pnl.get(r["start"], 0.0) + r["profit"]
    total = sum(r["profit_ref"] for r in rows if r["profit_ref"] is not None)
    mode = facts.get("mode") or "?"
    t0 = rows[0]["ts_ms"] / 1000 if rows else facts.get("started_unix")
    t1 = rows[-1]["ts_ms"] / 1000 if rows else facts.get("ended_unix")

    def ts(x):
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(x)) if x else "-"
    parts = [f"<h1>Session {html.escape(d['run'])}</h1>",
             f'<p class="note">{html.escape(mode)} mode on {html.escape(str(facts.get("venue") or "?"))}'
             f", config {html.escape(str(facts.get('config') or '?'))}; first record {ts(t0)}, last {ts(t1)}</p>"]
    if mode != "live":
        parts.append('<p class="warn">Paper and simulator PnL are not live PnL: paper fills walk the '
                     "book of the moment without moving it, and the simulator's market is planted.</p>")
    held = summ.get("held") or {}
    rates = d["rates"]
    held_val = sum(v * rates[c] for c, v in held.items() if c in rates)
    lines = [["triangles", str(sum(statuses.values()) - statuses.get("FOLLOWUP", 0))]]
    lines += [[html.escape(s), str(n)] for s, n in sorted(statuses.items(), key=lambda kv: -kv[1])]
    lines += [[f"PnL {html.escape(c)}", _signed(v, 8)] for c, v in sorted(pnl.items())]
    lines.append([f"PnL total in {html.escape(ref)}", _signed(total)])
    if held:
        lines.append([f"coins held outside start currencies, in {html.escape(ref)}", _signed(held_val)])
    ttf = [r["tick_to_fire_us"] for r in rows if r["tick_to_fire_us"] is not None]
    if ttf:
        s = sorted(ttf)
        lines.append(["tick-to-fire p50 / p99 (us)",
                      f"{statistics.median(s):.0f} / {s[max(0, math.ceil(0.99 * len(s)) - 1)]:.0f}"])
    parts.append("<h2>Summary</h2>" + _table(None, lines))
    note = f"Values in {html.escape(ref)} use each currency's rate from {html.escape(d['rates_source'])}."
    if d["unpriced"]:
        note += f" No rate for {html.escape(', '.join(d['unpriced']))}: left out of the totals."
    parts.append(f'<p class="note">{note}</p>')
    parts.append("<h2>PnL</h2>" + _img(plot_pnl(rows, ref), "cumulative PnL"))
    parts.append("<h2>Outcomes</h2>" + _img(plot_outcomes(rows), "outcomes over time"))
    parts.append("<h2>Latency</h2>" + _img(plot_latency_hists(rows), "tick-to-fire and leg-gap histograms")
                 + _img(plot_stages(rows), "per-stage latency"))
    best, worst = triangle_table(rows)
    parts.append("<h2>Best and worst triangles</h2>" + _img(plot_triangles(best, worst, ref), "triangles"))
    trows = [[html.escape(t["triangle"]), str(t["n"]), str(t["filled"]), _signed(t["profit_ref"]),
              "n/a" if t["bps"] is None else f"{t['bps']:.2f}"] for t in best + worst[::-1]]
    if trows:
        parts.append(_table(["triangle", "tried", "filled", f"PnL {ref}", "median effective bps"], trows))
    opp = d["opportunities"]
    parts.append("<h2>Opportunities seen vs caught</h2>" + (
        _img(plot_opportunities(opp), "opportunities") if opp is not None else
        '<p class="note">This session kept no opportunity journal (opportunities.jsonl).</p>'))
    parts.append(f'<p class="note">Written {ts(time.time())} by session_report.py from journal.jsonl'
                 f"{' and summary.json' if facts else ''}.</p>")
    return _page(f"Session {d['run']}", "\n".join(parts))


def _page(title, body) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def write_session(run_dir) -> Path:
    run_dir = Path(run_dir)
    out = run_dir / "summary.html"
    _write_private(out, render_session(session_data(run_dir)))
    return out


def _write_private(path: Path, text: str) -> None:
    """Like the run folder's other files: owner only (0600), it shows balances and PnL."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)


def session_dirs(runs_dir: Path) -> list[Path]:
    return sorted(p for p in Path(runs_dir).iterdir() if p.is_dir() and (p / "journal.jsonl").exists())


def write_index(runs_dir) -> tuple[Path, list[dict]]:
    """runs_dir/index.html: every session (a row each) and one PnL curve over all of them.
    Returns the path and the rows (for the text table)."""
    runs_dir = Path(runs_dir)
    table, all_rows = [], []
    for d in session_dirs(runs_dir):
        s = session_data(d)
        rows = s["records"]
        n = sum(r["status"] != "FOLLOWUP" for r in rows)
        ttf = sorted(r["tick_to_fire_us"] for r in rows if r["tick_to_fire_us"] is not None)
        table.append({"run": d.name, "mode": s["facts"].get("mode") or "?", "ref": s["ref"],
                      "triangles": n, "filled": sum(r["status"] == "FILLED" for r in rows),
                      "other": sum(r["status"] not in ("FILLED", "FOLLOWUP") for r in rows),
                      "pnl_ref": sum(r["profit_ref"] for r in rows if r["profit_ref"] is not None),
                      "ttf_p50": statistics.median(ttf) if ttf else None,
                      "html": (d / "summary.html").exists()})
        all_rows += rows
    all_rows.sort(key=lambda r: r["ts_ms"])
    refs = sorted({t["ref"] for t in table})
    ref = refs[0] if len(refs) == 1 else "/".join(refs)
    body = [f"<h1>Sessions in {html.escape(runs_dir.name or str(runs_dir))}</h1>",
            '<p class="warn">Paper and simulator PnL are not live PnL. The curve adds every '
            "session's records in time order, each valued with its own session's rates.</p>"]
    body.append(_img(plot_pnl(all_rows, ref, "PnL over every session"), "PnL over every session"))
    trs = []
    for t in table:
        name = html.escape(t["run"])
        link = f'<a href="{name}/summary.html">{name}</a>' if t["html"] else name
        trs.append([link, html.escape(t["mode"]), str(t["triangles"]), str(t["filled"]), str(t["other"]),
                    _signed(t["pnl_ref"]) + " " + html.escape(t["ref"]),
                    "-" if t["ttf_p50"] is None else f"{t['ttf_p50']:.0f}"])
    body.append(_table(["session", "mode", "triangles", "filled", "other", "PnL", "tick-to-fire p50 us"], trs))
    total = sum(t["pnl_ref"] for t in table)
    body.append(f"<p>Total over {len(table)} sessions: {_signed(total)} {html.escape(ref)}</p>")
    out = runs_dir / "index.html"
    _write_private(out, _page("Sessions", "\n".join(body)))
    return out, table


USAGE = """usage: python report.py RUN_DIR     write RUN_DIR/summary.html (plots of one session)
       python report.py RUNS_DIR    write RUNS_DIR/index.html (every session: a table, one PnL curve)
                                    and each session's summary.html that is missing
"""


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if len(argv) == 2 else sys.stderr)
        return 0 if len(argv) == 2 else 2
    p = Path(argv[1])
    if (p / "journal.jsonl").exists():
        out = write_session(p)
        print(f"report: wrote {out}")
        return 0
    if p.is_dir() and session_dirs(p):
        for d in session_dirs(p):
            if not (d / "summary.html").exists():
                write_session(d)
        out, table = write_index(p)
        print(f"{'session':18s} {'mode':6s} {'triangles':>9s} {'filled':>7s} {'other':>6s} {'PnL':>16s}")
        for t in table:
            print(f"{t['run']:18s} {t['mode']:6s} {t['triangles']:9d} {t['filled']:7d} {t['other']:6d} "
                  f"{_num(t['pnl_ref'], 6, sign=True):>12s} {t['ref']}")
        print(f"report: wrote {out}")
        return 0
    print(f"report: {p} is neither a run folder (no journal.jsonl) nor a folder of them", file=sys.stderr)
    return 2
