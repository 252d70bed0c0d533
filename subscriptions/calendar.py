"""The subscription calendar: period boundaries that keep the billing anchor's day of month.

Rule (Stripe's billing cycle anchor): period *n* starts at the anchor plus *n* × the plan's months,
and when the target month is shorter than the anchor's day, the period starts on that month's last
day. Each boundary is computed from the anchor, never from the previous boundary, so a subscription
anchored on 31 January renews on 28 February (29 in a leap year), then 31 March, 30 April, 31 May…
and never drifts to the 28th.

Time zones: boundaries are computed on the wall clock of the subscription's ``time_zone`` (an IANA
name, default ``"UTC"``) and returned as aware datetimes in UTC. In UTC a boundary is the anchor's
time of day on the computed date; in another zone it is the anchor's local time of day on the local
date, so "the 1st at 00:00 in Europe/Berlin" stays the local midnight across daylight-saving
changes (the UTC offset of the instant moves by an hour). A local time that does not exist (the
spring-forward gap) is taken with ``fold=0`` and normalised by ``zoneinfo`` to the instant after
the gap; an ambiguous one (autumn) is its first occurrence.

All periods are half-open ``[start, end)``: the end instant belongs to the next period.
"""

from __future__ import annotations

import calendar as _calendar
import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing_site.errors import InvalidRequest

UTC = dt.UTC


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``"UTC"``, ``"Europe/Berlin"``); ``InvalidRequest`` (param ``time_zone``) if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidRequest(f"time_zone {name!r} is not an IANA time zone, e.g. 'UTC' or 'Europe/Berlin'",
                             param="time_zone") from None


def add_months(day: dt.date, months: int, *, anchor_day: int | None = None) -> dt.date:
    """``day`` moved by ``months`` calendar months, on ``anchor_day`` (default ``day.day``) or the month's last day.

    ``add_months(date(2024, 1, 31), 1)`` → 2024-02-29; ``add_months(date(2024, 1, 31), 2)`` → 2024-03-31.
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = _calendar.monthrange(year, month)[1]
    return dt.date(year, month, min(anchor_day or day.day, last))


def period_boundary(*, anchor: dt.datetime, months: int, n: int, time_zone: str = "UTC") -> dt.datetime:
    """The start of period ``n`` (0 is the anchor) of a subscription with ``months`` months per period.

    Args:
        anchor: the billing anchor, an aware datetime.
        months: calendar months per period (1 for monthly, 12 for yearly, 3 for quarterly).
        n: the period's index from the anchor (may be negative).
        time_zone: the IANA zone whose calendar the anchor's day and time of day are kept in.

    Returns:
        An aware datetime in UTC.
    """
    if anchor.tzinfo is None:
        raise ValueError("the billing anchor must be an aware datetime")
    tz = zone(time_zone)
    local = anchor.astimezone(tz)
    day = add_months(local.date(), months * n, anchor_day=local.day)
    boundary = dt.datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=tz)
    # Round-trip through UTC normalises a wall-clock time that falls in a daylight-saving gap.
    return boundary.astimezone(UTC)


def period_containing(*, anchor: dt.datetime, months: int, at: dt.datetime,
                      time_zone: str = "UTC") -> tuple[dt.datetime, dt.datetime]:
    """The period ``[start, end)`` that contains the instant ``at`` (UTC datetimes)."""
    local_anchor, local_at = anchor.astimezone(zone(time_zone)), at.astimezone(zone(time_zone))
    n = ((local_at.year - local_anchor.year) * 12 + (local_at.month - local_anchor.month)) // months
    # The month count is a guess within one period; step to the period that holds ``at``.
    while period_boundary(anchor=anchor, months=months, n=n, time_zone=time_zone) > at:
        n -= 1
    while period_boundary(anchor=anchor, months=months, n=n + 1, time_zone=time_zone) <= at:
        n += 1
    return (period_boundary(anchor=anchor, months=months, n=n, time_zone=time_zone),
            period_boundary(anchor=anchor, months=months, n=n + 1, time_zone=time_zone))


def period_after(*, anchor: dt.datetime, months: int, end: dt.datetime,
                 time_zone: str = "UTC") -> tuple[dt.datetime, dt.datetime]:
    """The period that starts at ``end`` (the previous period's exclusive end, a boundary of this calendar).

    When ``end`` is not one of the anchor's boundaries (the plan's period length changed), the
    period that contains ``end`` is returned.
    """
    tz = zone(time_zone)
    local_anchor, local_end = anchor.astimezone(tz), end.astimezone(tz)
    n, rest = divmod((local_end.year - local_anchor.year) * 12 + (local_end.month - local_anchor.month), months)
    if not rest and period_boundary(anchor=anchor, months=months, n=n, time_zone=time_zone) == end:
        return end, period_boundary(anchor=anchor, months=months, n=n + 1, time_zone=time_zone)
    return period_containing(anchor=anchor, months=months, at=end, time_zone=time_zone)


def seconds_between(start: dt.datetime, end: dt.datetime) -> int:
    """Whole seconds from ``start`` to ``end`` (microseconds dropped), the unit of proration."""
    delta = end - start
    return delta.days * 86400 + delta.seconds
