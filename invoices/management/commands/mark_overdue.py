"""``python manage.py mark_overdue [--date YYYY-MM-DD]``: issued invoices past their due date become overdue.

Run daily. Moves every ``pending`` or ``sent`` invoice whose due date is before the given day
(default: today, local time zone) to ``overdue`` (``invoices.services.invoices_mark_overdue``) and
prints one line per invoice and a count. Idempotent: a second run the same day moves nothing.

Exit codes: 0 done (also when nothing was due); 2 a bad ``--date``.
"""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from billing_site.money import format_amount
from invoices.services.lifecycle import invoices_mark_overdue


class Command(BaseCommand):
    help = "Move issued invoices (pending or sent) past their due date to overdue. Idempotent; run daily."

    def add_arguments(self, parser):
        parser.add_argument("--date", metavar="YYYY-MM-DD", help="The day to judge against (default: today).")

    def handle(self, *args, **options):
        today = None
        if options["date"]:
            try:
                today = dt.date.fromisoformat(options["date"])
            except ValueError as exc:
                raise CommandError(f"bad --date {options['date']!r}: write it YYYY-MM-DD", returncode=2) from exc
        moved = invoices_mark_overdue(today=today)
        for invoice in moved:
            self.stdout.write(
                f"{invoice.number}  {invoice.team_name}  due {invoice.due_date:%Y-%m-%d}  "
                f"{format_amount(invoice.amount_due, invoice.currency)}  -> overdue"
            )
        self.stdout.write(self.style.SUCCESS(
            f"{len(moved)} invoice{'s' if len(moved) != 1 else ''} marked overdue"
        ))
