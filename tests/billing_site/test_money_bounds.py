"""The bounds of stored amounts and the one Decimal context that keeps sums exact (billing_site.money)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_site.money import (
    AmountOutOfRange,
    check_within_bound,
    metered_cost,
    metered_costs,
    quantize_metered,
)
from chargeback.models import AllocatedCost, AllocationRun
from chargeback.periods import BillingPeriod
from chargeback.selectors import price_apply, price_items
from chargeback.services.allocation import allocation_run_create
from tests.factories import PriceFactory, TeamFactory, UsageRecordFactory

D = Decimal


@pytest.mark.parametrize("value", [D(10) ** 18, -(D(10) ** 18), D("1E+40")])
def test_a_figure_at_or_past_the_bound_is_refused_naming_the_field(value):
    with pytest.raises(AmountOutOfRange) as refused:
        check_within_bound(value, param="amount", what="the balance of wallet 3")
    assert (refused.value.param, refused.value.code, refused.value.http_status) == ("amount", "amount_out_of_range", 422)
    assert "the balance of wallet 3" in refused.value.message


def test_metered_cost_multiplies_exactly_and_rounds_once():
    # an 18-digit quantity × a 13-digit price: Python's 28 digits would round the product, then fail to quantize it
    quantity, price = D("123456789012345678"), D("1.000000000001")
    assert metered_cost(quantity, price) == D("123456789012469134.789012345678")
    # half-up, once, at the twelfth place
    assert metered_cost(D("99999999999999.5"), D("1.000000000001")) == D("100000000000099.500000000000")
    assert quantize_metered(D("999999999999999999.9999999999994")) == D("999999999999999999.999999999999")


@pytest.mark.django_db
def test_a_usage_cost_priced_past_the_bound_is_refused_naming_the_quantity():
    # Given a catalog price of 1,000 per unit, and a quantity whose cost would pass 10^18
    price = PriceFactory(unit_price=D("1000"))
    # When it is priced, Then it is refused before anything is stored: 422 naming quantity
    with pytest.raises(AmountOutOfRange) as refused:
        price_apply(price=price, quantity=D("1000000000000000"))
    assert refused.value.param == "quantity"
    # And a quantity just below the bound is priced exactly
    assert price_apply(price=price, quantity=D("999999999999999.999")).amount == D("999999999999999999.000000000000")


@pytest.mark.django_db
def test_an_allocation_whose_sum_passes_the_bound_is_refused_and_writes_nothing():
    # Given two usage records of one month, each just below 10^18, whose sum is not
    team = TeamFactory()
    UsageRecordFactory.create_batch(2, team=team, cost=D("900000000000000000"))
    # When the month is allocated, Then the run is refused (422 naming the period), and nothing is written
    with pytest.raises(AmountOutOfRange) as refused:
        allocation_run_create(period=BillingPeriod.month("2024-09"))
    assert refused.value.param == "period"
    assert "2024-09" in refused.value.message
    assert not AllocationRun.objects.exists() and not AllocatedCost.objects.exists()


@pytest.mark.django_db
def test_an_allocation_is_bounded_per_currency_pool_not_only_in_its_principal_currency():
    # Given a month whose USD usage is small and whose EUR usage sums past 10^18 (a pool of its own)
    team = TeamFactory()
    UsageRecordFactory.create_batch(3, team=team, cost=D("1.5"))
    UsageRecordFactory.create_batch(2, team=team, cost=D("900000000000000000"), currency="EUR")
    # When the month is allocated, Then the EUR pool is refused by name, and nothing is written
    with pytest.raises(AmountOutOfRange) as refused:
        allocation_run_create(period=BillingPeriod.month("2024-09"))
    assert refused.value.param == "period"
    assert "(EUR)" in refused.value.message
    assert not AllocationRun.objects.exists() and not AllocatedCost.objects.exists()


@given(st.lists(st.one_of(st.decimals(min_value=-10 ** 20, max_value=10 ** 20, places=12), st.integers(-10 ** 20, 10 ** 20),
                          st.sampled_from([D("123456789012345678"), D("99999999999999.5"), D("-0"), D("1E+3")])),
                max_size=6),
       st.sampled_from([D("1.000000000001"), D("0.00003"), D("0.000000000001"), D(7)]))
def test_metered_costs_are_metered_cost_of_each_quantity(quantities, unit_price):
    # a batch's lines at one price, costed in one context, give each line's metered_cost to the digit
    assert [str(c) for c in metered_costs(quantities, unit_price)] == [str(metered_cost(q, unit_price)) for q in quantities]


@pytest.mark.django_db
def test_price_items_refuses_the_first_line_priced_past_the_bound_as_price_apply_does():
    # Given a price of 1,000 per unit and lines of two items, the second and third past the bound
    big = PriceFactory(unit_price=D("1000"))
    small = PriceFactory(category="tts", unit_price=D("0.5"))
    big.refresh_from_db()  # as price_items reads it: 1000.000000000000
    small.refresh_from_db()
    item = (big.category, big.provider, big.model, big.unit)
    other = (small.category, small.provider, small.model, small.unit)
    at = big.valid_from
    # When they are priced together, Then the second line's error is price_apply's, word for word
    with pytest.raises(AmountOutOfRange) as refused:
        price_items(team=None, lines=[(item, D(1), at), (item, D(10) ** 15, at), (item, D(10) ** 16, at),
                                      (other, D(2), at)])
    with pytest.raises(AmountOutOfRange) as alone:
        price_apply(price=big, quantity=D(10) ** 15)
    assert (refused.value.message, refused.value.param) == (alone.value.message, alone.value.param)
    # and lines within the bound cost what price_apply makes of them
    priced = price_items(team=None, lines=[(item, D(3), at), (other, D(2), at), (("x", "y", "z", "w"), D(1), at)])
    assert priced[:2] == [price_apply(price=big, quantity=D(3)), price_apply(price=small, quantity=D(2))]
    assert priced[2] is None
