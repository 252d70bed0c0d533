"""Coupons and discounts: the renewal invoice's discount line, the coupon's duration, and MRR after discounts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

from billing_site.errors import BillingError
from billing_site.money import to_minor_units
from invoices.models import Invoice
from subscriptions.discounts import discount_amount
from subscriptions.errors import CouponTermsConflict, InvalidSubscriptionRequest, SubscriptionTransitionError
from subscriptions.models import Coupon, Subscription
from subscriptions.selectors_mrr import mrr_history, subscription_stats
from subscriptions.services.discounts import (
    coupon_archive,
    coupon_create,
    coupon_update,
    subscription_discount_apply,
    subscription_discount_remove,
)
from subscriptions.services.invoicing import InvoiceDraft, LineDraft
from subscriptions.services.lifecycle import subscription_cancel, subscription_create
from subscriptions.services.plans import plan_create
from subscriptions.services.renewal import subscriptions_renew_due
from teams.models import BillingSettings
from tests.factories import TeamFactory

from .conftest import at, record_usage

D = Decimal


def _lines(invoice):
    return [(line.details["section"], line.amount) for line in invoice.lines.order_by("position")]


def _last_invoice(team):
    return Invoice.objects.filter(team=team, kind="subscription").order_by("-pk").first()


def test_percent_coupon_repeating_three_months_discounts_three_renewals(postpaid_team, pro_plan):
    # given a professional subscription (49.00 a month) from 1 January with 20 % off for 3 months
    coupon = coupon_create(code="launch-20", name="Launch", percent_off=D(20), duration="repeating",
                           duration_in_months=3)
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1), coupon=coupon)
    record_usage(postpaid_team, 585, at(2024, 1, 20))

    # then the first invoice is 49.00 − 9.80
    assert _lines(_last_invoice(postpaid_team)) == [("fee", D("49.00")), ("discount", D("-9.80"))]
    # when February's renewal runs: the fee, its discount (not the overage's), January's overage
    subscriptions_renew_due(at=at(2024, 2, 1))
    invoice = _last_invoice(postpaid_team)
    assert _lines(invoice) == [("fee", D("49.00")), ("discount", D("-9.80")), ("overage", D("0.17"))]
    assert invoice.total == D("39.37")
    # and March is the third and last discounted period; April pays the full fee
    subscriptions_renew_due(at=at(2024, 3, 1))
    assert _lines(_last_invoice(postpaid_team))[:2] == [("fee", D("49.00")), ("discount", D("-9.80"))]
    subscriptions_renew_due(at=at(2024, 4, 1))
    assert _lines(_last_invoice(postpaid_team)) == [("fee", D("49.00")), ("overage", D("0.00"))]
    assert sub.discounts.get().coupon == coupon


def test_once_coupon_applied_mid_period_discounts_the_next_renewal_only(postpaid_team, pro_plan):
    coupon = coupon_create(code="sorry-10", name="Sorry", amount_off=D("10.00"), currency="USD", duration="once")
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    subscription_discount_apply(subscription=sub, coupon=coupon, at=at(2024, 1, 15))
    subscriptions_renew_due(at=at(2024, 2, 1))
    assert _lines(_last_invoice(postpaid_team))[:2] == [("fee", D("49.00")), ("discount", D("-10.00"))]
    subscriptions_renew_due(at=at(2024, 3, 1))
    assert [s for s, _ in _lines(_last_invoice(postpaid_team))] == ["fee", "overage"]


def test_once_coupon_on_a_trial_discounts_the_first_paid_period(postpaid_team, pro_plan):
    coupon = coupon_create(code="trial-half", name="Half", percent_off=D(50), duration="once")
    subscription_create(team=postpaid_team, plan=pro_plan, trial=True, trial_days=14, start=at(2024, 1, 1),
                        coupon=coupon)
    subscriptions_renew_due(at=at(2024, 1, 15))
    assert _lines(_last_invoice(postpaid_team)) == [("fee", D("49.00")), ("discount", D("-24.50"))]
    subscriptions_renew_due(at=at(2024, 2, 15))
    assert [s for s, _ in _lines(_last_invoice(postpaid_team))] == ["fee", "overage"]


def test_amount_off_larger_than_the_fee_makes_the_fee_free_not_negative(postpaid_team, starter_plan):
    coupon = coupon_create(code="big", name="Big", amount_off=D("25.00"), currency="USD", duration="forever")
    subscription_create(team=postpaid_team, plan=starter_plan, start=at(2024, 1, 1), coupon=coupon)
    invoice = _last_invoice(postpaid_team)
    assert _lines(invoice) == [("fee", D("19.00")), ("discount", D("-19.00"))]
    assert invoice.total == D(0)


def test_a_new_coupon_replaces_the_running_one_and_removing_ends_it(postpaid_team, pro_plan):
    ten = coupon_create(code="ten", name="Ten", percent_off=D(10), duration="forever")
    half = coupon_create(code="half", name="Half", percent_off=D(50), duration="forever")
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1), coupon=ten)
    subscription_discount_apply(subscription=sub, coupon=half, at=at(2024, 1, 20))
    subscriptions_renew_due(at=at(2024, 2, 1))
    assert _lines(_last_invoice(postpaid_team))[1] == ("discount", D("-24.50"))
    assert subscription_discount_remove(subscription=sub, at=at(2024, 2, 10)) == 1
    subscriptions_renew_due(at=at(2024, 3, 1))
    assert [s for s, _ in _lines(_last_invoice(postpaid_team))] == ["fee", "overage"]


def test_coupon_terms_are_checked_and_never_change(postpaid_team, pro_plan):
    with pytest.raises(CouponTermsConflict) as both:
        coupon_create(code="x", name="X", percent_off=D(10), amount_off=D(1), currency="USD")
    assert both.value.param == "percent_off"
    with pytest.raises(InvalidSubscriptionRequest) as over:
        coupon_create(code="x", name="X", percent_off=D(101))
    assert over.value.param == "percent_off"
    with pytest.raises(BillingError) as cents:
        coupon_create(code="x", name="X", amount_off=D("1.001"), currency="USD")
    assert cents.value.param == "amount_off"
    with pytest.raises(CouponTermsConflict) as months:
        coupon_create(code="x", name="X", percent_off=D(10), duration="repeating")
    assert months.value.param == "duration_in_months"
    coupon = coupon_create(code="x", name="X", percent_off=D(10))
    with pytest.raises(InvalidSubscriptionRequest) as frozen:
        coupon_update(coupon=coupon, percent_off=D(20))
    assert frozen.value.param == "percent_off"
    assert coupon_update(coupon=coupon, name="Renamed").name == "Renamed"
    # an archived coupon, or one in another currency, is applied to nobody new; a canceled subscription takes none
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    eur = coupon_create(code="eur", name="EUR", amount_off=D(5), currency="EUR")
    with pytest.raises(InvalidSubscriptionRequest) as currency:
        subscription_discount_apply(subscription=sub, coupon=eur, at=at(2024, 1, 2))
    assert currency.value.param == "coupon"
    coupon_archive(coupon=coupon)
    with pytest.raises(InvalidSubscriptionRequest):
        subscription_discount_apply(subscription=sub, coupon=coupon, at=at(2024, 1, 2))
    subscription_cancel(subscription=sub, at_period_end=False, at=at(2024, 1, 3))
    with pytest.raises(SubscriptionTransitionError):
        subscription_discount_apply(subscription=Subscription.objects.get(pk=sub.pk), coupon=eur)


def test_mrr_counts_the_discounted_fee_while_the_discount_applies(postpaid_team, pro_plan):
    # given two professional subscriptions (49.00), one with 20 % off for 2 months from 1 January
    other = TeamFactory(currency="USD")
    BillingSettings.objects.create(team=other, billing_model="postpaid", credit_limit=D(100000))
    coupon = coupon_create(code="two-months", name="Two", percent_off=D(20), duration="repeating", duration_in_months=2)
    subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1), coupon=coupon)
    subscription_create(team=other, plan=pro_plan, start=at(2024, 1, 1))
    subscriptions_renew_due(at=at(2024, 2, 1))

    # then MRR in February is 49 + 39.20
    assert subscription_stats().reporting.exact == D("88.2")
    assert subscription_stats().reporting.tier_breakdown["professional"].revenue == D("88.20")
    # and once the discount has run out (the period from 1 March), the history shows the expansion back to 49
    subscriptions_renew_due(at=at(2024, 3, 15))
    months = mrr_history(months=3, now=at(2024, 3, 15))["USD"]
    assert [(m.month.month, m.start, m.new, m.expansion, m.end) for m in months] == [
        (1, D("88.2"), D(0), D(0), D("88.2")),
        (2, D("88.2"), D(0), D("9.8"), D(98)),
        (3, D(98), D(0), D(0), D(98)),
    ]
    assert subscription_stats().reporting.exact == months[-1].end


def test_mrr_of_a_yearly_plan_with_amount_off(postpaid_team):
    yearly = plan_create(code="ent-yearly", name="Enterprise", tier="enterprise", currency="USD", fee=D("1200"),
                         interval="year")
    coupon = coupon_create(code="ent-120", name="Ent", amount_off=D(120), currency="USD", duration="forever")
    subscription_create(team=postpaid_team, plan=yearly, start=at(2024, 1, 1), coupon=coupon)
    assert subscription_stats().reporting.exact == D(90)  # (1,200 − 120) / 12


# --- properties ---------------------------------------------------------------------------------------------

fees = st.decimals(min_value=0, max_value=100_000, places=12)
percents = st.decimals(min_value=D("0.01"), max_value=100, places=2)
amounts = st.decimals(min_value=D("0.01"), max_value=200_000, places=2)


@given(fee=fees, percent=percents)
def test_a_percent_discount_is_between_zero_and_the_fee(fee, percent):
    off = discount_amount(fee=fee, percent_off=percent)
    assert 0 <= off <= fee
    assert off == (fee * percent / 100).quantize(D("1e-12")) or off == fee


@given(fee=fees, amount=amounts)
def test_an_amount_discount_is_capped_at_the_fee(fee, amount):
    assert discount_amount(fee=fee, amount_off=amount) == min(amount, fee)


@given(fee=fees, percent=st.one_of(st.none(), percents), amount=amounts,
       overage=st.decimals(min_value=0, max_value=10_000, places=12))
def test_a_discount_never_makes_an_invoice_negative_and_rounds_to_the_minor_unit(fee, percent, amount, overage):
    # given an invoice of a fee, its discount (a percent, else an amount) and an overage
    off = discount_amount(fee=fee, percent_off=percent, amount_off=None if percent is not None else amount)
    lines = [LineDraft("fee", fee, {"section": "fee"}), LineDraft("discount", -off, {"section": "discount"}),
             LineDraft("overage", overage, {"section": "overage"})]
    draft = InvoiceDraft(subscription=None, period_start=None, period_end=None, currency="USD", lines=lines).round()
    # then every amount is in cents, the discount takes no more than the fee, and the invoice is not negative
    assert all(a == a.quantize(D("0.01")) for a in draft.amounts)
    assert draft.amounts[0] + draft.amounts[1] >= 0
    assert draft.subtotal >= 0
    assert abs(draft.subtotal - to_minor_units(fee - off + overage, "USD")) <= D("0.01")


def test_the_kept_discount_counts_follow_applications_renewals_and_removals(postpaid_team, pro_plan, starter_plan):
    # given coupons applied at creation and mid-period, renewals past their ends, a removal and a plan change
    ten = coupon_create(code="ten", name="Ten", percent_off=D(10), duration="repeating", duration_in_months=2)
    once = coupon_create(code="once", name="Once", percent_off=D(50), duration="once")
    other = TeamFactory(currency="USD")
    BillingSettings.objects.create(team=other, billing_model="postpaid", credit_limit=D(100000))
    a = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1), coupon=ten)
    b = subscription_create(team=other, plan=starter_plan, start=at(2024, 1, 1))
    subscription_discount_apply(subscription=b, coupon=once, at=at(2024, 1, 10))

    def kept():
        with connection.cursor() as cursor:
            cursor.execute("SELECT plan_id, status, coupon_id, subscriptions FROM subscriptions_discountcount "
                           "WHERE subscriptions > 0 ORDER BY 1, 2, 3")
            return cursor.fetchall()

    # then the counts say which coupon covers each current period, month after month
    assert kept() == [(pro_plan.pk, "active", ten.pk, 1)]
    subscriptions_renew_due(at=at(2024, 2, 1))
    assert kept() == sorted([(pro_plan.pk, "active", ten.pk, 1), (starter_plan.pk, "active", once.pk, 1)])
    subscriptions_renew_due(at=at(2024, 3, 1))
    assert kept() == []
    subscription_discount_apply(subscription=Subscription.objects.get(pk=a.pk), coupon=coupon_create(
        code="now", name="Now", percent_off=D(5), duration="forever"), at=at(2024, 3, 5))
    assert kept() == []  # it covers the periods from the next one
    subscriptions_renew_due(at=at(2024, 4, 1))
    assert [row[2] for row in kept()] == [Coupon.objects.get(code="now").pk]
    subscription_discount_remove(subscription=Subscription.objects.get(pk=a.pk), at=at(2024, 4, 1))
    assert kept() == []
    assert b.pk
