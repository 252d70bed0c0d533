"""Fixtures of the subscriptions API tests: the API tests' callers (finance, auditor, member of team A,
outsider of team B, team A's key) and plans made through ``subscriptions.services.plans``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from subscriptions.services.plans import plan_create
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
    team_a,
    team_b,
)

INFERENCE = {"meter": "inference", "resource_type": "llm", "included_units": Decimal(500),
             "charge_model": "standard", "price": Decimal("2.00"), "price_per_units": Decimal(1000)}


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
