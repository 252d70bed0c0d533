"""Credit notes: gap-free numbers, limits (never more than is left), full credit cancels, partial reduces what is due."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from invoices.errors import CreditNoteLimitExceeded, InvalidInvoiceRequest, InvalidTransition, InvoiceImmutable
from invoices.models import CreditNote, Invoice
from invoices.services.credit_notes import credit_note_issue
from invoices.services.lifecycle import invoice_issue, invoice_mark_paid
from tests.factories import UserFactory, draft_invoice

D = Decimal
ISSUED_ON = dt.date(2026, 11, 22)


def issued_invoice(amounts=("60.00", "40.00"), tax_rate=D(0)) -> Invoice:
    return invoice_issue(invoice=draft_invoice(amounts=amounts, tax_rate=tax_rate), issue_date=ISSUED_ON)


def today_cn(seq: int) -> str:
    return f"CN-{timezone.localdate():%Y%m%d}-{seq:04d}"


@pytest.mark.django_db
def test_full_credit_note_credits_every_line_and_cancels_the_invoice():
    # Given an issued invoice of 100.00 + 19 % tax
    invoice = issued_invoice(tax_rate=D(19))
    clerk = UserFactory()

    # When a full credit note is issued
    note = credit_note_issue(invoice=invoice, reason="duplicated_charge", description="Billed twice", issued_by=clerk)

    # Then it is numbered, credits each line, carries the tax, and the invoice is cancelled with nothing due
    assert note.number == today_cn(1)
    assert (note.subtotal, note.tax_amount, note.total, note.currency) == (D("100.00"), D("19.00"), D("119.00"), "USD")
    assert [(li.invoice_line.position, li.amount) for li in note.lines.order_by("position")] == [
        (1, D("60.00")), (2, D("40.00"))]
    assert note.issued_by == clerk
    invoice.refresh_from_db()
    assert (invoice.status, invoice.credited_total, invoice.amount_due) == ("cancelled", D("119.00"), D(0))


@pytest.mark.django_db
def test_partial_credit_by_amount_reduces_what_is_due():
    # Given an issued invoice of 100.00 + 19 % = 119.00
    invoice = issued_invoice(tax_rate=D(19))

    # When 11.90 (tax included) is credited
    note = credit_note_issue(invoice=invoice, reason="order_change", amount=D("11.90"))

    # Then the credit is 10.00 + 1.90 tax, and 107.10 is still due on the pending invoice
    assert (note.subtotal, note.tax_amount, note.total) == (D("10.00"), D("1.90"), D("11.90"))
    assert note.lines.get().invoice_line is None
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == ("pending", D("107.10"))


@pytest.mark.django_db
def test_partial_credit_by_lines_adds_tax_once():
    invoice = issued_invoice(tax_rate=D(19))
    first = invoice.lines.get(position=1)

    note = credit_note_issue(invoice=invoice, reason="allocation_correction",
                             lines=[{"invoice_line": first.pk, "amount": D("10.01")}])

    # 10.01 × 19 % = 1.9019 → 1.90, rounded once
    assert (note.subtotal, note.tax_amount, note.total) == (D("10.01"), D("1.90"), D("11.91"))
    assert note.lines.get().invoice_line == first
    assert Invoice.objects.get(pk=invoice.pk).amount_due == D("107.09")


@pytest.mark.django_db
def test_credit_notes_that_use_up_the_invoice_cancel_it_and_tie_out():
    # Given partial credits by amount and by line
    invoice = issued_invoice(tax_rate=D(19))
    credit_note_issue(invoice=invoice, reason="other", amount=D("0.07"))
    credit_note_issue(invoice=invoice, reason="other",
                      lines=[{"invoice_line": invoice.lines.get(position=2).pk, "amount": D("40.00")}])

    # When the rest is credited in full
    last = credit_note_issue(invoice=invoice, reason="other")

    # Then the credit notes sum exactly to the invoice, line totals included, and it is cancelled
    notes = list(CreditNote.objects.filter(invoice=invoice))
    assert sum(n.total for n in notes) == D("119.00")
    assert sum(n.subtotal for n in notes) == D("100.00") and sum(n.tax_amount for n in notes) == D("19.00")
    assert all(sum(li.amount for li in n.lines.all()) == n.subtotal for n in notes)
    assert [n.number for n in sorted(notes, key=lambda n: n.pk)] == [today_cn(1), today_cn(2), today_cn(3)]
    assert last.total == D("119.00") - D("0.07") - D("47.60")
    assert Invoice.objects.get(pk=invoice.pk).status == "cancelled"


@pytest.mark.django_db
def test_credit_of_more_than_is_left_is_refused_and_writes_nothing():
    # Given an invoice of 100.00 with 30.00 credited
    invoice = issued_invoice()
    credit_note_issue(invoice=invoice, reason="other", amount=D("30.00"))

    # When 70.01 is credited
    with pytest.raises(CreditNoteLimitExceeded) as refused:
        credit_note_issue(invoice=invoice, reason="other", amount=D("70.01"))

    # Then it is refused naming the amount and what is left; nothing was written, no number used
    assert (refused.value.code, refused.value.param) == ("credit_exceeds_invoice", "amount")
    assert "70.00 USD" in refused.value.message
    assert CreditNote.objects.count() == 1
    assert Invoice.objects.get(pk=invoice.pk).amount_due == D("70.00")
    assert credit_note_issue(invoice=invoice, reason="other", amount=D("70.00")).number == today_cn(2)


@pytest.mark.django_db
def test_credit_of_more_than_is_left_on_a_line_is_refused():
    invoice = issued_invoice()
    line = invoice.lines.get(position=2)
    credit_note_issue(invoice=invoice, reason="other", lines=[{"invoice_line": line.pk, "amount": D("39.00")}])

    with pytest.raises(CreditNoteLimitExceeded) as refused:
        credit_note_issue(invoice=invoice, reason="other", lines=[{"invoice_line": line.pk, "amount": D("1.01")}])

    assert refused.value.param == "lines[0].amount"
    assert "left on line 2" in refused.value.message and "1.00 USD" in refused.value.message


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["draft", "cancelled"])
def test_credit_note_needs_an_invoice_awaiting_payment(status):
    invoice = draft_invoice()
    if status != "draft":
        invoice = invoice_issue(invoice=invoice, issue_date=ISSUED_ON)
    if status == "cancelled":
        credit_note_issue(invoice=invoice, reason="other")

    with pytest.raises(InvalidTransition, match=f"is {status}; only an issued invoice awaiting payment"):
        credit_note_issue(invoice=invoice, reason="other", amount=D("1.00"))
    assert CreditNote.objects.filter(invoice=invoice).count() == (1 if status == "cancelled" else 0)


@pytest.mark.django_db
def test_a_credit_note_on_a_paid_invoice_is_a_refund_and_needs_its_reference():
    # given a paid invoice
    invoice = invoice_mark_paid(invoice=invoice_issue(invoice=draft_invoice(), issue_date=ISSUED_ON),
                                payment_reference="P")
    # a credit note without a refund is refused, naming the refund path
    with pytest.raises(InvalidTransition, match="is paid; a paid invoice is credited by a refund"):
        credit_note_issue(invoice=invoice, reason="other", amount=D("1.00"))
    assert not CreditNote.objects.filter(invoice=invoice).exists()
    # with the refund's reference it is issued; the invoice stays paid, even when credited in full
    note = credit_note_issue(invoice=invoice, reason="other", refund_reference="BANK-REFUND-1")
    invoice.refresh_from_db()
    assert (note.refund_reference, note.total, invoice.status, invoice.credited_total) == (
        "BANK-REFUND-1", invoice.total, "paid", invoice.total)


@pytest.mark.django_db
@pytest.mark.parametrize("kwargs, param", [
    ({"reason": "because"}, "reason"),
    ({"reason": "other", "amount": D("1.00"), "lines": []}, "amount"),
    ({"reason": "other", "lines": []}, "lines"),
    ({"reason": "other", "amount": 1.5}, "amount"),
    ({"reason": "other", "amount": D("0.001")}, "amount"),
    ({"reason": "other", "amount": D("-5")}, "amount"),
    ({"reason": "other", "lines": [{"invoice_line": 999999, "amount": D(1)}]}, "lines"),
    ({"reason": "other", "lines": [{"amount": D(1)}]}, "lines"),
])
def test_credit_note_refuses_malformed_input_naming_the_field(kwargs, param):
    invoice = issued_invoice()
    with pytest.raises(InvalidInvoiceRequest) as refused:
        credit_note_issue(invoice=invoice, **kwargs)
    assert refused.value.param.startswith(param)
    assert not CreditNote.objects.exists()


@pytest.mark.django_db
def test_credit_note_is_never_changed_or_deleted():
    note = credit_note_issue(invoice=issued_invoice(), reason="other", amount=D("5.00"))
    note.total = D("1.00")
    with pytest.raises(InvoiceImmutable):
        note.save()
    with pytest.raises(InvoiceImmutable):
        note.delete()
    with pytest.raises(InvoiceImmutable):
        note.lines.get().delete()
    assert CreditNote.objects.get(pk=note.pk).total == D("5.00")


@pytest.mark.django_db
def test_credit_note_pdf_is_stored_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_issue(invoice=issued_invoice(), reason="other", amount=D("5.00"))
    note.refresh_from_db()
    assert note.pdf_sha256


@pytest.mark.django_db(transaction=True)
def test_postgresql_trigger_rejects_raw_sql_changes_of_a_credit_note():
    note = credit_note_issue(invoice=issued_invoice(), reason="other", amount=D("5.00"))
    for sql in ("UPDATE invoices_creditnote SET total = 1, subtotal = 1 WHERE id = %s",
                "DELETE FROM invoices_creditnote WHERE id = %s",
                "UPDATE invoices_creditnoteline SET amount = 1 WHERE credit_note_id = %s"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [note.pk])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE invoices_creditnote SET pdf_sha256 = 'abc' WHERE id = %s", [note.pk])
    assert CreditNote.objects.get(pk=note.pk).total == D("5.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_credit_notes_never_exceed_the_invoice():
    # Given an invoice of 100.00
    invoice = issued_invoice()
    threads = 8
    barrier = threading.Barrier(threads)

    def credit(_):
        try:
            barrier.wait(timeout=30)
            return credit_note_issue(invoice=invoice, reason="other", amount=D("30.00"))
        except CreditNoteLimitExceeded as exc:
            return exc
        finally:
            connection.close()

    # When 8 credits of 30.00 race
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(credit, range(threads)))

    # Then exactly 3 are issued, with consecutive numbers, and 10.00 is still due
    notes = [r for r in results if isinstance(r, CreditNote)]
    assert len(notes) == 3
    assert sorted(n.number for n in notes) == [today_cn(1), today_cn(2), today_cn(3)]
    stored = Invoice.objects.get(pk=invoice.pk)
    assert (stored.credited_total, stored.amount_due, stored.status) == (D("90.00"), D("10.00"), "pending")
