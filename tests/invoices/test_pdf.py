"""Invoice PDFs: what a reader finds in them, page headers, storage, and the no-network fetcher."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from decimal import Decimal

import pytest
from pypdf import PdfReader

from chargeback.models import AllocationRule
from chargeback.periods import BillingPeriod
from chargeback.services.allocation import allocation_run_execute
from chargeback.services.usage import usage_record_create
from invoices.errors import InvoicePdfError
from invoices.models import CreditNote, Invoice
from invoices.pdf import StaticOnlyURLFetcher, UnsafeResourceError, credit_note_render_pdf, invoice_render_pdf
from invoices.selectors import credit_note_get_with_lines, invoice_get_with_lines
from invoices.services.credit_notes import credit_note_issue
from invoices.services.generation import invoice_generate_for_run
from invoices.services.lifecycle import invoice_issue
from invoices.services.pdf_storage import credit_note_pdf_store, invoice_pdf_store
from tests.factories import AllocationRuleFactory, PriceFactory, TeamFactory, UserFactory, draft_invoice
from tests.invoices.test_generation import committed_run, record_api_usage

pytestmark = pytest.mark.django_db

D = Decimal


def pages_text(pdf: bytes) -> list[str]:
    # Amounts join the number and the code with a no-break space (billing_site.formatting); read as a space.
    return [page.extract_text().replace("\u00a0", " ") for page in PdfReader(io.BytesIO(pdf)).pages]


def realistic_invoice() -> Invoice:
    """A draft for "Checkout & Payments": three services, a credit and a shared-cost line."""
    team = TeamFactory(name="Checkout & Payments", slug="checkout", cost_center="CC-4711")
    rule = AllocationRuleFactory(name="Untagged cloud costs", rule_type=AllocationRule.RuleType.BY_USAGE)
    run = committed_run([
        {"team": team, "service": "Amazon Elastic Compute Cloud", "amount": D("1234.567891234567"), "record_count": 412},
        {"team": team, "service": "Amazon Simple Storage Service", "amount": D("88.123456789012"), "record_count": 97},
        {"team": team, "service": "AWS Support (Business)", "amount": D("-12.5"), "record_count": 1},
        {"team": team, "rule": rule, "amount": D("3.720000000000"), "record_count": 289},
        {"team": TeamFactory(name="Search"), "rule": rule, "amount": D("6.280000000000"), "record_count": 289},
    ])
    invoice = next(i for i in invoice_generate_for_run(run=run) if i.team_id == team.pk)
    return invoice_get_with_lines(pk=invoice.pk)


def test_invoice_render_pdf_shows_team_cost_center_lines_and_total():
    # Given a realistic draft invoice
    invoice = realistic_invoice()

    # When it is rendered
    (text,) = pages_text(invoice_render_pdf(invoice))

    # Then a reader finds who is billed, for what, for when, and how much, on one page
    for expected in [
        "Example Corp, Finance", "Checkout & Payments", "CC-4711", "DRAFT",
        "1 September 2024 – 30 September 2024",
        "Amazon Elastic Compute Cloud", "1,234.57", "Amazon Simple Storage Service", "88.12", "-12.50",
        "Shared costs: Untagged cloud costs", "3.72",
        "Subtotal", "1,313.91 USD", "Total", "net 30 days", "Page 1 of 1",
        "How these costs were allocated", "by_usage, 37.2 % of the shared pool of 10.00 USD", "289 source usage records",
    ]:
        assert expected in text, expected
    assert invoice.total == D("1313.91")


def test_invoice_render_pdf_shows_the_quantity_unit_and_unit_price_of_api_usage():
    # Given a team's month of gpt-4 usage, 1,234,567 tokens at 0.00003 USD a token
    team, ana = TeamFactory(name="ML Platform"), UserFactory()
    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=D("0.00003"))
    record_api_usage(team, ana, "1234567")
    (invoice,) = invoice_generate_for_run(run=allocation_run_execute(period=BillingPeriod.month("2024-09")))

    # When its PDF is rendered
    (text,) = pages_text(invoice_render_pdf(invoice_get_with_lines(pk=invoice.pk)))

    # Then the reader finds, on one row, the item, its quantity in tokens, the price per token and the amount
    assert re.search(r"LLM · openai gpt-4 1,234,567 tokens 0\.00003 37\.04", text), text
    assert "UNIT PRICE" in text and "avg. 0.00003" not in text and "an average unit price" not in text


def test_invoice_render_pdf_marks_an_average_unit_price_and_explains_it_once():
    # Given two metered items without a catalog price, one used for 1 hour, one for 3 hours
    team = TeamFactory(name="Batch Jobs")
    at = dt.datetime(2024, 9, 15, 12, tzinfo=dt.UTC)
    for n, hours in enumerate(["1", "3"]):
        usage_record_create(
            team=team, resource_type=f"batch-{n}", provider="AWS", unit="Hours", quantity=D(hours),
            occurred_at=at, idempotency_key=f"batch-{n}", cost=D("2.5") * D(hours),
        )
    (invoice,) = invoice_generate_for_run(run=allocation_run_execute(period=BillingPeriod.month("2024-09")))

    # When its PDF is rendered
    (text,) = pages_text(invoice_render_pdf(invoice_get_with_lines(pk=invoice.pk)))

    # Then each row reads "1 Hour" / "3 Hours" with its average unit price marked, explained once below
    assert re.search(r"1 Hour avg\. 2\.50 2\.50", text), text
    assert re.search(r"3 Hours avg\. 2\.50 7\.50", text), text
    assert text.count("an average unit price") == 1


def test_invoice_render_pdf_stamps_a_cancelled_invoice():
    # Given a cancelled draft
    invoice = realistic_invoice()
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.CANCELLED)

    # When it is rendered / then it says so
    (text,) = pages_text(invoice_render_pdf(invoice_get_with_lines(pk=invoice.pk)))
    assert "CANCELLED" in text
    assert "Nothing is due" in text


@pytest.mark.slow
def test_invoice_render_pdf_repeats_the_table_header_on_every_page_of_a_500_line_invoice():
    # Given an invoice of 500 services with long names
    team = TeamFactory(name="Data Platform")
    run = committed_run([
        {"team": team, "service": f"Amazon CloudWatch Logs and metrics, a long service name that wraps #{n:03d}",
         "amount": D(n) + D("0.123456789012"), "record_count": n}
        for n in range(1, 501)
    ])
    (invoice,) = invoice_generate_for_run(run=run)

    # When it is rendered
    pages = pages_text(invoice_render_pdf(invoice_get_with_lines(pk=invoice.pk)))

    # Then it runs over many pages, each page of lines under the repeated table header, numbered "X of N"
    assert len(pages) >= 5
    line_pages = [text for text in pages if "wraps #" in text]
    assert len(line_pages) >= 5
    for text in line_pages:
        assert "DESCRIPTION" in text and "UNIT PRICE" in text and "AMOUNT" in text
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in text
    # and every line is there once, the total on the last pages
    found = {int(m) for text in pages for m in re.findall(r"wraps #(\d{3})", text)}
    assert found == set(range(1, 501))
    assert "125,311.73 USD" in "".join(pages[-2:])


def test_invoice_store_pdf_saves_the_file_and_its_sha256():
    # Given a draft invoice
    invoice = realistic_invoice()

    # When its PDF is stored
    stored = invoice_pdf_store(invoice=invoice)

    # Then the file is named after the team and period, opens as a PDF and matches its checksum
    assert re.fullmatch(r"invoices/\d{4}/\d{2}/checkout-2024-09-draft\.pdf", stored.pdf.name)
    with stored.pdf.open("rb") as handle:
        content = handle.read()
    assert hashlib.sha256(content).hexdigest() == stored.pdf_sha256
    assert "Checkout & Payments" in pages_text(content)[0]
    assert Invoice.objects.get(pk=invoice.pk).pdf_sha256 == stored.pdf_sha256


@pytest.mark.parametrize("url", [
    "http://example.com/logo.png",
    "https://fonts.googleapis.com/css?family=Inter",
    "ftp://example.com/a.css",
    "file:///etc/passwd",
    "file://example.com/static/invoices/invoice.css",
])
def test_static_only_url_fetcher_refuses_remote_and_outside_urls(url):
    # Given / when / then: anything but the project's static files is refused with a clear error
    with pytest.raises(UnsafeResourceError, match="refused"):
        StaticOnlyURLFetcher().fetch(url)


def test_static_only_url_fetcher_refuses_a_path_escaping_static(settings):
    # Given a file URL that climbs out of static/ with ".."
    url = f"file://{settings.BASE_DIR}/static/../manage.py"

    # When / then it is refused
    with pytest.raises(UnsafeResourceError, match="refused"):
        StaticOnlyURLFetcher().fetch(url)


def test_static_only_url_fetcher_reads_the_project_static_files(settings):
    # Given the invoice stylesheet in static/ / when it is fetched / then it is served as CSS
    response = StaticOnlyURLFetcher().fetch(f"file://{settings.BASE_DIR}/static/invoices/invoice.css")
    assert response.content_type == "text/css"
    assert b"@page" in response.read()


@pytest.mark.parametrize("tag", [
    '<img src="http://127.0.0.1:9/tracker.png">',
    '<link rel="stylesheet" href="file:///etc/passwd">',
])
def test_invoice_render_pdf_stops_when_the_template_reaches_outside(tag, tmp_path, settings):
    # Given an invoice template that asks for a remote image or a local file outside static/
    folder = tmp_path / "templates" / "invoices"
    folder.mkdir(parents=True)
    (folder / "invoice.html").write_text(f"<html><body>{tag}<p>{{{{ invoice.team_name }}}}</p></body></html>")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path / "templates"], "APP_DIRS": False}]
    invoice = realistic_invoice()

    # When it is rendered / then the rendering stops with a clear error instead of fetching it
    with pytest.raises(UnsafeResourceError, match="refused"):
        invoice_render_pdf(invoice)


# --- credit notes ---------------------------------------------------------------------------------

def issued_invoice_of_three_lines() -> Invoice:
    """INV-20241001-0001, issued 1 October 2024: three lines, 60.00 + 30.00 + 10.00, 19 % tax: 119.00 USD."""
    invoice = draft_invoice(team=TeamFactory(name="Checkout & Payments", cost_center="CC-4711"),
                            amounts=("60.00", "30.00", "10.00"), tax_rate=D(19))
    return invoice_issue(invoice=invoice, number="INV-20241001-0001", issue_date=dt.date(2024, 10, 1))


def test_credit_note_pdf_is_stored_when_a_credit_note_is_issued(django_capture_on_commit_callbacks):
    # Given an issued invoice of 119.00 USD
    invoice = issued_invoice_of_three_lines()
    line = invoice.lines.get(position=2)

    # When a partial credit note of its second line is issued (and its transaction commits)
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_issue(
            invoice=invoice, reason="allocation_correction", lines=[{"invoice_line": line.pk, "amount": D("30.00")}],
            description="Storage was allocated to the wrong team.",
        )

    # Then its PDF is stored under its number with its checksum
    note = CreditNote.objects.get(pk=note.pk)
    assert note.pdf.name.endswith(f"{note.number.lower()}.pdf")
    with note.pdf.open("rb") as handle:
        content = handle.read()
    assert hashlib.sha256(content).hexdigest() == note.pdf_sha256
    # and it shows the credit note number, the invoice it credits, the line, the amounts and what is left
    (text,) = pages_text(content)
    assert re.search(r"CN-\d{8}-\d{4}", text) and note.number in text
    for expected in [
        "CREDIT NOTE", "Credits invoice INV-20241001-0001", "Checkout & Payments", "CC-4711",
        "Allocation correction", "Storage was allocated to the wrong team.", "Service 2", "30.00",
        "Tax (19 %) 5.70 USD", "Total credited 35.70 USD", "Invoice INV-20241001-0001 total 119.00 USD",
        "Left to pay on the invoice 83.30 USD",
    ]:
        assert expected in text, expected


def test_credit_note_render_pdf_of_a_full_credit_says_the_invoice_is_cancelled():
    # Given an issued invoice already credited 35.70 USD, then credited in full
    invoice = issued_invoice_of_three_lines()
    credit_note_issue(invoice=invoice, reason="other", amount=D("35.70"))
    full = credit_note_issue(invoice=invoice, reason="duplicated_charge")

    # When the full credit note is rendered
    text = "".join(pages_text(credit_note_render_pdf(credit_note_get_with_lines(pk=full.pk))))

    # Then it credits what was left, counts the earlier note, and says the invoice is cancelled
    for expected in [
        full.number, "Duplicated charge", "Total credited 83.30 USD", "Credited by earlier credit notes 35.70 USD",
        "Credited up to and including this note 119.00 USD", "Left to pay on the invoice 0.00 USD",
        "credits invoice INV-20241001-0001 in full: the invoice is cancelled",
    ]:
        assert expected in text, expected


def test_credit_note_store_pdf_never_renders_a_credit_note_again(django_capture_on_commit_callbacks):
    # Given a credit note whose PDF was stored when it was issued
    invoice = issued_invoice_of_three_lines()
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_issue(invoice=invoice, reason="other", amount=D("11.90"))
    stored = CreditNote.objects.get(pk=note.pk)

    # When it is stored again / then it is refused and the PDF stays as it was
    with pytest.raises(InvoicePdfError, match="already has its PDF"):
        credit_note_pdf_store(credit_note=stored)
    assert CreditNote.objects.get(pk=note.pk).pdf_sha256 == stored.pdf_sha256


def test_invoice_store_pdf_keeps_the_pdf_of_an_invoice_cancelled_by_a_credit_note():
    # Given an issued invoice (its PDF stored at issue) cancelled by a full credit note
    invoice = issued_invoice_of_three_lines()
    sha = invoice.pdf_sha256
    credit_note_issue(invoice=invoice, reason="duplicated_charge")
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.CANCELLED

    # When its PDF is stored again / then it is refused: the PDF sent out is final
    with pytest.raises(InvoicePdfError, match="issued"):
        invoice_pdf_store(invoice=invoice)
    assert Invoice.objects.get(pk=invoice.pk).pdf_sha256 == sha


def test_invoice_render_pdf_of_a_prepaid_statement_bills_usage_and_shows_balances_for_information():
    # Given a prepaid team's September: 100 USD before, a 50 USD top-up, 30.12 + 5.00 used, 2.00 refunded
    import time_machine

    from invoices.services.generation import invoice_generate
    from wallets.services.charges import wallet_charge
    from wallets.services.posting import wallet_refund, wallet_top_up
    from wallets.services.wallets import wallet_open

    team = TeamFactory(name="Support Bots", currency="USD")
    wallet = wallet_open(team=team)
    with time_machine.travel(dt.datetime(2024, 8, 20, 12, tzinfo=dt.UTC), tick=False):
        wallet_top_up(wallet=wallet, amount=D(100), idempotency_key="aug")
    with time_machine.travel(dt.datetime(2024, 9, 10, 12, tzinfo=dt.UTC), tick=False):
        wallet_top_up(wallet=wallet, amount=D(50), idempotency_key="sep")
        chat = wallet_charge(wallet=wallet, amount=D("30.123456"), feature_key="chat", idempotency_key="c1")
        wallet_charge(wallet=wallet, amount=D("5"), feature_key="transcribe", idempotency_key="c2")
        wallet_refund(entry=chat, amount=D(2), idempotency_key="r1")
    statement = invoice_generate(team=team, period=BillingPeriod.month("2024-09"))

    # When its PDF is rendered
    (text,) = pages_text(invoice_render_pdf(invoice_get_with_lines(pk=statement.pk)))

    # Then it is a statement billing the credit used, the balances listed without a billed amount
    assert "STATEMENT" in text and "INVOICE" not in text
    assert re.search(r"Usage: chat 30\.12", text) and re.search(r"Refunds -2\.00", text)
    assert re.search(r"Opening balance on 2024-09-01: 100\.00 USD\s*\n", text), text
    assert re.search(r"Top-ups: 50\.00 USD\s*\n", text), text
    assert "Total 33.12 USD" in text and "not billed" in text
    assert "How these costs were allocated" not in text
