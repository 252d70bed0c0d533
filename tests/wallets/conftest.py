"""Fixtures of the wallet tests: a team, its wallet, the demo price catalog. Money moves through services."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.factories import PriceFactory, TeamFactory, TeamMembershipFactory, UserFactory
from wallets import services

_keys = itertools.count(1)


def new_key(prefix: str = "key") -> str:
    """A fresh idempotency key."""
    return f"{prefix}-{next(_keys)}"


#: The demo catalog of issue 3 (USD): category, provider, model, unit, unit price.
CATALOG = [
    ("stt", "openai", "whisper-1", "second", Decimal("0.0001")),
    ("llm", "openai", "gpt-4", "token", Decimal("0.00003")),
    ("tts", "openai", "tts-1", "character", Decimal("0.000015")),
    ("telephony", "twilio", "voice", "minute", Decimal("0.013")),
]

#: The example call of the issue: 0.006 + 0.015 + 0.003 + 0.013 = 0.037 USD.
CALL_ITEMS = [
    {"category": "stt", "provider": "openai", "model": "whisper-1", "unit": "second", "quantity": Decimal(60)},
    {"category": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": Decimal(500)},
    {"category": "tts", "provider": "openai", "model": "tts-1", "unit": "character", "quantity": Decimal(200)},
    {"category": "telephony", "provider": "twilio", "model": "voice", "unit": "minute", "quantity": Decimal(1)},
]


@pytest.fixture
def catalog(db):
    valid_from = timezone.make_aware(dt.datetime(2024, 1, 1))
    return [
        PriceFactory(category=c, provider=p, model=m, unit=u, unit_price=price, currency="USD", valid_from=valid_from)
        for c, p, m, u, price in CATALOG
    ]


@pytest.fixture
def team(db):
    return TeamFactory(currency="USD")


@pytest.fixture
def member(team):
    return TeamMembershipFactory(team=team, user=UserFactory()).user


@pytest.fixture
def wallet(team):
    return services.wallet_open(team=team)


@pytest.fixture
def top_up():
    """``top_up(wallet, "50")``: credit the wallet through the service and return it refreshed."""

    def _top_up(wallet, amount, **kwargs):
        services.wallet_top_up(wallet=wallet, amount=Decimal(amount), idempotency_key=new_key("top-up"), **kwargs)
        wallet.refresh_from_db()
        return wallet

    return _top_up
