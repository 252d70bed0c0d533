"""Searching the ledger and the usage by a fragment of the description or reference, or by team name."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from tests.admin.conftest import new_key
from tests.factories import TeamFactory, UsageRecordFactory
from wallets.services.charges import wallet_charge
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db

LEDGER = "admin:wallets_ledgerentry_changelist"
USAGE = "admin:chargeback_usagerecord_changelist"


def found(client, url: str, term: str) -> list:
    response = client.get(reverse(url), {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.fixture
def ledger(wallet):
    """Search's wallet (topped up 100, then charged for a voice call) and Maps Europe's (paid by an invoice)."""
    wallet_charge(wallet=wallet, amount=Decimal("2"), idempotency_key="call-8812", description="Voice agent call, Berlin")
    maps = wallet_open(team=TeamFactory(name="Maps Europe", slug="maps-eu"))
    wallet_top_up(wallet=maps, amount=Decimal("50"), idempotency_key=new_key(), description="Quarterly budget",
                  reference_id="INV-2026-000123")
    return wallet, maps


def test_ledger_search_by_a_fragment_of_the_description_any_case(finance, ledger):
    assert [e.description for e in found(finance, LEDGER, "agent CALL")] == ["Voice agent call, Berlin"]


def test_ledger_search_by_a_fragment_of_the_reference(finance, ledger):
    assert [e.reference_id for e in found(finance, LEDGER, "000123")] == ["INV-2026-000123"]


def test_ledger_search_by_team_name_finds_all_its_wallets_entries(finance, ledger):
    search, maps = ledger
    assert {e.wallet_id for e in found(finance, LEDGER, "europe")} == {maps.pk}
    assert len(found(finance, LEDGER, "Search")) == 2  # its top-up and its charge


def test_ledger_search_by_idempotency_key_still_works(finance, ledger):
    assert [e.idempotency_key for e in found(finance, LEDGER, "call-8812")] == ["call-8812"]


def test_ledger_search_wildcards_are_literal(finance, ledger):
    assert found(finance, LEDGER, "%") == [] and found(finance, LEDGER, "_") == []


def test_usage_search_by_team_name_service_and_reference(finance):
    search, maps = TeamFactory(name="Search", slug="search"), TeamFactory(name="Maps Europe", slug="maps-eu")
    speech = UsageRecordFactory(team=search, service_name="Amazon Transcribe", external_reference="focus-row-991")
    gpu = UsageRecordFactory(team=maps, service_name="Compute Engine", feature_key="tile-render")
    UsageRecordFactory(team=None, service_name="BigQuery")
    assert [r.pk for r in found(finance, USAGE, "transcribe")] == [speech.pk]
    assert [r.pk for r in found(finance, USAGE, "row-99")] == [speech.pk]
    assert [r.pk for r in found(finance, USAGE, "Europe")] == [gpu.pk]
    assert [r.pk for r in found(finance, USAGE, "TILE")] == [gpu.pk]
    assert [r.pk for r in found(finance, USAGE, speech.idempotency_key)] == [speech.pk]
