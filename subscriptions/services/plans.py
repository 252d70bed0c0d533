"""Plans: create, edit (names only once used), archive, and new versions.

Prices are immutable once a plan has subscribers (any subscription, of any status, ever): the
fee, currency, interval, minimum commitment, charges and tiers. :func:`plan_update` refuses a price
change then with ``PlanImmutable`` (409, ``plan_immutable``) naming the fields; finance calls
:func:`plan_new_version` and moves the subscriptions with ``subscription_change_plan``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from ..models import Plan

#: Fields of a plan that are its prices: frozen once the plan has subscribers.
PLAN_PRICE_FIELDS = ("fee", "currency", "interval", "interval_count", "minimum_commitment")
#: Fields that may change at any time.
PLAN_FREE_FIELDS = ("name", "tier", "description", "trial_days")


def plan_create(*, code: str, name: str, tier: str, currency: str, fee: Decimal, interval: str = "month",
                interval_count: int = 1, trial_days: int = 0, minimum_commitment: Decimal | None = None,
                description: str = "", charges: Sequence[Mapping] = (), replaces: Plan | None = None) -> Plan:
    """Create a plan and its charges (one per meter) in one transaction.

    Args:
        charges: ``[{"meter", "resource_type", "feature_key"?, "provider"?, "unit"?, "included_units"?,
            "charge_model"?, "price"?, "price_per_units"?, "package_size"?, "tiers"?: [{"up_to", "unit_price",
            "flat_fee"?}]}]``; amounts as Decimals (or decimal strings).
    """
    raise NotImplementedError


def plan_update(*, plan: Plan, **fields) -> Plan:
    """Change a plan's fields (and, with ``charges=[...]``, replace its charges) unless they are prices in use."""
    raise NotImplementedError


def plan_archive(*, plan: Plan) -> Plan:
    """Archive a plan: no new subscriptions; existing ones keep renewing on it."""
    raise NotImplementedError


def plan_new_version(*, plan: Plan, code: str, **changes) -> Plan:
    """A copy of ``plan`` (charges and tiers too) with ``changes`` applied, ``version + 1``, ``replaces=plan``."""
    raise NotImplementedError
