"""``python manage.py import_focus PATH [--team-tag KEY] [--subaccount-fallback] [--skip-bad-rows] [--create-teams]``.

Imports a FOCUS 1.0–1.4 cost file (CSV, gzip'd CSV or Parquet) with ``chargeback.services.focus_import.focus_import`` and prints
what it did. A bad file exits with code 2 and one line naming the file, row and column.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from billing_site.money import currency_exponent
from chargeback.focus.results import FocusImportError, FocusImportResult
from chargeback.services.focus_import import focus_import


class Command(BaseCommand):
    help = ("Import a FOCUS 1.0–1.4 cost file (CSV, gzip'd CSV or Parquet) as usage records; importing it "
            "again adds nothing.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="The FOCUS file: CSV, gzip'd CSV or Parquet (told by its first bytes).")
        parser.add_argument("--team-tag", default="business_unit", metavar="KEY",
                            help="The Tags key whose value names a row's team (default: business_unit).")
        parser.add_argument("--subaccount-fallback", action="store_true",
                            help="Charge rows without that tag to a team named after their SubAccountName.")
        parser.add_argument("--skip-bad-rows", action="store_true",
                            help="Skip rows with a bad value (each is reported) and import the rest.")
        parser.add_argument("--create-teams", action="store_true",
                            help="Create a team for a value that names none (never for one differing from a "
                                 "team's name only in case, spacing or punctuation). Without it, such rows "
                                 "stay unallocated and are listed.")
        parser.add_argument("--no-progress", action="store_true", help="Do not show a progress bar.")

    def handle(self, *args, **options):
        if not options["team_tag"].strip():
            raise CommandError("--team-tag must name a Tags key", returncode=2)
        # tqdm draws on stderr and only when it is a terminal (disable=None), so logs stay clean.
        with tqdm(unit=" rows", unit_scale=True, desc="Importing", file=sys.stderr, leave=False,
                  disable=True if options["no_progress"] else None) as bar:
            try:
                result = focus_import(
                    path=options["path"], team_tag=options["team_tag"].strip(),
                    subaccount_fallback=options["subaccount_fallback"],
                    skip_bad_rows=options["skip_bad_rows"], create_teams=options["create_teams"],
                    progress=bar,
                )
            except FocusImportError as exc:
                raise CommandError(str(exc), returncode=2) from exc
        self._summary(result)

    def _summary(self, result: FocusImportResult) -> None:
        write = self.stdout.write
        write(self.style.SUCCESS(
            f"Imported {result.file}: {result.rows_read:,} rows read, {result.rows_imported:,} imported, "
            f"{result.rows_duplicate:,} duplicate (imported before), {result.rows_skipped:,} skipped "
            f"in {result.seconds:.1f} s"
        ))
        write(f"Read as FOCUS {result.focus_version}, {_FORMATS.get(result.file_format, result.file_format)} "
              "(the version told by the columns)")
        if result.rows_duplicate:
            write("Duplicates: " + "; ".join(f"{cost:,.12f} {currency}" for currency, cost in
                                             result.duplicate_cost.items())
                  + f" in {_rows(result.rows_duplicate)} left out (imported before, or twice in the file)")
        write(f"Teams created: {result.teams_created:,}"
              + (f" ({', '.join(result.new_teams[:12])}{', …' if result.teams_created > 12 else ''})"
                 if result.new_teams else ""))
        write(f"Rows without a team (unallocated pool): {result.rows_unallocated:,}")
        if result.unmapped:
            write(self.style.WARNING(
                f"Values naming no team ({len(result.unmapped):,}; left unallocated: map them with "
                "`manage.py team_mapping set`, in the upload preview, or import with --create-teams):"))
            for key, value in sorted(result.unmapped.items(), key=lambda kv: -kv[1].rows)[:20]:
                costs = ", ".join(f"{cost:,.2f} {currency}" for currency, cost in sorted(value.cost.items()))
                like = result.unmapped_resembles.get(key)
                write(f"  {key!r}: {_rows(value.rows)}, {costs}" + (f" (resembles team {like!r})" if like else ""))
            if len(result.unmapped) > 20:
                write(f"  … and {len(result.unmapped) - 20:,} more")
        if result.periods:
            write("BilledCost by billing period:")
            for (start, currency), total in sorted(result.periods.items()):
                places = max(currency_exponent(currency), 11)
                write(f"  {start:%Y-%m}  {total.billed_cost:>22,.{places}f} {currency}  "
                      f"({_rows(total.rows)}; unallocated {total.unallocated_cost:,.{places}f} "
                      f"in {_rows(total.unallocated_rows)})")
        if result.skipped:
            write(self.style.WARNING(f"Skipped rows ({result.rows_skipped:,}):"))
            for error in result.skipped:
                write(f"  {error}")
            if result.rows_skipped > len(result.skipped):
                write(f"  … and {result.rows_skipped - len(result.skipped):,} more")


_FORMATS = {"csv": "CSV", "csv.gz": "gzip'd CSV", "parquet": "Parquet"}


def _rows(count: int) -> str:
    return f"{count:,} row" + ("" if count == 1 else "s")
