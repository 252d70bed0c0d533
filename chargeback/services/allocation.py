"""Allocating a billing period's costs: allocation runs computed (``allocation_run_create``), committed
(``allocation_run_commit``) or both at once (``allocation_run_execute``).

Money is ``Decimal`` at metered precision (12 decimal places, ``DecimalField(30, 12)``) with an
ISO 4217 currency beside it; only ``billing_site.money`` rounds. Billing periods are
``chargeback.periods.BillingPeriod`` half-open month ranges ``[start, end)``; a usage record belongs
to the period of its ``billing_period_start``.

The allocation engine (``docs/architecture.md``, "Allocation"):

1. Rules enabled and valid in the period (validity ``[valid_from, valid_to)`` overlaps it), in
   ``(priority, pk)`` order. Each usage record is taken by the first rule whose source and filters
   match it; the assignment is one SQL ``CASE WHEN`` annotation and the records are summed in one
   ``GROUP BY (team, user, service, item, assigned rule, currency)`` (service and item empty for
   records without a team, which are never direct costs) into a temporary table
   (``GROUPS_TABLE``). Python reads only small sums of it, never the usage records nor the
   direct-cost groups.
2. Groups no rule took keep their team: direct costs, one ``AllocatedCost`` per (team, user,
   service) with ``rule`` empty, inserted from the groups' table in the database. A service is the FOCUS ServiceName, or for API / AI usage (no
   ServiceName) the priced item (resource type, provider, model, unit) with its summed quantity.
   Groups without a team that no rule took stay unallocated.
3. Each rule's pool (per currency) is split by its strategy (``chargeback.rules.STRATEGIES``) with
   ``money.split`` at ``METERED_QUANTUM``. A pool that cannot be split stays unallocated and the run
   gets a warning naming the rule.
4. Tie-out: ``allocated + unallocated == total`` exactly, checked here, again at commit, and by the
   ``run_ties_out`` CHECK.

Void usage records are never read (``selectors.usage_records_of_period``). A run keeps **one pool
per currency**: the groups carry their currency, each rule's pool is split per currency, and each
currency ties out on its own (``AllocationCurrencyTotal``). Nothing is ever summed across
currencies, so a month with usage in USD, EUR and JPY is allocated in one run, and one team's usage
in another currency never stops another team's billing. Converting a team's costs into one
currency is the invoices' business (``invoices.services.generation``), never the allocation's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, CharField, Count, F, Q, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, NullIf
from django.db.models.lookups import Exact
from django.utils import timezone

from billing_site.db import MeteredSum
from billing_site.money import METERED_BOUND, MONEY_CONTEXT, check_within_bound, format_metered
from chargeback import rules as strategies
from chargeback.errors import (
    AllocationError,
    NothingToAllocate,
    RuleConfigurationError,
    StaleAllocationRun,
)
from chargeback.models import AllocatedCost, AllocationCurrencyTotal, AllocationRule, AllocationRun
from chargeback.periods import BillingPeriod
from chargeback.selectors import (
    allocation_committed_run,
    usage_period_stats,
    usage_principal_currency,
    usage_records_of_period,
    usage_voided_since,
)
from teams.models import Team, TeamMembership

ZERO = Decimal(0)


#: ``pg_advisory_xact_lock`` key that serialises commits of allocation runs (any period).
_COMMIT_LOCK_KEY = 0x63_62_61_6C_6C_6F_63  # "cballoc"


def allocation_run_check_transition(*, run: AllocationRun, to_status: str) -> None:
    """Refuse a status move that ``AllocationRun.TRANSITIONS`` does not allow: the one place it is checked.

    Args:
        run: the run as read under its row lock.
        to_status: the requested ``AllocationRun.Status`` value.

    Raises:
        AllocationError: the move is not allowed, e.g. "allocation run #7 is superseded; it cannot
            become committed".
    """
    if to_status not in AllocationRun.TRANSITIONS.get(run.status, ()):
        raise AllocationError(f"allocation run #{run.pk} is {run.status}; it cannot become {to_status}")


def _period_rules(period: BillingPeriod, rule: AllocationRule | None) -> list[AllocationRule]:
    """Enabled rules whose validity overlaps the period, in (priority, pk) order (or just ``rule``)."""
    valid = AllocationRule.objects.filter(enabled=True).filter(
        Q(valid_from__isnull=True) | Q(valid_from__lt=period.end),
        Q(valid_to__isnull=True) | Q(valid_to__gt=period.start),
    )
    if rule is not None:
        valid = valid.filter(pk=rule.pk)
    found = list(valid.order_by("priority", "pk").prefetch_related("targets"))
    if rule is not None and not found:
        raise AllocationError(f"allocation rule {rule.name!r} (#{rule.pk}) is disabled or not valid in {period}")
    return found


def _targets(rule: AllocationRule) -> list[strategies.Target]:
    return [strategies.Target(team_id=t.team_id, user_id=t.user_id, percentage=t.percentage) for t in rule.targets.all()]


def _check_rules(rules: list[AllocationRule]) -> None:
    messages = []
    for rule in rules:
        problems = strategies.rule_problems(
            rule_type=rule.rule_type, source=rule.source, source_team_id=rule.source_team_id, targets=_targets(rule),
            match_tag_key=rule.match_tag_key, match_tag_value=rule.match_tag_value,
        )
        if problems:
            messages.append(f"allocation rule {rule.name!r} (#{rule.pk}): {'; '.join(problems)}")
    if messages:
        raise RuleConfigurationError("cannot allocate: " + " | ".join(messages))


def _rule_matches(rule: AllocationRule) -> Q:
    """The rule's source and filters as a condition on ``UsageRecord``."""
    if rule.source == AllocationRule.Source.TEAM:
        condition = Q(team_id=rule.source_team_id)
    else:
        condition = Q(team__isnull=True)
    if rule.match_resource_type:
        condition &= Q(resource_type=rule.match_resource_type)
    if rule.match_provider:
        condition &= Q(provider=rule.match_provider)
    if rule.match_service_name:
        condition &= Q(service_name=rule.match_service_name)
    if rule.match_tag_key:
        if rule.match_tag_value:
            # KeyTextTransform takes the key as one path element, so keys with "__" or dots work:
            # it is ``tags ->> 'key'``.
            condition &= Q(Exact(KeyTextTransform(rule.match_tag_key, "tags"), rule.match_tag_value))
        else:
            condition &= Q(tags__has_key=rule.match_tag_key)
    return condition


@dataclass
class _PoolSums:
    amount: Decimal = ZERO
    records: int = 0
    holders: dict = field(default_factory=lambda: defaultdict(lambda: [ZERO, 0]))


class _Row(NamedTuple):
    """One ``AllocatedCost`` to be written (a tuple: a month has tens of thousands of them)."""

    rule: AllocationRule | None
    team_id: int
    user_id: int | None
    service: str
    amount: Decimal
    currency: str
    record_count: int
    details: dict
    quantity: Decimal | None = None
    unit: str = ""

    def model(self, run: AllocationRun) -> AllocatedCost:
        return AllocatedCost(
            run=run, rule=self.rule, team_id=self.team_id, user_id=self.user_id, service=self.service,
            quantity=self.quantity, unit=self.unit, amount=self.amount, currency=self.currency,
            record_count=self.record_count, details=self.details,
        )


#: How invoices name the resource types of API / AI usage; others are title-cased.
RESOURCE_TYPE_LABELS = {
    "llm": "LLM",
    "stt": "Speech-to-text",
    "tts": "Text-to-speech",
    "telephony": "Telephony",
    "gpu": "GPU",
}


def usage_item_label(*, resource_type: str, provider: str = "", model: str = "") -> str:
    """The readable name of a priced item on an invoice: ``LLM · openai gpt-4``, ``Telephony · twilio``.

    ``resource_type`` is the price category (``llm``, ``stt``…), named by ``RESOURCE_TYPE_LABELS``
    or title-cased; provider and model follow as recorded, and are left out when empty.
    """
    kind = RESOURCE_TYPE_LABELS.get(resource_type) or resource_type.replace("_", " ").title()
    item = " ".join(part for part in (provider, model) if part)
    return f"{kind} · {item}" if item else kind


@lru_cache(maxsize=4096)
def _service_label(resource_type: str, provider: str, model: str) -> str:
    """``usage_item_label`` cut to ``AllocatedCost.service``: a month has tens of thousands of direct
    rows but a few dozen priced items, so each label is made once (``bench/allocation_currencies.py``)."""
    label = usage_item_label(resource_type=resource_type, provider=provider, model=model)
    return label[:AllocatedCost._meta.get_field("service").max_length]


def _item_key(column: str) -> Case:
    """``column`` for API / AI usage, NULL for FOCUS rows, so a ServiceName stays one group (and
    NULL without a team: see ``_compute``)."""
    return Case(When(team__isnull=False, service_name="", then=F(column)), default=Value(None),
                output_field=CharField())


def _check_within_bounds(computed: "_Computed", period: BillingPeriod) -> None:
    """Refuse a run whose total, or any one row, would not fit its column (``money.METERED_BOUND``,
    10^18): ``AmountOutOfRange`` (422, ``param`` ``period``) before anything is written. Each usage
    cost fits on its own; only a sum of many can pass it. Checked per currency pool (every pool's
    total, allocated and unallocated cost) and per row, in the row's currency."""
    for code, pool in sorted(computed.totals.items()):
        what = f"the allocation of {period.label} ({code})"
        for figure in (pool.total_cost, pool.allocated_cost, pool.unallocated_cost):
            check_within_bound(figure, param="period", what=what)
    beyond = _direct_row_beyond_bound() if computed.direct_beyond_bound else None
    if beyond is not None:
        team_id, currency, amount = beyond
        check_within_bound(amount, param="period", what=f"the allocation of {period.label} ({currency}), team {team_id}")
    for row in computed.rows:
        check_within_bound(row.amount, param="period",
                           what=f"the allocation of {period.label} ({row.currency}), team {row.team_id}")


@dataclass
class _Computed:
    currency: str  # the principal currency (``usage_principal_currency``)
    totals: dict[str, AllocationCurrencyTotal]  # one unsaved pool per currency, by code
    records: int  # records of every currency
    rows: list[_Row]
    warnings: list[dict]
    groups: int
    items: list[tuple[str, str | None, str | None]]  # the direct costs' priced items (``_GroupSums.items``)
    direct_beyond_bound: bool


def _compute(period: BillingPeriod, rule: AllocationRule | None) -> _Computed:
    """Allocate the whole period in memory: unsaved rows, totals and warnings."""
    rules = _period_rules(period, rule)
    _check_rules(rules)
    rules_by_pk = {r.pk: r for r in rules}

    assigned = Case(
        *[When(_rule_matches(r), then=Value(r.pk)) for r in rules],
        default=Value(None), output_field=BigIntegerField(),
    ) if rules else Value(None, output_field=BigIntegerField())
    # One GROUP BY. FOCUS rows group by ServiceName (their item keys are NULL); API / AI usage (no
    # ServiceName) by its priced item, so its quantities share one unit and can be summed. The
    # quantity of a FOCUS group is the SUM of NULLs, i.e. NULL: a service's units differ.
    # Records without a team are never a direct cost (only a rule or the unallocated pool takes
    # them), and nothing reads their service: they group by (user, rule, currency) alone, so the
    # pool without a team is not split into one group per service and item, once per currency.
    grouped = (
        usage_records_of_period(period=period).order_by()
        .annotate(
            service_key=Case(When(team__isnull=True, then=Value(None)),
                             default=Coalesce(NullIf("service_name", Value("")), "resource_type"),
                             output_field=CharField()),
            provider_key=_item_key("provider"), model_key=_item_key("model"), unit_key=_item_key("unit"),
            assigned_rule=assigned,
        )
        .values("team_id", "user_id", "service_key", "provider_key", "model_key", "unit_key", "assigned_rule",
                "currency")
        .annotate(
            amount=MeteredSum("cost"), records=Count("id"),
            quantity=MeteredSum(Case(When(team__isnull=False, service_name="", then=F("quantity")),
                                     default=Value(None))),
        )
    )
    _give_grouping_memory()
    _group_into_table(grouped)
    group_sums = _group_sums()
    if not group_sums.groups:
        raise NothingToAllocate(f"no usage records are billed in {period}: nothing to allocate")
    # Every figure below is keyed by currency: one pool per currency, never a sum across them.
    totals, unallocated, team_usage, user_usage, pools = (
        group_sums.totals, group_sums.unallocated, group_sums.team_usage, group_sums.user_usage, group_sums.pools,
    )

    members = _members([r for r in rules if r.rule_type == AllocationRule.RuleType.BY_TEAM])
    user_teams = _user_teams(pools, rules_by_pk)

    # The direct-cost rows stay in the groups' table (``_write_direct_rows``): only the rule rows
    # are made here, so the Python work no longer grows with the groups.
    rows: list[_Row] = []

    warnings = []
    for r in rules:
        for pool_currency in sorted(totals):
            sums = pools.get((r.pk, pool_currency))
            if sums is None:
                continue
            pool = strategies.Pool(
                rule_type=r.rule_type, amount=sums.amount, currency=pool_currency, record_count=sums.records,
                targets=_targets(r), team_usage=team_usage[pool_currency], user_usage=user_usage[pool_currency],
                members=members.get(r.source_team_id, ()), source_team_id=r.source_team_id,
                holders=[strategies.Holder(team_id=t, user_id=u, amount=a, record_count=n)
                         for (t, u), (a, n) in sums.holders.items()],
                user_teams=user_teams,
            )
            result = strategies.STRATEGIES[r.rule_type](pool)
            for part in result.parts:
                if part.amount:
                    rows.append(_Row(r, part.team_id, part.user_id, "", part.amount, pool_currency,
                                     part.record_count, part.details))
            unallocated[pool_currency] += result.unallocated
            for reason in result.reasons:
                warnings.append({
                    "rule_id": r.pk, "rule": r.name, "currency": pool_currency,
                    "unallocated": str(result.unallocated),
                    "message": f"allocation rule {r.name!r}: {reason}; "
                               f"{result.unallocated} {pool_currency} of its pool stays unallocated",
                })

    allocated: dict[str, Decimal] = defaultdict(Decimal, group_sums.direct)
    for row in rows:
        allocated[row.currency] += row.amount
    pools_by_currency = {}
    for code, (total, records) in sorted(totals.items()):
        if allocated[code] + unallocated[code] != total:  # the engine's own invariant; a failure is a bug
            raise AllocationError(
                f"tie-out failed for {period} in {code}: allocated {allocated[code]} + unallocated "
                f"{unallocated[code]} != total {total} {code}"
            )
        pools_by_currency[code] = AllocationCurrencyTotal(
            currency=code, total_cost=total, allocated_cost=allocated[code], unallocated_cost=unallocated[code],
            record_count=records,
        )
    stats = {code: (t.total_cost, t.record_count) for code, t in pools_by_currency.items()}
    return _Computed(currency=usage_principal_currency(stats), totals=pools_by_currency,
                     records=sum(t.record_count for t in pools_by_currency.values()), rows=rows,
                     warnings=warnings + _voided_warnings(period), groups=group_sums.groups,
                     items=group_sums.items, direct_beyond_bound=group_sums.direct_beyond_bound)


def _voided_warnings(period: BillingPeriod) -> list[dict]:
    """One warning per currency of the usage voided since the period's committed run: the difference
    this run makes to it, e.g. "1 usage record voided since the last committed run (#7): −12.34 USD"."""
    committed = allocation_committed_run(period=period)
    if committed is None:
        return []
    warnings = []
    for currency, (cost, records) in sorted(usage_voided_since(run=committed).items()):
        sign = "−" if cost > 0 else "+"
        warnings.append({
            "kind": "voided", "currency": currency, "records": records, "cost": str(-cost),
            "message": f"{records} usage record{'s' if records != 1 else ''} voided since the last committed run "
                       f"(#{committed.pk}): {sign}{format_metered(abs(cost), currency)}",
        })
    return warnings


def _direct_row(group: dict) -> _Row:
    """The ``AllocatedCost`` of one direct-cost group: a FOCUS service, or one priced API / AI item."""
    team_id, user_id, amount = group["team_id"], group["user_id"], group["amount"]
    currency, records = group["currency"], group["records"]
    if group["unit_key"] is None:  # a FOCUS ServiceName
        return _Row(None, team_id, user_id, group["service_key"], amount, currency, records, {})
    item = {"resource_type": group["service_key"], "provider": group["provider_key"], "model": group["model_key"]}
    label = _service_label(group["service_key"], group["provider_key"], group["model_key"])
    return _Row(None, team_id, user_id, label, amount, currency, records, item, group["quantity"], group["unit_key"])


#: The period's groups, one row per (team, user, service, item, assigned rule, currency): a temporary
#: table of the allocating transaction (``_group_into_table``), dropped when the run is made.
GROUPS_TABLE = "chargeback_allocation_groups"

#: The groups that are direct costs: a team's own usage that no rule took.
_DIRECT = "assigned_rule IS NULL AND team_id IS NOT NULL"


def _group_into_table(grouped) -> None:
    """Sum the period's usage into ``GROUPS_TABLE`` (one scan of the usage records, in the database).

    The groups stay in the database: the direct-cost groups become ``AllocatedCost`` rows with one
    ``INSERT … SELECT`` (``_write_direct_rows``), and Python reads only the sums the rules and the
    tie-out need (``_group_sums``). A month of three currencies has about twice the groups of a
    one-currency month of the same records (each (team, user, service) group once per currency);
    reading them all into Python and writing them back with ``COPY`` made the allocation grow with
    the currencies (``bench/allocation_currencies.py``: 1.74× for three).
    """
    sql, params = grouped.query.get_compiler(using=grouped.db).as_sql()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{GROUPS_TABLE}")
        cursor.execute(f"CREATE TEMPORARY TABLE {GROUPS_TABLE} ON COMMIT DROP AS {sql}", params)


def _drop_groups() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{GROUPS_TABLE}")


@dataclass
class _GroupSums:
    """What the allocation reads of the period's groups, per currency (never summed across them)."""

    groups: int = 0
    totals: dict[str, tuple[Decimal, int]] = field(default_factory=dict)  # Σ cost, records
    direct: dict[str, Decimal] = field(default_factory=dict)  # Σ direct-cost groups
    unallocated: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))  # no team, no rule
    team_usage: dict[str, dict[int, Decimal]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Decimal)))
    user_usage: dict[str, dict[tuple[int, int], Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Decimal)))
    pools: dict[tuple[int, str], _PoolSums] = field(default_factory=lambda: defaultdict(_PoolSums))
    #: The priced API / AI items (resource type, provider, model) of the direct-cost groups.
    items: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    #: Whether some direct-cost group is too large for its column (``money.METERED_BOUND``).
    direct_beyond_bound: bool = False


def _group_sums() -> _GroupSums:
    """Read from ``GROUPS_TABLE``, in one scan of it, the per-currency totals, the teams' and users'
    usage (the ``by_usage`` drivers), each (rule, currency) pool by (team, user) holder, the priced
    items of the direct costs and whether a direct-cost group passes the bound.

    One ``GROUP BY GROUPING SETS``: the groups summed by (currency, team, user, rule), a few
    thousand rows, in ``numeric`` (exact), and the distinct items. The sums of those rows are added
    up here in ``MONEY_CONTEXT`` (exact to 60 digits). A month of three currencies has about twice
    the groups of a one-currency month; each further scan of them (there were five) cost the
    3-currency month twice what it cost the other (``bench/allocation_currencies.py``).
    """
    sums = _GroupSums()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT GROUPING(service_key) = 0 AS item, currency, team_id, user_id, assigned_rule, "
            f"service_key, provider_key, model_key, COUNT(*), SUM(amount), SUM(records), "
            f"bool_or({_DIRECT} AND abs(amount) >= %s), bool_or({_DIRECT} AND unit_key IS NOT NULL) "
            f"FROM {GROUPS_TABLE} "
            f"GROUP BY GROUPING SETS ((currency, team_id, user_id, assigned_rule), "
            f"(service_key, provider_key, model_key))",
            [METERED_BOUND],
        )
        rows = cursor.fetchall()
    totals: dict[str, list] = {}
    direct: dict[str, Decimal] = {}
    with localcontext(MONEY_CONTEXT):
        for (item, currency, team_id, user_id, rule_pk, service_key, provider_key, model_key, groups, amount,
             records, beyond, priced) in rows:
            if item:
                if priced:
                    sums.items.append((service_key, provider_key, model_key))
                continue
            sums.groups += groups
            sums.direct_beyond_bound |= bool(beyond)
            records = int(records)
            total = totals.setdefault(currency, [ZERO, 0])
            total[0] += amount
            total[1] += records
            if rule_pk is None and team_id is not None:
                direct[currency] = direct.get(currency, ZERO) + amount
            elif rule_pk is None:
                sums.unallocated[currency] += amount
            if team_id is not None:
                sums.team_usage[currency][team_id] += amount
                if user_id is not None:
                    sums.user_usage[currency][(team_id, user_id)] += amount
            if rule_pk is not None:
                pool = sums.pools[(rule_pk, currency)]
                pool.amount += amount
                pool.records += records
                pool.holders[(team_id, user_id)] = [amount, records]
    sums.totals = {currency: (amount, records) for currency, (amount, records) in totals.items()}
    sums.direct = direct
    sums.items.sort(key=lambda item: tuple("" if part is None else part for part in item))
    return sums


def _direct_rows() -> list[_Row]:
    """The direct-cost rows as ``_Row``s, in the order they are written (a dry run's preview)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {GROUPS_TABLE} WHERE {_DIRECT} AND amount <> 0")
        names = [column.name for column in cursor.description]
        rows = [_direct_row(dict(zip(names, group))) for group in cursor.fetchall()]
    rows.sort(key=lambda row: (row.team_id, row.user_id or 0, row.service, row.unit, row.currency))
    return rows


def _direct_row_beyond_bound() -> tuple[int, str, Decimal] | None:
    """The first direct-cost group (team, currency, amount) too large for its column, if any."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT team_id, currency, amount FROM {GROUPS_TABLE} WHERE {_DIRECT} AND abs(amount) >= %s "
            f"ORDER BY team_id, COALESCE(user_id, 0), service_key COLLATE \"C\", currency LIMIT 1",
            [METERED_BOUND],
        )
        return cursor.fetchone()


def _write_direct_rows(run: AllocationRun, items: list[tuple[str, str | None, str | None]]) -> None:
    """Insert the direct-cost rows of ``run`` from ``GROUPS_TABLE`` with one ``INSERT … SELECT``.

    One row per direct-cost group with a non-zero amount, in the order the rows were always written
    (team, user, service, unit; the invoices list a run's rows by pk): a FOCUS service keeps its
    ServiceName, a priced API / AI item (one of ``items``, read by ``_group_sums``) gets its label
    (``_service_label``, made in Python for the few distinct items), its summed quantity, its unit
    and ``details`` naming the item.
    """
    with connection.cursor() as cursor:
        labels = [_service_label(*item) for item in items]
        # Each item's ``details`` made once here, not a jsonb_build_object for each of its rows.
        details = [json.dumps({"resource_type": resource_type, "provider": provider, "model": model})
                   for resource_type, provider, model in items]
        quote = connection.ops.quote_name
        columns = ("run_id", "rule_id", "team_id", "user_id", "service", "quantity", "unit", "amount", "currency",
                   "record_count", "details")
        cursor.execute(
            f"""
            INSERT INTO {quote(AllocatedCost._meta.db_table)} ({', '.join(map(quote, columns))})
            SELECT %s, NULL, team_id, user_id, service, quantity, unit, amount, currency, records, details
            FROM (
                SELECT g.team_id, g.user_id, g.quantity, g.amount, g.currency, g.records,
                       CASE WHEN g.unit_key IS NULL THEN g.service_key ELSE item.label END AS service,
                       COALESCE(g.unit_key, '') AS unit,
                       CASE WHEN g.unit_key IS NULL THEN '{{}}'::jsonb ELSE item.details END AS details
                FROM {GROUPS_TABLE} g
                -- A priced item's provider and model are never NULL (NOT NULL columns of the usage),
                -- so "=" on all three keys: one hash join, not a filter over each resource type's items.
                LEFT JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[])
                          AS item (resource_type, provider, model, label, details)
                       ON g.unit_key IS NOT NULL AND item.resource_type = g.service_key
                          AND item.provider = g.provider_key AND item.model = g.model_key
                WHERE g.assigned_rule IS NULL AND g.team_id IS NOT NULL AND g.amount <> 0
            ) direct
            ORDER BY team_id, COALESCE(user_id, 0), service COLLATE "C", unit COLLATE "C", currency
            """,
            [run.pk, [i[0] for i in items], [i[1] for i in items], [i[2] for i in items], labels, details],
        )


#: Memory for the period's GROUP BY (``SET LOCAL``, this transaction only).
GROUPING_WORK_MEM = "64MB"


def _give_grouping_memory() -> None:
    """Let PostgreSQL hash the period's groups in memory.

    A month of usage sums into tens of thousands of (team, user, service, rule) groups; with the
    default ``work_mem`` (4 MB) the planner sorts the whole period on disk instead (measured with
    ``bench/allocate.py``: 4.4 s sorting vs 3.2 s hashing for 1,000,000 records). ``SET LOCAL``
    lasts until the end of the surrounding transaction only.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{GROUPING_WORK_MEM}'")


def _members(rules: list[AllocationRule]) -> dict[int, tuple[int, ...]]:
    """``{source team id: member user ids in pk order}`` for by_team rules (one query)."""
    team_ids = {r.source_team_id for r in rules if r.source_team_id}
    members: dict[int, list[int]] = defaultdict(list)
    if team_ids:
        for team_id, user_id in (
            TeamMembership.objects.filter(team_id__in=team_ids).order_by("team_id", "user_id")
            .values_list("team_id", "user_id")
        ):
            members[team_id].append(user_id)
    return {team_id: tuple(users) for team_id, users in members.items()}


def _user_teams(pools: Mapping[tuple[int, str], _PoolSums], rules_by_pk: Mapping[int, AllocationRule]) -> dict[int, int]:
    """The billing team of users whose records carry no team, for by_user rules without targets.

    A user in several teams is billed through the membership with the lowest team id, so the
    answer does not depend on the order memberships were made in.
    """
    users = {
        user_id
        for (rule_pk, _currency), sums in pools.items()
        if rules_by_pk[rule_pk].rule_type == AllocationRule.RuleType.BY_USER
        for (team_id, user_id) in sums.holders
        if team_id is None and user_id is not None
    }
    user_teams: dict[int, int] = {}
    if users:
        for user_id, team_id in (
            TeamMembership.objects.filter(user_id__in=users).order_by("user_id", "team_id")
            .values_list("user_id", "team_id")
        ):
            user_teams.setdefault(user_id, team_id)
    return user_teams


def allocation_run_create(
    *,
    period: BillingPeriod,
    rule: AllocationRule | None = None,
    team: Team | None = None,
    dry_run: bool = False,
    created_by=None,
) -> AllocationRun:
    """Allocate ``period``'s usage costs to teams by the allocation rules.

    Args:
        period: the billing period (whole months, ``[start, end)``); records are selected by
            ``billing_period_start``.
        rule: apply only this rule (plus the teams' direct costs); it must be enabled and valid in
            the period. ``None``: every enabled rule valid in the period, by (priority, pk).
        team: scope of the answer only. The whole period is always allocated, because shares (by
            usage, …) depend on every team; a dry run's ``run.preview`` then holds only this team's
            rows. The saved rows of a non-dry run are always the whole period's (committing a run
            makes it the period's allocation); ``run.team`` records the scope asked for, and
            ``selectors.allocation_rows(run, team=…)`` reads one team's rows.
        dry_run: compute and return an unsaved run; nothing is written.
        created_by: the user asking (stored on the run).

    Returns:
        An ``AllocationRun``: with ``dry_run``, unsaved (``dry_run=True``); else a saved ``draft``
        with its ``AllocatedCost`` rows and one ``AllocationCurrencyTotal`` per currency of the
        period's usage (``selectors.allocation_currency_totals(run)`` reads them for a saved or a
        dry run: per currency ``total_cost``, ``allocated_cost``, ``unallocated_cost``, 12 decimal
        places, and ``allocated + unallocated == total`` exactly). ``currency``, ``total_cost``,
        ``allocated_cost`` and ``unallocated_cost`` repeat the principal currency's pool;
        ``record_count`` counts every currency's records; ``warnings`` lists pools a rule
        could not split (``{"rule_id", "rule", "currency", "unallocated", "message"}``) and usage voided
        since the period's committed run (``{"kind": "voided", "currency", "records", "cost",
        "message"}``); ``refused`` is empty (every currency is allocated). A dry run carries its unsaved
        ``AllocatedCost`` rows as ``run.preview`` (scoped to ``team``); read a saved run's rows
        with ``selectors.allocation_rows``. ``run.group_count`` is the number of database groups
        the usage was summed into. Rows with a zero amount are not written.

    Raises:
        NothingToAllocate: the period has no usage records.
        RuleConfigurationError: an applicable rule cannot be applied (fixed split not summing to
            100, by_team without a source team, by_user target without a user…).
        AllocationError: ``rule`` is disabled or not valid in the period.
    """
    # One transaction: the period's groups live in a temporary table of it (``GROUPS_TABLE``).
    with transaction.atomic():
        computed = _compute(period, rule)
        _check_within_bounds(computed, period)
        principal = computed.totals[computed.currency]
        run = AllocationRun(
            period_start=period.start, period_end=period.end, status=AllocationRun.Status.DRAFT, dry_run=dry_run,
            rule=rule, team=team, currency=computed.currency, total_cost=principal.total_cost,
            allocated_cost=principal.allocated_cost, unallocated_cost=principal.unallocated_cost,
            record_count=computed.records, warnings=computed.warnings, refused=[], created_by=created_by,
        )
        pools = list(computed.totals.values())
        if dry_run:
            rows = _direct_rows() + computed.rows
            run.preview = [row.model(run) for row in rows if team is None or row.team_id == team.pk]
            run.preview_totals = pools
        else:
            run.save(force_insert=True)
            for pool in pools:
                pool.run = run
            AllocationCurrencyTotal.objects.bulk_create(pools)
            _write_direct_rows(run, computed.items)
            _write_rows(run, computed.rows)
        _drop_groups()
    run.group_count = computed.groups
    return run


def _write_rows(run: AllocationRun, rows: list[_Row]) -> None:
    """Insert the run's rule rows with ``COPY``, after its direct-cost rows (``_write_direct_rows``).

    Django's ``bulk_create`` spends most of its time preparing values in Python (measured with
    ``bench/allocate.py``: 19,000 rows in about 3 s, against 0.5 s with ``COPY``).
    """
    quote = connection.ops.quote_name
    columns = ("run_id", "rule_id", "team_id", "user_id", "service", "quantity", "unit", "amount", "currency",
               "record_count", "details")
    sql = f"COPY {quote(AllocatedCost._meta.db_table)} ({', '.join(map(quote, columns))}) FROM STDIN"
    # psycopg's own errors (a row naming a missing parent, 23503) reach the caller as Django's.
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row((
                run.pk, row.rule.pk if row.rule else None, row.team_id, row.user_id, row.service, row.quantity,
                row.unit, row.amount, row.currency, row.record_count,
                json.dumps(row.details) if row.details else "{}",
            ))


def _lock_allocation_commits() -> None:
    """Serialise allocation commits.

    Row locks alone cannot: when a period has no committed run yet there is no row to lock, and two
    commits would race to the partial unique index. A transaction-level advisory lock is released
    at commit or rollback.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_COMMIT_LOCK_KEY])


def allocation_run_commit(*, run: AllocationRun, committed_by=None) -> AllocationRun:
    """Make a draft run its period's allocation, superseding the period's committed run.

    In one transaction: lock (the commit lock, then the run and the period's committed run with
    ``select_for_update``, by pk), re-read, then check that the run is a draft, that the period's
    usage (record count and total cost, per currency) is what the draft was computed from, and the
    tie-out of every currency (``Σ rows in it == its allocated_cost``, ``allocated + unallocated ==
    total``). The previous
    committed run becomes ``superseded`` and this one ``committed`` with ``committed_at``: the
    period's costs are never counted twice (the ``run_one_committed_per_period`` index backs it).

    Args:
        run: a saved ``draft`` run from :func:`allocation_run_create`.
        committed_by: the user committing (accepted for the audit trail; the run stores
            ``created_by`` only).

    Returns:
        The committed run, re-read from the database.

    Raises:
        AllocationError: a dry run, a run that is not a draft, a committed run of an overlapping
            but different period, or a failed tie-out.
        StaleAllocationRun: the period's usage changed after the draft was computed; compute the
            allocation again.
    """
    if run.pk is None:
        raise AllocationError("a dry run is never saved and cannot be committed; run the allocation without dry run")
    with transaction.atomic():
        _lock_allocation_commits()
        locked = AllocationRun.objects.select_for_update().get(pk=run.pk)
        allocation_run_check_transition(run=locked, to_status=AllocationRun.Status.COMMITTED)
        period = BillingPeriod(locked.period_start, locked.period_end)
        committed = list(
            AllocationRun.objects.select_for_update().filter(
                status=AllocationRun.Status.COMMITTED, period_start__lt=period.end, period_end__gt=period.start,
            ).order_by("pk")
        )
        overlapping = [r for r in committed if (r.period_start, r.period_end) != (period.start, period.end)]
        if overlapping:
            other = overlapping[0]
            raise AllocationError(
                f"allocation run #{other.pk} is committed for {BillingPeriod(other.period_start, other.period_end)}, "
                f"which overlaps {period}; allocate the same period again to replace it"
            )

        pools = {t.currency: t for t in AllocationCurrencyTotal.objects.filter(run=locked)}
        then = {code: (t.total_cost, t.record_count) for code, t in pools.items()}
        now = usage_period_stats(period=period)
        if now != then:
            raise StaleAllocationRun(
                f"the usage of {period} changed after allocation run #{locked.pk} was computed "
                f"({_describe_stats(then)} then; {_describe_stats(now)} now): run the allocation again"
            )
        rows_totals = {
            row["currency"]: row["total"]
            for row in AllocatedCost.objects.filter(run=locked).order_by().values("currency")
            .annotate(total=MeteredSum("amount"))
        }
        for code, pool in sorted(pools.items()):
            rows_total = rows_totals.get(code, ZERO)
            if rows_total != pool.allocated_cost or pool.allocated_cost + pool.unallocated_cost != pool.total_cost:
                raise AllocationError(
                    f"allocation run #{locked.pk} does not tie out in {code}: rows {rows_total}, allocated "
                    f"{pool.allocated_cost}, unallocated {pool.unallocated_cost}, total {pool.total_cost} {code}"
                )
        if set(rows_totals) - set(pools):
            raise AllocationError(f"allocation run #{locked.pk} has rows in a currency without a pool: "
                                  f"{', '.join(sorted(set(rows_totals) - set(pools)))}")

        for previous in committed:
            allocation_run_check_transition(run=previous, to_status=AllocationRun.Status.SUPERSEDED)
            previous.status = AllocationRun.Status.SUPERSEDED
            previous.save(update_fields=["status"])
        locked.status = AllocationRun.Status.COMMITTED
        locked.committed_at = timezone.now()
        locked.save(update_fields=["status", "committed_at"])
    locked.group_count = getattr(run, "group_count", None)
    return locked


def _describe_stats(stats: Mapping[str, tuple[Decimal, int]]) -> str:
    """``3 records, 12.5 USD; 1 record, 4 EUR`` (per currency, never summed); ``no usage`` when empty."""
    if not stats:
        return "no usage"
    return "; ".join(f"{n} record{'s' if n != 1 else ''}, {total} {code}" for code, (total, n) in sorted(stats.items()))


def allocation_run_execute(
    *, period: BillingPeriod, rule: AllocationRule | None = None, team: Team | None = None, created_by=None
) -> AllocationRun:
    """Allocate ``period`` and commit the run, in one transaction (the month-end billing run).

    Arguments, result and errors as :func:`allocation_run_create` followed by
    :func:`allocation_run_commit`.
    """
    with transaction.atomic():
        run = allocation_run_create(period=period, rule=rule, team=team, created_by=created_by)
        return allocation_run_commit(run=run, committed_by=created_by)
