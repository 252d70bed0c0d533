"""The amounts a wallet service accepts: finite Decimals, at most 12 decimal places, below 10^15.

Floats are refused (money is never a float); ints are taken as Decimals. Each check raises
``InvalidAmount`` naming the request field at fault.
"""

from __future__ import annotations

from decimal import Decimal

from billing_site.money import METERED_QUANTUM
from wallets.errors import InvalidAmount

ZERO = Decimal(0)
#: Largest amount a single call may move: 10^15 in the wallet's currency. Keeps every sum well
#: inside the 30-digit columns and Decimal's default 28-digit context.
MAX_AMOUNT = Decimal(10) ** 15


def amount_parse(value: object, name: str) -> Decimal:
    """``value`` as a finite Decimal with at most 12 decimal places, or ``InvalidAmount`` naming ``name``."""
    if isinstance(value, bool) or value is None:
        raise InvalidAmount(f"{name} must be a Decimal, got {value!r}", param=name)
    if isinstance(value, float):
        raise InvalidAmount(f"{name} is a float ({value!r}); send a Decimal (money is never a float)", param=name)
    if isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal):
        raise InvalidAmount(f"{name} must be a Decimal, got {type(value).__name__}", param=name)
    if not value.is_finite():
        raise InvalidAmount(f"{name} must be a finite number, got {value}", param=name)
    if abs(value) >= MAX_AMOUNT:
        raise InvalidAmount(f"{name} must be below {MAX_AMOUNT:,}, got {value}", param=name)
    if value != value.quantize(METERED_QUANTUM):
        raise InvalidAmount(f"{name} has more than 12 decimal places: {value}", param=name)
    return value


def amount_positive(value: object, name: str) -> Decimal:
    """:func:`amount_parse`, and greater than zero."""
    amount = amount_parse(value, name)
    if amount <= 0:
        raise InvalidAmount(f"{name} must be greater than zero, got {amount}", param=name)
    return amount


def amount_not_negative(value: object, name: str) -> Decimal:
    """:func:`amount_parse`, and zero or more."""
    amount = amount_parse(value, name)
    if amount < 0:
        raise InvalidAmount(f"{name} must not be negative, got {amount}", param=name)
    return amount
