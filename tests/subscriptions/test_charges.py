"""Charge models agree with the worked examples of Stripe's and Lago's documentation, and with their definitions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subscriptions.charges import ChargeSpec, Tier, charge_amount, tiers_problem

D = Decimal

# Stripe, "Set up tiered pricing" (Typographic's fonts): 1–5 at 7 USD, 6–10 at 6.50 USD, 11+ at 6 USD.
STRIPE_TIERS = (Tier(D(5), D(7)), Tier(D(10), D("6.5")), Tier(None, D(6)))


@pytest.mark.parametrize(("quantity", "total"), [(1, "7"), (5, "35"), (6, "39"), (20, "120"), (25, "150")])
def test_volume_tiers_match_stripes_worked_example(quantity, total):
    # given Stripe's volume-based tiers, when a quantity is priced, then the whole quantity takes its tier's price
    assert charge_amount(ChargeSpec("volume", tiers=STRIPE_TIERS), D(quantity)) == D(total)


@pytest.mark.parametrize(("quantity", "total"), [(1, "7"), (5, "35"), (6, "41.5"), (20, "127.5"), (25, "157.5")])
def test_graduated_tiers_match_stripes_worked_example(quantity, total):
    # given the same tiers graduated, then each tier prices its own units (6 fonts: 5 × 7 + 1 × 6.50)
    assert charge_amount(ChargeSpec("graduated", tiers=STRIPE_TIERS), D(quantity)) == D(total)


def test_volume_tiers_with_flat_fee_match_lagos_worked_example():
    # given Lago's volume example: 0.0010 to 10,000, 0.0008 to 50,000, 0.0006 to 100,000, 0.0004 beyond, 10 USD flat
    tiers = (Tier(D(10000), D("0.0010"), D(10)), Tier(D(50000), D("0.0008"), D(10)),
             Tier(D(100000), D("0.0006"), D(10)), Tier(None, D("0.0004"), D(10)))
    # when 65,000 API calls are priced, then they cost 65,000 × 0.0006 + 10 = 49 USD
    assert charge_amount(ChargeSpec("volume", tiers=tiers), D(65000)) == D(49)


def test_graduated_tiers_match_lagos_example():
    # given Lago's graduated example: 1 USD for the first 100 calls, 0.50 for the next 100, 0.10 beyond
    tiers = (Tier(D(100), D(1)), Tier(D(200), D("0.5")), Tier(None, D("0.1")))
    # when 250 calls are priced, then 100 × 1 + 100 × 0.50 + 50 × 0.10 = 155 USD
    assert charge_amount(ChargeSpec("graduated", tiers=tiers), D(250)) == D(155)


@pytest.mark.parametrize(("users", "total"), [(1, 10), (3, 10), (5, 10), (6, 20), (7, 20)])
def test_package_matches_stripes_quantity_transformation_example(users, total):
    # given Stripe's "10 USD for every 5 users (or portion thereof)": transform_quantity divide_by 5, round up
    spec = ChargeSpec("package", price=D(10), package_size=D(5))
    # then each started block of 5 costs 10 USD
    assert charge_amount(spec, D(users)) == D(total)


def test_package_matches_stripes_car_rental_example():
    # given 10 USD per started hour, usage reported in minutes: 150 minutes cost 3 hours
    assert charge_amount(ChargeSpec("package", price=D(10), package_size=D(60)), D(150)) == D(30)


def test_standard_per_thousand_is_the_seeds_overage():
    # given 2.00 USD per 1,000 units, then 85 units cost 0.17 USD, exactly
    assert charge_amount(ChargeSpec("standard", price=D("2.00"), price_per_units=D(1000)), D(85)) == D("0.17")


def test_graduated_flat_fee_is_added_once_per_tier_reached():
    # given Stripe's flat_amount per tier: 1–10 at 0 + 5 flat, 11+ at 1 + 2 flat
    spec = ChargeSpec("graduated", tiers=(Tier(D(10), D(0), D(5)), Tier(None, D(1), D(2))))
    assert [charge_amount(spec, D(q)) for q in (0, 1, 10, 11, 15)] == [D(0), D(5), D(5), D(8), D(12)]


quantities = st.decimals(min_value=0, max_value=10**7, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def tier_lists(draw):
    bounds = sorted(set(draw(st.lists(st.integers(1, 10**6), min_size=0, max_size=4))))
    prices = draw(st.lists(st.decimals(0, 100, places=4), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    return tuple(Tier(D(b), p) for b, p in zip(bounds, prices)) + (Tier(None, prices[-1]),)


@given(tiers=tier_lists(), quantity=quantities)
def test_graduated_with_one_price_equals_standard(tiers, quantity):
    # given graduated tiers that all carry the same price, then they price like the standard model
    same = tuple(Tier(t.up_to, tiers[0].unit_price) for t in tiers)
    assert charge_amount(ChargeSpec("graduated", tiers=same), quantity) == charge_amount(
        ChargeSpec("standard", price=tiers[0].unit_price), quantity)


@given(tiers=tier_lists(), a=quantities, b=quantities)
def test_graduated_cost_never_falls_as_usage_grows(tiers, a, b):
    low, high = sorted((a, b))
    spec = ChargeSpec("graduated", tiers=tiers)
    assert charge_amount(spec, low) <= charge_amount(spec, high)


@given(tiers=tier_lists(), quantity=quantities)
def test_volume_prices_every_unit_at_the_tier_of_the_total(tiers, quantity):
    tier = next(t for t in tiers if t.up_to is None or quantity <= t.up_to)
    expected = D(0) if quantity == 0 else quantity * tier.unit_price
    assert charge_amount(ChargeSpec("volume", tiers=tiers), quantity) == expected


def test_tiers_problem_names_the_fault():
    assert tiers_problem("graduated", []) == "a graduated charge needs at least one tier"
    assert "must be open" in tiers_problem("volume", [Tier(D(5), D(1))])
    assert "greater than 5" in tiers_problem("volume", [Tier(D(5), D(1)), Tier(D(5), D(1)), Tier(None, D(1))])
    assert tiers_problem("standard", []) is None
