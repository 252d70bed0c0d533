"""The calendar keeps the anchor's day of month (Stripe's rule), through leap years and time zones."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_site.errors import InvalidRequest
from subscriptions.calendar import period_boundary, period_containing

UTC = dt.UTC


def test_month_end_anchor_keeps_its_day_jan31_feb29_mar31_apr30():
    # given a monthly subscription anchored on 31 January 2024 (a leap year) at 10:00 UTC
    anchor = dt.datetime(2024, 1, 31, 10, tzinfo=UTC)
    # when its next boundaries are computed, then the 31st is kept whenever the month has one
    days = [period_boundary(anchor=anchor, months=1, n=n).date().isoformat() for n in range(5)]
    assert days == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"]


def test_month_end_anchor_in_a_common_year_goes_to_feb_28():
    anchor = dt.datetime(2023, 1, 31, tzinfo=UTC)
    assert period_boundary(anchor=anchor, months=1, n=1) == dt.datetime(2023, 2, 28, tzinfo=UTC)
    assert period_boundary(anchor=anchor, months=1, n=2) == dt.datetime(2023, 3, 31, tzinfo=UTC)


def test_yearly_anchor_on_feb_29_renews_on_feb_28_then_back_on_feb_29():
    anchor = dt.datetime(2024, 2, 29, 12, tzinfo=UTC)
    years = [period_boundary(anchor=anchor, months=12, n=n).date().isoformat() for n in range(5)]
    assert years == ["2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29"]


def test_period_in_a_time_zone_keeps_local_midnight_across_daylight_saving():
    # given a subscription anchored at local midnight on 1 March in Berlin (UTC+1, then UTC+2 from 31 March)
    anchor = dt.datetime(2024, 3, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    # when the April boundary is computed in Europe/Berlin, then it is local midnight: 22:00 UTC the day before
    april = period_boundary(anchor=anchor, months=1, n=1, time_zone="Europe/Berlin")
    assert april == dt.datetime(2024, 3, 31, 22, tzinfo=UTC)
    # and kept in UTC, the same instant is 29 February 23:00 UTC: its months end on the 29th
    assert period_boundary(anchor=anchor, months=1, n=1) == dt.datetime(2024, 3, 29, 23, tzinfo=UTC)


def test_unknown_time_zone_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest) as error:
        period_boundary(anchor=dt.datetime(2024, 1, 1, tzinfo=UTC), months=1, n=1, time_zone="Mars/Olympus")
    assert error.value.param == "time_zone"


anchors = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(UTC))
zones = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"])


@given(anchor=anchors, months=st.sampled_from([1, 3, 12]), n=st.integers(0, 60), tz=zones)
def test_boundaries_rise_and_keep_the_anchor_day_or_the_month_end(anchor, months, n, tz):
    start = period_boundary(anchor=anchor, months=months, n=n, time_zone=tz)
    end = period_boundary(anchor=anchor, months=months, n=n + 1, time_zone=tz)
    assert end > start
    local_anchor = anchor.astimezone(ZoneInfo(tz))
    local = start.astimezone(ZoneInfo(tz))
    last_day = (local.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    assert local.day == min(local_anchor.day, last_day.day)


@given(anchor=anchors, at=anchors, tz=zones)
def test_period_containing_holds_the_instant(anchor, at, tz):
    start, end = period_containing(anchor=anchor, months=1, at=at, time_zone=tz)
    assert start <= at < end
