"""The permission matrix: every role against every endpoint, and another team's ids answer 404.

Roles: anonymous, finance, auditor (reads all, writes nothing), member and manager of team A,
outsider (a member of team B only) and team A's API key. Every object is team A's, so for the
outsider an object endpoint answers 404, as if it did not exist.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import CALL_ITEMS
from tests.factories import AllocationTargetFactory, UsageRecordFactory, draft_invoice

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "finance", "auditor", "member", "manager", "outsider", "key"]
USAGE = {"resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": "10",
         "occurred_at": "2024-09-15T12:00:00Z"}

#: (name, method, path, body, expected status per role in ROLES order). {team}, {wallet}, {rule},
#: {invoice} are team A's objects; {member} is team A's member (the user report).
MATRIX = [
    ("teams", "get", "/api/v1/teams/", None, [401, 200, 200, 200, 200, 200, 403]),
    ("team", "get", "/api/v1/teams/{team}/", None, [401, 200, 200, 200, 200, 404, 403]),
    ("team members", "get", "/api/v1/teams/{team}/members/", None, [401, 200, 200, 200, 200, 404, 403]),
    ("billing settings", "get", "/api/v1/teams/{team}/billing-settings/", None, [401, 200, 200, 200, 200, 404, 403]),
    ("billing settings put", "put", "/api/v1/teams/{team}/billing-settings/", {"tax_rate": "19"},
     [401, 200, 403, 403, 403, 403, 403]),
    ("usage list", "get", "/api/v1/usage/", None, [401, 200, 200, 200, 200, 200, 403]),
    ("usage summary", "get", "/api/v1/usage/summary/?period_start=2024-09-01&period_end=2024-10-01", None,
     [401, 200, 200, 200, 200, 200, 403]),
    ("usage post", "post", "/api/v1/usage/", {**USAGE, "team": "{team}", "idempotency_key": "p-1"},
     [401, 201, 403, 201, 201, 404, 201]),
    ("usage batch", "post", "/api/v1/usage/batch/",
     {"team": "{team}", "records": [{**USAGE, "idempotency_key": "p-2"}]}, [401, 201, 403, 403, 403, 403, 201]),
    ("wallets", "get", "/api/v1/wallets/", None, [401, 200, 200, 200, 200, 200, 403]),
    ("wallet", "get", "/api/v1/wallets/{wallet}/", None, [401, 200, 200, 200, 200, 404, 403]),
    ("wallet transactions", "get", "/api/v1/wallets/{wallet}/transactions/", None, [401, 200, 200, 200, 200, 404, 403]),
    ("top-up", "post", "/api/v1/wallets/{wallet}/top-up/", {"amount": "5", "idempotency_key": "p-3"},
     [401, 201, 403, 403, 403, 403, 403]),
    ("prices", "get", "/api/v1/prices/?category=llm&provider=openai&model=gpt-4&unit=token&team={team}", None,
     [401, 200, 200, 200, 200, 404, 403]),
    ("providers", "get", "/api/v1/providers/?team={team}", None, [401, 200, 200, 200, 200, 404, 403]),
    ("quotes", "post", "/api/v1/quotes/", {"team": "{team}", "items": CALL_ITEMS}, [401, 200, 200, 200, 200, 404, 200]),
    ("charges", "post", "/api/v1/charges/", {"team": "{team}", "items": CALL_ITEMS, "idempotency_key": "p-4"},
     [401, 201, 403, 201, 201, 404, 201]),
    ("statistics", "get", "/api/v1/statistics/month/?year=2024&team={team}", None, [401, 200, 200, 200, 200, 404, 403]),
    ("rules", "get", "/api/v1/allocation-rules/", None, [401, 200, 200, 200, 200, 200, 403]),
    ("rule", "get", "/api/v1/allocation-rules/{rule}/", None, [401, 200, 200, 200, 200, 404, 403]),
    ("rule create", "post", "/api/v1/allocation-rules/", {"name": "r", "rule_type": "equal_split"},
     [401, 201, 403, 403, 403, 403, 403]),
    ("rule patch", "patch", "/api/v1/allocation-rules/{rule}/", {"enabled": False}, [401, 200, 403, 403, 403, 403, 403]),
    ("rule delete", "delete", "/api/v1/allocation-rules/{rule}/", None, [401, 204, 403, 403, 403, 403, 403]),
    ("allocations", "get", "/api/v1/allocations/", None, [401, 200, 200, 200, 200, 200, 403]),
    ("allocation run", "post", "/api/v1/allocations/",
     {"period_start": "2024-09-01", "period_end": "2024-10-01", "dry_run": True}, [401, 200, 403, 403, 403, 403, 403]),
    ("invoices", "get", "/api/v1/invoices/", None, [401, 200, 200, 200, 200, 200, 403]),
    ("invoice", "get", "/api/v1/invoices/{invoice}/", None, [401, 200, 200, 200, 200, 404, 403]),
    ("invoice pdf", "get", "/api/v1/invoices/{invoice}/pdf/", None, [401, 200, 200, 200, 200, 404, 403]),
    # finance: no committed run for 2030-01 (422); everybody else is refused before that
    ("invoice generate", "post", "/api/v1/invoices/",
     {"team": "{team}", "period_start": "2030-01-01", "period_end": "2030-02-01", "kind": "chargeback"},
     [401, 422, 403, 403, 403, 403, 403]),
    ("invoice status", "post", "/api/v1/invoices/{invoice}/status/", {"status": "pending"},
     [401, 200, 403, 403, 403, 403, 403]),
    # finance: a draft takes no credit note (409 invalid_transition)
    ("credit note", "post", "/api/v1/invoices/{invoice}/credit-notes/", {"reason": "other"},
     [401, 409, 403, 403, 403, 403, 403]),
    ("team report", "get", "/api/v1/reports/teams/{team}/?period_start=2024-09-01&period_end=2024-10-01", None,
     [401, 200, 200, 200, 200, 404, 403]),
    ("user report", "get", "/api/v1/reports/users/{member}/?period_start=2024-09-01&period_end=2024-10-01", None,
     [401, 200, 200, 200, 200, 404, 403]),
]


def _fill(value, ids):
    if isinstance(value, str):
        for name, pk in ids.items():
            if value == f"{{{name}}}":
                return pk
            value = value.replace(f"{{{name}}}", str(pk))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method", "path", "body", "expected"), MATRIX, ids=[row[0] for row in MATRIX])
def test_permission_matrix(request, role, name, method, path, body, expected, team_a, team_b, catalog, wallet_a,
                           top_up, member_user, manager_user, outsider_user):
    # given team A's objects (usage, a topped-up wallet, a rule giving to it) and a caller in a role
    top_up(wallet_a, "10")
    UsageRecordFactory(team=team_a)
    rule = AllocationTargetFactory(team=team_a).rule
    invoice = draft_invoice(team=team_a)
    client = request.getfixturevalue(role)
    ids = {"team": team_a.pk, "wallet": wallet_a.pk, "rule": rule.pk, "invoice": invoice.pk, "member": member_user.pk}
    # when the caller calls the endpoint
    call = getattr(client, method)
    response = call(_fill(path, ids), _fill(body, ids), format="json") if body is not None else call(_fill(path, ids))
    # then the answer is the role's, in the error shape when refused
    assert response.status_code == expected[ROLES.index(role)], (role, name, response.content[:300])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"type", "code", "message", "param"}
