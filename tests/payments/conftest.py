"""Fixtures of the payment tests: teams with a Stripe customer and a card, on the session's localstripe.

Cards are localstripe's test payment methods (Stripe's own test ids): ``pm_card_visa`` (4242…,
succeeds) and ``pm_card_chargeCustomerFail`` (4000 0000 0000 0341: attaches, then every charge is
declined with ``card_declined``). ``pm_card_visa_chargeDeclined`` (4000 0000 0000 0002) is declined
already when attached, on localstripe as on Stripe.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments.services.customers import customer_ensure
from payments.stripe_client import stripe_call, stripe_client
from teams.models import BillingSettings
from tests.factories import TeamFactory

D = Decimal
VISA = "pm_card_visa"
DECLINED_ON_CHARGE = "pm_card_chargeCustomerFail"


def card_add(team, test_card: str = VISA, *, default: bool = True) -> str:
    """Attach a new card (a fresh copy of a localstripe test card) to the team's customer; its id."""
    client = stripe_client()
    customer_id = customer_ensure(team=team)
    pm = stripe_call(client.v1.payment_methods.retrieve, test_card)
    stripe_call(client.v1.payment_methods.attach, pm.id, params={"customer": customer_id})
    if default:
        stripe_call(client.v1.customers.update, customer_id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return pm.id


def paying_team(*, card: str | None = VISA, automatic_collection: bool = True, **settings_fields):
    """A USD team with billing settings (automatic collection on), a Stripe customer and, by default, a card."""
    team = TeamFactory(currency="USD")
    BillingSettings.objects.create(team=team, automatic_collection=automatic_collection,
                                   notify_emails="billing@example.com", **settings_fields)
    if card:
        card_add(team, card)
    return team


@pytest.fixture
def team_with_card(db, stripe_settings):
    return paying_team()


@pytest.fixture
def team_with_declining_card(db, stripe_settings):
    return paying_team(card=DECLINED_ON_CHARGE)
