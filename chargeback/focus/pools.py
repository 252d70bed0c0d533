"""What a shared cost pool is made of: its usage by provider (FOCUS ``ProviderName``) and ``ChargeCategory``.

A pool nets every row it holds: one provider's credits (negative ``BilledCost``) against another's
charges. ``pool_breakdown`` shows the parts, so the netting is visible in the billing-run preview
and in each invoice's PDF appendix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count

from billing_site.db import MeteredSum
from chargeback.models import AllocationRule
from chargeback.periods import BillingPeriod
from chargeback.selectors import usage_records_of_period


@dataclass
class PoolPart:
    """The usage of one provider and charge category in a pool: rows and Σ cost (metered, may be negative)."""

    provider: str
    charge_category: str
    rows: int
    cost: Decimal


@dataclass
class Pool:
    """One shared pool of a period in one currency: ``name`` ("Unallocated pool" or "<team>'s costs"),
    its ``parts`` (largest first), and the charges (Σ of positive parts), credits (Σ of negative
    parts) and net (their sum: what rules split)."""

    name: str
    currency: str
    parts: list[PoolPart] = field(default_factory=list)

    @property
    def charges(self) -> Decimal:
        return sum((p.cost for p in self.parts if p.cost > 0), Decimal(0))

    @property
    def credits(self) -> Decimal:
        return sum((p.cost for p in self.parts if p.cost < 0), Decimal(0))

    @property
    def net(self) -> Decimal:
        return self.charges + self.credits

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)


def pool_breakdown(*, period: BillingPeriod) -> list[Pool]:
    """The shared pools of ``period`` broken down by provider and charge category, per currency.

    The pools are the unallocated pool (active usage without a team) and the costs of each team an
    enabled rule takes from (``AllocationRule.Source.TEAM``), before the rules' match filters.
    Amounts are exact metered sums (Decimal, 12 places) in their currency; currencies are never
    added together. One GROUP BY per pool; pools without usage are left out.
    """
    sources: list[tuple[str, dict]] = [("Unallocated pool", {"team__isnull": True})]
    teams = (AllocationRule.objects.filter(enabled=True, source=AllocationRule.Source.TEAM)
             .select_related("source_team").order_by("source_team__name", "source_team_id"))
    seen: set[int] = set()
    for rule in teams:
        if rule.source_team_id not in seen:
            seen.add(rule.source_team_id)
            sources.append((f"{rule.source_team.name}'s costs", {"team_id": rule.source_team_id}))
    pools: list[Pool] = []
    for name, where in sources:
        grouped = (usage_records_of_period(period=period).filter(**where).order_by()
                   .values("currency", "provider", "charge_category")
                   .annotate(rows=Count("id"), cost=MeteredSum("cost")))
        by_currency: dict[str, Pool] = {}
        for g in grouped:
            pool = by_currency.setdefault(g["currency"], Pool(name=name, currency=g["currency"]))
            pool.parts.append(PoolPart(provider=g["provider"] or "—", charge_category=g["charge_category"] or "—",
                                       rows=g["rows"], cost=g["cost"] or Decimal(0)))
        for currency in sorted(by_currency):
            pool = by_currency[currency]
            pool.parts.sort(key=lambda p: (-abs(p.cost), p.provider, p.charge_category))
            pools.append(pool)
    return pools
