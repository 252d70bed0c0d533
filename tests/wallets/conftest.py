"""Fixtures of the wallet tests: a team, its wallet, the demo price catalog. Money moves through services."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from billing_site.management.commands.demo import DEMO_CALL_ITEMS
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

_keys = itertools.count(1)


def new_key(prefix: str = "key") -> str:
    """A fresh idempotency key."""
    return f"{prefix}-{next(_keys)}"


#: The example call, one item of each kind: 0.006 + 0.015 + 0.003 + 0.013 = 0.037 USD (the ``catalog`` fixture).
CALL_ITEMS = DEMO_CALL_ITEMS


@pytest.fixture
def team(db):
    return TeamFactory(currency="USD")


@pytest.fixture
def member(team):
    return TeamMembershipFactory(team=team, user=UserFactory()).user


@pytest.fixture
def wallet(team):
    return wallet_open(team=team)


@pytest.fixture
def top_up():
    """``top_up(wallet, "50")``: credit the wallet through the service and return it refreshed."""

    def _top_up(wallet, amount, **kwargs):
        wallet_top_up(wallet=wallet, amount=Decimal(amount), idempotency_key=new_key("top-up"), **kwargs)
        wallet.refresh_from_db()
        return wallet

    return _top_up
