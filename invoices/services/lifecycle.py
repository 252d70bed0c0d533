"""The invoice lifecycle: issue, send, pay, overdue, cancel, and the one check of a status move.

The allowed moves are data on the model (``Invoice.TRANSITIONS``, ``Invoice.CREDIT_NOTE_ONLY``)
and :func:`invoice_check_transition` is the one function that checks them, for every service
that changes an invoice's status (here, the billing run's generation and credit notes).
Each service locks the invoice row, re-reads it, checks the move and saves it, in one
``transaction.atomic()``. Not a durable one: the API runs them inside the transaction that stores
an idempotent request's response (``Idempotency-Key``), so the response is kept only with the move.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing_site.money import format_amount
from jobs.tasks import mail_queue
from teams.models import BillingSettings
from teams.selectors import billing_settings_get
from wallets.services.posting import wallet_settle_invoice
from webhooks.services import event_record

from ..errors import DuplicateInvoiceNumber, InvalidInvoiceRequest, InvalidTransition
from ..models import DocumentSequence, Invoice
from ..numbering import (
    document_number_next,
    invoice_number_clean,
    invoice_number_taken,
    invoice_save_numbered,
)
from ..signals import invoices_issued, invoices_paid
from .pdf_storage import invoice_pdf_discard, invoice_pdf_store

#: What a status is called in an error message when a move is refused.
_NONE = "none"


def invoice_lock(pk: int) -> Invoice:
    """Lock the invoice row (``SELECT … FOR UPDATE`` of the invoice only) and re-read it, team joined."""
    return Invoice.objects.select_for_update(of=("self",)).select_related("team").get(pk=pk)


def _allowed_text(current: str) -> str:
    allowed = [
        f"{to} (by a full credit note)" if (current, to) in Invoice.CREDIT_NOTE_ONLY else to
        for to in Invoice.TRANSITIONS.get(current, ())
    ]
    return ", ".join(allowed) or _NONE


def invoice_check_transition(*, invoice: Invoice, to_status: str, by_credit_note: bool = False) -> None:
    """Refuse a status move that ``Invoice.TRANSITIONS`` does not allow: the one place it is checked.

    Args:
        invoice: the invoice as read under its row lock.
        to_status: the requested status (a ``Invoice.Status`` value).
        by_credit_note: the move is made by issuing a full credit note; only then are the moves in
            ``Invoice.CREDIT_NOTE_ONLY`` (an issued invoice to ``cancelled``) allowed.

    Raises:
        InvalidTransition: the move is not allowed; the message names the invoice, its current
            status, the requested one and the allowed ones, e.g. "Invoice INV-20261122-0003 is
            paid; it cannot move to draft (allowed: none)".
        InvalidInvoiceRequest: ``to_status`` is no status at all (``param`` ``status``).
    """
    current = invoice.status
    if to_status not in Invoice.Status.values:
        raise InvalidInvoiceRequest(
            f"{to_status!r} is not an invoice status (statuses: {', '.join(Invoice.Status.values)})", param="status"
        )
    if to_status not in Invoice.TRANSITIONS.get(current, ()):
        raise InvalidTransition(
            f"Invoice {invoice.display_number} is {current}; it cannot move to {to_status} "
            f"(allowed: {_allowed_text(current)})",
            current=current, requested=to_status, param="status",
        )
    if (current, to_status) in Invoice.CREDIT_NOTE_ONLY and not by_credit_note:
        raise InvalidTransition(
            f"Invoice {invoice.display_number} is {current}; it cannot move to {to_status} except by issuing a "
            f"full credit note (allowed: {_allowed_text(current)})",
            current=current, requested=to_status, param="status",
        )


def invoice_issue(
    *, invoice: Invoice, issued_by=None, number: str | None = None, issue_date: dt.date | None = None,
) -> Invoice:
    """Issue a draft invoice (``draft`` → ``pending``): number it, date it, freeze it, store its PDF.

    Args:
        invoice: a draft ``Invoice`` (re-read under its row lock).
        issued_by: the user who issues it (kept in ``issued_by``), or ``None`` for the system.
        number: the caller's own invoice number (text, at most 64 characters); by default the number
            given at generation (``invoice_generate(number=…)``), else the next gap-free number of
            the issue date's year (``settings.BILLING_INVOICE_NUMBER_FORMAT``, default
            ``INV-YYYYMMDD-NNNN``, :mod:`invoices.numbering`).
        issue_date: the date printed on the invoice (default: today, local time zone); the due
            date is ``issue_date + payment_terms_days`` (the team's billing settings, default 30).

    Returns:
        The invoice as stored: ``status`` pending, ``number``, ``issue_date``, ``due_date``,
        ``issued_at``, ``issued_by``, and ``pdf`` / ``pdf_sha256`` of the PDF rendered once, in the
        same transaction (``invoices.services.pdf_storage.invoice_pdf_store``). From now on its amounts and lines
        never change (model, queryset and, on PostgreSQL, a trigger refuse). ``invoices.signals.invoices_issued``
        is sent in the transaction (the payments app queues automatic collection).

    Raises:
        InvalidTransition: the invoice is not a draft.
        DuplicateInvoiceNumber: ``number`` is used by another invoice (``param`` ``invoice_number``).
        InvalidInvoiceRequest: ``number`` is empty or too long.
        Nothing is written when any error is raised (the sequence number is given back).
    """
    if number is not None:
        number = invoice_number_clean(number)
    with transaction.atomic():
        locked = invoice_lock(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.PENDING)
        billing = billing_settings_get(team=locked.team)
        issue_date = issue_date or timezone.localdate()
        number = number or locked.number
        if number:
            if invoice_number_taken(number, excluding=locked.pk):
                raise DuplicateInvoiceNumber(f"invoice number {number} is already used by another invoice")
        else:
            number = document_number_next(
                kind=DocumentSequence.Kind.INVOICE, date=issue_date, is_taken=invoice_number_taken
            )
        locked.number = number
        locked.status = Invoice.Status.PENDING
        locked.issue_date = issue_date
        locked.due_date = issue_date + dt.timedelta(days=billing.payment_terms_days)
        locked.issued_at = timezone.now()
        locked.issued_by = issued_by
        if not locked.billing_address:
            locked.billing_address = billing.billing_address
        # The draft's PDF (if any) is replaced: invoice_pdf_store deletes its file after commit.
        locked.pdf_sha256 = ""
        invoice_save_numbered(locked, [
            "number", "status", "issue_date", "due_date", "issued_at", "issued_by", "billing_address",
            "pdf_sha256", "updated_at",
        ])
        issued = invoice_pdf_store(invoice=locked)
        event_record("invoice.issued", issued, team=issued.team_id)
        # Apps after invoices (payments: automatic collection) defer their work in this transaction.
        invoices_issued.send(sender=Invoice, invoice_ids=[issued.pk])
    return issued


def invoice_mark_sent(*, invoice: Invoice, by=None) -> Invoice:
    """Send an issued invoice to the team (``pending`` → ``sent``, ``sent_at`` now).

    The invoice, with its PDF attached, is e-mailed to the team's billing addresses
    (``BillingSettings.notify_emails``) from the ``mail`` queue, once this transaction commits;
    a team without addresses gets no e-mail (the move is recorded all the same).

    Raises:
        InvalidTransition: the invoice is not ``pending``.
    """
    with transaction.atomic():
        locked = invoice_lock(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.SENT)
        locked.status, locked.sent_at = Invoice.Status.SENT, timezone.now()
        locked.save(update_fields=["status", "sent_at", "updated_at"])
        _invoice_mail(locked)
    return locked


def _invoice_mail(invoice: Invoice) -> None:
    recipients = billing_settings_get(team=invoice.team).notify_email_list
    attachments = [{"name": invoice.pdf.name, "filename": f"{invoice.display_number}.pdf",
                    "mimetype": "application/pdf"}] if invoice.pdf else []
    body = (
        f"Please find attached invoice {invoice.display_number} of {settings.BILLING_COMPANY_NAME} for "
        f"{invoice.team_name}, period {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}.\n\n"
        f"Total: {format_amount(invoice.total, invoice.currency)}\n"
        f"Amount due: {format_amount(invoice.amount_due, invoice.currency)}\n"
        + (f"Due date: {invoice.due_date:%Y-%m-%d}\n" if invoice.due_date else "")
    )
    mail_queue(subject=f"Invoice {invoice.display_number} — {invoice.team_name}", body=body, to=recipients,
               attachments=attachments)


def invoice_mark_paid(*, invoice: Invoice, payment_reference: str, by=None, paid_at: dt.datetime | None = None) -> Invoice:
    """Record the payment of an issued invoice (``pending``/``sent``/``overdue`` → ``paid``).

    Args:
        payment_reference: the bank or transfer reference (text, at most 200 characters; may be
            empty), stored on the invoice.
        by: the user recording the payment; the author of the settlement entry.
        paid_at: when it was paid (aware datetime; default now).

    For a team on the ``postpaid`` billing model the payment also settles its team wallet: one
    ``invoice_settlement`` ledger entry crediting ``amount_due`` (``total − credited_total``, in
    the invoice's currency), idempotent by invoice (``wallets.services.wallet_settle_invoice``).
    Prepaid teams' invoices record the payment only (their credit was bought up front).
    ``invoices.signals.invoices_paid`` is sent in the transaction (payments ends a dunning).

    Raises:
        InvalidTransition: the invoice is a draft, already paid or cancelled.
        InvalidInvoiceRequest: ``payment_reference`` is longer than 200 characters.
    """
    payment_reference = (payment_reference or "").strip()
    if len(payment_reference) > Invoice._meta.get_field("payment_reference").max_length:
        raise InvalidInvoiceRequest("payment_reference is longer than 200 characters", param="payment_reference")
    with transaction.atomic():
        locked = invoice_lock(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.PAID)
        due = locked.amount_due
        billing = billing_settings_get(team=locked.team)
        if billing.billing_model == BillingSettings.BillingModel.POSTPAID and due > 0:
            wallet_settle_invoice(invoice=locked, amount=due, payment_reference=payment_reference, created_by=by)
        locked.status = Invoice.Status.PAID
        locked.paid_at = paid_at or timezone.now()
        locked.payment_reference = payment_reference
        locked.save(update_fields=["status", "paid_at", "payment_reference", "updated_at"])
        event_record("invoice.paid", locked, team=locked.team_id)
        # Apps after invoices (payments: a dunning ends) defer their work in this transaction.
        invoices_paid.send(sender=Invoice, invoice_ids=[locked.pk])
    return locked


def invoice_mark_overdue(*, invoice: Invoice, by=None) -> Invoice:
    """Move one issued invoice to ``overdue`` (``pending``/``sent`` → ``overdue``), whatever its due date.

    Raises:
        InvalidTransition: the invoice is not ``pending`` or ``sent``.
    """
    with transaction.atomic():
        locked = invoice_lock(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.OVERDUE)
        locked.status = Invoice.Status.OVERDUE
        locked.save(update_fields=["status", "updated_at"])
        event_record("invoice.overdue", locked, team=locked.team_id)
    return locked


def invoices_mark_overdue(*, today: dt.date | None = None) -> list[Invoice]:
    """Move every ``pending`` or ``sent`` invoice whose due date is before ``today`` to ``overdue``.

    ``today`` defaults to the local date; an invoice is overdue the day after its due date (the
    due date itself is the last day to pay). Idempotent: a second run the same day finds nothing.
    Rows are locked in primary-key order and re-checked under the lock, so a payment recorded at
    the same moment wins or waits, never gets overwritten.

    Returns:
        The invoices moved, by pk.
    """
    today = today or timezone.localdate()
    moved = []
    with transaction.atomic():
        candidates = (
            Invoice.objects.select_for_update(of=("self",))
            .filter(status__in=[Invoice.Status.PENDING, Invoice.Status.SENT], due_date__lt=today)
            .order_by("pk")
        )
        for invoice in candidates:
            invoice_check_transition(invoice=invoice, to_status=Invoice.Status.OVERDUE)
            invoice.status = Invoice.Status.OVERDUE
            invoice.save(update_fields=["status", "updated_at"])
            event_record("invoice.overdue", invoice, team=invoice.team_id)
            moved.append(invoice)
    return moved


def invoice_cancel(*, invoice: Invoice, by=None) -> Invoice:
    """Cancel a draft (``draft`` → ``cancelled``); its stored draft PDF is deleted after commit.

    Issued invoices are cancelled only by a full credit note (:func:`credit_note_issue`).

    Raises:
        InvalidTransition: the invoice is issued (the message says a full credit note cancels it),
            or already cancelled.
    """
    with transaction.atomic():
        locked = invoice_lock(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.CANCELLED)
        locked.status = Invoice.Status.CANCELLED
        invoice_pdf_discard(locked)
        locked.save(update_fields=["status", "pdf", "pdf_sha256", "updated_at"])
    return locked


def invoice_transition(*, invoice: Invoice, to_status: str, by=None, payment_reference: str = "") -> Invoice:
    """The one entry point for "change the status" (API ``POST invoices/{id}/status/``, admin actions).

    Dispatches ``pending`` → :func:`invoice_issue`, ``sent`` → :func:`invoice_mark_sent`, ``paid``
    → :func:`invoice_mark_paid` (with ``payment_reference``), ``overdue`` →
    :func:`invoice_mark_overdue`, ``cancelled`` → :func:`invoice_cancel` (drafts only).

    Raises:
        InvalidTransition: ``Invoice.TRANSITIONS`` does not allow the move (``draft`` is never a
            target; an issued invoice is cancelled only by a full credit note).
        InvalidInvoiceRequest: ``to_status`` is not a status.
        and whatever the dispatched service raises.
    """
    if to_status not in Invoice.Status.values:
        invoice_check_transition(invoice=invoice, to_status=to_status)  # raises InvalidInvoiceRequest
    if to_status == Invoice.Status.PENDING:
        return invoice_issue(invoice=invoice, issued_by=by)
    if to_status == Invoice.Status.SENT:
        return invoice_mark_sent(invoice=invoice, by=by)
    if to_status == Invoice.Status.PAID:
        return invoice_mark_paid(invoice=invoice, payment_reference=payment_reference, by=by)
    if to_status == Invoice.Status.OVERDUE:
        return invoice_mark_overdue(invoice=invoice, by=by)
    if to_status == Invoice.Status.CANCELLED:
        return invoice_cancel(invoice=invoice, by=by)
    # draft: no status moves back to draft; let the one check word the refusal.
    with transaction.atomic():
        invoice_check_transition(invoice=invoice_lock(invoice.pk), to_status=to_status)
    raise AssertionError("unreachable: nothing moves to draft")  # pragma: no cover




def invoice_mark_disputed(*, invoice: Invoice, dispute_reference: str, disputed_at: dt.datetime | None = None) -> Invoice:
    """Flag an issued invoice as disputed: a payment of it was contested by the payer's bank.

    Args:
        dispute_reference: the provider's dispute id and reason (text, cut to 200 characters),
            e.g. ``"dp_123 (fraudulent)"`` from Stripe's ``charge.dispute.created``.
        disputed_at: when the dispute was opened (aware datetime; default now).

    The status does not change (a disputed invoice stays paid until finance decides); the flag is
    shown and filtered in the admin. Flagging again keeps the first date and the newest reference.
    Runs inside the caller's transaction when there is one (the Stripe webhook's).

    Raises:
        InvalidInvoiceRequest: the invoice is a draft (never issued, so never paid).
    """
    with transaction.atomic():
        locked = invoice_lock(invoice.pk)
        if not locked.is_issued:
            raise InvalidInvoiceRequest(f"invoice {locked.display_number} is a draft; it cannot be disputed",
                                        param="invoice")
        locked.disputed_at = locked.disputed_at or disputed_at or timezone.now()
        locked.dispute_reference = (dispute_reference or "")[:200]
        locked.save(update_fields=["disputed_at", "dispute_reference", "updated_at"])
    return locked
