"""Fixtures of the subscriptions API tests: the API tests' callers (finance, auditor, member of team A,
outsider of team B, team A's key) and plans made through ``subscriptions.services.plans``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from subscriptions.services.plans import plan_create
from teams.services import billing_settings_update
from tests.api.conftest import (  # noqa: F401 - fixtures shared with the API tests
    _api_settings,
    anonymous,
    api_key,
    auditor,
    finance,
    finance_user,
    key,
    member,
    member_user,
    outsider,
    outsider_user,
)
from tests.factories import TeamFactory

INFERENCE = {"meter": "inference", "resource_type": "llm", "included_units": Decimal(500),
             "charge_model": "standard", "price": Decimal("2.00"), "price_per_units": Decimal(1000)}


def postpaid_team(**fields):
    """A team billed by invoice (postpaid): its subscription fees are invoiced, not taken from a wallet."""
    team = TeamFactory(**fields)
    billing_settings_update(team=team, billing_model="postpaid", credit_limit=Decimal(100000))
    return team


@pytest.fixture
def team_a(db):
    return postpaid_team(name="Team A", slug="team-a", currency="USD")


@pytest.fixture
def team_b(db):
    return postpaid_team(name="Team B", slug="team-b", currency="USD")


@pytest.fixture
def make_plan(db):
    """``make_plan("pro", fee="49")``: a plan through the service, with the seed's inference meter."""

    def _make(code: str, *, tier: str | None = None, fee: str = "49", currency: str = "USD", interval: str = "month",
              trial_days: int = 0, charges=(INFERENCE,)):
        return plan_create(code=code, name=code.title(), tier=tier or code, currency=currency, fee=Decimal(fee),
                           interval=interval, trial_days=trial_days, charges=list(charges))

    return _make


@pytest.fixture
def pro(make_plan):
    return make_plan("pro", tier="professional", fee="49")
