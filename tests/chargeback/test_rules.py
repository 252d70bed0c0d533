"""Allocation strategies (pure): every pool is split exactly, fairly and the same way every time."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_site.money import METERED_QUANTUM
from chargeback.rules import (
    STRATEGIES,
    Holder,
    Pool,
    Target,
    by_team,
    by_usage,
    by_user,
    equal_split,
    fixed_split,
    rule_problems,
    share_text,
)

Q = METERED_QUANTUM
amounts = st.integers(min_value=-10**16, max_value=10**16).map(lambda n: n * Q)
team_ids = st.integers(min_value=1, max_value=500)
usage_costs = st.decimals(min_value=-1000, max_value=10**6, places=12, allow_nan=False, allow_infinity=False)
team_targets = st.lists(team_ids, min_size=1, max_size=30, unique=True).map(
    lambda ids: [Target(team_id=i) for i in ids]
)
user_targets = st.lists(
    st.tuples(team_ids, st.integers(min_value=1, max_value=5000)), min_size=1, max_size=30, unique=True
).map(lambda pairs: [Target(team_id=t, user_id=u) for t, u in pairs])


def _pool(rule_type: str, amount: Decimal, **kwargs) -> Pool:
    return Pool(rule_type=rule_type, amount=amount, currency="USD", record_count=7, **kwargs)


def _exact(amount: Decimal, weight: Decimal, total_weight: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        return amount * weight / total_weight


def _assert_fair(result, amount: Decimal, weights: list[Decimal]) -> None:
    """Parts sum exactly to the pool, each within one quantum of its exact share, on the quantum."""
    assert sum((p.amount for p in result.parts), Decimal(0)) == amount
    assert result.unallocated == 0
    total_weight = sum(weights, Decimal(0))
    for part, weight in zip(result.parts, weights):
        assert abs(part.amount - _exact(amount, weight, total_weight)) < Q
        assert part.amount == part.amount.quantize(Q)


def _percentages(count: int, cuts: list[int]) -> list[Decimal]:
    """``count`` positive percentages with 4 decimal places summing to exactly 100."""
    points = [0, *sorted(cuts), 1_000_000]
    return [Decimal(b - a).scaleb(-4) for a, b in zip(points, points[1:])]


# --- by_usage -----------------------------------------------------------------------------------

@given(amount=amounts, targets=team_targets, data=st.data())
def test_by_usage_parts_sum_exactly_and_follow_each_teams_own_usage(amount, targets, data):
    usage = {t.team_id: data.draw(usage_costs) for t in targets}
    result = by_usage(_pool("by_usage", amount, targets=targets, team_usage=usage))
    ordered = sorted(targets, key=lambda t: t.team_id)
    weights = [max(usage[t.team_id], Decimal(0)) for t in ordered]
    if not any(weights):
        assert result.parts == () and result.unallocated == amount and result.reasons
        return
    assert [p.team_id for p in result.parts] == [t.team_id for t in ordered]
    _assert_fair(result, amount, weights)


@given(amount=amounts, targets=team_targets, data=st.data())
def test_by_usage_is_deterministic_whatever_the_target_order(amount, targets, data):
    usage = {t.team_id: data.draw(st.integers(min_value=0, max_value=9)) * Decimal("0.5") for t in targets}
    shuffled = data.draw(st.permutations(targets))
    first = by_usage(_pool("by_usage", amount, targets=targets, team_usage=usage))
    second = by_usage(_pool("by_usage", amount, targets=shuffled, team_usage=usage))
    assert first == second


def test_by_usage_without_targets_weighs_every_team_with_usage():
    # given teams with usage 3 and 1, and one whose credits exceed its costs
    pool = _pool("by_usage", Decimal("1.00"), team_usage={7: Decimal("3"), 9: Decimal("1"), 11: Decimal("-5")})
    # when
    result = by_usage(pool)
    # then
    assert [(p.team_id, p.amount) for p in result.parts] == [(7, Decimal("0.75")), (9, Decimal("0.25")), (11, 0)]
    assert result.parts[0].details == {
        "rule_type": "by_usage", "share": "0.75", "pool_amount": "1.000000000000", "driver_amount": "3.000000000000",
        "source_records": 7,
    }


def test_by_usage_user_target_weighs_that_users_usage():
    pool = _pool(
        "by_usage", Decimal("0.9"), targets=[Target(1, 10), Target(1, 11)],
        user_usage={(1, 10): Decimal("2"), (1, 11): Decimal("1")},
    )
    assert [(p.user_id, p.amount) for p in by_usage(pool).parts] == [(10, Decimal("0.6")), (11, Decimal("0.3"))]


# --- equal_split --------------------------------------------------------------------------------

@given(amount=amounts, targets=team_targets | user_targets, data=st.data())
def test_equal_split_parts_sum_exactly_and_are_deterministic(amount, targets, data):
    result = equal_split(_pool("equal_split", amount, targets=targets))
    _assert_fair(result, amount, [Decimal(1)] * len(targets))
    shuffled = data.draw(st.permutations(targets))
    assert equal_split(_pool("equal_split", amount, targets=shuffled)) == result


def test_equal_split_gives_the_extra_quantum_to_the_lowest_team_id():
    result = equal_split(_pool("equal_split", Decimal("1.000000000000"), targets=[Target(3), Target(1), Target(2)]))
    assert [(p.team_id, p.amount) for p in result.parts] == [
        (1, Decimal("0.333333333334")), (2, Decimal("0.333333333333")), (3, Decimal("0.333333333333")),
    ]
    assert result.parts[0].details["share"] == "0.333333333333"


def test_equal_split_without_targets_stays_unallocated_with_a_reason():
    result = equal_split(_pool("equal_split", Decimal("5")))
    assert result.parts == () and result.unallocated == Decimal("5") and result.unallocated_records == 7
    assert "no targets" in result.reasons[0]


# --- fixed_split --------------------------------------------------------------------------------

@given(
    amount=amounts,
    cuts=st.lists(st.integers(min_value=1, max_value=999_999), min_size=0, max_size=20, unique=True),
    data=st.data(),
)
def test_fixed_split_parts_sum_exactly_and_follow_the_percentages(amount, cuts, data):
    percentages = _percentages(len(cuts) + 1, cuts)
    ids = data.draw(st.lists(team_ids, min_size=len(percentages), max_size=len(percentages), unique=True))
    targets = [Target(team_id=i, percentage=p) for i, p in zip(ids, percentages)]
    result = fixed_split(_pool("fixed_split", amount, targets=targets))
    ordered = sorted(targets, key=lambda t: t.team_id)
    assert [p.team_id for p in result.parts] == [t.team_id for t in ordered]
    _assert_fair(result, amount, [t.percentage for t in ordered])
    assert fixed_split(_pool("fixed_split", amount, targets=data.draw(st.permutations(targets)))) == result


def test_fixed_split_records_share_and_percentage():
    targets = [Target(1, percentage=Decimal("62.5")), Target(2, percentage=Decimal("37.5"))]
    result = fixed_split(_pool("fixed_split", Decimal("8"), targets=targets))
    assert [p.amount for p in result.parts] == [Decimal("5"), Decimal("3")]
    assert result.parts[1].details["share"] == "0.375"
    assert result.parts[1].details["percentage"] == "37.5"


def test_fixed_split_not_summing_to_100_is_refused():
    targets = [Target(1, percentage=Decimal("60")), Target(2, percentage=Decimal("30"))]
    with pytest.raises(ValueError, match="sum to 90, not exactly 100"):
        fixed_split(_pool("fixed_split", Decimal("1"), targets=targets))


# --- by_team ------------------------------------------------------------------------------------

@given(amount=amounts, members=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=40, unique=True),
       data=st.data())
def test_by_team_splits_equally_among_members_in_user_order(amount, members, data):
    result = by_team(_pool("by_team", amount, members=members, source_team_id=4))
    assert [p.user_id for p in result.parts] == sorted(members)
    assert {p.team_id for p in result.parts} == {4}
    _assert_fair(result, amount, [Decimal(1)] * len(members))
    assert by_team(_pool("by_team", amount, members=data.draw(st.permutations(members)), source_team_id=4)) == result


def test_by_team_without_members_stays_unallocated():
    result = by_team(_pool("by_team", Decimal("2"), source_team_id=4))
    assert result.unallocated == Decimal("2") and "no members" in result.reasons[0]


# --- by_user ------------------------------------------------------------------------------------

@given(amount=amounts, targets=user_targets, data=st.data())
def test_by_user_with_targets_splits_equally_among_listed_users(amount, targets, data):
    result = by_user(_pool("by_user", amount, targets=targets))
    _assert_fair(result, amount, [Decimal(1)] * len(targets))
    assert [(p.team_id, p.user_id) for p in result.parts] == sorted((t.team_id, t.user_id) for t in targets)
    assert by_user(_pool("by_user", amount, targets=data.draw(st.permutations(targets)))) == result


holders = st.lists(
    st.tuples(
        st.none() | st.integers(min_value=1, max_value=20),
        st.none() | st.integers(min_value=1, max_value=50),
        st.integers(min_value=-10**15, max_value=10**15).map(lambda n: n * Q),
        st.integers(min_value=1, max_value=100),
    ),
    min_size=1, max_size=30, unique_by=lambda h: (h[0], h[1]),
)


@given(rows=holders, user_teams=st.dictionaries(st.integers(min_value=1, max_value=50), st.integers(1, 20)),
       data=st.data())
def test_by_user_without_targets_gives_each_record_to_its_user_and_loses_nothing(rows, user_teams, data):
    pool_holders = [Holder(team_id=t, user_id=u, amount=a, record_count=n) for t, u, a, n in rows]
    amount = sum((h.amount for h in pool_holders), Decimal(0))
    pool = _pool("by_user", amount, holders=pool_holders, user_teams=user_teams)
    result = by_user(pool)
    # then every quantum is either with a (team, user) or unallocated, with a reason
    assert sum((p.amount for p in result.parts), Decimal(0)) + result.unallocated == amount
    expected_unallocated = sum(
        (h.amount for h in pool_holders if h.team_id is None and user_teams.get(h.user_id) is None), Decimal(0)
    )
    assert result.unallocated == expected_unallocated
    for h in pool_holders:
        if h.team_id is not None:
            assert any(p.team_id == h.team_id and p.user_id == h.user_id for p in result.parts)
    shuffled = [Holder(*r[:2], r[2], r[3]) for r in data.draw(st.permutations(rows))]
    assert by_user(_pool("by_user", amount, holders=shuffled, user_teams=user_teams)) == result


def test_by_user_without_targets_bills_a_teamless_users_record_through_the_users_team():
    pool = _pool("by_user", Decimal("3"), holders=[
        Holder(None, 5, Decimal("1"), 1), Holder(2, 5, Decimal("1.5"), 2), Holder(None, None, Decimal("0.5"), 1),
    ], user_teams={5: 2})
    result = by_user(pool)
    assert [(p.team_id, p.user_id, p.amount, p.record_count) for p in result.parts] == [(2, 5, Decimal("2.5"), 3)]
    assert result.unallocated == Decimal("0.5") and "neither a user nor a team" in result.reasons[0]


# --- rule checks and the registry -----------------------------------------------------------------

def test_strategies_cover_every_rule_type():
    from chargeback.models import AllocationRule

    assert set(STRATEGIES) == set(AllocationRule.RuleType.values)


@pytest.mark.parametrize(
    ("rule_type", "source", "source_team_id", "targets", "expected"),
    [
        ("fixed_split", "unallocated", None, [Target(1, percentage=Decimal("99.9999"))], "not exactly 100"),
        ("fixed_split", "unallocated", None, [Target(1)], "needs a percentage"),
        ("fixed_split", "unallocated", None, [], "needs targets"),
        ("by_team", "unallocated", None, [], "by_team rule splits one team's costs"),
        ("by_user", "unallocated", None, [Target(1)], "must name a user"),
        ("nonsense", "unallocated", None, [], "unknown rule type"),
    ],
)
def test_rule_problems_explain_why_a_rule_cannot_apply(rule_type, source, source_team_id, targets, expected):
    problems = rule_problems(rule_type=rule_type, source=source, source_team_id=source_team_id, targets=targets)
    assert any(expected in p for p in problems)


def test_rule_problems_accepts_a_valid_fixed_split():
    targets = [Target(1, percentage=Decimal("33.3333")), Target(2, percentage=Decimal("66.6667"))]
    assert rule_problems(rule_type="fixed_split", source="unallocated", source_team_id=None, targets=targets) == []


def test_share_text_writes_a_plain_decimal_fraction():
    assert share_text(Decimal(3) / Decimal(8)) == "0.375"
    assert share_text(Decimal(1)) == "1"
    assert share_text(Decimal("1E-7")) == "0.0000001"
