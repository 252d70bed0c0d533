"""The database guards the invoice lifecycle: status moves outside ``Invoice.TRANSITIONS`` are refused
by a PostgreSQL trigger, whatever the client (``QuerySet.update()``, raw SQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from invoices.models import Invoice
from invoices.services.credit_notes import credit_note_issue
from invoices.services.lifecycle import invoice_cancel, invoice_issue, invoice_mark_paid, invoice_mark_sent
from tests.factories import draft_invoice

ISSUED_ON = dt.date(2026, 11, 22)
STATUSES = [value for value, _ in Invoice.Status.choices]


def invoice_in(status: str) -> Invoice:
    """A draft brought to ``status`` through the services (never by writing the status)."""
    invoice = draft_invoice()
    if status == "draft":
        return invoice
    if status == "cancelled":
        return invoice_cancel(invoice=invoice)
    invoice = invoice_issue(invoice=invoice, issue_date=ISSUED_ON)
    if status == "sent":
        invoice = invoice_mark_sent(invoice=invoice)
    elif status == "paid":
        invoice = invoice_mark_paid(invoice=invoice, payment_reference="BANK-1")
    elif status == "overdue":
        invoice = Invoice.objects.get(pk=invoice.pk)
        invoice.status = "overdue"
        invoice.save(update_fields=["status"])
    return invoice


def _status_of(pk: int) -> str:
    return Invoice.objects.values_list("status", flat=True).get(pk=pk)


@pytest.mark.django_db
def test_transition_table_in_the_database_equals_the_model():
    # Given the model's lifecycle, written once on Invoice
    expected = {
        (current, to, (current, to) in Invoice.CREDIT_NOTE_ONLY)
        for current, targets in Invoice.TRANSITIONS.items() for to in targets
    }

    # When the database's copy is read
    with connection.cursor() as cursor:
        cursor.execute("SELECT from_status, to_status, by_credit_note FROM invoices_invoice_transition")
        stored = set(cursor.fetchall())

    # Then they are the same moves, with the same credit-note-only ones (else a migration is missing)
    assert stored == expected
    assert Invoice.CREDIT_NOTE_ONLY <= {(current, to) for current, to, _ in expected}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("current", STATUSES)
def test_queryset_update_cannot_skip_the_lifecycle(current):
    invoice = invoice_in(current)
    for requested in STATUSES:
        if requested == current:
            continue
        allowed = requested in Invoice.TRANSITIONS[current] and (current, requested) not in Invoice.CREDIT_NOTE_ONLY
        if allowed:
            continue
        # When a bulk update writes a move the model does not allow
        # (an issued invoice moved back to draft meets the issued-invoice trigger first, in its own words)
        refusal = f"is {current}; it (cannot move to {requested}|moves to {requested} only)|never returns to draft"
        with pytest.raises(DatabaseError, match=refusal):
            with transaction.atomic():
                Invoice.objects.filter(pk=invoice.pk).update(status=requested)
        # Then the invoice keeps its status
        assert _status_of(invoice.pk) == current


@pytest.mark.django_db(transaction=True)
def test_raw_sql_cannot_move_a_paid_invoice_back_or_cancel_an_issued_one():
    paid = invoice_in("paid")
    pending = invoice_in("pending")

    for pk, status in [(paid.pk, "pending"), (paid.pk, "draft"), (paid.pk, "cancelled"), (pending.pk, "cancelled")]:
        with pytest.raises(DatabaseError, match="cannot move|only by a full credit note|never returns to draft"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("UPDATE invoices_invoice SET status = %s WHERE id = %s", [status, pk])

    assert (_status_of(paid.pk), _status_of(pending.pk)) == ("paid", "pending")


@pytest.mark.django_db(transaction=True)
def test_raw_sql_allowed_moves_pass_and_a_full_credit_note_still_cancels():
    # Given a pending invoice and another one to be credited in full
    pending = invoice_in("pending")
    sent = invoice_in("sent")

    # When raw SQL makes an allowed move, and a full credit note cancels the other
    with connection.cursor() as cursor:
        cursor.execute("UPDATE invoices_invoice SET status = 'overdue' WHERE id = %s", [pending.pk])
    credit_note_issue(invoice=sent, reason="duplicated_charge")

    # Then both moves are kept
    assert (_status_of(pending.pk), _status_of(sent.pk)) == ("overdue", "cancelled")


@pytest.mark.django_db(transaction=True)
def test_a_partial_credit_does_not_let_raw_sql_cancel_the_invoice():
    # Given a pending invoice of 10.00 credited 4.00
    invoice = invoice_in("pending")
    credit_note_issue(invoice=invoice, reason="order_change", amount=invoice.total - 6)

    # When raw SQL cancels it although 6.00 is still due
    with pytest.raises(IntegrityError, match="only by a full credit note"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE invoices_invoice SET status = 'cancelled' WHERE id = %s", [invoice.pk])

    # Then it stays pending
    assert _status_of(invoice.pk) == "pending"
