"""The upcoming invoice: what the next renewal would bill, and what a plan change would prorate; nothing written.

Stripe's "upcoming invoice": the API's preview before a change is committed and the admin's
change-plan form call :func:`subscription_upcoming_invoice`; the renewal bills the same lines
(``subscriptions.services.invoicing``), so the preview and the invoice agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from .calendar import period_after, period_boundary
from .models import Plan, Subscription
from .proration import Proration
from .selectors import (
    MeterUsage,
    plans_with_charges,
    prorations_pending,
    subscription_discount,
    subscription_usage,
)
from .services.invoicing import (
    InvoiceDraft,
    LineDraft,
    discount_line,
    fee_line,
    local_date,
    minimum_commitment_line,
    overage_lines,
    proration_line,
)
from .services.lifecycle import proration_preview

ZERO = Decimal(0)


@dataclass
class UpcomingInvoice:
    """The next invoice of a subscription, computed without writing.

    ``lines`` are :class:`~subscriptions.services.invoicing.LineDraft` (``description``,
    ``amount_precise``, ``details["section"]``: ``fee``, ``proration``, ``overage``,
    ``minimum_commitment``) and ``amounts`` their rounded amounts in minor units, summing to
    ``subtotal`` (before tax). ``usage`` is the current period's usage per meter up to ``at``;
    ``proration`` the credit and charge of the previewed change (``None`` without one).
    ``period_start``/``period_end`` are the instants of the period whose fee it bills (``None``
    when the subscription ends at the period end).
    """

    subscription: Subscription
    currency: str
    at: dt.datetime
    period_start: dt.datetime | None
    period_end: dt.datetime | None
    lines: list[LineDraft] = field(default_factory=list)
    amounts: list[Decimal] = field(default_factory=list)
    subtotal: Decimal = ZERO
    usage: list[MeterUsage] = field(default_factory=list)
    proration: Proration | None = None
    #: When the invoice would be issued: the period end, or ``at`` for a change of period length now.
    issued_at: dt.datetime | None = None


def subscription_upcoming_invoice(*, subscription: Subscription, at: dt.datetime | None = None,
                                  plan: Plan | None = None, when: str = "now",
                                  proration: str = "second") -> UpcomingInvoice:
    """The invoice the renewal at ``current_period_end`` would write, with a change to ``plan`` previewed.

    Args:
        subscription: a live subscription.
        at: the instant the usage is read up to and a previewed change happens (default now).
        plan: a plan to preview a change to (``None``: no change).
        when: ``"now"`` (prorated at ``at``) or ``"period_end"`` (the next fee on ``plan``).
        proration: ``"second"`` or ``"day"``.

    Returns:
        An :class:`UpcomingInvoice`. Writes nothing.
    """
    at = at or timezone.now()
    sub = subscription
    tz = sub.time_zone
    plans = plans_with_charges({sub.plan_id} | ({sub.pending_plan_id} if sub.pending_plan_id else set())
                               | ({plan.pk} if plan else set()))
    current = plans[sub.plan_id]
    if (plan is not None and when == "now" and sub.status != Subscription.Status.TRIALING
            and plans[plan.pk].months_per_period != current.months_per_period):
        return _interval_change_now(sub, current=current, new=plans[plan.pk], at=at, proration=proration)
    lines: list[LineDraft] = []
    p = None
    next_plan = plans[sub.pending_plan_id] if sub.pending_plan_id else current
    usage_plan = current
    if plan is not None:
        next_plan = plans[plan.pk]
        if when == "now":
            # A change now moves the period's usage onto the new plan too: the renewal prices it so.
            p = proration_preview(subscription=sub, plan=plan, at=at, by=proration)
            usage_plan = next_plan
    usage = (subscription_usage(subscription=sub, at=at, plan=usage_plan)
             if sub.status != Subscription.Status.TRIALING else [])
    start = end = None
    if not sub.cancel_at_period_end:
        start, end = period_after(anchor=sub.billing_anchor, months=next_plan.months_per_period,
                                  end=sub.current_period_end, time_zone=tz)
        lines.append(fee_line(plan=next_plan, start=start, end=end, time_zone=tz))
        lines += _discount_lines(sub, next_plan, start, end)
    lines += [proration_line(pending) for pending in prorations_pending(subscription=sub)]
    if p is not None:
        if p.credit:
            lines.append(LineDraft(description=f"Unused time on {current.name}", amount_precise=p.credit_precise,
                                   amount=p.credit, details={"kind": "subscription", "section": "proration",
                                                             "proration": "credit"}))
        if p.charge:
            lines.append(LineDraft(description=f"Remaining time on {next_plan.name}", amount_precise=p.charge_precise,
                                   amount=p.charge, details={"kind": "subscription", "section": "proration",
                                                             "proration": "charge"}))
    lines += overage_lines(usage, time_zone=tz)
    if usage:
        true_up = minimum_commitment_line(plan=usage_plan, fee=usage_plan.fee, usage=usage, start=sub.current_period_start,
                                          end=sub.current_period_end, time_zone=tz)
        if true_up:
            lines.append(true_up)
    draft = InvoiceDraft(subscription=sub, period_start=local_date(start or sub.current_period_start, tz),
                         period_end=local_date(end or sub.current_period_end, tz), currency=current.currency,
                         lines=lines).round()
    return UpcomingInvoice(subscription=sub, currency=current.currency, at=at, period_start=start, period_end=end,
                           lines=draft.lines, amounts=draft.amounts, subtotal=draft.subtotal, usage=usage, proration=p,
                           issued_at=sub.current_period_end)


def _discount_lines(sub: Subscription, plan: Plan, start: dt.datetime, end: dt.datetime) -> list[LineDraft]:
    """The discount line of ``plan``'s fee for the period starting at ``start``, when a discount covers it."""
    discount = subscription_discount(subscription=sub, period_start=start)
    line = discount and discount_line(discount=discount, plan=plan, start=start, end=end, time_zone=sub.time_zone)
    return [line] if line else []


def _interval_change_now(sub: Subscription, *, current: Plan, new: Plan, at: dt.datetime,
                         proration: str) -> UpcomingInvoice:
    """The invoice a change now to a plan of another period length (monthly to yearly) writes at once.

    Stripe's rule, as ``subscription_change_plan`` applies it: switching the interval resets the
    billing anchor to the change and invoices now the new plan's first period ``[at, at + its
    months)`` in advance, less a credit for the unused time of the current fee (by the second or
    the day), with the pending prorations and the current period's usage so far priced on the
    current plan (and its minimum-commitment true-up).
    """
    tz = sub.time_zone
    at = min(max(at, sub.current_period_start), sub.current_period_end)
    p = proration_preview(subscription=sub, plan=None, at=at, by=proration)
    start = at
    end = period_boundary(anchor=at, months=new.months_per_period, n=1, time_zone=tz)
    lines = [fee_line(plan=new, start=start, end=end, time_zone=tz), *_discount_lines(sub, new, start, end)]
    lines += [proration_line(pending) for pending in prorations_pending(subscription=sub)]
    if p.credit_precise or p.credit:
        lines.append(LineDraft(description=f"Unused time on {current.name}", amount_precise=p.credit_precise,
                               amount=p.credit, details={"kind": "subscription", "section": "proration",
                                                         "proration": "credit", "period_start": at.isoformat(),
                                                         "period_end": sub.current_period_end.isoformat()}))
    usage = subscription_usage(subscription=sub, period_start=sub.current_period_start, period_end=at, plan=current)
    lines += overage_lines(usage, time_zone=tz)
    if usage:
        true_up = minimum_commitment_line(plan=current, fee=current.fee, usage=usage, start=sub.current_period_start,
                                          end=sub.current_period_end, time_zone=tz)
        if true_up:
            lines.append(true_up)
    draft = InvoiceDraft(subscription=sub, period_start=local_date(start, tz), period_end=local_date(end, tz),
                         currency=current.currency, lines=lines).round()
    return UpcomingInvoice(subscription=sub, currency=current.currency, at=at, period_start=start, period_end=end,
                           lines=draft.lines, amounts=draft.amounts, subtotal=draft.subtotal, usage=usage, proration=p,
                           issued_at=at)
