"""Text and structure at the API's door: NUL bytes, unpaired surrogates, deep nesting and out-of-range
dates are refused with 400 in the error shape, naming the field, never a 500; nothing is written."""

from __future__ import annotations

import json

import pytest

from billing_site.api.parsers import MAX_JSON_DEPTH
from chargeback.models import UsageRecord
from tests.api.conftest import CALL_ITEMS
from wallets.models import LedgerEntry, UsageEvent

pytestmark = pytest.mark.django_db

USAGE = {
    "resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": "1000",
    "occurred_at": "2024-09-15T12:00:00Z", "agent_id": "agent-7", "feature_key": "summaries",
}


def post_raw(client, path: str, body: str, **headers):
    """POST ``body`` as it is written: JSON escapes such as ``\\u0000`` and ``\\ud800`` reach the server."""
    return client.post(path, data=body.encode(), content_type="application/json", **headers)


def batch_body(bad_record: dict, at: int = 3, n: int = 5) -> str:
    records = [{**USAGE, "idempotency_key": f"b-{i}"} for i in range(n)]
    records[at] = {**records[at], **bad_record}
    return json.dumps({"records": records})


def assert_refused(response, param: str, words: str):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    assert words in error["message"]


@pytest.mark.parametrize(("escape", "words"), [("\\u0000", "NUL"), ("\\ud800", "unpaired surrogate"),
                                               ("\\udfff", "unpaired surrogate")])
def test_usage_post_with_bad_text_in_metadata_answers_400_naming_the_field(key, catalog, escape, words):
    body = json.dumps({**USAGE, "metadata": {"note": "x"}}).replace('"x"', f'"a{escape}b"')
    response = post_raw(key, "/api/v1/usage/", body, HTTP_IDEMPOTENCY_KEY="u-1")
    assert_refused(response, "metadata.note", words)
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize(("escape", "words"), [("\\u0000", "NUL"), ("\\ud800", "unpaired surrogate")])
def test_usage_batch_with_bad_text_in_a_records_metadata_names_the_row(key, catalog, escape, words):
    body = batch_body({"metadata": {"tags": ["ok", "x"]}}).replace('"x"', f'"{escape}"')
    response = post_raw(key, "/api/v1/usage/batch/", body)
    assert_refused(response, "records[3].metadata.tags[1]", words)
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize("field", ["feature_key", "agent_id", "provider", "idempotency_key"])
@pytest.mark.parametrize(("escape", "words"), [("\\u0000", "NUL"), ("\\ud800", "unpaired surrogate")])
def test_usage_batch_with_bad_text_in_a_text_field_names_it(key, catalog, field, escape, words):
    body = batch_body({field: "x"}).replace('"x"', f'"bad{escape}"')
    response = post_raw(key, "/api/v1/usage/batch/", body)
    assert_refused(response, f"records[3].{field}", words)
    assert not UsageRecord.objects.exists()


def test_a_valid_surrogate_pair_is_one_character_and_accepted(key, catalog):
    # Given an emoji written as a UTF-16 surrogate pair, as JSON allows
    body = json.dumps({**USAGE, "metadata": {"note": "x"}}).replace('"x"', '"ok \\ud83d\\ude00"')
    # When it is posted / then it is stored as the one character it is
    response = post_raw(key, "/api/v1/usage/", body, HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 201, response.json()
    assert UsageRecord.objects.get().metadata == {"note": "ok \U0001F600"}


def test_a_nul_in_a_key_of_metadata_answers_400_naming_it(key, catalog):
    body = json.dumps({**USAGE, "metadata": {"x": 1}}).replace('"x"', '"no\\u0000te"')
    response = post_raw(key, "/api/v1/usage/", body, HTTP_IDEMPOTENCY_KEY="u-1")
    assert_refused(response, "metadata.no\\u0000te", "a key may not contain")
    assert not UsageRecord.objects.exists()


def test_charge_with_a_nul_in_metadata_answers_400_and_moves_no_money(key, catalog, wallet_a, top_up):
    top_up(wallet_a, "1")
    body = json.dumps({"feature_key": "call", "items": CALL_ITEMS, "metadata": {"session": "x"}})
    response = post_raw(key, "/api/v1/charges/", body.replace('"x"', '"s\\u0000"'), HTTP_IDEMPOTENCY_KEY="c-1")
    assert_refused(response, "metadata.session", "NUL")
    assert not UsageEvent.objects.exists()
    assert LedgerEntry.objects.filter(entry_type="usage").count() == 0


def test_charge_with_a_surrogate_in_an_item_names_the_item(key, catalog, wallet_a, top_up):
    top_up(wallet_a, "1")
    body = json.dumps({"feature_key": "call", "items": CALL_ITEMS}).replace('"openai"', '"open\\udbffai"', 1)
    response = post_raw(key, "/api/v1/charges/", body, HTTP_IDEMPOTENCY_KEY="c-1")
    index = next(i for i, item in enumerate(CALL_ITEMS) if item.get("provider") == "openai")
    assert_refused(response, f"items[{index}].provider", "unpaired surrogate")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
def test_a_body_nested_past_the_limit_answers_400(key, catalog, depth):
    # Given a usage record whose metadata nests `depth` levels in all (the body is level 1)
    nested = "[" * (depth - 2) + "1" + "]" * (depth - 2)
    body = json.dumps({**USAGE, "metadata": {"n": "x"}}).replace('"x"', nested)
    # When it is posted / then it is refused as a parse error, not a server error
    response = post_raw(key, "/api/v1/usage/", body, HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert f"deeper than {MAX_JSON_DEPTH} levels" in error["message"]
    assert not UsageRecord.objects.exists()


def test_a_body_nested_exactly_to_the_limit_is_read(key, catalog):
    nested = "[" * (MAX_JSON_DEPTH - 2) + "1" + "]" * (MAX_JSON_DEPTH - 2)
    body = json.dumps({**USAGE, "metadata": {"n": "x"}}).replace('"x"', nested)
    response = post_raw(key, "/api/v1/usage/", body, HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 201, response.json()


def test_usage_list_reads_any_rfc3339_offset_as_its_instant(finance, team_a, key, catalog):
    # Given a record at 2024-09-15 12:00 UTC
    assert key.post("/api/v1/usage/", USAGE, format="json", HTTP_IDEMPOTENCY_KEY="u-1").status_code == 201
    # When asked with offsets no time zone has, but RFC 3339 allows (up to 23:59): 12:00 and 12:01 UTC
    response = finance.get("/api/v1/usage/", {"from": "2024-09-14T12:30:00-23:30", "to": "2024-09-16T12:00:00+23:59"})
    # Then the instants are compared, and the record is found
    assert response.status_code == 200, response.json()
    assert len(response.json()["results"]) == 1


@pytest.mark.parametrize(("params", "found"), [
    ({"from": "0001-01-01T00:00:00+01:00"}, 1), ({"to": "0001-01-01T00:00:00+01:00"}, 0),
    ({"from": "9999-12-31T23:59:59-01:00"}, 0), ({"to": "9999-12-31T23:59:59-01:00"}, 1),
    ({"from": "1899-11-15T04:09:28+16:54"}, 1),
])
def test_usage_list_with_a_time_beyond_the_years_1_to_9999_selects_as_that_bound(finance, key, catalog, params, found):
    # Given a record in 2024
    assert key.post("/api/v1/usage/", USAGE, format="json", HTTP_IDEMPOTENCY_KEY="u-1").status_code == 201
    # When a bound's offset moves it before the year 1 or after 9999 in UTC
    response = finance.get("/api/v1/usage/", params)
    # Then it answers (no 400, no 500) as that bound would: everything after the dawn of time, nothing before it
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == found


def test_usage_list_with_the_farthest_real_offset_compares_the_instant(finance, team_a, key, catalog):
    # Given a record at 2024-09-15 12:00 UTC
    assert key.post("/api/v1/usage/", USAGE, format="json", HTTP_IDEMPOTENCY_KEY="u-1").status_code == 201
    # When asked with +14:00 offsets around it (11:59 and 12:01 UTC written in that zone)
    response = finance.get("/api/v1/usage/", {"from": "2024-09-16T01:59:00+14:00", "to": "2024-09-16T02:01:00+14:00"})
    # Then it is found
    assert response.status_code == 200, response.json()
    assert len(response.json()["results"]) == 1


@pytest.mark.parametrize(("value", "status"), [("1899-11-15T04:09:28+16:54", 422), ("9999-12-31T23:59:59-01:00", 400)])
def test_usage_batch_reads_a_far_offset_as_the_single_path_does(key, catalog, value, status):
    # Given the same record sent alone and in a batch, its time written with a far or overflowing offset
    single = key.post("/api/v1/usage/", {**USAGE, "occurred_at": value}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    batch = key.post("/api/v1/usage/batch/", {"records": [{**USAGE, "occurred_at": value, "idempotency_key": "z"}]},
                     format="json")
    # Then both answer the same client error (1899 has no price: 422; past the year 9999: 400), never a 500
    assert (single.status_code, batch.status_code) == (status, status), (single.content, batch.content)
    assert not UsageRecord.objects.exists()
