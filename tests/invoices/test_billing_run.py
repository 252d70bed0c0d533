"""``billing_run`` end to end on the real FOCUS sample: tie-out, PDFs, dry run, errors, repeat runs."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pypdf import PdfReader

from chargeback.models import AllocatedCost, AllocationRule, AllocationRun, UsageRecord
from chargeback.services.focus_import import focus_import
from invoices.models import Invoice, InvoiceLine
from teams.services import billing_settings_update
from tests.factories import TeamFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

D = Decimal


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("billing_run", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def september_sample(focus_sample):
    """The FOCUS sample imported, with a by_usage rule (no targets) for its untagged pool."""
    focus_import(path=focus_sample, create_teams=True)
    AllocationRule.objects.create(
        name="Untagged cloud costs, by usage", rule_type=AllocationRule.RuleType.BY_USAGE,
        source=AllocationRule.Source.UNALLOCATED,
    )


def live_invoices():
    return Invoice.objects.filter(period_start="2024-09-01").exclude(status=Invoice.Status.CANCELLED)


@pytest.mark.slow
def test_billing_run_bills_every_cent_of_the_focus_sample(september_sample):
    # Given the FOCUS sample of September 2024 and a rule for its untagged costs

    # When the month-end run is made
    out, _ = run_command("--period", "2024-09")

    # Then the drafts sum exactly to the month's BilledCost (20.28022672899 USD) rounded to cents
    invoices = list(live_invoices())
    assert invoices and all(i.status == Invoice.Status.DRAFT for i in invoices)
    assert sum(i.total for i in invoices) == D("20.28")
    for invoice in invoices:
        assert sum(l.amount for l in invoice.lines.all()) == invoice.subtotal
    # and the summary says so, with nothing left unallocated
    assert "Total invoiced: 20.28 USD" in out
    assert "allocated 20.28022672899 USD of 20.28022672899 USD, unallocated 0.00 USD" in out
    # and each stored PDF opens and shows its team and total
    for invoice in invoices:
        assert invoice.pdf and len(invoice.pdf_sha256) == 64
        assert invoice.pdf.path in out
        with invoice.pdf.open("rb") as handle:
            text = "".join(page.extract_text() for page in PdfReader(handle).pages).replace("\u00a0", " ")
        assert invoice.team_name in text
        assert f"{invoice.total:.2f} USD" in text


@pytest.mark.slow
def test_billing_run_twice_doubles_nothing(september_sample):
    # Given a first month-end run
    run_command("--period", "2024-09", "--no-pdf")
    first = {i.team_id: (i.pk, i.total) for i in live_invoices()}

    # When it is run again
    out, _ = run_command("--period", "2024-09", "--no-pdf")

    # Then every team still has one live invoice, the same one, with the same total
    second = {i.team_id: (i.pk, i.total) for i in live_invoices()}
    assert second == first
    assert "draft, refreshed" in out and "draft, new" not in out
    assert AllocationRun.objects.filter(status=AllocationRun.Status.COMMITTED).count() == 1
    assert InvoiceLine.objects.filter(invoice__status="draft").count() == sum(
        i.lines.count() for i in live_invoices()
    )


@pytest.mark.slow
def test_billing_run_for_one_team_gives_that_team_its_full_run_amount(september_sample):
    # Given the amounts of a full run
    run_command("--period", "2024-09", "--no-pdf")
    full = {i.team.slug: i.total for i in live_invoices().select_related("team")}
    slug = max(full, key=full.get)

    # When one team is billed on its own
    out, _ = run_command("--period", "2024-09", "--team", slug, "--no-pdf")

    # Then it gets the same amount, and the summary lists that team only
    invoice = live_invoices().get(team__slug=slug)
    assert invoice.total == full[slug]
    assert out.count("draft, refreshed") == 1


def test_billing_run_dry_run_writes_nothing(september_sample):
    # Given the imported sample and nothing allocated yet
    usage = UsageRecord.objects.count()

    # When the run is previewed
    out, _ = run_command("--period", "2024-09", "--dry-run")

    # Then the preview shows the amounts and the tie-out, and nothing is written
    assert "Total that would be invoiced: 20.28 USD" in out
    assert "allocated 20.28022672899 USD of 20.28022672899 USD, unallocated 0.00 USD" in out
    assert not AllocationRun.objects.exists()
    assert not AllocatedCost.objects.exists()
    assert not Invoice.objects.exists()
    assert UsageRecord.objects.count() == usage


@pytest.mark.parametrize("period", ["2024-13", "September", "2024-9", ""])
def test_billing_run_refuses_a_bad_period(period):
    # Given / when a period that is not a month written YYYY-MM / then it exits non-zero with a message
    with pytest.raises(CommandError, match="bad --period") as raised:
        run_command("--period", period)
    assert raised.value.returncode == 2
    assert not AllocationRun.objects.exists()


def test_billing_run_refuses_an_unknown_team():
    with pytest.raises(CommandError, match="no team has the slug 'nobody'") as raised:
        run_command("--period", "2024-09", "--team", "nobody")
    assert raised.value.returncode == 2


def test_billing_run_with_nothing_to_bill_exits_non_zero():
    # Given a month without usage / when it is billed / then it says there is nothing to bill
    with pytest.raises(CommandError, match="nothing to bill") as raised:
        run_command("--period", "2023-01")
    assert raised.value.returncode == 1
    assert not Invoice.objects.exists()


def test_billing_run_prints_team_amount_invoice_status_and_pdf():
    # Given two teams with usage in September 2024
    platform, search = TeamFactory(name="Platform", slug="platform"), TeamFactory(name="Search", slug="search")
    UsageRecordFactory(team=platform, cost=D("12.345"))
    UsageRecordFactory(team=search, cost=D("0.655"), service_name="Amazon S3")

    # When the month is billed
    out, _ = run_command("--period", "2024-09")

    # Then the summary names each team with its amount, draft invoice, status and PDF path
    invoices = {i.team_name: i for i in live_invoices()}
    for name, amount in [("Platform", "12.35 USD"), ("Search", "0.65 USD")]:
        row = next(line for line in out.splitlines() if line.startswith(name))
        invoice = invoices[name]
        assert amount in row and invoice.display_number in row and "draft, new" in row
        assert invoice.pdf.path in row
    assert "Total invoiced: 13.00 USD (2 invoices)" in out
    assert out.rstrip().endswith("allocated 13.00 USD of 13.00 USD, unallocated 0.00 USD")


def test_billing_run_bills_the_good_teams_and_exits_3_naming_the_team_without_a_rate():
    # given team Alpha's September has usage in EUR and USD and is invoiced in USD, converted, but
    # no EUR→USD rate is loaded; Beta has only USD
    alpha, beta = TeamFactory(name="Alpha", slug="alpha"), TeamFactory(name="Beta", slug="beta")
    billing_settings_update(team=alpha, invoice_currency="team_currency", extra_currencies=["EUR"])
    UsageRecordFactory(team=alpha, cost=D("5"))
    UsageRecordFactory(team=alpha, cost=D("7"), currency="EUR", source=UsageRecord.Source.FOCUS_IMPORT)
    UsageRecordFactory(team=beta, cost=D("3.5"))
    out, err = io.StringIO(), io.StringIO()
    # when the month is billed
    with pytest.raises(CommandError, match="partly billed: 1 team not billed") as raised:
        call_command("billing_run", "--period", "2024-09", "--no-pdf", stdout=out, stderr=err)
    # then Beta is invoiced, Alpha not at all (not even its USD), the summary names the pair and date
    assert raised.value.returncode == 3
    assert [(i.team_name, i.total) for i in live_invoices()] == [("Beta", D("3.50"))]
    summary = out.getvalue()
    assert "Total invoiced: 3.50 USD (1 invoice)" in summary
    assert "allocated 7.00 EUR of 7.00 EUR, unallocated 0.00 EUR" in summary
    assert "allocated 8.50 USD of 8.50 USD, unallocated 0.00 USD" in summary
    assert "Not billed (1 team)" in summary
    assert "Alpha: invoiced in USD, but no exchange rate EUR→USD on 2024-09-30" in summary
    run = AllocationRun.objects.get()
    assert run.status == AllocationRun.Status.COMMITTED and run.refused[0]["currencies"] == ["EUR", "USD"]


def test_billing_run_dry_run_also_names_the_team_that_would_not_be_billed():
    alpha = TeamFactory(name="Alpha", slug="alpha", currency="GBP")
    billing_settings_update(team=alpha, invoice_currency="team_currency", extra_currencies=["EUR"])
    UsageRecordFactory(team=alpha, cost=D("7"), currency="EUR")
    UsageRecordFactory(team=TeamFactory(name="Beta", slug="beta"), cost=D("3.5"))
    UsageRecordFactory(team=TeamFactory(name="Gamma", slug="gamma"), cost=D("1"))
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("billing_run", "--period", "2024-09", "--dry-run", stdout=out, stderr=io.StringIO())
    assert raised.value.returncode == 3
    assert "would not be invoiced" in out.getvalue()
    assert "Alpha: invoiced in GBP, but no exchange rate EUR→GBP on 2024-09-30" in out.getvalue()
    assert not AllocationRun.objects.exists() and not Invoice.objects.exists()
