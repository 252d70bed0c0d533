"""Billing periods: calendar months as half-open date ranges ``[start, end)``.

FOCUS writes a billing period the same way (``BillingPeriodStart`` inclusive, ``BillingPeriodEnd``
exclusive, both at midnight), so September 2024 is ``[2024-09-01, 2024-10-01)``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from chargeback.errors import ChargebackError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
#: A billing month as the API documents it (OpenAPI ``pattern``): ``YYYY-MM``, years 1900 to 2999.
MONTH_PATTERN = r"^(19[0-9]{2}|2[0-9]{3})-(0[1-9]|1[0-2])$"
#: The years a billing period may lie in.
YEARS = (1900, 2999)


class PeriodError(ChargebackError):
    """A period that is not a whole number of calendar months, or is empty. HTTP 400, ``invalid_period``."""

    code = "invalid_period"
    http_status = 400


def month_start(day: dt.date) -> dt.date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    """The first day of the month after ``day``'s month."""
    first = month_start(day)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


@dataclass(frozen=True)
class BillingPeriod:
    """A billing period of whole calendar months: ``start`` inclusive, ``end`` exclusive."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.start.day != 1:
            raise PeriodError(f"period start {self.start} is not the first day of a month")
        if self.end.day != 1:
            raise PeriodError(f"period end {self.end} is not the first day of a month (the end is exclusive)")
        if self.end <= self.start:
            raise PeriodError(f"period end {self.end} is not after period start {self.start}")

    @classmethod
    def month(cls, value: str) -> BillingPeriod:
        """Parse ``YYYY-MM`` (e.g. ``2024-09``) into that calendar month.

        Raises:
            PeriodError: the text is not ``YYYY-MM`` or names no month of the years 1900 to 2999.
        """
        match = _MONTH.match(value.strip()) if isinstance(value, str) else None
        if not match:
            raise PeriodError(f"period {value!r} is not a month written YYYY-MM, e.g. 2024-09")
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12 or not YEARS[0] <= year <= YEARS[1]:
            raise PeriodError(f"period {value!r} names no month from {YEARS[0]} to {YEARS[1]}")
        start = dt.date(year, month, 1)
        return cls(start, next_month(start))

    @property
    def label(self) -> str:
        """``2024-09`` for one month, ``2024-07..2024-09`` for several."""
        last = self.end - dt.timedelta(days=1)
        first = f"{self.start:%Y-%m}"
        return first if month_start(last) == self.start else f"{first}..{last:%Y-%m}"

    def __str__(self) -> str:
        return self.label
