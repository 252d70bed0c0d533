"""Top-ups by card: the wallet is credited once the payment succeeded, exactly once."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from billing_site.errors import IdempotencyError
from payments.models import Payment
from payments.services.collection import payment_intent_apply
from payments.services.customers import customer_get
from payments.services.payment_methods import default_payment_method_id
from payments.services.top_ups import wallet_top_up_by_card
from payments.stripe_client import stripe_client
from tests.factories import TeamMembershipFactory, UserFactory
from tests.payments.conftest import paying_team
from wallets.models import LedgerEntry
from wallets.services.wallets import wallet_open

D = Decimal


def top_ups(wallet):
    return list(LedgerEntry.objects.filter(wallet=wallet, entry_type="top_up"))


def test_a_top_up_by_card_credits_the_wallet_once_the_payment_succeeded(db, stripe_settings):
    # given a team with a 4242 card and an empty wallet
    team = paying_team()
    wallet = wallet_open(team=team)
    # when it tops up 25.00 USD by card
    payment = wallet_top_up_by_card(wallet=wallet, amount=D("25.00"), idempotency_key="top-up-1")
    # then the payment succeeded and the wallet has one top-up entry of 25.00
    wallet.refresh_from_db()
    (entry,) = top_ups(wallet)
    assert (payment.status, payment.ledger_entry_id) == ("succeeded", entry.pk)
    assert entry.amount == D("25.00")
    assert entry.reference_id == payment.stripe_payment_intent_id
    assert wallet.balance == D("25.00")


def test_the_confirmation_and_the_webhook_both_reporting_success_credit_once(db, stripe_settings):
    # given a succeeded top-up, credited by its synchronous confirmation
    team = paying_team()
    wallet = wallet_open(team=team)
    payment = wallet_top_up_by_card(wallet=wallet, amount=D("40.00"), idempotency_key="both-paths")
    # when the webhook reports the same PaymentIntent succeeded, twice (Stripe delivers at least once)
    intent = stripe_client().v1.payment_intents.retrieve(payment.stripe_payment_intent_id)
    payment_intent_apply(payment_intent=intent)
    payment_intent_apply(payment_intent=intent)
    # and the caller retries with the same key
    again = wallet_top_up_by_card(wallet=wallet, amount=D("40.00"), idempotency_key="both-paths")
    # then the wallet has one entry of 40.00, and one payment
    wallet.refresh_from_db()
    assert [e.amount for e in top_ups(wallet)] == [D("40.00")]
    assert wallet.balance == D("40.00")
    assert again.pk == payment.pk
    assert Payment.objects.filter(wallet=wallet).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_confirmation_and_webhooks_racing_on_a_fresh_success_credit_once(stripe_settings):
    # given a top-up that succeeded at Stripe and is not yet applied here (its payment still pending)
    team = paying_team()
    wallet = wallet_open(team=team)
    customer_id = customer_get(team=team)
    payment = Payment.objects.create(
        team=team, kind="top_up", wallet=wallet, amount=D("10.00"), currency="USD", idempotency_key="race",
        stripe_customer_id=customer_id, stripe_payment_method_id=default_payment_method_id(customer_id=customer_id))
    intent = stripe_client().v1.payment_intents.create(params={
        "amount": 1000, "currency": "usd", "customer": customer_id, "payment_method": payment.stripe_payment_method_id,
        "confirm": True, "off_session": True, "metadata": {"payment_id": str(payment.pk)}})
    # when six reporters (the confirmation, webhook deliveries) apply it at the same moment
    barrier = threading.Barrier(6)
    errors = []

    def report():
        try:
            barrier.wait()
            payment_intent_apply(payment_intent=intent)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=report) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then the wallet got one top-up of 10.00, kept on the payment
    assert errors == []
    (entry,) = top_ups(wallet)
    assert entry.amount == D("10.00")
    payment.refresh_from_db()
    assert (payment.status, payment.ledger_entry_id) == ("succeeded", entry.pk)


def test_a_declined_card_credits_nothing(db, stripe_settings):
    team = paying_team(card="pm_card_chargeCustomerFail")
    wallet = wallet_open(team=team)
    payment = wallet_top_up_by_card(wallet=wallet, amount=D("25.00"), idempotency_key="declined")
    assert (payment.status, payment.failure_code) == ("failed", "card_declined")
    assert top_ups(wallet) == []


def test_a_key_reused_for_another_amount_is_refused(db, stripe_settings):
    team = paying_team()
    wallet = wallet_open(team=team)
    wallet_top_up_by_card(wallet=wallet, amount=D("5.00"), idempotency_key="k")
    with pytest.raises(IdempotencyError):
        wallet_top_up_by_card(wallet=wallet, amount=D("6.00"), idempotency_key="k")


def test_the_api_tops_up_the_callers_wallet(db, stripe_settings):
    team = paying_team()
    wallet = wallet_open(team=team)
    user = UserFactory()
    TeamMembershipFactory(user=user, team=team)
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/billing/top-ups/", {"wallet": wallet.pk, "amount": "12.50"}, format="json",
                           headers={"Idempotency-Key": "api-1"})
    assert response.status_code == 201, response.content
    assert (response.json()["status"], response.json()["amount"]) == ("succeeded", "12.50")
    assert [e.amount for e in top_ups(wallet)] == [D("12.50")]
    # without a key: refused before anything is charged
    refused = client.post("/api/v1/billing/top-ups/", {"wallet": wallet.pk, "amount": "12.50"}, format="json")
    assert refused.status_code == 422
