"""The allocation engine: every cost of a period reaches a team or stays visibly unallocated, once."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connections, transaction

from chargeback.errors import (
    AllocationError,
    NothingToAllocate,
    RuleConfigurationError,
    StaleAllocationRun,
)
from chargeback.models import AllocatedCost, AllocationRule, AllocationRun
from chargeback.periods import BillingPeriod
from chargeback.selectors import (
    allocation_committed_run,
    allocation_currency_totals,
    allocation_rows,
    allocation_team_totals,
    usage_period_total,
)
from chargeback.services.allocation import allocation_run_commit, allocation_run_create, allocation_run_execute
from chargeback.services.usage import usage_record_create
from tests.factories import (
    AllocationRuleFactory,
    AllocationTargetFactory,
    PriceFactory,
    TeamFactory,
    TeamMembershipFactory,
    UsageRecordFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

SEPT = BillingPeriod.month("2024-09")
D = Decimal


def usage(team, cost, **kwargs):
    """One usage record of September 2024 (``team`` None: the unallocated pool)."""
    return UsageRecordFactory(team=team, cost=D(cost), **kwargs)


def rule(rule_type, *, targets=(), **kwargs):
    """An allocation rule with targets given as teams, (team, user) pairs or (team, percentage) pairs."""
    r = AllocationRuleFactory(rule_type=rule_type, **kwargs)
    for target in targets:
        if isinstance(target, tuple) and isinstance(target[1], Decimal):
            AllocationTargetFactory(rule=r, team=target[0], percentage=target[1])
        elif isinstance(target, tuple):
            AllocationTargetFactory(rule=r, team=target[0], user=target[1])
        else:
            AllocationTargetFactory(rule=r, team=target)
    return r


def by_team_amounts(rows, rule_obj=None):
    """``{team slug: amount}`` of the rows of one rule (or the direct rows)."""
    result = {}
    for row in rows:
        if row.rule_id == (rule_obj.pk if rule_obj else None):
            result[row.team.slug] = result.get(row.team.slug, D(0)) + row.amount
    return result


def assert_ties_out(run):
    assert run.allocated_cost + run.unallocated_cost == run.total_cost
    assert sum((r.amount for r in allocation_rows(run)), D(0)) == run.allocated_cost


# --- direct costs and totals ----------------------------------------------------------------------

def test_allocation_direct_costs_stay_with_their_team_one_row_per_service_and_user():
    # given two teams' usage on two services, one record with a user
    a, b, alice = TeamFactory(slug="a"), TeamFactory(slug="b"), UserFactory()
    usage(a, "1.5", service_name="Amazon S3")
    usage(a, "2.25", service_name="Amazon S3")
    usage(a, "0.25", service_name="", resource_type="llm")
    usage(a, "1", service_name="Amazon S3", user=alice)
    usage(b, "4")
    # when
    run = allocation_run_create(period=SEPT)
    # then
    rows = sorted((r.team.slug, r.user_id or 0, r.service, r.amount, r.record_count) for r in allocation_rows(run))
    assert rows == sorted([
        ("a", 0, "Amazon S3", D("3.75"), 2), ("a", alice.pk, "Amazon S3", D("1"), 1), ("a", 0, "LLM · AWS", D("0.25"), 1),
        ("b", 0, "Amazon Elastic Compute Cloud", D("4"), 1),
    ])
    assert all(r.rule_id is None for r in allocation_rows(run))
    assert (run.total_cost, run.allocated_cost, run.unallocated_cost, run.record_count) == (D(9), D(9), D(0), 5)
    assert run.status == AllocationRun.Status.DRAFT and run.currency == "USD"
    assert allocation_team_totals(run) == {a.pk: D(5), b.pk: D(4)}


def api_usage(team, quantity, *, user=None, category="llm", provider="openai", model="gpt-4", unit="token",
              day=15):
    """One priced API / AI usage record of September 2024, through the usage service."""
    return usage_record_create(
        team=team, user=user, resource_type=category, provider=provider, model=model, unit=unit,
        quantity=D(quantity), occurred_at=dt.datetime(2024, 9, day, 12, tzinfo=dt.UTC),
        idempotency_key=f"{category}-{provider}-{model}-{quantity}-{day}-{team.pk if team else 0}-{user}",
    )


def test_allocation_groups_api_usage_by_priced_item_with_its_summed_quantity():
    # given a team's AI usage of two LLM models and a GPU, priced from the catalog
    team = TeamFactory(slug="ml")
    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=D("0.00003"))
    PriceFactory(category="llm", provider="openai", model="gpt-4o-mini", unit="token", unit_price=D("0.000001"))
    PriceFactory(category="gpu", provider="internal", model="a100", unit="second", unit_price=D("0.00085"))
    PriceFactory(category="vector_search", provider="acme", model="", unit="query", unit_price=D("0.0005"))
    api_usage(team, "1000")
    api_usage(team, "2500", day=16)
    api_usage(team, "400000", model="gpt-4o-mini")
    api_usage(team, "3600", category="gpu", provider="internal", model="a100", unit="second")
    api_usage(team, "10", category="vector_search", provider="acme", model="", unit="query")

    # when the period is allocated
    run = allocation_run_create(period=SEPT)

    # then each item is one row named for people, with its quantity summed in its unit
    rows = sorted((r.service, r.quantity, r.unit, r.amount, r.record_count) for r in allocation_rows(run))
    assert rows == [
        ("GPU · internal a100", D("3600"), "second", D("3.06"), 1),
        ("LLM · openai gpt-4", D("3500"), "token", D("0.105"), 2),
        ("LLM · openai gpt-4o-mini", D("400000"), "token", D("0.4"), 1),
        ("Vector Search · acme", D("10"), "query", D("0.005"), 1),
    ]
    item = next(r for r in allocation_rows(run) if r.service == "LLM · openai gpt-4").details
    assert item == {"resource_type": "llm", "provider": "openai", "model": "gpt-4"}
    assert_ties_out(run)


def test_allocation_focus_rows_stay_one_row_per_service_without_quantity():
    # given FOCUS rows of one service in different units and from two providers' regions
    team = TeamFactory(slug="a")
    usage(team, "1.5", service_name="Amazon S3", unit="GB-Mo", quantity=D("120"))
    usage(team, "0.25", service_name="Amazon S3", unit="Requests", quantity=D("40000"), provider="AWS EU")
    usage(team, "2", service_name="Amazon S3", resource_type="storage", unit="GB-Mo", quantity=D("5"))

    # when
    run = allocation_run_create(period=SEPT)

    # then one row for the service, with no quantity (its units cannot be added up)
    (row,) = allocation_rows(run)
    assert (row.service, row.quantity, row.unit, row.amount, row.record_count) == ("Amazon S3", None, "", D("3.75"), 3)


def test_allocation_rule_takes_api_usage_of_several_items_into_one_pool():
    # given unallocated AI usage of two items and an equal split over two teams
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=D("0.00025"))
    PriceFactory(category="stt", provider="openai", model="whisper-1", unit="second", unit_price=D("0.0005"))
    api_usage(None, "1000")
    api_usage(None, "500", category="stt", model="whisper-1", unit="second")
    shared = rule(AllocationRule.RuleType.EQUAL_SPLIT, targets=[a, b])

    # when
    run = allocation_run_create(period=SEPT)

    # then the rule splits one pool of 0.5 USD: one row per team, no quantity on a share
    rows = allocation_rows(run)
    assert by_team_amounts(rows, shared) == {"a": D("0.25"), "b": D("0.25")}
    assert all(r.quantity is None and r.unit == "" for r in rows)
    assert_ties_out(run)


def test_allocation_only_counts_usage_billed_in_the_period():
    # given usage in August, September and October
    team = TeamFactory()
    usage(team, "1", billing_period_start=dt.date(2024, 8, 1))
    usage(team, "2")
    usage(team, "4", billing_period_start=dt.date(2024, 10, 1))
    # when / then
    assert allocation_run_create(period=SEPT).total_cost == D(2)
    assert usage_period_total(period=SEPT) == {"USD": D(2)}


def test_allocation_unallocated_usage_without_rules_stays_visible():
    team = TeamFactory()
    usage(team, "3")
    usage(None, "1")
    run = allocation_run_create(period=SEPT)
    assert (run.allocated_cost, run.unallocated_cost, run.total_cost) == (D(3), D(1), D(4))
    assert_ties_out(run)


def test_allocation_commits_amounts_that_binary_floats_cannot_hold():
    # 0.2 allocated + 0.1 unallocated: as floats 0.3 - 0.1 != 0.2, so the tie-out must be exact Decimal.
    usage(TeamFactory(), "0.2")
    usage(None, "0.1")
    run = allocation_run_execute(period=SEPT)
    run.refresh_from_db()
    assert (run.status, run.allocated_cost, run.unallocated_cost) == ("committed", D("0.2"), D("0.1"))


def test_allocation_run_that_does_not_tie_out_is_refused_by_the_database():
    usage(TeamFactory(), "3")
    run = allocation_run_execute(period=SEPT)
    with pytest.raises(IntegrityError, match="run_ties_out"), transaction.atomic():
        AllocationRun.objects.filter(pk=run.pk).update(unallocated_cost=D("0.01"))


def test_allocation_of_an_empty_period_is_refused_with_a_clear_message():
    usage(TeamFactory(), "1", billing_period_start=dt.date(2024, 8, 1))
    with pytest.raises(NothingToAllocate, match="no usage records are billed in 2024-09"):
        allocation_run_create(period=SEPT)


def test_allocation_of_a_period_in_several_currencies_keeps_one_pool_per_currency():
    # given one team's usage in USD and another team's in EUR
    usage(TeamFactory(), "1")
    euro = TeamFactory(name="Euro team", currency="EUR")
    usage(euro, "2", currency="EUR")
    # when the period is allocated
    run = allocation_run_create(period=SEPT)
    # then both are allocated, each currency in its own pool, nothing left out
    assert (run.currency, run.total_cost, run.record_count) == ("USD", D(1), 2)
    pools = {p.currency: (p.total_cost, p.allocated_cost, p.unallocated_cost, p.record_count)
             for p in allocation_currency_totals(run)}
    assert pools == {"EUR": (D(2), D(2), D(0), 1), "USD": (D(1), D(1), D(0), 1)}
    assert run.refused == []


def test_allocation_where_every_team_has_usage_in_two_currencies_bills_both():
    for team in (TeamFactory(), TeamFactory()):
        usage(team, "1")
        usage(team, "2", currency="EUR")
    run = allocation_run_create(period=SEPT)
    assert {p.currency: p.allocated_cost for p in allocation_currency_totals(run)} == {"EUR": D(4), "USD": D(2)}


# --- the five rule types --------------------------------------------------------------------------

def test_allocation_by_usage_splits_the_unallocated_pool_by_each_teams_own_usage():
    # given teams that used 3 and 1, and 2 of shared untagged cost
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    usage(a, "3")
    usage(b, "1")
    usage(None, "1.5")
    usage(None, "0.5")
    shared = rule("by_usage")
    # when
    run = allocation_run_create(period=SEPT)
    # then a gets three quarters of the pool, b one quarter
    rows = allocation_rows(run)
    assert by_team_amounts(rows, shared) == {"a": D("1.5"), "b": D("0.5")}
    row_a = next(r for r in rows if r.rule_id == shared.pk and r.team_id == a.pk)
    assert row_a.details == {"rule_type": "by_usage", "share": "0.75", "pool_amount": "2.000000000000",
                             "driver_amount": "3.000000000000", "source_records": 2}
    assert row_a.record_count == 2 and row_a.service == ""
    assert (run.allocated_cost, run.unallocated_cost) == (D(6), D(0))


def test_allocation_by_usage_counts_a_teams_negative_usage_as_zero():
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    usage(a, "2")
    usage(b, "-1")  # a credit larger than b's costs
    usage(None, "1")
    shared = rule("by_usage", targets=[a, b])
    rows = allocation_rows(allocation_run_create(period=SEPT))
    assert by_team_amounts(rows, shared) == {"a": D(1)}


def test_allocation_equal_split_hands_the_extra_quantum_to_the_lowest_team():
    a, b, c = TeamFactory(slug="a"), TeamFactory(slug="b"), TeamFactory(slug="c")
    usage(None, "1")
    shared = rule("equal_split", targets=[c, a, b])
    rows = allocation_rows(allocation_run_create(period=SEPT))
    assert by_team_amounts(rows, shared) == {
        "a": D("0.333333333334"), "b": D("0.333333333333"), "c": D("0.333333333333"),
    }


def test_allocation_fixed_split_follows_the_percentages():
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    usage(None, "8")
    shared = rule("fixed_split", targets=[(a, D("62.5")), (b, D("37.5"))])
    rows = allocation_rows(allocation_run_create(period=SEPT))
    assert by_team_amounts(rows, shared) == {"a": D(5), "b": D(3)}
    assert next(r for r in rows if r.team_id == b.pk).details["percentage"] == "37.5000"


def test_allocation_fixed_split_not_summing_to_100_is_refused_naming_the_rule():
    a, b = TeamFactory(), TeamFactory()
    usage(None, "1")
    rule("fixed_split", name="Support desk", targets=[(a, D("50")), (b, D("49.99"))])
    with pytest.raises(RuleConfigurationError, match="'Support desk'.*sum to 99.99, not exactly 100"):
        allocation_run_create(period=SEPT)
    assert not AllocationRun.objects.exists()


def test_allocation_by_team_splits_a_teams_cost_among_its_members():
    # given a platform team with three members, whose cost is shared by them
    platform = TeamFactory(slug="platform")
    members = sorted((TeamMembershipFactory(team=platform).user for _ in range(3)), key=lambda u: u.pk)
    usage(platform, "1")
    per_member = rule("by_team", source=AllocationRule.Source.TEAM, source_team=platform)
    # when
    rows = [r for r in allocation_rows(allocation_run_create(period=SEPT)) if r.rule_id == per_member.pk]
    # then each member carries a third, the first member the extra quantum
    assert [(r.team_id, r.user_id, r.amount) for r in rows] == [
        (platform.pk, members[0].pk, D("0.333333333334")),
        (platform.pk, members[1].pk, D("0.333333333333")),
        (platform.pk, members[2].pk, D("0.333333333333")),
    ]


def test_allocation_by_team_without_a_source_team_is_refused():
    usage(None, "1")
    rule("by_team", name="Members of nobody")
    with pytest.raises(RuleConfigurationError, match="'Members of nobody'.*by_team rule splits one team's costs"):
        allocation_run_create(period=SEPT)


def test_allocation_by_user_without_targets_gives_each_record_to_its_user():
    # given a team's records with users, one without, and untagged records of a member and of nobody
    team, alice, bob = TeamFactory(slug="t"), UserFactory(), UserFactory()
    TeamMembershipFactory(team=team, user=bob)
    usage(team, "1", user=alice)
    usage(team, "0.5", user=alice, service_name="Amazon S3")
    usage(team, "2", user=bob)
    usage(team, "0.25")
    per_user = rule("by_user", source=AllocationRule.Source.TEAM, source_team=team)
    untagged = rule("by_user")
    usage(None, "4", user=bob)
    usage(None, "0.75")
    # when
    run = allocation_run_create(period=SEPT)
    # then
    rows = allocation_rows(run)
    assert sorted((r.user_id or 0, r.amount) for r in rows if r.rule_id == per_user.pk) == sorted(
        [(alice.pk, D("1.5")), (bob.pk, D("2")), (0, D("0.25"))]
    )
    assert [(r.team_id, r.user_id, r.amount) for r in rows if r.rule_id == untagged.pk] == [(team.pk, bob.pk, D(4))]
    assert run.unallocated_cost == D("0.75")
    assert run.warnings[0]["rule_id"] == untagged.pk and "neither a user nor a team" in run.warnings[0]["message"]
    assert_ties_out(run)


def test_allocation_by_user_with_targets_splits_equally_among_the_listed_users():
    team, alice, bob = TeamFactory(slug="t"), UserFactory(), UserFactory()
    usage(None, "3")
    shared = rule("by_user", targets=[(team, bob), (team, alice)])
    rows = [r for r in allocation_rows(allocation_run_create(period=SEPT)) if r.rule_id == shared.pk]
    assert sorted((r.user_id, r.amount) for r in rows) == [(alice.pk, D("1.5")), (bob.pk, D("1.5"))]


def test_allocation_by_user_target_without_a_user_is_refused():
    usage(None, "3")
    rule("by_user", targets=[TeamFactory()])
    with pytest.raises(RuleConfigurationError, match="must name a user"):
        allocation_run_create(period=SEPT)


# --- which rule takes which record ----------------------------------------------------------------

def test_allocation_first_matching_rule_by_priority_takes_the_record_and_nothing_cascades():
    # given two rules on the same pool, the later-created one with the lower priority number
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    usage(None, "2")
    late = rule("equal_split", targets=[a], priority=200)
    early = rule("equal_split", targets=[b], priority=10)
    # when
    run = allocation_run_create(period=SEPT)
    # then only the first rule in priority order took the cost, and b's share is not split again
    rows = allocation_rows(run)
    assert by_team_amounts(rows, early) == {"b": D(2)} and by_team_amounts(rows, late) == {}
    assert run.allocated_cost == D(2)


def test_allocation_same_priority_runs_in_creation_order():
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    usage(None, "2")
    first = rule("equal_split", targets=[a], priority=5)
    rule("equal_split", targets=[b], priority=5)
    assert by_team_amounts(allocation_rows(allocation_run_create(period=SEPT)), first) == {"a": D(2)}


def test_allocation_team_source_rule_takes_only_that_teams_records():
    # given a team whose costs are re-split, and another team's direct costs
    src, dst, other = TeamFactory(slug="src"), TeamFactory(slug="dst"), TeamFactory(slug="other")
    usage(src, "2")
    usage(other, "1")
    usage(None, "1")
    moved = rule("equal_split", source=AllocationRule.Source.TEAM, source_team=src, targets=[dst])
    run = allocation_run_create(period=SEPT)
    rows = allocation_rows(run)
    assert by_team_amounts(rows, moved) == {"dst": D(2)}
    assert by_team_amounts(rows) == {"other": D(1)}
    assert run.unallocated_cost == D(1)


@pytest.mark.parametrize(
    ("filters", "taken"),
    [
        ({"match_resource_type": "llm"}, {"llm"}),
        ({"match_provider": "Azure"}, {"azure-vm"}),
        ({"match_service_name": "Amazon S3"}, {"s3", "s3-other-tag"}),
        ({"match_tag_key": "business_unit", "match_tag_value": "research"}, {"s3"}),
        ({"match_tag_key": "business_unit"}, {"s3", "s3-other-tag"}),
        ({"match_tag_key": "cost.center/x__y", "match_tag_value": "7"}, {"llm"}),
        ({"match_provider": "AWS", "match_tag_key": "business_unit", "match_tag_value": "sales"}, {"s3-other-tag"}),
    ],
)
def test_allocation_rule_filters_select_the_records_they_take(filters, taken):
    # given untagged records that differ by resource type, provider, service and tags
    receiver = TeamFactory(slug="receiver")
    records = {
        "llm": usage(None, "1", resource_type="llm", provider="openai", service_name="",
                     tags={"cost.center/x__y": "7"}),
        "azure-vm": usage(None, "2", provider="Azure", service_name="Virtual Machines"),
        "s3": usage(None, "4", service_name="Amazon S3", tags={"business_unit": "research"}),
        "s3-other-tag": usage(None, "8", service_name="Amazon S3", tags={"business_unit": "sales"}),
    }
    filtered = rule("equal_split", targets=[receiver], **filters)
    # when
    run = allocation_run_create(period=SEPT)
    # then the rule's pool is exactly the matching records
    expected = sum((records[name].cost for name in taken), D(0))
    assert by_team_amounts(allocation_rows(run), filtered) == {"receiver": expected}
    assert run.unallocated_cost == D(15) - expected


def test_allocation_rule_with_a_tag_value_but_no_tag_key_is_refused():
    usage(None, "1")
    rule("equal_split", targets=[TeamFactory()], match_tag_value="research")
    with pytest.raises(RuleConfigurationError, match="tag value 'research' needs the tag key"):
        allocation_run_create(period=SEPT)


def test_allocation_ignores_disabled_rules_and_rules_not_valid_in_the_period():
    receiver = TeamFactory(slug="receiver")
    usage(None, "1")
    rule("equal_split", targets=[receiver], enabled=False)
    rule("equal_split", targets=[receiver], valid_to=dt.date(2024, 9, 1))  # ended the day before
    rule("equal_split", targets=[receiver], valid_from=dt.date(2024, 10, 1))
    run = allocation_run_create(period=SEPT)
    assert run.allocated_cost == 0 and run.unallocated_cost == D(1)


def test_allocation_rule_valid_for_part_of_the_period_applies():
    receiver = TeamFactory(slug="receiver")
    usage(None, "1")
    mid_month = rule("equal_split", targets=[receiver], valid_from=dt.date(2024, 9, 15))
    assert by_team_amounts(allocation_rows(allocation_run_create(period=SEPT)), mid_month) == {"receiver": D(1)}


def test_allocation_with_one_rule_applies_only_that_rule_and_direct_costs():
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    usage(a, "1")
    usage(None, "2", resource_type="llm")
    usage(None, "4")
    llm = rule("equal_split", targets=[b], match_resource_type="llm", priority=50)
    rule("equal_split", targets=[a], priority=1)
    run = allocation_run_create(period=SEPT, rule=llm)
    assert run.rule == llm
    assert by_team_amounts(allocation_rows(run), llm) == {"b": D(2)}
    assert (run.allocated_cost, run.unallocated_cost) == (D(3), D(4))


def test_allocation_with_a_disabled_rule_is_refused():
    usage(None, "1")
    off = rule("equal_split", targets=[TeamFactory()], enabled=False, name="Old split")
    with pytest.raises(AllocationError, match="'Old split'.*disabled or not valid in 2024-09"):
        allocation_run_create(period=SEPT, rule=off)


def test_allocation_for_one_team_allocates_the_whole_period_and_previews_that_team():
    # given a by_usage pool whose shares depend on both teams
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    usage(a, "3")
    usage(b, "1")
    usage(None, "2")
    shared = rule("by_usage")
    # when asked for team a
    run = allocation_run_create(period=SEPT, team=a, dry_run=True)
    # then a's share is the same as in the whole-period run, and only a's rows are previewed
    assert {r.team_id for r in allocation_rows(run)} == {a.pk}
    assert by_team_amounts(allocation_rows(run), shared) == {"a": D("1.5")}
    assert run.total_cost == D(6) and run.allocated_cost == D(6) and run.team == a


def test_allocation_saved_run_for_one_team_keeps_the_whole_period():
    # given two teams' usage
    a, b = TeamFactory(slug="a"), TeamFactory(slug="b")
    usage(a, "3")
    usage(b, "1")
    # when a run asked for team a is saved
    run = allocation_run_create(period=SEPT, team=a)
    # then it holds every team's rows (committing it makes it the period's allocation)
    assert {r.team_id for r in allocation_rows(run)} == {a.pk, b.pk}
    assert [r.amount for r in allocation_rows(run, team=a)] == [D(3)]
    assert allocation_team_totals(run) == {a.pk: D(3), b.pk: D(1)}


# --- unsplittable pools ---------------------------------------------------------------------------

def test_allocation_pool_that_cannot_be_split_stays_unallocated_with_a_warning():
    # given a team without members whose cost a by_team rule should share, and an equal split without targets
    lonely = TeamFactory(slug="lonely")
    usage(lonely, "2")
    usage(None, "0.5")
    usage(TeamFactory(slug="busy"), "1")
    no_members = rule("by_team", name="Lonely members", source=AllocationRule.Source.TEAM, source_team=lonely)
    no_targets = rule("equal_split", name="Nobody")
    # when
    run = allocation_run_create(period=SEPT)
    # then the cost stays unallocated, visible in the tie-out, and each rule is named in a warning
    assert (run.total_cost, run.allocated_cost, run.unallocated_cost) == (D("3.5"), D(1), D("2.5"))
    messages = {w["rule_id"]: w["message"] for w in run.warnings}
    assert "no members" in messages[no_members.pk] and "'Lonely members'" in messages[no_members.pk]
    assert "no targets" in messages[no_targets.pk]
    # and the run commits with the unallocated cost
    committed = allocation_run_commit(run=run)
    assert committed.unallocated_cost == D("2.5")
    assert_ties_out(committed)


def test_allocation_by_usage_with_all_weights_zero_stays_unallocated():
    usage(None, "1")
    usage(TeamFactory(), "0")
    shared = rule("by_usage")
    run = allocation_run_create(period=SEPT)
    assert run.unallocated_cost == D(1)
    assert run.warnings[0]["rule_id"] == shared.pk and "zero" in run.warnings[0]["message"]


# --- dry runs, commits, supersession --------------------------------------------------------------

def test_allocation_dry_run_returns_the_preview_and_writes_nothing():
    a = TeamFactory()
    usage(a, "1")
    usage(None, "1")
    rule("equal_split", targets=[a])
    run = allocation_run_create(period=SEPT, dry_run=True)
    assert run.pk is None and run.dry_run
    assert sum(r.amount for r in run.preview) == D(2)
    assert all(r.pk is None for r in allocation_rows(run))
    assert not AllocationRun.objects.exists() and not AllocatedCost.objects.exists()
    with pytest.raises(AllocationError, match="dry run"):
        allocation_run_commit(run=run)


def test_allocation_commit_makes_the_run_the_periods_allocation():
    usage(TeamFactory(), "1")
    draft = allocation_run_create(period=SEPT)
    committed = allocation_run_commit(run=draft)
    assert committed.status == AllocationRun.Status.COMMITTED and committed.committed_at is not None
    assert allocation_committed_run(period=SEPT) == committed


def test_allocation_committing_a_period_again_supersedes_and_never_doubles_costs():
    # given a committed September
    a = TeamFactory()
    usage(a, "1")
    usage(None, "2")
    rule("equal_split", targets=[a])
    first = allocation_run_execute(period=SEPT)
    # when September is allocated and committed again
    second = allocation_run_execute(period=SEPT)
    # then only the second counts
    first.refresh_from_db()
    assert first.status == AllocationRun.Status.SUPERSEDED
    assert second.status == AllocationRun.Status.COMMITTED
    committed_total = sum(
        r.amount for r in AllocatedCost.objects.filter(run__status=AllocationRun.Status.COMMITTED)
    )
    assert committed_total == D(3) == second.total_cost


def test_allocation_commit_of_a_committed_or_superseded_run_is_refused():
    usage(TeamFactory(), "1")
    first = allocation_run_execute(period=SEPT)
    with pytest.raises(AllocationError, match="is committed; it cannot become committed"):
        allocation_run_commit(run=first)
    allocation_run_execute(period=SEPT)
    with pytest.raises(AllocationError, match="is superseded"):
        allocation_run_commit(run=first)


def test_allocation_stale_draft_is_refused_and_the_committed_run_kept():
    # given a committed run and a draft, then new usage arrives
    team = TeamFactory()
    usage(team, "1")
    committed = allocation_run_execute(period=SEPT)
    draft = allocation_run_create(period=SEPT)
    usage(team, "0.5")
    # when / then
    with pytest.raises(StaleAllocationRun, match="changed after allocation run .* run the allocation again"):
        allocation_run_commit(run=draft)
    committed.refresh_from_db()
    draft.refresh_from_db()
    assert committed.status == AllocationRun.Status.COMMITTED and draft.status == AllocationRun.Status.DRAFT


def test_allocation_commit_refuses_to_overlap_a_committed_run_of_another_period():
    usage(TeamFactory(), "1")
    allocation_run_execute(period=BillingPeriod(dt.date(2024, 8, 1), dt.date(2024, 10, 1)))
    with pytest.raises(AllocationError, match="overlaps 2024-09"):
        allocation_run_execute(period=SEPT)


def _commit_in_thread(run, errors, barrier):
    try:
        barrier.wait(timeout=10)
        allocation_run_commit(run=run)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_allocation_concurrent_commits_of_one_period_leave_one_committed_run():
    # given two drafts of September
    a = TeamFactory()
    usage(a, "1")
    usage(None, "2")
    rule("equal_split", targets=[a])
    drafts = [allocation_run_create(period=SEPT) for _ in range(2)]
    # when two workers commit them at the same moment
    errors, barrier = [], threading.Barrier(2)
    threads = [threading.Thread(target=_commit_in_thread, args=(d, errors, barrier)) for d in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # then both commits succeed one after the other: one committed run, the other superseded
    assert errors == []
    statuses = sorted(AllocationRun.objects.values_list("status", flat=True))
    assert statuses == ["committed", "superseded"]
    committed = AllocatedCost.objects.filter(run__status=AllocationRun.Status.COMMITTED)
    assert sum(r.amount for r in committed) == D(3)


def _execute_in_thread(errors, barrier):
    try:
        barrier.wait(timeout=10)
        allocation_run_execute(period=SEPT)
    except Exception as exc:  # noqa: BLE001
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_allocation_concurrent_billing_runs_of_one_period_never_double_costs():
    a = TeamFactory()
    usage(a, "1")
    usage(None, "2")
    rule("equal_split", targets=[a])
    errors, barrier = [], threading.Barrier(3)
    threads = [threading.Thread(target=_execute_in_thread, args=(errors, barrier)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert AllocationRun.objects.filter(status=AllocationRun.Status.COMMITTED).count() == 1
    committed = AllocatedCost.objects.filter(run__status=AllocationRun.Status.COMMITTED)
    assert sum(r.amount for r in committed) == D(3)
