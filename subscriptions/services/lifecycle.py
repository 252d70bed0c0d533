"""Subscription lifecycle: create, cancel, change plan, end or extend a trial.

Every service locks the subscription row (``FOR UPDATE``), re-reads it, checks the status move
(``subscriptions.services.status.subscription_check_transition``) and writes, in one
``transaction.atomic()``. Not a durable one: the API runs them inside the transaction that stores
an idempotent request's response. Times are aware datetimes; periods are ``[start, end)`` in UTC,
their calendar kept in the subscription's ``time_zone`` (``subscriptions.calendar``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_site.money import format_metered
from invoices.errors import InvoiceError
from invoices.models import Invoice, InvoiceLine
from invoices.services.credit_notes import credit_note_issue
from teams.models import Team, TeamMembership
from teams.selectors import team_currency_check

from ..calendar import period_boundary, zone
from ..errors import InvalidSubscriptionRequest, PlanArchived, SubscriptionExists, SubscriptionTransitionError
from ..models import Coupon, Plan, Subscription, SubscriptionPeriod, SubscriptionProration
from ..proration import Proration, prorate
from ..selectors import subscription_discount
from .discounts import discount_start
from .invoicing import InvoiceDraft, discount_line, fee_line, invoices_pay_from_wallets, invoices_write, local_date
from .renewal import _renew_locked
from .status import status_changes_record, subscription_check_transition, subscription_status_set

ZERO = Decimal(0)


def _lock(subscription: Subscription) -> Subscription:
    return (Subscription.objects.select_for_update(of=("self",)).select_related("plan", "team", "user")
            .get(pk=subscription.pk))


def _check_plan_open(plan: Plan) -> Plan:
    """The plan as stored now, refused when archived."""
    plan = Plan.objects.get(pk=plan.pk)
    if not plan.is_active:
        raise PlanArchived(f"plan {plan.code} is archived: nobody new subscribes to it or moves onto it", param="plan")
    return plan


def subscription_create(*, team: Team, plan: Plan, user=None, trial: bool | None = None,
                        trial_days: int | None = None, start: dt.datetime | None = None,
                        time_zone: str = "UTC", coupon: Coupon | None = None) -> Subscription:
    """Subscribe a team (or one member of it, ``user``) to ``plan``; bill the first period unless it is a trial.

    Args:
        team: the subscriber, or the team of the subscribing member.
        plan: an active plan in a currency the team is billed in.
        user: a member of ``team`` when the subscriber is that member; ``None`` for the team.
        trial: start with a trial (default: when the plan has trial days).
        trial_days: the trial's length in days (default ``plan.trial_days``).
        start: when the subscription starts (aware; default now); the billing anchor is ``start``,
            or the trial's end for a trial (Stripe resets the anchor at the trial's end).
        time_zone: the IANA zone whose calendar keeps the anchor's day (default ``"UTC"``).
        coupon: a coupon applied from ``start`` (``subscriptions.services.discounts``): the first
            paid period's fee is discounted when the coupon's duration reaches it.

    Returns:
        The subscription: ``trialing`` with ``trial_end = start + trial_days`` and a free first
        period ``[start, trial_end)``, or ``active`` with its first period billed at once on an
        issued invoice (paid from the wallet for prepaid teams).

    Raises:
        PlanArchived: the plan is archived.
        CurrencyNotAllowed: the team is not billed in the plan's currency (``param`` ``plan``).
        InvalidSubscriptionRequest: ``user`` is not a member of ``team``; an unknown time zone;
            a negative trial; an archived coupon or one in another currency (``param`` ``coupon``).
        SubscriptionExists: the subscriber already has a live subscription.
    """
    plan = _check_plan_open(plan)
    team_currency_check(team=team, currency=plan.currency, param="plan")
    zone(time_zone)
    if user is not None and not TeamMembership.objects.filter(team=team, user=user).exists():
        raise InvalidSubscriptionRequest(f"user {user} is not a member of team {team}", param="user")
    start = start or timezone.now()
    trial_days = plan.trial_days if trial_days is None else trial_days
    if trial_days < 0:
        raise InvalidSubscriptionRequest(f"trial_days must not be negative, got {trial_days}", param="trial_days")
    trial = trial_days > 0 if trial is None else trial
    with transaction.atomic():
        if trial and trial_days > 0:
            trial_end = start + dt.timedelta(days=trial_days)
            sub = Subscription(team=team, user=user, plan=plan, status=Subscription.Status.TRIALING, started_at=start,
                               billing_anchor=trial_end, time_zone=time_zone, current_period_start=start,
                               current_period_end=trial_end, trial_end=trial_end)
        else:
            end = period_boundary(anchor=start, months=plan.months_per_period, n=1, time_zone=time_zone)
            sub = Subscription(team=team, user=user, plan=plan, status=Subscription.Status.ACTIVE, started_at=start,
                               billing_anchor=start, time_zone=time_zone, current_period_start=start,
                               current_period_end=end)
        try:
            with transaction.atomic():
                sub.save()
        except IntegrityError:
            who = f"member {user} of team {team}" if user is not None else f"team {team}"
            raise SubscriptionExists(f"{who} already has a live subscription; change its plan instead",
                                     param="team") from None
        status_changes_record([(sub.pk, "", sub.status, start)])
        if coupon is not None:
            discount_start(subscription=sub, coupon=Coupon.objects.get(pk=coupon.pk), at=start)
        period = SubscriptionPeriod.objects.create(
            subscription=sub, plan=plan, period_start=sub.current_period_start, period_end=sub.current_period_end,
            is_trial=sub.status == Subscription.Status.TRIALING,
            fee=ZERO if sub.status == Subscription.Status.TRIALING else plan.fee, currency=plan.currency,
        )
        if not period.is_trial:
            _bill_first_period(sub, period, at=start)
    sub.refresh_from_db()
    return sub


def _bill_first_period(sub: Subscription, period: SubscriptionPeriod, *, at: dt.datetime) -> None:
    tz = sub.time_zone
    draft = InvoiceDraft(subscription=sub, period_start=local_date(period.period_start, tz),
                         period_end=local_date(period.period_end, tz), currency=sub.plan.currency,
                         lines=[fee_line(plan=sub.plan, start=period.period_start, end=period.period_end, time_zone=tz)],
                         key_instant=period.period_start)
    discount = subscription_discount(subscription=sub, period_start=period.period_start)
    if discount is not None:
        line = discount_line(discount=discount, plan=sub.plan, start=period.period_start, end=period.period_end,
                             time_zone=tz)
        if line:
            draft.lines.append(line)
    if draft.is_empty:
        return
    (invoice,) = invoices_write([draft], at=at)
    SubscriptionPeriod.objects.filter(pk=period.pk).update(invoice_id=invoice.pk)
    unpaid = invoices_pay_from_wallets([(draft, invoice)])
    if unpaid:
        subscription_status_set(subscription=sub, to_status=Subscription.Status.PAST_DUE, at=at)
        sub.save(update_fields=["status", "updated_at"])


def _proration_rows(sub: Subscription, p: Proration, *, old: Plan, new: Plan | None, at: dt.datetime,
                    key: str) -> list[SubscriptionProration]:
    """The credit (old plan's unused time) and charge (new plan's remaining time) rows of a change."""
    rows = []
    end = sub.current_period_end
    if p.credit_precise or p.credit:
        rows.append(SubscriptionProration(
            subscription=sub, plan=old, kind=SubscriptionProration.Kind.CREDIT, period_start=at, period_end=end,
            description=f"Unused time on {old.name} ({format_metered(old.fee, old.currency)}) from {at:%Y-%m-%d %H:%M} UTC",
            amount_precise=p.credit_precise, amount=p.credit, currency=old.currency, key=f"{key}-credit",
        ))
    if new is not None and (p.charge_precise or p.charge):
        rows.append(SubscriptionProration(
            subscription=sub, plan=new, kind=SubscriptionProration.Kind.CHARGE, period_start=at, period_end=end,
            description=f"Remaining time on {new.name} ({format_metered(new.fee, new.currency)}) from {at:%Y-%m-%d %H:%M} UTC",
            amount_precise=p.charge_precise, amount=p.charge, currency=new.currency, key=f"{key}-charge",
        ))
    return rows


def proration_preview(*, subscription: Subscription, plan: Plan | None, at: dt.datetime | None = None,
                      by: str = "second") -> Proration:
    """The proration a change to ``plan`` (``None``: a cancellation now) at ``at`` would make; writes nothing.

    Returns:
        A :class:`subscriptions.proration.Proration`: ``credit`` (≤ 0) for the unused time of the
        current fee, ``charge`` (≥ 0) for the remaining time on ``plan``, in minor units summing to ``net``.
    """
    at = at or timezone.now()
    # The plan in effect now is what the unused time is credited at (after an earlier change in the
    # period, the new plan's fee, not the fee billed at the period's start).
    new_fee = ZERO if plan is None else plan.fee
    old_fee = subscription.plan.fee
    if subscription.status == Subscription.Status.TRIALING:
        old_fee = new_fee = ZERO
    return prorate(old_fee=old_fee, new_fee=new_fee, currency=subscription.plan.currency,
                   start=subscription.current_period_start, end=subscription.current_period_end, at=at, by=by,
                   time_zone=subscription.time_zone)


def subscription_cancel(*, subscription: Subscription, at_period_end: bool = True,
                        at: dt.datetime | None = None, prorate_unused: bool = True) -> Subscription:
    """Cancel at the period end (default), or now with a prorated credit for the unused time.

    Args:
        subscription: a live subscription.
        at_period_end: ``True``: set ``cancel_at_period_end``; the renewal at ``current_period_end``
            cancels it and bills the period's overage. ``False``: cancel at ``at``.
        at: the instant of an immediate cancellation (default now).
        prorate_unused: with an immediate cancellation, credit the unused time of the current fee
            (by the second): a credit note on the period's invoice while it awaits payment,
            otherwise a pending credit (``SubscriptionProration``) for finance or the payments code
            to settle. The period's overage so far and any pending prorations go on a final invoice.

    Raises:
        SubscriptionTransitionError: the subscription is canceled already.
    """
    at = at or timezone.now()
    with transaction.atomic():
        sub = _lock(subscription)
        subscription_check_transition(subscription=sub, to_status=Subscription.Status.CANCELED)
        if at_period_end:
            sub.cancel_at_period_end, sub.canceled_at = True, at
            sub.save(update_fields=["cancel_at_period_end", "canceled_at", "updated_at"])
            return sub
        at = min(max(at, sub.current_period_start), sub.current_period_end)
        key = f"sub{sub.pk}-cancel-{at:%Y%m%dT%H%M%S}"
        rows = []
        if prorate_unused and sub.status != Subscription.Status.TRIALING:
            rows = _proration_rows(sub, proration_preview(subscription=sub, plan=None, at=at), old=sub.plan, new=None,
                                   at=at, key=key)
            SubscriptionProration.objects.bulk_create(rows)
            _credit_unused(sub, rows)
        # The period ends now: the renewal's cancellation path bills its usage and pending prorations.
        sub.cancel_at_period_end, sub.canceled_at = True, at
        if at > sub.current_period_start:
            sub.current_period_end = at
            sub.save(update_fields=["cancel_at_period_end", "canceled_at", "current_period_end", "updated_at"])
            _renew_locked([sub], at=at)
        else:
            subscription_status_set(subscription=sub, to_status=Subscription.Status.CANCELED, at=at)
            sub.ended_at = at
            sub.save(update_fields=["cancel_at_period_end", "canceled_at", "status", "ended_at", "updated_at"])
    sub.refresh_from_db()
    return sub


def _credit_unused(sub: Subscription, rows: list[SubscriptionProration]) -> None:
    """Settle a cancellation's credit with a credit note on the period's open invoice, when there is one."""
    credit = next((r for r in rows if r.kind == SubscriptionProration.Kind.CREDIT and r.amount < 0), None)
    if credit is None:
        return
    period = SubscriptionPeriod.objects.filter(subscription=sub, period_start=sub.current_period_start,
                                               invoice__isnull=False).select_related("invoice").first()
    if period is None or period.invoice.status not in Invoice.OPEN_STATUSES:
        return
    fee = InvoiceLine.objects.filter(invoice=period.invoice, details__section="fee").first()
    if fee is None or fee.amount < -credit.amount:
        return
    try:
        credit_note_issue(invoice=period.invoice, reason="order_change",
                          lines=[{"invoice_line": fee.pk, "amount": -credit.amount}],
                          description=credit.description)
    except InvoiceError:
        return  # credited already: the credit stays pending
    SubscriptionProration.objects.filter(pk=credit.pk).update(invoice=period.invoice)


def _monthly(plan: Plan) -> Decimal:
    return plan.fee / plan.months_per_period


def subscription_change_plan(*, subscription: Subscription, plan: Plan, at: dt.datetime | None = None,
                             when: str | None = None, proration: str = "second") -> Subscription:
    """Move a subscription to ``plan``: an upgrade now with proration, a downgrade at the period end by default.

    Args:
        subscription: a live subscription.
        plan: the new plan, active, in the same currency.
        at: the instant of the change (default now).
        when: ``"now"`` or ``"period_end"``; default ``"now"`` for an upgrade (a fee per month at
            least the current one) and ``"period_end"`` for a downgrade (Stripe's and Lago's default).
        proration: ``"second"`` (default) or ``"day"``.

    A change now within the same period length leaves two prorations for ``[at, period end)``: a
    credit of the old fee's unused time and a charge of the new fee's remaining time, split so
    they sum to the rounded difference (``subscriptions.proration``); the next invoice carries them.
    A change now to another period length (monthly to yearly) credits the unused time, ends the
    period at ``at`` and renews at once: the new plan's first period starts at ``at`` (the new
    billing anchor) and is invoiced with the credit and the usage so far. A trial changes plan
    without proration. A change at the period end sets ``pending_plan``.

    Raises:
        PlanArchived, InvalidSubscriptionRequest (same plan, another currency, bad ``when``),
        SubscriptionTransitionError (a canceled subscription).
    """
    at = at or timezone.now()
    plan = _check_plan_open(plan)
    if when not in (None, "now", "period_end"):
        raise InvalidSubscriptionRequest(f"when is 'now' or 'period_end', got {when!r}", param="when")
    if proration not in ("second", "day"):
        raise InvalidSubscriptionRequest(f"proration is 'second' or 'day', got {proration!r}", param="proration")
    with transaction.atomic():
        sub = _lock(subscription)
        if sub.status == Subscription.Status.CANCELED:
            subscription_check_transition(subscription=sub, to_status=Subscription.Status.ACTIVE)
        if plan.pk == sub.plan_id:
            raise InvalidSubscriptionRequest(f"the subscription is on plan {plan.code} already", param="plan")
        if plan.currency != sub.plan.currency:
            raise InvalidSubscriptionRequest(
                f"plan {plan.code} is in {plan.currency}, the subscription in {sub.plan.currency}: cancel and "
                "subscribe to change currency", param="plan")
        when = when or ("now" if _monthly(plan) >= _monthly(sub.plan) else "period_end")
        if when == "period_end":
            sub.pending_plan = plan
            sub.save(update_fields=["pending_plan", "updated_at"])
            return sub
        if sub.status == Subscription.Status.TRIALING:
            sub.plan, sub.pending_plan = plan, None
            sub.save(update_fields=["plan", "pending_plan", "updated_at"])
            SubscriptionPeriod.objects.filter(subscription=sub, period_start=sub.current_period_start).update(plan=plan)
            return sub
        at = min(max(at, sub.current_period_start), sub.current_period_end)
        key = f"sub{sub.pk}-change-{plan.pk}-{at:%Y%m%dT%H%M%S%f}"
        old = sub.plan
        if plan.months_per_period == old.months_per_period:
            p = proration_preview(subscription=sub, plan=plan, at=at, by=proration)
            SubscriptionProration.objects.bulk_create(_proration_rows(sub, p, old=old, new=plan, at=at, key=key))
            sub.plan, sub.pending_plan = plan, None
            sub.save(update_fields=["plan", "pending_plan", "updated_at"])
            SubscriptionPeriod.objects.filter(subscription=sub, period_start=sub.current_period_start).update(plan=plan)
            return sub
        # Another period length: credit the unused time, end the period now and start the new plan's.
        p = proration_preview(subscription=sub, plan=None, at=at, by=proration)
        SubscriptionProration.objects.bulk_create(_proration_rows(sub, p, old=old, new=None, at=at, key=key))
        if at > sub.current_period_start:
            sub.current_period_end = at
        sub.billing_anchor, sub.pending_plan = at, plan
        sub.save(update_fields=["current_period_end", "billing_anchor", "pending_plan", "updated_at"])
        _renew_locked([sub], at=at)
    sub.refresh_from_db()
    return sub


def subscription_trial_end(*, subscription: Subscription, at: dt.datetime | None = None) -> Subscription:
    """End a trial at ``at`` (default now): ``trialing`` → ``active``, the first paid period from ``at`` billed.

    The billing anchor becomes ``at``. The renewal does the same at ``trial_end`` for trials left
    to run out.

    Raises:
        SubscriptionTransitionError: the subscription is not trialing.
    """
    at = at or timezone.now()
    with transaction.atomic():
        sub = _lock(subscription)
        if sub.status != Subscription.Status.TRIALING:
            raise_not_trialing(sub)
        at = max(at, sub.current_period_start + dt.timedelta(seconds=1))
        sub.trial_end = sub.current_period_end = sub.billing_anchor = at
        sub.save(update_fields=["trial_end", "current_period_end", "billing_anchor", "updated_at"])
        _renew_locked([sub], at=at)
    sub.refresh_from_db()
    return sub


def raise_not_trialing(sub: Subscription) -> None:
    """Refuse a trial action on a subscription that is not trialing (409)."""
    raise SubscriptionTransitionError(f"subscription {sub.pk} is {sub.status}, not trialing", param="status")


def subscription_trial_extend(*, subscription: Subscription, trial_end: dt.datetime) -> Subscription:
    """Move a trialing subscription's ``trial_end`` (its free period's end and the billing anchor) to ``trial_end``.

    Raises:
        SubscriptionTransitionError: the subscription is not trialing.
        InvalidSubscriptionRequest: ``trial_end`` is not after the trial's start.
    """
    with transaction.atomic():
        sub = _lock(subscription)
        if sub.status != Subscription.Status.TRIALING:
            raise_not_trialing(sub)
        if trial_end <= sub.current_period_start:
            raise InvalidSubscriptionRequest("trial_end must be after the trial's start", param="trial_end")
        sub.trial_end = sub.current_period_end = sub.billing_anchor = trial_end
        sub.save(update_fields=["trial_end", "current_period_end", "billing_anchor", "updated_at"])
        SubscriptionPeriod.objects.filter(subscription=sub, period_start=sub.current_period_start).update(
            period_end=trial_end)
    return sub

