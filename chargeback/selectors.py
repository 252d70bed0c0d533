"""Reads of the chargeback core: price resolution, usage of a period, allocation runs and their rows.

Money read here is ``Decimal`` at metered precision (12 decimal places) in the row's currency.
Billing periods are ``chargeback.periods.BillingPeriod`` half-open month ranges ``[start, end)``;
a usage record belongs to the period of its ``billing_period_start``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import TruncDate

from billing_site.db import MeteredSum
from billing_site.money import METERED_BOUND, check_within_bound, metered_cost, metered_costs
from chargeback.errors import PriceNotFound
from chargeback.models import AllocatedCost, AllocationCurrencyTotal, AllocationRun, Price, UsageRecord
from chargeback.periods import BillingPeriod
from teams.models import Team
from teams.selectors import billing_settings_get

__all__ = [
    "PriceNotFound",
    "allocation_committed_run",
    "allocation_currency_totals",
    "allocation_rows",
    "allocation_team_totals",
    "PriceItem",
    "PricedItem",
    "price_apply",
    "price_candidates",
    "price_item",
    "price_amounts",
    "price_items",
    "price_not_found",
    "price_pick",
    "price_resolve",
    "prices_of_period",
    "usage_principal_currency",
    "usage_period_stats",
    "usage_period_total",
    "usage_records_active",
    "usage_records_of_period",
    "usage_voided_since",
]


#: A priced item: ``(category, provider, model, unit)``, e.g. ``("llm", "openai", "gpt-4", "token")``.
PriceItem = tuple[str, str, str, str]


def price_resolve(*, team: Team | None, category: str, provider: str, model: str, unit: str, at: dt.datetime) -> Price:
    """The catalog price of one unit of ``category/provider/model/unit`` for ``team`` at time ``at``.

    Args:
        team: the team using the item, or ``None`` (usage in the unallocated pool: global price only).
        category: the priced resource type (``llm``, ``stt``, ``tts``, ``telephony``…).
        provider, model, unit: the item, e.g. ``openai``/``gpt-4``/``token``.
        at: an aware datetime, the time of the usage.

    Returns:
        The team's override if one is valid at ``at``, else the global price valid at ``at``
        (:func:`price_pick`). Validity is the half-open range ``[valid_from, valid_to)``,
        ``valid_to`` empty = open-ended. One query.

    Raises:
        PriceNotFound: neither an override nor a global price is valid at ``at``; the message names
            the item (``category/provider/model/unit``), the team and the time.
    """
    item = (category, provider, model, unit)
    price = price_pick(price_candidates(team=team, items=[item], at=at).get(item, []), team=team, at=at)
    if price is None:
        raise price_not_found(team=team, item=item, at=at)
    return price


def price_candidates(*, team: Team | None, items: Iterable[PriceItem],
                     at: dt.datetime | None = None) -> dict[PriceItem, list[Price]]:
    """The catalog rows that may price ``items`` for ``team``, by item, in one query.

    The global rows and ``team``'s overrides of each item; with ``at``, only those valid at ``at``.
    Pick from them with :func:`price_pick` (a batch of usage at several times reads them once).
    """
    items = set(items)
    candidates: dict[PriceItem, list[Price]] = {item: [] for item in items}
    if not items:
        return candidates
    # One IN per column (a short query to compile), then the exact items are kept: the cross
    # product of a few categories, providers, models and units adds at most a few catalog rows.
    category, provider, model, unit = (sorted(set(column)) for column in zip(*items))
    rows = Price.objects.filter(
        Q(team__isnull=True) | Q(team=team), category__in=category, provider__in=provider, model__in=model,
        unit__in=unit,
    )
    if at is not None:
        rows = rows.filter(Q(valid_to__isnull=True) | Q(valid_to__gt=at), valid_from__lte=at)
    for price in rows:
        item = (price.category, price.provider, price.model, price.unit)
        if item in candidates:
            candidates[item].append(price)
    return candidates


def price_pick(candidates: Sequence[Price], *, team: Team | None, at: dt.datetime) -> Price | None:
    """The price rule over rows already read: the team's override valid at ``at``, else the global one.

    Valid means ``valid_from <= at < valid_to`` (open-ended when ``valid_to`` is empty). If two rows
    of one level were valid at once (``Price.clean`` refuses that), the latest ``valid_from`` wins,
    then the highest id. ``None`` when nothing is valid.
    """
    valid = [p for p in candidates if p.valid_from <= at and (p.valid_to is None or p.valid_to > at)]
    if team is not None:
        overrides = [p for p in valid if p.team_id == team.pk]
        if overrides:
            return max(overrides, key=lambda p: (p.valid_from, p.pk))
    globals_ = [p for p in valid if p.team_id is None]
    return max(globals_, key=lambda p: (p.valid_from, p.pk)) if globals_ else None


def price_not_found(*, team: Team | None, item: PriceItem, at: dt.datetime) -> PriceNotFound:
    """The error for an item without a valid price, naming the item, the team and the time."""
    who = f"team {team.slug!r}" if team is not None else "usage without a team"
    return PriceNotFound(
        f"no price for {'/'.join(item)} ({who}) at {at.isoformat()}: "
        "neither a team override nor a global catalog price is valid then"
    )


@dataclass(frozen=True)
class PricedItem:
    """``quantity`` units of ``item`` at a catalog price: what they cost.

    ``amount = quantize_metered(quantity × unit_price)``: metered, 12 decimal places, rounded
    half-up once (``billing_site.money``), in ``currency`` (the price's). ``price`` is the catalog
    row applied (the team's override or the global price, :func:`price_pick`).
    """

    item: PriceItem
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    currency: str
    price: Price


def price_apply(*, price: Price, quantity: Decimal) -> PricedItem:
    """``quantity`` (a Decimal ≥ 0 of ``price.unit``) priced at the catalog row ``price``.

    The one place a price is applied: usage records, usage batches, quotes and usage events all
    cost ``money.metered_cost(quantity, unit_price)`` (exact, quantized once). Reads nothing.

    Raises:
        AmountOutOfRange: the cost would reach ``money.METERED_BOUND`` (10^18, what the cost
            column holds); 422 naming ``quantity``.
    """
    item = (price.category, price.provider, price.model, price.unit)
    amount = check_within_bound(metered_cost(quantity, price.unit_price), param="quantity",
                                what=f"the cost at {price.unit_price} {price.currency} per {price.unit}")
    return PricedItem(item=item, quantity=quantity, unit_price=price.unit_price,
                      amount=amount, currency=price.currency, price=price)


def price_item(*, team: Team | None, item: PriceItem, quantity: Decimal, at: dt.datetime) -> PricedItem:
    """Price ``quantity`` units of ``item`` (``(category, provider, model, unit)``) for ``team`` at ``at``.

    The price is :func:`price_resolve`'s (the team's override valid at ``at``, else the global one;
    one query) and the amount :func:`price_apply`'s.

    Raises:
        PriceNotFound: no price of the item is valid at ``at`` (the message names item, team and time).
    """
    (priced,) = price_items(team=team, lines=[(item, quantity, at)])
    if priced is None:
        raise price_not_found(team=team, item=item, at=at)
    return priced


def price_items(
    *, team: Team | None, lines: Sequence[tuple[PriceItem, Decimal, dt.datetime]],
) -> list[PricedItem | None]:
    """Price many ``(item, quantity, at)`` lines for ``team`` with one catalog query.

    Each line is priced as :func:`price_item` prices it; a line whose item has no price valid at
    its ``at`` gives ``None``, so the caller names the line in its own error (``price_not_found``).
    Lines all at one time read only the rows valid then.
    """
    return [
        None if priced is None else PricedItem(
            item=(priced[1].category, priced[1].provider, priced[1].model, priced[1].unit), quantity=quantity,
            unit_price=priced[1].unit_price, amount=priced[0], currency=priced[1].currency, price=priced[1])
        for (_item, quantity, _at), priced in zip(lines, price_amounts(team=team, lines=lines))
    ]


def price_amounts(
    *, team: Team | None, lines: Sequence[tuple[PriceItem, Decimal, dt.datetime]],
) -> list[tuple[Decimal, Price] | None]:
    """:func:`price_items` without a ``PricedItem`` per line: ``(amount, price)``, or ``None`` when unpriced.

    The same query, price rule and amounts (:func:`price_apply`'s: ``money.metered_cost``, here
    ``money.metered_costs`` over the lines of one price and time, which a batch repeats), and the
    same error: the first line in order whose cost reaches the bound raises ``price_apply``'s
    ``AmountOutOfRange``. For a usage batch of 1,000 lines, which needs only the amount and currency.
    """
    times = {at for _item, _quantity, at in lines}
    candidates = price_candidates(team=team, items=[item for item, _q, _at in lines],
                                  at=next(iter(times)) if len(times) == 1 else None)
    groups: dict[tuple[PriceItem, dt.datetime], list[int]] = {}  # the lines of each item and time
    for index, (item, _quantity, at) in enumerate(lines):
        group = groups.get((item, at))
        if group is None:
            groups[(item, at)] = [index]
        else:
            group.append(index)
    priced: list[tuple[Decimal, Price] | None] = [None] * len(lines)
    past_bound = False
    for (item, at), indexes in groups.items():
        price = price_pick(candidates.get(item, []), team=team, at=at)
        if price is None:
            continue
        amounts = metered_costs([lines[i][1] for i in indexes], price.unit_price)
        past_bound = past_bound or max(map(abs, amounts)) >= METERED_BOUND
        for index, amount in zip(indexes, amounts):
            priced[index] = (amount, price)
    if past_bound:
        for (_item, quantity, _at), line in zip(lines, priced):
            if line is not None and abs(line[0]) >= METERED_BOUND:
                price_apply(price=line[1], quantity=quantity)  # raises the line's AmountOutOfRange
    return priced


def prices_of_period(
    *, period: BillingPeriod, categories: set[str]
) -> dict[tuple[str, str, str, str, str], list[tuple[int | None, Decimal]]]:
    """The catalog prices of ``categories`` valid at some time in ``period`` (one query).

    Args:
        period: a billing period ``[start, end)``; a price counts if its validity
            ``[valid_from, valid_to)`` overlaps the period's UTC days.
        categories: the price categories (usage resource types) wanted, e.g. ``{"llm", "gpu"}``.

    Returns:
        ``{(category, provider, model, unit, currency): [(team id or None, unit price), …]}``: every
        global price and team override of the item valid in the period, unit prices metered
        (12 decimal places). Several entries mean the price changed in the period, or overrides.
    """
    start = dt.datetime.combine(period.start, dt.time(), dt.UTC)
    end = dt.datetime.combine(period.end, dt.time(), dt.UTC)
    prices: dict[tuple[str, str, str, str, str], list[tuple[int | None, Decimal]]] = {}
    rows = (
        Price.objects.filter(category__in=categories, valid_from__lt=end)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gt=start)).order_by("pk")
        .values_list("category", "provider", "model", "unit", "currency", "team_id", "unit_price")
    )
    for category, provider, model, unit, currency, team_id, unit_price in rows:
        prices.setdefault((category, provider, model, unit, currency), []).append((team_id, unit_price))
    return prices


def usage_records_active(records: QuerySet[UsageRecord] | None = None) -> QuerySet[UsageRecord]:
    """``records`` (default: every usage record) without the void ones: what allocations and summaries count."""
    records = UsageRecord.objects.all() if records is None else records
    return records.filter(status=UsageRecord.Status.ACTIVE)


def usage_records_of_period(*, period: BillingPeriod) -> QuerySet[UsageRecord]:
    """The active usage records billed in ``period``: ``billing_period_start`` in ``[period.start, period.end)``.

    Void records are left out: a voided record leaves every later allocation.
    """
    return usage_records_active().filter(billing_period_start__gte=period.start, billing_period_start__lt=period.end)


def usage_period_stats(*, period: BillingPeriod) -> dict[str, tuple[Decimal, int]]:
    """``{currency: (total cost, record count)}`` of the usage billed in ``period`` (one GROUP BY)."""
    rows = (
        usage_records_of_period(period=period).order_by().values("currency")
        .annotate(total=MeteredSum("cost"), records=Count("id"))
    )
    return {row["currency"]: (row["total"], row["records"]) for row in rows}


def usage_principal_currency(stats: dict[str, tuple[Decimal, int]]) -> str:
    """The principal currency of a period's usage ``{currency: (total cost, record count)}``.

    ``settings.BILLING_DEFAULT_CURRENCY`` when the period has usage in it, else the currency with
    the most records (alphabetical on a tie); the default currency when there is no usage. It only
    names which pool an allocation run's own figures repeat (``AllocationRun.currency``): every
    currency is allocated, and none is converted into another here.
    """
    default = settings.BILLING_DEFAULT_CURRENCY
    if not stats or default in stats:
        return default
    return min(stats, key=lambda code: (-stats[code][1], code))


def usage_voided_since(*, run: AllocationRun) -> dict[str, tuple[Decimal, int]]:
    """``{currency: (cost, records)}`` of usage that ``run`` counted and that was voided after it committed.

    A record counts if it existed when the run was made (``created_at`` up to ``run.created_at``)
    and was voided after ``run.committed_at``: the next run of the period is lower by exactly this
    (one query on the ``usage_void_period`` index). Empty for a run never committed.
    """
    if run.committed_at is None:
        return {}
    rows = (
        UsageRecord.objects.filter(
            status=UsageRecord.Status.VOID, billing_period_start__gte=run.period_start,
            billing_period_start__lt=run.period_end, voided_at__gt=run.committed_at, created_at__lte=run.created_at,
        ).order_by().values("currency").annotate(total=MeteredSum("cost"), records=Count("id"))
    )
    return {row["currency"]: (row["total"], row["records"]) for row in rows}


def usage_period_total(*, period: BillingPeriod) -> dict[str, Decimal]:
    """``{currency: total cost}`` of the usage billed in ``period`` (12 decimal places; empty if none)."""
    return {currency: total for currency, (total, _count) in usage_period_stats(period=period).items()}


def allocation_committed_run(*, period: BillingPeriod) -> AllocationRun | None:
    """The committed allocation run of exactly ``period``, or ``None``."""
    return AllocationRun.objects.filter(
        period_start=period.start, period_end=period.end, status=AllocationRun.Status.COMMITTED
    ).first()


def allocation_rows(run: AllocationRun, *, team: Team | None = None) -> list[AllocatedCost]:
    """The ``AllocatedCost`` rows of ``run``: saved rows, or a dry run's unsaved ``run.preview``.

    A saved run always holds the whole period's rows; pass ``team`` to read one team's rows. A dry
    run's preview is already limited to the team the run was asked for (``run.team``). Rows are
    ordered by team, rule (direct costs first), service, user; ``team``, ``user`` and ``rule`` are
    loaded with them.
    """
    if run.pk is None:
        rows = list(getattr(run, "preview", []))
        return [row for row in rows if team is None or row.team_id == team.pk]
    rows = AllocatedCost.objects.filter(run=run).select_related("team", "user", "rule")
    if team is not None:
        rows = rows.filter(team=team)
    return list(rows.order_by("team_id", "rule_id", "service", "user_id", "pk"))


def allocation_team_totals(run: AllocationRun, *, currency: str | None = None) -> dict[int, Decimal]:
    """``{team id: Σ allocated amount}`` of ``run`` in one currency (12 decimal places).

    Args:
        run: a saved run (every team of the period, one GROUP BY) or a dry run (its preview's teams).
        currency: the pool read; by default the run's principal currency (``run.currency``). Amounts
            of two currencies are never added together.
    """
    currency = currency or run.currency
    if run.pk is None:
        totals: dict[int, Decimal] = {}
        for row in getattr(run, "preview", []):
            if row.currency == currency:
                totals[row.team_id] = totals.get(row.team_id, Decimal(0)) + row.amount
        return totals
    rows = (AllocatedCost.objects.filter(run=run, currency=currency).order_by().values("team_id")
            .annotate(total=MeteredSum("amount")))
    return {row["team_id"]: row["total"] for row in rows}


def allocation_currency_totals(run: AllocationRun) -> list[AllocationCurrencyTotal]:
    """The pools of ``run``, one per currency, by currency code: each with ``total_cost``,
    ``allocated_cost``, ``unallocated_cost`` (metered, 12 dp, in its ``currency``) and ``record_count``.

    A dry run's unsaved pools (``run.preview_totals``) or a saved run's rows. A run saved before
    pools were kept per currency has none: its one currency's figures are read from the run itself.
    """
    if run.pk is None:
        pools = list(getattr(run, "preview_totals", []))
    else:
        pools = list(AllocationCurrencyTotal.objects.filter(run=run).order_by("currency"))
    if not pools:
        pools = [AllocationCurrencyTotal(
            run=run if run.pk else None, currency=run.currency, total_cost=run.total_cost,
            allocated_cost=run.allocated_cost, unallocated_cost=run.unallocated_cost, record_count=run.record_count,
        )]
    return sorted(pools, key=lambda pool: pool.currency)


# --- API reads --------------------------------------------------------------------------------------


def usage_summary(*, records: QuerySet[UsageRecord]) -> dict[str, list[dict]]:
    """Totals of ``records`` (already scoped and filtered; void records are left out), each grouped in the
    database by currency.

    Returns ``{"totals": [{"currency", "cost", "quantity", "unit", "records"}], "by_resource_type": [...],
    "by_agent": [...], "by_provider": [...], "by_feature": [...], "by_unit": [...]}``, every row with ``cost``
    (metered Decimal, 12 dp) and the ``records`` counted. ``quantity`` is summed only over rows of one
    ``unit`` (named in ``unit``): a group mixing units (hours and tokens) has ``quantity`` ``None`` and
    ``unit`` ``""``, since tokens plus hours is no quantity at all; ``by_unit`` gives each unit's quantity.
    Rows are ordered by their key, then currency.
    """

    records = usage_records_active(records)

    def grouped(*fields: str) -> list[dict]:
        return usage_grouped(records=records, fields=fields)

    return {
        "totals": grouped(),
        "by_resource_type": grouped("resource_type"),
        "by_agent": grouped("agent_id"),
        "by_provider": grouped("provider"),
        "by_feature": grouped("feature_key"),
        "by_unit": grouped("unit"),
    }


#: What :func:`usage_grouped` may group by besides the record's own columns: the UTC day of ``occurred_at``.
USAGE_GROUP_DAY = "day"


def usage_grouped(*, records: QuerySet[UsageRecord], fields: Sequence[str]) -> list[dict]:
    """``records`` (scoped and filtered by the caller) grouped in the database by ``fields`` and currency.

    ``fields`` are ``UsageRecord`` columns (``resource_type``, ``provider``, ``feature_key``,
    ``agent_id``, ``user``, ``unit``…) or :data:`USAGE_GROUP_DAY` (the UTC date of ``occurred_at``).
    Each row: the keys, ``currency``, ``cost`` (metered, 12 dp), ``records``, and ``quantity`` with
    its ``unit`` when every record of the group has the same unit, else ``quantity`` ``None`` and
    ``unit`` ``""`` (quantities of different units are never added). Void records are left out.
    Ordered by the keys, then currency.
    """
    records = usage_records_active(records).order_by()
    if USAGE_GROUP_DAY in fields:
        records = records.annotate(day=TruncDate("occurred_at", tzinfo=dt.UTC))
    rows = list(
        records.values(*fields, "currency")
        .annotate(cost=MeteredSum("cost"), quantity=MeteredSum("quantity"), records=Count("id"),
                  units=Count("unit", distinct=True), one_unit=Max("unit"))
        .order_by(*fields, "currency")
    )
    for row in rows:
        units, one_unit = row.pop("units"), row.pop("one_unit")
        if units > 1:
            row["quantity"], row["unit"] = None, ""
        elif "unit" not in fields:
            row["unit"] = one_unit or ""
    return rows


def provider_list(*, team: Team | None) -> list[dict]:
    """Providers of the price catalog ``team`` may use: ``[{"provider", "categories": [...]}]``, by name.

    Global prices and the team's overrides count (every team's overrides when ``team`` is ``None``);
    a team whose billing settings list ``allowed_providers`` gets only those.
    """
    prices = Price.objects.all()
    if team is not None:
        prices = prices.filter(Q(team__isnull=True) | Q(team=team))
    found: dict[str, set[str]] = {}
    for provider, category in prices.order_by().values_list("provider", "category").distinct():
        found.setdefault(provider, set()).add(category)
    if team is not None:
        billing = billing_settings_get(team=team)
        found = {p: c for p, c in found.items() if billing.provider_allowed(p)}
    return [{"provider": p, "categories": sorted(c)} for p, c in sorted(found.items())]
