"""KuCoin's limits end to end (docs/design.md 12, docs/kucoin.md 1.4 and 7.1): the engine live
against the simulator, every money test ending in a reconciliation (tests/reconcile.py).

- the rate budget: the simulator's spot quota at 60 weight per 30 s window and mispricings
  4 a second for two minutes (four windows): the engine trades, holds triangles back when
  the budget cannot cover them, and never gets a 429 (so none lands on leg 1 or 2) nor asks
  more than the quota;
- a 429 on leg 1 is retried with the same order after the pool's reset, and the triangle
  completes;
- a failing REST snapshot backs off per symbol (0.5, 1, 2 s) instead of being asked again on
  the symbol's next frame;
- the exchange's clock moves 8 s ahead: the offset is re-measured and orders still go through.

Run: python -m pytest -q tests/test_ratebudget.py   (~3 minutes, two of them the budget run)
"""
from __future__ import annotations

import re
import time
from decimal import Decimal

import report
import slots as slotmod
from engine_harness import EngineRun
from reconcile import balances_total, reconcile

BALANCES = "USDT=1000,USDC=1000,BTC=0.05,ETH=1,KCS=100"
INITIAL = {c: Decimal(v) for c, v in (kv.split("=") for kv in BALANCES.split(","))}
LOOSE = {"kill_max_loss": 1000, "kill_trailing_drawdown": 1000, "kill_max_consecutive_failed": 1000,
         "kill_max_held": 100000}


def engine(**kw) -> EngineRun:
    sim = {"balances": BALANCES}
    sim.update(kw.pop("sim", {}))
    kw.setdefault("slots", 1)
    er = EngineRun(sim=sim, risk=dict(LOOSE, **kw.pop("risk", {})), **kw)
    er.engine.keep_sim_running = True
    return er


def wait_synced(er, timeout=25.0) -> None:
    n = len(er.sh.book_state)
    er.wait_for(lambda: er.books_synced() >= n, timeout)


def triangles(er) -> list:
    return [r for r in er.records if isinstance(r, report.TriangleReport)]


def busy(er) -> bool:
    return any(slotmod.is_busy(er.sh.slots, k) for k in range(len(er.sh.slots)))


def quiesce_and_reconcile(er) -> dict:
    er.sh.control[0] = 1
    assert er.wait_for(lambda: not busy(er), 40), "a triangle is still in flight"
    orders = er.sim_get("/sim/orders")
    after = balances_total(er.sim_get("/sim/balances"))
    er.wait_for(lambda: er.lw.q.empty(), 5)
    time.sleep(0.2)
    return reconcile(er.records, orders, INITIAL, after)


def test_rate_budget_when_spot_quota_low_and_mispricings_many_then_no_429_and_quota_never_exceeded():
    quota = 60
    with engine(slots=2, sim={"extra_args": f"--rate-limits spot={quota},public=200"}) as er:
        wait_synced(er)
        need = er.sh.budget.need
        er.sim_control(mispricing_rate=4.0)
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end:
            time.sleep(1.0)
        res = quiesce_and_reconcile(er)
        state = er.sim_get("/sim/state")
        counters = er.counters()
        log = "\n".join(er.log_lines)
        er.stop()
    rl = state["rate_limits"]
    assert rl["quota"]["spot"] == quota and rl["window_ms"] == 30000
    assert rl["limited"] == {"spot": 0, "management": 0, "public": 0}, rl     # no 429, ever
    assert rl["peak"]["spot"] <= quota
    assert state["faults"]["counters"]["rest_429_sent"] == 0
    recs = triangles(er)
    assert len(recs) >= 25, f"{len(recs)} triangles in 2 minutes: the budget starved trading"
    assert not [r for r in recs if "429" in r.error], [report.format_line(r) for r in recs if "429" in r.error]
    assert all(len(r.legs) == 3 for r in recs if r.status in (report.STATUS_FILLED, report.STATUS_PARTIAL))
    assert counters["rate_backoff"] > 0, "the budget never held a signal back: the test did not load it"
    assert "429000" not in log
    # every order the engine sent is in the reconciliation, and it sent at most what 4+
    # windows allow (bullets and lookups share the pool)
    assert res["orders"] <= 5 * (quota - need + 3 * 2)
    assert need == 3 * 2 + 10


def test_429_on_leg1_when_pool_resets_then_same_order_retried_and_triangle_completes():
    with engine() as er:
        wait_synced(er)
        er.sim_control(rate_window_ms=2000,
                       reject_orders={"count": 1, "code": "429000", "msg": "Too Many Requests", "after": 1})
        er.sim_control(plant={})
        assert er.wait_for(lambda: triangles(er), 40), er.log_lines[-8:]
        rec = triangles(er)[0]
        res = quiesce_and_reconcile(er)
        state = er.sim_get("/sim/state")
        orders = er.sim_get("/sim/orders")
        log = "\n".join(er.log_lines)
        er.stop()
    assert rec.status in (report.STATUS_FILLED, report.STATUS_PARTIAL), report.format_line(rec)
    assert len(rec.legs) == 3 and all(lg.filled_sz > 0 for lg in rec.legs)
    assert state["faults"]["counters"]["orders_rejected"] == 1
    coid = rec.legs[1].client_oid
    assert f"L1 {coid} got 429000: the same order goes again" in log
    assert len([o for o in orders if o["clientOid"] == coid]) == 1     # placed once, after the reset
    assert res["executed"] == 3


def test_snapshot_fails_when_repeatedly_then_symbol_backs_off_doubling_then_syncs():
    """A sequence gap makes one book resync while every REST call fails (503) four times:
    its snapshot is asked again after 0.5, 1 and 2 s, not on each of its next frames (it
    gets ~5 a second here), and the book syncs after the fifth."""
    with engine(mode="paper", min_profit_bps=10000) as er:
        wait_synced(er)
        sym = er.sh.universe.symbols[3]
        er.sim_control(rest_5xx={"count": 4, "status": 503}, sequence_gap={"symbol": sym, "count": 1})
        assert er.wait_for(lambda: sum(f"snapshot {sym} failed" in t for _, t in er.log_stamps) >= 4, 30)
        assert er.wait_for(lambda: er.books_synced() == len(er.sh.book_state), 20)
        stamps = [t for t, text in er.log_stamps if f"snapshot {sym} failed" in text]
        backoff = er.engine.hot.snap_failures
        er.stop()
    assert len(stamps) == 4 and backoff == 4
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    for gap, wait in zip(gaps, (0.5, 1.0, 2.0)):
        assert gap >= wait * 0.9, gaps


def test_exchange_clock_moves_8s_when_resync_then_offset_follows_and_orders_accepted():
    """docs/kucoin.md 1.4: a timestamp 5 s off is refused. The exchange's clock jumps 8 s
    ahead; within a re-measure period the offset follows and a triangle trades."""
    with engine(clock_resync_s=1) as er:
        wait_synced(er)
        er.sim_control(clock_offset_ms=8000)
        assert er.wait_for(lambda: abs(er.engine.client.clock_offset_ms - 8000) < 300, 10), \
            er.engine.client.clock_offset_ms
        er.sim_control(plant={})
        assert er.wait_for(lambda: triangles(er), 40), er.log_lines[-8:]
        rec = triangles(er)[0]
        res = quiesce_and_reconcile(er)
        log = "\n".join(er.log_lines)
        er.stop()
    assert rec.status in (report.STATUS_FILLED, report.STATUS_PARTIAL), report.format_line(rec)
    assert "400002" not in log
    assert re.search(r"maint: clock offset -?\d+ -> (79\d\d|80\d\d) ms", log), log[-2000:]
    assert res["executed"] >= 3
