"""Bad input of every kind gets a 4xx in the error shape, never a 500; throttles answer 429."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chargeback.models import UsageRecord
from tests.api.conftest import CALL_ITEMS

pytestmark = pytest.mark.django_db


def test_oversized_body_answers_413_in_the_error_shape(key, catalog, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    records = [{"resource_type": "llm", "quantity": "1", "idempotency_key": f"k-{i}"} for i in range(500)]
    response = key.post("/api/v1/usage/batch/", {"records": records}, format="json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not UsageRecord.objects.exists()


def test_malformed_json_answers_400_parse_error(key):
    response = key.post("/api/v1/quotes/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_json_constants_are_not_numbers(finance, wallet_a):
    response = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", data='{"amount": NaN}',
                            content_type="application/json", HTTP_IDEMPOTENCY_KEY="t-1")
    assert response.status_code == 400


def test_form_encoded_body_answers_415(key):
    response = key.post("/api/v1/quotes/", data="items=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_json_numbers_are_read_as_exact_decimals(finance, wallet_a):
    # 0.1 + 0.2 as floats is 0.30000000000000004; read as Decimal it is exact
    for key, amount in (("t-1", "0.1"), ("t-2", "0.2")):
        response = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", data=json.dumps({"amount": 0}).replace(
            "0", amount), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
        assert response.status_code == 201, response.json()
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("0.3")


def test_unknown_method_answers_405_in_the_error_shape(finance):
    response = finance.delete("/api/v1/teams/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unknown_id_answers_404(member):
    assert member.get("/api/v1/wallets/999999/").status_code == 404
    assert member.get("/api/v1/wallets/abc/").status_code == 404


def test_huge_page_size_answers_400_naming_limit(member):
    response = member.get("/api/v1/teams/?limit=5000")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_money_calls_are_throttled_with_retry_after(key, catalog, wallet_a, top_up, settings):
    # given a stricter rate for money-moving calls
    settings.API_THROTTLE_RATES = {"principal": "100/min", "money": "2/min"}
    top_up(wallet_a, "1")
    # when the key charges three times in a minute
    codes = [key.post("/api/v1/charges/", {"items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY=f"c-{i}")
             for i in range(3)]
    # then the third is refused with 429 and a Retry-After, and reads still pass
    assert [r.status_code for r in codes] == [201, 201, 429]
    assert codes[2].json()["error"]["code"] == "rate_limited"
    assert 0 < int(codes[2]["Retry-After"]) <= 60
    assert key.post("/api/v1/quotes/", {"items": CALL_ITEMS}, format="json").status_code == 200


def test_throttle_counts_each_principal_apart(member, manager, team_a, settings):
    settings.API_THROTTLE_RATES = {"principal": "2/min", "money": "2/min"}
    assert [member.get("/api/v1/teams/").status_code for _ in range(3)] == [200, 200, 429]
    assert manager.get("/api/v1/teams/").status_code == 200


def test_error_type_of_validation_errors_is_invalid_request_error(member):
    response = member.get("/api/v1/usage/summary/")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "period_start"
