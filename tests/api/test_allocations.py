"""Allocation rules and allocation runs through HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chargeback.models import AllocatedCost, AllocationRule, AllocationRun
from tests.factories import AllocationRuleFactory, AllocationTargetFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db


def test_allocation_rule_created_by_finance_with_targets(finance, team_a, team_b):
    payload = {"name": "Shared platform", "rule_type": "fixed_split", "source": "unallocated",
               "targets": [{"team": team_a.pk, "percentage": "60"}, {"team": team_b.pk, "percentage": "40"}]}
    response = finance.post("/api/v1/allocation-rules/", payload, format="json")
    assert response.status_code == 201, response.json()
    rule = AllocationRule.objects.get()
    assert rule.created_by == finance.user
    assert [(t.team_id, t.percentage) for t in rule.targets.order_by("pk")] == [(team_a.pk, 60), (team_b.pk, 40)]


def test_allocation_rule_fixed_split_not_100_names_targets(finance, team_a):
    payload = {"name": "x", "rule_type": "fixed_split", "targets": [{"team": team_a.pk, "percentage": "60"}]}
    response = finance.post("/api/v1/allocation-rules/", payload, format="json")
    # Each field is well-formed; how they go together is not: 422 rule_configuration_error
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "rule_configuration_error"
    assert response.json()["error"]["param"] == "targets"
    assert not AllocationRule.objects.exists()


def test_allocation_rule_team_source_without_team_names_source_team(finance):
    response = finance.post("/api/v1/allocation-rules/", {"name": "x", "rule_type": "by_team", "source": "team"},
                            format="json")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "source_team"


def test_allocation_rule_created_by_is_read_only(finance, member_user):
    response = finance.post("/api/v1/allocation-rules/", {"name": "x", "rule_type": "equal_split",
                                                          "created_by": member_user.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "created_by"


def test_allocation_rules_a_member_reads_only_rules_of_their_team(member, team_a, team_b):
    mine = AllocationTargetFactory(team=team_a).rule
    AllocationTargetFactory(team=team_b)
    response = member.get("/api/v1/allocation-rules/")
    assert [r["id"] for r in response.json()["results"]] == [mine.pk]


def test_allocation_rule_patch_and_delete_by_finance(finance):
    rule = AllocationRuleFactory()
    response = finance.patch(f"/api/v1/allocation-rules/{rule.pk}/", {"enabled": False}, format="json")
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert finance.delete(f"/api/v1/allocation-rules/{rule.pk}/").status_code == 204
    assert not AllocationRule.objects.exists()


def test_allocation_rule_change_by_a_member_answers_403(member, team_a):
    rule = AllocationTargetFactory(team=team_a).rule
    assert member.patch(f"/api/v1/allocation-rules/{rule.pk}/", {"enabled": False}, format="json").status_code == 403


def _usage(team_a, team_b):
    UsageRecordFactory(team=team_a, cost=Decimal("10"))
    UsageRecordFactory(team=team_b, cost=Decimal("30"))


def test_allocation_run_commits_the_period(finance, member, team_a, team_b):
    _usage(team_a, team_b)
    response = finance.post("/api/v1/allocations/", {"period_start": "2024-09-01", "period_end": "2024-10-01"},
                            format="json")
    assert response.status_code == 201, response.json()
    run = response.json()["run"]
    assert (run["status"], run["total_cost"], run["currency"]) == ("committed", "40.000000000000", "USD")
    # a member sees only their team's allocated cost
    rows = member.get("/api/v1/allocations/").json()["results"]
    assert [(r["team"], r["amount"]) for r in rows] == [(team_a.pk, "10.000000000000")]


def test_allocation_dry_run_writes_nothing(finance, team_a, team_b):
    _usage(team_a, team_b)
    response = finance.post("/api/v1/allocations/", {"period_start": "2024-09-01", "period_end": "2024-10-01",
                                                     "dry_run": True}, format="json")
    assert response.status_code == 200
    assert response.json()["run"]["id"] is None
    assert len(response.json()["allocations"]) == 2
    assert not AllocationRun.objects.exists()
    assert not AllocatedCost.objects.exists()


def test_allocation_run_replayed_by_header_runs_once(finance, team_a, team_b):
    _usage(team_a, team_b)
    payload = {"period_start": "2024-09-01", "period_end": "2024-10-01"}
    first = finance.post("/api/v1/allocations/", payload, format="json", HTTP_IDEMPOTENCY_KEY="run-1")
    again = finance.post("/api/v1/allocations/", payload, format="json", HTTP_IDEMPOTENCY_KEY="run-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert AllocationRun.objects.count() == 1


@pytest.mark.parametrize(("payload", "param", "status"), [
    ({"period_start": "2024-09-15", "period_end": "2024-10-01"}, "period_start", 400),
    ({"period_start": "2024-10-01", "period_end": "2024-09-01"}, "period_end", 422),  # each date is right alone
    ({"period_start": "2024-09-01"}, "period_end", 400),
    ({"period_start": "2024-09-01", "period_end": "2024-10-01", "dry_run": "maybe"}, "dry_run", 400),
])
def test_allocation_run_bad_period_names_the_field(finance, payload, param, status):
    response = finance.post("/api/v1/allocations/", payload, format="json")
    assert response.status_code == status
    assert response.json()["error"]["param"] == param


def test_allocation_run_of_an_empty_period_answers_422(finance):
    response = finance.post("/api/v1/allocations/", {"period_start": "2030-01-01", "period_end": "2030-02-01"},
                            format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "nothing_to_allocate"


def test_allocation_run_by_a_member_answers_403(member):
    response = member.post("/api/v1/allocations/", {"period_start": "2024-09-01", "period_end": "2024-10-01"},
                           format="json")
    assert response.status_code == 403
