"""Subscription status moves: the one check of ``Subscription.TRANSITIONS`` and the moves other services make."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from ..errors import SubscriptionTransitionError
from ..models import Subscription


def subscription_check_transition(*, subscription: Subscription, to_status: str) -> None:
    """Refuse a status move that ``Subscription.TRANSITIONS`` does not allow: the one place it is checked.

    Args:
        subscription: the subscription as read under its row lock.
        to_status: the requested ``Subscription.Status`` value.

    Raises:
        SubscriptionTransitionError: (409, ``invalid_subscription_transition``, ``param`` ``status``)
            naming the subscription, its status, the requested one and the allowed ones.
    """
    if to_status not in Subscription.TRANSITIONS:
        raise SubscriptionTransitionError(f"{to_status!r} is not a subscription status "
                                          f"({', '.join(Subscription.TRANSITIONS)})", param="status")
    allowed = Subscription.TRANSITIONS.get(subscription.status, ())
    if to_status not in allowed:
        raise SubscriptionTransitionError(
            f"subscription {subscription.pk} is {subscription.status}; it cannot become {to_status} "
            f"(allowed: {', '.join(allowed) or 'none'})", param="status",
        )


def subscriptions_mark_past_due(*, subscriptions: Sequence[Subscription]) -> list[Subscription]:
    """Move each subscription whose invoice went unpaid to ``past_due`` (those that may); inside a transaction."""
    moved = []
    with transaction.atomic():
        for sub in Subscription.objects.select_for_update(of=("self",)).filter(
            pk__in=[s.pk for s in subscriptions]
        ).order_by("pk"):
            if Subscription.Status.PAST_DUE in Subscription.TRANSITIONS[sub.status]:
                sub.status = Subscription.Status.PAST_DUE
                sub.save(update_fields=["status", "updated_at"])
                moved.append(sub)
    return moved


def subscription_transition(*, subscription: Subscription, to_status: str) -> Subscription:
    """Move ``subscription`` to ``to_status`` (``past_due``, ``unpaid``, back to ``active``), checked.

    For the payments code (dunning) and finance. ``canceled`` goes through ``subscription_cancel``
    (it settles the unused time); this refuses it.

    Raises:
        SubscriptionTransitionError: the move is not allowed, or is a cancellation.
    """
    if to_status == Subscription.Status.CANCELED:
        raise SubscriptionTransitionError("cancel a subscription with subscription_cancel", param="status")
    with transaction.atomic():
        locked = Subscription.objects.select_for_update(of=("self",)).get(pk=subscription.pk)
        subscription_check_transition(subscription=locked, to_status=to_status)
        locked.status = to_status
        locked.updated_at = timezone.now()
        locked.save(update_fields=["status", "updated_at"])
    return locked
