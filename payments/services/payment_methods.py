"""The team's payment methods (cards) at Stripe: list, add through a SetupIntent, set the default, detach.

The cards live at Stripe only (the product keeps no card data): each call reads or writes them
through the SDK. A payment method is the team's when it is attached to the team's customer;
anything else is ``PaymentMethodNotFound`` (404), whoever owns it.
"""

from __future__ import annotations

from typing import Any

from teams.models import Team

from ..errors import InvalidPaymentRequest, PaymentError, PaymentMethodNotFound, StripeRequestRefused
from ..stripe_client import field, payments_require, stripe_call, stripe_client, stripe_id
from .customers import customer_ensure, customer_get


def _card_row(pm: Any, default_id: str) -> dict:
    card = pm.card
    return {"id": pm.id, "type": pm.type, "brand": card.brand, "last4": card.last4,
            "exp_month": int(card.exp_month), "exp_year": int(card.exp_year), "created": int(pm.created),
            "is_default": pm.id == default_id}


def default_payment_method_id(*, customer_id: str) -> str:
    """The customer's default payment method id (``invoice_settings.default_payment_method``), or ``""``."""
    customer = stripe_call(stripe_client().v1.customers.retrieve, customer_id)
    return stripe_id(field(field(customer, "invoice_settings"), "default_payment_method"))


def payment_method_list(*, team: Team) -> dict:
    """The team's cards: ``{"payment_methods": [{id, type, brand, last4, exp_month, exp_year, created
    (Unix seconds), is_default}], "default_payment_method": id | None}``, newest first.

    A team without a Stripe customer has none (no customer is created by a read).

    Raises:
        PaymentsNotConfigured, StripeUnavailable.
    """
    payments_require()
    customer_id = customer_get(team=team)
    if not customer_id:
        return {"payment_methods": [], "default_payment_method": None}
    client = stripe_client()
    default_id = default_payment_method_id(customer_id=customer_id)
    listed = stripe_call(client.v1.payment_methods.list, params={"customer": customer_id, "type": "card", "limit": 100})
    rows = sorted((_card_row(pm, default_id) for pm in listed.data), key=lambda r: (-r["created"], r["id"]))
    return {"payment_methods": rows, "default_payment_method": default_id or None}


def setup_intent_create(*, team: Team) -> dict:
    """Start adding a card: a SetupIntent for off-session use on the team's customer (created if needed).

    Returns ``{"id": "seti_…", "client_secret": "seti_…_secret_…", "status"}``: the front end confirms
    it with Stripe.js and the client secret; then :func:`setup_intent_complete` (or the
    ``setup_intent.succeeded`` webhook) attaches the card and makes it the default if there was none.

    Raises:
        PaymentsNotConfigured, StripeUnavailable.
    """
    payments_require()
    customer_id = customer_ensure(team=team)
    intent = stripe_call(stripe_client().v1.setup_intents.create, params={
        "customer": customer_id, "usage": "off_session", "payment_method_types": ["card"],
        "metadata": {"team_id": str(team.pk)}})
    return {"id": intent.id, "client_secret": intent.client_secret, "status": intent.status}


def setup_intent_complete(*, team: Team, setup_intent_id: str) -> dict:
    """Finish adding a card once its SetupIntent succeeded: the card is attached to the team's customer
    (Stripe does it itself; a server that does not, such as localstripe, gets it attached here) and
    becomes the default when the customer has none. Idempotent: completing twice changes nothing.

    Returns:
        The card's row (``_card_row``: id, brand, last4, exp_month, exp_year, created, is_default).

    Raises:
        PaymentMethodNotFound: not a SetupIntent of the team's customer (404).
        PaymentError: the SetupIntent has not succeeded (402, ``failure_code`` its status).
        PaymentsNotConfigured, StripeUnavailable.
    """
    payments_require()
    customer_id = customer_get(team=team)
    client = stripe_client()
    intent = _retrieve_or_404(client.v1.setup_intents.retrieve, setup_intent_id, "setup_intent", "SetupIntent")
    if not customer_id or stripe_id(intent.customer) != customer_id:
        raise PaymentMethodNotFound(f"No SetupIntent {setup_intent_id} for this team.", param="setup_intent")
    if intent.status != "succeeded":
        raise PaymentError(f"The card is not set up yet (SetupIntent {intent.status}).", failure_code=intent.status)
    pm_id = stripe_id(intent.payment_method)
    pm = stripe_call(client.v1.payment_methods.retrieve, pm_id)
    if stripe_id(pm.customer) != customer_id:
        pm = stripe_call(client.v1.payment_methods.attach, pm_id, params={"customer": customer_id},
                         idempotency_key=f"attach-{pm_id}-{customer_id}")
    default_id = default_payment_method_id(customer_id=customer_id)
    if not default_id:
        stripe_call(client.v1.customers.update, customer_id,
                    params={"invoice_settings": {"default_payment_method": pm_id}})
        default_id = pm_id
    return _card_row(pm, default_id)


def _retrieve_or_404(method, object_id: str, param: str, what: str):
    if not isinstance(object_id, str) or not object_id or len(object_id) > 255:
        raise InvalidPaymentRequest(f"{param} must be a {what} id", param=param)
    try:
        return stripe_call(method, object_id)
    except StripeRequestRefused:
        raise PaymentMethodNotFound(f"No {what} {object_id} for this team.", param=param) from None


def team_payment_method(team: Team, payment_method_id: str):
    customer_id = customer_get(team=team)
    client = stripe_client()
    pm = _retrieve_or_404(client.v1.payment_methods.retrieve, payment_method_id, "payment_method", "payment method")
    if not customer_id or stripe_id(pm.customer) != customer_id:
        raise PaymentMethodNotFound(f"No payment method {payment_method_id} for this team.", param="payment_method")
    return customer_id, pm


def payment_method_set_default(*, team: Team, payment_method_id: str) -> dict:
    """Make one of the team's cards its default (what automatic collection and top-ups charge).

    Returns the card's row with ``is_default`` true.

    Raises:
        PaymentMethodNotFound: not a card of the team's customer (404).
        PaymentsNotConfigured, StripeUnavailable.
    """
    payments_require()
    customer_id, pm = team_payment_method(team, payment_method_id)
    stripe_call(stripe_client().v1.customers.update, customer_id,
                params={"invoice_settings": {"default_payment_method": pm.id}})
    return _card_row(pm, pm.id)


def payment_method_detach(*, team: Team, payment_method_id: str) -> None:
    """Remove one of the team's cards; when it was the default, the team has no default any more.

    Raises:
        PaymentMethodNotFound: not a card of the team's customer (404).
        PaymentsNotConfigured, StripeUnavailable.
    """
    payments_require()
    customer_id, pm = team_payment_method(team, payment_method_id)
    client = stripe_client()
    if default_payment_method_id(customer_id=customer_id) == pm.id:
        stripe_call(client.v1.customers.update, customer_id, params={"invoice_settings": {"default_payment_method": ""}})
    stripe_call(client.v1.payment_methods.detach, pm.id)
