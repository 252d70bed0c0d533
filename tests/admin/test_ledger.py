"""The ledger in the admin: read-only for everybody, searchable, exported as CSV with its filters."""

import csv
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.admin.conftest import new_key
from tests.factories import TeamFactory
from wallets.models import LedgerEntry
from wallets.services.charges import wallet_charge
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db


def _csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_ledger_cannot_be_added_changed_or_deleted_even_by_finance(finance, wallet):
    entry = LedgerEntry.objects.get(wallet=wallet)
    assert finance.get(reverse("admin:wallets_ledgerentry_add")).status_code == 403
    assert finance.post(reverse("admin:wallets_ledgerentry_change", args=[entry.pk]), {"amount": "1"}).status_code == 403
    assert finance.post(reverse("admin:wallets_ledgerentry_delete", args=[entry.pk])).status_code == 403
    page = finance.get(reverse("admin:wallets_ledgerentry_changelist")).content.decode()
    assert "delete_selected" not in page and "Export CSV" in page


def test_ledger_search_finds_an_entry_by_idempotency_key_or_reference(finance, wallet):
    wallet_top_up(wallet=wallet, amount=Decimal("7"), idempotency_key="find-me-42", reference_id="PO-77")
    url = reverse("admin:wallets_ledgerentry_changelist")
    for term in ("find-me-42", "PO-77"):
        response = finance.get(url, {"q": term})
        assert [e.idempotency_key for e in response.context["cl"].result_list] == ["find-me-42"]


def test_ledger_csv_export_keeps_the_filters_and_exact_amounts(finance, wallet):
    other = wallet_open(team=TeamFactory(name="Ads", slug="ads"))
    wallet_top_up(wallet=other, amount=Decimal("0.000000000001"), idempotency_key=new_key())
    wallet_charge(wallet=wallet, amount=Decimal("1.25"), idempotency_key=new_key())

    response = finance.get(reverse("admin:wallets_ledgerentry_export"), {"team": other.team_id})

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = _csv(response)
    assert [(r["team"], r["entry_type"], r["amount"]) for r in rows] == [("ads", "top_up", "0.000000000001")]


def test_ledger_csv_export_of_one_entry_type(finance, wallet):
    wallet_charge(wallet=wallet, amount=Decimal("1.25"), idempotency_key=new_key())
    rows = _csv(finance.get(reverse("admin:wallets_ledgerentry_export"), {"entry_type__exact": "charge"}))
    assert [(r["entry_type"], Decimal(r["amount"])) for r in rows] == [("charge", Decimal("-1.25"))]


def test_ledger_csv_export_refuses_a_bad_filter_with_400(finance, wallet):
    assert finance.get(reverse("admin:wallets_ledgerentry_export"), {"team": "abc"}).status_code == 400


def test_ledger_csv_export_is_refused_to_staff_outside_the_groups(staff, wallet):
    assert staff.get(reverse("admin:wallets_ledgerentry_export")).status_code == 403


def test_ledger_list_costs_the_same_queries_for_few_and_many_entries(finance, wallet):
    url = reverse("admin:wallets_ledgerentry_changelist")
    finance.get(url)  # warm the session and content types
    with CaptureQueriesContext(connection) as few:
        finance.get(url)
    for n in range(30):
        team_wallet = wallet_open(team=TeamFactory())
        wallet_top_up(wallet=team_wallet, amount=Decimal(n + 1), idempotency_key=new_key())
    with CaptureQueriesContext(connection) as many:
        finance.get(url)
    assert len(many) == len(few)


def test_ledger_date_drill_down_offers_the_days_of_the_entries_and_filters_by_them(finance, wallet):
    from django.utils import timezone

    today = timezone.localtime(LedgerEntry.objects.get(wallet=wallet).created_at).date()
    url = reverse("admin:wallets_ledgerentry_changelist")
    page = finance.get(url).content.decode()
    day_link = f"created_at__day={today.day}&amp;created_at__month={today.month}&amp;created_at__year={today.year}"
    assert day_link in page
    response = finance.get(url, {"created_at__year": today.year, "created_at__month": today.month,
                                 "created_at__day": today.day})
    assert len(response.context["cl"].result_list) == 1
    empty = finance.get(url, {"created_at__year": today.year - 1})
    assert len(empty.context["cl"].result_list) == 0 and empty.status_code == 200


def test_ledger_search_that_fits_a_page_reads_the_ledger_once_and_counts_nothing(finance, wallet):
    wallet_top_up(wallet=wallet, amount=Decimal("7"), idempotency_key="once-only")
    url = reverse("admin:wallets_ledgerentry_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = finance.get(url, {"q": "once-only"})
    ledger_reads = [q["sql"] for q in queries if 'FROM "wallets_ledgerentry"' in q["sql"]]
    assert len(ledger_reads) == 1 and "COUNT(" not in ledger_reads[0]
    assert response.context["cl"].result_count == 1


def test_ledger_filtered_over_several_pages_is_counted_exactly(finance, wallet, monkeypatch):
    from wallets.admin import LedgerEntryAdmin

    monkeypatch.setattr(LedgerEntryAdmin, "list_per_page", 2)
    for n in range(4):
        wallet_top_up(wallet=wallet, amount=Decimal(n + 1), idempotency_key=new_key())
    response = finance.get(reverse("admin:wallets_ledgerentry_changelist"), {"entry_type__exact": "top_up"})
    cl = response.context["cl"]
    assert (cl.result_count, len(cl.result_list), cl.multi_page) == (5, 2, True)
    second = finance.get(reverse("admin:wallets_ledgerentry_changelist"), {"entry_type__exact": "top_up", "p": 3})
    assert len(second.context["cl"].result_list) == 1
