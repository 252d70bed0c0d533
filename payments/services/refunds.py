"""Refunds: a credit note on a paid invoice pays the credit back through Stripe.

Flow (:func:`invoice_refund`): check and claim under the invoice's lock (a ``Refund`` row,
``pending``, key ``refund-<invoice>-<n>``) → ask Stripe for the Refund on the payment's
PaymentIntent, no transaction open (amount in minor units, the row's key as idempotency key) →
in one transaction: the credit note (``invoices.services.credit_notes.credit_note_issue`` with the
refund id as ``refund_reference``), the refund ``succeeded`` and linked to it, the payment's
``amount_refunded``. Stripe's refund id is kept on the row as soon as it is known, so a failure
between the refund and the credit note leaves a trace finance sees (a ``pending`` refund with an id),
and a retry with the same row reuses Stripe's answer (idempotency key) instead of refunding twice.

Without Stripe configured, or for an invoice paid by hand (no succeeded Stripe payment), a paid
invoice is credited by a manual refund: ``credit_note_issue(..., refund_reference=<bank reference>)``.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import F

from billing_site.money import MoneyError, parse_amount, to_stripe_amount
from invoices.errors import CreditNoteLimitExceeded, InvalidInvoiceRequest, InvalidTransition
from invoices.models import CreditNote, Invoice
from invoices.services.credit_notes import credit_note_issue
from invoices.services.lifecycle import invoice_lock

from ..errors import PaymentError, StripeRequestRefused
from ..models import Payment, Refund
from ..stripe_client import payments_require, stripe_call, stripe_client


def invoice_stripe_payment(*, invoice: Invoice) -> Payment | None:
    """The succeeded Stripe payment of ``invoice`` (the latest), or ``None`` (paid by hand, or unpaid)."""
    return (Payment.objects.filter(invoice=invoice, kind=Payment.Kind.INVOICE, status=Payment.Status.SUCCEEDED)
            .order_by("-succeeded_at", "-pk").first())


def invoice_refund(*, invoice: Invoice, reason: str, amount: Decimal | None = None, description: str = "",
                   issued_by=None) -> CreditNote:
    """Credit a paid invoice and refund the credit through Stripe.

    Args:
        invoice: a ``paid`` invoice paid through Stripe.
        reason: a ``CreditNote.Reason`` value.
        amount: the refund, tax-inclusive, a positive Decimal (or decimal string) in whole minor units;
            default everything not yet credited (``total − credited_total``).
        description, issued_by: as for ``credit_note_issue``.

    Returns:
        The ``CreditNote``, its ``refund_reference`` the Stripe refund id (``re_…``); the invoice
        stays ``paid`` with a larger ``credited_total``; the payment's ``amount_refunded`` grows.

    Raises:
        InvalidTransition: the invoice is not paid, or was paid by hand (refund it by hand and give
            the reference to ``credit_note_issue``).
        CreditNoteLimitExceeded: more than is left to credit on the invoice or to refund on the payment.
        InvalidInvoiceRequest: a malformed amount or an unknown reason (``param`` names it).
        PaymentError, StripeRequestRefused: Stripe refused the refund (the refund row is ``failed``;
            nothing credited).
        PaymentsNotConfigured, StripeUnavailable (the refund row stays ``pending``).
    """
    payments_require()
    if reason not in CreditNote.Reason.values:
        raise InvalidInvoiceRequest(
            f"{reason!r} is not a credit note reason (reasons: {', '.join(CreditNote.Reason.values)})", param="reason")
    refund = _refund_claim(invoice, amount=amount, issued_by=issued_by)
    if not refund.stripe_refund_id:
        try:
            answer = stripe_call(stripe_client().v1.refunds.create, params={
                "payment_intent": refund.payment.stripe_payment_intent_id,
                "amount": to_stripe_amount(refund.amount, refund.currency),
                "metadata": {"invoice_id": str(invoice.pk), "refund_id": str(refund.pk)},
            }, idempotency_key=refund.idempotency_key)
        except (PaymentError, StripeRequestRefused) as refused:
            Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED, failure_message=refused.message)
            raise
        if answer.status == "failed":
            Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED, stripe_refund_id=answer.id,
                                                       failure_message="Stripe refused the refund.")
            raise PaymentError(f"Stripe refused the refund {answer.id}.", failure_code="refund_failed")
        Refund.objects.filter(pk=refund.pk).update(stripe_refund_id=answer.id)
        refund.stripe_refund_id = answer.id
    with transaction.atomic(durable=True):
        note = credit_note_issue(invoice=invoice, reason=reason, amount=refund.amount, description=description,
                                 issued_by=issued_by, refund_reference=refund.stripe_refund_id)
        Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.SUCCEEDED, credit_note=note)
        Payment.objects.filter(pk=refund.payment_id).update(amount_refunded=F("amount_refunded") + refund.amount)
    return note


def _refund_claim(invoice: Invoice, *, amount, issued_by) -> Refund:
    with transaction.atomic(durable=True):
        locked = invoice_lock(invoice.pk)
        if locked.status != Invoice.Status.PAID:
            raise InvalidTransition(
                f"Invoice {locked.display_number} is {locked.status}; only a paid invoice is refunded "
                f"(an unpaid one is credited by a credit note)", current=locked.status, requested="refunded",
                param="invoice")
        payment = invoice_stripe_payment(invoice=locked)
        if payment is None:
            raise InvalidTransition(
                f"Invoice {locked.display_number} was paid by hand, not through Stripe: refund it by hand and record "
                f"the credit note with the refund's reference", current=locked.status, requested="refunded",
                param="invoice")
        pending = Refund.objects.filter(payment=payment, status=Refund.Status.PENDING).first()
        if pending is not None:  # a refund whose credit note is still missing: finish it first
            return pending
        left = locked.total - locked.credited_total
        if amount is None:
            amount = left
        else:
            try:
                amount = parse_amount(amount, param="amount", positive=True, currency=locked.currency, text=True)
            except MoneyError as exc:
                raise InvalidInvoiceRequest(exc.message, param="amount") from None
        refundable = payment.amount - payment.amount_refunded
        if amount <= 0 or amount > left or amount > refundable:
            raise CreditNoteLimitExceeded(
                f"a refund of {amount} {locked.currency} exceeds what is left on invoice {locked.display_number} "
                f"({left} {locked.currency}) or on its payment ({refundable} {locked.currency})", param="amount")
        n = Refund.objects.filter(payment__invoice=locked).count() + 1
        return Refund.objects.create(payment=payment, amount=amount, currency=locked.currency,
                                     idempotency_key=f"refund-{locked.pk}-{n}", created_by=issued_by)
