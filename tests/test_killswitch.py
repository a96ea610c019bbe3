"""The kill switch end to end (docs/design.md 12): the engine live against the simulator with
a fault pattern built to trip each limit, Engine.run (the main thread's loop) on a thread,
and every test ending in a reconciliation (tests/reconcile.py).

- persistent rejections: the pauses between rejections grow (the back-off), and the
  consecutive-failure limit ends the session (kill_action = stop, exit 3) with a KILLED line;
- persistent partial fills: the held-outside-primaries limit trips; the engine stays up
  paused (kill_action = pause): no new signal, the status line says KILLED (paused);
- a losing price move on the leftovers of a partial triangle: the session-loss limit, and
  the trailing-drawdown limit, each end the session;
- max_start above the account's balance is refused at start-up unless i_accept_losses.

Run: python -m pytest -q tests/test_killswitch.py   (~1.5 minutes; no latency asserted)
"""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

import config
import report
import risk
import slots as slotmod
from engine_harness import EngineRun
from reconcile import balances_total, reconcile

BALANCES = "USDT=1000,USDC=1000,BTC=0.05,ETH=1,KCS=100"
INITIAL = {c: Decimal(v) for c, v in (kv.split("=") for kv in BALANCES.split(","))}
LOOSE = {"kill_max_loss": 1000, "kill_trailing_drawdown": 1000, "kill_max_consecutive_failed": 1000,
         "kill_max_held": 100000}


def engine(risk_kw=None, **kw) -> EngineRun:
    sim = {"balances": BALANCES}
    sim.update(kw.pop("sim", {}))
    kw.setdefault("slots", 1)
    er = EngineRun(sim=sim, risk=dict(LOOSE, **(risk_kw or {})), **kw)
    er.engine.keep_sim_running = True       # reconciled after the session ends
    return er


def wait_synced(er, timeout=25.0) -> None:
    n = len(er.sh.book_state)
    er.wait_for(lambda: er.books_synced() >= n, timeout)


def triangles(er) -> list:
    return [r for r in er.records if isinstance(r, report.TriangleReport)]


def busy(er) -> bool:
    return any(slotmod.is_busy(er.sh.slots, k) for k in range(len(er.sh.slots)))


def settle(er) -> dict:
    """The session has ended (or is paused and idle): read the simulator, reconcile."""
    assert er.wait_for(lambda: not busy(er), 40), "a triangle is still in flight"
    orders = er.sim_get("/sim/orders")
    after = balances_total(er.sim_get("/sim/balances"))
    er.wait_for(lambda: er.lw.q.empty(), 5)
    time.sleep(0.2)
    return reconcile(er.records, orders, INITIAL, after)


def killed_lines(er) -> list[str]:
    return [x for x in (er.run_dir / "report.log").read_text().splitlines() if " KILLED | " in x]


def test_rejections_persist_when_backoff_then_pauses_grow_and_consecutive_limit_ends_session():
    """Every order is rejected (200004) while mispricings come 4 a second: the engine waits
    0.3, 0.6, 1.2 s after the 1st, 2nd, 3rd rejection in a row instead of refiring, and the 4th
    FAILED triangle in a row trips the kill switch: KILLED line, session over, exit 3."""
    with engine({"kill_max_consecutive_failed": 4, "kill_action": "stop", "reject_backoff_ms": 300}) as er:
        wait_synced(er)
        er.sim_control(reject_orders={"count": 100000}, mispricing_rate=4.0)
        er.run_in_thread()
        code = er.join_run(90)
        state = er.sim_get("/sim/state")
        res = settle(er)
        summary = er.engine.summary.render(None)
        log = "\n".join(er.log_lines)
        kl = killed_lines(er)
    assert code == 3, log[-3000:]
    recs = triangles(er)
    assert 4 <= len(recs) <= 5 and all(r.status == report.STATUS_FAILED for r in recs), \
        [report.format_line(r) for r in recs]
    assert all("rejected: 200004" in r.error for r in recs)
    assert state["faults"]["counters"]["orders_rejected"] == len(recs)
    gaps = [(b.ts_ms - a.ts_ms) / 1000.0 for a, b in zip(recs, recs[1:])]
    for gap, wait in zip(gaps, (0.3, 0.6, 1.2)):
        assert gap >= wait * 0.95, gaps
    (line,) = kl
    assert f"reason={risk.REASON_FAILED}: 4 FAILED/UNKNOWN triangles in a row" in line
    assert "| action=stop" in line and "consecutive_failed=4" in line
    assert "KILLED | reason=consecutive failures" in summary and "state at the end: KILLED (paused)" in summary
    assert "unwind off: leftovers stay held" in log
    assert res["executed"] == 0


def test_partial_fills_persist_when_held_limit_then_killed_paused_and_no_new_signal():
    """Every order fills half (the rest of a market order is cancelled): each triangle leaves
    coins behind. Once those outside the primaries are worth 40 USDT the kill switch trips;
    with kill_action = pause the engine stays up, books and evaluation go on, nothing is
    signalled, and the status line says so. Stopped later, it exits 3 with the KILLED line
    in the summary."""
    with engine({"kill_max_held": 40, "kill_action": "pause"}, slots=2) as er:
        wait_synced(er)
        er.sim_control(partial_fill={"count": 100000, "fraction": "0.5"}, mispricing_rate=3.0)
        er.run_in_thread()
        assert er.wait_for(lambda: er.engine.summary.kills, 90), er.log_lines[-10:]
        assert er.wait_for(lambda: not busy(er), 20)
        signals = er.counters()["signals"]
        evals = er.counters()["evals"]
        status = er.wait_for(lambda: [x for x in er.log_lines if x.startswith("status: KILLED (paused): ")], 10)
        time.sleep(4.0)
        assert er.counters()["signals"] == signals, "a signal while killed"
        assert er.counters()["evals"] > evals, "books and evaluation stopped"
        planted = er.sim_get("/sim/state")["market"]["counters"]["planted"]
        res = settle(er)
        er.engine.request_stop("test")
        code = er.join_run(60)
        log = "\n".join(er.log_lines)
        kl = killed_lines(er)
    assert status and "held outside primaries" in status[0]
    assert planted > 0
    trip = er.engine.kill.trip
    assert trip["kind"] == risk.REASON_HELD and 40 <= trip["outside"] < 40 + 2 * 100, trip
    (line,) = kl
    assert "| action=pause" in line and "reason=held outside primaries" in line
    assert any(r.status == report.STATUS_PARTIAL for r in triangles(er))
    assert code == 3
    assert "run: session summary" in log and " KILLED | reason=held outside primaries" in log
    assert res["executed"] >= 3


@pytest.mark.parametrize("limit,kind", [("kill_max_loss", risk.REASON_LOSS),
                                        ("kill_trailing_drawdown", risk.REASON_DRAWDOWN)])
def test_price_moves_against_leftovers_when_limit_then_killed_and_session_ends(limit, kind):
    """A partial triangle leaves coins; then, with trading paused, the market marks the largest
    of them down 60 % (every book of that coin requoted): the session's result falls by far
    more than 4 USDT and the limit under test trips, though no report line came (the
    periodic check), and the session ends."""
    with engine({limit: 4, "kill_action": "stop"}) as er:
        wait_synced(er)
        er.run_in_thread()
        er.sim_control(partial_fill={"count": 3, "fraction": "0.5"})
        out = er.sim_control(plant={"primary": "USDT"})
        assert out["mispricing"] is not None
        assert er.wait_for(lambda: triangles(er), 30), er.log_lines[-8:]
        rec = triangles(er)[0]
        assert rec.status == report.STATUS_PARTIAL, report.format_line(rec)
        # the triangle may start in any primary: value what it left in USDT, as the switch does
        held = [(er.lw.valuer.value(a, c, "USDT") or 0.0, c) for a, c in rec.held() if c != "USDT"]
        value, coin = max(held)
        assert value * 0.6 > 6, rec.open_values     # the move below costs more than the limit
        assert er.engine.kill.trip is None
        # paused first: the move makes the books around the coin arbitrageable for a moment,
        # and trades there would move the result too; the limits are checked while paused
        er.engine.pause("test")
        assert er.wait_for(lambda: er.engine.state() == "PAUSED" and not busy(er), 20)
        er.sim_control(move_price={"currency": coin, "factor": 0.4})
        code = er.join_run(60)
        res = settle(er)
        kl = killed_lines(er)
    assert code == 3, er.run_error or er.log_lines[-10:]
    trip = er.engine.kill.trip
    assert trip["kind"] == kind, trip
    (line,) = kl
    assert f"reason={kind}: " in line and "| action=stop" in line
    assert res["executed"] >= 3     # the planted mispricing may be traded again before the pause


def test_max_start_above_balance_when_no_override_then_refused_and_accepted_with_it():
    with pytest.raises(config.ConfigError) as ei:
        EngineRun(sim={"balances": "USDT=50,USDC=1000,BTC=0.05,ETH=1"})
    assert "max_start USDT=100 is above the account's balance 50 USDT" in str(ei.value)
    assert "i_accept_losses = true" in str(ei.value)
    with EngineRun(sim={"balances": "USDT=50,USDC=1000,BTC=0.05,ETH=1"}, risk={"i_accept_losses": "true"}) as er:
        log = "\n".join(er.log_lines)
        er.stop()
    assert "i_accept_losses = true: accepted [engine] max_start USDT=100 is above the account's balance" in log
