"""The amounts a wallet service accepts: finite Decimals, at most 12 decimal places, below 10^15.

Floats are refused (money is never a float); ints are taken as Decimals. The check is
``billing_site.money.parse_amount``'s; each function here raises ``InvalidAmount`` (code
``invalid_amount``) naming the request field at fault.

Two bounds, both documented in docs/api.md ("Conventions"):

* one movement (a top-up, grant, charge, hold, refund, adjustment) is below :data:`MAX_AMOUNT`,
  10^15 in the wallet's currency; more is 400 ``invalid_amount``;
* a wallet's balance and reserved credit stay below ``money.METERED_BOUND``, 10^18 in absolute
  value (the 18 integer digits of ``numeric(30, 12)``); a movement that would take one there is
  422 ``amount_out_of_range`` (``posting.entry_post``; the SQL charge function's overflow maps
  to the same error).

Sums are computed in ``money.MONEY_CONTEXT`` (60 digits), so a balance is never rounded.
"""

from __future__ import annotations

from decimal import Decimal

from billing_site.money import MoneyError, parse_amount
from wallets.errors import InvalidAmount

ZERO = Decimal(0)
#: Largest amount a single call may move (exclusive): 10^15 in the wallet's currency.
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
