"""The OpenAPI schema: valid with no warnings, and the live API keeps its promises (schemathesis).

Schemathesis generates requests from ``/api/schema/`` for every operation, as a finance user and as
a member, and checks (``CHECKS``, all four, on every operation) that

* none answers a 5xx (``not_a_server_error``);
* every documented response matches its schema (``response_schema_conformance``);
* a request the schema calls valid is never refused as malformed (``positive_data_acceptance``):
  it may still be refused by the state of the books or by how its parts go together (402
  insufficient funds; 409 a taken code; 422 no price, nothing to allocate, an end before its start,
  no team named, charges that do not fit together; an id that names nothing is 404), never 400:
  the schema says all a 400 checks (docs/api.md, "400 or 422");
* a request the schema calls invalid is never accepted (``negative_data_rejection``): the mix-ins
  of ``billing_site.api.fields`` read a request exactly as ``BillingAutoSchema`` describes it.

Finance runs every phase (the examples, the coverage phase's boundary and negative cases, then
generated cases); the member runs generated cases only (the coverage phase's requests are the same
as finance's, and take most of the time). ``MAX_EXAMPLES`` generated cases per operation keep the
whole run near 2 minutes of CPU. CI runs the same cases every time; to try
others: ``SCHEMA_RANDOM=1 pytest tests/api/test_schema.py --hypothesis-seed=N`` (and
``SCHEMA_MAX_EXAMPLES=N``).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from django.contrib.auth.models import Group
from django.core.management import call_command
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
)

from billing_site.wsgi import application
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory

SCHEMA_URL = "/api/schema/?format=json"
#: Statuses a well-formed request may get from the state of the books, not from its shape.
ACCEPTED = ["2xx", "401", "402", "403", "404", "409", "422", "429"]
CHECKS_CONFIG = {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}
#: Text with a NUL byte is refused on every path (400 naming the field: PostgreSQL's text cannot hold
#: it), which the OpenAPI ``string`` type cannot say; tests/api/test_strict_input.py covers it.
GENERATION = {"allow-x00": False}
#: As finance: every phase, including the coverage phase's boundary and negative cases.
schema = schemathesis.openapi.from_wsgi(
    SCHEMA_URL, application,
    config=schemathesis.config.SchemathesisConfig.from_dict({"checks": CHECKS_CONFIG, "generation": GENERATION}),
)
#: As a member: generated cases only.
member_schema = schemathesis.openapi.from_wsgi(
    SCHEMA_URL, application,
    config=schemathesis.config.SchemathesisConfig.from_dict(
        {"checks": CHECKS_CONFIG, "generation": GENERATION, "phases": {"coverage": {"enabled": False}}}),
)

#: The checks CI holds the whole API to, on every operation (docs/api.md, "What schemathesis holds the API to").
CHECKS = [not_a_server_error, response_schema_conformance, positive_data_acceptance, negative_data_rejection]
MAX_EXAMPLES = int(os.environ.get("SCHEMA_MAX_EXAMPLES", "20"))
#: Cases sent, by role (printed at the end of the module with ``-s``; docs/api.md gives the figures).
SENT = Counter()


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


@pytest.fixture(scope="module", autouse=True)
def _report_the_counts():
    yield
    print(f"\nschemathesis: {SENT['finance']} cases as finance, {SENT['member']} as a member")


#: CI runs the same cases every time (derandomize); ``SCHEMA_RANDOM=1`` with ``--hypothesis-seed=N`` tries others.
_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not os.environ.get("SCHEMA_RANDOM"),
                     database=None,
                     suppress_health_check=list(HealthCheck))


@schema.parametrize()
@_SETTINGS
def test_api_conforms_to_its_schema_as_finance(case, finance_token):
    SENT["finance"] += 1
    case.call_and_validate(headers={"Authorization": f"Token {finance_token}"}, checks=CHECKS)


@member_schema.parametrize()
@_SETTINGS
def test_api_conforms_to_its_schema_as_member(case, member_token):
    SENT["member"] += 1
    case.call_and_validate(headers={"Authorization": f"Token {member_token}"}, checks=CHECKS)
