"""``python manage.py export_focus YYYY-MM [--format csv|parquet] [--output PATH]``.

Writes the committed allocation of a month as a FOCUS 1.0 file (``chargeback.focus.export``): one row
per allocated line, the team and rule in ``x_`` columns. CSV goes to stdout unless ``--output``.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from chargeback.focus.export import FORMATS, focus_export_write
from chargeback.periods import BillingPeriod, PeriodError


class Command(BaseCommand):
    help = "Export a month's allocated costs as FOCUS (CSV or Parquet), one row per allocated line."

    def add_arguments(self, parser):
        parser.add_argument("period", metavar="YYYY-MM")
        parser.add_argument("--format", choices=list(FORMATS), default="csv")
        parser.add_argument("--output", metavar="PATH", help="The file to write (default: stdout, CSV only).")

    def handle(self, *args, **options):
        try:
            period = BillingPeriod.month(options["period"])
        except PeriodError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["output"] is None:
            if options["format"] != "csv":
                raise CommandError("Parquet needs --output", returncode=2)
            sys.stdout.flush()
            focus_export_write(period=period, out=sys.stdout.buffer, fmt="csv")
            sys.stdout.buffer.flush()
            return
        with open(options["output"], "wb") as out:
            count = focus_export_write(period=period, out=out, fmt=options["format"])
        self.stderr.write(f"{count:,} rows written to {options['output']}")

