"""Writes of the team portal: a team's budget, and its alerts (found, recorded once, e-mailed).

Budget alerts: :func:`budget_alerts_check` records one ``BudgetAlert`` per team, month and threshold
(the unique key ``budget_alert_once_per_month`` makes a second check a no-op) and sends the new ones
after the commit (``transaction.on_commit``) through :func:`budget_alert_send`, the function a mail
job will call once the jobs queue exists. It runs when a budget is set, from
``manage.py budget_alerts`` (schedule it, e.g. hourly) and whenever a portal page shows the budget.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from functools import partial

from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing_site.errors import InvalidRequest
from billing_site.formatting import money_display
from billing_site.money import METERED_BOUND, parse_amount
from teams.models import Team

from .models import Budget, BudgetAlert
from .selectors import budget_alert_recipients, budget_status_get

#: The thresholds a budget accepts, in whole percents.
THRESHOLD_RANGE = (1, 1000)


def _thresholds_check(thresholds: Sequence[int]) -> list[int]:
    values = sorted(set(thresholds))
    low, high = THRESHOLD_RANGE
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidRequest(f"a threshold is a whole percent from {low} to {high}, not {value!r}",
                                 param="thresholds")
    return values


def budget_set(*, team: Team, amount: Decimal, thresholds: Sequence[int] = (80, 100),
               alert_on_forecast: bool = True, set_by=None, today: dt.date | None = None) -> Budget:
    """Set ``team``'s monthly budget (created or replaced) and check its alerts at once.

    Args:
        amount: the monthly budget in the team's currency, > 0, at most the currency's minor units.
        thresholds: whole percents of the budget in ``[1, 1000]`` that send an alert when reached.
        alert_on_forecast: also alert when the month's linear forecast exceeds the budget.
        set_by: the team lead or finance person (the caller checks who may).
        today: the day the alerts are checked for (default: today, UTC).

    Raises:
        MoneyError: ``amount`` not positive, too large, or with more decimals than the currency has
            (``param="amount"``, HTTP 400).
        InvalidRequest: a threshold out of range (``param="thresholds"``).
    """
    amount = parse_amount(amount, param="amount", positive=True, currency=team.currency, below=METERED_BOUND)
    values = _thresholds_check(thresholds)
    with transaction.atomic(durable=True):
        budget, _ = Budget.objects.update_or_create(
            team=team,
            defaults={"amount": amount, "currency": team.currency, "thresholds": values,
                      "alert_on_forecast": alert_on_forecast, "updated_by": set_by},
        )
    budget_alerts_check(team=team, today=today)
    return budget


def budget_alerts_check(*, team: Team, today: dt.date | None = None) -> list[BudgetAlert]:
    """Record and send (after the commit) the budget alerts ``team`` has reached this month and not had yet.

    Returns the new alerts (empty when there is no budget or nothing new). Safe to call again and
    concurrently: the unique key (team, month, threshold) admits each alert once.
    """
    today = today or timezone.now().date()
    status = budget_status_get(team=team, today=today)
    if status is None or not status.crossed:
        return []
    already = {alert.threshold for alert in status.alerts}
    new: list[BudgetAlert] = []
    with transaction.atomic(durable=True):
        for threshold in status.crossed:
            if threshold in already:
                continue
            alert, created = BudgetAlert.objects.get_or_create(
                team=team, month=status.period.start, threshold=threshold,
                defaults={"budget_amount": status.budget.amount, "cost": status.cost, "forecast": status.forecast,
                          "currency": status.budget.currency},
            )
            if created:
                new.append(alert)
                transaction.on_commit(partial(budget_alert_send, alert_id=alert.pk))
    return new


def budget_alert_send(*, alert_id: int) -> BudgetAlert:
    """E-mail one budget alert to the team's addresses (``portal.selectors.budget_alert_recipients``).

    Sends at most once: an alert with ``sent_at`` is left alone. A team without any address keeps
    the alert recorded (shown on its budget page) with ``sent_at`` empty.
    """
    with transaction.atomic(durable=True):
        alert = BudgetAlert.objects.select_for_update(of=("self",)).select_related("team").get(pk=alert_id)
        if alert.sent_at is not None:
            return alert
        recipients = budget_alert_recipients(team=alert.team)
        if not recipients:
            return alert
        context = {
            "alert": alert, "team": alert.team, "month": f"{alert.month:%B %Y}",
            "budget": money_display(alert.budget_amount, alert.currency),
            "cost": money_display(alert.cost, alert.currency),
            "forecast": money_display(alert.forecast, alert.currency),
        }
        subject = f"Budget alert for {alert.team.name}: {alert.label} of the {context['month']} budget"
        send_mail(subject, render_to_string("portal/email/budget_alert.txt", context), None, recipients)
        alert.recipients = ", ".join(recipients)
        alert.sent_at = timezone.now()
        alert.save(update_fields=["recipients", "sent_at"])
    return alert
