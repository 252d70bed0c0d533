"""Proration: what a change in the middle of a period credits and charges, exactly, in Decimal.

A change at instant ``at`` of a period ``[start, end)`` (end exclusive) leaves

* a credit for the unused time of the old plan: ``−old_fee × remaining / total``;
* a charge for the remaining time of the new plan: ``new_fee × remaining / total``;

where ``remaining`` and ``total`` are counted in whole seconds (``by="second"``, Stripe's default)
or in whole days of the subscription's calendar (``by="day"``: days from the change's date to the
period end's date, over the days of the period). Each figure is computed exactly in
``money.MONEY_CONTEXT`` and quantized once to metered precision (12 decimal places).

The two rounded lines are made by the largest-remainder rule (``money.round_preserving_sum``) so
that credit + charge is exactly the plan difference for the remaining time rounded to the minor
unit, half-up: a change never creates or loses a cent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, localcontext

from billing_site.money import MONEY_CONTEXT, minor_unit, quantize_metered, round_preserving_sum, to_minor_units

from .calendar import seconds_between, zone

ZERO = Decimal(0)


@dataclass(frozen=True)
class Proration:
    """The credit (≤ 0) and charge (≥ 0) of a change, metered and in minor units, and the time fraction.

    ``credit + charge`` (minor units) equals ``net`` = the rounded plan difference for the remaining
    time; ``remaining``/``total`` are seconds (or days) and ``fraction`` is their exact quotient.
    """

    credit_precise: Decimal
    charge_precise: Decimal
    credit: Decimal
    charge: Decimal
    net: Decimal
    remaining: int
    total: int
    currency: str

    @property
    def fraction(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return Decimal(self.remaining) / Decimal(self.total)


def time_fraction(*, start: dt.datetime, end: dt.datetime, at: dt.datetime, by: str = "second",
                  time_zone: str = "UTC") -> tuple[int, int]:
    """``(remaining, total)``: the units of ``[at, end)`` and of ``[start, end)``, in seconds or days.

    ``at`` is clamped into ``[start, end]``. ``by="day"`` counts calendar days of ``time_zone``.
    """
    if by not in ("second", "day"):
        raise ValueError(f"proration is by 'second' or 'day', got {by!r}")
    at = min(max(at, start), end)
    if by == "second":
        return seconds_between(at, end), seconds_between(start, end)
    tz = zone(time_zone)
    s, e, a = start.astimezone(tz).date(), end.astimezone(tz).date(), at.astimezone(tz).date()
    return (e - a).days, (e - s).days


def prorate(*, old_fee: Decimal, new_fee: Decimal, currency: str, start: dt.datetime, end: dt.datetime,
            at: dt.datetime, by: str = "second", time_zone: str = "UTC") -> Proration:
    """The proration of moving from a plan of ``old_fee`` to one of ``new_fee`` at ``at`` within ``[start, end)``.

    Args:
        old_fee, new_fee: fees per period (metered Decimals) in ``currency``; a cancellation is
            ``new_fee = 0``, a start mid-period ``old_fee = 0``.
        start, end: the current period (aware datetimes, ``end`` exclusive).
        at: the instant of the change.
        by: ``"second"`` (default) or ``"day"``.

    Returns:
        A :class:`Proration`; ``credit`` and ``charge`` in minor units sum to ``net``.
    """
    remaining, total = time_fraction(start=start, end=end, at=at, by=by, time_zone=time_zone)
    if total <= 0 or remaining <= 0:
        return Proration(ZERO, ZERO, ZERO, ZERO, ZERO, max(remaining, 0), max(total, 1), currency)
    with localcontext(MONEY_CONTEXT):
        credit_precise = -quantize_metered(old_fee * remaining / total)
        charge_precise = quantize_metered(new_fee * remaining / total)
        net = to_minor_units(quantize_metered((new_fee - old_fee) * remaining / total), currency)
    credit, charge = round_preserving_sum([credit_precise, charge_precise], minor_unit(currency), total=net)
    return Proration(credit_precise, charge_precise, credit, charge, net, remaining, total, currency)
