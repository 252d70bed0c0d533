"""Price resolution: the team's override first, then the global price, valid at the usage time."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from chargeback.errors import PriceNotFound
from chargeback.models import Price
from chargeback.selectors import price_resolve
from tests.factories import PriceFactory, TeamFactory

pytestmark = pytest.mark.django_db

UTC = dt.timezone.utc


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def resolve(team, when):
    return price_resolve(team=team, category="llm", provider="openai", model="gpt-4", unit="token", at=when)


def test_price_resolve_prefers_the_teams_override_over_the_global_price():
    # given a global price and an override for one team
    team, other = TeamFactory(), TeamFactory()
    PriceFactory(unit_price=Decimal("0.00003"), valid_from=at(2024, 1, 1))
    PriceFactory(unit_price=Decimal("0.00002"), valid_from=at(2024, 1, 1), team=team)
    # when / then
    assert resolve(team, at(2024, 9, 15)).unit_price == Decimal("0.00002")
    assert resolve(other, at(2024, 9, 15)).unit_price == Decimal("0.00003")
    assert resolve(None, at(2024, 9, 15)).unit_price == Decimal("0.00003")


def test_price_resolve_uses_the_price_valid_at_the_usage_time_half_open():
    # given the price changed on 1 September (valid_to is exclusive)
    PriceFactory(unit_price=Decimal("0.00006"), valid_from=at(2024, 1, 1), valid_to=at(2024, 9, 1))
    PriceFactory(unit_price=Decimal("0.00003"), valid_from=at(2024, 9, 1))
    # when / then
    assert resolve(None, at(2024, 8, 31, 23, 59, 59)).unit_price == Decimal("0.00006")
    assert resolve(None, at(2024, 9, 1)).unit_price == Decimal("0.00003")


def test_price_resolve_falls_back_to_global_when_the_override_expired():
    team = TeamFactory()
    PriceFactory(unit_price=Decimal("0.00003"), valid_from=at(2024, 1, 1))
    PriceFactory(unit_price=Decimal("0.00001"), valid_from=at(2024, 1, 1), valid_to=at(2024, 6, 1), team=team)
    assert resolve(team, at(2024, 5, 31)).unit_price == Decimal("0.00001")
    assert resolve(team, at(2024, 6, 1)).unit_price == Decimal("0.00003")


def test_price_resolve_without_a_valid_price_names_the_item_team_and_time():
    # given a price that only starts later
    team = TeamFactory(slug="voice-bots")
    PriceFactory(valid_from=at(2025, 1, 1))
    # when / then
    with pytest.raises(PriceNotFound) as excinfo:
        resolve(team, at(2024, 9, 15, 12))
    message = str(excinfo.value)
    assert "llm/openai/gpt-4/token" in message
    assert "voice-bots" in message
    assert "2024-09-15T12:00:00+00:00" in message
    assert isinstance(excinfo.value, ValueError)


def test_price_resolve_does_not_use_another_teams_override():
    owner, other = TeamFactory(), TeamFactory()
    PriceFactory(valid_from=at(2024, 1, 1), team=owner)
    with pytest.raises(PriceNotFound):
        resolve(other, at(2024, 9, 15))


def test_price_full_clean_without_valid_from_names_the_field_not_a_crash():
    # given a price form submitted without its start date
    price = Price(category="llm_prompt", provider="openai", model="gpt-4o", unit="1k_tokens",
                  unit_price=Decimal("0.0025"), currency="USD", valid_from=None)
    # when it is validated, then the error names the field (a 400 in a form, never a 500)
    with pytest.raises(ValidationError) as raised:
        price.full_clean()
    assert "valid_from" in raised.value.message_dict


def test_price_full_clean_refuses_an_overlapping_period_of_the_same_price():
    PriceFactory(category="llm_prompt", provider="openai", model="gpt-4o", unit="1k_tokens",
                 valid_from=at(2024, 1, 1), valid_to=None)
    clash = Price(category="llm_prompt", provider="openai", model="gpt-4o", unit="1k_tokens",
                  unit_price=Decimal("0.003"), currency="USD", valid_from=at(2024, 6, 1))
    with pytest.raises(ValidationError) as raised:
        clash.full_clean()
    assert "overlaps" in raised.value.message_dict["valid_from"][0]
