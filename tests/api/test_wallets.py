"""Wallets, top-ups, the ledger, quotes, charges and statistics through HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from teams.models import TeamMembership
from teams.services import billing_settings_update
from tests.api.conftest import CALL_ITEMS
from wallets.models import LedgerEntry, UsageEvent
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db


def test_wallet_list_shows_balance_reserved_available_and_currency(member, wallet_a, wallet_b, top_up):
    top_up(wallet_a, "50")
    response = member.get("/api/v1/wallets/")
    assert response.status_code == 200
    [wallet] = response.json()["results"]
    assert wallet["id"] == wallet_a.pk
    assert (wallet["balance"], wallet["reserved"], wallet["available"], wallet["currency"]) == (
        "50.000000000000", "0.000000000000", "50.000000000000", "USD")
    assert wallet["warning_threshold"] == "5.000000000000"  # 10 % of the last top-up


def test_wallet_of_another_team_answers_404(member, wallet_b):
    assert member.get(f"/api/v1/wallets/{wallet_b.pk}/").status_code == 404
    assert member.get(f"/api/v1/wallets/{wallet_b.pk}/transactions/").status_code == 404


def test_wallet_of_a_team_member_is_seen_by_the_manager_not_by_other_members(team_a, member, manager, manager_user):
    colleague = TeamMembership.objects.create(team=team_a, user=_user("colin")).user
    wallet = wallet_open(team=team_a, user=colleague)
    assert manager.get(f"/api/v1/wallets/{wallet.pk}/").status_code == 200
    assert member.get(f"/api/v1/wallets/{wallet.pk}/").status_code == 404


def _user(name):
    from tests.factories import UserFactory

    return UserFactory(username=name)


def test_top_up_by_finance_credits_the_wallet(finance, wallet_a):
    response = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "25.50", "description": "PO 7"},
                            format="json", HTTP_IDEMPOTENCY_KEY="t-1")
    assert response.status_code == 201, response.json()
    assert response.json()["balance_after"] == "25.500000000000"
    assert response.json()["currency"] == "USD"
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("25.5")


def test_top_up_replayed_moves_money_once(finance, wallet_a):
    first = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "10"}, format="json",
                         HTTP_IDEMPOTENCY_KEY="t-1")
    again = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "10"}, format="json",
                         HTTP_IDEMPOTENCY_KEY="t-1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert "Idempotent-Replayed" not in first
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("10")


def test_top_up_same_key_other_amount_answers_409(finance, wallet_a):
    finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "10"}, format="json", HTTP_IDEMPOTENCY_KEY="t-1")
    response = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "11"}, format="json",
                            HTTP_IDEMPOTENCY_KEY="t-1")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "type": "idempotency_error", "code": "idempotency_error", "param": "idempotency_key",
        "message": response.json()["error"]["message"],
    }


@pytest.mark.parametrize(("amount", "param"), [("-5", "amount"), ("0", "amount"), ("abc", "amount"),
                                               ("1e400", "amount"), (None, "amount")])
def test_top_up_bad_amount_answers_400_naming_amount(finance, wallet_a, amount, param):
    response = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": amount}, format="json",
                            HTTP_IDEMPOTENCY_KEY="t-1")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not LedgerEntry.objects.exists()


def test_top_up_by_a_member_answers_403(member, wallet_a):
    response = member.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "10"}, format="json",
                           HTTP_IDEMPOTENCY_KEY="t-1")
    assert response.status_code == 403


def test_transactions_are_newest_first_with_a_cursor(member, wallet_a, top_up):
    for amount in ("1", "2", "3"):
        top_up(wallet_a, amount)
    first = member.get(f"/api/v1/wallets/{wallet_a.pk}/transactions/?limit=2").json()
    assert [e["amount"] for e in first["results"]] == ["3.000000000000", "2.000000000000"]
    second = member.get(first["next"]).json()
    assert [e["amount"] for e in second["results"]] == ["1.000000000000"]


def test_quote_prices_items_without_side_effects(key, catalog, wallet_a):
    response = key.post("/api/v1/quotes/", {"items": CALL_ITEMS}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["total"] == "0.037000000000"
    assert response.json()["currency"] == "USD"
    assert not LedgerEntry.objects.exists()


def test_quote_with_a_float_free_negative_quantity_names_the_item(member, catalog):
    items = [{**CALL_ITEMS[0], "quantity": "-1"}]
    response = member.post("/api/v1/quotes/", {"items": items}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "items[0].quantity"


def test_charge_debits_the_team_wallet(key, catalog, wallet_a, top_up):
    top_up(wallet_a, "1")
    response = key.post("/api/v1/charges/", {"feature_key": "call", "external_reference_id": "call-1",
                                             "items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["total"], body["currency"]) == ("charged", "0.037000000000", "USD")
    assert len(body["items"]) == 4
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("0.963")


def test_charge_replayed_moves_money_once(key, catalog, wallet_a, top_up):
    top_up(wallet_a, "1")
    payload = {"feature_key": "call", "items": CALL_ITEMS}
    first = key.post("/api/v1/charges/", payload, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    again = key.post("/api/v1/charges/", payload, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("0.963")


def test_charge_beyond_the_balance_answers_402_and_moves_nothing(key, catalog, wallet_a, top_up):
    top_up(wallet_a, "0.01")
    response = key.post("/api/v1/charges/", {"items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("insufficient_funds", "amount")
    assert "0.037" in error["message"]
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("0.01")
    assert UsageEvent.objects.get().status == "rejected"


def test_charge_of_a_provider_the_team_does_not_allow_answers_403(key, catalog, team_a, wallet_a, top_up):
    top_up(wallet_a, "1")
    billing_settings_update(team=team_a, allowed_providers=["openai"])
    response = key.post("/api/v1/charges/", {"items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "provider_not_allowed"
    assert response.json()["error"]["param"] == "items[3].provider"


def test_charge_by_a_member_of_another_team_answers_404(outsider, catalog, team_a, wallet_a):
    response = outsider.post("/api/v1/charges/", {"team": team_a.pk, "items": CALL_ITEMS}, format="json",
                             HTTP_IDEMPOTENCY_KEY="c-1")
    assert response.status_code == 404


def test_statistics_by_day_have_a_point_per_day(member, key, catalog, wallet_a, top_up):
    top_up(wallet_a, "1")
    key.post("/api/v1/charges/", {"items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    from django.utils import timezone

    today = timezone.now()
    response = member.get("/api/v1/statistics/day/", {"year": today.year, "month": today.month})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["total_cost"] == "0.037000000000"
    assert body["currency"] == "USD"
    assert len(body["series"]) >= 28


def test_statistics_by_day_without_a_month_names_month(member, team_a):
    response = member.get("/api/v1/statistics/day/", {"year": 2024})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "month"


def test_billing_settings_read_by_member_changed_by_finance(member, finance, team_a):
    assert member.get(f"/api/v1/teams/{team_a.pk}/billing-settings/").json()["billing_model"] == "prepaid_team"
    refused = member.put(f"/api/v1/teams/{team_a.pk}/billing-settings/", {"billing_model": "postpaid"}, format="json")
    assert refused.status_code == 403
    response = finance.put(f"/api/v1/teams/{team_a.pk}/billing-settings/",
                           {"billing_model": "postpaid", "credit_limit": "500"}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["billing_model"], response.json()["credit_limit"]) == ("postpaid", "500.000000000000")


@pytest.mark.parametrize(("payload", "param"), [
    ({"notify_emails": "not-an-address"}, "notify_emails"),
    ({"tax_rate": "101"}, "tax_rate"),
    ({"billing_model": "free"}, "billing_model"),
    ({"balance": "1000"}, "balance"),
])
def test_billing_settings_bad_values_answer_400_naming_the_field(finance, team_a, payload, param):
    response = finance.put(f"/api/v1/teams/{team_a.pk}/billing-settings/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_providers_lists_the_catalog_the_team_may_use(member, catalog, team_a):
    billing_settings_update(team=team_a, allowed_providers=["twilio"])
    response = member.get("/api/v1/providers/")
    assert response.json()["results"] == [{"provider": "twilio", "categories": ["telephony"]}]


def test_price_resolves_the_catalog_price(member, catalog):
    response = member.get("/api/v1/prices/", {"category": "llm", "provider": "openai", "model": "gpt-4",
                                              "unit": "token"})
    assert response.status_code == 200
    assert (response.json()["unit_price"], response.json()["scope"]) == ("0.000030000000", "global")


def test_price_of_an_unknown_item_answers_422(member, catalog):
    response = member.get("/api/v1/prices/", {"category": "llm", "provider": "openai", "model": "gpt-9",
                                              "unit": "token"})
    assert response.status_code == 422
