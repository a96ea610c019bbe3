"""Tests of cascade.py: exact increments, float traps, limits, fee hold, leg sizing, PnL.

Real increments come from data/symbols-2024-09.json (KuCoin v2 symbols, Sept 2024).
Run: python -m pytest -q tests/test_cascade.py -s
(-s shows the size_leg cost printed by the benchmark-style test; it asserts nothing on time).
"""
import json
import math
import random
import time
from decimal import Decimal
from pathlib import Path

import pytest

from cascade import (LEG_BUY, LEG_SELL, REL_TOL, Increment, SymbolRules, balance_override,
                     check_leg_limits, effective_taker_fee, fee_hold_reduction,
                     floor_to_increment, leg_fee, leg_output, leg_spent, quote_spent,
                     size_leg, sum_matches, triangle_pnl, units_to_str)

SYMBOLS_PATH = Path(__file__).resolve().parent.parent / "data" / "symbols-2024-09.json"


@pytest.fixture(scope="module")
def symbols():
    with open(SYMBOLS_PATH) as f:
        return {d["symbol"]: d for d in json.load(f)}


def rules(symbols, name, fee=0.001):
    return SymbolRules.from_kucoin(symbols[name], fee)


def floor_str(x, inc_text):
    inc = Increment.parse(inc_text)
    return inc.to_str(floor_to_increment(x, inc))


def assert_exact_multiple(s, inc_text):
    assert "e" not in s.lower() and s.strip() == s
    assert Decimal(s) % Decimal(inc_text) == 0, (s, inc_text)


# -- Increment parsing ---------------------------------------------------------------------

@pytest.mark.parametrize("text,dp,inc_units", [
    ("0.00000001", 8, 1), ("0.0001", 4, 1), ("1", 0, 1), ("10", 0, 10),
    ("0.5", 1, 5), ("0.25", 2, 25), ("0.0100", 2, 1)])
def test_parse_when_increment_string_then_dp_and_units(text, dp, inc_units):
    inc = Increment.parse(text)
    assert (inc.dp, inc.inc_units) == (dp, inc_units)
    assert Decimal(inc.to_str(inc.inc_units)) == Decimal(text)
    assert inc.value == float(text)


@pytest.mark.parametrize("text", ["0", "-0.01", "NaN"])
def test_parse_when_not_positive_then_value_error(text):
    with pytest.raises(ValueError):
        Increment.parse(text)


# -- floor and strings: float traps --------------------------------------------------------

def test_floor_when_0_1_plus_0_2_then_exactly_0_3():
    assert 0.1 + 0.2 == 0.30000000000000004
    assert floor_str(0.1 + 0.2, "0.1") == "0.3"
    assert floor_str(0.1 + 0.2, "0.0001") == "0.3"


def test_floor_when_0_29_times_100_then_29_not_28_99999():
    assert 0.29 * 100 == 28.999999999999996
    assert floor_str(0.29 * 100, "1") == "29"
    assert floor_str(0.29 * 100, "0.00001") == "29"


def test_floor_when_0_6930000000000001_then_0_693():
    assert floor_str(0.6930000000000001, "0.001") == "0.693"
    assert floor_str(0.6930000000000001, "0.0001") == "0.693"
    assert floor_str(0.693, "0.001") == "0.693"


def test_floor_when_1e8_increment_and_tiny_amounts_then_plain_decimal():
    assert floor_str(1e-8, "0.00000001") == "0.00000001"
    assert floor_str(3 * 1e-8, "0.00000001") == "0.00000003"
    assert floor_str(0.00123456789, "0.00000001") == "0.00123456"


def test_floor_when_just_below_multiple_beyond_tolerance_then_floored():
    # Real balances one 1e-8 unit below a multiple must not be rounded up (would be
    # rejected as Balance insufficient), even for large amounts.
    assert floor_str(28.99999999, "0.0001") == "28.9999"
    assert floor_str(289999.99999999, "0.0001") == "289999.9999"
    assert floor_str(0.99999999, "1") == "0"


def test_floor_when_within_tolerance_of_multiple_then_that_multiple():
    x = 29.0 * (1.0 - REL_TOL / 10)
    assert x < 29.0
    assert floor_str(x, "0.0001") == "29"
    y = 29.0 * (1.0 - REL_TOL * 10)          # beyond the tolerance: floored
    assert floor_str(y, "0.0001") == "28.9999"


@pytest.mark.parametrize("x,inc,expect", [
    (1.7, "0.5", "1.5"), (1.5, "0.5", "1.5"), (0.74999999999, "0.25", "0.5"),
    (0.75, "0.25", "0.75"), (129.0, "10", "120"), (130.0, "10", "130"),
    (0.9, "0.3", "0.9"), (0.1 + 0.2, "0.3", "0.3"), (12.0, "1", "12")])
def test_floor_when_non_power_of_ten_increment_then_exact_multiple(x, inc, expect):
    s = floor_str(x, inc)
    assert s == expect
    assert_exact_multiple(s, inc)


@pytest.mark.parametrize("x", [0.0, -1.0, math.nan, 1e-12])
def test_floor_when_zero_negative_nan_or_below_one_increment_then_zero(x):
    assert floor_to_increment(x, Increment.parse("0.0001")) == 0


@pytest.mark.parametrize("units,dp,expect", [
    (693, 3, "0.693"), (1, 8, "0.00000001"), (12, 0, "12"), (1200, 2, "12"),
    (1205, 2, "12.05"), (0, 4, "0"), (120, 0, "120"), (10**18, 8, "10000000000")])
def test_units_to_str_when_units_then_exact_decimal_without_exponent(units, dp, expect):
    assert units_to_str(units, dp) == expect


def test_floor_when_random_amounts_on_every_real_increment_then_exact_multiples_matching_decimal(symbols):
    # Reference: the exact floor of the float's true binary value (Decimal(float) is exact).
    # Ours equals it, or is one increment above only when within the documented tolerance.
    incs = sorted({d[k] for d in symbols.values() for k in ("baseIncrement", "quoteIncrement")},
                  key=Decimal) + ["0.5", "0.25", "10"]
    rng = random.Random(7)
    for text in incs:
        inc = Increment.parse(text)
        dinc = Decimal(text)
        for _ in range(300):
            x = 10 ** rng.uniform(-6, 6)
            if rng.random() < 0.3:   # a multiple computed the float way, a trap magnet
                x = round(x / float(dinc)) * float(dinc)
            units = floor_to_increment(x, inc)
            s = inc.to_str(units)
            assert_exact_multiple(s, text)
            assert float(s) == inc.to_float(units)
            ref = (Decimal(x) / dinc).to_integral_value(rounding="ROUND_FLOOR") * dinc
            got = Decimal(s)
            assert got == ref or (got == ref + dinc and got - Decimal(x) <= Decimal(REL_TOL) * got), \
                (x, text, s, ref)


# -- fee hold and buy sizing ---------------------------------------------------------------

def test_fee_hold_when_buy_by_funds_then_funds_plus_fee_fits_available():
    funds = fee_hold_reduction(100.0, 0.001)
    assert funds == pytest.approx(99.9000999000999, rel=1e-15)
    assert funds * 1.001 <= 100.0 + 1e-12


def test_size_leg_when_buy_with_12_012_available_at_fee_0_001_then_funds_12(symbols):
    # The real capture (docs/kucoin.md 6.6): funds 12 holds 12 * 1.001 = 12.012 USDT.
    r = rules(symbols, "BTC-USDT")
    assert size_leg(r, LEG_BUY, 12.012) == ("funds", "12", 12.0)


def test_size_leg_when_buy_then_funds_floored_to_quote_increment_and_hold_fits(symbols):
    r = rules(symbols, "BTC-USDT")
    field, text, value = size_leg(r, LEG_BUY, 100.0)
    assert (field, text) == ("funds", "99.900099")
    assert_exact_multiple(text, "0.000001")
    assert Decimal(text) * Decimal("1.001") <= Decimal(100)
    assert value == float(text)


def test_quote_spent_when_real_capture_match_then_notional_plus_fee():
    # funds 12, match 0.1481 @ 80.99, remainFunds 0.005381 => notional 11.994619.
    total_sz, total_funds = sum_matches([0.1481], [80.99])
    assert total_funds == pytest.approx(11.994619, abs=1e-12)
    assert 12 - total_funds == pytest.approx(0.005381, abs=1e-12)
    assert quote_spent(total_funds, 0.001) == pytest.approx(11.994619 * 1.001, rel=1e-15)
    assert leg_output(LEG_BUY, total_sz, total_funds, 0.001) == 0.1481


# -- limits --------------------------------------------------------------------------------

def test_size_leg_when_buy_below_quote_min_then_reason_names_quote_min(symbols):
    r = rules(symbols, "BTC-USDT")                       # quoteMinSize 0.1
    reason = size_leg(r, LEG_BUY, 0.05)
    assert isinstance(reason, str) and "quoteMinSize" in reason and "BTC-USDT" in reason


def test_size_leg_when_buy_above_quote_min_but_below_min_funds_then_reason_min_funds(symbols):
    r = rules(symbols, "ETH-USDT")                       # quoteMinSize 0.01, minFunds 0.1
    reason = size_leg(r, LEG_BUY, 0.05)
    assert isinstance(reason, str) and "minFunds" in reason


def test_size_leg_when_sell_below_base_min_then_reason_base_min(symbols):
    r = rules(symbols, "BTC-USDT")                       # baseMinSize 0.00001
    reason = size_leg(r, LEG_SELL, 0.000009999, 60000.0)
    assert isinstance(reason, str) and "baseMinSize" in reason


def test_size_leg_when_sell_notional_below_min_funds_then_reason_min_funds(symbols):
    r = rules(symbols, "TEL-USDT")      # baseIncrement 1, baseMinSize 1000, minFunds 0.1
    assert r.base_inc.inc_units == 1 and r.base_inc.dp == 0
    reason = size_leg(r, LEG_SELL, 1500.7, 0.00005)      # 1500 * 0.00005 = 0.075
    assert isinstance(reason, str) and "minFunds" in reason
    assert size_leg(r, LEG_SELL, 1500.7, 0.001) == ("size", "1500", 1500.0)


def test_size_leg_when_sell_without_bid_and_min_funds_set_then_reason(symbols):
    reason = size_leg(rules(symbols, "BTC-USDT"), LEG_SELL, 0.01, 0.0)
    assert isinstance(reason, str) and "no bid" in reason


def test_size_leg_when_min_funds_null_then_no_notional_check(symbols):
    r = rules(symbols, "USDT-EUR")
    assert r.min_funds is None and r.min_funds_u == 0
    assert size_leg(r, LEG_SELL, 0.12345, 0.0) == ("size", "0.1234", 0.1234)
    assert size_leg(r, LEG_BUY, 0.1001) == ("funds", "0.1", 0.1)


def test_size_leg_when_sell_above_base_max_then_reason(symbols):
    reason = size_leg(rules(symbols, "BTC-USDT"), LEG_SELL, 2e10, 60000.0)
    assert isinstance(reason, str) and "baseMaxSize" in reason


@pytest.mark.parametrize("x", [math.nan, math.inf])
def test_size_leg_when_input_not_finite_then_reason(symbols, x):
    assert "invalid input" in size_leg(rules(symbols, "BTC-USDT"), LEG_BUY, x)


def test_check_limits_when_exactly_at_minimum_then_none(symbols):
    r = rules(symbols, "BTC-USDT")
    assert check_leg_limits(r, LEG_BUY, r.quote_inc.units_floor("0.1"), 0.0) is None
    assert check_leg_limits(r, LEG_SELL, r.base_inc.units_floor("0.00001"), 10000.0) is None


# -- balance override, fees, outputs -------------------------------------------------------

@pytest.mark.parametrize("computed,available,expect", [
    (64.53, 64.5, 64.5), (64.53, 100.0, 64.53), (64.53, None, 64.53),
    (64.53, math.nan, 64.53), (64.53, -1.0, 0.0), (64.53, 64.53, 64.53)])
def test_balance_override_when_feed_balance_then_never_more_than_received(computed, available, expect):
    assert balance_override(computed, available) == expect


def test_leg_output_when_sell_then_notional_less_fee():
    assert leg_output(LEG_SELL, 0.03996, 0.002013984, 0.001) == pytest.approx(0.002011970016, rel=1e-15)
    assert leg_spent(LEG_SELL, 0.03996, 0.002013984, 0.001) == 0.03996
    assert leg_fee(100.0, 0.001) == pytest.approx(0.1)


def test_sum_matches_when_several_matches_then_size_sum_and_notional():
    sz, funds = sum_matches([0.1, 0.2], [10.0, 11.0])
    assert floor_str(sz, "0.1") == "0.3"
    assert funds == pytest.approx(0.1 * 10 + 0.2 * 11, rel=1e-15)


def test_effective_taker_fee_when_coefficient_then_multiplied():
    assert effective_taker_fee({"takerFeeCoefficient": "0.5"}, 0.001) == 0.0005
    assert effective_taker_fee({"takerFeeCoefficient": "0"}, 0.001) == 0.0
    assert effective_taker_fee({}, 0.001) == 0.001


# -- a whole triangle ----------------------------------------------------------------------

def test_triangle_when_usdt_eth_btc_cascaded_then_pnl_matches_hand_computation(symbols):
    """USDT -> ETH -> BTC -> USDT: buy ETH-USDT @2500, sell ETH-BTC @0.0504, sell BTC-USDT
    @50000, fee 0.001 everywhere, start 100 USDT. By hand:
      L0 funds = floor(100/1.001, 1e-6) = 99.900099; fill floor(99.900099/2500, 1e-7) =
         0.03996 ETH, notional 99.9, spent 99.9 * 1.001 = 99.9999 USDT
      L1 size 0.03996 ETH, notional 0.002013984 BTC, received *0.999 = 0.002011970016
      L2 size floor(.., 1e-8) = 0.00201197 BTC, notional 100.5985, received 100.4979015
      profit = 100.4979015 - 99.9999 = 0.4980015 USDT; bps = 0.4980015/99.9999e-4 = 49.80
    """
    r0, r1, r2 = (rules(symbols, s) for s in ("ETH-USDT", "ETH-BTC", "BTC-USDT"))

    def fill(r, side, text, px):     # what KuCoin matches for one level at px
        if side == LEG_BUY:
            sz = r.base_inc.to_float(floor_to_increment(float(text) / px, r.base_inc))
        else:
            sz = float(text)
        return sum_matches([sz], [px])

    f0, t0, _ = size_leg(r0, LEG_BUY, 100.0)
    assert (f0, t0) == ("funds", "99.900099")
    sz0, funds0 = fill(r0, LEG_BUY, t0, 2500.0)
    assert sz0 == 0.03996 and funds0 == pytest.approx(99.9, rel=1e-15)
    out0 = leg_output(LEG_BUY, sz0, funds0, r0.taker_fee)

    f1, t1, _ = size_leg(r1, LEG_SELL, balance_override(out0, None), 0.0504)
    assert (f1, t1) == ("size", "0.03996")
    sz1, funds1 = fill(r1, LEG_SELL, t1, 0.0504)
    out1 = leg_output(LEG_SELL, sz1, funds1, r1.taker_fee)
    assert out1 == pytest.approx(0.002011970016, rel=1e-14)

    f2, t2, _ = size_leg(r2, LEG_SELL, out1, 50000.0)
    assert (f2, t2) == ("size", "0.00201197")
    sz2, funds2 = fill(r2, LEG_SELL, t2, 50000.0)
    out2 = leg_output(LEG_SELL, sz2, funds2, r2.taker_fee)
    assert out2 == pytest.approx(100.4979015, rel=1e-14)

    start = leg_spent(LEG_BUY, sz0, funds0, r0.taker_fee)
    assert start == pytest.approx(99.9999, rel=1e-15)
    profit, bps = triangle_pnl(start, out2)
    assert profit > 0
    assert profit == pytest.approx(0.4980015, abs=1e-9)
    assert round(bps, 2) == 49.80


def test_triangle_pnl_when_loss_then_negative_bps():
    profit, bps = triangle_pnl(5.0, 4.925)
    assert profit == pytest.approx(-0.075) and bps == pytest.approx(-150.0)
    assert triangle_pnl(0.0, 1.0) == (1.0, 0.0)


# -- cost (printed, not asserted) ----------------------------------------------------------

def test_size_leg_cost_when_repeated_then_printed(symbols):
    r = rules(symbols, "BTC-USDT")
    n = 50_000
    for side, amt, bid in ((LEG_BUY, 100.0, 0.0), (LEG_SELL, 0.00123456789, 60000.0)):
        assert type(size_leg(r, side, amt, bid)) is tuple
        t = time.perf_counter()
        for _ in range(n):
            size_leg(r, side, amt, bid)
        us = (time.perf_counter() - t) / n * 1e6
        print(f"\nsize_leg {('buy', 'sell')[side]}: {us:.2f} us per call")
