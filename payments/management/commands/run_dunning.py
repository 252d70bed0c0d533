"""``manage.py run_dunning [--at ISO-8601]``: make the due retries of failed invoice payments.

Calls ``payments.services.dunning_retries.dunnings_run_due`` (docs/payments.md, "Dunning"): ends the dunnings whose
invoice was paid or cancelled meanwhile (reversing the final action), then retries each dunning
whose day has come. Runs hourly as a periodic job (``jobs.tasks.PERIODIC_COMMANDS``). Safe to run
again and concurrently. Without Stripe configured it does nothing and says so.
"""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from payments.services.dunning_retries import dunnings_run_due
from payments.stripe_client import payments_configured


class Command(BaseCommand):
    help = "Retry the failed invoice payments whose retry day has come; take the final action after the last."

    def add_arguments(self, parser):
        parser.add_argument("--at", help="Run as of this instant (ISO 8601, default now); for catching up.")

    def handle(self, *args, at=None, **options):
        when = timezone.now()
        if at:
            try:
                when = dt.datetime.fromisoformat(at)
            except ValueError as exc:
                raise CommandError(f"--at: {at!r} is not an ISO 8601 instant") from exc
            if timezone.is_naive(when):
                when = when.replace(tzinfo=dt.UTC)
        if not payments_configured():
            self.stdout.write("Payments are not configured (STRIPE_SECRET_KEY): nothing to retry.")
            return
        run = dunnings_run_due(at=when)
        self.stdout.write(
            f"Dunning: {run.retried} retried ({run.recovered} paid, {run.declined} declined), "
            f"{run.exhausted} final action(s) taken, {run.settled} settled by another door."
        )
        for error in run.errors:
            self.stderr.write(error)
