"""The OpenAPI schema: valid with no warnings, and the live API conforms to it (schemathesis).

Schemathesis generates requests from ``/api/schema/`` for every operation and checks that none
answers a 5xx and that every documented response matches its schema, as a finance user and as a
member. Examples are few per operation (``max_examples``) so the suite stays quick.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth.models import Group
from django.core.management import call_command
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from billing_site.wsgi import application
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory

SCHEMA_URL = "/api/schema/?format=json"
#: As finance: every phase, including the coverage phase's boundary and negative cases.
schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, application)
#: As a member: generated examples only (the coverage phase's negative cases are the same requests
#: finance already sent, and take most of the time).
member_schema = schemathesis.openapi.from_wsgi(
    SCHEMA_URL, application,
    config=schemathesis.config.SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}}),
)

CHECKS = [not_a_server_error, response_schema_conformance]


def test_schema_validates_without_warnings(tmp_path):
    # --validate checks the OpenAPI document; --fail-on-warn turns any generator warning into a failure
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3.")


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Calling the WSGI app directly fires request_started/finished, which close old connections;
    Django's own test client disconnects them the same way, so the test transaction survives."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _token(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


@pytest.fixture
def finance_token(db):
    user = UserFactory(username="schema-finance")
    user.groups.add(Group.objects.get_or_create(name="finance")[0])
    TeamFactory(slug="schema-team")
    return _token(user)


@pytest.fixture
def member_token(db):
    membership = TeamMembershipFactory(team=TeamFactory(slug="schema-team"), user=UserFactory(username="schema-member"))
    return _token(membership.user)


_SETTINGS = settings(max_examples=4, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))


@schema.parametrize()
@_SETTINGS
def test_api_conforms_to_its_schema_as_finance(case, finance_token):
    case.call_and_validate(headers={"Authorization": f"Token {finance_token}"}, checks=CHECKS)


@member_schema.parametrize()
@_SETTINGS
def test_api_conforms_to_its_schema_as_member(case, member_token):
    case.call_and_validate(headers={"Authorization": f"Token {member_token}"}, checks=CHECKS)
