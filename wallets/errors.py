"""Errors of the wallet services: :class:`WalletError` and its subclasses, each a ``BillingError``.

Each class carries its ``code`` and HTTP status (``billing_site.errors`` has the table); the API maps
them in one place. The wallets also raise errors they share with other apps:
``billing_site.errors.InvalidRequest`` (code ``invalid_request``, 400: anything else the caller got
wrong, a malformed idempotency key among them), ``billing_site.errors.IdempotencyError``
(409: the key was used with different parameters) and ``chargeback.errors.PriceNotFound`` (422: no
catalog price for an item at that time).

:class:`LedgerImmutable` is not a ``BillingError``: changing or deleting a ledger entry is a bug in
code, not a request a user can correct, so the API answers it as any bug (500, ``internal_error``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing_site.errors import BillingError
from billing_site.money import MoneyError


class WalletError(BillingError):
    """Base class: a wallet operation that was refused. Nothing moved when it is raised."""

    code = "wallet_error"
    http_status = 400


class InvalidAmount(WalletError, MoneyError):
    """An amount that cannot be money: float, zero, negative, non-finite, more than 12 decimals,
    or more than the operation allows (beyond a hold, beyond what is left to refund). HTTP 400."""

    code = "invalid_amount"
    http_status = 400


class InsufficientFunds(WalletError):
    """Available credit below the amount, with block on zero balance (or beyond a credit limit).

    ``event`` is the rejected :class:`wallets.models.UsageEvent` when the refusal came from
    ``usage_event_charge`` (the event is committed before this is raised, so nothing is lost).
    """

    code = "insufficient_funds"
    http_status = 402

    def __init__(
        self, message: str, *, requested: Decimal, available: Decimal, currency: str, event: Any = None
    ) -> None:
        super().__init__(message, param="amount")
        self.requested = requested
        self.available = available
        self.currency = currency
        self.event = event


class ProviderNotAllowed(WalletError):
    """The team's billing settings list allowed providers and this one is not among them."""

    code = "provider_not_allowed"
    http_status = 403


class WalletFrozen(WalletError):
    """The wallet is frozen or closed: it accepts no charges, holds or captures.

    ``event`` is the rejected usage event when raised by ``usage_event_charge``.
    """

    code = "wallet_frozen"
    http_status = 409

    def __init__(self, message: str, *, event: Any = None) -> None:
        super().__init__(message)
        self.event = event


class HoldNotOpen(WalletError):
    """The hold was already captured or released."""

    code = "hold_not_open"
    http_status = 409


class LedgerImmutable(Exception):
    """Code tried to change or delete a ledger entry. Corrections are reversing entries.

    A bug, not a refusal: not a ``BillingError``, so the API answers 500 and logs it.
    """

    code = "ledger_immutable"
