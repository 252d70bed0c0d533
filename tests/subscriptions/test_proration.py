"""Proration never creates or loses a cent; over months of changes the invoiced fees are the time-weighted prices."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from invoices.models import InvoiceLine
from subscriptions.calendar import period_boundary
from subscriptions.proration import prorate
from subscriptions.services.lifecycle import subscription_change_plan, subscription_create
from subscriptions.services.plans import plan_create
from subscriptions.services.renewal import subscriptions_renew_due
from teams.models import BillingSettings
from tests.factories import TeamFactory

D = Decimal
UTC = dt.UTC
CENT = D("0.01")

fees = st.decimals(min_value=0, max_value=100000, places=2)
jpy_fees = st.decimals(min_value=0, max_value=10**7, places=0)
starts = st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1), timezones=st.just(UTC))


def exact_half_up(value: Fraction, quantum: Decimal) -> Decimal:
    """``value`` rounded half-up to ``quantum``, from the exact fraction (the reference)."""
    scaled = value / Fraction(quantum)
    return (D(scaled.numerator) / D(scaled.denominator)).quantize(D(1), rounding=ROUND_HALF_UP) * quantum \
        if abs(scaled) < 10**20 else None


@given(old=fees, new=fees, start=starts, months=st.sampled_from([1, 12]), offset=st.floats(0, 1), by=st.sampled_from(["second", "day"]))
def test_proration_credit_and_charge_sum_to_the_rounded_plan_difference(old, new, start, months, offset, by):
    # given a change at some instant of a period
    end = period_boundary(anchor=start, months=months, n=1)
    at = start + (end - start) * offset
    # when it is prorated
    p = prorate(old_fee=old, new_fee=new, currency="USD", start=start, end=end, at=at, by=by)
    # then the credit and the charge, in cents, sum to the plan difference for the remaining time, to the cent
    exact = Fraction(new - old) * Fraction(p.remaining, p.total)
    assert p.credit + p.charge == p.net == exact_half_up(exact, CENT)
    # and each is within a cent of its exact share, of the right sign
    assert p.credit <= 0 <= p.charge
    assert abs(Fraction(p.credit) + Fraction(old) * Fraction(p.remaining, p.total)) < 1 * Fraction(CENT)
    assert abs(Fraction(p.charge) - Fraction(new) * Fraction(p.remaining, p.total)) < 1 * Fraction(CENT)


@given(old=jpy_fees, new=jpy_fees, start=starts, offset=st.floats(0, 1))
def test_proration_in_a_zero_decimal_currency_keeps_whole_yen(old, new, start, offset):
    end = period_boundary(anchor=start, months=1, n=1)
    p = prorate(old_fee=old, new_fee=new, currency="JPY", start=start, end=end, at=start + (end - start) * offset)
    assert p.credit == p.credit.to_integral_value() and p.charge == p.charge.to_integral_value()
    assert p.credit + p.charge == exact_half_up(Fraction(new - old) * Fraction(p.remaining, p.total), D(1))


def test_proration_of_an_upgrade_halfway_through_is_half_the_difference():
    start, end = dt.datetime(2024, 4, 1, tzinfo=UTC), dt.datetime(2024, 5, 1, tzinfo=UTC)
    p = prorate(old_fee=D("19.00"), new_fee=D("49.00"), currency="USD", start=start, end=end,
                at=dt.datetime(2024, 4, 16, tzinfo=UTC))
    assert (p.credit, p.charge, p.net) == (D("-9.50"), D("24.50"), D("15.00"))


changes = st.lists(st.tuples(st.integers(1, 24 * 30 * 86400 - 1), st.integers(0, 2)), min_size=1, max_size=6)


class TestTwentyFourMonths(TestCase):
    """Over 24 months of random plan changes, what the invoices bill as fees is the time-weighted price."""

    @settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow],
              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(start=st.datetimes(min_value=dt.datetime(2023, 1, 1), max_value=dt.datetime(2025, 1, 1), timezones=st.just(UTC)),
           events=changes)
    def test_invoiced_fees_equal_time_weighted_plan_prices(self, start, events):
        start = start.replace(microsecond=0)
        # given three monthly plans and a team that changes plan at random instants, upgrades and downgrades now
        plans = [plan_create(code=f"p{i}-{start.timestamp():.0f}-{len(events)}", name=f"Plan {i}", tier=f"t{i}",
                             currency="USD", fee=fee) for i, fee in enumerate([D("10.00"), D("49.00"), D("99.99")])]
        team = TeamFactory(currency="USD")
        BillingSettings.objects.create(team=team, billing_model="postpaid", credit_limit=D(10**9))
        sub = subscription_create(team=team, plan=plans[0], start=start)
        end = period_boundary(anchor=start, months=1, n=24)
        timeline = [(start, plans[0])]
        for offset, index in sorted(events):
            at = start + dt.timedelta(seconds=offset)
            subscriptions_renew_due(at=at)
            sub.refresh_from_db()
            if sub.plan_id == plans[index].pk:
                continue
            subscription_change_plan(subscription=sub, plan=plans[index], at=at, when="now")
            timeline.append((at, plans[index]))
        # when the 24 months are renewed
        subscriptions_renew_due(at=end)
        # then the fee and proration lines of the 24 months sum to the time-weighted price, within half a cent a change
        billed = D(0)
        for line in InvoiceLine.objects.filter(invoice__team=team, invoice__kind="subscription"):
            section = line.details["section"]
            if section == "fee" and dt.datetime.fromisoformat(line.details["period_start"]) < end:
                billed += line.amount
            elif section == "proration":
                billed += line.amount
        exact = Fraction(0)
        for n in range(24):
            p_start = period_boundary(anchor=start, months=1, n=n)
            p_end = period_boundary(anchor=start, months=1, n=n + 1)
            length = (p_end - p_start).total_seconds()
            for i, (t, plan) in enumerate(timeline):
                t_next = timeline[i + 1][0] if i + 1 < len(timeline) else end
                lo, hi = max(t, p_start), min(t_next, p_end)
                if hi > lo:
                    exact += Fraction(plan.fee) * Fraction(int((hi - lo).total_seconds()), int(length))
        assert abs(Fraction(billed) - exact) <= Fraction(len(timeline) - 1, 200)
