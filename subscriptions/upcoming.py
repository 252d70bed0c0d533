"""The upcoming invoice of a subscription, and of a plan change before it is made (Stripe's
``invoices/upcoming`` with ``subscription_items``): computed from the same line builders as the
renewal (``subscriptions.services.invoicing``) and the same proration as the change
(``subscriptions.services.lifecycle.proration_preview``); nothing is written.

* No change: the next renewal invoice, at ``current_period_end``: the prorations waiting for it,
  the overage of the current period so far, and the next period's fee (of ``pending_plan`` if a
  downgrade waits; none when the subscription cancels at the period end).
* A change ``now`` within the same period length: the invoice that will carry it: the pending
  prorations, the credit for the unused time of the current fee and the charge for the remaining
  time on the new plan (they sum to the plan difference for the remaining time, to the minor
  unit), the overage so far, and the next period's fee on the new plan.
* A change ``now`` to another period length (monthly to yearly): the invoice written at once: the
  credit, the overage so far and the new plan's first period from now.
* A change at ``period_end``: the next renewal invoice on the new plan.
* A trialing subscription: no proration; the invoice at the trial's end on the new plan.

Amounts are rounded to minor units as the invoice rounds them (prorations keep their own rounded
amounts, the rest by largest remainder, ``InvoiceDraft.round``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from subscriptions.calendar import period_after, period_boundary
from subscriptions.errors import InvalidSubscriptionRequest, PlanArchived
from subscriptions.models import Plan, Subscription, SubscriptionProration
from subscriptions.selectors import prorations_pending, subscription_usage
from subscriptions.services.invoicing import InvoiceDraft, LineDraft, fee_line, overage_lines, proration_line
from subscriptions.services.lifecycle import proration_preview

ZERO = Decimal(0)


@dataclass
class UpcomingLine:
    description: str
    kind: str  # fee, usage, proration_credit, proration_charge, minimum_commitment
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    amount: Decimal  # minor units; negative for a credit


@dataclass
class Upcoming:
    """An invoice that is not written: its lines and total in minor units of ``currency``, and when it would be issued."""

    subscription: Subscription
    plan: Plan
    when: str  # renewal, now, period_end
    issued_at: dt.datetime
    currency: str
    lines: list[UpcomingLine] = field(default_factory=list)
    total: Decimal = ZERO


def _kind(line: LineDraft) -> str:
    section = line.details.get("section", "")
    if section == "proration":
        return f"proration_{line.details.get('proration')}"
    return {"overage": "usage"}.get(section, section)


def _bound(line: LineDraft, name: str) -> dt.datetime | None:
    value = line.details.get(name)
    return dt.datetime.fromisoformat(value) if value else None


def _preview_proration(sub: Subscription, *, old: Plan, new: Plan | None, at: dt.datetime, by: str) -> list[LineDraft]:
    p = proration_preview(subscription=sub, plan=new, at=at, by=by)
    rows = []
    if p.credit_precise or p.credit:
        rows.append(SubscriptionProration(subscription=sub, plan=old, kind="credit", period_start=at,
                                          period_end=sub.current_period_end, description=f"Unused time on {old.name}",
                                          amount_precise=p.credit_precise, amount=p.credit, currency=old.currency))
    if new is not None and (p.charge_precise or p.charge):
        rows.append(SubscriptionProration(subscription=sub, plan=new, kind="charge", period_start=at,
                                          period_end=sub.current_period_end,
                                          description=f"Remaining time on {new.name}",
                                          amount_precise=p.charge_precise, amount=p.charge, currency=new.currency))
    return [proration_line(row) for row in rows]


def _next_period(sub: Subscription, plan: Plan, start: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    return period_after(anchor=sub.billing_anchor, months=plan.months_per_period, end=start, time_zone=sub.time_zone)


def subscription_upcoming_invoice(*, subscription: Subscription, plan: Plan | None = None, when: str | None = None,
                                  proration: str = "second", at: dt.datetime | None = None) -> Upcoming:
    """The next invoice of ``subscription``, or of a change to ``plan`` at ``at`` (default now), unwritten.

    Args:
        subscription: a live subscription.
        plan: the plan to preview a change to; ``None`` previews the next renewal.
        when: ``now`` or ``period_end``; default as ``subscription_change_plan``: an upgrade (a monthly
            amount at least the current one) now, a downgrade at the period end.
        proration: ``second`` or ``day``, as the change.

    Raises:
        InvalidSubscriptionRequest: the same plan, another currency (param ``plan``), a canceled subscription.
        PlanArchived: an archived plan.
    """
    at = at or timezone.now()
    sub = subscription
    old = sub.plan
    tz = sub.time_zone
    if sub.status == Subscription.Status.CANCELED:
        raise InvalidSubscriptionRequest("the subscription is canceled: it has no upcoming invoice", param="subscription")
    if plan is not None:
        if plan.pk == old.pk:
            raise InvalidSubscriptionRequest(f"the subscription is on plan {plan.code} already", param="plan")
        if plan.currency != old.currency:
            raise InvalidSubscriptionRequest(f"plan {plan.code} is in {plan.currency}, the subscription in "
                                             f"{old.currency}", param="plan")
        if not plan.is_active:
            raise PlanArchived(f"plan {plan.code} is archived", param="plan")
        monthly = (plan.fee / plan.months_per_period) >= (old.fee / old.months_per_period)
        when = when or ("now" if monthly else "period_end")
    else:
        when = "renewal"
    at = min(max(at, sub.current_period_start), sub.current_period_end)
    trialing = sub.status == Subscription.Status.TRIALING
    lines: list[LineDraft] = [proration_line(row) for row in prorations_pending(subscription=sub)]
    overage = [] if trialing else overage_lines(subscription_usage(subscription=sub, at=at), time_zone=tz)
    issued_at = sub.current_period_end
    if when == "now" and not trialing and plan.months_per_period != old.months_per_period:
        lines += _preview_proration(sub, old=old, new=None, at=at, by=proration) + overage
        start, end = at, period_boundary(anchor=at, months=plan.months_per_period, n=1, time_zone=tz)
        lines.append(fee_line(plan=plan, start=start, end=end, time_zone=tz))
        issued_at = at
    else:
        next_plan = plan or sub.pending_plan or old
        if when == "now" and not trialing:
            lines += _preview_proration(sub, old=old, new=plan, at=at, by=proration)
        lines += overage
        if not sub.cancel_at_period_end or plan is not None:
            start, end = _next_period(sub, next_plan, sub.current_period_end)
            lines.append(fee_line(plan=next_plan, start=start, end=end, time_zone=tz))
    draft = InvoiceDraft(subscription=sub, period_start=at.date(), period_end=issued_at.date(), currency=old.currency,
                         lines=lines).round()
    return Upcoming(
        subscription=sub, plan=plan or sub.pending_plan or old, when=when, issued_at=issued_at, currency=old.currency,
        lines=[UpcomingLine(description=line.description, kind=_kind(line), period_start=_bound(line, "period_start"),
                            period_end=_bound(line, "period_end"), amount=amount)
               for line, amount in zip(draft.lines, draft.amounts)],
        total=draft.subtotal,
    )
