"""Subscription status moves: the one check of ``Subscription.TRANSITIONS``, and the status history it records.

Every status move goes through :func:`subscription_status_set` (one subscription, saved by the
caller) or, for the renewal's batches, :func:`status_move_check` + :func:`status_changes_record`
(bulk): each checks the move against ``Subscription.TRANSITIONS`` and records it as a
``SubscriptionStatusChange`` at the instant it took effect, so the MRR of past months leaves out
what was trialing, unpaid or canceled then (``subscriptions.selectors_mrr.mrr_history``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from ..bulk import ids_take, rows_copy
from ..errors import SubscriptionTransitionError
from ..models import Subscription, SubscriptionStatusChange

#: ``(subscription id, from status, to status, at)``: one status move to record.
StatusMove = tuple[int, str, str, dt.datetime]


def status_move_check(*, subscription_id: int, from_status: str, to_status: str) -> None:
    """Refuse a move ``from_status`` → ``to_status`` that ``Subscription.TRANSITIONS`` does not allow.

    Raises:
        SubscriptionTransitionError: (409, ``invalid_subscription_transition``, ``param`` ``status``)
            naming the subscription, its status, the requested one and the allowed ones.
    """
    if to_status not in Subscription.TRANSITIONS:
        raise SubscriptionTransitionError(f"{to_status!r} is not a subscription status "
                                          f"({', '.join(Subscription.TRANSITIONS)})", param="status")
    allowed = Subscription.TRANSITIONS.get(from_status, ())
    if to_status not in allowed:
        raise SubscriptionTransitionError(
            f"subscription {subscription_id} is {from_status}; it cannot become {to_status} "
            f"(allowed: {', '.join(allowed) or 'none'})", param="status",
        )


def subscription_check_transition(*, subscription: Subscription, to_status: str) -> None:
    """Refuse a status move of ``subscription`` (as read under its row lock) that ``TRANSITIONS`` does not allow.

    Raises:
        SubscriptionTransitionError: see :func:`status_move_check`.
    """
    status_move_check(subscription_id=subscription.pk, from_status=subscription.status, to_status=to_status)


def status_changes_record(moves: Sequence[StatusMove]) -> None:
    """Append the status moves to the history (one ``COPY``); inside the caller's transaction.

    A first status (a new subscription) has ``from_status`` ``""``. Moves are not checked here:
    callers check each with :func:`status_move_check` (a first status needs no check).
    """
    if not moves:
        return
    now = timezone.now()
    rows = [{"id": pk, "subscription_id": sid, "from_status": old, "to_status": new, "at": at, "created_at": now}
            for pk, (sid, old, new, at) in zip(ids_take(SubscriptionStatusChange, len(moves)), moves)]
    rows_copy(SubscriptionStatusChange, rows)


def subscription_status_set(*, subscription: Subscription, to_status: str, at: dt.datetime) -> None:
    """Check and make a status move of ``subscription`` (locked by the caller) and record it at ``at``.

    Sets ``subscription.status``; the caller saves the row (with its other fields) in the same
    transaction.

    Raises:
        SubscriptionTransitionError: the move is not allowed.
    """
    subscription_check_transition(subscription=subscription, to_status=to_status)
    status_changes_record([(subscription.pk, subscription.status, to_status, at)])
    subscription.status = to_status


def subscriptions_mark_past_due(*, subscriptions: Sequence[Subscription], at: dt.datetime | None = None) -> list[Subscription]:
    """Move each subscription whose invoice went unpaid to ``past_due`` (those that may); inside a transaction."""
    at = at or timezone.now()
    moved = []
    with transaction.atomic():
        for sub in Subscription.objects.select_for_update(of=("self",)).filter(
            pk__in=[s.pk for s in subscriptions]
        ).order_by("pk"):
            if Subscription.Status.PAST_DUE in Subscription.TRANSITIONS[sub.status]:
                subscription_status_set(subscription=sub, to_status=Subscription.Status.PAST_DUE, at=at)
                sub.save(update_fields=["status", "updated_at"])
                moved.append(sub)
    return moved


def subscription_transition(*, subscription: Subscription, to_status: str, at: dt.datetime | None = None) -> Subscription:
    """Move ``subscription`` to ``to_status`` (``past_due``, ``unpaid``, back to ``active``), checked and recorded.

    For the payments code (dunning) and finance. ``canceled`` goes through ``subscription_cancel``
    (it settles the unused time); this refuses it.

    Raises:
        SubscriptionTransitionError: the move is not allowed, or is a cancellation.
    """
    if to_status == Subscription.Status.CANCELED:
        raise SubscriptionTransitionError("cancel a subscription with subscription_cancel", param="status")
    with transaction.atomic():
        locked = Subscription.objects.select_for_update(of=("self",)).get(pk=subscription.pk)
        subscription_status_set(subscription=locked, to_status=to_status, at=at or timezone.now())
        locked.updated_at = timezone.now()
        locked.save(update_fields=["status", "updated_at"])
    return locked
