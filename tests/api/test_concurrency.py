"""Concurrent requests through HTTP on PostgreSQL, with real threads: no double charge, no overdraft."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from chargeback.models import UsageRecord
from tests.api.conftest import CALL_ITEMS
from wallets.models import LedgerEntry, UsageEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _in_threads(n: int, call) -> list:
    """Run ``call(i)`` in ``n`` threads released together; each thread closes its own connection."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i):
        try:
            barrier.wait()
            results[i] = call(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _key_client(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key.raw_key}")
    return client


def test_concurrent_charges_with_one_key_charge_once(api_key, catalog, wallet_a, top_up):
    # given a wallet with 1 USD
    top_up(wallet_a, "1")
    # when 8 threads send the same charge with the same Idempotency-Key at once
    responses = _in_threads(8, lambda i: _key_client(api_key).post(
        "/api/v1/charges/", {"items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY="same-call"))
    # then every answer is the one charge, seven of them replays, and 0.037 USD moved once
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.get("Idempotent-Replayed") == "true" for r in responses) == 7
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("0.963")
    assert LedgerEntry.objects.filter(entry_type="charge").count() == 1


def test_concurrent_charges_never_overdraw_the_wallet(api_key, catalog, wallet_a, top_up):
    # given a wallet with 0.1 USD: room for two 0.037 USD calls
    top_up(wallet_a, "0.1")
    # when 6 threads charge different calls at once
    responses = _in_threads(6, lambda i: _key_client(api_key).post(
        "/api/v1/charges/", {"items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY=f"call-{i}"))
    # then exactly two are charged and four refused with 402; the balance never goes below zero
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 201, 402, 402, 402, 402]
    assert all(r.json()["error"]["code"] == "insufficient_funds" for r in responses if r.status_code == 402)
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("0.026")
    assert UsageEvent.objects.filter(status="rejected").count() == 4


def test_concurrent_batches_with_the_same_records_record_each_once(api_key, catalog):
    records = [{"resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": "5",
                "occurred_at": "2024-09-15T12:00:00Z", "idempotency_key": f"rec-{i}"} for i in range(50)]
    responses = _in_threads(4, lambda i: _key_client(api_key).post(
        "/api/v1/usage/batch/", {"records": records}, format="json"))
    assert {r.status_code for r in responses} == {201}
    assert sum(r.json()["created"] for r in responses) == 50
    assert UsageRecord.objects.count() == 50


def test_concurrent_top_ups_with_one_key_credit_once(finance_user, wallet_a):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=finance_user)

    def top_up(i):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "10"}, format="json",
                           HTTP_IDEMPOTENCY_KEY="pay-1")

    responses = _in_threads(6, top_up)
    assert {r.status_code for r in responses} == {201}
    wallet_a.refresh_from_db()
    assert wallet_a.balance == Decimal("10")
