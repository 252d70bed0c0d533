"""Coupons and discounts: finance's coupons, and a coupon applied to (or removed from) a subscription.

A coupon's terms (``percent_off`` or ``amount_off`` with its ``currency``, ``duration``,
``duration_in_months``) never change once made (Stripe's rule): :func:`coupon_update` changes its
name and status only; an archived coupon is applied to no new subscription. Applying a coupon to a
subscription (:func:`subscription_discount_apply`) ends the discount it had at that instant and
starts the new one; :func:`subscription_discount_remove` ends it. What the discount takes off is
``subscriptions.discounts.discount_amount``; the renewal invoices it as a ``discount`` line.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing_site.money import parse_amount

from ..calendar import period_after, period_boundary
from ..errors import CouponCodeTaken, CouponTermsConflict, InvalidSubscriptionRequest, SubscriptionTransitionError
from ..models import Coupon, Subscription, SubscriptionDiscount
from ..selectors import subscription_discount

#: The coupon's terms: fixed once it is made.
COUPON_TERMS = ("percent_off", "amount_off", "currency", "duration", "duration_in_months")


def _terms(*, percent_off, amount_off, currency, duration, duration_in_months) -> dict:
    """The coupon's terms, checked; each refusal names its field."""
    if (percent_off is None) == (amount_off is None):
        raise CouponTermsConflict("a coupon has either percent_off or amount_off (with its currency)",
                                         param="percent_off" if percent_off is not None else "amount_off")
    out = {"percent_off": None, "amount_off": None, "currency": "", "duration": duration,
           "duration_in_months": None}
    if percent_off is not None:
        p = parse_amount(percent_off, param="percent_off", positive=True, decimal_places=2, text=True)
        if p > 100:
            raise InvalidSubscriptionRequest("percent_off is at most 100", param="percent_off")
        if currency:
            raise CouponTermsConflict("a percent_off coupon has no currency", param="currency")
        out["percent_off"] = p
    else:
        if not currency:
            raise CouponTermsConflict("an amount_off coupon needs its currency (ISO 4217, e.g. USD)", param="currency")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
            raise InvalidSubscriptionRequest("an amount_off coupon needs its currency (ISO 4217, e.g. USD)",
                                             param="currency")
        out["amount_off"] = parse_amount(amount_off, param="amount_off", positive=True, currency=currency,
                                         below=Decimal(10) ** 15, text=True)
        out["currency"] = currency
    if duration not in Coupon.Duration.values:
        raise InvalidSubscriptionRequest(f"duration is one of {', '.join(Coupon.Duration.values)}", param="duration")
    if duration == Coupon.Duration.REPEATING:
        if not isinstance(duration_in_months, int) or isinstance(duration_in_months, bool) or not 1 <= duration_in_months <= 1200:
            raise CouponTermsConflict("a repeating coupon needs duration_in_months (1 to 1,200)",
                                      param="duration_in_months")
        out["duration_in_months"] = duration_in_months
    elif duration_in_months is not None:
        raise CouponTermsConflict("duration_in_months is for repeating coupons only", param="duration_in_months")
    return out


def coupon_create(*, code: str, name: str, percent_off=None, amount_off=None, currency: str = "",
                  duration: str = Coupon.Duration.ONCE, duration_in_months: int | None = None) -> Coupon:
    """Make a coupon: ``percent_off`` (0 < p ≤ 100, 2 decimal places) or ``amount_off`` in ``currency``.

    Raises:
        CouponTermsConflict: (422) terms that do not fit together: both or neither amount, a currency
            beside a percent or none beside an amount, ``duration_in_months`` without ``repeating``
            or missing with it; naming the field.
        CouponCodeTaken: (409) the code is another coupon's.
        InvalidSubscriptionRequest, MoneyError: (400) a percent above 100, an amount with more
            decimals than its currency has; naming the field.
    """
    terms = _terms(percent_off=percent_off, amount_off=amount_off, currency=currency, duration=duration,
                   duration_in_months=duration_in_months)
    try:
        with transaction.atomic():
            return Coupon.objects.create(code=code, name=name, **terms)
    except IntegrityError:
        raise CouponCodeTaken(f"coupon code {code!r} is in use", param="code") from None


def coupon_update(*, coupon: Coupon, **changes) -> Coupon:
    """Change a coupon's ``name`` or ``status`` (``active``/``archived``); its terms never change.

    Raises:
        InvalidSubscriptionRequest: a change of its terms (``param`` the field: make another
            coupon), an unknown field or status.
    """
    for name in changes:
        if name in COUPON_TERMS:
            raise InvalidSubscriptionRequest(f"a coupon's {name} never changes: archive it and make another",
                                             param=name)
        if name not in ("name", "status"):
            raise InvalidSubscriptionRequest(f"a coupon has no field {name}", param=name)
    if "status" in changes and changes["status"] not in Coupon.Status.values:
        raise InvalidSubscriptionRequest("status must be 'active' or 'archived'", param="status")
    with transaction.atomic():
        locked = Coupon.objects.select_for_update().get(pk=coupon.pk)
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save()
    return locked


def coupon_archive(*, coupon: Coupon) -> Coupon:
    """Archive a coupon: applied to no new subscription; the discounts it made keep running."""
    return coupon_update(coupon=coupon, status=Coupon.Status.ARCHIVED)


def discount_end(*, subscription: Subscription, coupon: Coupon, start: dt.datetime) -> dt.datetime | None:
    """The exclusive end of a discount of ``coupon`` applied at ``start``: the periods starting before it are discounted.

    ``once``: the end of the first paid period that starts at or after ``start`` (the current one
    when ``start`` is its start, else the next; the renewal that invoices it moves ``end`` to that
    period's end, so a period that starts earlier than planned, a trial ended early, is the only one); ``repeating``: ``start`` + ``duration_in_months``
    calendar months (the anchor-day rule); ``forever``: ``None``.
    """
    if coupon.duration == Coupon.Duration.FOREVER:
        return None
    if coupon.duration == Coupon.Duration.REPEATING:
        return period_boundary(anchor=start, months=coupon.duration_in_months, n=1, time_zone=subscription.time_zone)
    if start <= subscription.current_period_start and subscription.status != Subscription.Status.TRIALING:
        return subscription.current_period_end
    plan = subscription.pending_plan or subscription.plan
    return period_after(anchor=subscription.billing_anchor, months=plan.months_per_period,
                        end=subscription.current_period_end, time_zone=subscription.time_zone)[1]


def _end_current(subscription: Subscription, at: dt.datetime) -> int:
    """End the subscription's discounts still running at ``at``; how many."""
    return (SubscriptionDiscount.objects.filter(subscription=subscription)
            .filter(Q(end__isnull=True) | Q(end__gt=at)).update(end=at))


def discount_coupon_sync(subscription: Subscription) -> None:
    """Set ``subscription.discount_coupon`` to the coupon whose discount covers its current period (saved if it moved)."""
    found = subscription_discount(subscription=subscription)
    coupon_id = found.coupon_id if found is not None else None
    if coupon_id != subscription.discount_coupon_id:
        subscription.discount_coupon_id = coupon_id
        Subscription.objects.filter(pk=subscription.pk).update(discount_coupon_id=coupon_id)


def discount_start(*, subscription: Subscription, coupon: Coupon, at: dt.datetime) -> SubscriptionDiscount:
    """Apply ``coupon`` to ``subscription`` (locked by the caller) from ``at``; inside the caller's transaction.

    Raises:
        InvalidSubscriptionRequest: an archived coupon, or an ``amount_off`` coupon in another
            currency than the subscription's plan (``param`` ``coupon``).
    """
    if not coupon.is_active:
        raise InvalidSubscriptionRequest(f"coupon {coupon.code} is archived", param="coupon")
    if coupon.amount_off is not None and coupon.currency != subscription.plan.currency:
        raise InvalidSubscriptionRequest(f"coupon {coupon.code} is in {coupon.currency}, the subscription in "
                                         f"{subscription.plan.currency}", param="coupon")
    _end_current(subscription, at)
    discount = SubscriptionDiscount.objects.create(
        subscription=subscription, coupon=coupon, start=at,
        end=discount_end(subscription=subscription, coupon=coupon, start=at))
    discount_coupon_sync(subscription)
    return discount


def _lock(subscription: Subscription) -> Subscription:
    sub = (Subscription.objects.select_for_update(of=("self",)).select_related("plan", "pending_plan")
           .get(pk=subscription.pk))
    if sub.status == Subscription.Status.CANCELED:
        raise SubscriptionTransitionError(f"subscription {sub.pk} is canceled: it takes no discount", param="status")
    return sub


def subscription_discount_apply(*, subscription: Subscription, coupon: Coupon,
                                at: dt.datetime | None = None) -> SubscriptionDiscount:
    """Apply ``coupon`` to a live subscription from ``at`` (default now), ending the discount it had.

    The fee of each period that starts in ``[at, end)`` is discounted (``end`` per the coupon's
    duration, :func:`discount_end`): the next renewal invoice, or the first one for a new
    subscription (``subscription_create(coupon=…)``).

    Raises:
        SubscriptionTransitionError: a canceled subscription.
        InvalidSubscriptionRequest: an archived coupon, another currency (``param`` ``coupon``).
    """
    at = at or timezone.now()
    with transaction.atomic():
        sub = _lock(subscription)
        return discount_start(subscription=sub, coupon=Coupon.objects.get(pk=coupon.pk), at=at)


def subscription_discount_remove(*, subscription: Subscription, at: dt.datetime | None = None) -> int:
    """End the running discount of a live subscription at ``at`` (default now): periods from then are full price.

    Returns:
        How many discounts were ended (0 when it had none).

    Raises:
        SubscriptionTransitionError: a canceled subscription.
    """
    at = at or timezone.now()
    with transaction.atomic():
        sub = _lock(subscription)
        ended = _end_current(sub, at)
        discount_coupon_sync(sub)
        return ended
