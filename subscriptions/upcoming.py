"""The upcoming invoice as the API and the admin show it: ``subscriptions.preview.subscription_upcoming_invoice``
(the renewal's own line builders, nothing written) behind the checks and the default of a plan change.

A change is checked as ``subscription_change_plan`` checks it (not the same plan, the same
currency, an active plan, a live subscription) and ``when`` defaults as it does: an upgrade (a
monthly amount at least the current one) ``now``, a downgrade at ``period_end``. Lines carry a
``kind``: ``fee``, ``usage`` (overage), ``proration_credit``, ``proration_charge``,
``minimum_commitment``; amounts are in minor units, as the invoice rounds them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from subscriptions.errors import InvalidSubscriptionRequest, PlanArchived
from subscriptions.models import Plan, Subscription
from subscriptions.preview import subscription_upcoming_invoice as preview_upcoming_invoice
from subscriptions.services.invoicing import LineDraft

ZERO = Decimal(0)


@dataclass
class UpcomingLine:
    description: str
    kind: str
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


def subscription_upcoming_invoice(*, subscription: Subscription, plan: Plan | None = None, when: str | None = None,
                                  proration: str = "second", at: dt.datetime | None = None) -> Upcoming:
    """The next invoice of ``subscription``, or of a change to ``plan`` at ``at`` (default now), unwritten.

    Raises:
        InvalidSubscriptionRequest: a canceled subscription; the same plan or another currency (param ``plan``).
        PlanArchived: an archived plan.
    """
    sub = subscription
    old = sub.plan
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
        upgrade = plan.fee / plan.months_per_period >= old.fee / old.months_per_period
        when = when or ("now" if upgrade else "period_end")
    upcoming = preview_upcoming_invoice(subscription=sub, at=at, plan=plan, when=when or "now", proration=proration)
    return Upcoming(
        subscription=sub, plan=plan or sub.pending_plan or old, when=when if plan is not None else "renewal",
        issued_at=upcoming.issued_at or sub.current_period_end, currency=upcoming.currency,
        lines=[UpcomingLine(description=line.description, kind=_kind(line), period_start=_bound(line, "period_start"),
                            period_end=_bound(line, "period_end"), amount=amount)
               for line, amount in zip(upcoming.lines, upcoming.amounts)],
        total=upcoming.subtotal,
    )
