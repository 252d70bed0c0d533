"""Small API corners: opening a wallet before any charge, wallet and ledger filters by team, PUT on an
invoice's status, and the credit-note reasons named in the error."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.factories import draft_invoice
from wallets.models import Wallet
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db


def test_finance_opens_a_wallet_for_a_team_before_any_charge(finance, team_a):
    response = finance.post("/api/v1/wallets/", {"team": team_a.pk}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["balance"] == "0.000000000000" and response.json()["currency"] == "USD"
    again = finance.post("/api/v1/wallets/", {"team": team_a.pk}, format="json")
    assert again.status_code == 200 and again.json()["id"] == response.json()["id"]
    assert Wallet.objects.filter(team=team_a).count() == 1


def test_opening_a_wallet_in_a_currency_the_team_is_not_billed_in_names_currency(finance, team_a):
    response = finance.post("/api/v1/wallets/", {"team": team_a.pk, "currency": "JPY"}, format="json")
    assert response.status_code == 422 and response.json()["error"]["param"] == "currency"


def test_a_member_may_not_open_a_wallet(member, team_a):
    assert member.post("/api/v1/wallets/", {"team": team_a.pk}, format="json").status_code == 403


def test_wallet_list_filters_by_team(finance, team_a, team_b):
    wallet_open(team=team_a)
    theirs = wallet_open(team=team_b)
    response = finance.get("/api/v1/wallets/", {"team": team_b.pk})
    assert [w["id"] for w in response.json()["results"]] == [theirs.pk]
    assert finance.get("/api/v1/wallets/", {"team": "x"}).json()["error"]["param"] == "team"


def test_ledger_entries_of_one_team_across_its_wallets_newest_first(finance, member, team_a, team_b):
    ours = wallet_open(team=team_a)
    wallet_top_up(wallet=ours, amount=Decimal("5"), idempotency_key="le-1")
    wallet_top_up(wallet=ours, amount=Decimal("7"), idempotency_key="le-2")
    wallet_top_up(wallet=wallet_open(team=team_b), amount=Decimal("9"), idempotency_key="le-3")
    body = finance.get("/api/v1/ledger-entries/", {"team": team_a.pk}).json()
    assert [e["amount"] for e in body["results"]] == ["7.000000000000", "5.000000000000"]
    # a member sees only their team's entries, whatever team they ask for
    assert member.get("/api/v1/ledger-entries/", {"team": team_b.pk}).json()["results"] == []
    assert len(member.get("/api/v1/ledger-entries/").json()["results"]) == 2


def test_invoice_status_accepts_put_like_post(finance, team_a):
    invoice = draft_invoice(team=team_a)
    response = finance.put(f"/api/v1/invoices/{invoice.pk}/status/", {"status": "pending"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "pending"


def test_credit_note_unknown_reason_names_the_reasons(finance, team_a):
    invoice = draft_invoice(team=team_a)
    finance.post(f"/api/v1/invoices/{invoice.pk}/status/", {"status": "pending"}, format="json")
    response = finance.post(f"/api/v1/invoices/{invoice.pk}/credit-notes/", {"reason": "goodwill"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "reason"
    assert "duplicated_charge, order_change, allocation_correction, other" in error["message"]
