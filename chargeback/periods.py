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
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
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

    @classmethod
    def parse(cls, value: str) -> BillingPeriod:
        """A month ``YYYY-MM``, a quarter ``YYYY-Qn`` (``2026-Q4``: October to December) or a year ``YYYY``.

        Raises:
            PeriodError: the text is none of the three, or names a period outside the years 1900 to 2999.
        """
        text = value.strip() if isinstance(value, str) else ""
        quarter, year = _QUARTER.match(text), _YEAR.match(text)
        if not (quarter or year):
            if _MONTH.match(text):
                return cls.month(text)
            raise PeriodError(f"period {value!r} is not a month (YYYY-MM, e.g. 2026-10), a quarter (YYYY-Qn, "
                              "e.g. 2026-Q4) or a year (YYYY, e.g. 2026)")
        number = int((quarter or year).group(1))
        if not YEARS[0] <= number <= YEARS[1]:
            raise PeriodError(f"period {value!r} is not in the years {YEARS[0]} to {YEARS[1]}")
        if year:
            return cls(dt.date(number, 1, 1), dt.date(number + 1, 1, 1))
        first = dt.date(number, 3 * int(quarter.group(2)) - 2, 1)
        return cls(first, _add_months(first, 3))

    @property
    def kind(self) -> str:
        """``month``, ``quarter`` (a calendar quarter), ``year`` (a calendar year) or ``months`` (any other span)."""
        count = len(self.months())
        if count == 1:
            return "month"
        if count == 3 and self.start.month in (1, 4, 7, 10):
            return "quarter"
        if count == 12 and self.start.month == 1:
            return "year"
        return "months"

    @property
    def key(self) -> str:
        """What :meth:`parse` reads back: ``2026-10``, ``2026-Q4``, ``2026`` (``label`` for other spans)."""
        kind = self.kind
        if kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month + 2) // 3}"
        if kind == "year":
            return str(self.start.year)
        return self.label

    @property
    def name(self) -> str:
        """For people: ``October 2026``, ``Q4 2026 (October–December)``, ``2026``, ``March–May 2026``."""
        last = self.end - dt.timedelta(days=1)
        kind = self.kind
        if kind == "month":
            return f"{self.start:%B %Y}"
        if kind == "quarter":
            return f"Q{(self.start.month + 2) // 3} {self.start.year} ({self.start:%B}–{last:%B})"
        if kind == "year":
            return str(self.start.year)
        return f"{self.start:%B %Y}–{last:%B %Y}"

    def months(self) -> list[dt.date]:
        """The first day of each month of the period, in order."""
        months, day = [], self.start
        while day < self.end:
            months.append(day)
            day = next_month(day)
        return months

    def previous(self) -> BillingPeriod:
        """The period of as many months just before this one (September for October, Q3 for Q4, 2025 for 2026)."""
        count = len(self.months())
        return BillingPeriod(_add_months(self.start, -count), self.start)

    def following(self) -> BillingPeriod:
        """The period of as many months just after this one."""
        return BillingPeriod(self.end, _add_months(self.end, len(self.months())))

    @property
    def label(self) -> str:
        """``2024-09`` for one month, ``2024-07..2024-09`` for several."""
        last = self.end - dt.timedelta(days=1)
        first = f"{self.start:%Y-%m}"
        return first if month_start(last) == self.start else f"{first}..{last:%Y-%m}"

    def __str__(self) -> str:
        return self.label


def _add_months(first: dt.date, count: int) -> dt.date:
    """The first day of the month ``count`` months after ``first``'s (before it if negative)."""
    index = first.year * 12 + first.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)
