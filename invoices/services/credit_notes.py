"""Credit notes: the documents that correct an issued invoice, in part or in full.

An issued invoice never changes; a credit note credits (part of) what it bills, never more than
is left on it (``credited_total <= total``, checked under the invoice's row lock), and a credit
note that credits everything left cancels the invoice (``Invoice.CREDIT_NOTE_ONLY``). Amounts
are invoice amounts in the currency's minor units (``billing_site.money``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing_site.money import MoneyError, format_amount, minor_unit, parse_amount, split, to_minor_units
from webhooks.services import event_record

from ..errors import CreditNoteLimitExceeded, InvalidInvoiceRequest, InvalidTransition
from ..models import CreditNote, CreditNoteLine, DocumentSequence, Invoice, InvoiceLine
from ..numbering import document_number_next
from .generation import invoice_tax_amount
from .lifecycle import invoice_check_transition, invoice_lock
from .pdf_storage import credit_note_pdf_store


def _minor_amount(value: object, currency: str, param: str) -> Decimal:
    """A positive Decimal (or decimal string) in whole minor units of ``currency``, quantized to them.

    ``billing_site.money.parse_amount``'s check; a refusal is ``InvalidInvoiceRequest`` (code
    ``invalid_request``) naming ``param``.
    """
    try:
        amount = parse_amount(value, param=param, positive=True, currency=currency, text=True)
    except MoneyError as exc:
        raise InvalidInvoiceRequest(exc.message, param=param) from None
    return to_minor_units(amount, currency)


def _credited_per_line(invoice: Invoice) -> dict[int, Decimal]:
    credited: dict[int, Decimal] = defaultdict(Decimal)
    rows = CreditNoteLine.objects.filter(credit_note__invoice=invoice, invoice_line__isnull=False)
    for line_id, amount in rows.values_list("invoice_line_id", "amount"):
        credited[line_id] += amount
    return credited


def _credit_split(invoice: Invoice, left_subtotal: Decimal, left_tax: Decimal, amount: Decimal) -> tuple[Decimal, Decimal]:
    """Split a tax-inclusive ``amount`` into (subtotal, tax) at the invoice's rate, within what is left of each."""
    if amount == left_subtotal + left_tax:
        return left_subtotal, left_tax
    subtotal = to_minor_units(amount * 100 / (100 + invoice.tax_rate), invoice.currency)
    subtotal = min(subtotal, left_subtotal)
    tax = amount - subtotal
    if tax > left_tax:
        tax = left_tax
        subtotal = amount - tax
    return subtotal, tax


def credit_note_issue(
    *, invoice: Invoice, reason: str, amount: Decimal | None = None, lines: Sequence[Mapping[str, Any]] | None = None,
    description: str = "", issued_by=None, refund_reference: str = "",
) -> CreditNote:
    """Issue a credit note on an issued invoice: a full credit (cancels it) or a partial one (reduces what is due).

    Args:
        invoice: an issued invoice awaiting payment (``pending``, ``sent`` or ``overdue``).
        reason: a ``CreditNote.Reason`` value: ``duplicated_charge``, ``order_change``,
            ``allocation_correction`` or ``other``.
        amount: a partial credit, tax-inclusive, a positive Decimal in whole minor units of the
            invoice's currency; split into subtotal and tax at the invoice's tax rate.
        lines: a partial credit of invoice lines, ``[{"invoice_line": <InvoiceLine pk>, "amount":
            Decimal}]``, each amount before tax (like the invoice's lines), positive, whole minor
            units, at most what is left of that line; tax is added at the invoice's rate, rounded once.
            With neither ``amount`` nor ``lines`` the credit note credits everything left
            (``total − credited_total``), line by line, and cancels the invoice.
        description: free text printed on the credit note.
        issued_by: the user who issues it.
        refund_reference: on a ``paid`` invoice, the refund that pays the credit back (required
            there): a Stripe refund id (``payments.services.refunds.invoice_refund`` makes the refund
            and passes it) or the bank reference of a manual refund (text, at most 255 characters).
            A paid invoice stays paid; its ``credited_total`` grows.

    Returns:
        The ``CreditNote``, numbered gap-free per year (``settings.BILLING_CREDIT_NOTE_NUMBER_FORMAT``,
        default ``CN-YYYYMMDD-NNNN``), with its lines. The invoice's ``credited_total`` grows by its
        total, checked under the invoice's row lock never to exceed the invoice's ``total``; when
        it reaches it, the invoice becomes ``cancelled``. Its PDF is rendered after commit by
        ``invoices.services.pdf_storage.credit_note_pdf_store``.

    Raises:
        InvalidTransition: the invoice is a draft or cancelled, or paid without a ``refund_reference``.
        CreditNoteLimitExceeded: the credit exceeds what is left on the invoice (``param``
            ``amount``) or on a line (``param`` ``lines``).
        InvalidInvoiceRequest: both ``amount`` and ``lines``, an unknown reason, a line of another
            invoice, a malformed amount.
    """
    if reason not in CreditNote.Reason.values:
        raise InvalidInvoiceRequest(
            f"{reason!r} is not a credit note reason (reasons: {', '.join(CreditNote.Reason.values)})", param="reason"
        )
    if amount is not None and lines is not None:
        raise InvalidInvoiceRequest("give either amount or lines, not both", param="amount")
    if lines is not None and not lines:
        raise InvalidInvoiceRequest("lines is empty: give at least one line, or neither amount nor lines", param="lines")
    refund_reference = (refund_reference or "").strip()
    if len(refund_reference) > CreditNote._meta.get_field("refund_reference").max_length:
        raise InvalidInvoiceRequest("refund_reference is longer than 255 characters", param="refund_reference")
    with transaction.atomic():
        locked = invoice_lock(invoice.pk)
        if locked.status == Invoice.Status.PAID and not refund_reference:
            raise InvalidTransition(
                f"Invoice {locked.display_number} is paid; a paid invoice is credited by a refund: refund it "
                f"through Stripe, or give the reference of the refund made by hand",
                current=locked.status, requested="credited", param="invoice",
            )
        if locked.status not in Invoice.OPEN_STATUSES and locked.status != Invoice.Status.PAID:
            raise InvalidTransition(
                f"Invoice {locked.display_number} is {locked.status}; only an issued invoice awaiting payment "
                f"({', '.join(Invoice.OPEN_STATUSES)}) can be credited",
                current=locked.status, requested="credited", param="invoice",
            )
        currency = locked.currency

        def _fmt(value: Decimal) -> str:
            return format_amount(value, currency)

        # Summed in Python: an invoice has a handful of credit notes.
        credited = list(CreditNote.objects.filter(invoice=locked).values_list("subtotal", "tax_amount"))
        left_total = locked.total - locked.credited_total
        left_subtotal = locked.subtotal - sum((s for s, _ in credited), Decimal(0))
        left_tax = locked.tax_amount - sum((t for _, t in credited), Decimal(0))
        invoice_lines = list(locked.lines.order_by("position"))
        per_line = _credited_per_line(locked)
        label = CreditNote.Reason(reason).label
        note_lines: list[tuple[InvoiceLine | None, str, Decimal]] = []

        if left_total <= 0:
            raise CreditNoteLimitExceeded(
                f"invoice {locked.display_number} has nothing left to credit "
                f"(total {_fmt(locked.total)}, credited {_fmt(locked.credited_total)})", param="amount",
            )
        if amount is None and lines is None:
            subtotal, tax = left_subtotal, left_tax
            remaining = [(line, line.amount - per_line[line.pk]) for line in invoice_lines]
            if sum((r for _, r in remaining), Decimal(0)) == subtotal:
                parts = [r for _, r in remaining]
            else:
                # Credits not tied to lines were given before: spread what is left over the lines.
                weights = [max(r, Decimal(0)) for _, r in remaining]
                parts = split(subtotal, weights, minor_unit(currency)) if sum(weights) > 0 else []
            note_lines = [(line, line.description, part) for (line, _), part in zip(remaining, parts) if part != 0]
            if not note_lines and subtotal:
                note_lines = [(None, description or f"Credit: {label}", subtotal)]
        elif amount is not None:
            total = _minor_amount(amount, currency, "amount")
            if total > left_total:
                raise CreditNoteLimitExceeded(
                    f"credit of {_fmt(total)} exceeds what is left on invoice {locked.display_number}: "
                    f"{_fmt(left_total)} (total {_fmt(locked.total)}, credited {_fmt(locked.credited_total)})",
                    param="amount",
                )
            subtotal, tax = _credit_split(locked, left_subtotal, left_tax, total)
            note_lines = [(None, description or f"Credit: {label}", subtotal)]
        else:
            by_pk = {line.pk: line for line in invoice_lines}
            seen: set[int] = set()
            for index, item in enumerate(lines):
                if not isinstance(item, Mapping) or "invoice_line" not in item or "amount" not in item:
                    raise InvalidInvoiceRequest(
                        f"lines[{index}] must be {{'invoice_line': id, 'amount': Decimal}}", param=f"lines[{index}]"
                    )
                line_id = item["invoice_line"]
                line_id = getattr(line_id, "pk", line_id)
                line = by_pk.get(line_id) if isinstance(line_id, int) else None
                if line is None:
                    raise InvalidInvoiceRequest(
                        f"lines[{index}]: invoice line {line_id!r} is not a line of invoice {locked.display_number}",
                        param=f"lines[{index}].invoice_line",
                    )
                if line.pk in seen:
                    raise InvalidInvoiceRequest(f"lines[{index}]: invoice line {line.pk} is given twice",
                                                param=f"lines[{index}].invoice_line")
                seen.add(line.pk)
                part = _minor_amount(item["amount"], currency, f"lines[{index}].amount")
                left_on_line = line.amount - per_line[line.pk]
                if part > left_on_line:
                    raise CreditNoteLimitExceeded(
                        f"lines[{index}]: credit of {_fmt(part)} exceeds what is left on line {line.position} "
                        f"({line.description}): {_fmt(max(left_on_line, Decimal(0)))}",
                        param=f"lines[{index}].amount",
                    )
                note_lines.append((line, line.description, part))
            subtotal = sum((part for _, _, part in note_lines), Decimal(0))
            if subtotal == left_subtotal:
                tax = left_tax
            else:
                tax = min(invoice_tax_amount(subtotal=subtotal, rate=locked.tax_rate, currency=currency), left_tax)
            if subtotal + tax > left_total:
                raise CreditNoteLimitExceeded(
                    f"credit of {_fmt(subtotal + tax)} (with tax) exceeds what is left on invoice "
                    f"{locked.display_number}: {_fmt(left_total)}", param="lines",
                )

        total = subtotal + tax
        # A paid invoice stays paid when credited in full: the refund is the credit note's.
        fully_credited = locked.credited_total + total == locked.total and locked.status != Invoice.Status.PAID
        if fully_credited:
            invoice_check_transition(invoice=locked, to_status=Invoice.Status.CANCELLED, by_credit_note=True)
        issue_date = timezone.localdate()
        note = CreditNote(
            invoice=locked, reason=reason, description=description, currency=currency, subtotal=subtotal,
            tax_amount=tax, total=total, issue_date=issue_date, issued_by=issued_by, refund_reference=refund_reference,
            number=document_number_next(
                kind=DocumentSequence.Kind.CREDIT_NOTE, date=issue_date,
                is_taken=lambda n: CreditNote.objects.filter(number=n).exists(),
            ),
        )
        note.save(force_insert=True)
        CreditNoteLine.objects.bulk_create([
            CreditNoteLine(credit_note=note, position=position, description=text[:500], invoice_line=line, amount=part)
            for position, (line, text, part) in enumerate(note_lines, start=1)
        ])
        locked.credited_total += total
        fields = ["credited_total", "updated_at"]
        if fully_credited:
            locked.status = Invoice.Status.CANCELLED
            fields.append("status")
        locked.save(update_fields=fields)
        invoice.status, invoice.credited_total = locked.status, locked.credited_total
        # After commit, in its own transaction: a credit note is valid without its PDF, and a
        # rendering failure is logged (robust) rather than undoing the credit.
        transaction.on_commit(lambda: credit_note_pdf_store(credit_note=note), robust=True)
        event_record("credit_note.issued", note, team=locked.team_id)
    return note

