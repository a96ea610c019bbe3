"""Tests of console.py: the short line per triangle, the status line, plain decimals.

Run: python -m pytest -q tests/test_console.py
"""
import dataclasses
import re

import numpy as np

import books
import console
import pipeline
from report import STATUS_FAILED, STATUS_FILLED, FollowUp, SessionSummary
from test_report import RECV, flux_record


class Rates:
    """A holdings.Valuer stand-in: fixed rates to USDT; BTC 100000, no price for XYZ."""
    RATE = {"USDT": 1.0, "USDC": 0.999, "BTC": 100000.0, "ETH": 3000.0}

    def value(self, amount, ccy, target):
        assert target == "USDT"
        r = self.RATE.get(ccy)
        return None if r is None else amount * r


def test_plain_when_tiny_large_or_negative_then_plain_decimal_never_exponent():
    assert console.plain(9.277528e-05, sign=True) == "+0.00009277528"
    assert console.plain(-1.5e-9) == "-0.0000000015"
    assert console.plain(1234567.891234) == "1234567.9"
    assert console.plain(0.0) == "0" and console.plain(None) == "n/a"
    assert console.plain(float("nan")) == "n/a"
    assert console.plain(2.5, sign=True) == "+2.5"
    assert "e" not in console.plain(1e-20) and "e" not in console.plain(3e21)


def test_short_line_when_filled_then_status_triangle_bps_profit_and_tick_to_fire():
    rec = flux_record(STATUS_FILLED)
    rec.settle()
    line = console.short_line(rec)
    assert line == ("17:55:53.719 FILLED   USDT>FLUX>USDC   | bps 34.45 -> 30.72 | "
                    "profit +0.01534302 USDT | tick-to-fire 61 us"), line
    assert len(line) < 130


def test_short_line_when_failed_then_reason_shortened_and_no_fills_detail():
    rec = flux_record(STATUS_FAILED, n_legs=1, error="L1 rejected: 400100 " + "x" * 200)
    rec.settle()
    line = console.short_line(rec)
    assert line.split()[1] == "FAILED" and "L1 rejected: 400100" in line
    assert line.endswith("...") and len(line) < 200
    assert "fills=" not in line and "timings=" not in line


def test_short_line_when_status_unknown_to_this_code_then_shown_as_is():
    rec = flux_record(STATUS_FILLED)
    rec.status = "UNWIND_FAILED"
    rec.reason = "unwind of FLUX rejected"
    line = console.short_line(rec)
    assert line.split()[1] == "UNWIND_FAILED" and "unwind of FLUX rejected" in line


def test_short_line_when_followup_then_order_and_what_the_exchange_said():
    rec = flux_record(STATUS_FILLED)
    fu = FollowUp(ts_ms=rec.ts_ms, corr=rec.corr, triangle=rec.triangle, leg=rec.legs[1], found=True,
                  changes=[(0.5, "USDT")])
    line = console.short_line(fu)
    assert "FOLLOWUP" in line and "ta1fs0l1 found" in line and "profit +0.5 USDT" in line


def summary_with(pnl: dict) -> SessionSummary:
    s = SessionSummary(mode="paper")
    for ccy, v in pnl.items():
        rec = flux_record(STATUS_FILLED)
        rec.settle()
        rec = dataclasses.replace(rec, triangle=(ccy, "FLUX", "USDC"), profit=v)
        s.add(rec)
    return s


def status(summary, n_snap, counters=None):
    st = np.zeros(len(n_snap), books.BOOK_DTYPE)
    st["n_snap"] = n_snap
    st["status"] = books.BOOK_SYNCED
    c = counters if counters is not None else pipeline.alloc_counters()
    return console.status_line(msgs_per_s=200.4, n_synced=len(n_snap), n_books=len(n_snap), book_state=st,
                               counters=c, C=pipeline.C, summary=summary, valuer=Rates(), ref="USDT")


def test_status_line_when_pnl_in_several_currencies_then_each_and_total_in_ref():
    line = status(summary_with({"BTC": 9.277528e-05, "USDT": 6.5, "USDC": -1.0}), [1, 1, 1])
    assert "PnL BTC +0.00009277528, USDC -1, USDT +6.5 = +14.7785 USDT |" in line, line
    assert "e-0" not in line


def test_status_line_when_a_currency_has_no_price_then_named_and_total_of_the_rest():
    line = status(summary_with({"XYZ": 3.0, "USDT": 2.0}), [1])
    assert "= +2 USDT (no price for XYZ)" in line


def test_status_line_when_books_resynced_after_start_then_counted_apart_from_start_up():
    c = pipeline.alloc_counters()
    c[pipeline.C["gaps"]] = 2
    line = status(SessionSummary(mode="paper"), [1, 1, 3, 0], c)
    assert "books 4/4 synced (3 at start-up, 2 resynced since) | gaps 2 |" in line
    assert "PnL 0 USDT" in line and "tick-to-fire p50 - p99 - us" in line


def test_status_line_when_latencies_then_whole_microseconds():
    s = summary_with({"USDT": 1.0})
    line = status(s, [1])
    assert re.search(r"tick-to-fire p50 61 p99 61 us", line), line
    assert RECV  # the record's tick-to-fire is 61 us (flux_record)


def test_bar_when_half_done_then_half_filled():
    assert console.bar(5, 10, width=10) == "[#####.....]"
    assert console.bar(0, 0, width=4) == "[....]"
