"""The rounding boundary and largest-remainder splitting: every cent accounted for."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_site.money import (
    METERED_QUANTUM,
    MoneyError,
    currency_exponent,
    format_amount,
    minor_unit,
    percent_of,
    round_preserving_sum,
    split,
    split_evenly,
    to_minor_units,
    unit_price_of,
)

CENT = Decimal("0.01")
cents = st.integers(min_value=-10**9, max_value=10**9).map(lambda n: Decimal(n) * CENT)
weights = st.lists(st.decimals(min_value=0, max_value=10**6, places=4), min_size=1, max_size=40).filter(
    lambda ws: sum(ws) > 0
)


def test_split_ten_cents_three_ways_gives_the_extra_cent_to_the_first_part():
    assert split_evenly(Decimal("0.10"), 3, CENT) == [Decimal("0.04"), Decimal("0.03"), Decimal("0.03")]


def test_split_credit_keeps_its_sign_and_sum():
    parts = split(Decimal("-1.00"), [Decimal(1), Decimal(2)], CENT)
    assert parts == [Decimal("-0.33"), Decimal("-0.67")]


def test_split_refuses_float_and_bad_weights():
    with pytest.raises(TypeError):
        split(1.0, [1], CENT)  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="all zero"):
        split(Decimal("1.00"), [0, 0], CENT)
    with pytest.raises(MoneyError, match="negative"):
        split(Decimal("1.00"), [1, -1], CENT)
    with pytest.raises(MoneyError, match="multiple"):
        split(Decimal("1.001"), [1], CENT)


@given(total=cents, ws=weights)
def test_split_parts_sum_exactly_and_stay_within_one_cent(total, ws):
    parts = split(total, ws, CENT)
    assert sum(parts) == total
    weight_sum = sum(ws)
    for part, w in zip(parts, ws):
        exact = total * w / weight_sum
        assert abs(part - exact) < CENT
        assert part == part.quantize(CENT)


@given(total=cents, ws=weights)
def test_split_is_deterministic(total, ws):
    assert split(total, ws, CENT) == split(total, list(ws), CENT)


@given(amounts=st.lists(st.decimals(min_value=-10**6, max_value=10**6, places=12), max_size=60))
def test_round_preserving_sum_ties_out_to_the_rounded_total(amounts):
    rounded = round_preserving_sum(amounts, CENT)
    assert sum(rounded, Decimal(0)) == to_minor_units(sum(amounts, Decimal(0)), "USD")
    for r, a in zip(rounded, amounts):
        assert abs(r - a) < CENT


def test_round_preserving_sum_puts_the_lost_cent_on_the_largest_remainder():
    # 3 × 0.3333…: naive rounding gives 0.99; the largest remainder gives 1.00.
    third = Decimal("0.333333333333")
    assert sum(round_preserving_sum([third, third, third + Decimal("0.000000000001")], CENT)) == Decimal("1.00")


def test_metered_quantum_is_twelve_places():
    assert METERED_QUANTUM == Decimal("1E-12")


def test_currency_minor_units_follow_iso_4217():
    assert minor_unit("USD") == CENT
    assert currency_exponent("JPY") == 0
    assert currency_exponent("kwd") == 3
    with pytest.raises(MoneyError, match="ISO 4217"):
        currency_exponent("US")


def test_format_amount_for_people():
    assert format_amount(Decimal("1234.5"), "USD") == "1,234.50 USD"
    assert format_amount(Decimal("1234.5"), "JPY") == "1,235 JPY"


def test_unit_price_of_is_the_average_at_twelve_places_rounded_half_up():
    # given an amount charged for a quantity / when / then
    assert unit_price_of(Decimal("0.09"), Decimal("2000")) == Decimal("0.000045000000")
    assert unit_price_of(Decimal("1"), Decimal("3")) == Decimal("0.333333333333")
    assert unit_price_of(Decimal("2"), Decimal("3")) == Decimal("0.666666666667")
    assert unit_price_of(Decimal("-2"), Decimal("3")) == Decimal("-0.666666666667")


def test_unit_price_of_refuses_no_quantity_and_floats():
    with pytest.raises(MoneyError, match="positive quantity"):
        unit_price_of(Decimal("1"), Decimal("0"))
    with pytest.raises(TypeError):
        unit_price_of(0.5, Decimal("1"))


def test_percent_of_rounds_once_at_twelve_places_even_for_amounts_beyond_28_digits():
    # given a 15-digit top-up with 12 decimal places and a 12-place percentage: the product has 41
    # digits, more than Decimal's default context keeps
    top_up, percent = Decimal("522543169273883.776354259453"), Decimal("94.338570904412")
    # when the share is taken, then it is the exact value rounded half-up once (as PostgreSQL's
    # round(top_up * percent / 100, 12) gives it), not a value rounded twice
    assert percent_of(top_up, percent) == Decimal("492959758251604.466167924241")
    assert percent_of(Decimal("0.07"), Decimal("33.333333")) == Decimal("0.023333333100")
    assert percent_of(Decimal("0.000000000001"), Decimal(50)) == Decimal("0.000000000001")  # half up
