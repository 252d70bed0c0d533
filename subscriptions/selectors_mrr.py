"""Reads of the subscription base for finance: the stats, MRR now and over 12 months, tiers, trials.

The arithmetic is ``subscriptions.mrr`` (MRR counts ``active`` and ``past_due`` subscriptions,
a period's fee divided by its months, per currency, never summed across currencies); this module
reads the rows it works on, with a fixed number of queries whatever the number of subscriptions:

* :func:`subscription_stats` (3 queries): counts by status and MRR by currency and tier, read as
  ``(status, plan) → count`` (kept by a trigger, so no scan of the subscriptions), the plans, and
  ``(status, plan, coupon) → count`` of the discounted ones (kept by a trigger too), then priced in
  Python (one row per plan and status, one per plan, status and coupon).
* :func:`mrr_history` (1 query): MRR at the start of each of the last months and now, and the
  movements between them (new, expansion, contraction, churn), derived from the billed periods:
  at an instant *t* a subscriber pays the plan of its ``SubscriptionPeriod`` covering *t* (not a
  trial) unless the subscription ended (``ended_at``) by *t* or its status at *t* (the latest
  ``SubscriptionStatusChange`` by then) was not ``active`` or ``past_due`` (trialing, unpaid, canceled); a change inside that period (its
  ``SubscriptionProration`` rows, at the change's instant) sets the plan: the latest change's new
  plan (its charge) from the change on, the next change's old plan (its credit) before it. The last point is *now*, read from the
  subscriptions' current status and plan, so it equals :func:`subscription_stats`' MRR.
* :func:`subscriptions_by_tier`, :func:`trials_ending` (1 query each).

Discounts: MRR is after discounts. A subscription whose period (the current one for *now*, the
one covering *t* for a past point) is covered by a coupon's discount (``SubscriptionDiscount``)
counts its fee less the discount (``subscriptions.discounts.discount_amount``: a percent of the fee,
or an amount capped at it), divided by the period's months; so a ``once`` coupon lowers the MRR of
the one period it discounts, a ``repeating`` one of the periods that start within its months.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Count, QuerySet
from django.utils import timezone

from billing_site.money import quantize_metered
from subscriptions.discounts import DISCOUNT_SQL, discount_amount
from subscriptions.models import (
    Coupon,
    Plan,
    Subscription,
    SubscriptionPeriod,
    SubscriptionProration,
    SubscriptionStatusChange,
)
from subscriptions.mrr import (
    MOVEMENTS,
    MRR_STATUSES,
    ZERO,
    CurrencyMRR,
    monthly_amount,
    mrr_by_currency,
    round_breakdown,
)

#: Subscriptions that have a subscriber now: every status but ``canceled``.
LIVE_STATUSES = ("trialing", "active", "past_due", "unpaid")


def reporting_currency() -> str:
    """The currency finance reports MRR in: ``BILLING_REPORTING_CURRENCY``, else ``BILLING_DEFAULT_CURRENCY``."""
    return getattr(settings, "BILLING_REPORTING_CURRENCY", None) or settings.BILLING_DEFAULT_CURRENCY


@dataclass
class TierFigures:
    count: int
    revenue: Decimal  # MRR of the tier, in the currency's minor units


@dataclass
class CurrencyFigures:
    """MRR in one currency, rounded to its minor units; the tiers add up to ``monthly_revenue``."""

    currency: str
    monthly_revenue: Decimal
    tier_breakdown: dict[str, TierFigures]
    exact: Decimal  # the unrounded MRR (12 decimal places)


@dataclass
class SubscriptionStats:
    """The figures of ``GET admin/billing/stats``.

    ``total_customers``: subscribers with a live subscription (every status but canceled; at most
    one live subscription per subscriber). ``active_subscriptions``: status ``active``;
    ``past_due_subscriptions``, ``trial_subscriptions`` and ``canceled_subscriptions`` likewise.
    ``reporting``: MRR in the reporting currency (zero when no plan uses it); ``other_currencies``:
    MRR of plans in any other currency, one entry each, never converted or added.
    """

    total_customers: int
    active_subscriptions: int
    trial_subscriptions: int
    past_due_subscriptions: int
    canceled_subscriptions: int
    reporting: CurrencyFigures
    other_currencies: list[CurrencyFigures] = field(default_factory=list)


def _figures(mrr: CurrencyMRR) -> CurrencyFigures:
    total, tiers = round_breakdown(mrr)
    return CurrencyFigures(currency=mrr.currency, monthly_revenue=total, exact=mrr.total,
                           tier_breakdown={tier: TierFigures(count, amount) for tier, (count, amount) in tiers.items()})


def mrr_now(*, counts: dict[tuple[str, int], int] | None = None) -> dict[str, CurrencyMRR]:
    """MRR per currency (exact) of the subscriptions counted in it now, by tier.

    Args:
        counts: ``{(status, plan_id): subscriptions}`` when the caller has read them already.
    """
    if counts is None:
        counts = _counts_by_status_and_plan()
    per_plan: dict[int, int] = defaultdict(int)
    for (status, plan_id), count in counts.items():
        if status in MRR_STATUSES:
            per_plan[plan_id] += count
    plans = Plan.objects.filter(pk__in=per_plan).only("tier", "currency", "fee", "interval", "interval_count")
    mrr = mrr_by_currency(
        {"currency": plan.currency, "tier": plan.tier, "fee": plan.fee, "interval": plan.interval,
         "interval_count": plan.interval_count, "count": per_plan[plan.pk]}
        for plan in plans
    )
    for row in _discounts_now():
        off = discount_amount(fee=row["fee"], percent_off=row["percent_off"], amount_off=row["amount_off"])
        amount = monthly_amount(fee=off, interval=row["interval"], interval_count=row["interval_count"],
                                count=row["count"])
        if amount:
            mrr.setdefault(row["currency"], CurrencyMRR(row["currency"])).add(tier=row["tier"], count=0, amount=-amount)
    return mrr


_DISCOUNTS_NOW_SQL = """
SELECT pl.tier, pl.currency, pl.fee, pl.interval, pl.interval_count, c.percent_off,
       CASE WHEN c.currency = pl.currency THEN c.amount_off END, SUM(k.subscriptions)
FROM subscriptions_discountcount k
JOIN {plan} pl ON pl.id = k.plan_id
JOIN {coupon} c ON c.id = k.coupon_id
WHERE k.subscriptions > 0 AND k.status = ANY(%s)
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""


def _discounts_now() -> list[dict]:
    """The discounted subscriptions counted in MRR, by plan and coupon terms (1 query): from
    ``subscriptions_discountcount``, ``(plan, status, coupon) → subscriptions`` kept by a trigger on the
    subscriptions' ``discount_coupon`` (the coupon whose discount covers the current period), a few rows
    whatever the number of subscriptions (``subscriptions/migrations/0004_discount_counts.sql``)."""
    sql = _DISCOUNTS_NOW_SQL.format(plan=Plan._meta.db_table, coupon=Coupon._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(MRR_STATUSES)])
        names = ("tier", "currency", "fee", "interval", "interval_count", "percent_off", "amount_off", "count")
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def _counts_by_status_and_plan() -> dict[tuple[str, int], int]:
    """``{(status, plan_id): subscriptions}`` from ``subscriptions_statuscount``, which a trigger on the
    subscriptions keeps (``billing_site/migrations/0004_subscription_status_counts.sql``): a few rows,
    whatever the number of subscriptions; :func:`subscription_counts_recount` is the same figure counted."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, plan_id, subscriptions FROM subscriptions_statuscount WHERE subscriptions > 0")
        return {(status, plan_id): n for status, plan_id, n in cursor.fetchall()}


def subscription_counts_recount() -> dict[tuple[str, int], int]:
    """``{(status, plan_id): subscriptions}`` counted from the subscriptions (a scan): the check of the kept counts."""
    rows = Subscription.objects.order_by().values_list("status", "plan_id").annotate(n=Count("id"))
    return {(status, plan_id): n for status, plan_id, n in rows}


def subscription_stats(*, currency: str | None = None) -> SubscriptionStats:
    """The subscription base at a glance (2 queries): counts by status, MRR by currency and tier.

    Args:
        currency: the reporting currency (ISO 4217); default :func:`reporting_currency`.

    Returns:
        :class:`SubscriptionStats`; MRR in the reporting currency, other currencies beside it.
    """
    currency = currency or reporting_currency()
    counts = _counts_by_status_and_plan()
    by_status: dict[str, int] = defaultdict(int)
    for (status, _), n in counts.items():
        by_status[status] += n
    mrr = mrr_now(counts=counts)
    reporting = _figures(mrr.pop(currency, CurrencyMRR(currency)))
    return SubscriptionStats(
        total_customers=sum(by_status[s] for s in LIVE_STATUSES),
        active_subscriptions=by_status["active"],
        trial_subscriptions=by_status["trialing"],
        past_due_subscriptions=by_status["past_due"],
        canceled_subscriptions=by_status["canceled"],
        reporting=reporting,
        other_currencies=[_figures(mrr[c]) for c in sorted(mrr)],
    )


# --- MRR over time ---------------------------------------------------------------------------------


@dataclass
class MonthMRR:
    """One month of one currency: MRR at its start and at its end (now, for the current month), and
    the movements between; ``start + new + expansion + contraction + churn == end`` exactly."""

    month: dt.date  # first day
    currency: str
    start: Decimal = ZERO
    end: Decimal = ZERO
    new: Decimal = ZERO
    expansion: Decimal = ZERO
    contraction: Decimal = ZERO
    churn: Decimal = ZERO


def _month_starts(today: dt.date, months: int) -> list[dt.date]:
    first = today.replace(day=1)
    out = [first]
    for _ in range(months - 1):
        first = (first - dt.timedelta(days=1)).replace(day=1)
        out.append(first)
    return out[::-1]


_MONTHLY = "({p}.fee - {off}) / ({p}.interval_count * CASE WHEN {p}.interval = 'year' THEN 12 ELSE 1 END)"

#: The coupon terms of the discount of a subscription ``s``'s period starting at ``{start}`` (none: no row);
#: an ``amount_off`` in another currency than the plan ``pl`` takes nothing off.
_DISCOUNT_OF = (
    "SELECT c.percent_off, CASE WHEN c.currency = pl.currency THEN c.amount_off END AS amount_off "
    "FROM subscriptions_subscriptiondiscount d JOIN subscriptions_coupon c ON c.id = d.coupon_id "
    "WHERE d.subscription_id = s.id AND d.start <= {start} AND (d.\"end\" IS NULL OR d.\"end\" > {start}) "
    "ORDER BY d.start DESC, d.id DESC LIMIT 1"
)

_HISTORY_SQL = """
WITH points(i, t) AS (SELECT * FROM unnest(%(idx)s::int[], %(ts)s::timestamptz[])),
snap AS (
    SELECT pt.i, s.team_id, COALESCE(s.user_id, 0) AS member, pl.currency, SUM({monthly}) AS mrr
    FROM points pt
    JOIN {period} p ON p.period_start <= pt.t AND p.period_end > pt.t AND NOT p.is_trial
    JOIN {subscription} s ON s.id = p.subscription_id AND (s.ended_at IS NULL OR s.ended_at > pt.t)
    -- The status at pt.t (the history's latest move by then): only active and past due count.
    AND COALESCE((SELECT c.to_status FROM {status_change} c WHERE c.subscription_id = s.id AND c.at <= pt.t
                  ORDER BY c.at DESC, c.id DESC LIMIT 1), 'active') = ANY(%(statuses)s)
    LEFT JOIN LATERAL (
        -- A change inside the period: the plan is the latest change's new plan (its charge) from the
        -- change on, and the next change's old plan (its credit) before it.
        SELECT r.plan_id FROM {proration} r
        WHERE r.subscription_id = s.id AND r.period_start >= p.period_start AND r.period_start < p.period_end
          AND ((r.kind = 'charge' AND r.period_start <= pt.t) OR (r.kind = 'credit' AND r.period_start > pt.t))
        ORDER BY r.kind = 'charge' DESC, CASE WHEN r.kind = 'charge' THEN r.period_start END DESC,
                 r.period_start, r.id DESC
        LIMIT 1
    ) u ON TRUE
    JOIN {plan} pl ON pl.id = COALESCE(u.plan_id, p.plan_id)
    LEFT JOIN LATERAL ({discount_of_period}) dc ON TRUE
    WHERE pt.i < %(now)s
    GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT %(now)s, s.team_id, COALESCE(s.user_id, 0), pl.currency, SUM({monthly})
    FROM {subscription} s JOIN {plan} pl ON pl.id = s.plan_id
    LEFT JOIN (SELECT id, percent_off, amount_off, currency AS off_currency FROM {coupon}) dc0
           ON dc0.id = s.discount_coupon_id
    CROSS JOIN LATERAL (SELECT dc0.percent_off,
                               CASE WHEN dc0.off_currency = pl.currency THEN dc0.amount_off END AS amount_off) dc
    WHERE s.status = ANY(%(statuses)s)
    GROUP BY 1, 2, 3, 4
),
grid AS (
    SELECT k.team_id, k.member, k.currency, pt.i, COALESCE(sn.mrr, 0) AS mrr
    FROM (SELECT DISTINCT team_id, member, currency FROM snap) k CROSS JOIN points pt
    LEFT JOIN snap sn ON sn.i = pt.i AND sn.team_id = k.team_id AND sn.member = k.member AND sn.currency = k.currency
),
moves AS (
    SELECT i, currency, mrr, LAG(mrr) OVER (PARTITION BY team_id, member, currency ORDER BY i) AS prev FROM grid
)
SELECT i, currency, SUM(mrr),
       SUM(CASE WHEN prev = 0 AND mrr > 0 THEN mrr ELSE 0 END),
       SUM(CASE WHEN prev > 0 AND mrr > prev THEN mrr - prev ELSE 0 END),
       SUM(CASE WHEN mrr > 0 AND mrr < prev THEN mrr - prev ELSE 0 END),
       SUM(CASE WHEN prev > 0 AND mrr = 0 THEN -prev ELSE 0 END)
FROM moves GROUP BY i, currency ORDER BY i, currency
"""


def mrr_history(*, months: int = 12, now: dt.datetime | None = None) -> dict[str, list[MonthMRR]]:
    """MRR of the last ``months`` calendar months (UTC), the current one last, per currency (1 query).

    Each month runs from its first instant (00:00 UTC on the 1st) to the next month's first instant,
    the current month to ``now``. Movements are per subscriber (a team, or one member of a team)
    and currency, as ``subscriptions.mrr.mrr_movements`` defines them; a month's ``end`` is the
    next month's ``start``.

    Returns:
        ``{currency: [MonthMRR, …]}``, ``months`` entries per currency, oldest first, exact amounts.
    """
    now = now or timezone.now()
    starts = _month_starts(now.astimezone(dt.UTC).date(), months)
    instants = [dt.datetime.combine(day, dt.time(), dt.UTC) for day in starts] + [now]
    sql = _HISTORY_SQL.format(
        proration=SubscriptionProration._meta.db_table, period=SubscriptionPeriod._meta.db_table,
        subscription=Subscription._meta.db_table, plan=Plan._meta.db_table,
        status_change=SubscriptionStatusChange._meta.db_table,
        monthly=_MONTHLY.format(p="pl", off=DISCOUNT_SQL.format(c="dc", fee="pl.fee")),
        discount_of_period=_DISCOUNT_OF.format(start="p.period_start"),
        coupon=Coupon._meta.db_table,
    )
    params = {"idx": list(range(len(instants))), "ts": instants, "now": len(instants) - 1,
              "statuses": list(MRR_STATUSES)}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    history: dict[str, list[MonthMRR]] = {}
    for i, currency, total, *moves in rows:
        if currency not in history:
            history[currency] = [MonthMRR(month=day, currency=currency) for day in starts]
        total = quantize_metered(total)
        if i < months:
            history[currency][i].start = total
        if i > 0:
            month = history[currency][i - 1]
            month.end = total
            for name, amount in zip(MOVEMENTS, moves):
                setattr(month, name, quantize_metered(amount))
    return history


# --- lists ------------------------------------------------------------------------------------------


def subscriptions_by_tier() -> list[dict]:
    """Live subscriptions by tier and status: ``[{"tier", "status", "count"}]``, by tier then status (1 query)."""
    rows = (Subscription.objects.filter(status__in=LIVE_STATUSES).order_by()
            .values("plan__tier", "status").annotate(count=Count("id")).order_by("plan__tier", "status"))
    return [{"tier": row["plan__tier"], "status": row["status"], "count": row["count"]} for row in rows]


def trials_ending(*, within: dt.timedelta = dt.timedelta(days=7), now: dt.datetime | None = None) -> QuerySet:
    """Trialing subscriptions whose trial ends in ``[now, now + within)``, soonest first."""
    now = now or timezone.now()
    return (Subscription.objects.filter(status=Subscription.Status.TRIALING, trial_end__gte=now,
                                        trial_end__lt=now + within)
            .select_related("team", "user", "plan").order_by("trial_end", "pk"))
