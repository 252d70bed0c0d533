"""Monthly recurring revenue (MRR): the arithmetic, as pure functions of plain values.

MRR is the recurring fee a subscriber pays, normalised to one month:

* a period of ``interval_count`` × ``interval`` costs ``fee``; its monthly amount is
  ``fee / months`` with ``months = interval_count`` (× 12 for a yearly plan): a yearly 1,200 USD
  plan is 100 USD of MRR, a quarterly 300 USD plan too;
* it counts ``active`` and ``past_due`` subscriptions only: no trial (nothing is paid yet), no
  canceled subscription, no usage or overage (it is not recurring), no one-off proration;
* it is kept per currency: amounts of two currencies are never added (Baremetrics and ChartMogul
  convert at a rate; this product has no rates, so another currency is stated beside the
  reporting one).

MRR movements between two instants (ChartMogul's and Baremetrics' standard definitions), per
subscriber (a team, or one member of a team) and currency, from its MRR at the start ``before``
to its MRR at the end ``after``:

* **new**: ``before == 0 < after`` (a first subscription, a trial that converted, or a
  subscriber that comes back; reactivations are counted here);
* **expansion**: ``0 < before < after`` (an upgrade), ``after − before``;
* **contraction**: ``0 < after < before`` (a downgrade), ``after − before`` (negative);
* **churn**: ``before > 0 == after`` (a cancellation, or a subscription that stopped paying),
  ``−before`` (negative).

So ``MRR(end) = MRR(start) + new + expansion + contraction + churn``, exactly, in each currency.

Amounts are exact ``Decimal`` figures at metered precision (12 decimal places,
``billing_site.money.quantize_metered``); they are rounded to the currency's minor units only for
display (:func:`round_breakdown`, largest remainder, so the shown parts add up to the shown total).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from billing_site.money import MONEY_CONTEXT, minor_unit, quantize_metered, round_preserving_sum

ZERO = Decimal(0)
#: Statuses whose subscriptions count in MRR (a past-due subscription still owes its fee).
MRR_STATUSES = ("active", "past_due")
#: The four movements, in the order charts stack them.
MOVEMENTS = ("new", "expansion", "contraction", "churn")


def months_per_period(*, interval: str, interval_count: int) -> int:
    """Calendar months in one billing period: ``interval_count`` months, or × 12 for ``year``.

    Raises:
        ValueError: an interval other than ``month`` or ``year``, or a count below 1.
    """
    if interval not in ("month", "year"):
        raise ValueError(f"interval must be 'month' or 'year', got {interval!r}")
    if interval_count < 1:
        raise ValueError(f"interval_count must be at least 1, got {interval_count}")
    return interval_count * (12 if interval == "year" else 1)


def monthly_amount(*, fee: Decimal, interval: str, interval_count: int = 1, count: int = 1) -> Decimal:
    """The MRR of ``count`` subscriptions paying ``fee`` per ``interval_count`` × ``interval``.

    Args:
        fee: the period's fee after discounts, a Decimal in the plan's currency (≥ 0).
        interval: ``month`` or ``year``.
        interval_count: periods of ``interval`` per billing period (≥ 1).
        count: how many subscriptions pay it (≥ 0); multiplied before dividing, so 12 yearly
            subscriptions of 100 make exactly 100, not 12 × 8.333333333333.

    Returns:
        ``fee × count / months``, exact to 12 decimal places (half-up once, at the end).
    """
    if not isinstance(fee, Decimal):
        raise TypeError(f"fee must be a Decimal, got {type(fee).__name__}")
    months = months_per_period(interval=interval, interval_count=interval_count)
    with localcontext(MONEY_CONTEXT):
        return quantize_metered(fee * count / months)


def mrr_movements(before: Mapping[object, Decimal], after: Mapping[object, Decimal]) -> dict[str, Decimal]:
    """The MRR movements between two snapshots of one currency.

    Args:
        before, after: MRR per subscriber key (any hashable: ``(team_id, user_id)``) at the start
            and at the end; a subscriber absent from a mapping has 0.

    Returns:
        ``{"new", "expansion", "contraction", "churn"}``: new and expansion ≥ 0, contraction and
        churn ≤ 0, with ``Σ after = Σ before + Σ movements`` exactly.
    """
    moves = dict.fromkeys(MOVEMENTS, ZERO)
    for key in before.keys() | after.keys():
        start, end = before.get(key, ZERO), after.get(key, ZERO)
        if start == end:
            continue
        if start == 0:
            moves["new"] += end
        elif end == 0:
            moves["churn"] -= start
        elif end > start:
            moves["expansion"] += end - start
        else:
            moves["contraction"] += end - start
    return moves


@dataclass
class CurrencyMRR:
    """MRR of one currency: the total, its parts by tier (``{tier: (count, amount)}``), exact."""

    currency: str
    total: Decimal = ZERO
    tiers: dict[str, tuple[int, Decimal]] = field(default_factory=dict)

    def add(self, *, tier: str, count: int, amount: Decimal) -> None:
        held_count, held_amount = self.tiers.get(tier, (0, ZERO))
        self.tiers[tier] = (held_count + count, held_amount + amount)
        self.total += amount


def mrr_by_currency(rows: Iterable[Mapping]) -> dict[str, CurrencyMRR]:
    """MRR per currency and tier from rows of ``{currency, tier, fee, interval, interval_count, count}``
    (one per plan: ``count`` of its subscriptions counted in MRR). Currencies are never mixed."""
    out: dict[str, CurrencyMRR] = {}
    for row in rows:
        amount = monthly_amount(fee=row["fee"], interval=row["interval"], interval_count=row["interval_count"],
                                count=row["count"])
        out.setdefault(row["currency"], CurrencyMRR(row["currency"])).add(
            tier=row["tier"], count=row["count"], amount=amount)
    return out


def round_breakdown(mrr: CurrencyMRR) -> tuple[Decimal, dict[str, tuple[int, Decimal]]]:
    """``(total, {tier: (count, amount)})`` rounded to the currency's minor units, tiers sorted by name.

    The total is rounded half-up once; the tiers' amounts are rounded with the largest-remainder
    rule (``money.round_preserving_sum``) so they add up to the rounded total, cent for cent.
    """
    quantum = minor_unit(mrr.currency)
    names = sorted(mrr.tiers)
    rounded = round_preserving_sum([mrr.tiers[name][1] for name in names], quantum)
    total = sum(rounded, ZERO).quantize(quantum)
    return total, {name: (mrr.tiers[name][0], amount) for name, amount in zip(names, rounded)}
