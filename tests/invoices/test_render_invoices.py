"""``manage.py render_invoices``: a month's PDFs in bulk, drafts on demand, issued invoices once."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from pypdf import PdfReader

from invoices.models import Invoice
from invoices.services.generation import invoice_generate_for_run
from invoices.services.lifecycle import invoice_issue
from tests.factories import InvoiceFactory, InvoiceLineFactory, TeamFactory
from tests.invoices.test_generation import committed_run

pytestmark = pytest.mark.django_db

D = Decimal


def september_drafts(count: int) -> list[Invoice]:
    """``count`` September 2024 drafts from a committed run, one per team ("Team 01", "Team 02", …)."""
    teams = [TeamFactory(name=f"Team {n:02d}", slug=f"team-{n:02d}") for n in range(1, count + 1)]
    run = committed_run([
        {"team": team, "amount": D(n) + D("0.25"), "record_count": n} for n, team in enumerate(teams, start=1)
    ])
    return sorted(invoice_generate_for_run(run=run), key=lambda i: i.team_name)


def issue(invoice: Invoice, number: str, *, pdf: bool = True) -> Invoice:
    """Issue ``invoice`` through the lifecycle service (which stores its PDF); ``pdf=False``: an issued
    invoice whose PDF was never stored (issued before PDFs were kept, or its rendering was lost)."""
    issued = invoice_issue(invoice=invoice, number=number, issue_date=dt.date(2024, 10, 1))
    if not pdf:
        issued.pdf.storage.delete(issued.pdf.name)
        Invoice.objects.filter(pk=issued.pk).update(pdf="", pdf_sha256="")
        issued.refresh_from_db()
    return issued


def render(*args: str) -> str:
    out = io.StringIO()
    call_command("render_invoices", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def stored_text(invoice: Invoice) -> str:
    invoice.refresh_from_db()
    with invoice.pdf.open("rb") as handle:
        content = handle.read()
    assert hashlib.sha256(content).hexdigest() == invoice.pdf_sha256
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages).replace("\u00a0", " ")


def test_render_invoices_stores_the_pdf_of_every_draft_of_the_period():
    # Given three September drafts without PDFs, and an August draft
    drafts = september_drafts(3)
    august = InvoiceFactory(period_start=dt.date(2024, 8, 1), period_end=dt.date(2024, 9, 1))
    InvoiceLineFactory(invoice=august)

    # When September's PDFs are rendered
    output = render("--period", "2024-09", "--workers", "1")

    # Then each September draft has its PDF, showing its team and total, stored with its SHA-256
    assert "Rendered 3 PDFs (3 draft or cancelled, 0 issued)" in output
    for invoice, total in zip(drafts, ["1.25 USD", "2.25 USD", "3.25 USD"]):
        text = stored_text(invoice)
        assert invoice.team_name in text and total in text and "DRAFT" in text
    # and August's draft is left alone
    august.refresh_from_db()
    assert not august.pdf and not august.pdf_sha256


def test_render_invoices_renders_an_issued_invoice_once_and_never_again():
    # Given an issued invoice with its PDF, an issued invoice without one, and a draft
    with_pdf, without_pdf, draft = september_drafts(3)
    with_pdf = issue(with_pdf, "INV-20241001-0001")
    sent_sha, sent_file = with_pdf.pdf_sha256, with_pdf.pdf.name
    without_pdf = issue(without_pdf, "INV-20241001-0002", pdf=False)

    # When the month is rendered, twice
    first = render("--period", "2024-09", "--workers", "1")
    second = render("--period", "2024-09", "--workers", "1")

    # Then the issued invoice without a PDF got one, under its number; the one sent out is untouched
    assert "Rendered 2 PDFs (1 draft or cancelled, 1 issued)" in first
    assert "Skipped 1 issued invoice: its PDF is final" in first
    without_pdf.refresh_from_db()
    assert without_pdf.pdf.name.endswith("inv-20241001-0002.pdf")
    assert "INV-20241001-0002" in stored_text(without_pdf)
    with_pdf.refresh_from_db()
    assert (with_pdf.pdf_sha256, with_pdf.pdf.name) == (sent_sha, sent_file)
    # and the second run renders only the draft again
    assert "Rendered 1 PDF (1 draft or cancelled, 0 issued)" in second
    assert "Skipped 2 issued invoices" in second
    assert "DRAFT" in stored_text(draft)


def test_render_invoices_renders_only_the_status_and_team_asked_for():
    # Given two drafts and an issued invoice without a PDF
    first, second, issued = september_drafts(3)
    issued = issue(issued, "INV-20241001-0007", pdf=False)

    # When only pending invoices are rendered, then only team 01's
    pending = render("--period", "2024-09", "--status", "pending", "--workers", "1")
    one_team = render("--period", "2024-09", "--team", "team-01", "--workers", "1")

    # Then each run rendered exactly what it names
    assert "status pending" in pending and "Rendered 1 PDF (0 draft or cancelled, 1 issued)" in pending
    assert "team Team 01" in one_team and "Rendered 1 PDF (1 draft or cancelled, 0 issued)" in one_team
    assert "INV-20241001-0007" in stored_text(issued)
    assert "Team 01" in stored_text(first)
    second.refresh_from_db()
    assert not second.pdf_sha256


@pytest.mark.parametrize(("args", "returncode", "message"), [
    (["--period", "2024-13"], 2, "bad --period: period '2024-13' names no month"),
    (["--period", "September"], 2, "bad --period: period 'September' is not a month written YYYY-MM"),
    (["--period", "2024-09", "--status", "issued"], 2, "bad --status: 'issued' is not an invoice status"),
    (["--period", "2024-09", "--team", "nobody"], 2, "bad --team: no team has the slug 'nobody'"),
    (["--period", "2024-09", "--workers", "-1"], 2, "bad --workers: -1 (0 or more)"),
    (["--period", "2023-09"], 1, "no invoices to render for 2023-09"),
])
def test_render_invoices_refuses_bad_arguments_with_a_clear_message(args, returncode, message):
    # Given a September draft without a PDF
    (draft,) = september_drafts(1)

    # When the command is run with a bad argument / then it stops with the message and exit code
    with pytest.raises(CommandError) as refused:
        render(*args)
    assert message in str(refused.value)
    assert refused.value.returncode == returncode
    # and nothing was rendered
    draft.refresh_from_db()
    assert not draft.pdf_sha256


@pytest.mark.django_db(transaction=True)
def test_render_invoices_spreads_the_work_over_worker_processes():
    # Given six committed September drafts and an issued invoice with its PDF
    *drafts, issued = september_drafts(7)
    issued = issue(issued, "INV-20241001-0001")

    # When they are rendered by two worker processes
    output = render("--period", "2024-09", "--workers", "2")

    # Then every draft has its own PDF (its team, its checksum), and the issued one is skipped
    assert "Rendering 6 invoice PDFs for 2024-09" in output and "with 2 worker processes" in output
    assert "Rendered 6 PDFs (6 draft or cancelled, 0 issued)" in output
    assert "Skipped 1 issued invoice" in output
    names = set()
    for invoice in drafts:
        assert invoice.team_name in stored_text(invoice)
        names.add(invoice.pdf.name)
    assert len(names) == 6
    # and this process can still use the database afterwards
    assert Invoice.objects.exclude(pdf_sha256="").count() == 7
