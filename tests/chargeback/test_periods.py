"""Billing periods a person may name: a month, a quarter or a year, and the period just before."""

import datetime as dt

import pytest

from chargeback.periods import BillingPeriod, PeriodError


@pytest.mark.parametrize(("text", "start", "end", "kind", "name", "before"), [
    ("2026-10", dt.date(2026, 10, 1), dt.date(2026, 11, 1), "month", "October 2026", "2026-09"),
    ("2026-Q4", dt.date(2026, 10, 1), dt.date(2027, 1, 1), "quarter", "Q4 2026 (October–December)", "2026-Q3"),
    ("2026-q1", dt.date(2026, 1, 1), dt.date(2026, 4, 1), "quarter", "Q1 2026 (January–March)", "2025-Q4"),
    ("2026", dt.date(2026, 1, 1), dt.date(2027, 1, 1), "year", "2026", "2025"),
])
def test_a_month_quarter_or_year_reads_as_its_months(text, start, end, kind, name, before):
    period = BillingPeriod.parse(text)
    assert (period.start, period.end, period.kind, period.name) == (start, end, kind, name)
    assert period.previous().key == before and BillingPeriod.parse(period.key) == period


@pytest.mark.parametrize("text", ["2026-13", "2026-Q5", "Q4 2026", "26", "1899", ""])
def test_anything_else_is_refused_naming_the_forms_it_takes(text):
    with pytest.raises(PeriodError, match="period"):
        BillingPeriod.parse(text)
