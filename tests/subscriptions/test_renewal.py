"""Renewal: the fee in advance and the overage in arrears on one invoice, once per subscription and period."""

from __future__ import annotations

from decimal import Decimal

from invoices.models import Invoice
from subscriptions.models import Subscription, SubscriptionPeriod
from subscriptions.preview import subscription_upcoming_invoice
from subscriptions.selectors import subscription_usage
from subscriptions.services.lifecycle import subscription_change_plan, subscription_create
from subscriptions.services.plans import plan_create
from subscriptions.services.renewal import subscription_renew, subscriptions_renew_due

from .conftest import at, record_usage

D = Decimal


def test_usage_seed_example_included_500_used_585_overage_costs_017(postpaid_team, pro_plan):
    # given the seed's subscription with 585 units used of 500 included
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    record_usage(postpaid_team, 500, at(2024, 1, 10))
    record_usage(postpaid_team, 85, at(2024, 1, 20))
    # when its usage is read
    (meter,) = subscription_usage(subscription=sub, at=at(2024, 1, 25))
    # then 85 units are overage, at 2.00 USD per 1,000: 0.17 USD
    assert (meter.included, meter.used, meter.remaining, meter.overage) == (D(500), D(585), D(0), D(85))
    assert meter.overage_cost == D("0.17") and meter.price_per_1k == D("2.00")


def test_renewal_invoices_fee_in_advance_and_overage_in_arrears_once(postpaid_team, pro_plan):
    # given a subscription whose January used 585 units
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    record_usage(postpaid_team, 585, at(2024, 1, 20))
    # when renewal runs on 1 February, twice
    first = subscriptions_renew_due(at=at(2024, 2, 1))
    second = subscriptions_renew_due(at=at(2024, 2, 1))
    # then one invoice carries February's fee and January's overage; the second run wrote nothing
    assert (first.renewed, first.invoices, second.renewed, second.invoices) == (1, 1, 0, 0)
    invoice = Invoice.objects.filter(kind="subscription").order_by("-pk").first()
    assert invoice.status == "pending" and invoice.number
    assert [(line.details["section"], line.amount) for line in invoice.lines.order_by("position")] == [
        ("fee", D("49.00")), ("overage", D("0.17"))]
    assert invoice.subtotal == D("49.17") == invoice.total
    assert (invoice.period_start.isoformat(), invoice.period_end.isoformat()) == ("2024-02-01", "2024-03-01")
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (at(2024, 2, 1), at(2024, 3, 1))
    assert SubscriptionPeriod.objects.filter(subscription=sub).count() == 2
    # and a renewal of the one subscription is idempotent too
    assert subscription_renew(subscription=sub, at=at(2024, 2, 1)).renewed == 0
    assert Invoice.objects.filter(kind="subscription").count() == 2  # the first period's and February's
    assert Subscription.objects.get().status == "active"


def test_upcoming_invoice_previews_the_renewal_and_a_change_without_writing(postpaid_team, pro_plan, starter_plan):
    # given a starter subscription with 350 units used of 100 included by mid-April
    sub = subscription_create(team=postpaid_team, plan=starter_plan, start=at(2024, 4, 1))
    record_usage(postpaid_team, 350, at(2024, 4, 10))
    written = Invoice.objects.count()
    # when the next invoice is previewed, and an upgrade to professional on 16 April
    upcoming = subscription_upcoming_invoice(subscription=sub, at=at(2024, 4, 16))
    change = subscription_upcoming_invoice(subscription=sub, at=at(2024, 4, 16), plan=pro_plan)
    # then the preview bills May's fee and April's overage so far (250 × 3.00 / 1,000 = 0.75)
    assert [(line.details["section"], amount) for line, amount in zip(upcoming.lines, upcoming.amounts)] == [
        ("fee", D("19.00")), ("overage", D("0.75"))]
    # and the change adds its proration (−9.50 + 24.50), May's fee on the new plan, and prices April's usage on it
    # (350 of 500 included: no overage); nothing was written
    assert (change.proration.credit, change.proration.charge, change.subtotal) == (D("-9.50"), D("24.50"), D("64.00"))
    assert Invoice.objects.count() == written


def test_upcoming_invoice_of_a_monthly_to_yearly_change_now_is_the_invoice_the_change_writes(postpaid_team, pro_plan):
    # given a professional monthly subscription (49.00) from 1 April with 700 units used by 16 April 00:00
    yearly = plan_create(code="pro-yearly", name="Professional yearly", tier="professional", currency="USD",
                         fee=D("490.00"), interval="year",
                         charges=[{"meter": "inference", "resource_type": "llm", "unit": "token",
                                   "included_units": D(6000), "charge_model": "standard", "price": D("2.00"),
                                   "price_per_units": D(1000)}])
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 4, 1))
    record_usage(postpaid_team, 700, at(2024, 4, 10))
    change_at = at(2024, 4, 16)

    # when a change to the yearly plan now is previewed
    preview = subscription_upcoming_invoice(subscription=sub, at=change_at, plan=yearly, when="now")

    # then (Stripe's rule) the anchor resets to the change: the yearly fee from 16 April 2024 to 16 April 2025 now,
    # a credit for the unused 15 of 30 days of April's 49.00, and April's overage so far (200 × 2.00 / 1,000)
    assert (preview.period_start, preview.period_end) == (change_at, at(2025, 4, 16))
    sections = [(line.details["section"], amount) for line, amount in zip(preview.lines, preview.amounts)]
    assert sections == [("fee", D("490.00")), ("proration", D("-24.50")), ("overage", D("0.40"))]
    assert preview.subtotal == D("465.90")

    # and the change writes exactly that invoice, at once
    subscription_change_plan(subscription=sub, plan=yearly, when="now", at=change_at)
    invoice = Invoice.objects.filter(team=postpaid_team, kind="subscription").order_by("-pk").first()
    assert [(line.details["section"], line.amount) for line in invoice.lines.order_by("position")] == sections
    assert invoice.subtotal == preview.subtotal
    sub.refresh_from_db()
    assert (sub.plan_id, sub.billing_anchor, sub.current_period_end) == (yearly.pk, change_at, at(2025, 4, 16))
