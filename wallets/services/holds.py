"""Holds: reserving available credit, capturing it (all or part) or releasing it, and expiring holds.

A hold moves credit from available to reserved (a ``hold`` entry: reserved += amount, the
balance unchanged); a capture debits it (``hold_capture``) and releases any rest
(``hold_release``); a release gives it back. The wallet's lock guards its holds: each hold is
re-read under it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from teams.selectors import billing_settings_get
from wallets.errors import HoldNotOpen, InvalidAmount
from wallets.models import Hold, LedgerEntry, Wallet

from .amounts import amount_positive
from .notifications import low_balance_after_credit
from .posting import check_funds, check_not_frozen, entry_debit, entry_post, wallet_totals_save
from .results import team_idempotent_run
from .wallets import wallet_lock

Entry = LedgerEntry.EntryType


def wallet_hold(*, wallet: Wallet, amount: Decimal, idempotency_key: str, expires_at: dt.datetime | None = None,
                feature_key: str = "", description: str = "", reference_type: str = "", reference_id: str = "",
                created_by=None, metadata: dict | None = None) -> Hold:
    """Reserve ``amount`` (> 0) of available credit: a :class:`Hold` and a ``hold`` entry (reserved += amount).

    The balance does not change; available credit drops by ``amount``. ``expires_at``: when
    ``expire_grants`` releases it if still open. Raises ``InvalidAmount``, ``WalletFrozen``,
    ``InsufficientFunds``, ``IdempotencyError``.
    """
    amount = amount_positive(amount, "amount")
    params = {"wallet": wallet.pk, "amount": amount, "expires_at": expires_at, "feature_key": feature_key,
              "description": description, "reference_type": reference_type, "reference_id": reference_id,
              "metadata": metadata or {}}

    def body() -> Hold:
        locked = wallet_lock(wallet.pk)
        check_not_frozen(locked)
        billing = billing_settings_get(team=locked.team)
        check_funds(locked, billing, amount)
        hold = Hold.objects.create(
            wallet=locked, amount=amount, expires_at=expires_at, feature_key=feature_key, description=description,
            reference_type=reference_type, reference_id=reference_id, created_by=created_by,
        )
        entry_post(locked, entry_type=Entry.HOLD, reserved_delta=amount, idempotency_key=idempotency_key,
                   reference_type="hold", reference_id=hold.pk, feature_key=feature_key, description=description,
                   created_by=created_by, metadata=metadata)
        wallet_totals_save(locked)
        return hold

    with transaction.atomic(durable=True):
        return team_idempotent_run(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_hold",
                                   params=params, body=body)[0]


def hold_capture(*, hold: Hold, idempotency_key: str, amount: Decimal | None = None, feature_key: str | None = None,
                 description: str = "", created_by=None, metadata: dict | None = None) -> Hold:
    """Capture ``amount`` (default: all; any amount > 0 up to the hold) and release the rest.

    Posts a ``hold_capture`` entry (balance −amount, reserved −amount; granted credit first) and,
    for a partial capture, a ``hold_release`` entry for the remainder (Stripe releases the
    uncaptured part of a partial capture). A hold is captured once. Raises ``InvalidAmount``
    (beyond the hold), ``HoldNotOpen``, ``WalletFrozen``, ``IdempotencyError``.
    """
    amount = hold.amount if amount is None else amount_positive(amount, "amount")
    params = {"hold": hold.pk, "amount": amount, "feature_key": feature_key, "description": description,
              "metadata": metadata or {}}

    def body() -> Hold:
        locked = wallet_lock(hold.wallet_id)
        current = Hold.objects.get(pk=hold.pk)  # re-read under the wallet lock, which guards its holds
        if current.status != Hold.Status.OPEN:
            raise HoldNotOpen(f"hold {current.pk} is already {current.status}")
        if amount > current.amount:
            raise InvalidAmount(f"amount {amount} exceeds the hold of {current.amount}", param="amount")
        check_not_frozen(locked)
        billing = billing_settings_get(team=locked.team)
        fkey = current.feature_key if feature_key is None else feature_key
        entry_debit(locked, billing, entry_type=Entry.HOLD_CAPTURE, amount=amount, reserved_delta=-amount,
                    idempotency_key=idempotency_key, reference_type="hold", reference_id=current.pk, feature_key=fkey,
                    description=description, created_by=created_by, metadata=metadata)
        rest = current.amount - amount
        if rest:
            entry_post(locked, entry_type=Entry.HOLD_RELEASE, reserved_delta=-rest, idempotency_key=idempotency_key,
                       reference_type="hold", reference_id=current.pk, feature_key=fkey,
                       description="Uncaptured remainder released", created_by=created_by)
        current.status, current.captured_amount, current.released_amount = Hold.Status.CAPTURED, amount, rest
        current.closed_at = timezone.now()
        current.save(update_fields=["status", "captured_amount", "released_amount", "closed_at"])
        wallet_totals_save(locked)
        return current

    with transaction.atomic(durable=True):
        return team_idempotent_run(team_id=hold.wallet.team_id, idempotency_key=idempotency_key,
                                   operation="hold_capture", params=params, body=body)[0]


def _release(locked: Wallet, current: Hold, *, idempotency_key: str, description: str, created_by) -> Hold:
    """Release the open hold ``current`` of the locked wallet entirely."""
    if current.status != Hold.Status.OPEN:
        raise HoldNotOpen(f"hold {current.pk} is already {current.status}")
    entry_post(locked, entry_type=Entry.HOLD_RELEASE, reserved_delta=-current.amount, idempotency_key=idempotency_key,
               reference_type="hold", reference_id=current.pk, feature_key=current.feature_key,
               description=description, created_by=created_by)
    current.status, current.released_amount, current.closed_at = Hold.Status.RELEASED, current.amount, timezone.now()
    current.save(update_fields=["status", "released_amount", "closed_at"])
    billing = billing_settings_get(team=locked.team)
    low_balance_after_credit(locked, billing)
    wallet_totals_save(locked)
    return current


def hold_release(*, hold: Hold, idempotency_key: str, description: str = "", created_by=None) -> Hold:
    """Release an open hold entirely: a ``hold_release`` entry (reserved −amount); allowed on frozen wallets.

    Raises ``HoldNotOpen``, ``IdempotencyError``.
    """
    params = {"hold": hold.pk, "description": description}

    def body() -> Hold:
        locked = wallet_lock(hold.wallet_id)
        return _release(locked, Hold.objects.get(pk=hold.pk), idempotency_key=idempotency_key,
                        description=description, created_by=created_by)

    with transaction.atomic(durable=True):
        return team_idempotent_run(team_id=hold.wallet.team_id, idempotency_key=idempotency_key,
                                   operation="hold_release", params=params, body=body)[0]


def holds_release_expired(*, now: dt.datetime | None = None) -> list[Hold]:
    """Release every open hold whose ``expires_at`` ≤ ``now`` (a ``hold_release`` entry each).

    One transaction per hold; a hold settled meanwhile is skipped. Returns the holds released.
    """
    now = now or timezone.now()
    released = []
    for hold in Hold.objects.filter(status=Hold.Status.OPEN, expires_at__lte=now).order_by("wallet_id", "pk"):
        with transaction.atomic(durable=True):
            locked = wallet_lock(hold.wallet_id)
            current = Hold.objects.get(pk=hold.pk)
            if current.status == Hold.Status.OPEN:
                released.append(_release(locked, current, idempotency_key=f"expire-hold-{current.pk}",
                                         description="Hold expired", created_by=None))
    return released
