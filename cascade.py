"""Pure leg arithmetic for the executor: fee hold, increment floor, limits, leg sizing, PnL.

Owns: `Increment` and `SymbolRules` (per-symbol exact increments and limits, built once at
start-up from the KuCoin v2 symbol list, docs/kucoin.md 6.1) and the plain functions the
seed's `cascade.c` named (docs/design.md 6): `fee_hold_reduction`,
`floor_to_increment`, `balance_override`, `triangle_pnl`, plus `size_leg`, which turns a leg's
input amount into the exact decimal string of the market order's `funds` or `size` field.

Thread: called by whichever thread fires a leg (the slot's executor, or the hot thread when
it fires a leg itself), on the critical path between a fill and the next order. Nothing here
blocks, locks, allocates arrays or touches shared state; `size_leg` costs ~0.7 us (see
tests/test_cascade.py, which prints a measurement).

Exactness (docs/kucoin.md 5.2, 5.9, 8.8): a market buy sends `funds`, a multiple of
`quoteIncrement`; a market sell sends `size`, a multiple of `baseIncrement`. A string such as
"0.6930000000000001" is rejected with `400100 Order size increment invalid.`. So amounts
are counted in integer *units* of 10**-dp, where dp is the number of decimals of the
increment; the increment itself is `inc_units` units (1 for "0.0001", 10 for "10", 5 for
"0.5", 25 for "0.25"), and a valid amount is an integer multiple of `inc_units`. The string
sent to KuCoin is made from that integer by digit placement: it is an exact multiple by
construction, never has an exponent and never carries float artefacts.

Tolerance of the floor (`REL_TOL`, `UNIT_TOL`): amounts arrive as floats (sums of match
sizes, px*sz products, divisions), so a true multiple may be stored a few ulps below it:
0.29 * 100 == 28.999999999999996, 0.1 + 0.2 == 0.30000000000000004. Flooring that to 28 on a
symbol with increment "1" would strand a whole increment (3% of the leg). So a value whose
distance below the next multiple is at most min(REL_TOL * value, UNIT_TOL * increment)
counts as that multiple; anything further below is floored.
REL_TOL = 4e-15 (18 ulps of a float64). Why so small: the noise a leg's amount can carry is
about 6 ulps (each decimal string parsed: 0.5 ulp; each px*sz: 0.5; fsum of the matches:
0.5; * (1 - fee): 0.5; * increments-per-unit: 0.5), while a *real* amount just below a
multiple must be floored or the order is rejected (`Balance insufficient`): 28.99999999
received on a symbol with increment 1e-8 and sold on one with increment 1e-4 must become
28.9999. A 1e-9 relative tolerance would send 29 for it; 4e-15 keeps real amounts with 8
decimals apart from multiples up to ~2.5 million. UNIT_TOL = 1e-3 caps the round-up at a
thousandth of an increment for very large amounts. Above 2**52 increments a float cannot
hold the fraction, so the floor is done exactly on the float's binary value, without
tolerance. When in doubt the floor goes down: dust of one increment costs little, a
rejected leg strands the triangle.

Fees (docs/kucoin.md 6.6): charged in the quote currency on both sides. A
market buy by funds F buys notional <= F and pays notional*fee on top, holding F*(1+fee); so a
buy leg with Q quote available sends funds = floor(Q / (1+fee)). A sell of size S receives
notional*(1-fee) quote.

Run the tests: `python -m pytest -q tests/test_cascade.py -s`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

# Order side of a leg: the one definition (universe.py and triangles.py import these).
LEG_BUY = 0   # spend quote, receive base; market order by `funds`
LEG_SELL = 1  # spend base, receive quote; market order by `size`

# Floor tolerance, see the module docstring.
REL_TOL = 4e-15
UNIT_TOL = 1e-3

_EXACT_LIMIT = 2.0 ** 52

FIELD_FUNDS = "funds"
FIELD_SIZE = "size"


@dataclass(frozen=True, slots=True)
class Increment:
    """One exact KuCoin increment ("0.00000001", "1", "10", "0.5") and its integer scale.

    Amounts are counted in integer units of 10**-dp; the increment is `inc_units` units.
    `per_inc` = increments per 1.0 of amount (float), used by the floor.
    """
    text: str        # the increment exactly as KuCoin sent it
    dp: int          # decimals of one unit (0 for "1" and "10")
    scale: int       # 10**dp; units / scale (int / int) is correctly rounded
    inc_units: int   # increment in units
    per_inc: float   # scale / inc_units
    value: float     # the increment as a float (for kernels: books.walk_buy_funds base_inc)

    @classmethod
    def parse(cls, text: str) -> "Increment":
        d = Decimal(text)
        if not d.is_finite() or d <= 0:
            raise ValueError(f"increment must be a positive decimal, got {text!r}")
        dp = max(0, -d.normalize().as_tuple().exponent)
        inc_units = int(d.scaleb(dp))     # exact: d has at most dp decimals
        scale = 10 ** dp
        return cls(text, dp, scale, inc_units, scale / inc_units, inc_units / scale)

    def units_floor(self, text) -> int:
        """Exact units of a decimal string/Decimal, floored to a multiple of the increment."""
        with localcontext(prec=80):
            u = int(Decimal(text).scaleb(self.dp).to_integral_value(ROUND_FLOOR))
        return u - u % self.inc_units

    def units_ceil(self, text) -> int:
        """Exact units of a decimal string/Decimal, rounded up to whole units (not to the
        increment): the smallest unit count >= the value, for minimum checks."""
        with localcontext(prec=80):
            return int(Decimal(text).scaleb(self.dp).to_integral_value(ROUND_CEILING))

    def to_str(self, units: int) -> str:
        return units_to_str(units, self.dp)

    def to_float(self, units: int) -> float:
        # int / int true division is correctly rounded: == float(self.to_str(units)).
        return units / self.scale


def units_to_str(units: int, dp: int) -> str:
    """Exact decimal string of `units` * 10**-dp: "0.693", "0.00000001", "12"; no exponent,
    no trailing zeros, no float artefacts."""
    if units < 0:
        return "-" + units_to_str(-units, dp)
    s = str(units)
    if dp == 0:
        return s
    if len(s) <= dp:
        s = "0" * (dp - len(s) + 1) + s
    head = s[:-dp]
    tail = s[-dp:].rstrip("0")
    return head + "." + tail if tail else head


def floor_to_increment(x: float, inc: Increment) -> int:
    """Largest multiple of `inc` not above `x` (within the documented tolerance), in units.

    Returns 0 for x <= 0 or NaN. Raises OverflowError for infinity (size_leg rejects
    non-finite input before calling this).
    """
    q = x * inc.per_inc            # amount in increments (float)
    if not q > 0.0:
        return 0
    if q >= _EXACT_LIMIT:          # float has no fraction left: exact floor, no tolerance
        num, den = x.as_integer_ratio()
        units = num * 10 ** inc.dp // den
        return units - units % inc.inc_units
    n = int(q)                     # floor for q > 0
    gap = (n + 1) - q              # distance below the next multiple, in increments
    if gap <= UNIT_TOL and gap <= q * REL_TOL:
        n += 1
    return n * inc.inc_units


def fee_hold_reduction(available: float, fee: float) -> float:
    """Largest `funds` whose hold funds*(1+fee) fits in `available` quote (docs/kucoin.md 6.6:
    a market buy by funds holds the taker fee on top, docs/kucoin.md 6.6). Floor it next."""
    return available / (1.0 + fee)


def balance_override(computed: float, available) -> float:
    """Sell-leg input: the lower of what we computed we received and the latest `available`
    balance of that currency from the private balance feed (docs/kucoin.md 4.2).

    Never more than we received: a balance above it includes coins held before the triangle,
    which are not ours to sell. Lower means KuCoin credited less than our arithmetic (fee
    rounding, a fill we missed), and selling more would be rejected with `Balance
    insufficient`. The caller passes a balance known to include the previous leg's fill
    (the seed's await_balance), or None when it has none; None/NaN keeps `computed`.
    """
    if available is None or not available < computed:   # NaN compares False -> keep
        return computed
    return available if available > 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """Trading rules of one symbol with exact increments (docs/kucoin.md 6.1).

    Limits are kept as exact units of the matching increment's scale: minimums rounded up
    (`*_min_u`), maximums rounded down (`*_max_u`), so comparisons with a floored amount are
    exact integer comparisons. `min_funds_u` is in quote units (0 = no rule: minFunds null).
    """
    symbol: str
    base: str
    quote: str
    base_inc: Increment
    quote_inc: Increment
    price_inc: Increment
    base_min: str
    base_max: str
    quote_min: str
    quote_max: str
    min_funds: str | None
    taker_fee: float             # effective taker rate (account rate * takerFeeCoefficient)
    base_min_u: int
    base_max_u: int
    quote_min_u: int
    quote_max_u: int
    min_funds_u: int             # quote units; 0 when minFunds is null
    min_funds_f: float           # for the sell-side notional estimate; 0.0 when null

    @classmethod
    def from_kucoin(cls, d: dict, taker_fee: float) -> "SymbolRules":
        """Build from one `/api/v2/symbols` entry. `taker_fee` is the effective rate already
        multiplied by the symbol's takerFeeCoefficient (see `effective_taker_fee`)."""
        bi = Increment.parse(d["baseIncrement"])
        qi = Increment.parse(d["quoteIncrement"])
        pi = Increment.parse(d["priceIncrement"])
        mf = d.get("minFunds")
        return cls(
            symbol=d["symbol"], base=d["baseCurrency"], quote=d["quoteCurrency"],
            base_inc=bi, quote_inc=qi, price_inc=pi,
            base_min=d["baseMinSize"], base_max=d["baseMaxSize"],
            quote_min=d["quoteMinSize"], quote_max=d["quoteMaxSize"], min_funds=mf,
            taker_fee=float(taker_fee),
            base_min_u=bi.units_ceil(d["baseMinSize"]),
            base_max_u=bi.units_floor(d["baseMaxSize"]),
            quote_min_u=qi.units_ceil(d["quoteMinSize"]),
            quote_max_u=qi.units_floor(d["quoteMaxSize"]),
            min_funds_u=qi.units_ceil(mf) if mf is not None else 0,
            min_funds_f=float(mf) if mf is not None else 0.0,
        )


def effective_taker_fee(d: dict, account_rate: float) -> float:
    """Account taker rate (`/api/v1/trade-fees`, docs/kucoin.md 6.2) times the symbol's
    takerFeeCoefficient (0 = no fee; missing = 1), docs/kucoin.md 6.6."""
    return float(account_rate) * float(d.get("takerFeeCoefficient") or "1")


def check_leg_limits(rules: SymbolRules, side: int, units: int, best_bid: float):
    """None if a market order of `units` (funds units for a buy, size units for a sell)
    passes KuCoin's limits (docs/kucoin.md 5.2, 5.9), else the reason as a string.

    Buy by funds: funds >= quoteMinSize, funds >= minFunds, funds <= quoteMaxSize.
    Sell by size: size >= baseMinSize, size <= baseMaxSize, size*best_bid >= minFunds.
    KuCoin checks a market sell against lastPrice; best_bid is our estimate of it.
    """
    if side == LEG_BUY:
        qi = rules.quote_inc
        if units < rules.quote_min_u:
            return f"funds {qi.to_str(units)} below quoteMinSize {rules.quote_min} ({rules.symbol})"
        if units < rules.min_funds_u:
            return f"funds {qi.to_str(units)} below minFunds {rules.min_funds} ({rules.symbol})"
        if units > rules.quote_max_u:
            return f"funds {qi.to_str(units)} above quoteMaxSize {rules.quote_max} ({rules.symbol})"
        return None
    bi = rules.base_inc
    if units < rules.base_min_u:
        return f"size {bi.to_str(units)} below baseMinSize {rules.base_min} ({rules.symbol})"
    if units > rules.base_max_u:
        return f"size {bi.to_str(units)} above baseMaxSize {rules.base_max} ({rules.symbol})"
    if rules.min_funds_u:
        if not best_bid > 0.0:
            return f"no bid price to check minFunds {rules.min_funds} ({rules.symbol})"
        notional = units / bi.scale * best_bid
        if notional < rules.min_funds_f:
            return (f"size {bi.to_str(units)} x bid {best_bid!r} = {notional:.12g} below "
                    f"minFunds {rules.min_funds} ({rules.symbol})")
    return None


def size_leg(rules: SymbolRules, side: int, input_amount: float, best_bid: float = 0.0):
    """Size one market-order leg from the amount of the currency it spends.

    `input_amount`: quote available for a buy (the hold covers the fee: fee_hold_reduction
    is applied here), base available for a sell (apply `balance_override` before).
    `best_bid`: the symbol's best bid, used only for a sell's minFunds check.

    Returns (field, text, value): field "funds" (buy) or "size" (sell), text the exact
    decimal string for the order body, value its float (== float(text)). When the leg cannot
    be placed, returns the reason as a str instead (check with `type(r) is str`).
    """
    if not (input_amount < math.inf):          # NaN or +inf
        return f"invalid input amount {input_amount!r} ({rules.symbol})"
    if side == LEG_BUY:
        inc = rules.quote_inc
        units = floor_to_increment(input_amount / (1.0 + rules.taker_fee), inc)
        field = FIELD_FUNDS
    else:
        inc = rules.base_inc
        units = floor_to_increment(input_amount, inc)
        field = FIELD_SIZE
    reason = check_leg_limits(rules, side, units, best_bid)
    if reason is not None:
        return reason
    return field, units_to_str(units, inc.dp), units / inc.scale


# -- leg results ---------------------------------------------------------------------------
# Inputs are the accumulated fills of one order (the fill ring's per-leg totals):
# total_sz = sum(match_sz) in base, total_funds = sum(match_px * match_sz) in quote.

def sum_matches(sizes, prices) -> tuple[float, float]:
    """(total_sz, total_funds) of a leg's matches; fsum keeps many small matches exact."""
    return math.fsum(sizes), math.fsum(p * s for p, s in zip(prices, sizes))


def leg_output(side: int, total_sz: float, total_funds: float, fee: float) -> float:
    """What a leg received: base = sum of match sizes (buy; the fee is paid in quote on top),
    or quote = notional * (1 - fee) (sell). docs/kucoin.md 6.6."""
    if side == LEG_BUY:
        return total_sz
    return total_funds * (1.0 - fee)


def leg_spent(side: int, total_sz: float, total_funds: float, fee: float) -> float:
    """What a leg spent: quote = notional + fee (buy), or base = size sold (sell)."""
    if side == LEG_BUY:
        return total_funds * (1.0 + fee)
    return total_sz


def leg_fee(total_funds: float, fee: float) -> float:
    """Taker fee of a leg, in the symbol's quote currency, either side."""
    return total_funds * fee


def quote_spent(total_funds: float, fee: float) -> float:
    """Quote a buy leg cost: notional + taker fee (held on top of funds)."""
    return total_funds * (1.0 + fee)


def triangle_pnl(start: float, final_output: float) -> tuple[float, float]:
    """(profit, effective_bps) of a finished triangle, in the primary quote.

    profit = final output of leg 2 - start. Pass as `start` what leg 0 really took from the
    primary (leg_spent of leg 0): then profit is the balance change. The signal's start
    volume is larger by the unspent dust left by flooring and fee hold, which stays in the
    account and is not a loss. effective_bps = profit / start * 1e4 (0 when start is 0).
    """
    profit = final_output - start
    return profit, (profit / start * 1e4 if start > 0.0 else 0.0)


# -- limit IOC orders (docs/kucoin.md 5.10; docs/design.md 6.7) ------------------------------

ROUND_NEAREST = 0    # a price read from the book: already a multiple of priceIncrement
ROUND_UP = 1         # a bound for a sell: never accept less than asked
ROUND_DOWN = 2       # a bound for a buy: never pay more than asked


def price_units(rules: SymbolRules, price: float, rounding: int = ROUND_NEAREST) -> int:
    """`price` in units of the price increment's scale, a multiple of priceIncrement (0 if
    not positive). ROUND_NEAREST for a book price (a multiple up to float noise); UP / DOWN
    for a computed bound, exactly (Decimal of the float's shortest repr)."""
    pi = rules.price_inc
    if not price > 0.0 or not price < math.inf:
        return 0
    if rounding == ROUND_NEAREST:
        n = round(price * pi.per_inc)
        return n * pi.inc_units
    q = Decimal(repr(price)) / Decimal(pi.text)
    with localcontext(prec=60):
        n = int(q.to_integral_value(ROUND_CEILING if rounding == ROUND_UP else ROUND_FLOOR))
    return n * pi.inc_units


def size_limit(rules: SymbolRules, side: int, base_amount: float, price: float,
               rounding: int = ROUND_NEAREST):
    """Size a limit IOC order of `base_amount` base at `price`: (size text, size, price text,
    price) or the reason it cannot be placed (a str). The size is floored to baseIncrement;
    the checks are KuCoin's (5.9, 5.10): baseMinSize <= size <= baseMaxSize and price * size
    >= minFunds. The caller caps a buy's size so that its hold, price * size * (1 + fee)
    (6.6), fits what it holds."""
    if not (base_amount < math.inf):
        return f"invalid input amount {base_amount!r} ({rules.symbol})"
    pu = price_units(rules, price, rounding)
    if pu <= 0:
        return f"no price for a limit order ({rules.symbol})"
    pi, bi = rules.price_inc, rules.base_inc
    px = pu / pi.scale
    units = floor_to_increment(base_amount, bi)
    if units < rules.base_min_u:
        return f"size {bi.to_str(units)} below baseMinSize {rules.base_min} ({rules.symbol})"
    if units > rules.base_max_u:
        return f"size {bi.to_str(units)} above baseMaxSize {rules.base_max} ({rules.symbol})"
    if rules.min_funds_u and units / bi.scale * px < rules.min_funds_f:
        return (f"size {bi.to_str(units)} x price {pi.to_str(pu)} below minFunds {rules.min_funds} "
                f"({rules.symbol})")
    return units_to_str(units, bi.dp), units / bi.scale, units_to_str(pu, pi.dp), px
