"""Gap-free document numbers: invoices (``INV-YYYYMMDD-NNNN``) and credit notes (``CN-YYYYMMDD-NNNN``).

One :class:`~invoices.models.DocumentSequence` row per (kind, year) holds the last number handed out.
:func:`document_number_next` locks that row (``SELECT … FOR UPDATE``) inside the caller's
transaction, the one that also saves the numbered document: the lock is held until that
transaction ends, so concurrent issues queue on it, and a rolled-back issue rolls the counter
back with it. Every number of a year is therefore used exactly once, in issue order, with no gap
(the rule of invoicing law, e.g. the EU VAT directive's "consecutive number, one series").

The format is a ``str.format`` template with ``{date}`` (the issue date, a ``datetime.date``; use
``{date:%Y%m%d}``), ``{year}`` and ``{seq}`` (the number within the year, from 1), set by
``settings.BILLING_INVOICE_NUMBER_FORMAT`` (default ``"INV-{date:%Y%m%d}-{seq:04d}"``) and
``settings.BILLING_CREDIT_NOTE_NUMBER_FORMAT`` (default ``"CN-{date:%Y%m%d}-{seq:04d}"``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from .errors import DuplicateInvoiceNumber, InvalidInvoiceRequest
from .models import DocumentSequence, Invoice

DEFAULT_FORMATS = {
    DocumentSequence.Kind.INVOICE: "INV-{date:%Y%m%d}-{seq:04d}",
    DocumentSequence.Kind.CREDIT_NOTE: "CN-{date:%Y%m%d}-{seq:04d}",
}
_SETTINGS = {
    DocumentSequence.Kind.INVOICE: "BILLING_INVOICE_NUMBER_FORMAT",
    DocumentSequence.Kind.CREDIT_NOTE: "BILLING_CREDIT_NOTE_NUMBER_FORMAT",
}


def number_format(kind: str) -> str:
    """The number template of ``kind`` (``"invoice"`` or ``"credit_note"``) from the settings, checked."""
    template = getattr(settings, _SETTINGS[kind], None) or DEFAULT_FORMATS[kind]
    if "{seq" not in template:
        raise ImproperlyConfigured(f"{_SETTINGS[kind]} {template!r} must contain {{seq}}, or numbers would repeat")
    try:
        format_number(template, date=dt.date(2000, 1, 1), seq=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise ImproperlyConfigured(f"{_SETTINGS[kind]} {template!r} is not a valid number format: {exc}") from exc
    return template


def format_number(template: str, *, date: dt.date, seq: int) -> str:
    """``template`` filled in: ``format_number("INV-{date:%Y%m%d}-{seq:04d}", date=…, seq=3)`` → ``INV-20261122-0003``."""
    return template.format(date=date, year=date.year, seq=seq)


def _locked_sequence(kind: str, year: int) -> DocumentSequence:
    """The (kind, year) sequence row, created on first use, locked until the transaction ends."""
    try:
        # A savepoint: a concurrent first issue of the year may create the row at the same time;
        # the unique constraint admits one and the loser locks the winner's row below.
        with transaction.atomic():
            DocumentSequence.objects.get_or_create(kind=kind, year=year)
    except IntegrityError:
        pass
    return DocumentSequence.objects.select_for_update().get(kind=kind, year=year)


def document_number_next(*, kind: str, date: dt.date, is_taken: Callable[[str], bool] | None = None) -> str:
    """Take the next number of ``kind`` for a document issued on ``date``; call inside the issuing transaction.

    Args:
        kind: ``DocumentSequence.Kind.INVOICE`` or ``CREDIT_NOTE``.
        date: the issue date; its year chooses the sequence and it is printed in the number.
        is_taken: ``number → bool``; a number already used (supplied by a caller for one document)
            is stepped over, so a caller's number never blocks the sequence.

    Returns:
        The number, e.g. ``INV-20261122-0003``. The sequence row stays locked until the caller's
        transaction ends (the caller must be in ``transaction.atomic``).

    Raises:
        TransactionManagementError: called outside a transaction (the lock would end at once).
        ImproperlyConfigured: a bad number format in the settings.
    """
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("document numbers are taken inside the issuing transaction")
    template = number_format(kind)
    sequence = _locked_sequence(kind, date.year)
    while True:
        sequence.last_value += 1
        number = format_number(template, date=date, seq=sequence.last_value)
        if is_taken is None or not is_taken(number):
            break
    sequence.save(update_fields=["last_value"])
    return number


def document_numbers_next(*, kind: str, date: dt.date, count: int) -> list[str]:
    """Take ``count`` consecutive numbers of ``kind`` for documents issued on ``date`` (a batch issue).

    The bulk twin of :func:`document_number_next` for callers that issue many documents in one
    transaction (the subscription renewal): one lock and one write of the sequence row. Numbers
    a caller chose by hand are not stepped over; the unique constraint on ``Invoice.number``
    refuses a clash and the caller's transaction rolls back, giving the numbers back.

    Raises:
        TransactionManagementError: called outside a transaction.
    """
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("document numbers are taken inside the issuing transaction")
    if count <= 0:
        return []
    template = number_format(kind)
    sequence = _locked_sequence(kind, date.year)
    first = sequence.last_value + 1
    sequence.last_value += count
    sequence.save(update_fields=["last_value"])
    return [format_number(template, date=date, seq=seq) for seq in range(first, first + count)]


# --- invoice numbers chosen by a caller ------------------------------------------------------------

def invoice_number_clean(number: object) -> str:
    """``number`` stripped; refused when it is not non-empty text of at most 64 characters (``param`` ``invoice_number``)."""
    if not isinstance(number, str) or not number.strip():
        raise InvalidInvoiceRequest("an invoice number must be non-empty text", param="invoice_number")
    number = number.strip()
    if len(number) > Invoice._meta.get_field("number").max_length:
        raise InvalidInvoiceRequest(
            f"invoice number {number[:20]!r}… is longer than {Invoice._meta.get_field('number').max_length} characters",
            param="invoice_number",
        )
    return number


def invoice_number_taken(number: str, *, excluding: int | None = None) -> bool:
    """Whether another invoice (not ``excluding``, a pk) holds ``number``."""
    return Invoice.objects.filter(number=number).exclude(pk=excluding).exists()


def invoice_save_numbered(invoice: Invoice, fields: list[str]) -> None:
    """Save ``invoice``; a number another invoice holds (a race the unique constraint catches) is refused."""
    try:
        with transaction.atomic():
            invoice.save(update_fields=fields)
    except IntegrityError as exc:
        if invoice_number_taken(invoice.number, excluding=invoice.pk):
            raise DuplicateInvoiceNumber(f"invoice number {invoice.number} is already used by another invoice") from exc
        raise
