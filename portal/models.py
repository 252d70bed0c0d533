"""The team portal's own rows: a team's monthly budget and the budget alerts already sent.

The portal sits above every billing app (it reads teams, usage, wallets and invoices through their
selectors); no app imports it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from billing_site.fields import CurrencyField, MeteredAmountField
from teams.models import Team

#: The alert thresholds a new budget has: 80 % and 100 % of the budget.
DEFAULT_THRESHOLDS = [80, 100]


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class Budget(models.Model):
    """A team's budget for every calendar month, in the team's currency, with its alert thresholds.

    Invariants: one budget per team; ``amount > 0`` (a CHECK); ``thresholds`` is a sorted list of
    whole percents in ``[1, 1000]`` (checked by ``portal.services.budget_set``, the only writer);
    ``alert_on_forecast`` adds the alert "the month's linear forecast exceeds the budget".
    """

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="budget")
    amount = MeteredAmountField(help_text="The monthly budget, in currency.")
    currency = CurrencyField()
    thresholds = models.JSONField(default=default_thresholds, help_text="Alert at these percents of the budget.")
    alert_on_forecast = models.BooleanField(default=True, help_text="Alert when the month's forecast exceeds it.")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="budget_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.team}: {self.amount} {self.currency} a month"


class BudgetAlert(models.Model):
    """A budget alert of one team, month and threshold: the unique key makes it go out once.

    ``threshold`` is a percent as text (``"80"``, ``"100"``) or ``"forecast"``. ``cost`` and
    ``forecast`` are the month's figures when it was crossed (metered, in ``currency``).
    ``sent_at`` is set once the e-mail left (``portal.services.budget_alert_send``).
    """

    FORECAST = "forecast"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budget_alerts")
    month = models.DateField(help_text="First day of the month.")
    threshold = models.CharField(max_length=10)
    budget_amount = MeteredAmountField()
    cost = MeteredAmountField()
    forecast = MeteredAmountField()
    currency = CurrencyField()
    recipients = models.TextField(blank=True, help_text="Comma-separated addresses the alert went to.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-month", "team", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["team", "month", "threshold"], name="budget_alert_once_per_month"),
        ]

    def __str__(self) -> str:
        return f"{self.team} {self.month:%Y-%m} {self.label}"

    @property
    def label(self) -> str:
        return "forecast to exceed" if self.threshold == self.FORECAST else f"{self.threshold} %"
