"""``manage.py budget_alerts``: check every team's budget and e-mail the thresholds newly reached."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from portal.selectors import teams_with_budget
from portal.services import budget_alerts_check


class Command(BaseCommand):
    help = "Check every team's monthly budget; e-mail each threshold (80 %, 100 %, forecast) once per month."

    def handle(self, *args, **options):
        sent = 0
        for team in teams_with_budget():
            new = budget_alerts_check(team=team)
            sent += len(new)
            for alert in new:
                self.stdout.write(f"{team.name}: {alert.label}")
        self.stdout.write(self.style.SUCCESS(f"{sent} new budget alert(s)."))
