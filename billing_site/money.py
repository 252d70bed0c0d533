"""Money: Decimal helpers, the one rounding boundary, and largest-remainder splitting.

Two precisions exist in the product, and only this module converts between them:

* **Metered** amounts (usage cost, unit prices, allocated cost) keep full precision:
  ``METERED_DECIMAL_PLACES`` (12) decimal places. FOCUS ``BilledCost`` carries 11 in practice, so
  a cost file is stored exactly.
* **Invoice** amounts are in the currency's minor units (ISO 4217 exponent: 2 for USD and EUR,
  0 for JPY, 3 for KWD). Metered amounts become invoice amounts only through
  :func:`round_preserving_sum` (or :func:`to_minor_units` for a single figure, such as a tax), with
  the single rounding mode ``ROUNDING`` (half-up, "commercial rounding").

Splitting follows the largest-remainder method (Hamilton's method): every part is first given the
floor of its exact share in whole quanta, then the quanta still missing are handed out one each to
the parts with the largest remainders, ties going to the earlier part. The parts therefore sum
exactly to the whole, each is within one quantum of its exact share, and the result depends only
on the inputs and their order. All of it is done in integer arithmetic, so no intermediate
division can lose a digit.

Floats never enter: every public function refuses them with ``TypeError``, and
:func:`parse_amount`, the one check of an amount a caller sends, refuses them with ``MoneyError``.

The formatting helpers at the end (``format_*``) turn Decimals, quantities and dates into the text
people read on invoices, credit notes, the admin and the command line; they never round a stored
figure, except :func:`format_percent`, which shows a share to one decimal for reading.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import (
    ROUND_FLOOR,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)

from billing_site.errors import BillingError

#: The single rounding mode of the product, used wherever a Decimal is quantized.
ROUNDING = ROUND_HALF_UP

#: Decimal places of metered amounts (usage cost, unit price, allocated cost).
METERED_DECIMAL_PLACES = 12
#: ``max_digits`` for metered ``DecimalField``s: 18 integer digits before the point.
METERED_MAX_DIGITS = 30
METERED_QUANTUM = Decimal(1).scaleb(-METERED_DECIMAL_PLACES)
#: Every stored metered figure (a balance, a reserved or granted total, a ledger entry's amount and
#: balances, a usage cost) lies strictly between −METERED_BOUND and METERED_BOUND: 10^18, the 18
#: integer digits of ``numeric(30, 12)``. A movement that would take a figure past it is refused
#: (:class:`AmountOutOfRange`) before anything is written.
METERED_BOUND = Decimal(10) ** (METERED_MAX_DIGITS - METERED_DECIMAL_PLACES)

#: The one Decimal context of money arithmetic: 60 significant digits, twice the widest column, so
#: the sum, difference or product of two stored figures is exact and only an explicit ``quantize``
#: rounds (with ``ROUNDING``). Python's default context keeps 28 digits: it would round a balance
#: of 10^16 with 12 decimal places (29 digits) without a word. Invalid operations, division by zero
#: and overflow raise. Used as ``with localcontext(MONEY_CONTEXT):``.
MONEY_CONTEXT = Context(prec=2 * METERED_MAX_DIGITS, rounding=ROUNDING, traps=[InvalidOperation, DivisionByZero, Overflow])

#: Decimal places of stored invoice amounts: room for every ISO 4217 exponent (0 to 4); values are
#: always quantized to the currency's own exponent first.
INVOICE_DECIMAL_PLACES = 4
INVOICE_MAX_DIGITS = 20

#: ISO 4217 minor-unit exponents that differ from 2. Every other code has 2.
_EXPONENT_EXCEPTIONS = {
    # zero decimals
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # three decimals
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four decimals
    "CLF": 4, "UYW": 4,
}


class MoneyError(BillingError):
    """An amount, currency or set of weights that cannot be used as money. HTTP 400, ``invalid_amount``."""

    code = "invalid_amount"
    http_status = 400


class AmountOutOfRange(BillingError):
    """A well-formed amount whose result would leave the stored range (:data:`METERED_BOUND`): a
    top-up taking a balance to 10^18 or past it. HTTP 422, ``amount_out_of_range``; nothing moved."""

    code = "amount_out_of_range"
    http_status = 422


def check_within_bound(value: Decimal, *, param: str, what: str) -> Decimal:
    """``value`` unchanged if ``|value| < METERED_BOUND`` (the column holds it), else :class:`AmountOutOfRange`.

    Args:
        value: the figure that would be stored (a balance after a movement, a total).
        param: the request field that caused it (``"amount"``), the error's ``param``.
        what: the figure, for the message (``"the balance of wallet 3"``).
    """
    if abs(value) >= METERED_BOUND:
        raise AmountOutOfRange(f"{param} would take {what} to {value:f}, beyond the largest figure stored "
                               f"(below {METERED_BOUND:,} in absolute value)", param=param)
    return value


def _check_decimal(value: object, name: str) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"{name} is a float; money is Decimal only")
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise MoneyError(f"{name} must be a finite number, got {value}")
    return value


def currency_exponent(currency: str) -> int:
    """Return the ISO 4217 minor-unit exponent of ``currency`` (``"USD"`` → 2, ``"JPY"`` → 0)."""
    code = (currency or "").upper()
    if len(code) != 3 or not code.isalpha():
        raise MoneyError(f"currency must be a three-letter ISO 4217 code, got {currency!r}")
    return _EXPONENT_EXCEPTIONS.get(code, 2)


def minor_unit(currency: str) -> Decimal:
    """Return the value of one minor unit of ``currency``: ``Decimal("0.01")`` for USD."""
    return Decimal(1).scaleb(-currency_exponent(currency))


def _decimal_places(value: Decimal) -> int:
    """How many decimal places ``value`` needs: ``1.50`` → 1, ``2E+3`` → 0. Exact, for any size."""
    _, digits, exponent = value.as_tuple()
    places = -int(exponent)
    for digit in reversed(digits):
        if places <= 0 or digit:
            break
        places -= 1
    return max(places, 0)


def parse_amount(
    value: object,
    *,
    param: str,
    positive: bool = False,
    not_negative: bool = False,
    currency: str | None = None,
    decimal_places: int | None = METERED_DECIMAL_PLACES,
    below: Decimal | None = None,
    text: bool = False,
) -> Decimal:
    """``value`` as a Decimal amount, checked; the one check of an amount (or quantity) a caller sends.

    Args:
        value: a ``Decimal`` or an ``int`` (and with ``text``, a decimal string such as ``"12.50"``).
            Floats, bools, ``None``, other types and non-finite values (``NaN``, ``Infinity``) are refused.
        param: the request field the value came from (``"amount"``, ``"items[0].quantity"``); the
            error's ``param`` and the first word of its message.
        positive: refuse zero and below.
        not_negative: refuse below zero.
        currency: an ISO 4217 code; the value may have no more decimal places than the currency's
            minor unit (2 for USD, 0 for JPY). Takes the place of ``decimal_places``.
        decimal_places: the most decimal places allowed without ``currency`` (default 12, the metered
            precision; ``None`` for any). Trailing zeros do not count: ``1.500`` has one.
        below: refuse an absolute value of ``below`` or more (a bound that keeps sums inside the columns).
        text: accept a decimal string too.

    Returns:
        The value as given, as a Decimal (never rounded: a value that would need rounding is refused).

    Raises:
        MoneyError: (code ``invalid_amount``, ``param`` as given) the message names ``param``, e.g.
            ``amount must be greater than zero, got -5``.
    """
    if isinstance(value, float):
        raise MoneyError(f"{param} is a float ({value!r}); send a Decimal (money is never a float)", param=param)
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    elif text and isinstance(value, str):
        try:
            value = Decimal(value)
        except ArithmeticError:
            raise MoneyError(f"{param} {value!r} is not a number", param=param) from None
    elif not isinstance(value, Decimal):
        kind = "a Decimal or a decimal string" if text else "a Decimal"
        raise MoneyError(f"{param} must be {kind}, got {value!r}", param=param)
    if not value.is_finite():
        raise MoneyError(f"{param} must be a finite number, got {value}", param=param)
    if below is not None and abs(value) >= below:
        raise MoneyError(f"{param} must be below {below:,}, got {value}", param=param)
    if currency is not None:
        if _decimal_places(value) > currency_exponent(currency):
            raise MoneyError(f"{param} {value} has more decimals than {currency}'s minor unit "
                             f"({minor_unit(currency)})", param=param)
    elif decimal_places is not None and _decimal_places(value) > decimal_places:
        raise MoneyError(f"{param} has more than {decimal_places} decimal places: {value}", param=param)
    if positive and value <= 0:
        raise MoneyError(f"{param} must be greater than zero, got {value}", param=param)
    if not_negative and value < 0:
        raise MoneyError(f"{param} must not be negative, got {value}", param=param)
    return value


def quantize_metered(amount: Decimal) -> Decimal:
    """Quantize a metered amount (quantity × unit price, an imported cost) to 12 decimal places."""
    amount = _check_decimal(amount, "amount")
    with localcontext(MONEY_CONTEXT):
        return amount.quantize(METERED_QUANTUM, rounding=ROUNDING)


def metered_cost(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """``quantity × unit_price``, computed exactly (:data:`MONEY_CONTEXT`) and quantized once to 12 dp.

    Args:
        quantity: units used, a Decimal (up to 30 digits).
        unit_price: the price of one unit (12 decimal places, up to 30 digits) in some currency.

    Returns:
        The cost in the price's currency, rounded with ``ROUNDING`` only at the end. It may exceed
        :data:`METERED_BOUND`; the caller that stores it checks (:func:`check_within_bound`).
    """
    return metered_costs([_check_decimal(quantity, "quantity")], unit_price)[0]


def metered_costs(quantities: Sequence[Decimal], unit_price: Decimal) -> list[Decimal]:
    """:func:`metered_cost` of each of ``quantities`` at ``unit_price``, in one decimal context (a batch's lines
    at one price): the one place the metered rounding rule is written."""
    unit_price = _check_decimal(unit_price, "unit_price")
    with localcontext(MONEY_CONTEXT):
        return [
            ((q if type(q) is Decimal and q.is_finite() else _check_decimal(q, "quantity")) * unit_price)
            .quantize(METERED_QUANTUM, rounding=ROUNDING)
            for q in quantities
        ]


def percent_of(amount: Decimal, percent: Decimal) -> Decimal:
    """``amount × percent / 100``, computed exactly and quantized once to 12 decimal places.

    Args:
        amount: a metered amount (12 decimal places, up to 30 digits) in some currency.
        percent: a percentage, e.g. ``Decimal(10)`` for 10 %.

    Returns:
        The share in ``amount``'s currency, rounded with ``ROUNDING`` only at the end (Decimal's
        default 28 digits would round the product first for large amounts (so :data:`MONEY_CONTEXT`); PostgreSQL's
        ``round(amount * percent / 100, 12)`` does not, and both must agree).

    Raises:
        TypeError: a float.
    """
    amount = _check_decimal(amount, "amount")
    percent = _check_decimal(percent, "percent")
    with localcontext(MONEY_CONTEXT):
        return (amount * percent / 100).quantize(METERED_QUANTUM, rounding=ROUNDING)


def unit_price_of(amount: Decimal, quantity: Decimal) -> Decimal:
    """The average unit price of a metered ``amount`` for ``quantity`` units: ``amount / quantity``.

    Args:
        amount: a metered amount (12 decimal places) in some currency; may be negative (a credit).
        quantity: the positive number of units the amount was charged for.

    Returns:
        The price of one unit in the amount's currency, quantized to 12 decimal places with
        ``ROUNDING`` (the precision of ``Price.unit_price``). Display and invoice detail only:
        ``unit price × quantity`` need not give back ``amount`` exactly, and nothing bills it.

    Raises:
        MoneyError: ``quantity`` is zero or negative.
        TypeError: a float.
    """
    amount = _check_decimal(amount, "amount")
    quantity = _check_decimal(quantity, "quantity")
    if quantity <= 0:
        raise MoneyError(f"a unit price needs a positive quantity, got {quantity}")
    with localcontext(MONEY_CONTEXT):
        # Enough digits for 30-digit metered values, so only the final quantize rounds.
        return (amount / quantity).quantize(METERED_QUANTUM, rounding=ROUNDING)


def to_minor_units(amount: Decimal, currency: str) -> Decimal:
    """Round one metered ``amount`` to the minor units of ``currency`` (half-up).

    Use it for a single figure (a tax on a subtotal). To round several figures that must keep
    their sum, use :func:`round_preserving_sum`.
    """
    return _check_decimal(amount, "amount").quantize(minor_unit(currency), rounding=ROUNDING)


def to_stripe_amount(amount: Decimal, currency: str) -> int:
    """``amount`` (major units, whole minor units of ``currency``) as Stripe's integer of minor units.

    ``Decimal("12.34")`` USD → ``1234``; ``Decimal("500")`` JPY → ``500``. Stripe takes amounts as
    integers of the currency's smallest unit (ISO 4217 exponent, :func:`currency_exponent`).

    Raises:
        MoneyError: ``amount`` is not a whole number of minor units (round it first, once, with
            :func:`to_minor_units`), or not a ``Decimal``.
    """
    amount = _check_decimal(amount, "amount")
    minor = amount.scaleb(currency_exponent(currency))
    if minor != minor.to_integral_value():
        raise MoneyError(f"{amount} {currency} is not a whole number of minor units")
    return int(minor)


def from_stripe_amount(minor: int, currency: str) -> Decimal:
    """Stripe's integer of minor units as a ``Decimal`` in major units: ``1234`` USD → ``Decimal("12.34")``."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError(f"a Stripe amount is an integer of minor units, got {minor!r}")
    return Decimal(minor).scaleb(-currency_exponent(currency)).quantize(minor_unit(currency))


#: Decimal places of a stored exchange rate (``ExchangeRate.rate``, ``numeric(24, 10)``). The ECB
#: publishes at most 6 significant digits; a cross rate derived via EUR keeps 10 decimal places.
RATE_DECIMAL_PLACES = 10
RATE_QUANTUM = Decimal(1).scaleb(-RATE_DECIMAL_PLACES)


def rate_quantize(rate: Decimal) -> Decimal:
    """An exchange rate rounded (half-up) to :data:`RATE_DECIMAL_PLACES`; used only for a derived rate.

    Raises:
        MoneyError: a rate of zero or below.
        TypeError: a float.
    """
    rate = _check_decimal(rate, "rate")
    if rate <= 0:
        raise MoneyError(f"an exchange rate must be greater than zero, got {rate}")
    with localcontext(MONEY_CONTEXT):
        return rate.quantize(RATE_QUANTUM, rounding=ROUNDING)


def rate_cross(rate_from: Decimal, rate_to: Decimal) -> Decimal:
    """The cross rate A→B from two rates quoted against one base currency (the ECB's EUR).

    Args:
        rate_from: units of A per 1 base (EUR→A, e.g. ``Decimal("1.0876")`` USD per EUR).
        rate_to: units of B per 1 base (EUR→B, e.g. ``Decimal("0.8512")`` GBP per EUR).

    Returns:
        Units of B per 1 A, ``rate_to / rate_from``, computed exactly (:data:`MONEY_CONTEXT`) and
        rounded once to :data:`RATE_DECIMAL_PLACES`. The inverse of one rate is ``rate_cross(r, 1)``.

    Raises:
        MoneyError: a rate of zero or below.
    """
    rate_from = _check_decimal(rate_from, "rate_from")
    rate_to = _check_decimal(rate_to, "rate_to")
    if rate_from <= 0 or rate_to <= 0:
        raise MoneyError(f"exchange rates must be greater than zero, got {rate_from} and {rate_to}")
    with localcontext(MONEY_CONTEXT):
        return rate_quantize(rate_to / rate_from)


def convert(amount: Decimal, rate: Decimal, currency: str) -> Decimal:
    """An invoice ``amount`` converted at ``rate`` into ``currency``'s minor units, rounded once.

    Args:
        amount: an amount in the source currency (minor units of it, or metered), any sign.
        rate: units of ``currency`` per one unit of the source currency (> 0).
        currency: the target ISO 4217 code; the result has its exponent (0 for JPY, 3 for KWD).

    Returns:
        ``amount × rate``, computed exactly and rounded once, half-up (``ROUNDING``), to one minor
        unit of ``currency``: the one place a converted amount is rounded.

    Raises:
        MoneyError: a rate of zero or below, or a bad currency code.
        TypeError: a float.
    """
    amount = _check_decimal(amount, "amount")
    rate = _check_decimal(rate, "rate")
    if rate <= 0:
        raise MoneyError(f"an exchange rate must be greater than zero, got {rate}")
    with localcontext(MONEY_CONTEXT):
        return (amount * rate).quantize(minor_unit(currency), rounding=ROUNDING)


def convert_metered(amount: Decimal, rate: Decimal) -> Decimal:
    """A metered ``amount`` converted at ``rate``, rounded once to 12 decimal places (display detail)."""
    amount = _check_decimal(amount, "amount")
    rate = _check_decimal(rate, "rate")
    with localcontext(MONEY_CONTEXT):
        return (amount * rate).quantize(METERED_QUANTUM, rounding=ROUNDING)


def _scale(values: Sequence[Decimal]) -> int:
    """The power of ten that turns every value into an integer."""
    exponent = min((v.as_tuple().exponent for v in values), default=0)
    return max(0, -int(exponent))


def _largest_remainder(floors: list[int], remainders: list[int], missing: int) -> list[int]:
    """Give one more unit to the ``missing`` parts with the largest remainders (earliest on ties)."""
    if missing:
        order = sorted(range(len(floors)), key=lambda i: (-remainders[i], i))
        for i in order[:missing]:
            floors[i] += 1
    return floors


def split(total: Decimal, weights: Sequence[Decimal], quantum: Decimal) -> list[Decimal]:
    """Split ``total`` into ``len(weights)`` parts proportional to ``weights``.

    Args:
        total: the amount to split; a whole multiple of ``quantum``; may be negative (a credit).
        weights: non-negative Decimals (or ints) with a positive sum, one per part, in the
            order that breaks ties (the earlier part wins a tied remainder).
        quantum: the smallest amount a part may carry, e.g. ``METERED_QUANTUM`` or
            ``minor_unit("USD")``.

    Returns:
        One Decimal per weight, each a multiple of ``quantum``; they sum exactly to ``total`` and
        each is within one ``quantum`` of its exact share ``total × weight / Σ weights``.

    Raises:
        MoneyError: no weights, a negative weight, all weights zero, or ``total`` not a multiple
            of ``quantum``.
        TypeError: a float anywhere.

    Rule: the largest-remainder (Hamilton) method, as AWS split-charge rules and OpenCost's
    shared-cost distribution allocate "every cent".
    """
    total = _check_decimal(total, "total")
    quantum = _check_decimal(quantum, "quantum")
    weights = [_check_decimal(w, f"weights[{i}]") for i, w in enumerate(weights)]
    if not weights:
        raise MoneyError("cannot split an amount into zero parts")
    if any(w < 0 for w in weights):
        raise MoneyError("split weights must not be negative")
    if quantum <= 0:
        raise MoneyError("quantum must be positive")
    units = total / quantum
    if units != units.to_integral_value():
        raise MoneyError(f"total {total} is not a whole multiple of {quantum}")
    units = int(units)

    scale = 10 ** _scale(weights)
    int_weights = [int(w * scale) for w in weights]
    weight_sum = sum(int_weights)
    if weight_sum == 0:
        raise MoneyError("cannot split by weights that are all zero")

    sign = -1 if units < 0 else 1
    magnitude = abs(units)
    floors, remainders = [], []
    for w in int_weights:
        q, r = divmod(magnitude * w, weight_sum)
        floors.append(q)
        remainders.append(r)
    parts = _largest_remainder(floors, remainders, magnitude - sum(floors))
    return [(sign * p) * quantum for p in parts]


def split_evenly(total: Decimal, count: int, quantum: Decimal) -> list[Decimal]:
    """Split ``total`` into ``count`` equal parts (largest remainder; earlier parts get the extra)."""
    if count < 1:
        raise MoneyError("cannot split an amount into zero parts")
    return split(total, [1] * count, quantum)


def round_preserving_sum(
    amounts: Sequence[Decimal], quantum: Decimal, total: Decimal | None = None
) -> list[Decimal]:
    """Round each of ``amounts`` to ``quantum`` so the rounded values sum to the rounded total.

    Args:
        amounts: metered Decimals of any sign (for example the precise amounts of invoice lines,
            or the precise totals of every team in a billing run).
        quantum: the target precision, usually ``minor_unit(currency)``.
        total: the sum the rounded values must reach; by default ``Σ amounts`` rounded half-up to
            ``quantum``. It must lie within the floors and ceilings of the parts.

    Returns:
        One Decimal per amount, each the floor or the ceiling of that amount at ``quantum``
        (so within one quantum of it), summing exactly to ``total``.

    Raises:
        MoneyError: ``total`` cannot be reached by rounding each amount down or up.
        TypeError: a float anywhere.

    Rule: largest-remainder rounding, the method that keeps "every cent accounted for" when
    rounding invoice lines (and the invoices of a billing run) to a rounded total.
    """
    quantum = _check_decimal(quantum, "quantum")
    amounts = [_check_decimal(a, f"amounts[{i}]") for i, a in enumerate(amounts)]
    if total is None:
        total = sum(amounts, Decimal(0)).quantize(quantum, rounding=ROUNDING)
    total = _check_decimal(total, "total")
    if not amounts:
        if total != 0:
            raise MoneyError("no amounts to carry a non-zero total")
        return []

    floors = [(a / quantum).to_integral_value(rounding=ROUND_FLOOR) for a in amounts]
    scale = 10 ** _scale([a / quantum for a in amounts])
    remainders = [int((a / quantum - f) * scale) for a, f in zip(amounts, floors)]
    int_floors = [int(f) for f in floors]
    missing = total / quantum - sum(int_floors)
    if missing != missing.to_integral_value() or not 0 <= missing <= len(amounts):
        raise MoneyError(f"total {total} cannot be reached by rounding these amounts to {quantum}")
    # Only amounts that have a remainder may be rounded up, unless the total demands more.
    parts = _largest_remainder(int_floors, remainders, int(missing))
    return [p * quantum for p in parts]


def format_amount(amount: Decimal, currency: str) -> str:
    """Format an invoice amount for people: ``1,234.50 USD`` (the currency's minor units)."""
    rounded = to_minor_units(amount, currency)
    return f"{rounded:,.{currency_exponent(currency)}f} {currency.upper()}"


# --- formatting for people (Decimal in, text out) --------------------------------------------------

def format_metered(amount: Decimal, currency: str, *, code: bool = True) -> str:
    """A metered amount written exactly, e.g. ``20.28022672899 USD`` (``code=False``: no currency code).

    Trailing zeros are dropped down to the currency's minor units (``0.00 USD``, ``1.50 USD``), so
    nothing is rounded: every non-zero digit of the 12-decimal value is shown.
    """
    value = amount.normalize()
    if -value.as_tuple().exponent <= currency_exponent(currency):
        # No more decimals than the currency has: widening it to minor units changes no digit.
        value = to_minor_units(value, currency)
    text = f"{value:,f}"
    return f"{text} {currency.upper()}" if code else text


def format_quantity(quantity: Decimal) -> str:
    """A quantity without trailing zeros: ``1``, ``1,250``, ``0.5``."""
    return f"{quantity.normalize():,f}" if quantity else "0"


#: Plurals of the usage units the catalog prices in (``Price.unit``); other units are shown as recorded.
UNIT_PLURALS = {
    "token": "tokens",
    "second": "seconds",
    "minute": "minutes",
    "hour": "hours",
    "character": "characters",
    "request": "requests",
    "call": "calls",
    "message": "messages",
    "image": "images",
    "page": "pages",
    "query": "queries",
}


#: The same units the other way round, for FOCUS ``PricingUnit`` values recorded in the plural ("Hours").
UNIT_SINGULARS = {plural: singular for singular, plural in UNIT_PLURALS.items()}


def _unit_word(unit: str, *, plural: bool) -> str:
    """``unit`` in the singular or plural when it is a known unit (keeping a leading capital), else as recorded."""
    lower = unit.lower()
    word = UNIT_PLURALS.get(lower, lower) if plural else UNIT_SINGULARS.get(lower, lower)
    if word == lower:
        return unit
    return word[:1].upper() + word[1:] if unit[:1].isupper() else word


def format_unit(quantity: Decimal, unit: str) -> str:
    """The unit of ``quantity`` as people write it: ``1 token``, ``1,234,567 tokens``, ``1 Hour``, ``2.5 GB-Mo``."""
    return _unit_word(unit, plural=quantity != 1)


def format_percent(percent: Decimal | str | None) -> str:
    """A share in percent to one decimal, ``37.2 %``; ``—`` when there is none.

    Display only: the stored share keeps 12 decimal places; this rounds it with the product's
    single rounding mode for people to read.
    """
    if percent in (None, ""):
        return "—"
    value = Decimal(percent)
    if 0 < abs(value) < Decimal("0.05"):
        # A share that one decimal would show as 0.0 % is not nothing.
        return "< 0.1 %" if value > 0 else "> -0.1 %"
    return f"{value.quantize(Decimal('0.1'), rounding=ROUNDING)} %"


def format_date(day: dt.date | None) -> str:
    """``1 September 2024``; ``—`` for a date not yet set (a draft's issue and due dates)."""
    return f"{day.day} {day:%B %Y}" if day else "—"


def format_period(start: dt.date, end: dt.date) -> str:
    """The half-open period ``[start, end)`` as people write it: ``1 September 2024 – 30 September 2024``."""
    return f"{format_date(start)} – {format_date(end - dt.timedelta(days=1))}"


def format_amount_short(value: Decimal, currency: str) -> str:
    """An invoice amount in minor units without the currency code (the column header carries it)."""
    return format_amount(value, currency).rsplit(" ", 1)[0]
