"""Template filters of ``billing_site.formatting``: ``{{ amount|money:currency }}``,
``{{ amount|money_exact:currency }}`` and ``{{ count|number }}``."""

from __future__ import annotations

import datetime as dt

from django import template

from billing_site.formatting import money_display, number_display, period_display
from billing_site.money import format_unit

register = template.Library()


@register.filter
def money(amount, currency: str) -> str:
    """``amount`` rounded to ``currency``'s minor units: ``1,234.50 USD`` (no-break space before the code)."""
    return money_display(amount, currency)


@register.filter
def money_exact(amount, currency: str) -> str:
    """``amount`` with every non-zero digit, for tooltips and detail pages: ``0.000125 USD``."""
    return money_display(amount, currency, exact=True)


@register.filter
def number(value) -> str:
    """A count or quantity with thousands separators: ``5,360``."""
    return number_display(value)


@register.filter
def inclusive_end(end):
    """The last day of a half-open period ``[start, end)``: ``end`` minus one day (October's end 1 Nov → 31 Oct)."""
    return end - dt.timedelta(days=1) if end else end


@register.filter
def quantity_in(quantity, unit: str) -> str:
    """A quantity with its unit in the right number: ``1 Hour``, ``1,500 tokens``; empty without a quantity."""
    if quantity is None:
        return ""
    return f"{number_display(quantity)} {format_unit(quantity, unit)}".strip() if unit else number_display(quantity)


@register.filter
def period(start, end) -> str:
    """A half-open period ``[start, end)`` as people read it: ``October 2026``, or the inclusive range
    ``Oct 1 – 15, 2026`` (``billing_site.formatting.period_display``)."""
    return period_display(start, end)
