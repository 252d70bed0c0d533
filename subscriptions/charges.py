"""Charge models: what a quantity of overage units costs, as pure strategies keyed by model name.

Every function takes the charge's definition and a quantity (``Decimal``, units of the meter) and
returns the exact cost in the plan's currency, quantized once to metered precision (12 decimal
places, ``billing_site.money.quantize_metered``). Nothing here rounds to cents: invoice amounts are
made from these figures by ``money.round_preserving_sum`` on the invoice.

The models and where they come from:

* ``standard`` (Stripe ``per_unit``, Lago ``standard``): ``quantity × price / price_per_units``.
  Per 1,000 units: 85 units at 2.00 per 1,000 → 0.17.
* ``package`` (Stripe ``transform_quantity[divide_by]`` with ``round=up``, Lago ``package`` with
  no free units): ``ceil(quantity / package_size) × price``. 1 to 100 units at 5 per 100 → 5;
  101 → 10.
* ``graduated`` (Stripe ``tiers_mode=graduated``, Lago ``graduated``): each tier prices the units
  that fall in it, plus its flat fee when any unit reaches it.
* ``volume`` (Stripe ``tiers_mode=volume``, Lago ``volume``): the tier the whole quantity falls in
  prices every unit, plus its flat fee.

Tiers are ``Tier(up_to, unit_price, flat_fee)`` with ``up_to`` inclusive and ``None`` for the last,
open tier, the way Stripe writes ``tiers[].up_to`` and Lago ``to_value``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext

from billing_site.money import MONEY_CONTEXT, quantize_metered

ZERO = Decimal(0)


@dataclass(frozen=True)
class Tier:
    """One tier: units up to ``up_to`` (inclusive; ``None`` for no end) at ``unit_price`` each, plus ``flat_fee``."""

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO


@dataclass(frozen=True)
class ChargeSpec:
    """A charge's definition, detached from the database (``PlanCharge`` and its tiers).

    ``price`` and ``price_per_units`` serve ``standard``; ``price`` and ``package_size`` serve
    ``package``; ``tiers`` serve ``graduated`` and ``volume``.
    """

    model: str
    price: Decimal = ZERO
    price_per_units: Decimal = Decimal(1)
    package_size: Decimal | None = None
    tiers: tuple[Tier, ...] = ()

    @classmethod
    def of(cls, charge) -> ChargeSpec:
        """The spec of a ``PlanCharge`` (its tiers read from ``charge.tiers.all()``, prefetched or not)."""
        tiers = tuple(Tier(t.up_to, t.unit_price, t.flat_fee) for t in charge.tiers.all())
        return cls(model=charge.charge_model, price=charge.price, price_per_units=charge.price_per_units,
                   package_size=charge.package_size, tiers=tiers)


def _standard(spec: ChargeSpec, quantity: Decimal) -> Decimal:
    return quantity * spec.price / spec.price_per_units


def _package(spec: ChargeSpec, quantity: Decimal) -> Decimal:
    if quantity <= 0:
        return ZERO
    packages = (quantity / spec.package_size).to_integral_value(rounding=ROUND_CEILING)
    return packages * spec.price


def _graduated(spec: ChargeSpec, quantity: Decimal) -> Decimal:
    total, lower = ZERO, ZERO
    for tier in spec.tiers:
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        total += (upper - lower) * tier.unit_price + tier.flat_fee
        if tier.up_to is None:
            break
        lower = tier.up_to
    return total


def _volume(spec: ChargeSpec, quantity: Decimal) -> Decimal:
    if quantity <= 0:
        return ZERO
    for tier in spec.tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return quantity * tier.unit_price + tier.flat_fee
    raise ValueError("volume tiers end with an open tier (up_to None)")


#: The charge models, keyed as ``PlanCharge.charge_model`` (django-oscar's benefits-by-type).
CHARGE_MODELS: dict[str, Callable[[ChargeSpec, Decimal], Decimal]] = {
    "standard": _standard,
    "package": _package,
    "graduated": _graduated,
    "volume": _volume,
}


def charge_amount(spec: ChargeSpec, quantity: Decimal) -> Decimal:
    """The cost of ``quantity`` units (≥ 0) under ``spec``, in the plan's currency, 12 decimal places.

    Computed exactly in ``money.MONEY_CONTEXT`` and quantized once (half-up) at the end.

    Raises:
        ValueError: a negative quantity, an unknown model, tiers that do not end open.
    """
    if quantity < 0:
        raise ValueError(f"a charge prices a quantity of zero or more, got {quantity}")
    with localcontext(MONEY_CONTEXT):
        return quantize_metered(CHARGE_MODELS[spec.model](spec, quantity))


def tiers_problem(model: str, tiers: Sequence[Tier]) -> str | None:
    """Why ``tiers`` cannot serve a ``model`` charge, or ``None`` when they can.

    Graduated and volume charges need at least one tier; ``up_to`` rises strictly; only the last tier
    is open. Standard and package charges take no tiers.
    """
    if model in ("standard", "package"):
        return "standard and package charges take no tiers" if tiers else None
    if not tiers:
        return f"a {model} charge needs at least one tier"
    previous = ZERO
    for i, tier in enumerate(tiers):
        last = i == len(tiers) - 1
        if tier.up_to is None and not last:
            return f"tiers[{i}] has no up_to but is not the last tier"
        if last and tier.up_to is not None:
            return f"the last tier (tiers[{i}]) must be open: leave its up_to empty"
        if tier.up_to is not None and tier.up_to <= previous:
            return f"tiers[{i}].up_to must be greater than {previous}"
        if tier.unit_price < 0 or tier.flat_fee < 0:
            return f"tiers[{i}] has a negative price"
        previous = tier.up_to if tier.up_to is not None else previous
    return None
