"""The amounts a wallet service accepts: finite Decimals, at most 12 decimal places, below 10^15.

Floats are refused (money is never a float); ints are taken as Decimals. The check is
``billing_site.money.parse_amount``'s; each function here raises ``InvalidAmount`` (code
``invalid_amount``) naming the request field at fault.
"""

from __future__ import annotations

from decimal import Decimal

from billing_site.money import MoneyError, parse_amount
from wallets.errors import InvalidAmount

ZERO = Decimal(0)
#: Largest amount a single call may move: 10^15 in the wallet's currency. Keeps every sum well
#: inside the 30-digit columns and Decimal's default 28-digit context.
MAX_AMOUNT = Decimal(10) ** 15


def _parse(value: object, name: str, **checks: bool) -> Decimal:
    try:
        return parse_amount(value, param=name, below=MAX_AMOUNT, **checks)
    except MoneyError as exc:
        raise InvalidAmount(exc.message, param=name) from None


def amount_parse(value: object, name: str) -> Decimal:
    """``value`` as a finite Decimal with at most 12 decimal places, or ``InvalidAmount`` naming ``name``."""
    return _parse(value, name)


def amount_positive(value: object, name: str) -> Decimal:
    """:func:`amount_parse`, and greater than zero."""
    return _parse(value, name, positive=True)


def amount_not_negative(value: object, name: str) -> Decimal:
    """:func:`amount_parse`, and zero or more."""
    return _parse(value, name, not_negative=True)
