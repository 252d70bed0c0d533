"""Reads of the team portal. Every figure comes from the billing apps' own selectors, scoped by
``teams.selectors`` (the same scoping as the API): the portal has no query of its own on their models.

Periods are calendar months ``[start, end)`` (``chargeback.periods.BillingPeriod``); amounts are
metered ``Decimal`` (12 dp) in the currency beside them, never summed across currencies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from django.db.models import F, QuerySet
from django.shortcuts import get_object_or_404

from billing_site.money import MONEY_CONTEXT, quantize_metered
from chargeback.models import UsageRecord
from chargeback.periods import BillingPeriod, month_start
from chargeback.selectors import usage_grouped, usage_records_of_period
from invoices.models import Invoice
from invoices.selectors import invoice_list_for_user
from teams.models import ApiKey, Team, TeamMembership
from teams.selectors import billing_settings_get, team_ids_managed_by, team_list_for_user, user_is_finance
from wallets.models import Wallet
from wallets.selectors import wallet_list_for_user

from .models import Budget, BudgetAlert

ZERO = Decimal(0)

#: Invoice statuses still waiting for payment.
OPEN_INVOICE_STATUSES = (Invoice.Status.PENDING, Invoice.Status.SENT, Invoice.Status.OVERDUE)

#: How the forecast is made, as the budget page states it.
FORECAST_METHOD = (
    "Forecast: a linear projection of the month so far: the cost to date divided by the days elapsed "
    "(today counted as a whole day) times the days of the month."
)


# --- access ----------------------------------------------------------------------------------------

def portal_team_get(*, user, team_id: int) -> Team:
    """The team ``team_id`` if ``user`` may see it (``teams.selectors.team_list_for_user``), else 404."""
    return get_object_or_404(team_list_for_user(user=user), pk=team_id)


def user_leads_team(*, user, team: Team) -> bool:
    """A team lead (the team's manager) or finance: who may set the budget and create and revoke API keys."""
    return user_is_finance(user) or team.pk in team_ids_managed_by(user=user)


def user_role_label(*, user, team: Team) -> str:
    """``Finance``, ``Team lead``, ``Member`` or ``Auditor`` (read-only), as the portal's header says it."""
    if user_is_finance(user):
        return "Finance"
    if team.pk in team_ids_managed_by(user=user):
        return "Team lead"
    if TeamMembership.objects.filter(team=team, user=user).exists():
        return "Member"
    return "Auditor"


# --- cost and budget -------------------------------------------------------------------------------

def team_usage_records(*, team: Team, period: BillingPeriod) -> QuerySet[UsageRecord]:
    """The team's active usage records billed in ``period`` (``chargeback.selectors.usage_records_of_period``)."""
    return usage_records_of_period(period=period).filter(team=team)


def team_period_cost(*, team: Team, period: BillingPeriod) -> dict[str, Decimal]:
    """``{currency: cost}`` of the team's usage billed in ``period`` (metered, 12 dp), one GROUP BY."""
    return {row["currency"]: row["cost"] for row in usage_grouped(records=team_usage_records(team=team, period=period),
                                                                  fields=())}


def previous_month(period: BillingPeriod) -> BillingPeriod:
    return BillingPeriod(month_start(period.start - dt.timedelta(days=1)), period.start)


def current_month(today: dt.date) -> BillingPeriod:
    return BillingPeriod.month(f"{today:%Y-%m}")


def linear_forecast(*, cost: Decimal, period: BillingPeriod, today: dt.date) -> Decimal:
    """The month's cost projected linearly: ``cost / days elapsed × days in the month`` (:data:`FORECAST_METHOD`).

    ``today`` counts as a whole day; a ``today`` past the period gives ``cost`` itself. 12 dp.
    """
    days = (period.end - period.start).days
    elapsed = min(max((today - period.start).days + 1, 1), days)
    with localcontext(MONEY_CONTEXT):
        return quantize_metered(cost * days / elapsed)


@dataclass
class BudgetStatus:
    """A team's month against its budget. ``crossed`` lists the thresholds reached (``"80"``, ``"forecast"``)."""

    budget: Budget
    period: BillingPeriod
    cost: Decimal
    forecast: Decimal
    percent: Decimal
    forecast_percent: Decimal
    crossed: list[str] = field(default_factory=list)
    alerts: list[BudgetAlert] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return self.budget.amount - self.cost

    @property
    def bar_percent(self) -> int:
        """The meter's fill, 0 to 100 (the figure beside it says how far past 100 % it went)."""
        return int(min(self.percent, Decimal(100)))


def budget_get(*, team: Team) -> Budget | None:
    return Budget.objects.filter(team=team).first()


def _percent(part: Decimal, whole: Decimal) -> Decimal:
    with localcontext(MONEY_CONTEXT):
        return (part * 100 / whole).quantize(Decimal("0.1"))


def budget_status_get(*, team: Team, today: dt.date) -> BudgetStatus | None:
    """The team's month of ``today`` against its budget, or ``None`` without a budget.

    Cost is the team's usage billed in the month in the budget's currency (other currencies are not
    converted, so they do not count against it). A percent threshold is crossed when cost ≥ budget ×
    percent / 100; ``"forecast"`` when the budget has ``alert_on_forecast``, the cost is still below the
    budget and :func:`linear_forecast` exceeds it.
    """
    budget = budget_get(team=team)
    if budget is None:
        return None
    period = current_month(today)
    cost = team_period_cost(team=team, period=period).get(budget.currency, ZERO)
    forecast = linear_forecast(cost=cost, period=period, today=today)
    crossed = [str(t) for t in budget.thresholds if cost * 100 >= budget.amount * t]
    if budget.alert_on_forecast and cost < budget.amount < forecast:
        crossed.append(BudgetAlert.FORECAST)
    return BudgetStatus(
        budget=budget, period=period, cost=cost, forecast=forecast, percent=_percent(cost, budget.amount),
        forecast_percent=_percent(forecast, budget.amount), crossed=crossed,
        alerts=list(BudgetAlert.objects.filter(team=team, month=period.start).order_by("created_at")),
    )


def budget_alert_recipients(*, team: Team) -> list[str]:
    """The team's addresses: its billing settings' notify addresses and its team leads' e-mails, sorted, once each."""
    addresses = set(billing_settings_get(team=team).notify_email_list)
    addresses.update(
        email for email in TeamMembership.objects.filter(team=team, role=TeamMembership.Role.MANAGER)
        .values_list("user__email", flat=True) if email
    )
    return sorted(addresses)


def teams_with_budget() -> QuerySet[Team]:
    """Active teams that have a budget, for the alert check of every team."""
    return Team.objects.filter(is_active=True, budget__isnull=False).order_by("pk")


# --- wallets, invoices, keys -----------------------------------------------------------------------

def team_wallets(*, user, team: Team) -> QuerySet[Wallet]:
    """The team's wallets ``user`` may see (``wallets.selectors.wallet_list_for_user``): the team wallet,
    the user's own, and every member's for a team lead or finance."""
    return wallet_list_for_user(user=user).filter(team=team)


def team_invoices(*, user, team: Team) -> QuerySet[Invoice]:
    """The team's invoices ``user`` may see (``invoices.selectors.invoice_list_for_user``), newest period first."""
    return invoice_list_for_user(user=user).filter(team=team)


def team_open_invoices(*, user, team: Team) -> QuerySet[Invoice]:
    return team_invoices(user=user, team=team).filter(status__in=OPEN_INVOICE_STATUSES)


def team_api_keys(*, team: Team) -> QuerySet[ApiKey]:
    """The team's API keys, active first, newest first; revoked keys stay listed."""
    return ApiKey.objects.filter(team=team).select_related("created_by").order_by(F("revoked_at").asc(nulls_first=True), "-created_at")
