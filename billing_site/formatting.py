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

from decimal import Decimal

from babel.numbers import format_currency, format_decimal
from django.conf import settings
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
