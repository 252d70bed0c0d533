"""Charging an invoice off-session, and applying a PaymentIntent's outcome whoever reports it.

Automatic collection: ``invoices.signals.invoice_issued`` → ``payments.receivers`` defers the job
``payments.tasks.invoice_collect`` in the issuing transaction (so it exists only if the invoice was
issued) → the job calls :func:`invoice_collect` outside any transaction: it claims a ``Payment`` row
(short transaction under the invoice's lock), asks Stripe for a PaymentIntent confirmed off-session
(no transaction open, idempotency key ``invoice-<id>-attempt-<n>``), then applies the outcome
(:func:`payment_intent_apply`).

Outcome, the same whether it comes from the synchronous answer, a webhook (``payment_intent.*``,
the ``dun`` work calls :func:`payment_intent_apply`) or a re-read:

* succeeded: the invoice is paid (``invoices.services.lifecycle.invoice_mark_paid``) with the
  payment's reference (the charge id, else the PaymentIntent id); a top-up credits its wallet once
  (:func:`top_up_credit`); then :func:`payment_succeeded_hook`.
* failed: the invoice stays open, the subscription it bills becomes ``past_due``
  (``subscriptions.services.status.subscriptions_mark_past_due``), the payment keeps Stripe's
  failure code and message; then :func:`payment_failed_hook` (dunning starts there).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing_site.money import from_stripe_amount, to_stripe_amount
from invoices.errors import InvalidTransition
from invoices.models import Invoice
from invoices.services.lifecycle import invoice_lock, invoice_mark_paid
from subscriptions.models import Subscription
from subscriptions.services.status import subscriptions_mark_past_due
from teams.selectors import billing_settings_get
from wallets.services.posting import wallet_top_up

from ..errors import PaymentError, StripeRequestRefused, StripeUnavailable
from ..models import Payment
from ..stripe_client import field, payments_configured, payments_require, stripe_call, stripe_client, stripe_id
from .customers import customer_get
from .dunning import dunning_recover, dunning_start
from .payment_methods import default_payment_method_id

logger = logging.getLogger(__name__)

#: Payments of an invoice that stop a new attempt: one is under way or has succeeded.
LIVE_STATUSES = ("pending", "processing", "requires_action", "succeeded")


# --- hooks for dunning -----------------------------------------------------------------------------------


def payment_failed_hook(*, payment: Payment) -> None:
    """Called once per failed invoice payment, inside the transaction that records the failure.

    Dunning starts here (``payments.services.dunning.dunning_start``: the retries scheduled, the
    team e-mailed); a second failure of the same invoice (a retry) finds its dunning and changes
    nothing. An invoice with nothing left to collect starts none.
    """
    invoice = Invoice.objects.get(pk=payment.invoice_id)
    if invoice.status in Invoice.OPEN_STATUSES and invoice.amount_due > 0:
        dunning_start(invoice=invoice, failure_code=payment.failure_code, failure_message=payment.failure_message)


def payment_succeeded_hook(*, payment: Payment) -> None:
    """Called once per succeeded payment, inside the transaction that records the success.

    Dunning ends here (``payments.services.dunning.dunning_recover``: a payment that arrives later
    makes the subscription active again and unfreezes the wallets the dunning froze).
    """
    if payment.kind == Payment.Kind.INVOICE:
        dunning_recover(invoice=Invoice(pk=payment.invoice_id), recovered_by=payment.reference)


# --- collection ----------------------------------------------------------------------------------------


def invoice_collect(*, invoice_id: int) -> Payment | None:
    """Collect an issued invoice automatically, if everything for it is there; the job's body.

    Nothing happens (``None``) when payments are not configured, the invoice is no longer open or
    has nothing due, the team has no automatic collection, no Stripe customer or no default card.
    Otherwise one attempt (:func:`invoice_payment_attempt`); a declined card is recorded, not raised.

    Raises:
        StripeUnavailable: Stripe did not answer; the payment stays ``pending`` and the job's retry
            resumes it with the same idempotency key.
    """
    if not payments_configured():
        return None
    invoice = Invoice.objects.select_related("team").filter(pk=invoice_id).first()
    if invoice is None or invoice.status not in Invoice.OPEN_STATUSES or invoice.amount_due <= 0:
        return None
    billing = billing_settings_get(team=invoice.team)
    if not billing.automatic_collection or not billing.stripe_customer_id:
        return None
    if not default_payment_method_id(customer_id=billing.stripe_customer_id):
        return None
    try:
        return invoice_payment_attempt(invoice=invoice)
    except PaymentError:
        return Payment.objects.filter(invoice=invoice).order_by("-attempt").first()


def invoices_collect_open(*, limit: int | None = None) -> list[Payment]:
    """Collect the open invoices of teams with automatic collection that were never charged.

    For invoices issued before automatic collection was turned on, or whose collection job was lost:
    open (``pending``, ``sent``, ``overdue``), an amount due, a team with automatic collection and a
    Stripe customer, and **no payment at all** (a failed one is dunning's to retry, on its schedule).
    One :func:`invoice_collect` each, oldest first, outside any transaction. Returns the payments made.
    ``manage.py collect_invoices`` is its door.
    """
    payments_require()
    due = (Invoice.objects.filter(status__in=Invoice.OPEN_STATUSES, total__gt=F("credited_total"),
                                  team__billing_settings__automatic_collection=True, payments__isnull=True)
           .exclude(team__billing_settings__stripe_customer_id="").order_by("issued_at", "pk")
           .values_list("pk", flat=True))
    made = []
    for invoice_id in list(due[:limit] if limit else due):
        payment = invoice_collect(invoice_id=invoice_id)
        if payment is not None:
            made.append(payment)
    return made


def invoice_payment_attempt(*, invoice: Invoice, payment_method_id: str = "", created_by=None) -> Payment:
    """One off-session charge of an open invoice's amount due with the team's card; for automatic
    collection and for dunning's retries.

    Args:
        invoice: an issued invoice awaiting payment (``pending``, ``sent``, ``overdue``).
        payment_method_id: the card to charge (default: the customer's default payment method).

    Returns:
        The ``Payment``: ``succeeded`` (the invoice is paid), ``failed`` (declined: ``failure_code``,
        ``failure_message``; the subscription is past due), ``processing`` or ``requires_action``.
        An attempt under way or succeeded is returned as it is (re-applied), not repeated; a
        ``pending`` one (Stripe's answer was lost) is resumed with its idempotency key.

    Raises:
        InvalidTransition: the invoice is not open, or has nothing due.
        PaymentError: (402) the team has no Stripe customer or no card (``failure_code``
            ``payment_method_missing``). A declined card is *not* raised: it is the failed Payment.
        PaymentsNotConfigured, StripeUnavailable.
    """
    payments_require()
    customer_id = customer_get(team=invoice.team)
    pm_id = payment_method_id or (default_payment_method_id(customer_id=customer_id) if customer_id else "")
    if not customer_id or not pm_id:
        raise PaymentError(f"Team {invoice.team} has no card to charge: add a payment method first.",
                           failure_code="payment_method_missing")
    payment = _invoice_payment_claim(invoice, customer_id=customer_id, payment_method_id=pm_id, created_by=created_by)
    if payment.status == Payment.Status.PENDING:
        return payment_intent_create(payment=payment)
    if payment.stripe_payment_intent_id:
        return payment_intent_refresh(payment=payment)
    return payment


def _invoice_payment_claim(invoice: Invoice, *, customer_id: str, payment_method_id: str, created_by) -> Payment:
    with transaction.atomic(durable=True):
        locked = invoice_lock(invoice.pk)
        if locked.status not in Invoice.OPEN_STATUSES or locked.amount_due <= 0:
            raise InvalidTransition(
                f"Invoice {locked.display_number} is {locked.status}; only an issued invoice with an amount due "
                f"can be charged", current=locked.status, requested="paid", param="invoice")
        live = Payment.objects.filter(invoice=locked, status__in=LIVE_STATUSES).order_by("-attempt").first()
        if live is not None:
            return live
        attempt = Payment.objects.filter(invoice=locked).count() + 1
        return Payment.objects.create(
            team=locked.team, kind=Payment.Kind.INVOICE, invoice=locked, amount=locked.amount_due,
            currency=locked.currency, attempt=attempt, idempotency_key=f"invoice-{locked.pk}-attempt-{attempt}",
            stripe_customer_id=customer_id, stripe_payment_method_id=payment_method_id,
            description=f"Invoice {locked.display_number}"[:500], created_by=created_by,
        )


def payment_intent_create(*, payment: Payment) -> Payment:
    """Ask Stripe for the payment's PaymentIntent, confirmed off-session, and apply the answer.

    No transaction may be open (the call is made outside one). The amount is
    ``billing_site.money.to_stripe_amount`` of ``payment.amount``; the idempotency key is
    ``payment.idempotency_key``, so resuming a ``pending`` payment never charges twice. A decline
    records the failure and returns the failed payment.

    Raises:
        StripeUnavailable: no answer; the payment stays ``pending``.
    """
    metadata = {"payment_id": str(payment.pk), "team_id": str(payment.team_id), "kind": payment.kind}
    if payment.invoice_id:
        metadata["invoice_id"] = str(payment.invoice_id)
    if payment.wallet_id:
        metadata["wallet_id"] = str(payment.wallet_id)
    params = {
        "amount": to_stripe_amount(payment.amount, payment.currency), "currency": payment.currency.lower(),
        "customer": payment.stripe_customer_id, "payment_method": payment.stripe_payment_method_id,
        "confirm": True, "off_session": True, "metadata": metadata,
    }
    try:
        intent = stripe_call(stripe_client().v1.payment_intents.create, params=params,
                             idempotency_key=payment.idempotency_key)
    except PaymentError as declined:
        return payment_failure_record(payment=payment, failure_code=declined.failure_code,
                                      failure_message=declined.message, payment_intent_id=declined.payment_intent_id)
    except StripeRequestRefused as refused:  # e.g. the card was detached since the attempt was claimed
        return payment_failure_record(payment=payment, failure_code=refused.stripe_code or "invalid_request",
                                      failure_message=refused.message)
    return payment_intent_apply(payment_intent=intent, payment=payment)


def payment_intent_refresh(*, payment: Payment) -> Payment:
    """Re-read the payment's PaymentIntent from Stripe and apply it (an out-of-order or lost report)."""
    intent = stripe_call(stripe_client().v1.payment_intents.retrieve, payment.stripe_payment_intent_id)
    return payment_intent_apply(payment_intent=intent, payment=payment)


def _find_payment(payment_intent: Any) -> Payment | None:
    found = Payment.objects.filter(stripe_payment_intent_id=payment_intent.id).first()
    if found is None:
        payment_id = field(field(payment_intent, "metadata"), "payment_id")
        if payment_id and str(payment_id).isdigit():
            found = Payment.objects.filter(pk=int(payment_id), stripe_payment_intent_id="").first()
    return found


def _charge_id(payment_intent: Any) -> str:
    return stripe_id(field(payment_intent, "latest_charge"))


def _last_error(payment_intent: Any) -> tuple[str, str]:
    error = field(payment_intent, "last_payment_error")
    if not error:
        return "", ""
    code = field(error, "decline_code") or field(error, "code") or "payment_failed"
    return str(code), str(field(error, "message") or "The payment failed.")[:2000]


def payment_intent_apply(*, payment_intent: Any, payment: Payment | None = None,
                         credit_top_up: bool = True) -> Payment | None:
    """Apply a PaymentIntent's state to its ``Payment``: idempotent, whoever reports it, in any order.

    Args:
        payment_intent: a Stripe PaymentIntent (the SDK's object, from a create, a retrieve or a
            webhook event's ``data.object``). It is matched to its payment by id, else by its
            ``metadata.payment_id``.
        payment: the payment, when the caller has it.

    A ``succeeded`` payment never goes back; its side effects (invoice paid, wallet credited) are
    made once whatever the number of reports. Runs inside the caller's transaction when there is
    one: the Stripe webhook claims its event in the same transaction
    (``payments.services.stripe_events``) and passes ``credit_top_up=False``, crediting a top-up's
    wallet (:func:`top_up_credit`, durable) once its transaction has committed.

    Returns:
        The payment as stored, or ``None`` when the PaymentIntent is none of the product's.
    """
    payment = payment or _find_payment(payment_intent)
    if payment is None:
        return None
    status = payment_intent.status
    if status == "succeeded":
        return payment_success_record(payment=payment, payment_intent_id=payment_intent.id,
                                      charge_id=_charge_id(payment_intent),
                                      amount_received=field(payment_intent, "amount_received"),
                                      credit_top_up=credit_top_up)
    if status in ("requires_payment_method", "canceled") and (status == "canceled" or _last_error(payment_intent)[0]):
        code, message = _last_error(payment_intent)
        return payment_failure_record(payment=payment, failure_code=code or status,
                                      failure_message=message or f"The payment was {status}.",
                                      payment_intent_id=payment_intent.id, canceled=status == "canceled")
    target = {"processing": Payment.Status.PROCESSING, "requires_action": Payment.Status.REQUIRES_ACTION}.get(status)
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if not locked.stripe_payment_intent_id:
            locked.stripe_payment_intent_id = payment_intent.id
        if target and locked.status not in Payment.FINAL_STATUSES:
            locked.status = target
        locked.save(update_fields=["stripe_payment_intent_id", "status", "updated_at"])
    return locked


def payment_success_record(*, payment: Payment, payment_intent_id: str, charge_id: str = "",
                           amount_received: int | None = None, credit_top_up: bool = True) -> Payment:
    """Record a succeeded payment and make its effects, once (see the module's docstring).

    Inside the caller's transaction when there is one (the webhook's). A top-up's wallet credit
    (:func:`top_up_credit`, a durable transaction of its own) is made at the end, unless
    ``credit_top_up`` is false: a caller inside a transaction (the webhook) credits it after its commit."""
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        first = locked.status != Payment.Status.SUCCEEDED
        if amount_received is not None and from_stripe_amount(int(amount_received), locked.currency) != locked.amount:
            logger.warning("payment %s: Stripe received %s minor units, expected %s %s", locked.pk, amount_received,
                           locked.amount, locked.currency)
        locked.status = Payment.Status.SUCCEEDED
        locked.stripe_payment_intent_id = locked.stripe_payment_intent_id or payment_intent_id
        locked.stripe_charge_id = locked.stripe_charge_id or charge_id
        locked.failure_code, locked.failure_message = "", ""
        locked.succeeded_at = locked.succeeded_at or timezone.now()
        try:
            with transaction.atomic():
                locked.save(update_fields=["status", "stripe_payment_intent_id", "stripe_charge_id", "failure_code",
                                           "failure_message", "succeeded_at", "updated_at"])
        except IntegrityError:  # the PaymentIntent id is another payment's: a bug in the caller
            raise StripeUnavailable(f"PaymentIntent {payment_intent_id} belongs to another payment") from None
        if locked.kind == Payment.Kind.INVOICE:
            invoice = Invoice.objects.get(pk=locked.invoice_id)
            if invoice.status in Invoice.OPEN_STATUSES:
                invoice_mark_paid(invoice=invoice, payment_reference=locked.reference)
            elif first and invoice.status != Invoice.Status.PAID:
                logger.warning("payment %s succeeded for invoice %s, which is %s", locked.pk, invoice.pk, invoice.status)
        if first:
            payment_succeeded_hook(payment=locked)
    if locked.kind == Payment.Kind.TOP_UP and locked.ledger_entry_id is None and credit_top_up:
        top_up_credit(payment=locked)
        locked.refresh_from_db()
    return locked


def top_up_credit(*, payment: Payment):
    """Credit a succeeded top-up's wallet: one ``top_up`` ledger entry, however often it is called.

    ``wallets.services.posting.wallet_top_up`` with the idempotency key ``stripe-<PaymentIntent id>``
    and the same parameters every time: a second call (the webhook after the confirmation, or both at
    once) replays the first entry instead of posting another, and the ledger's unique
    ``(wallet, entry_type, idempotency_key)`` stops a second entry even after the key's record is
    purged. The entry is then kept on ``payment.ledger_entry``. Returns the entry.
    """
    intent_id = payment.stripe_payment_intent_id
    entry = wallet_top_up(
        wallet=payment.wallet, amount=payment.amount, idempotency_key=f"stripe-{intent_id}",
        description=f"Top-up by card ({intent_id})", reference_type="stripe_payment_intent", reference_id=intent_id,
        created_by=payment.created_by, metadata={"payment_id": payment.pk},
    )
    with transaction.atomic(durable=True):
        Payment.objects.filter(pk=payment.pk, ledger_entry__isnull=True).update(ledger_entry=entry,
                                                                                updated_at=timezone.now())
    return entry


def payment_failure_record(*, payment: Payment, failure_code: str, failure_message: str, payment_intent_id: str = "",
                           canceled: bool = False) -> Payment:
    """Record a failed (declined) or canceled payment: the invoice stays open, its subscription becomes
    ``past_due``, :func:`payment_failed_hook` runs once (dunning starts). A succeeded payment is left as
    it is. Inside the caller's transaction when there is one (the webhook's)."""
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status == Payment.Status.SUCCEEDED:
            return locked
        first = locked.status not in (Payment.Status.FAILED, Payment.Status.CANCELED)
        locked.status = Payment.Status.CANCELED if canceled else Payment.Status.FAILED
        if payment_intent_id and not locked.stripe_payment_intent_id:
            locked.stripe_payment_intent_id = payment_intent_id
        locked.failure_code = (failure_code or "payment_failed")[:100]
        locked.failure_message = failure_message or ""
        locked.save(update_fields=["status", "stripe_payment_intent_id", "failure_code", "failure_message",
                                   "updated_at"])
        if first and locked.kind == Payment.Kind.INVOICE:
            subscriptions = Subscription.objects.filter(periods__invoice_id=locked.invoice_id).distinct()
            subscriptions_mark_past_due(subscriptions=list(subscriptions))
            payment_failed_hook(payment=locked)
    return locked
