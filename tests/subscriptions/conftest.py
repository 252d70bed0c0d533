"""Fixtures of the subscription tests: the seed's plans, built through the services."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from subscriptions.services.plans import plan_create
from teams.models import BillingSettings
from tests.factories import TeamFactory, UsageRecordFactory

D = Decimal
UTC = dt.UTC


def at(*args) -> dt.datetime:
    """An aware UTC datetime: ``at(2024, 1, 31, 10)``."""
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture
def postpaid_team(db):
    team = TeamFactory(currency="USD")
    BillingSettings.objects.create(team=team, billing_model="postpaid", credit_limit=D(100000))
    return team


@pytest.fixture
def pro_plan(db):
    """The seed's professional plan: 49.00 USD a month, 500 inference units included, 2.00 USD per 1,000 beyond."""
    return plan_create(
        code="pro-monthly", name="Professional", tier="professional", currency="USD", fee=D("49.00"),
        charges=[{"meter": "inference", "resource_type": "llm", "unit": "token", "included_units": D(500),
                  "charge_model": "standard", "price": D("2.00"), "price_per_units": D(1000)}],
    )


@pytest.fixture
def starter_plan(db):
    return plan_create(
        code="starter-monthly", name="Starter", tier="starter", currency="USD", fee=D("19.00"),
        charges=[{"meter": "inference", "resource_type": "llm", "unit": "token", "included_units": D(100),
                  "charge_model": "standard", "price": D("3.00"), "price_per_units": D(1000)}],
    )


def record_usage(team, quantity, when, *, user=None, resource_type="llm", unit="token"):
    """One usage record of ``quantity`` units at ``when`` (what the API's usage door writes)."""
    return UsageRecordFactory(team=team, user=user, resource_type=resource_type, provider="openai", unit=unit,
                              quantity=D(quantity), cost=D(0), occurred_at=when,
                              billing_period_start=when.date().replace(day=1), service_name="")
