"""``python manage.py generate_focus PATH [--rows N] [--period YYYY-MM] [--seed S] [--gzip]``.

Writes a realistic, deterministic FOCUS 1.0 cost file with ``chargeback.focus.generator`` (same seed,
same bytes) and prints its total ``BilledCost``, to check an import against.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chargeback.focus.generator import BUSINESS_UNITS, write_focus_file
from chargeback.periods import PeriodError


class Command(BaseCommand):
    help = "Write a deterministic, realistic FOCUS 1.0 CSV (AWS, Microsoft, Google Cloud) for demos and benchmarks."

    def add_arguments(self, parser):
        parser.add_argument("path", help="The file to write (replaced if it exists).")
        parser.add_argument("--rows", type=int, default=5000, help="Data rows (default 5000).")
        parser.add_argument("--period", default="2026-10", metavar="YYYY-MM", help="Billing month (default 2026-10).")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42): same seed, same file.")
        parser.add_argument("--gzip", action="store_true", help="Compress the file with gzip.")

    def handle(self, *args, **options):
        if options["rows"] < 0:
            raise CommandError("--rows must not be negative", returncode=2)
        try:
            generated = write_focus_file(
                options["path"], rows=options["rows"], period=options["period"], seed=options["seed"],
                gzip=options["gzip"],
            )
        except PeriodError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        except OSError as exc:
            raise CommandError(f"{options['path']}: cannot write the file: {exc.strerror or exc}", returncode=2) from exc
        categories = ", ".join(f"{name} {count:,}" for name, count in sorted(generated.charge_categories.items()))
        self.stdout.write(self.style.SUCCESS(
            f"Wrote {generated.path}: {generated.rows:,} rows, billing period {generated.period}, seed {generated.seed}"
        ))
        self.stdout.write(f"ChargeCategory: {categories or 'none'}")
        self.stdout.write(f"Sum of BilledCost: {generated.total_billed_cost} {generated.currency} "
                          f"(without a business_unit tag: {generated.untagged_billed_cost})")
        self.stdout.write(f"Business units (teams on import): {', '.join(BUSINESS_UNITS)}")
