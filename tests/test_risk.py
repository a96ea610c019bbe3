"""risk.py units (docs/design.md 12): the rate budget's window rules, the stop cells, the
back-offs, each kill-switch limit on hand-made summaries, the KILLED line and summary, the
config refusals of money-losing settings, and run.py's signal table.

Run: python -m pytest -q tests/test_risk.py   (< 1 s; no simulator)
"""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest

import config
import report
import risk
import run

S = 1_000_000_000


# -- rate budget ---------------------------------------------------------------------------------

def test_pool_of_when_engine_paths_then_kucoin_pools():
    assert risk.pool_of("/api/v1/hf/orders") == "spot"
    assert risk.pool_of("/api/v1/hf/orders/test") == "spot"
    assert risk.pool_of("/api/v1/hf/orders/client-order/ta1s0l0") == "spot"
    assert risk.pool_of("/api/v1/bullet-private") == "spot"
    assert risk.pool_of("/api/v1/market/orderbook/level2_100") == "public"
    assert risk.pool_of("/api/v1/bullet-public") == "public"
    assert risk.pool_of("/api/v1/timestamp") == "public"
    assert risk.pool_of("/api/v1/accounts") == "management"


def test_budget_when_answers_arrive_out_of_order_then_lowest_remaining_of_the_window_wins():
    b = risk.RateBudget(triangle_need=16)
    b.observe("spot", 60, 30, 20_000, 100 * S)
    b.observe("spot", 60, 40, 19_990, 100 * S + 5_000_000)   # an older answer read later
    assert b.left("spot", 101 * S)[0] == 30
    assert b.triangle_gate(101 * S) == 0
    b.observe("spot", 60, 15, 19_000, 101 * S)
    assert b.triangle_gate(101 * S) == 120 * S              # blocked until the reset
    assert b.wait_s("spot", 2, 101 * S) == 0.0               # a lookup still fits


def test_budget_when_reset_passes_or_new_window_seen_then_gate_opens():
    b = risk.RateBudget(triangle_need=16)
    b.observe("spot", 60, 3, 1_000, 100 * S)
    assert b.triangle_gate(100 * S) == 101 * S
    assert b.triangle_gate(101 * S) == 0                     # past the reset: unknown = open
    b.observe("spot", 60, 3, 1_000, 100 * S)
    b.observe("spot", 60, 59, 29_990, 100 * S + 500_000_000)  # a new window (reset 29 s later)
    assert b.left("spot", 100 * S + S) == (59, 100 * S + 500_000_000 + 29_990_000_000)


def test_budget_when_headers_missing_or_malformed_then_ignored():
    b = risk.RateBudget(triangle_need=16)
    b.observe_headers("/api/v1/hf/orders", {}, 1)
    b.observe_headers("/api/v1/hf/orders", {"gw-ratelimit-limit": "x"}, 1)
    assert b.pools == {}
    b.observe_headers("/api/v1/hf/orders", {"gw-ratelimit-limit": "60", "gw-ratelimit-remaining": "5",
                                            "gw-ratelimit-reset": "1000"}, 1)
    assert b.left("spot", 2) == (5, 1 + 1000 * 1_000_000)


def test_stop_cell_when_reasons_overlap_then_cell_holds_the_latest():
    arr = np.zeros(4, np.int64)
    c = risk.StopCell(arr, 2)
    c.hold("429", 50)
    c.hold("reject", 20)
    assert arr[2] == 50
    c.hold("429", 0)
    assert arr[2] == 20 and arr[0] == arr[1] == arr[3] == 0


def test_reject_backoff_when_same_code_repeats_then_doubles_capped_and_accept_clears():
    rb = risk.RejectBackoff(500, 3000)
    got = [rb.rejected("200004", 0) for _ in range(5)]
    assert [d // 1_000_000 for _, d in got] == [500, 1000, 2000, 3000, 3000]
    assert [n for n, _ in got] == [1, 2, 3, 4, 5]
    assert rb.rejected("400100", 0) == (1, 500_000_000)     # another kind starts its own count
    rb.accepted()
    assert rb.rejected("200004", 0) == (1, 500_000_000)


def test_backoff_when_key_fails_then_not_allowed_until_its_delay():
    b = risk.Backoff(500_000_000, 30 * S)
    assert b.allowed(7, 0)
    b.fail(7, 0)
    assert not b.allowed(7, 400_000_000) and b.allowed(7, 500_000_000)
    b.fail(7, S)
    assert not b.allowed(7, S + 900_000_000) and b.allowed(7, 2 * S)
    b.ok(7)
    assert b.allowed(7, 0)


# -- kill switch ---------------------------------------------------------------------------------

class Prices:
    """A holdings.Valuer stand-in: fixed rates to USDT, None for an unpriced coin."""

    def __init__(self, **rates):
        self.rates = {"USDT": 1.0, **rates}

    def value(self, amount, ccy, target):
        assert target == "USDT"
        r = self.rates.get(ccy)
        return None if r is None else amount * r


LIMITS = {"kill_max_loss": 10, "kill_trailing_drawdown": 10, "kill_max_consecutive_failed": 3,
          "kill_max_held": 100}


def switch(**over):
    arr = np.zeros(4, np.int64)
    trips = []
    ks = risk.KillSwitch(dict(LIMITS, **over), "USDT", ("USDT", "USDC", "BTC"), risk.StopCell(arr, 3),
                         on_trip=trips.append)
    return ks, arr, trips


def summ(pnl=None, held=None):
    s = report.SessionSummary(mode="live")
    s.pnl.update(pnl or {})
    s.held.update(held or {})
    return s


def test_kill_when_session_loss_reaches_limit_then_trips_once_and_cell_set():
    ks, arr, trips = switch()
    px = Prices(BTC=50_000.0, XRP=0.5)
    assert ks.check(summ({"USDT": -5.0}, {"XRP": 9.0}), px) is None        # -5 + 4.5 = -0.5
    assert arr[3] == 0
    trip = ks.check(summ({"USDT": -12.0}, {"XRP": 2.0}), px)                # -12 + 1 = -11
    assert trip["kind"] == risk.REASON_LOSS and trip["loss"] == pytest.approx(11.0)
    assert arr[3] == risk.KILL_NS and trips == [trip]
    assert ks.check(summ({"USDT": -20.0}), px) is None and len(trips) == 1  # once


def test_kill_when_equity_falls_from_its_high_then_trailing_drawdown_trips_before_loss():
    ks, arr, trips = switch(kill_max_loss=1000)
    px = Prices(BTC=50_000.0)
    assert ks.check(summ({"USDT": 8.0}), px) is None
    assert ks.check(summ({"USDT": 15.0}), px) is None                       # high 15
    assert ks.check(summ({"USDT": 6.0}), px) is None                        # 9 below
    trip = ks.check(summ({"USDT": 4.0}), px)                                # 11 below, still +4
    assert trip["kind"] == risk.REASON_DRAWDOWN and trip["high"] == 15.0 and trip["equity"] == 4.0


def test_kill_when_failed_and_unknown_in_a_row_then_trips_and_filled_resets_count():
    ks, arr, trips = switch()
    px = Prices()
    rec = lambda st: type("R", (), {"status": st})()   # noqa: E731
    for st in ("FAILED", "UNKNOWN", "FILLED", "FAILED", "ABORTED", "UNKNOWN"):
        ks.on_record(rec(st))
        assert ks.check(summ(), px) is None, st
    ks.on_record(rec("FAILED"))
    trip = ks.check(summ(), px)
    assert trip["kind"] == risk.REASON_FAILED and trip["consecutive"] == 3


def test_kill_when_value_outside_primaries_reaches_limit_then_trips_and_primaries_not_counted():
    ks, arr, trips = switch(kill_max_loss=1000, kill_trailing_drawdown=1000)
    px = Prices(BTC=50_000.0, XRP=0.5, DOGE=None)
    assert ks.check(summ({"USDT": -100.0}, {"BTC": 0.002, "XRP": 150.0, "DOGE": 1e6}), px) is None
    trip = ks.check(summ({"USDT": -130.0}, {"BTC": 0.002, "XRP": 210.0}), px)
    assert trip["kind"] == risk.REASON_HELD and trip["outside"] == pytest.approx(105.0)


def test_kill_when_coin_unpriced_then_counted_zero_in_equity():
    ks, arr, trips = switch()
    f = ks.figures(summ({"USDT": -8.0}, {"DOGE": 100.0}), Prices(DOGE=None))
    assert f["equity"] == -8.0 and f["unpriced"] == ["DOGE"]


def test_kill_when_rearmed_then_loss_counts_from_now_and_cell_clears():
    ks, arr, trips = switch()
    px = Prices()
    assert ks.check(summ({"USDT": -11.0}), px)["kind"] == risk.REASON_LOSS
    ks.rearm(summ({"USDT": -11.0}), px)
    assert arr[3] == 0 and ks.trip is None
    assert ks.check(summ({"USDT": -18.0}), px) is None                      # 7 below the re-arm
    assert ks.check(summ({"USDT": -21.5}), px)["loss"] == pytest.approx(10.5)


def test_killed_line_when_written_then_report_journal_and_summary_carry_it(tmp_path):
    lw = run.LogWriter(tmp_path, echo=False)
    lw.summary = summ({"USDT": -12.0}, {"XRP": 2.0})
    ks, arr, trips = switch()
    lw.kill, lw.valuer = ks, Prices(XRP=0.5)
    lw.emit(report.TriangleReport(status="FAILED", ts_ms=0, corr=1, mode="live", triangle=("USDT", "XRP", "BTC"),
                                  symbols=("XRP-USDT", "XRP-BTC", "BTC-USDT"), sides=(0, 1, 1),
                                  predicted_bps=10.0, start_volume=1.0, book_ts_ms=0, error="L0 rejected"))
    trip = ks.check(lw.summary, lw.valuer)
    assert trip is not None
    lw.killed(trip, "pause", "0 ended")
    lw.stop()
    lw.run()
    lines = (tmp_path / "report.log").read_text().splitlines()
    assert len(lines) == 2 and " KILLED | reason=session loss: session loss " in lines[1]
    assert "| action=pause" in lines[1] and "held=[XRP=2]" in lines[1]
    j = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert j[1]["status"] == "KILLED" and j[1]["kind"] == risk.REASON_LOSS and j[1]["action"] == "pause"
    lw.summary.state = "KILLED (paused)"
    text = lw.summary.render(None, "USDT")
    assert "state at the end: KILLED (paused)" in text and " KILLED | reason=session loss" in text


# -- config and signals ------------------------------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ("[engine]\nmin_profit_bps = -500\n", "min_profit_bps = -500 signals triangles predicted to lose money"),
    ("[risk]\nkill_max_loss = 0\n", "kill_max_loss = 0 switches that kill-switch limit off"),
    ("[risk]\nkill_max_consecutive_failed = 0\n", "kill_max_consecutive_failed = 0"),
    ("[risk]\nkill_trailing_drawdown = 0\n", "kill_trailing_drawdown = 0"),
    ("[risk]\nkill_max_held = 0\n", "kill_max_held = 0"),
])
def test_config_when_money_losing_setting_then_refused_with_override_named(text, needle):
    with pytest.raises(config.ConfigError) as ei:
        config.parse_config(text, "t.ini")
    (p,) = ei.value.problems
    assert needle in p and "i_accept_losses = true" in p


def test_config_when_override_set_then_money_losing_settings_accepted_and_listed():
    cfg = config.parse_config("[engine]\nmin_profit_bps = -500\n[risk]\nkill_max_loss = 0\n"
                              "i_accept_losses = true\n", "t.ini")
    assert cfg.min_profit_bps == -500 and cfg.risk["kill_max_loss"] == 0
    got = config.money_losing_settings(cfg.engine, cfg.risk)
    assert len(got) == 2 and "min_profit_bps" in got[0] and "kill_max_loss" in got[1]
    assert "[risk]" in cfg.describe() and "i_accept_losses = True" in cfg.describe()


def test_config_when_max_start_above_balance_then_one_line_per_primary():
    from decimal import Decimal
    got = config.balance_problems({"USDT": Decimal(100), "BTC": Decimal("0.002")},
                                  {"USDT": Decimal(50), "BTC": Decimal("0.01")}, ("USDT", "BTC"))
    assert got == ["[engine] max_start USDT=100 is above the account's balance 50 USDT"]


def test_signals_when_installed_then_hup_and_other_terminating_signals_stop_usr1_pauses_usr2_resumes():
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGALRM", "SIGXCPU", "SIGPWR"):
        assert getattr(signal, name) in run.STOP_SIGNALS, name
    for name in ("SIGSEGV", "SIGABRT", "SIGPIPE", "SIGUSR1", "SIGUSR2", "SIGKILL"):
        assert getattr(signal, name) not in run.STOP_SIGNALS, name
    calls = []

    class Eng:
        def request_stop(self, why):
            calls.append(("stop", why))

        def pause(self, why):
            calls.append(("pause", why))

        def resume(self, why):
            calls.append(("resume", why))

    saved = {s: signal.getsignal(s) for s in run.STOP_SIGNALS + (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        run.install_signals(Eng())
        for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            signal.raise_signal(s)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    assert calls == [("pause", "SIGUSR1"), ("resume", "SIGUSR2"), ("stop", "SIGHUP")]
