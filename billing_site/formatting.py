"""Money and numbers for people, in the locale of the settings, through Babel (CLDR data).

One formatter for every screen (the portal, and later the finance admin and the PDFs):
``money_display`` writes an amount with its currency's decimal places (ISO 4217 exponent),
thousands separators of the locale, and the currency code as a suffix joined by a no-break space,
so ``1,234.50 USD`` never wraps between the number and its code. The template filters are in
``billing_site/templatetags/billing_format.py`` (``{% load billing_format %}``).

Display rounding uses ``billing_site.money.to_minor_units`` (the product's one rounding mode);
Babel only lays the digits out. The exact metered figure is available with ``exact=True``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from babel.dates import format_date, format_interval, format_skeleton
from babel.numbers import format_currency, format_decimal
from django.conf import settings
from django.utils import timezone
from django.utils.translation import to_locale

from billing_site.money import to_minor_units

NBSP = "\u00a0"

#: Number, no-break space, ISO 4217 code (``¤¤``): a suffix that reads the same in every locale.
MONEY_PATTERN = f"#,##0.00{NBSP}¤¤"


def display_locale() -> str:
    """The Babel locale of ``settings.LANGUAGE_CODE`` (``en-us`` → ``en_US``)."""
    return to_locale(settings.LANGUAGE_CODE)


def money_display(amount: Decimal | None, currency: str, *, locale: str | None = None, exact: bool = False) -> str:
    """``amount`` in ``currency`` for people: ``1,234.50 USD``, ``-0.07 EUR``, ``1,200 JPY``; ``—`` for ``None``.

    Args:
        amount: a ``Decimal`` (metered, 12 dp, or minor units).
        currency: ISO 4217 code; its exponent gives the decimal places.
        locale: a Babel locale name; default the settings' ``LANGUAGE_CODE``.
        exact: keep every non-zero digit of ``amount`` (at least the currency's places), for
            tooltips, detail pages and exports; otherwise round to minor units
            (``billing_site.money.to_minor_units``).
    """
    if amount is None:
        return "—"
    value = Decimal(amount) if exact else to_minor_units(Decimal(amount), currency)
    if exact:
        value = value.normalize() if value else Decimal(0)
    return format_currency(
        value, currency.upper(), format=MONEY_PATTERN, locale=locale or display_locale(),
        currency_digits=True, decimal_quantization=not exact,
    )


def number_display(value: Decimal | int | None, *, locale: str | None = None) -> str:
    """A count or quantity with the locale's separators (``5,360``, ``0.5``); ``—`` for ``None``."""
    if value is None:
        return "—"
    if isinstance(value, Decimal):
        value = value.normalize() if value else Decimal(0)
    return format_decimal(value, locale=locale or display_locale(), decimal_quantization=False)


def quantity_display(value: Decimal | int | None, *, locale: str | None = None) -> str:
    """A metered quantity for people: separators, trailing zeros dropped (``1,250``, ``0.5``, ``0``)."""
    return number_display(value, locale=locale)


def period_display(start: dt.date | None, end: dt.date | None, *, locale: str | None = None) -> str:
    """A half-open billing period ``[start, end)`` as people read it.

    A whole calendar month is its name (``October 2026``); any other span is the inclusive range of
    its days, so the exclusive end is never shown as if it were the last day (``[1 Oct, 1 Nov)`` of
    part of a month → ``Oct 1 – 15, 2026``). An open end reads ``from Oct 1, 2026``; ``—`` without a
    start. Date-times count as the local days they cover, a period from one anniversary to the next
    (10:23 to 10:23) ending the day before. Babel's CLDR interval patterns lay it out in the settings'
    locale.
    """
    if start is None:
        return "—"
    locale = locale or display_locale()
    # Instants (a subscription's period) count as the local days they cover; a period from one
    # anniversary to the next (10:23 to 10:23) ends the day before, as its invoice's dates do.
    whole_days = _ends_on_a_day_boundary(start, end)
    start, end = _day(start), _day(end)
    if end is None:
        return f"from {format_date(start, 'medium', locale=locale)}"
    last = end - dt.timedelta(days=1) if whole_days else end
    if not whole_days:
        end = end + dt.timedelta(days=1)
    if start.day == 1 and end.day == 1 and (end.year * 12 + end.month) - (start.year * 12 + start.month) == 1:
        return format_skeleton("yMMMM", start, locale=locale)
    if last <= start:
        return format_date(start, "medium", locale=locale)
    return format_interval(start, last, "yMMMd", locale=locale)


def _day(value):
    """The local calendar day of a date-time (in the current time zone), or the date itself."""
    if isinstance(value, dt.datetime):
        return timezone.localtime(value).date() if timezone.is_aware(value) else value.date()
    return value


def _ends_on_a_day_boundary(start, end) -> bool:
    """Whether ``end`` (exclusive) closes the day before its own date: a date, local midnight, or the
    start's time of day (an anniversary); an end later in its day includes that day."""
    if not isinstance(end, dt.datetime):
        return True
    local = lambda value: timezone.localtime(value) if timezone.is_aware(value) else value  # noqa: E731
    end_time = local(end).time()
    start_time = local(start).time() if isinstance(start, dt.datetime) else dt.time()
    return end_time <= start_time or end_time == dt.time()


def date_display(value: dt.date | dt.datetime | None, *, locale: str | None = None) -> str:
    """A day as people read it (``Dec 8, 2026``): a date-time is its local day (current time zone);
    ``""`` for ``None``. For list columns where the time of day would only take width."""
    if value is None:
        return ""
    return format_date(_day(value), "medium", locale=locale or display_locale())


def month_display(day: dt.date | None, *, locale: str | None = None) -> str:
    """The month of ``day``: ``October 2026``; ``—`` for ``None``."""
    return "—" if day is None else format_skeleton("yMMMM", _day(day), locale=locale or display_locale())


def money_number(amount: Decimal | None, currency: str, *, locale: str | None = None, exact: bool = False) -> str:
    """``money_display`` without the code, for a column whose header names the currency: ``1,234.50``."""
    if amount is None:
        return "—"
    return money_display(amount, currency, locale=locale, exact=exact).rsplit(NBSP, 1)[0]
