"""Subscription lifecycle: trials, cancellations, plan changes, status moves and immutable prices."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoices.models import CreditNote, Invoice
from subscriptions.errors import (
    InvalidPlanConfiguration,
    PlanArchived,
    PlanImmutable,
    SubscriptionExists,
    SubscriptionTransitionError,
)
from subscriptions.models import Subscription, SubscriptionProration
from subscriptions.services.lifecycle import (
    proration_preview,
    subscription_cancel,
    subscription_change_plan,
    subscription_create,
    subscription_trial_end,
)
from subscriptions.services.plans import plan_archive, plan_create, plan_new_version, plan_update
from subscriptions.services.renewal import subscriptions_renew_due
from subscriptions.services.status import subscription_transition
from tests.factories import TeamMembershipFactory

from .conftest import at, record_usage

D = Decimal


def _lines(invoice):
    return [(line.details["section"], line.amount) for line in invoice.lines.order_by("position")]


def test_trial_bills_nothing_then_becomes_active_at_its_end_with_the_anchor_there(postpaid_team, pro_plan):
    # given a 14-day trial started on 1 March
    sub = subscription_create(team=postpaid_team, plan=pro_plan, trial_days=14, start=at(2024, 3, 1))
    assert (sub.status, sub.trial_end, Invoice.objects.count()) == ("trialing", at(2024, 3, 15), 0)
    record_usage(postpaid_team, 5000, at(2024, 3, 5))  # trial usage is free
    # when renewal runs at the trial's end
    subscriptions_renew_due(at=at(2024, 3, 15))
    # then the subscription is active, periods run from 15 March, and only the fee is billed
    sub.refresh_from_db()
    assert (sub.status, sub.current_period_start, sub.current_period_end) == ("active", at(2024, 3, 15), at(2024, 4, 15))
    (invoice,) = Invoice.objects.all()
    assert _lines(invoice) == [("fee", D("49.00"))]


def test_trial_ended_early_bills_from_that_instant(postpaid_team, pro_plan):
    sub = subscription_create(team=postpaid_team, plan=pro_plan, trial_days=30, start=at(2024, 3, 1))
    sub = subscription_trial_end(subscription=sub, at=at(2024, 3, 10))
    assert (sub.status, sub.billing_anchor, sub.current_period_end) == ("active", at(2024, 3, 10), at(2024, 4, 10))
    assert Invoice.objects.get().total == D("49.00")


def test_cancel_at_period_end_bills_the_last_overage_and_stops(postpaid_team, pro_plan):
    # given a subscription asked to cancel at the end of January, with 1,500 units used (1,000 beyond 500)
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    subscription_cancel(subscription=sub, at_period_end=True, at=at(2024, 1, 10))
    record_usage(postpaid_team, 1500, at(2024, 1, 20))
    # when renewal runs on 1 February
    result = subscriptions_renew_due(at=at(2024, 2, 1))
    # then it is canceled, and a final invoice bills only January's overage (2.00 USD)
    sub.refresh_from_db()
    assert (result.canceled, sub.status, sub.ended_at) == (1, "canceled", at(2024, 2, 1))
    final = Invoice.objects.order_by("-pk").first()
    assert _lines(final) == [("overage", D("2.00"))]
    # and nothing renews any more
    assert subscriptions_renew_due(at=at(2024, 6, 1)).renewed == 0


def test_cancel_now_credits_the_unused_time_on_the_open_invoice(postpaid_team, pro_plan):
    # given April billed 49.00 USD in advance (30 days)
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 4, 1))
    # when it is canceled at noon on 16 April: 14.5 days of 30 are unused
    sub = subscription_cancel(subscription=sub, at_period_end=False, at=at(2024, 4, 16, 12))
    # then it ended then, and a credit note gives back 49.00 × 14.5 / 30 = 23.68 USD on April's invoice
    assert (sub.status, sub.ended_at) == ("canceled", at(2024, 4, 16, 12))
    note = CreditNote.objects.get()
    assert note.total == D("23.68") and note.invoice.amount_due == D("25.32")
    assert SubscriptionProration.objects.get().invoice_id == note.invoice_id


def test_upgrade_now_prorates_on_the_next_invoice_and_downgrade_waits(postpaid_team, pro_plan, starter_plan):
    # given a starter subscription (19.00 USD) from 1 April
    sub = subscription_create(team=postpaid_team, plan=starter_plan, start=at(2024, 4, 1))
    # when it upgrades to professional (49.00 USD) on 16 April at 00:00 (15 of 30 days left)
    preview = proration_preview(subscription=sub, plan=pro_plan, at=at(2024, 4, 16))
    sub = subscription_change_plan(subscription=sub, plan=pro_plan, at=at(2024, 4, 16))
    # then the preview and the prorations agree: −9.50 + 24.50 = 15.00 USD, carried by May's invoice
    assert (preview.credit, preview.charge) == (D("-9.50"), D("24.50"))
    assert sub.plan == pro_plan
    subscriptions_renew_due(at=at(2024, 5, 1))
    may = Invoice.objects.order_by("-pk").first()
    assert _lines(may) == [("fee", D("49.00")), ("proration", D("-9.50")), ("proration", D("24.50")),
                           ("overage", D("0.00"))]
    assert may.total == D("64.00")
    # and a downgrade waits for the period end by default
    sub = subscription_change_plan(subscription=sub, plan=starter_plan, at=at(2024, 5, 10))
    assert (sub.plan, sub.pending_plan) == (pro_plan, starter_plan)
    subscriptions_renew_due(at=at(2024, 6, 1))
    sub.refresh_from_db()
    assert (sub.plan, sub.pending_plan) == (starter_plan, None)
    assert _lines(Invoice.objects.order_by("-pk").first())[0] == ("fee", D("19.00"))


def test_change_to_a_yearly_plan_starts_a_new_period_now(postpaid_team, pro_plan):
    yearly = plan_create(code="pro-yearly", name="Professional yearly", tier="professional", currency="USD",
                         fee=D("490.00"), interval="year")
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 4, 1))
    sub = subscription_change_plan(subscription=sub, plan=yearly, at=at(2024, 4, 16), when="now")
    assert (sub.current_period_start, sub.current_period_end) == (at(2024, 4, 16), at(2025, 4, 16))
    invoice = Invoice.objects.order_by("-pk").first()
    assert _lines(invoice) == [("fee", D("490.00")), ("proration", D("-24.50")), ("overage", D("0.00"))]


def test_minimum_commitment_bills_the_shortfall(postpaid_team):
    plan = plan_create(code="commit", name="Committed", tier="enterprise", currency="USD", fee=D("10.00"),
                       minimum_commitment=D("100.00"),
                       charges=[{"meter": "inference", "resource_type": "llm", "price": D("0.01")}])
    subscription_create(team=postpaid_team, plan=plan, start=at(2024, 1, 1))
    record_usage(postpaid_team, 1000, at(2024, 1, 5))  # 10.00 USD of overage
    subscriptions_renew_due(at=at(2024, 2, 1))
    assert _lines(Invoice.objects.order_by("-pk").first()) == [
        ("fee", D("10.00")), ("overage", D("10.00")), ("minimum_commitment", D("80.00"))]


def test_member_subscription_counts_only_that_members_usage(postpaid_team, pro_plan):
    member = TeamMembershipFactory(team=postpaid_team).user
    other = TeamMembershipFactory(team=postpaid_team).user
    sub = subscription_create(team=postpaid_team, plan=pro_plan, user=member, start=at(2024, 1, 1))
    record_usage(postpaid_team, 600, at(2024, 1, 5), user=member)
    record_usage(postpaid_team, 9000, at(2024, 1, 5), user=other)
    subscriptions_renew_due(at=at(2024, 2, 1))
    invoice = Invoice.objects.order_by("-pk").first()
    assert invoice.user_id == member.pk and _lines(invoice)[1] == ("overage", D("0.20"))
    assert sub.team_id == postpaid_team.pk


def test_one_live_subscription_per_subscriber(postpaid_team, pro_plan, starter_plan):
    subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    with pytest.raises(SubscriptionExists):
        subscription_create(team=postpaid_team, plan=starter_plan, start=at(2024, 1, 2))


def test_status_moves_are_checked_by_the_transitions_table(postpaid_team, pro_plan):
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    sub = subscription_transition(subscription=sub, to_status="past_due")
    sub = subscription_transition(subscription=sub, to_status="unpaid")
    with pytest.raises(SubscriptionTransitionError) as error:
        subscription_transition(subscription=sub, to_status="trialing")
    assert "unpaid" in error.value.message and error.value.http_status == 409
    sub = subscription_cancel(subscription=sub, at_period_end=False, at=at(2024, 1, 2))
    with pytest.raises(SubscriptionTransitionError):
        subscription_cancel(subscription=sub, at_period_end=False)
    assert Subscription.TRANSITIONS["canceled"] == ()


def test_prices_of_a_plan_with_subscribers_never_change(postpaid_team, pro_plan):
    # given a plan without subscribers: its prices may change
    plan_update(plan=pro_plan, fee=D("59.00"))
    subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    # when finance changes a price once it has a subscriber, then a clear 409 names the field
    with pytest.raises(PlanImmutable) as error:
        plan_update(plan=pro_plan, fee=D("69.00"))
    assert error.value.param == "fee" and "new plan" in error.value.message and error.value.http_status == 409
    with pytest.raises(PlanImmutable):
        plan_update(plan=pro_plan, charges=[])
    # and names are free to change; a new version copies the charges
    plan_update(plan=pro_plan, name="Professional (2024)")
    v2 = plan_new_version(plan=pro_plan, code="pro-monthly-v2", fee=D("69.00"))
    assert (v2.version, v2.replaces, v2.charges.get().included_units) == (2, pro_plan, D(500))
    plan_archive(plan=pro_plan)
    with pytest.raises(PlanArchived):
        subscription_create(team=postpaid_team, plan=pro_plan)


def test_tiers_unfit_for_the_charge_model_are_refused_naming_the_field(db):
    # each tier is well-formed; together they do not fit the model (the last one is not open): 422
    with pytest.raises(InvalidPlanConfiguration) as error:
        plan_create(code="bad", name="Bad", tier="x", currency="USD", fee=D(1),
                    charges=[{"meter": "m", "resource_type": "llm", "charge_model": "volume",
                              "tiers": [{"up_to": D(10), "unit_price": D(1)}]}])
    assert (error.value.param, error.value.http_status) == ("charges[0].tiers", 422)
