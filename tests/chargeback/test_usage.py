"""Recording usage: priced from the catalog, billed in its UTC month, idempotent on its key."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing_site.errors import IdempotencyError
from chargeback.errors import InvalidUsage, PriceNotFound
from chargeback.models import UsageRecord
from chargeback.services.usage import usage_record_create
from tests.factories import PriceFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db

UTC = dt.timezone.utc
SEPT = dt.datetime(2024, 9, 15, 12, 0, tzinfo=UTC)

@pytest.fixture
def demo_catalog(catalog):
    """The example call's catalog (the shared ``catalog`` fixture)."""
    return catalog


def record(team, **kwargs):
    params = dict(team=team, resource_type="llm", provider="openai", model="gpt-4", unit="token",
                  quantity=Decimal(500), occurred_at=SEPT, idempotency_key="call-1")
    params.update(kwargs)
    return usage_record_create(**params)


@pytest.mark.parametrize(
    ("resource_type", "provider", "model", "unit", "quantity", "cost"),
    [
        ("stt", "openai", "whisper-1", "second", 60, "0.006"),
        ("llm", "openai", "gpt-4", "token", 500, "0.015"),
        ("tts", "openai", "tts-1", "character", 200, "0.003"),
        ("telephony", "twilio", "voice", "minute", 1, "0.013"),
    ],
)
def test_usage_record_create_prices_usage_from_the_demo_catalog(
    demo_catalog, resource_type, provider, model, unit, quantity, cost
):
    # given a team and the demo catalog
    team = TeamFactory()
    # when
    usage = record(team, resource_type=resource_type, provider=provider, model=model, unit=unit,
                   quantity=Decimal(quantity))
    # then
    usage.refresh_from_db()
    assert usage.cost == Decimal(cost)
    assert usage.currency == "USD"
    assert usage.billing_period_start == dt.date(2024, 9, 1)
    assert usage.source == UsageRecord.Source.API


def test_usage_record_create_uses_the_teams_price_override(demo_catalog):
    team = TeamFactory()
    PriceFactory(unit_price=Decimal("0.00001"), valid_from=dt.datetime(2024, 1, 1, tzinfo=UTC), team=team)
    assert record(team).cost == Decimal("0.005")


def test_usage_record_create_bills_in_the_utc_month_of_occurred_at(demo_catalog):
    # given a call at 23:30 on 30 September in UTC-2, which is 1 October in UTC
    late = dt.datetime(2024, 9, 30, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    # when
    usage = record(TeamFactory(), occurred_at=late)
    # then
    assert usage.billing_period_start == dt.date(2024, 10, 1)


def test_usage_record_create_replay_returns_the_recorded_row(demo_catalog):
    # given a recorded call
    team, user = TeamFactory(), UserFactory()
    first = record(team, user=user, metadata={"request": "abc"})
    # when the client retries with the same key and parameters
    again = record(team, user=user, metadata={"request": "abc"})
    # then nothing new is recorded
    assert again.pk == first.pk and again.replayed and not first.replayed
    assert UsageRecord.objects.count() == 1


def test_usage_record_create_replay_with_different_parameters_is_refused(demo_catalog):
    team = TeamFactory()
    record(team)
    with pytest.raises(IdempotencyError, match="call-1.*different quantity"):
        record(team, quantity=Decimal(501))
    assert UsageRecord.objects.count() == 1


def test_usage_record_create_same_key_from_another_source_is_new_usage(demo_catalog):
    team = TeamFactory()
    record(team)
    record(team, source=UsageRecord.Source.CHARGE)
    assert UsageRecord.objects.count() == 2


def test_usage_record_create_with_a_given_cost_skips_the_catalog():
    # given no catalog at all
    team = TeamFactory(currency="EUR")
    # when the caller knows the cost
    usage = record(team, resource_type="gpu", cost=Decimal("1.2345678901234"))
    # then it is kept at metered precision in the team's currency
    usage.refresh_from_db()
    assert usage.cost == Decimal("1.234567890123") and usage.currency == "EUR"


def test_usage_record_create_without_a_price_names_the_item():
    with pytest.raises(PriceNotFound, match="llm/openai/gpt-4/token"):
        record(TeamFactory())
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"quantity": Decimal(-1)}, InvalidUsage, "must not be negative"),
        ({"cost": Decimal(1), "currency": "dollars"}, InvalidUsage, "ISO 4217"),
        ({"occurred_at": dt.datetime(2024, 9, 15)}, InvalidUsage, "timezone-aware"),
        ({"quantity": 1.5}, TypeError, "float"),
        ({"idempotency_key": ""}, InvalidUsage, "idempotency_key"),
        ({"source": "email"}, InvalidUsage, "source must be one of"),
    ],
)
def test_usage_record_create_refuses_bad_input(demo_catalog, kwargs, error, message):
    with pytest.raises(error, match=message):
        record(TeamFactory(), **kwargs)
    assert not UsageRecord.objects.exists()


def test_usage_record_create_refuses_a_currency_other_than_the_prices(demo_catalog):
    with pytest.raises(InvalidUsage, match="is in USD, not EUR"):
        record(TeamFactory(), currency="EUR")
