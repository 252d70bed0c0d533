"""Fixtures of the portal tests: two teams, a member and a lead of the first, finance, a fixed day."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from teams.groups import billing_groups_sync
from teams.models import TeamMembership
from teams.selectors import FINANCE_GROUP
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory

#: The portal's "today" in these tests: the 10th of a 30-day month, so a third of it has elapsed.
TODAY = dt.datetime(2024, 9, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def today():
    with time_machine.travel(TODAY, tick=False):
        yield TODAY.date()


@pytest.fixture
def search(db):
    return TeamFactory(name="Search", slug="search")


@pytest.fixture
def maps(db):
    return TeamFactory(name="Maps", slug="maps")


@pytest.fixture
def member_user(search):
    user = UserFactory(username="mia-member")
    TeamMembershipFactory(user=user, team=search, role=TeamMembership.Role.MEMBER)
    return user


@pytest.fixture
def lead_user(search):
    user = UserFactory(username="lars-lead")
    TeamMembershipFactory(user=user, team=search, role=TeamMembership.Role.MANAGER)
    return user


@pytest.fixture
def finance_person(db):
    from django.contrib.auth.models import Group

    billing_groups_sync()
    user = UserFactory(username="fiona-finance")
    user.groups.add(Group.objects.get(name=FINANCE_GROUP))
    return user


@pytest.fixture
def member(client, member_user):
    client.force_login(member_user)
    return client


@pytest.fixture
def lead(client, lead_user):
    client.force_login(lead_user)
    return client


@pytest.fixture
def finance(client, finance_person):
    client.force_login(finance_person)
    return client


# --- Browser tests: Debian's Chromium, as the admin's browser tests launch it ---------------------------
from pathlib import Path  # noqa: E402

from tests.admin.conftest import browser_type_launch_args  # noqa: E402,F401 - the shared Chromium launch


@pytest.fixture
def portal_artifacts(settings) -> Path:
    """Screenshots of the portal's browser tests (gitignored ``test-artifacts/portal``)."""
    folder = Path(settings.TEST_ARTIFACTS_DIR) / "portal"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
