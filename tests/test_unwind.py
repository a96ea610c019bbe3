"""Leftovers (docs/design.md 6.7): unwind after a failed or partial triangle, unwind_max_loss_bps,
dust, keep; leg 0 as a limit IOC (MISSED, partial, full); and a session killed with a leg in
flight, then restarted: the restart names the dead triangle, its orders' real outcome and
the stranded coins, unwinds them, and the balances reconcile across both sessions.

Every end-to-end test ends in a reconciliation (tests/reconcile.py) against the simulator's
own books. Run: python -m pytest -q tests/test_unwind.py (~3 minutes; no latency asserted).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import pytest

import recovery
import report
from conftest import ROOT, SimProcess
from engine_harness import EngineRun, external_sim_engine, ini_text
from reconcile import balances_total, reconcile, records_from_journal
from test_outcomes import BALANCES, INITIAL, engine, finish, plant_and_wait, quiesce, wait_synced


def unwinds(er) -> list:
    return [r for r in er.records if isinstance(r, report.UnwindReport)]


def wait_unwinds(er, n: int, timeout: float = 30.0) -> list:
    got = er.wait_for(lambda: len(unwinds(er)) >= n, timeout)
    assert got, f"no unwind record; log tail {er.log_lines[-10:]}"
    return unwinds(er)


def held_ccys(rec) -> set:
    return {c for a, c in rec.held() if a > 0}


@pytest.mark.parametrize("leg", [1, 2])
def test_unwind_when_leg_rejected_then_leftover_sold_back_to_start_and_reconciles(leg):
    with engine(unwind="market", unwind_max_loss_bps=0) as er:
        wait_synced(er)
        er.sim_control(reject_orders={"count": 1, "client_oid_suffix": f"l{leg}"})
        rec = plant_and_wait(er, 0)
        u = wait_unwinds(er, 1)[0]
        res = finish(er)
    assert rec.status == report.STATUS_FAILED and f"L{leg} rejected" in rec.error, report.format_line(rec)
    assert held_ccys(rec), report.format_line(rec)
    line = report.format_line(u)
    assert u.corr == rec.corr and u.start == rec.triangle[0], line
    assert u.status == report.UNWOUND and u.legs and all(lg.filled_sz > 0 for lg in u.legs), line
    assert {lg.from_ccy for lg in u.legs} | {c for _, c, _ in u.dust} >= held_ccys(rec), line
    assert u.legs[-1].to_ccy == rec.triangle[0] and u.received > 0
    assert u.cost_bps is not None and f"cost_bps={report.fmt_bps(u.cost_bps)}" in line
    assert line.split(" | ")[0].endswith("UNWOUND") and f"corr={rec.corr:x}" in line
    assert er.engine.summary.unwound == 1 and rec.triangle[0] in er.engine.summary.unwind_cost
    assert res["executed"] >= leg + len(u.legs)
    # what the failure left was sold, all of it but the increment rounding (dust)
    for a, c in rec.held():
        sold = sum(lg.spent for lg in u.legs if lg.from_ccy == c)
        dust = sum(d for d, cc, _ in u.dust if cc == c)
        assert sold + dust == pytest.approx(a, rel=1e-9), (a, c, sold, dust, line)


def test_unwind_when_leg1_fills_half_then_partial_line_and_the_rest_unwound():
    with engine(unwind="market") as er:
        wait_synced(er)
        er.sim_control(partial_fill={"count": 1, "fraction": "0.5", "client_oid_suffix": "l1"})
        rec = plant_and_wait(er, 0)
        if rec.status == report.STATUS_FAILED:     # a coarse increment can leave no lot at all
            quiesce(er)
            pytest.skip(f"leg 1 filled nothing: {rec.error}")
        u = wait_unwinds(er, 1)[0]
        res = finish(er)
    assert rec.status == report.STATUS_PARTIAL and "L1 filled" in rec.error, report.format_line(rec)
    assert u.corr == rec.corr and u.reason == report.STATUS_PARTIAL, report.format_line(u)
    assert u.status == report.UNWOUND, report.format_line(u)
    assert res["executed"] >= 3 + len(u.legs)


def test_unwind_api_when_amount_below_minimum_then_dust_and_no_order():
    """The worker's API (what the kill switch calls): an amount below every route's minimum
    is reported as dust and nothing is sent; the balances do not move."""
    with engine(unwind="market") as er:
        wait_synced(er)
        er.engine.unwinder.request([(0.00001, "KCS")], "USDT", 0xabc, "kill switch")
        assert er.engine.unwinder.drain(30)
        u = wait_unwinds(er, 1)[0]
        res = finish(er)
    line = report.format_line(u)
    assert u.status == report.UNWOUND and not u.legs and u.dust and u.dust[0][1] == "KCS", line
    assert "dust=0.00001 KCS(" in line and "below" in line
    assert res["executed"] == 0 and not any(o["clientOid"].startswith("tu") for o in res["orders_list"])


def test_unwind_api_when_currency_in_keep_then_never_sold():
    with engine(unwind="market", keep="KCS") as er:
        wait_synced(er)
        er.engine.unwinder.request([(5, "KCS"), (0.001, "BTC")], "USDT", 0xabd, "kill switch")
        assert er.engine.unwinder.drain(30)
        u = wait_unwinds(er, 1)[0]
        res = finish(er)
    line = report.format_line(u)
    assert u.kept == [(5.0, "KCS")] and "kept=5 KCS" in line, line
    assert all(lg.from_ccy != "KCS" for lg in u.legs)
    assert u.status == report.UNWOUND and [lg.from_ccy for lg in u.legs] == ["BTC"], line
    assert res["executed"] == 1


def test_unwind_when_market_fell_past_max_loss_then_nothing_sold_and_held_reported():
    """The leftover's reference prices (the signal's books) lie 5 % above today's: with
    unwind_max_loss_bps = 20 every route's IOC limit sits above the best bid, nothing fills,
    the line says UNWIND_FAILED with the amount still held, and the summary counts it."""
    with engine(unwind="market", unwind_max_loss_bps=20) as er:
        wait_synced(er)
        uni = er.sh.universe
        sym = next(i for i, r in enumerate(uni.rules) if r.base == "KCS" and r.quote == "USDT")
        bid, ask = float(er.sh.book_px[sym, 0, 0]), float(er.sh.book_px[sym, 1, 0])
        er.engine.unwinder.request([(2.0, "KCS")], "USDT", 0xabe, "test",
                                   ref_books={uni.symbols[sym]: (ask * 1.05, bid * 1.05)})
        assert er.engine.unwinder.drain(30)
        u = wait_unwinds(er, 1)[0]
        res = finish(er)
    line = report.format_line(u)
    assert u.status == report.UNWIND_FAILED and u.left and u.left[0][1] == "KCS", line
    assert "unwind_max_loss_bps" in line and "held=2 KCS" in line, line
    assert u.legs and u.legs[0].order_type == "limit" and u.legs[0].filled_sz == 0, line
    assert Decimal(u.legs[0].limit_price) > Decimal(str(bid)), line
    assert er.engine.summary.unwind_failed == 1
    assert res["executed"] == 0


# -- leg 0 as a limit IOC -----------------------------------------------------------------

def test_ioc_leg0_when_filled_then_filled_line_with_limit_order():
    with engine(leg0_order="ioc") as er:
        wait_synced(er)
        rec = plant_and_wait(er, 0)
        res = finish(er)
        orders = {o["clientOid"]: o for o in res["orders_list"]}
    assert rec.status in (report.STATUS_FILLED, report.STATUS_PARTIAL), report.format_line(rec)
    lg = rec.legs[0]
    assert lg.order_type == "limit" and lg.limit_price and lg.order_field == "size"
    o = orders[lg.client_oid]
    assert o["type"] == "limit" and o["timeInForce"] == "IOC" and o["price"] == lg.limit_price
    assert all(orders[x.client_oid]["type"] == "market" for x in rec.legs[1:])
    assert "IOC@" in report.format_line(rec)


def test_ioc_leg0_when_nothing_at_its_price_then_missed_at_zero_cost():
    with engine(leg0_order="ioc", unwind="market") as er:
        wait_synced(er)
        er.sim_control(partial_fill={"count": 1, "fraction": "0", "client_oid_suffix": "l0"})
        rec = plant_and_wait(er, 0)
        time.sleep(0.5)
        res = finish(er)
    line = report.format_line(rec)
    assert rec.status == report.STATUS_MISSED, line
    assert len(rec.legs) == 1 and rec.legs[0].filled_sz == 0 and not rec.held() and "open=" not in line
    assert "reason=L0 IOC" in line and rec.profit is None
    # the mispricing is still there afterwards, so later signals may trade it: only this one missed
    assert er.engine.summary.missed == 1 and not [u for u in unwinds(er) if u.corr == rec.corr]
    o = next(o for o in res["orders_list"] if o["clientOid"] == rec.legs[0].client_oid)
    assert Decimal(o["dealSize"]) == 0 and o["cancelExist"] and o["timeInForce"] == "IOC"


def test_ioc_leg0_when_half_fills_then_cascade_from_what_filled():
    with engine(leg0_order="ioc") as er:
        wait_synced(er)
        er.sim_control(partial_fill={"count": 1, "fraction": "0.5", "client_oid_suffix": "l0"})
        rec = plant_and_wait(er, 0)
        res = finish(er)
    if rec.status == report.STATUS_MISSED:
        pytest.skip("half of leg 0 was less than one lot")
    assert rec.status == report.STATUS_PARTIAL and "L0 filled" in rec.error, report.format_line(rec)
    assert rec.legs[0].unfilled > 0 and len(rec.legs) == 3
    assert rec.legs[1].filled_sz > 0 and float(rec.legs[1].order_text) <= rec.legs[0].received * (1 + 1e-9) \
        or rec.legs[1].order_field == "funds"
    assert res["executed"] >= 3


# -- killed with a leg in flight, then restarted ---------------------------------------------

def _wait_text(proc, out: Path, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace") if out.exists() else ""
        if needle in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not seen; output tail {out.read_text(errors='replace')[-2000:]}")


def test_restart_after_sigkill_with_leg1_in_flight_then_dead_triangle_named_and_unwound():
    sim = SimProcess(seed=11, symbols=40, update_rate=200, mispricing_rate=0, mispricing_bps=40,
                     take_delay_ms=500, balances=BALANCES)
    log_dir = tempfile.TemporaryDirectory()
    try:
        eng, creds = external_sim_engine(sim)
        # session 1: the executor fires legs (fire_from = executor) and waits on leg 1's answer,
        # which the simulator withholds after executing it: leg 1 is in flight when it dies
        e1 = dict(eng, mode="live", slots=1, fill_timeout_ms=20000, fire_from="executor",
                  status_interval_s=1, log_dir=log_dir.name, unwind="off")
        ini = Path(log_dir.name) / "s1.ini"
        ini.write_text(ini_text(e1, {}, creds))
        ini.chmod(0o600)      # it holds the credentials (run.py refuses a readable one)
        out = Path(log_dir.name) / "s1.out"
        with open(out, "w") as out_f:
            proc = subprocess.Popen([sys.executable, "run.py", str(ini)], cwd=str(ROOT), stdout=out_f,
                                    stderr=subprocess.STDOUT)
        try:
            _wait_text(proc, out, "first book evaluated", 90)
            time.sleep(2.0)   # every book synced
            sim.control(rest_5xx_after_execute={"count": 1, "status": "hang", "hang_ms": 60000,
                                                "client_oid_suffix": "l1"})
            state = next(Path(log_dir.name, "state").glob("*.jsonl"))
            for _ in range(5):
                sim.control(plant={})
                t_end = time.monotonic() + 6
                while time.monotonic() < t_end and '"leg":1' not in state.read_text():
                    time.sleep(0.05)
                if '"leg":1' in state.read_text():
                    break
            assert '"leg":1' in state.read_text(), state.read_text()
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        intents = [json.loads(x) for x in state.read_text().splitlines() if '"intent"' in x]
        corr = intents[-1]["corr"]
        run1 = next(p for p in Path(log_dir.name).iterdir() if p.is_dir() and p.name != "state")
        recs1 = records_from_journal(run1 / "journal.jsonl")
        assert not any(getattr(r, "corr", None) == corr for r in recs1), "the killed session reported it"
        orders = {o["clientOid"]: o for o in sim.get("/sim/orders")}
        l1 = orders[f"ta{corr:x}s0l1"]
        assert Decimal(l1["dealSize"]) > 0            # leg 1 executed while the engine died
        stranded = intents[-1]["triangle"][2]
        # session 2: the same account; unwind on
        with EngineRun(sim={}, credentials=creds, **dict(eng, mode="live", slots=1, log_dir=log_dir.name,
                                                           unwind="market", unwind_max_loss_bps=0)) as er:
            wait_synced(er)
            su = er.wait_for(lambda: er.lw.startup, 10)
            rec = next(r for r in er.records if isinstance(r, report.TriangleReport)
                       and r.status == report.STATUS_RECOVERED)
            u = wait_unwinds(er, 1)[0]     # one per triangle: all it left, in one record
            quiesce(er)
            sim_orders = er.sim_get("/sim/orders")
            after = balances_total(er.sim_get("/sim/balances"))
            er.stop()
            recs2 = er.records
            text = "\n".join(er.log_lines)
            journal2 = (er.run_dir / "journal.jsonl").read_text()
    finally:
        sim.stop()
        log_dir.cleanup()
    line = report.format_line(rec)
    assert rec.corr == corr and f"corr={corr:x}" in line, line
    assert [lg.client_oid for lg in rec.legs][:2] == [f"ta{corr:x}s0l0", f"ta{corr:x}s0l1"], line
    assert abs(rec.legs[1].filled_sz - float(l1["dealSize"])) <= 1e-12 * float(l1["dealSize"])
    assert f"session {corr >> 24:x} ended with it in flight" in line
    assert stranded in held_ccys(rec), line
    assert len(su.dead) == 1 and any(c == stranded for _, c, _, _ in su.leftovers), su.line()
    assert "triangles left in flight by an earlier session: 1" in text and stranded in text
    assert '"status":"STARTUP"' in journal2 and '"status":"RECOVERED"' in journal2
    assert u.corr == corr and u.reason == "startup" and u.status == report.UNWOUND, report.format_line(u)
    assert any(c == stranded for _, c in u.requested) and u.legs[-1].to_ccy == rec.triangle[0], \
        report.format_line(u)
    res = reconcile(recs1 + recs2, sim_orders, INITIAL, after)
    # what the kill stranded went back to the start currency (up to dust)
    dust = sum(a for a, c, _ in u.dust if c == stranded)
    assert abs(res["net"].get(stranded, 0.0)) <= dust + 1e-9, res["net"]


# -- units: the state file and the start-up reconciliation ----------------------------------

class FakeClient:
    def __init__(self, orders: dict, active: dict):
        self.orders, self.active, self.cancelled = orders, active, []

    def active_order_symbols(self):
        return list(self.active)

    def active_orders(self, sym):
        return self.active[sym]

    def cancel_order_by_client_oid(self, coid, sym):
        self.cancelled.append(coid)
        self.orders[coid]["active"] = False
        return {"clientOid": coid}

    def get_order_by_client_oid(self, coid, sym):
        from kucoin import NotFound
        if coid not in self.orders:
            raise NotFound("400100", "order not exist.", 200, "")
        return self.orders[coid]

    def level1(self, sym):
        return {"bestBid": "2", "bestAsk": "2.01"}


class Cfg:
    ref_currency = "USDT"
    default_taker_fee = 0.001
    primary_quotes = ("USDT",)
    keep = ()
    mode = "live"
    order_lookup_ms = 100
    unwind = "market"


SYMS = [{"symbol": s, "baseCurrency": b, "quoteCurrency": q, "baseIncrement": "0.01", "quoteIncrement": "0.01",
         "priceIncrement": "0.01", "baseMinSize": "0.1", "baseMaxSize": "1000", "quoteMinSize": "0.1",
         "quoteMaxSize": "1000", "minFunds": "0.1"} for s, b, q in (("X-USDT", "X", "USDT"), ("Y-X", "Y", "X"),
                                                                   ("Y-USDT", "Y", "USDT"))]


def _intent(corr, leg, **kw):
    return dict({"t": "intent", "corr": corr, "slot": 0, "leg": leg, "coid": f"ta{corr:x}s0l{leg}",
                 "triangle": ["USDT", "X", "Y"], "symbols": ["X-USDT", "Y-X", "Y-USDT"], "sides": [0, 0, 1],
                 "field": "funds", "text": "10", "amount": 10.0, "books": [[2.01, 2], [1, 0.99], [2, 1.99]]}, **kw)


def test_state_when_killed_mid_write_then_dead_triangle_found_and_torn_line_counted(tmp_path):
    p = tmp_path / "a.jsonl"
    corr = (7 << 24) | 3
    lines = [{"t": "session", "run": 7}, _intent(corr, 0), _intent(corr - 1, 0),
             {"t": "report", "corr": corr - 1, "status": "FAILED", "start": "USDT", "held": [[4.5, "X"]], "ref": {}},
             {"t": "unwind", "corr": corr - 1, "start": "USDT", "changes": [[-4.0, "X"], [7.9, "USDT"]]}]
    p.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"t":"intent","co')
    prior = recovery.load(p)
    assert prior.runs == [7] and list(prior.dead) == [corr] and prior.bad_lines == 1
    assert prior.held == {corr - 1: {"start": "USDT", "amounts": {"X": 0.5}, "ref": {}}}


def test_reconcile_when_leg1_done_and_active_order_of_ours_then_recovered_and_cancelled():
    corr = (7 << 24) | 3
    orders = {f"ta{corr:x}s0l0": {"id": "a", "dealSize": "5", "dealFunds": "10", "active": False},
              f"ta{corr:x}s0l1": {"id": "b", "dealSize": "4.9", "dealFunds": "4.85", "active": False},
              "tu99r1n0": {"id": "c", "dealSize": "0", "dealFunds": "0", "active": True},
              "manual-1": {"id": "d", "dealSize": "0", "dealFunds": "0", "active": True}}
    client = FakeClient(orders, {"Y-USDT": [{"clientOid": "tu99r1n0"}, {"clientOid": "manual-1"}]})
    prior = recovery.Prior(runs=[7], dead={corr: {0: _intent(corr, 0), 1: _intent(corr, 1, text="4.99")}})
    su, recs, reqs, carry, unresolved = recovery.reconcile(
        client, Cfg, prior, SYMS, {}, {"USDT": Decimal("990"), "Y": Decimal("4.9"), "Z": Decimal("3")},
        lambda s: None, "acct")
    assert client.cancelled == ["tu99r1n0"] and su.cancelled == [("tu99r1n0", "Y-USDT", "cancelled")]
    rec = recs[0]
    assert rec.status == report.STATUS_RECOVERED and [lg.leg for lg in rec.legs] == [0, 1]
    assert "L2 ta" in rec.reason and "never placed" in rec.reason
    assert rec.held() == [(pytest.approx(4.9), "Y")] or ("Y" in dict((c, a) for a, c in rec.held()))
    assert reqs and reqs[0][0] == [(pytest.approx(4.9), "Y")] and reqs[0][1] == "USDT" and reqs[0][2] == corr
    assert any(c == "Z" and "left alone" in n for c, a, v, n in su.balances)
    assert not unresolved and "dead=1" in su.line()


def test_config_when_unwind_keys_invalid_then_one_clear_line_each():
    import config
    with pytest.raises(config.ConfigError) as e:
        config.parse_config("[engine]\nunwind = maybe\nleg0_order = limit\nkeep = KCS, B-T\n"
                            "unwind_max_loss_bps = -1\n")
    text = str(e.value)
    assert "unwind = 'maybe': expected one of off, market" in text
    assert "leg0_order = 'limit': expected one of market, ioc" in text
    assert "'B-T' is not a currency code" in text and "unwind_max_loss_bps = '-1': must be >= 0" in text
    cfg = config.parse_config("[engine]\n")
    assert (cfg.unwind, cfg.leg0_order, cfg.keep, cfg.unwind_max_loss_bps) == ("off", "market", (), 100.0)


def test_unwind_line_when_formatted_then_status_corr_cost_dust_and_fills():
    lg = report.LegReport(leg=0, side=1, symbol="KCS-USDT", from_ccy="KCS", to_ccy="USDT", order_field="size",
                          order_text="14.78", client_oid="tuabcr1n0", fee_ccy="USDT", source="rest")
    lg.set_fills(14.78, 147.8, 0.001)
    u = report.UnwindReport(status=report.UNWOUND, ts_ms=0, corr=0xabc, start="USDT", reason="FAILED",
                            requested=[(14.783, "KCS")], legs=[lg], dust=[(0.003, "KCS", "increment rounding")],
                            ref_value=148.0)
    line = report.format_line(u)
    assert line.startswith("1970-01-01T00:00:00.000Z UNWOUND | corr=abc | start=USDT | reason=FAILED")
    assert "received=147.6522 USDT" in line and "cost_bps=23.50" in line
    assert "dust=0.003 KCS(increment rounding)" in line and "U0:sell KCS-USDT KCS->USDT 14.78@10" in line
    d = json.loads(report.journal_line(u))
    assert d["status"] == "UNWOUND" and d["corr_hex"] == "abc" and d["held"] == [[-14.78, "KCS"]]
    s = report.SessionSummary()
    s.add(u)
    assert s.unwound == 1 and s.pnl == {"USDT": pytest.approx(147.6522)} and s.held == {"KCS": -14.78}
    assert "unwinds: unwound=1 unwind_failed=0" in s.render()
