"""Renewal: bill each subscription whose period has ended, once per subscription and period.

A subscription is due when ``current_period_end <= at``. Renewing it at its boundary ``B``:

* a trial (``trialing``) becomes ``active``; its free period's usage is not billed;
* with ``cancel_at_period_end`` it is canceled at ``B`` (``ended_at = B``); a final invoice carries
  the ended period's overage and the prorations still pending, if any is not zero;
* otherwise the next period ``[B, C)`` follows the billing anchor (``subscriptions.calendar``), on
  ``pending_plan`` if a downgrade waits, and one invoice carries the coming period's fee, the
  pending prorations and the ended period's overage (``subscriptions.services.invoicing``).

Idempotent per subscription and period: the due subscriptions are locked (``FOR UPDATE``, pk
order) and re-read, so a second pass finds their period advanced and writes nothing; the unique
``(subscription, period_start)`` of ``SubscriptionPeriod`` stops a duplicate even if two passes
raced; the prepaid wallet payment is keyed by subscription and period.

The batch path writes each batch's periods, invoices and lines with bulk inserts, a handful of
queries per batch whatever its size (``bench/subscriptions_renewal.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from ..bulk import ids_take, rows_copy
from ..calendar import period_after
from ..models import Subscription, SubscriptionPeriod, SubscriptionProration
from ..selectors import discount_for, discounts_running, meter_usage, plans_with_charges, usage_groups
from .invoicing import (
    InvoiceDraft,
    billing_settings_of,
    discount_line,
    fee_line,
    invoices_pay_from_wallets,
    invoices_write,
    local_date,
    minimum_commitment_line,
    overage_lines,
    proration_line,
)
from .status import status_changes_record, status_move_check, subscriptions_mark_past_due


@dataclass
class RenewalResult:
    """What one renewal pass did: counts, and the subscriptions whose prepaid payment was refused."""

    renewed: int = 0
    canceled: int = 0
    invoices: int = 0
    lines: int = 0
    past_due: list[int] = field(default_factory=list)

    def add(self, other: RenewalResult) -> None:
        self.renewed += other.renewed
        self.canceled += other.canceled
        self.invoices += other.invoices
        self.lines += other.lines
        self.past_due += other.past_due


_SUBSCRIPTION_UPDATE_SQL = """
UPDATE subscriptions_subscription AS s
   SET current_period_start = v.ps, current_period_end = v.pe, plan_id = v.plan, pending_plan_id = NULL,
       status = v.status, ended_at = v.ended, discount_coupon_id = v.coupon, updated_at = %s
  FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::text[], %s::timestamptz[],
              %s::bigint[])
       AS v(id, ps, pe, plan, status, ended, coupon)
 WHERE s.id = v.id
"""
#: The renewals that keep their plan, status and discount's coupon (most): the period moves, and the
#: counts' triggers (``UPDATE OF plan_id, status, discount_coupon_id``) do not fire.
_SUBSCRIPTION_PERIOD_SQL = """
UPDATE subscriptions_subscription AS s
   SET current_period_start = v.ps, current_period_end = v.pe, updated_at = %s
  FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(id, ps, pe)
 WHERE s.id = v.id
"""


def _renew_locked(subs: Sequence[Subscription], *, at: dt.datetime) -> RenewalResult:
    """Bill one boundary (``current_period_end``) of each locked, due subscription; inside a transaction."""
    result = RenewalResult()
    if not subs:
        return result
    ids = [s.pk for s in subs]
    ended = _ended_periods(subs)
    plans = plans_with_charges({s.plan_id for s in subs} | {s.pending_plan_id for s in subs if s.pending_plan_id})
    pending: dict[int, list[SubscriptionProration]] = {}
    for p in SubscriptionProration.objects.raw(
            f"SELECT * FROM {SubscriptionProration._meta.db_table} WHERE subscription_id = ANY(%s::bigint[]) "
            "AND invoice_id IS NULL ORDER BY id", [ids]):
        pending.setdefault(p.subscription_id, []).append(p)
    discounts = discounts_running(subscription_ids=ids, since=min(s.current_period_end for s in subs))
    billed = [s for s in subs if not (ended.get(s.pk) and ended[s.pk].is_trial)]
    groups = usage_groups([(s.pk, s.team_id, s.user_id, s.current_period_start, s.current_period_end) for s in billed])

    drafts, new_periods, updates, moves, once_used = [], [], [], [], []
    unchanged: set[int] = set()
    for sub in subs:
        start, boundary, tz = sub.current_period_start, sub.current_period_end, sub.time_zone
        period = ended.get(sub.pk)
        plan = plans[sub.plan_id]
        sub.plan = plan
        usage = []
        lines = []
        if period is None or not period.is_trial:
            usage = meter_usage(plan=plan, groups=groups.get(sub.pk, []), period_start=start, period_end=boundary)
        if sub.cancel_at_period_end:
            lines = [proration_line(p) for p in pending.get(sub.pk, [])] + overage_lines(usage, time_zone=tz)
            true_up = _true_up(sub, period, usage)
            if true_up:
                lines.append(true_up)
            s_date, e_date = local_date(start, tz), local_date(boundary, tz)
            draft = InvoiceDraft(subscription=sub, period_start=s_date, period_end=max(e_date, s_date + dt.timedelta(days=1)),
                                 currency=plan.currency, lines=lines, key_instant=boundary)
            if not draft.is_empty:
                drafts.append((draft, period, None))
            updates.append((sub.pk, start, boundary, plan.pk, Subscription.Status.CANCELED, boundary,
                            sub.discount_coupon_id))
            status_move_check(subscription_id=sub.pk, from_status=sub.status, to_status=Subscription.Status.CANCELED)
            moves.append((sub.pk, sub.status, Subscription.Status.CANCELED, boundary))
            sub.status, sub.ended_at = Subscription.Status.CANCELED, boundary
            result.canceled += 1
            continue
        next_plan = plans[sub.pending_plan_id] if sub.pending_plan_id else plan
        next_start, next_end = period_after(anchor=sub.billing_anchor, months=next_plan.months_per_period,
                                            end=boundary, time_zone=tz)
        lines.append(fee_line(plan=next_plan, start=next_start, end=next_end, time_zone=tz))
        discount = discount_for(discounts.get(sub.pk, ()), next_start)
        coupon_id = discount.coupon_id if discount is not None else None
        if discount is not None:
            line = discount_line(discount=discount, plan=next_plan, start=next_start, end=next_end, time_zone=tz)
            if line:
                lines.append(line)
            if discount.coupon.duration == "once" and discount.end != next_end:
                once_used.append((discount.pk, next_end))
        lines += [proration_line(p) for p in pending.get(sub.pk, [])]
        lines += overage_lines(usage, time_zone=tz)
        true_up = _true_up(sub, period, usage)
        if true_up:
            lines.append(true_up)
        draft = InvoiceDraft(subscription=sub, period_start=local_date(next_start, tz),
                             period_end=local_date(next_end, tz), currency=next_plan.currency, lines=lines,
                             key_instant=next_start)
        new_period = {"subscription_id": sub.pk, "plan_id": next_plan.pk, "period_start": next_start,
                      "period_end": next_end, "fee": next_plan.fee, "currency": next_plan.currency,
                      "is_trial": False, "usage": {}, "invoice_id": None, "usage_invoice_id": None}
        new_periods.append(new_period)
        if not draft.is_empty:
            drafts.append((draft, period, new_period))
        status = Subscription.Status.ACTIVE if sub.status == Subscription.Status.TRIALING else sub.status
        if status != sub.status:
            status_move_check(subscription_id=sub.pk, from_status=sub.status, to_status=status)
            moves.append((sub.pk, sub.status, status, boundary))
        updates.append((sub.pk, next_start, next_end, next_plan.pk, status, None, coupon_id))
        if (next_plan.pk == sub.plan_id and status == sub.status and not sub.pending_plan_id
                and coupon_id == sub.discount_coupon_id):
            unchanged.add(sub.pk)
        sub.discount_coupon_id = coupon_id
        sub.plan, sub.status = next_plan, status
        sub.current_period_start, sub.current_period_end = next_start, next_end
        result.renewed += 1

    invoice_drafts = [d[0] for d in drafts]
    billing = billing_settings_of(invoice_drafts) if invoice_drafts else {}
    invoices = invoices_write(invoice_drafts, at=at, billing=billing)
    result.invoices = len(invoices)
    result.lines = sum(len(d.lines) for d in invoice_drafts)
    # Each period keeps the invoice of its fee; the ended period, the one of its usage.
    usage_links = []
    for (_, ended_period, new_period), invoice in zip(drafts, invoices):
        if new_period is not None:
            new_period["invoice_id"] = invoice.pk
        if ended_period is not None:
            usage_links.append((ended_period.id, invoice.pk))
    for pk, row in zip(ids_take(SubscriptionPeriod, len(new_periods)), new_periods):
        row["id"] = pk
    rows_copy(SubscriptionPeriod, new_periods)
    with connection.cursor() as cursor:
        if usage_links:
            cursor.execute("UPDATE subscriptions_subscriptionperiod AS p SET usage_invoice_id = v.inv "
                           "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, inv) WHERE p.id = v.id",
                           [[a for a, _ in usage_links], [b for _, b in usage_links]])
        if once_used:
            # A coupon that applies once has been used: its discount ends with the period it discounted.
            cursor.execute("UPDATE subscriptions_subscriptiondiscount AS d SET \"end\" = v.e "
                           "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, e) WHERE d.id = v.id",
                           [[a for a, _ in once_used], [b for _, b in once_used]])
        now = timezone.now()
        same = [u for u in updates if u[0] in unchanged]
        changed = [u for u in updates if u[0] not in unchanged]
        if same:
            cursor.execute(_SUBSCRIPTION_PERIOD_SQL, [now, *[list(c) for c in list(zip(*same))[:3]]])
        if changed:
            cursor.execute(_SUBSCRIPTION_UPDATE_SQL, [now, *[list(c) for c in zip(*changed)]])
    status_changes_record(moves)
    unpaid = invoices_pay_from_wallets(list(zip(invoice_drafts, invoices)), billing)
    if unpaid:
        subscriptions_mark_past_due(subscriptions=unpaid, at=at)
        result.past_due = [s.pk for s in unpaid]
    return result


@dataclass(frozen=True)
class EndedPeriod:
    """The billed period that ends at a renewal's boundary (a ``SubscriptionPeriod`` row's figures)."""

    id: int
    is_trial: bool
    fee: object
    period_start: dt.datetime
    period_end: dt.datetime


def _ended_periods(subs: Sequence[Subscription]) -> dict[int, EndedPeriod]:
    """The billed period of each subscription's current period, by subscription id (one query)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.subscription_id, p.id, p.is_trial, p.fee, p.period_start, p.period_end "
            "FROM subscriptions_subscriptionperiod p "
            "JOIN unnest(%s::bigint[], %s::timestamptz[]) AS v(sid, ps) ON p.subscription_id = v.sid AND p.period_start = v.ps",
            [[s.pk for s in subs], [s.current_period_start for s in subs]],
        )
        return {row[0]: EndedPeriod(*row[1:]) for row in cursor.fetchall()}


def _true_up(sub: Subscription, period: EndedPeriod | None, usage) -> object:
    if period is None or period.is_trial:
        return None
    return minimum_commitment_line(plan=sub.plan, fee=period.fee, usage=usage, start=period.period_start,
                                   end=period.period_end, time_zone=sub.time_zone)


def _due(at: dt.datetime):
    return Subscription.objects.filter(status__in=Subscription.LIVE_STATUSES, current_period_end__lte=at)


def subscription_renew(*, subscription: Subscription, at: dt.datetime | None = None) -> RenewalResult:
    """Renew one subscription through every boundary up to ``at`` (default now); idempotent.

    Args:
        subscription: the subscription (re-read under its row lock).
        at: the instant to renew up to; every period that ended at or before it is billed, one
            invoice per boundary.

    Returns:
        A :class:`RenewalResult` (0 renewed when nothing was due: a second call writes nothing).
    """
    at = at or timezone.now()
    result = RenewalResult()
    with transaction.atomic():
        while True:
            locked = list(_due(at).filter(pk=subscription.pk).select_for_update(of=("self",)).select_related("team", "user"))
            if not locked:
                break
            result.add(_renew_locked(locked, at=at))
    subscription.refresh_from_db()
    return result


def subscriptions_renew_due(*, at: dt.datetime | None = None, batch_size: int = 1000,
                            on_batch=None) -> RenewalResult:
    """Renew every subscription due at ``at`` (default now), in batches of ``batch_size``; the command's service.

    Each batch is one transaction: its due subscriptions locked in pk order (``SKIP LOCKED``, so two
    passes at once share the work instead of waiting), billed, committed. Subscriptions that missed
    several boundaries are billed once per boundary. ``on_batch(result)`` is called after each batch.

    Returns:
        The pass's :class:`RenewalResult`; a second pass over the same ``at`` renews nothing.
    """
    at = at or timezone.now()
    total = RenewalResult()
    while True:
        # One round walks the due subscriptions in pk order; another round follows for those that
        # had several boundaries due, until a round finds nothing it may lock.
        round_count, last_pk = 0, 0
        while True:
            with transaction.atomic():
                batch = list(
                    _due(at).filter(pk__gt=last_pk).order_by("pk")
                    .select_for_update(of=("self",), skip_locked=True).select_related("team")[:batch_size]
                )
                if not batch:
                    break
                last_pk = batch[-1].pk
                done = _renew_locked(batch, at=at)
            round_count += len(batch)
            total.add(done)
            if on_batch:
                on_batch(done)
        if not round_count:
            return total
