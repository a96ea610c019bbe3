"""Tests of report.py: the report line per status, an exact golden line, the JSONL journal,
the session summary, and that records cannot carry secrets.

Run: python -m pytest -q tests/test_report.py
"""
import dataclasses
import json
import re

import pytest

import report
from cascade import LEG_BUY, LEG_SELL
from report import (STATUS_ABORTED, STATUS_FAILED, STATUS_FILLED, STATUS_PARTIAL, STATUS_UNKNOWN,
                    FollowUp, LatencyHistogram, LegReport, SessionSummary, TriangleReport, fmt_num,
                    fmt_ts_ms, format_line, journal_line, percentile)

HIST_REL = 1 / (2 * LatencyHistogram.SUB)      # a percentile's bound: half a bucket (0.78 %)

TS_MS = 1779818153719          # 2026-05-26T17:55:53.719Z
RECV = 1_000_000_000_000       # monotonic ns of the frame receipt


def leg(k, side, symbol, frm, to, sz, funds, fee_rate, fee_ccy, text, written_us, lat_ms):
    lg = LegReport(leg=k, side=side, symbol=symbol, from_ccy=frm, to_ccy=to,
                   order_field="funds" if side == LEG_BUY else "size", order_text=text,
                   client_oid=f"ta1fs0l{k}", fee_ccy=fee_ccy, n_matches=1,
                   signed_ns=RECV + int((written_us - 30) * 1e3),
                   written_ns=RECV + int(written_us * 1e3),
                   response_ns=RECV + int((written_us + 900) * 1e3),
                   first_fill_ns=RECV + int(written_us * 1e3 + lat_ms * 1e6) - 50_000,
                   last_fill_ns=RECV + int(written_us * 1e3 + lat_ms * 1e6))
    lg.set_fills(sz, funds, fee_rate)
    return lg


def flux_record(status=STATUS_FILLED, n_legs=3, **kw):
    """The seed's example triangle: USDT -> FLUX -> USDC -> USDT."""
    legs = [
        leg(0, LEG_BUY, "FLUX-USDT", "USDT", "FLUX", 64.53, 64.53 * 0.0774, 0.0, "USDT",
            "4.9946", 61.0, 82.9),
        leg(1, LEG_SELL, "FLUX-USDC", "FLUX", "USDC", 64.53, 64.53 * 0.07796, 0.001, "USDC",
            "64.53", 83100.0, 40.0),
        leg(2, LEG_SELL, "USDC-USDT", "USDC", "USDT", 5.02, 5.02 * 0.999, 0.001, "USDT",
            "5.02", 123300.0, 35.5),
    ][:n_legs]
    rec = TriangleReport(
        status=status, ts_ms=TS_MS, corr=0x1F, mode="live",
        triangle=("USDT", "FLUX", "USDC"), symbols=("FLUX-USDT", "FLUX-USDC", "USDC-USDT"),
        sides=(LEG_BUY, LEG_SELL, LEG_SELL), predicted_bps=34.45, start_volume=4.995,
        book_ts_ms=TS_MS - 207, books=((0.0774, 0.0772), (0.07796, 0.07783), (0.9991, 0.999)),
        expected_out=5.0122, recv_ns=RECV, parsed_ns=RECV + 1200, book_ns=RECV + 3400,
        evaluated_ns=RECV + 5600, pushed_ns=RECV + 7000, woke_ns=RECV + 30100, legs=legs, **kw)
    return rec


GOLDEN = (
    "2026-05-26T17:55:53.719Z FILLED | corr=1f | triangle=['USDT','FLUX','USDC'] | "
    "predicted_bps=34.45 | effective_bps=-149.94 | book_ts=2026-05-26T17:55:53.512Z | "
    "profit=-0.0749 | open=0.0057280412 USDC | net=n/a | timings=[parse=1.2 book=3.4 eval=5.6 push=7.0 wake=30.1 | "
    "L0 sign=31.0 sent=61.0 resp=961 fill1=82911 fillN=82961 | "
    "L1 sign=83070 sent=83100 resp=84000 fill1=123050 fillN=123100 | "
    "L2 sign=123270 sent=123300 resp=124200 fill1=158750 fillN=158800] | "
    "fills=[L0:buy FLUX-USDT USDT->FLUX 64.53@0.0774(fee=0 USDT lat=82.9ms), "
    "L1:sell FLUX-USDC FLUX->USDC 64.53@0.07796(fee=0.0050307588 USDC lat=40.0ms), "
    "L2:sell USDC-USDT USDC->USDT 5.02@0.999(fee=0.00501498 USDT lat=35.5ms)] | "
    "books=[0.0774/0.0772 | 0.07796/0.07783 | 0.9991/0.999]")

LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (FILLED|PARTIAL|FAILED|ABORTED|UNKNOWN) \| "
    r"corr=[0-9a-f]+ \| triangle=\['\w+','\w+','\w+'\] \| predicted_bps=-?\d+\.\d\d \| "
    r"effective_bps=(-?\d+\.\d\d|n/a) \| book_ts=(\S+Z|-) \| profit=(-?[\d.]+|n/a) \| "
    r"(?:(?P<key>error|reason)=[^|]+ \| )?(?:unknown=\[[^\]]*\] \| )?"
    r"(?:open=[^|]+ \| net=(-?[\d.]+|n/a) \| )?timings=\[[^\]]*\] \| "
    r"fills=\[(L\d:(buy|sell) [\w-]+ \w+->\w+ [^,\]]+(, )?)*\] \| "
    r"books=\[[\d.]+/[\d.]+( \| [\d.]+/[\d.]+){2}\]$")


def test_format_line_when_fixed_filled_record_then_exact_golden_string():
    rec = flux_record(profit=-0.0749, effective_bps=-149.94)
    assert format_line(rec) == GOLDEN


@pytest.mark.parametrize("status,n_legs,extra,key", [
    (STATUS_FILLED, 3, {}, None),
    (STATUS_FAILED, 1, {"error": "order_rejected 400100 Order size increment invalid."}, "error"),
    (STATUS_FAILED, 0, {"error": "timeout | leg 0\nno fill"}, "error"),
    (STATUS_ABORTED, 2, {"reason": "cancelled between legs"}, "reason"),
])
def test_format_line_when_each_status_then_matches_regex(status, n_legs, extra, key):
    rec = flux_record(status=status, n_legs=n_legs, **extra)
    rec.settle()
    line = format_line(rec)
    m = LINE_RE.match(line)
    assert m, line
    assert m.group(1) == status
    assert m.group("key") == key
    assert "\n" not in line
    assert line.count("L0:") == (1 if n_legs else 0) and f"L{n_legs}:" not in line


def test_settle_when_partial_with_three_legs_then_real_change_and_open_position():
    rec = flux_record(status=STATUS_PARTIAL, n_legs=3, error="L2 filled 2 of 5.02 USDC")
    rec.legs[2].set_fills(2.0, 2.0 * 0.999, 0.001)
    rec.settle()
    assert rec.profit == pytest.approx(2.0 * 0.999 * 0.999 - 64.53 * 0.0774, rel=1e-12)
    assert rec.held() == [(pytest.approx(64.53 * 0.07796 * 0.999 - 2.0), "USDC")]


def test_format_line_when_failed_after_leg0_then_open_position_and_start_currency_change():
    rec = flux_record(status=STATUS_FAILED, n_legs=1, error="leg 1 rejected")
    rec.settle()
    line = format_line(rec)
    assert "| error=leg 1 rejected | open=64.53 FLUX | net=n/a |" in line
    assert f"profit={fmt_num(-64.53 * 0.0774)}" in line and "effective_bps=n/a" in line


class FakeValuer:
    """1 FLUX = 0.077 USDT, 1 USDC = 0.999 USDT; nothing else has a price."""
    rates = {("FLUX", "USDT"): 0.077, ("USDC", "USDT"): 0.999}

    def value(self, amount, ccy, target):
        r = self.rates.get((ccy, target))
        return None if r is None else amount * r


def test_value_open_when_leftovers_priced_then_line_gives_value_and_net_result():
    rec = flux_record(status=STATUS_FAILED, n_legs=1, error="leg 1 rejected")
    rec.settle()
    rec.value_open(FakeValuer())
    assert rec.open_values == [(64.53, "FLUX", pytest.approx(64.53 * 0.077))]
    assert rec.net_result == pytest.approx(64.53 * 0.077 - 64.53 * 0.0774)
    line = format_line(rec)
    assert f"open=64.53 FLUX(~{fmt_num(64.53 * 0.077)} USDT) | net={fmt_num(rec.net_result)} |" in line
    assert json.loads(journal_line(rec))["net"] == pytest.approx(rec.net_result)


def test_value_open_when_a_leftover_has_no_price_then_net_is_na():
    rec = flux_record(status=STATUS_FAILED, n_legs=1, error="x")
    rec.settle()
    rec.value_open(None)
    assert rec.open_values == [(64.53, "FLUX", None)] and rec.net_result is None
    assert "open=64.53 FLUX | net=n/a" in format_line(rec)


def test_held_when_a_leg_sold_more_than_the_triangle_brought_then_negative_holding():
    rec = flux_record(status=STATUS_FILLED)
    rec.legs[1].set_fills(70.0, 70.0 * 0.07796, 0.001)   # await_balance sold older FLUX too
    rec.settle()
    assert (pytest.approx(64.53 - 70.0), "FLUX") in rec.held()


def test_format_line_when_unknown_leg_then_names_clientoid_and_order():
    rec = flux_record(status=STATUS_UNKNOWN, n_legs=2, error="L1 ta1fs0l1 outcome unknown after 15.0s")
    rec.legs[1].set_fills(0.0, 0.0, 0.001)
    rec.legs[1].unknown = True
    rec.settle()
    line = format_line(rec)
    assert LINE_RE.match(line), line
    assert "| unknown=[L1 ta1fs0l1 sell FLUX-USDC size=64.53] | open=64.53 FLUX |" in line
    s = SessionSummary()
    s.add(rec)
    assert s.unknown == 1 and s.unresolved == {"ta1fs0l1": 0x1F}
    assert "UNKNOWN legs not resolved (1): ta1fs0l1" in s.render()


def test_followup_when_unknown_leg_found_done_then_changes_join_holdings_and_line():
    rec = flux_record(status=STATUS_UNKNOWN, n_legs=2, error="L1 unknown")
    rec.legs[1].set_fills(0.0, 0.0, 0.001)
    rec.legs[1].unknown = True
    rec.settle()
    s = SessionSummary()
    s.add(rec)
    assert s.held == {"FLUX": pytest.approx(64.53)}
    lg = LegReport(leg=1, side=LEG_SELL, symbol="FLUX-USDC", from_ccy="FLUX", to_ccy="USDC",
                   order_field="size", order_text="64.53", client_oid="ta1fs0l1", fee_ccy="USDC")
    lg.set_fills(64.53, 64.53 * 0.07796, 0.001)
    fu = FollowUp(ts_ms=TS_MS, corr=0x1F, triangle=rec.triangle, leg=lg, found=True,
                  changes=[(-64.53, "FLUX"), (lg.received, "USDC")])
    s.add(fu)
    assert s.followups == 1 and not s.unresolved
    assert "FLUX" not in s.held and s.held["USDC"] == pytest.approx(lg.received)
    line = format_line(fu)
    assert line.startswith("2026-05-26T17:55:53.719Z FOLLOWUP | corr=1f | ")
    assert "leg=L1 ta1fs0l1 sell FLUX-USDC size=64.53 | exchange: done L1:sell FLUX-USDC" in line
    assert "changes=-64.53 FLUX,+" in line
    d = json.loads(journal_line(fu))
    assert d["status"] == "FOLLOWUP" and d["found"] is True and d["leg"]["filled_sz"] == 64.53


def test_format_line_when_leg_placed_but_unfilled_then_order_text_shown():
    rec = flux_record(status=STATUS_FAILED, n_legs=2, error="fill timeout")
    rec.legs[1].set_fills(0.0, 0.0, 0.001)
    rec.legs[1].last_fill_ns = rec.legs[1].first_fill_ns = 0
    line = format_line(rec)
    assert "L1:sell FLUX-USDC FLUX->USDC unfilled(size=64.53)" in line
    assert "open=64.53 FLUX" in line


def test_settle_when_three_legs_filled_then_profit_is_leg2_received_minus_leg0_spent():
    rec = flux_record()
    rec.settle()
    spent0 = 64.53 * 0.0774                     # fee 0 on leg 0
    received2 = 5.02 * 0.999 * (1 - 0.001)
    assert rec.profit == pytest.approx(received2 - spent0, rel=1e-12)
    assert rec.effective_bps == pytest.approx((received2 - spent0) / spent0 * 1e4, rel=1e-12)
    assert rec.profit == pytest.approx(5.00996502 - 4.994622, abs=1e-12)  # 0.01534302


def test_fmt_when_tiny_or_noisy_numbers_then_no_exponent_and_no_float_artefacts():
    assert fmt_num(1e-08) == "0.00000001"
    assert fmt_num(0.07740000000000001) == "0.0774"
    assert fmt_num(64.53) == "64.53"
    assert fmt_num(1.5e13) == "15000000000000"
    assert fmt_num(-0.0) == "0"
    assert fmt_num(None) == "n/a"
    assert fmt_ts_ms(TS_MS) == "2026-05-26T17:55:53.719Z"
    assert fmt_ts_ms(5) == "1970-01-01T00:00:00.005Z"


def test_journal_line_when_loaded_then_every_field_round_trips_with_types():
    rec = flux_record(status=STATUS_FAILED, n_legs=2, error="x")
    rec.expected_out = float("nan")
    line = journal_line(rec)
    assert "\n" not in line
    d = json.loads(line)
    names = {f.name for f in dataclasses.fields(TriangleReport)}
    assert names <= set(d)
    assert d["status"] == "FAILED" and d["corr"] == 0x1F and d["corr_hex"] == "1f"
    assert d["expected_out"] is None                      # NaN -> null
    assert d["triangle"] == ["USDT", "FLUX", "USDC"]
    assert d["books"][1] == [0.07796, 0.07783]
    assert isinstance(d["predicted_bps"], float) and isinstance(d["recv_ns"], int)
    l0 = d["legs"][0]
    assert {f.name for f in dataclasses.fields(LegReport)} <= set(l0)
    assert l0["order_text"] == "4.9946" and isinstance(l0["order_text"], str)
    assert l0["filled_sz"] == 64.53 and l0["side_name"] == "buy"
    assert l0["lat_ms"] == pytest.approx(82.9)
    assert d["tick_to_fire_us"] == pytest.approx(61.0)
    assert d["signal_to_fire_us"] == pytest.approx(61.0 - 5.6)   # from the evaluation


def record_with_latency(status, tick_us, gap_us, profit=None, primary="USDT"):
    rec = flux_record(status=status, n_legs=2 if status != STATUS_FILLED else 3)
    rec.triangle = (primary, "FLUX", "USDC")
    rec.legs[0].written_ns = RECV + int(tick_us * 1000)
    rec.legs[1].written_ns = rec.legs[0].last_fill_ns + int(gap_us * 1000)
    if len(rec.legs) == 3:
        rec.legs[2].written_ns = rec.legs[1].last_fill_ns + int(gap_us * 1000)
    rec.profit = profit
    return rec


def test_summary_when_handful_of_records_then_counts_pnl_and_percentiles():
    s = SessionSummary(mode="paper")
    s.add(record_with_latency(STATUS_FILLED, 100, 10, profit=0.5))
    s.add(record_with_latency(STATUS_FILLED, 200, 20, profit=-0.25))
    s.add(record_with_latency(STATUS_FILLED, 300, 30, profit=1.0, primary="USDC"))
    f = record_with_latency(STATUS_FAILED, 400, 40)
    f.error = "fill timeout"
    s.add(f)
    a = flux_record(status=STATUS_ABORTED, n_legs=0, reason="cancelled")
    s.add(a)
    d = s.as_dict()
    assert (d["tried"], d["filled"], d["failed"], d["aborted"]) == (5, 3, 1, 1)
    assert d["pnl"] == {"USDT": 0.25, "USDC": 1.0}
    assert d["errors"] == {"fill timeout": 1, "cancelled": 1}
    assert d["held"]["USDC"] > 0                  # the FAILED one stopped after leg 1
    t = d["tick_to_fire_us"]                       # 100, 200, 300, 400 (nearest rank)
    # the top rank is the exact max; others within half a histogram bucket
    assert (t["n"], t["p90"], t["p99"], t["p999"], t["max"]) == (4, 400, 400, 400, 400)
    assert t["p50"] == pytest.approx(200, rel=HIST_REL)
    g = d["leg_gap_us"]                            # 10,10,20,20,30,30,40
    assert g["n"] == 7 and g["p50"] == pytest.approx(20, rel=HIST_REL) and g["max"] == 40
    st = d["signal_to_fire_us"]
    assert st["p50"] == pytest.approx(200 - 5.6, rel=HIST_REL)
    text = s.render()
    assert "tried=5 filled=3 partial=0 failed=1 aborted=1 unknown=0" in text
    assert "USDC=1 USDT=0.25" in text
    m = re.search(r"tick_to_fire_us: n=4 p50=(\d+\.\d) p90=400\.0 p99=400\.0 max=400\.0$", text, re.M)
    assert m and float(m[1]) == pytest.approx(200, rel=HIST_REL)


def test_percentile_when_ten_values_then_nearest_rank():
    v = list(range(1, 11))
    assert (percentile(v, 50), percentile(v, 90), percentile(v, 99), percentile(v, 100)) == (5, 9, 10, 10)


def test_summary_when_empty_then_renders_zero_counts():
    text = SessionSummary().render()
    assert "tried=0" in text and "tick_to_fire_us: n=0" in text


def test_record_when_given_api_key_then_rejected_and_never_rendered():
    key = "66a1b2c3d4e5f60718293a4b"
    with pytest.raises(TypeError):
        flux_record(api_key=key)
    rec = flux_record()
    with pytest.raises(AttributeError):           # slots: no ad-hoc attributes
        rec.api_key = key
    with pytest.raises(AttributeError):
        rec.legs[0].api_secret = key
    names = {f.name for f in dataclasses.fields(TriangleReport)} | \
        {f.name for f in dataclasses.fields(LegReport)}
    assert not any(w in n for n in names for w in ("key", "secret", "passphrase", "token"))
    assert key not in format_line(rec) and key not in journal_line(rec)


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal", "with_negatives"])
def test_histogram_when_random_latencies_then_percentiles_within_a_bucket_of_exact(dist):
    """Against exact nearest-rank percentiles of the sorted values (the old summary)."""
    import random
    rng = random.Random(hash(dist) & 0xFFFF)
    n = 20000
    if dist == "lognormal":
        vals = [rng.lognormvariate(4.5, 1.2) for _ in range(n)]          # ~90 us, long tail
    elif dist == "uniform":
        vals = [rng.uniform(0.01, 5e6) for _ in range(n)]
    elif dist == "bimodal":
        vals = [rng.gauss(40, 3) if rng.random() < 0.9 else rng.gauss(3000, 400) for _ in range(n)]
    else:
        vals = [rng.gauss(30, 40) for _ in range(n)] + [0.0] * 50
    h = LatencyHistogram()
    for v in vals:
        h.add(v)
    exact = sorted(vals)
    ps = (0.1, 1, 10, 50, 90, 99, 99.9, 100)
    for p, got in zip(ps, h.percentiles(ps)):
        want = percentile(exact, p)
        assert got == pytest.approx(want, rel=HIST_REL, abs=2 ** -10), (p, got, want)
    assert len(h) == len(vals) and h.max == exact[-1] and h.min == exact[0]
    assert h.percentiles([100])[0] == exact[-1]


def test_histogram_when_extreme_values_then_clamped_into_end_buckets_min_max_exact():
    h = LatencyHistogram()
    for v in (1e-7, 3e-4, 5.0, 7e13, float("nan"), float("inf")):
        h.add(v)
    assert len(h) == 4 and h.min == 1e-7 and h.max == 7e13
    p = h.percentiles((25, 50, 75, 100))
    assert p[0] == 1e-7 and p[3] == 7e13
    assert p[2] == pytest.approx(5.0, rel=HIST_REL)
    assert len(h.counts) * h.counts.itemsize == (2 * LatencyHistogram.NB + 1) * 8 < 64 * 1024   # fixed size


def test_summary_when_many_records_then_memory_fixed_and_errors_bounded():
    s = SessionSummary()
    size0 = len(s.tick_to_fire_us.counts)
    for k in range(3000):
        f = record_with_latency(STATUS_FAILED, 100 + k % 50, 10)
        f.error = f"L1 not placed: {k} below minimum"          # texts that differ each time
        s.add(f)
    assert len(s.tick_to_fire_us.counts) == size0 and len(s.tick_to_fire_us) == 3000
    assert len(s.errors) == report.ERRORS_MAX + 1
    assert s.errors["(other errors)"] == 3000 - report.ERRORS_MAX
    assert sum(s.errors.values()) == 3000
