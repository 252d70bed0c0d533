"""Usage through HTTP: one record, batches (all or none), the list and the summary."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from chargeback.models import UsageRecord
from tests.factories import UsageRecordFactory

pytestmark = pytest.mark.django_db

USAGE = {
    "resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": "1000",
    "occurred_at": "2024-09-15T12:00:00Z", "agent_id": "agent-7", "feature_key": "summaries",
}


def test_usage_post_with_a_key_records_priced_usage_for_its_team(key, team_a, catalog):
    # when the team's key records 1,000 gpt-4 tokens
    response = key.post("/api/v1/usage/", USAGE, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    # then the record is priced from the catalog (1,000 × 0.00003 = 0.03 USD) for team A
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["team"] == team_a.pk
    assert body["cost"] == "0.030000000000"
    assert body["currency"] == "USD"
    assert body["occurred_at"] == "2024-09-15T12:00:00Z"


def test_usage_post_replayed_answers_the_same_record_with_the_header(key, catalog):
    first = key.post("/api/v1/usage/", USAGE, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    again = key.post("/api/v1/usage/", USAGE, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert UsageRecord.objects.count() == 1


def test_usage_post_same_key_other_quantity_answers_409(key, catalog):
    key.post("/api/v1/usage/", USAGE, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    response = key.post("/api/v1/usage/", {**USAGE, "quantity": "2000"}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "idempotency_error"


def test_usage_post_negative_quantity_names_the_field(key, catalog):
    response = key.post("/api/v1/usage/", {**USAGE, "quantity": "-1"}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "quantity"


@pytest.mark.parametrize(("field", "value"), [
    ("occurred_at", "2024-09-15T12:00:00"),  # no time zone
    ("occurred_at", "yesterday"),
    ("quantity", "lots"),
    ("currency", "usd"),
    ("bogus", 1),
])
def test_usage_post_bad_input_answers_400_naming_the_field(key, catalog, field, value):
    response = key.post("/api/v1/usage/", {**USAGE, field: value}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]
    assert not UsageRecord.objects.exists()


def test_usage_post_without_idempotency_key_answers_422_naming_it(key, catalog):
    # The body is well-formed, and the key may come in the header or the body: neither is 422
    response = key.post("/api/v1/usage/", USAGE, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "idempotency_key"
    assert response.json()["error"]["code"] == "idempotency_key_required"
    assert not UsageRecord.objects.exists()


def test_usage_post_with_two_different_keys_answers_422_naming_them(key, catalog):
    response = key.post("/api/v1/usage/", {**USAGE, "idempotency_key": "body-key"}, format="json",
                        HTTP_IDEMPOTENCY_KEY="header-key")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_mismatch"
    assert not UsageRecord.objects.exists()


def test_usage_post_without_a_price_answers_422(key, catalog):
    response = key.post("/api/v1/usage/", {**USAGE, "model": "gpt-9"}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "price_not_found"


def test_usage_post_by_a_member_for_another_team_answers_404(member, team_b, catalog):
    response = member.post("/api/v1/usage/", {**USAGE, "team": team_b.pk}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 404


def test_usage_post_by_a_key_for_another_team_answers_404(key, team_b, catalog):
    response = key.post("/api/v1/usage/", {**USAGE, "team": team_b.pk}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 404
    assert not UsageRecord.objects.exists()


def _records(n: int, prefix: str = "b") -> list[dict]:
    return [{**USAGE, "idempotency_key": f"{prefix}-{i}"} for i in range(n)]


def test_usage_batch_records_every_row(key, team_a, catalog):
    response = key.post("/api/v1/usage/batch/", {"records": _records(3)}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["count"], body["created"], body["replayed"]) == (3, 3, 0)
    assert UsageRecord.objects.filter(team=team_a).count() == 3


def test_usage_batch_sent_again_records_nothing_twice(key, catalog):
    key.post("/api/v1/usage/batch/", {"records": _records(3)}, format="json")
    response = key.post("/api/v1/usage/batch/", {"records": _records(4)}, format="json")
    assert (response.json()["created"], response.json()["replayed"]) == (1, 3)
    assert UsageRecord.objects.count() == 4


def test_usage_batch_with_one_bad_row_records_none_and_names_the_row(key, catalog):
    records = _records(5)
    records[3]["quantity"] = "-5"
    response = key.post("/api/v1/usage/batch/", {"records": records}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "records[3].quantity"
    assert not UsageRecord.objects.exists()


def test_usage_batch_with_an_unpriced_row_records_none(key, catalog):
    records = _records(5)
    records[2]["model"] = "gpt-9"
    response = key.post("/api/v1/usage/batch/", {"records": records}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "records[2].resource_type"
    assert "records[2]" in response.json()["error"]["message"]
    assert not UsageRecord.objects.exists()


def test_usage_batch_over_1000_records_answers_400(key, catalog):
    response = key.post("/api/v1/usage/batch/", {"records": _records(1001)}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "records"


def test_usage_batch_of_1000_records_is_recorded(key, catalog):
    response = key.post("/api/v1/usage/batch/", {"records": _records(1000)}, format="json")
    assert response.status_code == 201
    assert UsageRecord.objects.count() == 1000


def test_usage_batch_by_a_member_answers_403(member, catalog):
    response = member.post("/api/v1/usage/batch/", {"records": _records(1)}, format="json")
    assert response.status_code == 403


def test_usage_batch_replayed_by_header_answers_the_stored_response(key, catalog):
    first = key.post("/api/v1/usage/batch/", {"records": _records(2)}, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
    again = key.post("/api/v1/usage/batch/", {"records": _records(2)}, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = key.post("/api/v1/usage/batch/", {"records": _records(3)}, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
    assert other.status_code == 409
    assert other.json()["error"]["type"] == "idempotency_error"


#: The columns a batch row sets, compared between two ways of recording the same usage.
_STORED = ("team_id", "user_id", "agent_id", "resource_type", "provider", "model", "unit", "quantity", "cost", "currency",
           "occurred_at", "billing_period_start", "source", "feature_key", "external_reference", "metadata",
           "effective_cost", "charge_category", "service_name", "sub_account_name", "resource_id", "tags", "status",
           "void_reason", "voided_at", "voided_by_id")


def test_usage_batch_stores_text_that_copy_escapes_exactly_as_sent(key, catalog, member_user):
    # given records whose text holds what COPY's text format escapes: tabs, line breaks, backslashes, a "\N"
    odd = {"agent_id": "agent\tone", "feature_key": "a\tb", "external_reference": "back\\slash \\N\r\nnext",
           "metadata": {"note": "tab\t, \\N, quote \" and \u00e9", "nested": {"list": [1, "x\ny"]}},
           "user": member_user.pk, "quantity": "1E+3"}
    records = _records(3)
    records[1].update(odd)
    # when they are sent as a batch
    response = key.post("/api/v1/usage/batch/", {"records": records}, format="json")
    # then every character is stored as sent, the other rows as plain
    assert response.status_code == 201, response.json()
    row = UsageRecord.objects.get(idempotency_key="b-1")
    assert (row.agent_id, row.feature_key, row.external_reference) == (
        "agent\tone", "a\tb", "back\\slash \\N\r\nnext")
    assert row.metadata == {"note": "tab\t, \\N, quote \" and \u00e9", "nested": {"list": [1, "x\ny"]}}
    assert (row.user_id, row.quantity, row.cost) == (member_user.pk, Decimal(1000), Decimal("0.03"))
    plain = UsageRecord.objects.get(idempotency_key="b-2")
    assert (plain.agent_id, plain.metadata, plain.user_id, plain.tags) == ("agent-7", {}, None, {})


def test_usage_batch_with_a_repeated_key_stores_what_a_batch_of_new_keys_stores(key, catalog, member_user):
    # given the same usage sent once with distinct keys (every key new) and once with a key repeated
    # (the rows compared one by one), times in two months and zones, a user, metadata and a cost given
    def batch(prefix):
        records = _records(4, prefix)
        records[1].update(occurred_at="2024-10-01T01:30:00+02:00", user=member_user.pk, metadata={"k": [1, 2]})
        records[2].update(cost="0.5", currency="USD", quantity="12.25")
        return records

    repeated = batch("r")
    repeated.append(dict(repeated[0]))
    assert key.post("/api/v1/usage/batch/", {"records": batch("n")}, format="json").status_code == 201
    response = key.post("/api/v1/usage/batch/", {"records": repeated}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["ids"][4] == response.json()["ids"][0]
    # then both store the same rows
    def stored(prefix):
        return [UsageRecord.objects.filter(idempotency_key=f"{prefix}-{i}").values(*_STORED).get() for i in range(4)]

    assert stored("n") == stored("r")
    assert stored("n")[1]["billing_period_start"] == dt.date(2024, 9, 1)  # 23:30 UTC on 30 September
    assert stored("n")[2]["cost"] == Decimal("0.5")


def test_usage_list_shows_only_the_callers_teams_newest_first(member, team_a, team_b):
    mine = [UsageRecordFactory(team=team_a) for _ in range(3)]
    UsageRecordFactory(team=team_b)
    response = member.get("/api/v1/usage/")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [r.pk for r in reversed(mine)]


def test_usage_list_pages_with_a_cursor(finance, team_a):
    records = [UsageRecordFactory(team=team_a) for _ in range(5)]
    first = finance.get("/api/v1/usage/?limit=2").json()
    second = finance.get(first["next"]).json()
    assert [r["id"] for r in first["results"] + second["results"]] == [r.pk for r in reversed(records)][:4]


def test_usage_list_filters_by_provider_and_time(finance, team_a):
    UsageRecordFactory(team=team_a, provider="AWS")
    UsageRecordFactory(team=team_a, provider="GCP")
    late = UsageRecordFactory(team=team_a, provider="AWS", occurred_at=dt.datetime(2024, 10, 2, tzinfo=dt.UTC),
                              billing_period_start=dt.date(2024, 10, 1))
    response = finance.get("/api/v1/usage/", {"provider": "AWS", "from": "2024-10-01T00:00:00Z"})
    assert [r["id"] for r in response.json()["results"]] == [late.pk]


@pytest.mark.parametrize(("query", "status"), [
    ("limit=100000", 400), ("limit=0", 400), ("limit=x", 400), ("from=not-a-date", 400), ("to=", 400),
    ("cursor=garbage", 404),  # an opaque cursor that points at no page, like a page past the end
])
def test_usage_list_bad_query_names_the_parameter(finance, team_a, query, status):
    response = finance.get(f"/api/v1/usage/?{query}")
    assert response.status_code == status
    assert response.json()["error"]["param"] == query.split("=")[0]


def test_usage_summary_totals_by_resource_provider_agent_feature(member, team_a, team_b):
    UsageRecordFactory(team=team_a, resource_type="llm", provider="openai", agent_id="a1", cost=Decimal("1.5"),
                       quantity=Decimal("100"), unit="Hours")
    UsageRecordFactory(team=team_a, resource_type="compute", provider="AWS", cost=Decimal("2.25"))
    UsageRecordFactory(team=team_b, cost=Decimal("99"))
    response = member.get("/api/v1/usage/summary/", {"period_start": "2024-09-01", "period_end": "2024-10-01"})
    assert response.status_code == 200
    body = response.json()
    assert body["totals"] == [{"currency": "USD", "cost": "3.750000000000", "quantity": "101.000000000000",
                               "unit": "Hours", "records": 2}]
    assert {r["provider"]: r["cost"] for r in body["by_provider"]} == {"AWS": "2.250000000000",
                                                                       "openai": "1.500000000000"}
    assert {r["agent_id"] for r in body["by_agent"]} == {"", "a1"}


def test_usage_summary_never_adds_quantities_of_different_units(member, team_a):
    # given an hour of compute and 1,000 tokens
    UsageRecordFactory(team=team_a, resource_type="compute", unit="Hours", quantity=Decimal("1"), cost=Decimal("2"))
    UsageRecordFactory(team=team_a, resource_type="llm", unit="token", quantity=Decimal("1000"), cost=Decimal("1"))
    # when the summary is read
    body = member.get("/api/v1/usage/summary/", {"period_start": "2024-09-01", "period_end": "2024-10-01"}).json()
    # then the total has a cost but no quantity, and each unit keeps its own
    assert body["totals"][0]["cost"] == "3.000000000000"
    assert body["totals"][0]["quantity"] is None and body["totals"][0]["unit"] == ""
    assert {r["unit"]: r["quantity"] for r in body["by_unit"]} == {"Hours": "1.000000000000",
                                                                   "token": "1000.000000000000"}
    assert {r["resource_type"]: r["unit"] for r in body["by_resource_type"]} == {"compute": "Hours", "llm": "token"}


def test_team_report_never_adds_quantities_of_different_units(member, team_a):
    UsageRecordFactory(team=team_a, unit="Hours", quantity=Decimal("1"))
    UsageRecordFactory(team=team_a, unit="token", quantity=Decimal("1000"))
    body = member.get(f"/api/v1/reports/teams/{team_a.pk}/",
                      {"period_start": "2024-09-01", "period_end": "2024-10-01"}).json()
    assert body["usage"]["totals"][0]["quantity"] is None
    assert len(body["usage"]["by_unit"]) == 2


def test_usage_summary_end_before_start_names_period_end(member):
    response = member.get("/api/v1/usage/summary/", {"period_start": "2024-10-01", "period_end": "2024-09-01"})
    # Each date is well-formed; the pair is not: 422 period_order
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "period_end"
    assert response.json()["error"]["code"] == "period_order"


def test_usage_summary_of_another_team_answers_404(member, team_b):
    response = member.get("/api/v1/usage/summary/", {"period_start": "2024-09-01", "period_end": "2024-10-01",
                                                     "team": team_b.pk})
    assert response.status_code == 404


@pytest.mark.parametrize(("field", "value"), [
    ("occurred_at", "2024-09-15T12:00:00"),
    ("occurred_at", "soon"),
    ("quantity", "1.0000000000001"),
    ("quantity", True),
    ("cost", "abc"),
    ("currency", "usd"),
    ("user", 999999),
    ("resource_type", ""),
    ("metadata", "x"),
    ("colour", "red"),
])
def test_usage_batch_bad_field_names_row_and_field(key, catalog, field, value):
    records = _records(3)
    records[1][field] = value
    response = key.post("/api/v1/usage/batch/", {"records": records}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == f"records[1].{field}"
    assert not UsageRecord.objects.exists()


def test_usage_batch_user_of_another_team_names_the_row(key, catalog, outsider_user):
    records = _records(2)
    records[1]["user"] = outsider_user.pk
    response = key.post("/api/v1/usage/batch/", {"records": records}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "records[1].user"
