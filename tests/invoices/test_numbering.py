"""Invoice numbers: gap-free per year under concurrency, configurable, caller-supplied; issued invoices frozen."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction

from invoices.errors import DuplicateInvoiceNumber, InvalidInvoiceRequest, InvoiceImmutable
from invoices.models import Invoice, InvoiceLine
from invoices.services.generation import invoice_generate_for_run
from invoices.services.lifecycle import invoice_issue, invoice_mark_sent
from tests.factories import InvoiceLineFactory, TeamFactory, draft_invoice

D = Decimal
ISSUED_ON = dt.date(2026, 11, 22)


class Boom(Exception):
    pass


@pytest.mark.django_db
def test_invoice_numbers_are_consecutive_and_restart_each_year():
    # Given four drafts
    drafts = [draft_invoice() for _ in range(4)]

    # When three are issued in 2026 and one on 2 January 2027
    numbers = [invoice_issue(invoice=d, issue_date=ISSUED_ON + dt.timedelta(days=i)).number for i, d in enumerate(drafts[:3])]
    numbers.append(invoice_issue(invoice=drafts[3], issue_date=dt.date(2027, 1, 2)).number)

    # Then each year counts from 1 with no gap, the issue date printed in the number
    assert numbers == ["INV-20261122-0001", "INV-20261123-0002", "INV-20261124-0003", "INV-20270102-0001"]


@pytest.mark.django_db
def test_invoice_issue_rolled_back_gives_its_number_back():
    # Given an issued invoice and two drafts
    invoice_issue(invoice=draft_invoice(), issue_date=ISSUED_ON)
    rolled_back, later = draft_invoice(), draft_invoice()

    # When an issue is rolled back with the transaction around it
    with pytest.raises(Boom), transaction.atomic():
        invoice_issue(invoice=rolled_back, issue_date=ISSUED_ON)
        raise Boom

    # Then the draft stays a draft and the next issue takes the number it had: no gap
    assert Invoice.objects.get(pk=rolled_back.pk).status == "draft"
    assert invoice_issue(invoice=later, issue_date=ISSUED_ON).number == "INV-20261122-0002"


@pytest.mark.django_db
def test_invoice_number_format_comes_from_the_settings(settings):
    settings.BILLING_INVOICE_NUMBER_FORMAT = "ACME/{year}/{seq:05d}"
    assert invoice_issue(invoice=draft_invoice(), issue_date=ISSUED_ON).number == "ACME/2026/00001"


@pytest.mark.django_db
def test_invoice_number_format_without_a_sequence_is_refused(settings):
    # Given a format that would give every invoice of a day the same number
    settings.BILLING_INVOICE_NUMBER_FORMAT = "INV-{date:%Y%m%d}"
    draft = draft_invoice()

    # When an invoice is issued, then the configuration is refused and nothing is issued
    with pytest.raises(ImproperlyConfigured, match="must contain {seq}"):
        invoice_issue(invoice=draft, issue_date=ISSUED_ON)
    assert Invoice.objects.get(pk=draft.pk).status == "draft"


@pytest.mark.django_db
def test_invoice_issue_keeps_a_caller_supplied_number_and_refuses_a_duplicate():
    # Given an invoice issued with the caller's own number
    first = invoice_issue(invoice=draft_invoice(), number="PO-4711", issue_date=ISSUED_ON)
    assert first.number == "PO-4711"
    other = draft_invoice()

    # When another invoice is issued with the same number
    with pytest.raises(DuplicateInvoiceNumber) as refused:
        invoice_issue(invoice=other, number="PO-4711", issue_date=ISSUED_ON)

    # Then it is refused naming the field, and the other invoice is still an unnumbered draft
    assert (refused.value.code, refused.value.param) == ("duplicate_invoice_number", "invoice_number")
    other.refresh_from_db()
    assert (other.status, other.number, other.pdf_sha256) == ("draft", None, "")
    # And the sequence was not touched: the next generated number is the first of the year
    assert invoice_issue(invoice=other, issue_date=ISSUED_ON).number == "INV-20261122-0001"


@pytest.mark.django_db
def test_generated_numbers_step_over_a_number_a_caller_took():
    invoice_issue(invoice=draft_invoice(), number="INV-20261122-0001", issue_date=ISSUED_ON)
    assert invoice_issue(invoice=draft_invoice(), issue_date=ISSUED_ON).number == "INV-20261122-0002"


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["", "   ", "X" * 65])
def test_invoice_issue_refuses_a_malformed_number(number):
    with pytest.raises(InvalidInvoiceRequest) as refused:
        invoice_issue(invoice=draft_invoice(), number=number)
    assert refused.value.param == "invoice_number"


# --- immutability through the ORM, on every database ---------------------------------------------


@pytest.fixture
def issued(db):
    return invoice_issue(invoice=draft_invoice(amounts=("10.00", "5.00")), issue_date=ISSUED_ON)


def test_issued_invoice_refuses_a_changed_total(issued):
    issued.total = D("1.00")
    with pytest.raises(InvoiceImmutable, match="total"):
        issued.save()
    assert Invoice.objects.get(pk=issued.pk).total == D("15.00")


def test_issued_invoice_refuses_bulk_updates_of_amounts_and_deletion(issued):
    with pytest.raises(InvoiceImmutable):
        Invoice.objects.filter(pk=issued.pk).update(subtotal=D(0), total=D(0))
    with pytest.raises(InvoiceImmutable):
        Invoice.objects.filter(pk=issued.pk).delete()
    with pytest.raises(InvoiceImmutable):
        issued.delete()
    assert Invoice.objects.get(pk=issued.pk).total == D("15.00")


def test_issued_invoice_lines_refuse_change_insert_and_delete(issued):
    line = issued.lines.get(position=1)
    line.amount = D("9.99")
    with pytest.raises(InvoiceImmutable):
        line.save()
    with pytest.raises(InvoiceImmutable):
        line.delete()
    with pytest.raises(InvoiceImmutable):
        InvoiceLine.objects.filter(invoice=issued).update(amount=D(0))
    with pytest.raises(InvoiceImmutable):
        InvoiceLine.objects.filter(invoice=issued).delete()
    with pytest.raises(InvoiceImmutable):
        InvoiceLineFactory(invoice=issued, position=3, amount_precise=D(1), amount=D(1))
    with pytest.raises(InvoiceImmutable):
        InvoiceLine.objects.bulk_create([InvoiceLine(invoice=issued, position=4, description="x",
                                                     amount_precise=D(1), amount=D(1))])
    assert [(li.position, li.amount) for li in issued.lines.order_by("position")] == [(1, D("10.00")), (2, D("5.00"))]


def test_issued_invoice_still_moves_its_status(issued):
    assert invoice_mark_sent(invoice=issued).status == "sent"


def test_billing_run_never_rewrites_an_issued_invoice(db):
    # Given a team's invoice issued from a committed run
    from tests.invoices.test_generation import committed_run

    team = TeamFactory()
    run = committed_run([{"team": team, "amount": D("9")}])
    [draft] = invoice_generate_for_run(run=run)
    invoice_issue(invoice=draft, issue_date=ISSUED_ON)

    # When a new run bills the team differently
    result = invoice_generate_for_run(run=committed_run([{"team": team, "amount": D("12")}]))

    # Then the issued invoice is reported, not changed
    assert [i.pk for i in result.skipped] == [draft.pk]
    assert Invoice.objects.get(pk=draft.pk).total == D("9.00")


def test_draft_lines_still_change(db):
    draft = draft_invoice()
    line = draft.lines.get()
    line.description = "Renamed"
    line.save()
    assert draft.lines.get().description == "Renamed"


# --- PostgreSQL: triggers and concurrent numbering ------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("sql", [
    "UPDATE invoices_invoice SET total = 1, subtotal = 1 WHERE id = %(invoice)s",
    "UPDATE invoices_invoice SET number = 'X-1' WHERE id = %(invoice)s",
    "UPDATE invoices_invoice SET due_date = due_date + 30 WHERE id = %(invoice)s",
    "UPDATE invoices_invoice SET status = 'draft' WHERE id = %(invoice)s",
    "DELETE FROM invoices_invoice WHERE id = %(invoice)s",
    "UPDATE invoices_invoiceline SET amount = 0 WHERE invoice_id = %(invoice)s",
    "DELETE FROM invoices_invoiceline WHERE invoice_id = %(invoice)s",
    "INSERT INTO invoices_invoiceline (invoice_id, position, description, service, rule_name, rule_type, quantity,"
    " unit, unit_price, amount_precise, amount, record_count, details)"
    " VALUES (%(invoice)s, 9, 'sneaked in', '', '', '', 1, '', 0, 1, 1, 0, '{}')",
])
def test_postgresql_trigger_rejects_raw_sql_changes_of_an_issued_invoice(sql):
    # Given an issued invoice
    invoice = invoice_issue(invoice=draft_invoice(amounts=("10.00", "5.00")), issue_date=ISSUED_ON)

    # When any client changes its amounts or lines with raw SQL, then PostgreSQL refuses
    with pytest.raises(DatabaseError, match="is issued"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, {"invoice": invoice.pk})

    # And the invoice is as issued
    stored = Invoice.objects.get(pk=invoice.pk)
    assert (stored.number, stored.status, stored.total, stored.lines.count()) == (
        "INV-20261122-0001", "pending", D("15.00"), 2)


@pytest.mark.django_db(transaction=True)
def test_postgresql_trigger_lets_drafts_and_status_moves_through():
    draft = draft_invoice()
    issued = invoice_issue(invoice=draft_invoice(), issue_date=ISSUED_ON)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE invoices_invoiceline SET amount = 2, amount_precise = 2 WHERE invoice_id = %s", [draft.pk])
        cursor.execute("UPDATE invoices_invoice SET status = 'sent', sent_at = now() WHERE id = %s", [issued.pk])
    assert draft.lines.get().amount == D(2)
    assert Invoice.objects.get(pk=issued.pk).status == "sent"


@pytest.mark.django_db(transaction=True)
def test_concurrent_issues_get_distinct_consecutive_numbers():
    # Given 20 drafts
    drafts = [draft_invoice() for _ in range(20)]
    barrier = threading.Barrier(len(drafts))

    def issue(draft):
        try:
            barrier.wait(timeout=30)
            return invoice_issue(invoice=draft, issue_date=ISSUED_ON).number
        finally:
            connection.close()

    # When they are issued at the same moment on 20 threads
    with ThreadPoolExecutor(max_workers=len(drafts)) as pool:
        numbers = list(pool.map(issue, drafts))

    # Then the 20 numbers are distinct and consecutive, 1 to 20, and each invoice has its PDF
    assert sorted(numbers) == [f"INV-20261122-{n:04d}" for n in range(1, 21)]
    assert Invoice.objects.filter(status="pending").exclude(pdf_sha256="").count() == 20


@pytest.mark.django_db
def test_a_refreshed_copy_of_an_invoice_issued_elsewhere_refuses_changes():
    # Given a copy of a draft read before the invoice was issued through the service
    stale = draft_invoice()
    invoice_issue(invoice=Invoice.objects.get(pk=stale.pk), issue_date=ISSUED_ON)

    # When the copy is refreshed and its total changed
    stale.refresh_from_db()
    stale.total = D("0.01")

    # Then saving it is refused
    with pytest.raises(InvoiceImmutable):
        stale.save()
