"""The team's cards: list, add through a SetupIntent, set the default, detach; and the API door."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from payments.errors import PaymentMethodNotFound
from payments.services.payment_methods import (
    payment_method_detach,
    payment_method_list,
    payment_method_set_default,
    setup_intent_complete,
    setup_intent_create,
)
from payments.stripe_client import stripe_call, stripe_client
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory
from tests.payments.conftest import card_add, paying_team


def confirm_with_card(setup_intent_id: str, test_card: str = "pm_card_visa") -> None:
    """What Stripe.js does in the browser with the client secret: confirm the SetupIntent with a card."""
    client = stripe_client()
    pm = stripe_call(client.v1.payment_methods.retrieve, test_card)
    stripe_call(client.v1.setup_intents.confirm, setup_intent_id, params={"payment_method": pm.id})


def test_a_card_added_through_a_setup_intent_is_listed_and_becomes_the_default(db, stripe_settings):
    # given a team without cards
    team = paying_team(card=None)
    assert payment_method_list(team=team)["payment_methods"] == []
    # when it starts a SetupIntent, the front end confirms it with a 4242 card, and the team completes it
    started = setup_intent_create(team=team)
    assert started["client_secret"].startswith(started["id"])
    confirm_with_card(started["id"])
    added = setup_intent_complete(team=team, setup_intent_id=started["id"])
    # then the card is listed with its brand, last 4 digits and expiry, as the default
    listed = payment_method_list(team=team)
    (card,) = listed["payment_methods"]
    assert (card["id"], card["brand"], card["last4"], card["exp_month"], card["exp_year"], card["is_default"]) == (
        added["id"], "visa", "4242", 12, 2030, True)
    assert card["created"] > 0
    assert listed["default_payment_method"] == card["id"]
    # and completing again changes nothing
    assert setup_intent_complete(team=team, setup_intent_id=started["id"])["id"] == card["id"]
    assert len(payment_method_list(team=team)["payment_methods"]) == 1


def test_the_default_moves_and_a_detached_card_is_gone(db, stripe_settings):
    team = paying_team()
    first = payment_method_list(team=team)["default_payment_method"]
    second = card_add(team, default=False)
    # when the second card becomes the default
    payment_method_set_default(team=team, payment_method_id=second)
    assert payment_method_list(team=team)["default_payment_method"] == second
    # and is then detached
    payment_method_detach(team=team, payment_method_id=second)
    listed = payment_method_list(team=team)
    assert [c["id"] for c in listed["payment_methods"]] == [first]
    assert listed["default_payment_method"] is None


def test_another_teams_card_is_not_found(db, stripe_settings):
    mine, theirs = paying_team(), paying_team()
    their_card = payment_method_list(team=theirs)["default_payment_method"]
    with pytest.raises(PaymentMethodNotFound):
        payment_method_set_default(team=mine, payment_method_id=their_card)
    with pytest.raises(PaymentMethodNotFound):
        payment_method_detach(team=mine, payment_method_id=their_card)
    assert payment_method_list(team=theirs)["default_payment_method"] == their_card


def _member_client(team):
    user = UserFactory()
    TeamMembershipFactory(user=user, team=team)
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_lists_the_callers_cards_in_the_seed_shape(db, stripe_settings):
    team = paying_team()
    response = _member_client(team).get("/api/v1/billing/payment-methods/")
    assert response.status_code == 200, response.content
    body = response.json()
    (card,) = body["payment_methods"]
    assert set(card) == {"id", "type", "brand", "last4", "exp_month", "exp_year", "created", "is_default"}
    assert (card["brand"], card["last4"], body["default_payment_method"]) == ("visa", "4242", card["id"])


def test_the_api_answers_404_for_another_teams_list(db, stripe_settings):
    mine, theirs = paying_team(card=None), paying_team(card=None)
    response = _member_client(mine).get(f"/api/v1/billing/payment-methods/?team={theirs.pk}")
    assert response.status_code == 404


def test_without_stripe_the_payment_endpoints_answer_payments_not_configured(db):
    team = TeamFactory()
    client = _member_client(team)
    for method, url in [("get", "/api/v1/billing/payment-methods/"),
                        ("post", "/api/v1/billing/payment-methods/setup-intents/")]:
        response = getattr(client, method)(url, format="json")
        assert response.status_code == 409, (url, response.content)
        assert response.json()["error"]["code"] == "payments_not_configured"


def test_an_unknown_card_is_404_in_the_error_shape(db, stripe_settings):
    team = paying_team()
    response = _member_client(team).post("/api/v1/billing/payment-methods/pm_doesnotexist/default/", {},
                                         format="json")
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "payment_method_not_found"
