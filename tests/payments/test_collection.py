"""Automatic collection: issuing an invoice charges the team's default card off-session."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from invoices.models import Invoice
from invoices.services.lifecycle import invoice_issue
from jobs.models import JobProgress
from payments.models import Payment
from payments.services.collection import invoice_collect, invoice_payment_attempt, payment_intent_refresh
from payments.stripe_client import stripe_client
from subscriptions.models import Subscription
from subscriptions.services.lifecycle import subscription_create
from subscriptions.services.plans import plan_create
from teams.models import BillingSettings
from tests.factories import draft_invoice
from tests.payments.conftest import paying_team

D = Decimal


@pytest.mark.django_db(transaction=True)
def test_issuing_an_invoice_charges_the_default_card_and_pays_it(stripe_settings, run_jobs):
    # given a team with automatic collection and a 4242 card
    team = paying_team()
    # when its invoice of 123.45 USD is issued and the queued jobs run
    invoice = invoice_issue(invoice=draft_invoice(team=team, amounts=("123.45",)))
    run_jobs(queues=["billing"])
    # then the invoice is paid with the charge as its reference
    invoice.refresh_from_db()
    payment = Payment.objects.get(invoice=invoice)
    assert invoice.status == Invoice.Status.PAID
    assert invoice.payment_reference == payment.stripe_charge_id
    assert payment.stripe_charge_id.startswith("ch_")
    # and Stripe charged 12345 cents in USD, with the idempotency key derived from the invoice
    intent = stripe_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    assert (intent.amount, intent.currency, intent.status) == (12345, "usd", "succeeded")
    assert (payment.status, payment.amount, payment.currency, payment.attempt) == ("succeeded", D("123.45"), "USD", 1)
    assert payment.idempotency_key == f"invoice-{invoice.pk}-attempt-1"


@pytest.mark.django_db(transaction=True)
def test_no_collection_is_queued_without_automatic_collection_or_without_stripe(settings, stripe_settings):
    # given a team with a card but automatic collection off
    manual = paying_team(automatic_collection=False)
    invoice_issue(invoice=draft_invoice(team=manual))
    # and, once Stripe is switched off, a team with automatic collection
    auto = paying_team()
    settings.STRIPE_SECRET_KEY = ""
    invoice_issue(invoice=draft_invoice(team=auto))
    # then no collection job was queued
    assert not JobProgress.objects.filter(title__startswith="Collect invoice").exists()


def test_a_declined_card_leaves_the_invoice_open_and_the_subscription_past_due(db, stripe_settings):
    # given a subscribed team whose card is declined when charged, and its issued subscription invoice
    team = paying_team(card="pm_card_chargeCustomerFail", billing_model="postpaid", credit_limit=D(100000))
    plan = plan_create(code="pro", name="Pro", tier="professional", currency="USD", fee=D("49.00"), charges=[])
    sub = subscription_create(team=team, plan=plan, start=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    invoice = Invoice.objects.get(subscription_periods__subscription=sub)
    assert (invoice.status, sub.status) == ("pending", "active")
    # when it is collected
    payment = invoice_collect(invoice_id=invoice.pk)
    # then the payment failed with Stripe's code and message, the invoice is still open, the subscription past due
    invoice.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("failed", "card_declined")
    assert payment.failure_message
    assert invoice.status == "pending"
    assert Subscription.objects.get(pk=sub.pk).status == "past_due"
    # and a later attempt is a new payment with its own idempotency key
    again = invoice_payment_attempt(invoice=invoice)
    assert (again.attempt, again.status, again.idempotency_key) == (2, "failed", f"invoice-{invoice.pk}-attempt-2")


def test_collecting_a_paid_invoice_again_charges_nothing_more(db, stripe_settings):
    team = paying_team()
    invoice = invoice_issue(invoice=draft_invoice(team=team))
    first = invoice_collect(invoice_id=invoice.pk)
    assert first.status == "succeeded"
    # when collection runs again (a job retried), and the PaymentIntent is re-read (a late report)
    assert invoice_collect(invoice_id=invoice.pk) is None
    payment_intent_refresh(payment=first)
    # then there is still one payment and the invoice is paid once
    assert Payment.objects.filter(invoice=invoice).count() == 1
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"


def test_a_team_without_a_card_is_not_charged(db, stripe_settings):
    team = paying_team(card=None)
    invoice = invoice_issue(invoice=draft_invoice(team=team))
    assert invoice_collect(invoice_id=invoice.pk) is None
    assert not Payment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_subscription_invoice_issued_in_bulk_is_collected_too(stripe_settings, run_jobs):
    # given a postpaid team with automatic collection and a 4242 card
    team = paying_team(billing_model="postpaid", credit_limit=D(100000))
    plan = plan_create(code="team-pro", name="Pro", tier="professional", currency="USD", fee=D("49.00"), charges=[])
    # when it subscribes (its first invoice is written and issued by the subscriptions' bulk issue) and the jobs run
    sub = subscription_create(team=team, plan=plan, start=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    run_jobs(queues=["billing"])
    # then the fee's invoice is paid by card
    invoice = Invoice.objects.get(subscription_periods__subscription=sub)
    assert invoice.status == "paid"
    assert Payment.objects.get(invoice=invoice).amount == D("49.00")


def test_the_command_collects_invoices_issued_before_automatic_collection_was_on(db, stripe_settings):
    # given an invoice issued while the team had automatic collection off, then turned on
    team = paying_team(automatic_collection=False)
    invoice = invoice_issue(invoice=draft_invoice(team=team, amounts=("15.00",)))
    BillingSettings.objects.filter(team=team).update(automatic_collection=True)
    # when the command runs, twice
    out = StringIO()
    call_command("collect_invoices", stdout=out)
    call_command("collect_invoices", stdout=StringIO())
    # then the invoice was charged once and is paid
    assert "1 invoice(s) charged: 1 paid" in out.getvalue()
    assert Payment.objects.filter(invoice=invoice).count() == 1
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"


def test_the_command_says_payments_are_not_configured(db):
    with pytest.raises(CommandError, match="not configured"):
        call_command("collect_invoices")
