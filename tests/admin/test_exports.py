"""CSV and XLSX export of every billing list: the rows the list shows (filters, search), exact amounts with
their currency, text that cannot become a formula, and only for those who may see the list."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from chargeback.periods import BillingPeriod
from chargeback.services.allocation import allocation_run_execute
from invoices.services.credit_notes import credit_note_issue
from invoices.services.lifecycle import invoice_issue
from tests.admin.conftest import new_key
from tests.factories import TeamFactory, UsageRecordFactory, draft_invoice
from wallets.services.charges import wallet_charge

pytestmark = pytest.mark.django_db

FORMULA = '=HYPERLINK("http://evil.example/","x")'


def csv_rows(response) -> list[dict]:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def xlsx_rows(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;") and ".xlsx" in response["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True).active
    header, *rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    # A read-only sheet drops a row's trailing empty cells.
    return [dict(zip(header, row + [None] * (len(header) - len(row)), strict=True)) for row in rows]


def export(client, model: str, fmt: str, **params):
    name = f"admin:{model}_export" + ("_xlsx" if fmt == "xlsx" else "")
    response = client.get(reverse(name), params)
    return csv_rows(response) if fmt == "csv" else xlsx_rows(response)


@pytest.fixture
def billed(wallet):
    """Search (with a wallet, charged with formula text) and Maps; September usage billed, an invoice credited."""
    search, maps = wallet.team, TeamFactory(name="Maps", slug="maps")
    at = timezone.make_aware(dt.datetime(2024, 9, 3, 12))
    UsageRecordFactory(team=search, cost=Decimal("10.123456789012"), occurred_at=at, feature_key=FORMULA)
    UsageRecordFactory(team=maps, cost=Decimal("5"), occurred_at=at)
    allocation_run_execute(period=BillingPeriod.month("2024-09"))
    wallet_charge(wallet=wallet, amount=Decimal("12.5"), idempotency_key=new_key(), feature_key=FORMULA,
                  description="@SUM(1+1)", reference_id="+1-555")
    invoice = invoice_issue(invoice=draft_invoice(team=maps, amounts=("30.00",)), issue_date=dt.date(2024, 10, 1))
    credit_note_issue(invoice=invoice, reason="order_change", amount=Decimal("7.50"), description="-typo fix")
    return search, maps


LISTS = [
    # (model, a column, what one row of the list holds there)
    ("chargeback_usagerecord", "cost", "10.123456789012000"),
    ("chargeback_allocatedcost", "team", "search"),
    ("chargeback_allocationrun", "total_cost", "15.123456789012"),
    ("invoices_invoice", "total", "30.00"),
    ("invoices_creditnote", "total", "7.50"),
    ("wallets_ledgerentry", "amount", "-12.500000000000"),
    ("wallets_wallet", "balance", "87.500000000000"),
    ("teams_team", "slug", "maps"),
    ("subscriptions_plan", None, None),
    ("subscriptions_subscription", None, None),
]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize(("model", "column", "value"), LISTS)
def test_every_billing_list_exports_its_rows(finance, billed, model, column, value, fmt):
    # Given usage, a billing run, an invoice with a credit note, a charged wallet
    # When finance exports the list
    rows = export(finance, model, fmt)
    # Then the file holds the list's rows; amounts are exact decimal text (never a float)
    if column is None:
        assert rows == []
        return
    cells = [row[column] for row in rows]
    assert any(isinstance(c, str) and c.rstrip("0") == value.rstrip("0") for c in cells), cells
    assert not any(isinstance(c, float) for row in rows for c in row.values())


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_money_columns_come_with_their_currency(finance, billed, fmt):
    for model, amount in [("wallets_ledgerentry", "amount"), ("chargeback_usagerecord", "cost"),
                          ("invoices_invoice", "total"), ("invoices_creditnote", "total"),
                          ("chargeback_allocatedcost", "amount"), ("wallets_wallet", "balance")]:
        rows = export(finance, model, fmt)
        assert rows and all(row["currency"] == "USD" and Decimal(row[amount]) is not None for row in rows), model


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_text_that_would_start_a_formula_is_neutralised_in_every_format(finance, billed, fmt):
    ledger = [r for r in export(finance, "wallets_ledgerentry", fmt, entry_type__exact="charge")]
    (charge,) = ledger
    assert (charge["feature_key"], charge["description"], charge["reference_id"]) == (
        "'" + FORMULA, "'@SUM(1+1)", "'+1-555")
    assert charge["amount"] == "-12.500000000000"  # an amount is not text: no quote
    usage = export(finance, "chargeback_usagerecord", fmt, team=str(billed[0].pk))
    assert [r["feature_key"] for r in usage] == ["'" + FORMULA]
    (note,) = export(finance, "invoices_creditnote", fmt)
    assert note["description"] == "'-typo fix"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_follows_the_lists_filters_and_search(finance, billed, fmt):
    search, maps = billed
    assert [r["team"] for r in export(finance, "chargeback_usagerecord", fmt, team=str(maps.pk))] == ["maps"]
    assert [r["slug"] for r in export(finance, "teams_team", fmt, q="Map")] == ["maps"]
    assert [r["entry_type"] for r in export(finance, "wallets_ledgerentry", fmt, entry_type__exact="top_up")] == [
        "top_up"]


def test_export_times_are_utc_and_dates_are_dates(finance, billed):
    (row,) = export(finance, "chargeback_usagerecord", "xlsx", team=str(billed[1].pk))
    assert row["occurred_at"] == dt.datetime(2024, 9, 3, 12) and row["billing_period_start"] == dt.datetime(2024, 9, 1)
    (line,) = export(finance, "chargeback_usagerecord", "csv", team=str(billed[1].pk))
    assert line["occurred_at"] == "2024-09-03T12:00:00+00:00" and line["billing_period_start"] == "2024-09-01"


def test_auditors_may_export_staff_outside_billing_may_not(auditor, billed, client, plain_staff):
    assert export(auditor, "wallets_ledgerentry", "xlsx")
    client.force_login(plain_staff)
    for name in ("admin:wallets_ledgerentry_export", "admin:chargeback_usagerecord_export_xlsx"):
        assert client.get(reverse(name)).status_code == 403


def test_a_bad_filter_is_a_400_naming_it(finance, billed):
    response = finance.get(reverse("admin:wallets_ledgerentry_export"), {"team": "abc"})
    assert response.status_code == 400 and "team must be a number" in response.content.decode()


def test_the_list_offers_both_exports_with_its_filters(finance, billed):
    page = finance.get(reverse("admin:wallets_ledgerentry_changelist"), {"entry_type__exact": "charge"})
    html = page.content.decode()
    assert reverse("admin:wallets_ledgerentry_export") + "?entry_type__exact=charge" in html
    assert reverse("admin:wallets_ledgerentry_export_xlsx") + "?entry_type__exact=charge" in html
