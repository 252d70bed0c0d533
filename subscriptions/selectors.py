"""Reads of plans and subscriptions: usage per meter, the overage it costs, and the upcoming invoice.

Nothing here writes. Usage is read from ``chargeback.UsageRecord`` (what the API's usage records,
the wallets' charge events and FOCUS imports all write), active records only: a team's
subscription counts every usage record of the team; a member's subscription counts the records
that name that user. A record belongs to the period that holds its ``occurred_at`` (FOCUS
``ChargePeriodStart``), periods being half-open ``[start, end)``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Prefetch
from django.utils import timezone

from billing_site.money import format_metered, format_quantity, format_unit

from .charges import ChargeSpec, charge_amount
from .models import Coupon, Plan, PlanCharge, Subscription, SubscriptionDiscount, SubscriptionProration

ZERO = Decimal(0)


@dataclass(frozen=True)
class MeterUsage:
    """One meter of a subscription in one period; units in the meter's unit, money in ``currency``.

    ``used`` counts every active usage record of the subscriber in ``[period_start, period_end)``;
    ``remaining = max(included − used, 0)``; ``overage = max(used − included, 0)``;
    ``overage_cost`` is the overage priced by the charge model, metered (12 decimal places).
    ``price`` says the price applied, for people (``2.00 USD per 1,000 tokens``); ``price_per_1k`` is
    the standard model's price of 1,000 units (``None`` for the other models).
    """

    meter: str
    charge_id: int
    charge_model: str
    unit: str
    included: Decimal
    used: Decimal
    remaining: Decimal
    overage: Decimal
    overage_cost: Decimal
    price: str
    price_per_1k: Decimal | None
    currency: str
    period_start: dt.datetime
    period_end: dt.datetime


def plan_charges(plan: Plan) -> list[PlanCharge]:
    """The plan's charges with their tiers, in position order (prefetched ones are reused)."""
    return list(plan.charges.all())


def plans_with_charges(plan_ids: Iterable[int]) -> dict[int, Plan]:
    """``{plan id: Plan}`` with charges and tiers prefetched (one query each)."""
    plans = Plan.objects.filter(pk__in=set(plan_ids)).prefetch_related(
        Prefetch("charges", queryset=PlanCharge.objects.order_by("position", "meter").prefetch_related("tiers"))
    )
    return {p.pk: p for p in plans}


def charge_price_text(charge: PlanCharge, currency: str) -> str:
    """The price of a charge as people read it: ``2.00 USD per 1,000 tokens``, ``graduated tiers``."""
    unit = format_unit(Decimal(2), charge.unit) if charge.unit else "units"
    if charge.charge_model == PlanCharge.ChargeModel.STANDARD:
        per = "" if charge.price_per_units == 1 else f"{format_quantity(charge.price_per_units)} "
        return f"{format_metered(charge.price, currency)} per {per}{unit if per else (charge.unit or 'unit')}"
    if charge.charge_model == PlanCharge.ChargeModel.PACKAGE:
        return f"{format_metered(charge.price, currency)} per started {format_quantity(charge.package_size)} {unit}"
    tiers = ", ".join(
        f"{'up to ' + format_quantity(t.up_to) if t.up_to is not None else 'above'} at "
        f"{format_metered(t.unit_price, currency, code=False)}"
        + (f" + {format_metered(t.flat_fee, currency, code=False)}" if t.flat_fee else "")
        for t in charge.tiers.all()
    )
    return f"{charge.charge_model} tiers ({tiers}) {currency}"


def _matches(charge: PlanCharge, resource_type: str, feature_key: str, provider: str, unit: str) -> bool:
    return (
        resource_type == charge.resource_type
        and (not charge.feature_key or feature_key == charge.feature_key)
        and (not charge.provider or provider == charge.provider)
        and (not charge.unit or unit == charge.unit)
    )


@dataclass(frozen=True)
class _PricedCharge:
    """What pricing one charge needs, prepared once per plan (its spec and the price's text)."""

    charge: PlanCharge
    spec: ChargeSpec
    price: str
    per_1k: Decimal | None


def _priced_charges(plan: Plan) -> list[_PricedCharge]:
    cached = getattr(plan, "_priced_charges", None)
    if cached is None:
        cached = []
        for charge in plan_charges(plan):
            per_1k = None
            if charge.charge_model == PlanCharge.ChargeModel.STANDARD:
                per_1k = charge.price * 1000 / charge.price_per_units
            cached.append(_PricedCharge(charge, ChargeSpec.of(charge), charge_price_text(charge, plan.currency), per_1k))
        plan._priced_charges = cached
    return cached


def meter_usage(*, plan: Plan, groups: Sequence[tuple[str, str, str, str, Decimal]], period_start: dt.datetime,
                period_end: dt.datetime) -> list[MeterUsage]:
    """Each charge of ``plan`` applied to usage ``groups`` ``(resource_type, feature_key, provider, unit, quantity)``.

    Returns one :class:`MeterUsage` per charge, in the plan's order; usage of no charge is ignored.
    """
    result = []
    for priced in _priced_charges(plan):
        charge = priced.charge
        used = sum((q for rt, fk, pv, un, q in groups if _matches(charge, rt, fk, pv, un)), ZERO)
        overage = max(used - charge.included_units, ZERO)
        cost = charge_amount(priced.spec, overage) if overage else ZERO
        result.append(MeterUsage(
            meter=charge.meter, charge_id=charge.pk, charge_model=charge.charge_model, unit=charge.unit,
            included=charge.included_units, used=used, remaining=max(charge.included_units - used, ZERO),
            overage=overage, overage_cost=cost, price=priced.price, price_per_1k=priced.per_1k,
            currency=plan.currency, period_start=period_start, period_end=period_end,
        ))
    return result


_USAGE_SQL = """
SELECT w.sid, u.resource_type, u.feature_key, u.provider, u.unit, SUM(u.quantity)
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])
     AS w(sid, team_id, user_id, starts, ends)
JOIN chargeback_usagerecord u
  ON u.team_id = w.team_id AND u.occurred_at >= w.starts AND u.occurred_at < w.ends
 AND (w.user_id IS NULL OR u.user_id = w.user_id) AND u.status = 'active'
GROUP BY 1, 2, 3, 4, 5
"""


def usage_groups(windows: Sequence[tuple[int, int, int | None, dt.datetime, dt.datetime]],
                 ) -> dict[int, list[tuple[str, str, str, str, Decimal]]]:
    """Usage quantities by key and dimension for many subscriptions in one query.

    Args:
        windows: ``(key, team_id, user_id or None, start, end)``; ``end`` exclusive.

    Returns:
        ``{key: [(resource_type, feature_key, provider, unit, Σ quantity)]}``; keys without usage are absent.
    """
    result: dict[int, list] = defaultdict(list)
    if not windows:
        return result
    columns = list(zip(*windows))
    with connection.cursor() as cursor:
        cursor.execute(_USAGE_SQL, [list(c) for c in columns])
        for sid, rt, fk, pv, un, qty in cursor.fetchall():
            result[sid].append((rt, fk, pv, un, qty))
    return result


def subscription_usage(*, subscription: Subscription, period_start: dt.datetime | None = None,
                       period_end: dt.datetime | None = None, at: dt.datetime | None = None,
                       plan: Plan | None = None) -> list[MeterUsage]:
    """The usage per meter of ``subscription`` in a period (default: the current one, up to ``at``).

    Args:
        subscription: the subscription (its plan's charges are read).
        period_start, period_end: the period, aware datetimes, ``period_end`` exclusive; default
            ``[current_period_start, min(at, current_period_end))``.
        at: the instant usage is read up to (default now).
        plan: price with this plan's charges instead of the subscription's (a change's preview).

    Returns:
        One :class:`MeterUsage` per charge of the plan (``included``, ``used``, ``remaining``,
        ``overage``, ``overage_cost``). The seed's example: included 500, used 585 → remaining 0,
        overage 85, at 2.00 USD per 1,000 → overage cost 0.17 USD.
    """
    at = at or timezone.now()
    start = period_start or subscription.current_period_start
    end = period_end or min(max(at, start), subscription.current_period_end)
    plan_id = plan.pk if plan is not None else subscription.plan_id
    plan = plans_with_charges([plan_id])[plan_id]
    groups = usage_groups([(subscription.pk, subscription.team_id, subscription.user_id, start, end)]) if end > start else {}
    return meter_usage(plan=plan, groups=groups.get(subscription.pk, []), period_start=start,
                       period_end=subscription.current_period_end if period_end is None else end)


def subscription_get_for(*, team, user=None) -> Subscription | None:
    """The live (not canceled) subscription of a team (``user`` None) or of one member, plan joined, or ``None``."""
    return (
        Subscription.objects.select_related("plan", "team")
        .filter(team=team, user=user).exclude(status=Subscription.Status.CANCELED).first()
    )


def subscription_list(*, status: str | None = None, team=None) -> Iterable[Subscription]:
    """Subscriptions (newest first), plan and team joined, optionally of one status and team."""
    qs = Subscription.objects.select_related("plan", "team", "user")
    if status:
        qs = qs.filter(status=status)
    if team is not None:
        qs = qs.filter(team=team)
    return qs


def prorations_pending(*, subscription: Subscription) -> list[SubscriptionProration]:
    """Prorations of ``subscription`` that no invoice carries yet (the next invoice will)."""
    return list(SubscriptionProration.objects.filter(subscription=subscription, invoice__isnull=True).order_by("pk"))


def discounts_running(*, subscription_ids: Iterable[int], since: dt.datetime) -> dict[int, list[SubscriptionDiscount]]:
    """The discounts (coupon loaded) of the subscriptions that may cover a period starting at or after ``since``,
    by subscription id (1 query, whatever the number of subscriptions; 2 when some have discounts)."""
    out: dict[int, list[SubscriptionDiscount]] = defaultdict(list)
    # The ids as one array parameter (a renewal batch passes a thousand).
    rows = list(SubscriptionDiscount.objects.raw(
        f'SELECT * FROM {SubscriptionDiscount._meta.db_table} WHERE subscription_id = ANY(%s::bigint[]) '
        'AND ("end" IS NULL OR "end" > %s) ORDER BY start, id', [list(subscription_ids), since]))
    coupons = Coupon.objects.in_bulk({d.coupon_id for d in rows}) if rows else {}
    for d in rows:
        d.coupon = coupons[d.coupon_id]
        out[d.subscription_id].append(d)
    return out


def discount_for(discounts: Sequence[SubscriptionDiscount], period_start: dt.datetime) -> SubscriptionDiscount | None:
    """The discount of the fee of the period starting at ``period_start``: the newest that covers it, or ``None``."""
    found = None
    for d in discounts:
        if d.applies_to(period_start) and (found is None or (d.start, d.pk) >= (found.start, found.pk)):
            found = d
    return found


def subscription_discount(*, subscription: Subscription, period_start: dt.datetime | None = None) -> SubscriptionDiscount | None:
    """The discount of the period starting at ``period_start`` (default: the current period), or ``None``."""
    start = period_start or subscription.current_period_start
    return discount_for(discounts_running(subscription_ids=[subscription.pk], since=start)[subscription.pk], start)


def discounts_current(subscriptions: Sequence[Subscription]) -> dict[int, SubscriptionDiscount]:
    """``{subscription id: the discount of its current period}`` for those that have one (1 query)."""
    subs = list(subscriptions)
    if not subs:
        return {}
    running = discounts_running(subscription_ids=[s.pk for s in subs], since=min(s.current_period_start for s in subs))
    out = {}
    for sub in subs:
        found = discount_for(running.get(sub.pk, ()), sub.current_period_start)
        if found is not None:
            out[sub.pk] = found
    return out
