"""Stripe webhooks in: the signed event, recorded once, acted on from the object's current state.

``POST /webhooks/stripe/`` (``payments.views.stripe_webhook``) verifies the ``Stripe-Signature``
header with the SDK (``stripe.Webhook.construct_event``, the secret ``STRIPE_WEBHOOK_SECRET``,
Stripe's 300-second tolerance), then calls :func:`stripe_event_process`:

1. an event already recorded is a replay: nothing happens (no call to Stripe either);
2. the event's object is read again from Stripe (``PaymentIntent.retrieve`` …): events arrive in
   any order and more than once, so the product acts on the object's state now, never on the
   payload's (Stripe's advice for out-of-order events);
3. one transaction inserts the :class:`~payments.models.StripeEvent` row (its unique event id is
   the claim: a concurrent delivery of the same event waits on it, then finds it and does nothing)
   and applies the effect; if the effect fails, both roll back and Stripe's next delivery retries.

Handled types are in :data:`HANDLERS`; any other type is recorded as ``ignored`` and answered 200.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import stripe
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q

from billing_site.errors import BillingError
from billing_site.money import format_amount, from_stripe_amount
from invoices.services.lifecycle import invoice_mark_disputed
from jobs.tasks import mail_queue
from teams.models import BillingSettings, Team
from teams.selectors import FINANCE_GROUP

from ..errors import StripeRequestRefused
from ..models import Payment, Refund, StripeEvent
from ..stripe_client import stripe_call, stripe_client, stripe_id
from .collection import payment_intent_apply, top_up_credit
from .payment_methods import default_payment_method_id, setup_intent_complete

logger = logging.getLogger(__name__)

D0 = Decimal(0)

#: Keys never stored from a payload: a PaymentIntent's or SetupIntent's client secret.
_SECRET_KEYS = frozenset({"client_secret"})


def _scrub(value):
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in _SECRET_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


@dataclasses.dataclass
class Outcome:
    """What an event did: ``outcome`` (a ``StripeEvent.Outcome``), a sentence, and the team."""

    outcome: str
    result: str
    team_id: int | None = None
    top_up: Payment | None = None  # a succeeded top-up whose wallet is still to be credited


@dataclasses.dataclass
class Processed:
    """The answer to one delivery: the event's row, and whether it was a replay (nothing done)."""

    event: StripeEvent
    replayed: bool


def stripe_event_process(*, event: stripe.Event) -> Processed:
    """Apply one verified Stripe event once (see the module's docstring); return its row.

    Args:
        event: the event as ``stripe.Webhook.construct_event`` returns it (signature checked).

    A service's refusal (``BillingError``) is recorded as ``refused`` with its message; an object
    Stripe no longer knows (``StripeRequestRefused`` on the re-read: a 404) as ``unmatched``. Raises ``StripeUnavailable``
    when Stripe cannot be read (nothing is recorded: the view answers 502 and Stripe delivers the
    event again), and any bug as is (500, likewise).
    """
    recorded = StripeEvent.objects.filter(event_id=event.id).first()
    if recorded is not None:
        _top_up_credit_missed(recorded)
        return Processed(recorded, replayed=True)
    payload = event.to_dict()  # plain dicts from here on (the SDK's objects are not dicts)
    handler = HANDLERS.get(event.type)
    current, gone = None, ""
    if handler is not None:
        try:
            current = handler.reread(payload)
        except StripeRequestRefused as missing:  # deleted, or of another account or mode
            gone = f"{_obj(payload).get('id') or 'the object'} cannot be read at Stripe: {missing.message}"
    created = payload.get("created")
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                row = StripeEvent.objects.create(
                    event_id=event.id, type=event.type, livemode=bool(payload.get("livemode")),
                    object_id=str(_obj(payload).get("id") or "")[:255],
                    created=dt.datetime.fromtimestamp(created, dt.UTC) if created else None,
                    payload=_scrub(payload),
                )
        except IntegrityError:
            # Another delivery of this event committed first (we waited for it on the unique index).
            return Processed(StripeEvent.objects.get(event_id=event.id), replayed=True)
        if handler is None:
            outcome = Outcome(StripeEvent.Outcome.IGNORED, f"{event.type} is not handled")
        elif gone:
            outcome = Outcome(StripeEvent.Outcome.UNMATCHED, gone)
        else:
            try:
                with transaction.atomic():
                    outcome = handler.apply(payload, current)
            except BillingError as refused:
                # A refusal a redelivery would not change (an invoice that may not be paid any
                # more…): recorded for finance, answered 200 so Stripe stops sending it.
                outcome = Outcome(StripeEvent.Outcome.REFUSED, f"{refused.code}: {refused.message}")
        row.outcome, row.result, row.team_id = outcome.outcome, outcome.result[:500], outcome.team_id
        row.save(update_fields=["outcome", "result", "team"])
    if outcome.top_up is not None:
        # The wallet credit is a durable transaction of its own (wallets), made once the event is
        # recorded; idempotent by PaymentIntent. Interrupted here, it is made by the synchronous
        # answer or by Stripe's next delivery of the event (a replay, below).
        top_up_credit(payment=outcome.top_up)
    return Processed(row, replayed=False)


def _top_up_credit_missed(recorded: StripeEvent) -> None:
    """A replayed ``payment_intent.succeeded`` of a top-up whose credit was interrupted credits it."""
    if recorded.type != "payment_intent.succeeded" or not recorded.object_id:
        return
    missed = Payment.objects.filter(stripe_payment_intent_id=recorded.object_id, kind=Payment.Kind.TOP_UP,
                                    status=Payment.Status.SUCCEEDED, ledger_entry__isnull=True).first()
    if missed is not None:
        top_up_credit(payment=missed)


@dataclasses.dataclass(frozen=True)
class Handler:
    """How one event type is handled: ``reread`` (outside any transaction: calls Stripe) returns
    the object's current state; ``apply`` (inside the event's transaction) acts on it."""

    reread: Callable
    apply: Callable


# --- helpers -------------------------------------------------------------------------------------


def _obj(event) -> dict:
    return (event.get("data") or {}).get("object") or {}


class StripeData(dict):
    """A Stripe object as plain data (``to_dict()``), its top-level keys also read as attributes."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _retrieve(service: str, object_id: str) -> StripeData:
    """The object as Stripe holds it now (``client.v1.<service>.retrieve``)."""
    client = stripe_client()
    return StripeData(stripe_call(getattr(client.v1, service).retrieve, object_id).to_dict())


def _team_of_customer(customer_id: str) -> int | None:
    if not customer_id:
        return None
    return BillingSettings.objects.filter(stripe_customer_id=customer_id).values_list("team_id", flat=True).first()


def finance_addresses() -> list[str]:
    """The addresses of the finance group and the superusers (active, with an address)."""
    users = get_user_model().objects.filter(is_active=True).filter(Q(groups__name=FINANCE_GROUP) | Q(is_superuser=True))
    return sorted(set(users.exclude(email="").values_list("email", flat=True)))


# --- the handlers --------------------------------------------------------------------------------


def _reread_intent(event):
    return _retrieve("payment_intents", _obj(event)["id"])


def _apply_intent(event, intent) -> Outcome:
    """Act on the PaymentIntent's state now, whichever of succeeded / payment_failed announced it:
    ``payment_intent_apply`` pays the invoice or credits the top-up once (ending a dunning), or
    records the failure (starting one)."""
    payment = payment_intent_apply(payment_intent=intent, credit_top_up=False)
    if payment is None:
        return Outcome(StripeEvent.Outcome.UNMATCHED, f"PaymentIntent {intent.id} is not a payment of ours")
    what = f"invoice {payment.invoice.number}" if payment.invoice_id else f"top-up of wallet {payment.wallet_id}"
    if payment.status == Payment.Status.SUCCEEDED:
        credit = payment if payment.kind == Payment.Kind.TOP_UP and payment.ledger_entry_id is None else None
        return Outcome(StripeEvent.Outcome.PROCESSED, f"{what}: paid by {intent.id}", payment.team_id, credit)
    if payment.status in (Payment.Status.FAILED, Payment.Status.CANCELED):
        return Outcome(StripeEvent.Outcome.PROCESSED, f"{what}: payment {payment.status} ({payment.failure_code})",
                       payment.team_id)
    return Outcome(StripeEvent.Outcome.IGNORED, f"{what}: PaymentIntent {intent.id} is {intent.status}",
                   payment.team_id)


def _reread_charge(event):
    return _retrieve("charges", _obj(event)["id"])


def _apply_refunded(event, charge) -> Outcome:
    """The payment's refunded amount follows the charge's: a refund made in the Stripe dashboard is
    recorded too (never lowered: refunds only grow)."""
    payment = (Payment.objects.select_for_update()
               .filter(Q(stripe_charge_id=charge.id) | Q(stripe_payment_intent_id=stripe_id(charge.get("payment_intent")) or "-"))
               .first())
    if payment is None:
        return Outcome(StripeEvent.Outcome.UNMATCHED, f"charge {charge.id} is not a payment of ours")
    # Refunds made through a credit note and not yet recorded (``refunds.invoice_refund`` adds each to
    # ``amount_refunded`` once its credit note is issued) are left for it, so none counts twice.
    pending = sum((r.amount for r in Refund.objects.filter(payment=payment, status=Refund.Status.PENDING)), D0)
    at_stripe = from_stripe_amount(int(charge.get("amount_refunded") or 0), payment.currency)
    refunded = min(at_stripe - pending, payment.amount)
    if refunded > payment.amount_refunded:
        payment.amount_refunded = refunded
        payment.save(update_fields=["amount_refunded", "updated_at"])
    return Outcome(StripeEvent.Outcome.PROCESSED,
                   f"payment {payment.pk}: {format_amount(payment.amount_refunded, payment.currency)} refunded",
                   payment.team_id)


def _reread_setup_intent(event):
    intent = _retrieve("setup_intents", _obj(event)["id"])
    team_id = _team_of_customer(stripe_id(intent.get("customer")))
    if intent.status == "succeeded" and team_id is not None:
        # The card attached and made the default when the team has none: Stripe writes, idempotent,
        # made before the event's transaction (no lock is held while Stripe answers).
        setup_intent_complete(team=Team.objects.get(pk=team_id), setup_intent_id=intent.id)
    return intent


def _apply_setup_intent(event, intent) -> Outcome:
    team_id = _team_of_customer(stripe_id(intent.get("customer")))
    if team_id is None:
        return Outcome(StripeEvent.Outcome.UNMATCHED, f"SetupIntent {intent.id} is not of a team's customer")
    return Outcome(StripeEvent.Outcome.PROCESSED,
                   f"SetupIntent {intent.id} {intent.status}: card {stripe_id(intent.get('payment_method'))}", team_id)


def _reread_payment_method(event):
    method = _retrieve("payment_methods", _obj(event)["id"])
    customer_id = stripe_id(method.get("customer"))
    if event["type"] == "payment_method.attached" and customer_id and _team_of_customer(customer_id):
        _default_if_none(customer_id, method.id)
    return method


def _default_if_none(customer_id: str, method_id: str) -> None:
    """Make the card the customer's default when it has none (a Stripe write, idempotent)."""
    client = stripe_client()
    if not default_payment_method_id(customer_id=customer_id):
        stripe_call(client.v1.customers.update, customer_id,
                    params={"invoice_settings": {"default_payment_method": method_id}})


def _apply_payment_method(event, method) -> Outcome:
    # Attached: the customer is the method's now. Detached: it has none any more; the event's
    # previous attributes (or the payload) name the customer it left.
    customer_id = stripe_id(method.get("customer"))
    if not customer_id:
        previous = (event.get("data") or {}).get("previous_attributes") or {}
        customer_id = stripe_id(previous.get("customer")) or stripe_id(_obj(event).get("customer"))
    team_id = _team_of_customer(customer_id)
    if team_id is None:
        return Outcome(StripeEvent.Outcome.UNMATCHED, f"payment method {method.id} is not of a team's customer")
    card = method.get("card") or {}
    state = "attached" if stripe_id(method.get("customer")) else "detached"
    return Outcome(StripeEvent.Outcome.PROCESSED,
                   f"card {card.get('brand', '')} …{card.get('last4', '')} {state}", team_id)


def _reread_customer(event):
    return _retrieve("customers", _obj(event)["id"])


def _apply_customer(event, customer) -> Outcome:
    team_id = _team_of_customer(customer.id)
    if team_id is None:
        return Outcome(StripeEvent.Outcome.UNMATCHED, f"customer {customer.id} is not a team's")
    return Outcome(StripeEvent.Outcome.PROCESSED,
                   f"customer {customer.id} updated: {customer.get('name') or ''} <{customer.get('email') or ''}>",
                   team_id)


def _reread_dispute(event) -> dict[str, Any]:
    # A dispute's id, charge, amount and reason never change: they are taken from the event. The
    # charge it contests is read again, for the PaymentIntent that names our payment.
    dispute = _obj(event)
    charge_id = stripe_id(dispute.get("charge"))
    return {"dispute": dispute, "charge": _retrieve("charges", charge_id) if charge_id else None}


def _apply_dispute(event, current) -> Outcome:
    dispute, charge = current["dispute"], current["charge"]
    intent_id = stripe_id(dispute.get("payment_intent")) or (stripe_id(charge.get("payment_intent")) if charge else "")
    payment = (Payment.objects.select_related("invoice")
               .filter(Q(stripe_charge_id=stripe_id(dispute.get("charge")) or "-")
                       | Q(stripe_payment_intent_id=intent_id or "-"))
               .first())
    if payment is None or payment.invoice is None:
        return Outcome(StripeEvent.Outcome.UNMATCHED, f"dispute {dispute.get('id')} is not about an invoice of ours")
    reference = f"{dispute.get('id')} ({dispute.get('reason') or 'no reason'})"
    created = dispute.get("created")
    invoice = invoice_mark_disputed(
        invoice=payment.invoice, dispute_reference=reference,
        disputed_at=dt.datetime.fromtimestamp(created, dt.UTC) if created else None,
    )
    amount = format_amount(from_stripe_amount(int(dispute.get("amount") or 0), payment.currency), payment.currency)
    mail_queue(
        subject=f"Payment disputed: invoice {invoice.number}, {amount}",
        body=(f"The payment {payment.reference} of invoice {invoice.number} ({invoice.team_name}) was disputed "
              f"by the cardholder's bank: {amount}, reason {dispute.get('reason') or 'not given'}, dispute "
              f"{dispute.get('id')}.\n\nAnswer it in the Stripe dashboard before its evidence deadline; the "
              f"invoice is flagged disputed in the admin (Invoices, filter \"dispute\")."),
        to=finance_addresses(),
    )
    return Outcome(StripeEvent.Outcome.PROCESSED, f"invoice {invoice.number} disputed: {reference}", payment.team_id)


#: The event types the product acts on; any other is recorded as ``ignored``.
HANDLERS: dict[str, Handler] = {
    "payment_intent.succeeded": Handler(_reread_intent, _apply_intent),
    "payment_intent.payment_failed": Handler(_reread_intent, _apply_intent),
    "charge.refunded": Handler(_reread_charge, _apply_refunded),
    "setup_intent.succeeded": Handler(_reread_setup_intent, _apply_setup_intent),
    "payment_method.attached": Handler(_reread_payment_method, _apply_payment_method),
    "payment_method.detached": Handler(_reread_payment_method, _apply_payment_method),
    "customer.updated": Handler(_reread_customer, _apply_customer),
    "charge.dispute.created": Handler(_reread_dispute, _apply_dispute),
}
