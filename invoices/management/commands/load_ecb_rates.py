"""``python manage.py load_ecb_rates FILE``: load the ECB's euro reference rates into the rates table.

FILE is ``eurofxref-hist.csv`` (every day since 1999), ``eurofxref.csv`` (one day) or either zipped,
as downloaded from https://www.ecb.europa.eu/stats/eurofxref/ (the command never uses the network).
Each quote is stored as EUR → currency with source ``ECB``; cross rates are derived when used
(``docs/billing-run.md``, "Exchange rates"). Loading a file twice changes nothing.

Exit codes: 0 loaded; 2 the file cannot be read (the message names the line and column; nothing loaded).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from invoices.errors import InvalidRatesFile
from invoices.services.exchange_rates import exchange_rates_load_ecb


class Command(BaseCommand):
    help = "Load the ECB euro reference rates (eurofxref-hist.csv, eurofxref.csv, or zipped) into the rates table."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the ECB CSV (or zip) file.")

    def handle(self, *args, **options):
        try:
            loaded = exchange_rates_load_ecb(path=options["file"])
        except InvalidRatesFile as exc:
            raise CommandError(f"rates not loaded: {exc}", returncode=2) from exc
        span = f"{loaded.first} to {loaded.last}" if loaded.first else "no day"
        self.stdout.write(self.style.SUCCESS(
            f"{loaded.rates} ECB rate{'s' if loaded.rates != 1 else ''} written ({loaded.days} days, {span}; "
            f"{len(loaded.currencies)} currencies: {', '.join(loaded.currencies)})"
        ))
