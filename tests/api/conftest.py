"""Fixtures of the API tests: one caller per role, teams A and B, the demo price catalog.

Roles: ``finance`` (the finance group), ``auditor`` (the auditor group), ``member`` and
``manager`` of team A, ``outsider`` (a member of team B only), and ``key`` (team A's API key).
Balances are built through the wallet services.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from billing_site.management.commands.demo import DEMO_CALL_ITEMS
from teams.models import TeamMembership
from teams.services import api_key_create
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

_keys = itertools.count(1)

#: One call, as JSON sends it: 0.006 + 0.015 + 0.003 + 0.013 = 0.037 USD (the ``catalog`` fixture).
CALL_ITEMS = [{**item, "quantity": str(item["quantity"])} for item in DEMO_CALL_ITEMS]


def new_key(prefix: str = "key") -> str:
    return f"{prefix}-{next(_keys)}"


@pytest.fixture(autouse=True)
def _api_settings(settings):
    """Fresh throttle counters per test, and rates no functional test reaches (the throttle test lowers them)."""
    cache.clear()
    settings.API_THROTTLE_RATES = {"principal": "100000/min", "money": "100000/min"}
    yield
    cache.clear()


@pytest.fixture
def team_a(db):
    return TeamFactory(name="Team A", slug="team-a", currency="USD")


@pytest.fixture
def team_b(db):
    return TeamFactory(name="Team B", slug="team-b", currency="USD")


def _token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def finance_user(db):
    user = UserFactory(username="fiona-finance")
    user.groups.add(Group.objects.get_or_create(name="finance")[0])
    return user


@pytest.fixture
def finance(finance_user) -> APIClient:
    return _token_client(finance_user)


@pytest.fixture
def auditor(db) -> APIClient:
    user = UserFactory(username="audrey-auditor")
    user.groups.add(Group.objects.get_or_create(name="auditor")[0])
    return _token_client(user)


@pytest.fixture
def member_user(team_a):
    return TeamMembershipFactory(team=team_a, user=UserFactory(username="mia-member")).user


@pytest.fixture
def member(member_user) -> APIClient:
    return _token_client(member_user)


@pytest.fixture
def manager_user(team_a):
    return TeamMembershipFactory(team=team_a, user=UserFactory(username="max-manager"),
                                 role=TeamMembership.Role.MANAGER).user


@pytest.fixture
def manager(manager_user) -> APIClient:
    return _token_client(manager_user)


@pytest.fixture
def outsider_user(team_b):
    return TeamMembershipFactory(team=team_b, user=UserFactory(username="otto-outsider")).user


@pytest.fixture
def outsider(outsider_user) -> APIClient:
    return _token_client(outsider_user)


@pytest.fixture
def api_key(team_a, finance_user):
    return api_key_create(team=team_a, name="voice agent", created_by=finance_user)


@pytest.fixture
def key(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key.raw_key}")
    client.user = None
    return client


@pytest.fixture
def wallet_a(team_a):
    return wallet_open(team=team_a)


@pytest.fixture
def wallet_b(team_b):
    return wallet_open(team=team_b)


@pytest.fixture
def top_up():
    """``top_up(wallet, "50")``: credit the wallet through the service and return it refreshed."""

    def _top_up(wallet, amount):
        wallet_top_up(wallet=wallet, amount=Decimal(amount), idempotency_key=new_key("top-up"))
        wallet.refresh_from_db()
        return wallet

    return _top_up
