"""Fixtures of the finance admin tests: users of each group, logged-in clients, a funded wallet."""

from __future__ import annotations

import itertools
import os
from decimal import Decimal
from pathlib import Path

import pytest

from teams.groups import billing_groups_sync
from teams.selectors import AUDITOR_GROUP, FINANCE_GROUP
from tests.factories import TeamFactory, UserFactory
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

_keys = itertools.count(1)


@pytest.fixture
def groups(db):
    """The finance and auditor groups as the data migration makes them (flushed by transactional tests)."""
    from django.contrib.auth.models import Group

    billing_groups_sync()
    return {name: Group.objects.get(name=name) for name in (FINANCE_GROUP, AUDITOR_GROUP)}


def _staff(username, group=None):
    user = UserFactory(username=username, is_staff=True)
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def finance_user(groups):
    return _staff("fiona-finance", groups[FINANCE_GROUP])


@pytest.fixture
def auditor_user(groups):
    return _staff("arthur-auditor", groups[AUDITOR_GROUP])


@pytest.fixture
def plain_staff(groups):
    """Staff outside both groups, even with every billing view permission granted by hand."""
    from django.contrib.auth.models import Permission

    user = _staff("sam-staff")
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label__in=["chargeback", "wallets", "invoices"], codename__startswith="view_"))
    return user


@pytest.fixture
def finance(client, finance_user):
    client.force_login(finance_user)
    return client


@pytest.fixture
def auditor(client, auditor_user):
    client.force_login(auditor_user)
    return client


@pytest.fixture
def staff(client, plain_staff):
    client.force_login(plain_staff)
    return client


def new_key(prefix: str = "test") -> str:
    return f"{prefix}-{next(_keys)}"


@pytest.fixture
def wallet(db):
    """The team wallet of "Search", topped up with 100 USD through the service."""
    team = TeamFactory(name="Search", slug="search")
    wallet = wallet_open(team=team)
    wallet_top_up(wallet=wallet, amount=Decimal("100"), idempotency_key=new_key())
    wallet.refresh_from_db()
    return wallet


# --- Browser tests (Playwright driving Debian's Chromium) -------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a headless Chromium in a container: no sandbox (root), no GPU, and nothing that phones
#: home (component updates, sync, background networking), so a test run never leaves the machine.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at /usr/bin/chromium (no browser download).

    Without Chromium the browser tests fail, saying so: ``make test`` installs it first
    (``scripts/system-deps.sh``).
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/system-deps.sh)")
    # Playwright's sync API keeps an event loop running in the main thread for the rest of the
    # session (its browser is session-scoped), and Django refuses ORM calls beside a running loop.
    # The tests and the live server's thread are plain synchronous code, so the check is moot here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture
def artifacts(settings) -> Path:
    """The folder for screenshots and downloads of the browser tests (gitignored test-artifacts/admin)."""
    folder = Path(settings.TEST_ARTIFACTS_DIR) / "admin"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
