"""Allocation strategies: how one rule splits one cost pool. Pure functions, no ORM.

The engine (``chargeback.services.allocation.allocation_run_create``) groups the period's usage in the
database, builds one :class:`Pool` per (rule, currency) and calls ``STRATEGIES[rule.rule_type]``.
Each strategy returns an :class:`Allocation`: the parts (one per receiving team or user) and what
stays unallocated, with the reason. Keeping the strategies free of the ORM makes them
property-testable (``tests/chargeback/test_rules.py``).

Conventions:

* Amounts are ``Decimal`` at metered precision (12 decimal places, ``money.METERED_QUANTUM``), in
  the pool's currency; a pool may be negative (credits). Every split goes through
  :func:`billing_site.money.split`, the largest-remainder method, so the parts sum exactly to the
  pool and each is within one ``METERED_QUANTUM`` of its exact share.
* Targets are sorted by (team id, user id) before splitting, so ties in the largest-remainder step
  always go to the same receiver whatever order the targets came in.
* A pool that cannot be split (no targets, no members, all weights zero) is returned whole as
  ``unallocated`` with a reason; it never disappears.

Rule types follow AWS split-charge rules (PROPORTIONAL, EVEN, FIXED) and OpenCost's shared-cost
distribution (ShareWeighted, ShareEven); see ``AllocationRule``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal

from billing_site.money import METERED_QUANTUM, ROUNDING, quantize_metered, split

BY_USAGE = "by_usage"
EQUAL_SPLIT = "equal_split"
FIXED_SPLIT = "fixed_split"
BY_TEAM = "by_team"
BY_USER = "by_user"

#: Fixed-split percentages must sum to exactly this.
FULL_PERCENTAGE = Decimal(100)

#: Shares are shown to people in ``details["share"]``: a ratio, not money, so it is written with 12
#: significant digits (half-up, the product's one rounding mode). Money itself is never rounded here.
_SHARE_CONTEXT = Context(prec=12, rounding=ROUNDING)

ZERO = Decimal(0)


@dataclass(frozen=True)
class Target:
    """A receiver named by a rule: a team, or one user billed through ``team_id``.

    ``percentage`` is used by fixed splits only (a Decimal in percent, 0 < p ≤ 100).
    """

    team_id: int
    user_id: int | None = None
    percentage: Decimal | None = None

    @property
    def sort_key(self) -> tuple[int, int]:
        return (self.team_id, self.user_id or 0)


@dataclass(frozen=True)
class Holder:
    """Cost of a pool held by one (team, user) pair of its source records (``by_user`` without targets).

    ``team_id`` or ``user_id`` may be ``None``: a record without a team or without a user.
    """

    team_id: int | None
    user_id: int | None
    amount: Decimal
    record_count: int


@dataclass(frozen=True)
class Pool:
    """One rule's pool in one currency, and the data its strategy needs.

    Attributes:
        rule_type: one of ``STRATEGIES``' keys.
        amount: Σ cost of the records the rule took, a multiple of ``METERED_QUANTUM``.
        currency: ISO 4217 code of ``amount``.
        record_count: number of usage records behind ``amount``.
        targets: the rule's targets (any order).
        team_usage: ``by_usage`` driver: each team's own usage cost in the period and currency.
        user_usage: ``by_usage`` driver for user targets: keyed by (team id, user id).
        members: ``by_team``: user ids of the source team's members.
        source_team_id: ``by_team``: the team whose members share the pool.
        holders: ``by_user`` without targets: the pool's cost by (team, user) of its records.
        user_teams: ``by_user`` without targets: the team that bills a user whose records carry no
            team (the engine passes each user's membership with the lowest team id).
    """

    rule_type: str
    amount: Decimal
    currency: str
    record_count: int
    targets: Sequence[Target] = ()
    team_usage: Mapping[int, Decimal] = field(default_factory=dict)
    user_usage: Mapping[tuple[int, int], Decimal] = field(default_factory=dict)
    members: Sequence[int] = ()
    source_team_id: int | None = None
    holders: Sequence[Holder] = ()
    user_teams: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """What one team (or one user within a team) receives from a pool.

    ``share`` is the exact fraction of the pool the receiver's driver gives it (weight / Σ weights),
    ``details`` the JSON-ready driver record stored on ``AllocatedCost.details``.
    """

    team_id: int
    user_id: int | None
    amount: Decimal
    share: Decimal
    record_count: int
    details: dict


@dataclass(frozen=True)
class Allocation:
    """A strategy's result: ``Σ parts + unallocated == pool.amount`` exactly.

    ``reasons`` explains every non-zero (or unsplittable) ``unallocated``; the engine turns them
    into run warnings naming the rule.
    """

    parts: tuple[Part, ...]
    unallocated: Decimal = ZERO
    unallocated_records: int = 0
    reasons: tuple[str, ...] = ()


def share_text(share: Decimal) -> str:
    """Write a share (a fraction between 0 and 1) for people: ``Decimal(3)/8`` → ``"0.375"``."""
    text = format(_SHARE_CONTEXT.plus(share).normalize(), "f")
    return text


def _fraction(part: Decimal, whole: Decimal) -> Decimal:
    return _SHARE_CONTEXT.divide(part, whole) if whole else ZERO


def _metered_text(amount: Decimal) -> str:
    """A metered amount written with its 12 decimal places, whatever database it was summed in."""
    return str(quantize_metered(amount))


def _details(pool: Pool, share: Decimal, *, driver_amount: Decimal | None = None,
             percentage: Decimal | None = None) -> dict:
    details = {
        "rule_type": pool.rule_type,
        "share": share_text(share),
        "pool_amount": _metered_text(pool.amount),
        "source_records": pool.record_count,
    }
    if driver_amount is not None:
        details["driver_amount"] = _metered_text(driver_amount)
    if percentage is not None:
        details["percentage"] = str(percentage)
    return details


def _unsplittable(pool: Pool, reason: str) -> Allocation:
    return Allocation(parts=(), unallocated=pool.amount, unallocated_records=pool.record_count, reasons=(reason,))


def _split_by_weights(pool: Pool, receivers: Sequence[Target], weights: Sequence[Decimal], **extra_for) -> Allocation:
    """Split the pool across ``receivers`` (already sorted) by ``weights`` (non-negative, Σ > 0)."""
    total_weight = sum(weights, ZERO)
    amounts = split(pool.amount, weights, METERED_QUANTUM)
    parts = []
    for i, (receiver, weight, amount) in enumerate(zip(receivers, weights, amounts)):
        extra = {key: values[i] for key, values in extra_for.items()}
        share = _fraction(weight, total_weight)
        parts.append(
            Part(
                team_id=receiver.team_id, user_id=receiver.user_id, amount=amount, share=share,
                record_count=pool.record_count, details=_details(pool, share, **extra),
            )
        )
    return Allocation(parts=tuple(parts))


def _sorted(targets: Sequence[Target]) -> list[Target]:
    return sorted(targets, key=lambda t: t.sort_key)


def by_usage(pool: Pool) -> Allocation:
    """Proportional to each target's own usage cost in the period (AWS PROPORTIONAL, OpenCost ShareWeighted).

    A team target weighs its team's usage cost, a user target that user's usage within the team;
    negative usage (a team whose credits exceed its costs) weighs zero. Without targets, every team
    with usage in the period (``pool.team_usage``) is a target. All weights zero: unallocated.
    """
    receivers = _sorted(pool.targets) or [Target(team_id=team_id) for team_id in sorted(pool.team_usage)]
    if not receivers:
        return _unsplittable(pool, "no team has usage in the period to weigh the split by")
    drivers = []
    for target in receivers:
        if target.user_id is None:
            usage = pool.team_usage.get(target.team_id, ZERO)
        else:
            usage = pool.user_usage.get((target.team_id, target.user_id), ZERO)
        drivers.append(max(usage, ZERO))
    if not any(drivers):
        return _unsplittable(pool, "every target's own usage cost in the period is zero (or negative)")
    return _split_by_weights(pool, receivers, drivers, driver_amount=drivers)


def equal_split(pool: Pool) -> Allocation:
    """Evenly across the targets (AWS EVEN, OpenCost ShareEven); no targets: unallocated."""
    receivers = _sorted(pool.targets)
    if not receivers:
        return _unsplittable(pool, "the rule has no targets")
    return _split_by_weights(pool, receivers, [Decimal(1)] * len(receivers))


def fixed_split(pool: Pool) -> Allocation:
    """By the targets' percentages, which sum to exactly 100 (AWS FIXED).

    Raises:
        ValueError: a target without a percentage, or percentages not summing to 100 (the engine
            checks this first, with :func:`rule_problems`, and names the rule).
    """
    problems = _fixed_split_problems(pool.targets)
    if problems:
        raise ValueError("; ".join(problems))
    receivers = _sorted(pool.targets)
    percentages = [t.percentage for t in receivers]
    return _split_by_weights(pool, receivers, percentages, percentage=percentages)


def by_team(pool: Pool) -> Allocation:
    """The source team's cost split equally among its members (ordered by user id); ``user`` set on each part."""
    if pool.source_team_id is None:
        raise ValueError("a by_team rule needs a source team")
    members = sorted(set(pool.members))
    if not members:
        return _unsplittable(pool, "the source team has no members to split its cost among")
    receivers = [Target(team_id=pool.source_team_id, user_id=user_id) for user_id in members]
    return _split_by_weights(pool, receivers, [Decimal(1)] * len(receivers))


def by_user(pool: Pool) -> Allocation:
    """Attribute the pool to users.

    With targets: equally to the listed users (each billed through its target's team). Without
    targets: each record's cost to its own user, billed through the record's team (or, for a record
    without a team, through ``pool.user_teams``). Records without a user stay with their team (a
    part with ``user_id`` None); records with neither a user nor a team, or whose user belongs to no
    team, stay unallocated.
    """
    if pool.targets:
        receivers = _sorted(pool.targets)
        if any(t.user_id is None for t in receivers):
            raise ValueError("every target of a by_user rule must name a user")
        return _split_by_weights(pool, receivers, [Decimal(1)] * len(receivers))

    # No split needed: each holder's amount is already a sum of metered costs.
    received: dict[tuple[int, int | None], list] = {}
    unallocated, unallocated_records = ZERO, 0
    no_owner = no_team = 0
    for holder in sorted(pool.holders, key=lambda h: (h.team_id or 0, h.user_id or 0)):
        team_id = holder.team_id
        if team_id is None and holder.user_id is not None:
            team_id = pool.user_teams.get(holder.user_id)
            no_team += team_id is None
        elif team_id is None:
            no_owner += 1
        if team_id is None:
            unallocated += holder.amount
            unallocated_records += holder.record_count
            continue
        entry = received.setdefault((team_id, holder.user_id), [ZERO, 0])
        entry[0] += holder.amount
        entry[1] += holder.record_count

    parts = []
    for (team_id, user_id), (amount, count) in sorted(received.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        share = _fraction(amount, pool.amount)
        parts.append(
            Part(team_id=team_id, user_id=user_id, amount=amount, share=share, record_count=count,
                 details=_details(pool, share, driver_amount=amount))
        )
    reasons = []
    if no_owner:
        reasons.append("records with neither a user nor a team stay unallocated")
    if no_team:
        reasons.append("records of users who belong to no team stay unallocated")
    if not parts and not reasons:
        reasons.append("the pool has no records with a user or a team")
    return Allocation(parts=tuple(parts), unallocated=unallocated, unallocated_records=unallocated_records,
                      reasons=tuple(reasons))


#: The strategy of each ``AllocationRule.rule_type``.
STRATEGIES: dict[str, Callable[[Pool], Allocation]] = {
    BY_USAGE: by_usage,
    EQUAL_SPLIT: equal_split,
    FIXED_SPLIT: fixed_split,
    BY_TEAM: by_team,
    BY_USER: by_user,
}


def _fixed_split_problems(targets: Sequence[Target]) -> list[str]:
    if not targets:
        return ["a fixed split needs targets whose percentages sum to exactly 100"]
    if any(t.percentage is None for t in targets):
        return ["every target of a fixed split needs a percentage"]
    total = sum((t.percentage for t in targets), ZERO)
    if total != FULL_PERCENTAGE:
        return [f"the targets' percentages sum to {total.normalize():f}, not exactly 100"]
    return []


def rule_problems(
    *, rule_type: str, source: str, source_team_id: int | None, targets: Sequence[Target],
    match_tag_key: str = "", match_tag_value: str = "",
) -> list[str]:
    """Why a rule cannot be applied, as sentences (empty when it can).

    Args:
        rule_type: ``AllocationRule.rule_type``.
        source: ``"unallocated"`` or ``"team"``.
        source_team_id: the team whose costs a ``team``-source rule takes.
        targets: the rule's targets.
        match_tag_key, match_tag_value: the rule's tag filter.

    Checks: a known rule type; fixed splits sum to exactly 100 (AWS FIXED); ``by_team`` takes one
    team's costs; ``by_user`` targets name users; a ``team`` source names its team; a tag value
    comes with its tag key (else the filter would silently match every record).
    """
    problems = []
    if rule_type not in STRATEGIES:
        problems.append(f"unknown rule type {rule_type!r}")
    if source == "team" and source_team_id is None:
        problems.append("the source is one team's costs but no source team is set")
    if rule_type == FIXED_SPLIT:
        problems.extend(_fixed_split_problems(targets))
    if rule_type == BY_TEAM and (source != "team" or source_team_id is None):
        problems.append("a by_team rule splits one team's costs among its members: set source 'team' and a source team")
    if rule_type == BY_USER and any(t.user_id is None for t in targets):
        problems.append("every target of a by_user rule must name a user (and the team that bills them)")
    if match_tag_value and not match_tag_key:
        problems.append(f"the tag value {match_tag_value!r} needs the tag key it belongs to")
    return problems
