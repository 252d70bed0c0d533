"""The Stripe client: off without a key, the SDK against localstripe with one, errors without secrets."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_site.money import MoneyError, from_stripe_amount, to_stripe_amount
from payments.errors import PaymentError, PaymentsNotConfigured
from payments.stripe_client import payments_configured, stripe_call, stripe_client
from tests.conftest import TEST_STRIPE_SECRET_KEY


def test_without_a_key_payments_are_not_configured_and_the_client_refuses_clearly(settings):
    # given no STRIPE_SECRET_KEY (the test default)
    assert settings.STRIPE_SECRET_KEY == ""
    # when the product asks for the Stripe client
    with pytest.raises(PaymentsNotConfigured) as refused:
        stripe_client()
    # then it says payments are off, with the code and a 4xx status
    assert not payments_configured()
    assert refused.value.code == "payments_not_configured"
    assert 400 <= refused.value.http_status < 500


def test_with_a_key_the_sdk_talks_to_localstripe(stripe_settings):
    # given payments configured against localstripe
    client = stripe_client()
    # when a customer is created
    customer = stripe_call(client.v1.customers.create, params={"name": "Acme", "metadata": {"team_id": "1"}})
    # then localstripe keeps it
    assert customer.id.startswith("cus_")
    assert client.v1.customers.retrieve(customer.id).metadata["team_id"] == "1"


def test_a_declined_card_is_a_402_naming_the_decline_and_never_the_key(stripe_settings):
    # given a customer whose card is declined when charged
    client = stripe_client()
    customer = stripe_call(client.v1.customers.create, params={"name": "Declined"})
    card = client.v1.payment_methods.retrieve("pm_card_chargeCustomerFail")
    stripe_call(client.v1.payment_methods.attach, card.id, params={"customer": customer.id})
    # when it is charged off-session
    with pytest.raises(PaymentError) as refused:
        stripe_call(client.v1.payment_intents.create, params={
            "amount": 1000, "currency": "usd", "customer": customer.id, "payment_method": card.id,
            "confirm": True, "off_session": True})
    # then the error is the product's, with Stripe's code and no secret
    assert refused.value.http_status == 402
    assert refused.value.failure_code == "card_declined"
    assert TEST_STRIPE_SECRET_KEY not in str(refused.value)


def test_stripe_amounts_are_integers_of_minor_units():
    assert to_stripe_amount(Decimal("12.34"), "USD") == 1234
    assert to_stripe_amount(Decimal("500"), "JPY") == 500
    assert from_stripe_amount(1234, "USD") == Decimal("12.34")
    with pytest.raises(MoneyError):
        to_stripe_amount(Decimal("12.345"), "USD")
