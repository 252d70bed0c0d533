"""Errors of the wallet services, one class per ``code`` the API maps to a response.

Every error carries ``code`` (a stable machine-readable string, the ``error.code`` of the API's
error body) and ``param`` (the request field at fault, or ``None``). The API (issue 5) maps them:

=====================  ===========  ===============================================================
code                   HTTP status  meaning
=====================  ===========  ===============================================================
invalid_amount         400          an amount or quantity is a float, zero, negative, not finite or
                                    has more than 12 decimal places (``param`` names the field)
invalid_request        400          anything else the caller got wrong (unknown user, bad items)
insufficient_funds     402          available credit is below the amount and the team blocks on
                                    zero balance; nothing moved (a usage event is kept as rejected)
price_not_found        422          no catalog price for an item at that time
provider_not_allowed   403          the team's billing settings do not allow that provider
wallet_frozen          409          the wallet is frozen (or closed): no charges or holds
hold_not_open          409          the hold was already captured or released
idempotency_error      409          the idempotency key was used with different parameters
ledger_immutable       500          code tried to change or delete a ledger entry (a bug)
=====================  ===========  ===============================================================
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class WalletError(Exception):
    """Base class: a wallet operation that was refused. Nothing moved when it is raised."""

    code = "wallet_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidAmount(WalletError, ValueError):
    """An amount that cannot be money: float, zero, negative, non-finite, more than 12 decimals."""

    code = "invalid_amount"


class InvalidRequest(WalletError, ValueError):
    """A request that is wrong in another way (a user outside the team, malformed items)."""

    code = "invalid_request"


class InsufficientFunds(WalletError):
    """Available credit below the amount, with block on zero balance (or beyond a credit limit).

    ``event`` is the rejected :class:`wallets.models.UsageEvent` when the refusal came from
    ``usage_event_charge`` (the event is committed before this is raised, so nothing is lost).
    """

    code = "insufficient_funds"

    def __init__(
        self, message: str, *, requested: Decimal, available: Decimal, currency: str, event: Any = None
    ) -> None:
        super().__init__(message, param="amount")
        self.requested = requested
        self.available = available
        self.currency = currency
        self.event = event


class PriceNotFound(WalletError, ValueError):
    """No catalog price (team override or global) for an item at the time asked."""

    code = "price_not_found"


class ProviderNotAllowed(WalletError):
    """The team's billing settings list allowed providers and this one is not among them."""

    code = "provider_not_allowed"


class WalletFrozen(WalletError):
    """The wallet is frozen or closed: it accepts no charges, holds or captures.

    ``event`` is the rejected usage event when raised by ``usage_event_charge``.
    """

    code = "wallet_frozen"

    def __init__(self, message: str, *, event: Any = None) -> None:
        super().__init__(message)
        self.event = event


class HoldNotOpen(WalletError):
    """The hold was already captured or released."""

    code = "hold_not_open"


class IdempotencyError(WalletError):
    """The idempotency key was already used with different parameters (Stripe's semantics)."""

    code = "idempotency_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="idempotency_key")


class LedgerImmutable(Exception):
    """Code tried to change or delete a ledger entry. Corrections are reversing entries."""

    code = "ledger_immutable"
