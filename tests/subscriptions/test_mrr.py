"""The MRR arithmetic (``subscriptions.mrr``): monthly amounts, movements, per-currency breakdowns."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_site.money import to_minor_units
from subscriptions.mrr import (
    CurrencyMRR,
    monthly_amount,
    months_per_period,
    mrr_by_currency,
    mrr_movements,
    round_breakdown,
)

D = Decimal


def test_monthly_amount_divides_a_yearly_fee_by_twelve():
    assert monthly_amount(fee=D("1200"), interval="year") == D("100")
    assert monthly_amount(fee=D("1000"), interval="year") == D("83.333333333333")
    assert monthly_amount(fee=D("300"), interval="month", interval_count=3) == D("100")


def test_monthly_amount_multiplies_before_dividing():
    # 12 yearly subscriptions of 1,000: exactly 1,000 a month, not 12 × 83.333333333333.
    assert monthly_amount(fee=D("1000"), interval="year", count=12) == D("1000")


def test_monthly_amount_refuses_floats_and_unknown_intervals():
    with pytest.raises(TypeError):
        monthly_amount(fee=10.0, interval="month")
    with pytest.raises(ValueError):
        months_per_period(interval="week", interval_count=1)
    with pytest.raises(ValueError):
        months_per_period(interval="month", interval_count=0)


def test_movements_classify_new_expansion_contraction_and_churn():
    before = {"a": D("10"), "b": D("50"), "c": D("100"), "d": D("20")}
    after = {"b": D("80"), "c": D("60"), "d": D("20"), "e": D("30")}
    assert mrr_movements(before, after) == {
        "new": D("30"), "expansion": D("30"), "contraction": D("-40"), "churn": D("-10"),
    }


amounts = st.decimals(min_value=0, max_value=10_000, places=2)
snapshots = st.dictionaries(st.integers(0, 30), amounts, max_size=30)


@given(before=snapshots, after=snapshots)
def test_movements_reconcile_the_two_totals(before, after):
    moves = mrr_movements(before, after)
    assert sum(after.values(), D(0)) == sum(before.values(), D(0)) + sum(moves.values(), D(0))
    assert moves["new"] >= 0 and moves["expansion"] >= 0
    assert moves["contraction"] <= 0 and moves["churn"] <= 0


def test_mrr_by_currency_keeps_currencies_apart():
    rows = [
        {"currency": "USD", "tier": "pro", "fee": D("49"), "interval": "month", "interval_count": 1, "count": 3},
        {"currency": "USD", "tier": "enterprise", "fee": D("12000"), "interval": "year", "interval_count": 1, "count": 1},
        {"currency": "EUR", "tier": "pro", "fee": D("45"), "interval": "month", "interval_count": 1, "count": 2},
    ]
    mrr = mrr_by_currency(rows)
    assert mrr["USD"].total == D("1147") and mrr["EUR"].total == D("90")
    assert mrr["USD"].tiers == {"pro": (3, D("147")), "enterprise": (1, D("1000"))}


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.decimals(0, 100_000, places=2),
                          st.sampled_from([(1, "month"), (3, "month"), (1, "year"), (2, "year")]),
                          st.integers(1, 50)), max_size=12))
def test_rounded_breakdown_adds_up_to_the_rounded_total(plans):
    mrr = CurrencyMRR("USD")
    for tier, fee, (count_of, interval), count in plans:
        mrr.add(tier=tier, count=count, amount=monthly_amount(fee=fee, interval=interval, interval_count=count_of,
                                                              count=count))
    total, tiers = round_breakdown(mrr)
    assert total == to_minor_units(mrr.total, "USD")
    assert sum((amount for _, amount in tiers.values()), D(0)) == total
    for name, (_, amount) in tiers.items():
        assert abs(amount - mrr.tiers[name][1]) < D("0.01")
