"""No tenant can hurt another through the API: currencies a team is billed in, no negative cost, no void,
and a billing run that bills every team whose data is good."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from chargeback.models import UsageRecord
from invoices.models import Invoice
from teams.services import billing_settings_update
from tests.api.conftest import CALL_ITEMS
from tests.factories import PriceFactory, TeamFactory, UsageRecordFactory
from wallets.models import UsageEvent

pytestmark = pytest.mark.django_db

USAGE = {
    "resource_type": "gpu", "provider": "lambda", "unit": "hour", "quantity": "1", "cost": "12.34",
    "occurred_at": "2024-09-15T12:00:00Z",
}


def _error(response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["param"]


# --- currency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["EUR", "XXX"])
def test_usage_in_a_currency_the_team_is_not_billed_in_answers_422_naming_currency(key, currency):
    # when team A's key (a USD team) records usage in another currency
    response = key.post("/api/v1/usage/", {**USAGE, "currency": currency}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    # then it is refused, naming the field, and nothing is recorded
    assert _error(response) == (422, "currency_not_allowed", "currency")
    assert "team-a" in response.json()["error"]["message"] and currency in response.json()["error"]["message"]
    assert not UsageRecord.objects.exists()


def test_usage_in_an_extra_currency_of_the_team_is_recorded(key, team_a):
    # given finance set team A up to be billed in EUR too
    billing_settings_update(team=team_a, extra_currencies=["EUR"])
    # when its key records EUR usage
    response = key.post("/api/v1/usage/", {**USAGE, "currency": "EUR"}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    # then it is kept in EUR
    assert response.status_code == 201, response.json()
    assert (response.json()["currency"], response.json()["cost"]) == ("EUR", "12.340000000000")


def test_usage_priced_in_a_currency_the_team_is_not_billed_in_answers_422(key):
    # given the only price of the item is in EUR
    PriceFactory(category="llm", provider="mistral", model="large", unit="token", unit_price=Decimal("0.001"),
                 currency="EUR", valid_from=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    usage = {"resource_type": "llm", "provider": "mistral", "model": "large", "unit": "token", "quantity": "10",
             "occurred_at": "2024-09-15T12:00:00Z"}
    response = key.post("/api/v1/usage/", usage, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert _error(response) == (422, "currency_not_allowed", "currency")
    assert not UsageRecord.objects.exists()


def test_usage_batch_with_one_row_in_another_currency_records_none_and_names_the_row(key):
    records = [{**USAGE, "idempotency_key": "b-1"}, {**USAGE, "idempotency_key": "b-2", "currency": "XXX"}]
    response = key.post("/api/v1/usage/batch/", {"records": records}, format="json")
    assert _error(response) == (422, "currency_not_allowed", "records[1].currency")
    assert not UsageRecord.objects.exists()


def test_charge_priced_in_a_currency_the_team_is_not_billed_in_answers_422_and_moves_nothing(
    key, team_a, wallet_a, top_up
):
    # given the call's items are priced in EUR only, and team A (USD) has credit
    for item in CALL_ITEMS:
        PriceFactory(category=item["category"], provider=item["provider"], model=item["model"], unit=item["unit"],
                     unit_price=Decimal("0.001"), currency="EUR",
                     valid_from=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    top_up(wallet_a, "5")
    # when its key charges the call, or asks for a quote
    charge = key.post("/api/v1/charges/", {"items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    quote = key.post("/api/v1/quotes/", {"items": CALL_ITEMS}, format="json")
    # then both are refused naming the currency, and no money moved
    assert _error(charge) == (422, "currency_not_allowed", "currency")
    assert _error(quote) == (422, "currency_not_allowed", "currency")
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("5")
    assert not UsageEvent.objects.exists() and not UsageRecord.objects.exists()


def test_billing_settings_extra_currencies_are_iso_codes(finance, team_a):
    url = f"/api/v1/teams/{team_a.pk}/billing-settings/"
    bad = finance.put(url, {"extra_currencies": ["eur"]}, format="json")
    assert bad.status_code == 400
    good = finance.put(url, {"extra_currencies": ["EUR"]}, format="json")
    assert good.status_code == 200, good.json()
    assert finance.get(url).json()["extra_currencies"] == ["EUR"]


# --- negative cost ----------------------------------------------------------------------------


@pytest.mark.parametrize("cost", ["-100", "-5", "-0", "-0.000", "-0.000000000001"])
def test_usage_with_a_negative_cost_answers_400_naming_cost(key, cost):
    response = key.post("/api/v1/usage/", {**USAGE, "cost": cost}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert _error(response) == (400, "invalid_usage", "cost")
    assert not UsageRecord.objects.exists()


def test_usage_with_a_zero_cost_is_recorded(key):
    response = key.post("/api/v1/usage/", {**USAGE, "cost": "0"}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 201, response.json()
    assert response.json()["cost"] == "0.000000000000"


def test_usage_batch_with_a_negative_cost_records_none_and_names_the_row(key):
    records = [{**USAGE, "idempotency_key": "b-1"}, {**USAGE, "idempotency_key": "b-2", "cost": "-5"}]
    response = key.post("/api/v1/usage/batch/", {"records": records}, format="json")
    assert _error(response) == (400, "invalid_usage", "records[1].cost")
    assert not UsageRecord.objects.exists()


def test_charge_takes_no_cost_of_its_own(key, catalog, wallet_a, top_up):
    # a charge is priced from the catalog: a cost sent with an item is refused, nothing moves
    top_up(wallet_a, "1")
    items = [{**CALL_ITEMS[0], "cost": "-5"}]
    response = key.post("/api/v1/charges/", {"items": items}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert response.status_code == 400
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("1") and not UsageEvent.objects.exists()


# --- void -------------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["key", "member", "finance"])
def test_usage_cannot_be_voided_through_the_api(request, caller, team_a, member_user):
    client = request.getfixturevalue(caller)
    record = UsageRecordFactory(team=team_a)
    response = client.post(f"/api/v1/usage/{record.pk}/void/", {"reason": "wrong"}, format="json")
    assert response.status_code in (404, 405)
    record.refresh_from_db()
    assert record.status == UsageRecord.Status.ACTIVE


def test_void_usage_is_listed_as_void_and_left_out_of_the_summary(member, team_a):
    from chargeback.services.usage import usage_record_void
    from tests.factories import UserFactory

    kept = UsageRecordFactory(team=team_a, cost=Decimal("2"))
    wrong = UsageRecordFactory(team=team_a, cost=Decimal("100"))
    usage_record_void(record=wrong, reason="posted twice", voided_by=UserFactory())
    listed = {row["id"]: (row["status"], row["void_reason"]) for row in member.get("/api/v1/usage/").json()["results"]}
    assert listed == {kept.pk: ("active", ""), wrong.pk: ("void", "posted twice")}
    summary = member.get("/api/v1/usage/summary/", {"period_start": "2024-09-01", "period_end": "2024-10-01"}).json()
    assert summary["totals"] == [{"currency": "USD", "cost": "2.000000000000", "quantity": "1.000000000000",
                                  "unit": "Hours", "records": 1}]


# --- one team's data never stops another team's billing run ----------------------------------


def test_billing_run_bills_every_currency_and_reports_the_team_without_a_rate(finance):
    # given team A's September has a record in EUR beside its USD usage and A is invoiced in USD,
    # converted, without any rate loaded; team B's is fine
    a, b = TeamFactory(name="Alpha", slug="alpha"), TeamFactory(name="Beta", slug="beta")
    billing_settings_update(team=a, invoice_currency="team_currency", extra_currencies=["EUR"])
    UsageRecordFactory(team=a, cost=Decimal("5"))
    UsageRecordFactory(team=a, cost=Decimal("7"), currency="EUR", source=UsageRecord.Source.FOCUS_IMPORT)
    UsageRecordFactory(team=b, cost=Decimal("3.5"))
    # when finance runs the month
    response = finance.post("/api/v1/billing-runs/", {"period": "2024-09", "render_pdfs": False}, format="json")
    # then the run is committed for B, and says clearly that it is partly billed and why
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["outcome"] == "partly_billed"
    assert [(r["team"], r["team_name"], r["currencies"], r["records"]) for r in body["refused"]] == [
        (a.pk, "Alpha", ["EUR", "USD"], 2)]
    assert body["refused"][0]["message"].startswith("Alpha: invoiced in USD, but no exchange rate EUR→USD on 2024-09-30")
    assert [(t["team_name"], t["amount"]) for t in body["teams"]] == [("Beta", "3.50")]
    # and each currency's pool ties out on its own: nothing is left out of the allocation
    assert [(p["currency"], p["total_cost"], p["record_count"]) for p in body["pools"]] == [
        ("EUR", "7.000000000000", 1), ("USD", "8.500000000000", 2)]
    assert [i.team_id for i in Invoice.objects.all()] == [b.pk]


def test_billing_run_of_clean_data_is_billed(finance):
    UsageRecordFactory(team=TeamFactory(), cost=Decimal("1"))
    body = finance.post("/api/v1/billing-runs/", {"period": "2024-09", "render_pdfs": False}, format="json").json()
    assert (body["outcome"], body["refused"]) == ("billed", [])


def test_allocation_api_reports_one_pool_per_currency(finance):
    a, b = TeamFactory(name="Alpha", currency="EUR"), TeamFactory(name="Beta")
    UsageRecordFactory(team=a, cost=Decimal("5"), currency="EUR", source=UsageRecord.Source.FOCUS_IMPORT)
    UsageRecordFactory(team=b, cost=Decimal("3"))
    UsageRecordFactory(team=TeamFactory(name="Gamma"), cost=Decimal("2"))
    response = finance.post("/api/v1/allocations/", {"period_start": "2024-09-01", "period_end": "2024-10-01"},
                            format="json")
    assert response.status_code in (200, 201), response.json()
    run = response.json()["run"]
    assert (run["currency"], run["total_cost"], run["refused"]) == ("USD", "5.000000000000", [])
    assert [(p["currency"], p["allocated_cost"]) for p in run["pools"]] == [
        ("EUR", "5.000000000000"), ("USD", "5.000000000000")]
