"""``python manage.py billing_run --period YYYY-MM [--team SLUG] [--dry-run]``: the month-end run.

One door of ``invoices.services.billing_run.billing_run_execute`` (the admin's "Run billing for a
period…" and ``POST /api/v1/billing-runs/`` are the others): it allocates the calendar month
(committing the run, superseding the month's previous one), creates or refreshes one draft invoice
per team, stores each draft's PDF, and this command prints the summary: team, amount, invoice,
status, PDF, then the total invoiced per currency, the amounts converted into a team's own
currency (with the rate, its date and source), and one tie-out line ``allocated X of Y,
unallocated Z`` per currency (each currency is its own pool; none is added to another).

Figures: invoice amounts in the currency's minor units (rounded by the largest-remainder method);
the tie-out line in metered precision, written exactly (no rounding), so X + Z = Y to the last
digit. ``--dry-run`` allocates in memory and prints what would be invoiced: it writes nothing (no
run, no invoice, no PDF).

One team's data never stops the others' run: a team with costs in several currencies gets one
invoice per currency, or one in its own currency with the others converted; a team whose
conversion has no exchange rate is not invoiced, every other team is, and the summary ends with
the teams not billed and why ("Not billed: …", naming the currency pair and date); the exit code
is then 3.

Exit codes: 0 done; 1 nothing to bill or the allocation failed; 2 a bad ``--period`` or ``--team``;
3 partly billed: the teams listed under "Not billed" were not (the others were; the run is committed).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from billing_site.money import format_amount, format_metered, format_period
from chargeback.errors import AllocationError, NothingToAllocate
from chargeback.focus.pools import pool_breakdown
from chargeback.periods import BillingPeriod, PeriodError
from invoices.services.billing_run import BillingRunResult, billing_run_converted_line, billing_run_execute
from teams.models import Team

#: Below this many invoices the PDFs render without a progress bar.
PROGRESS_MIN_INVOICES = 5


class _ProgressStream:
    """tqdm's output through the command's stderr wrapper (no added line endings, no styling)."""

    def __init__(self, wrapper) -> None:
        self._wrapper = wrapper

    def write(self, text: str) -> None:
        self._wrapper.write(text, style_func=lambda s: s, ending="")

    def flush(self) -> None:
        self._wrapper.flush()



class Command(BaseCommand):
    help = (
        "Month-end billing run: allocate the month, create or refresh each team's draft invoice, render the "
        "PDFs and print the tie-out."
    )

    def add_arguments(self, parser):
        parser.add_argument("--period", required=True, metavar="YYYY-MM", help="The calendar month to bill, e.g. 2024-09.")
        parser.add_argument("--team", metavar="SLUG", help="Invoice only this team (the whole month is still allocated).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Show what would be invoiced; write nothing (no allocation run, invoices or PDFs).")
        parser.add_argument("--no-pdf", action="store_true", help="Write the draft invoices without rendering PDFs.")

    def handle(self, *args, **options):
        try:
            period = BillingPeriod.month(options["period"])
        except PeriodError as exc:
            raise CommandError(f"bad --period: {exc}", returncode=2) from exc
        team = None
        if options["team"]:
            team = Team.objects.filter(slug=options["team"]).first()
            if team is None:
                raise CommandError(f"bad --team: no team has the slug {options['team']!r}", returncode=2)

        self.stdout.write(self.style.MIGRATE_HEADING(
            f"Billing run for {period} ({format_period(period.start, period.end)})"
            + (f", team {team.name}" if team else "") + (" — dry run, nothing is written" if options["dry_run"] else "")
        ))
        try:
            result = billing_run_execute(
                period=period, teams=[team] if team else None, render_pdfs=not options["no_pdf"],
                dry_run=options["dry_run"], progress=self._progress,
            )
        except NothingToAllocate as exc:
            raise CommandError(f"nothing to bill: {exc}", returncode=1) from exc
        except AllocationError as exc:
            raise CommandError(f"the allocation of {period} failed: {exc}", returncode=1) from exc
        if result.dry_run:
            self._dry_run(result)
        else:
            self._run(result)

    def _progress(self, invoices):
        return tqdm(
            invoices, desc="Rendering PDFs", unit=" invoice", leave=False, file=_ProgressStream(self.stderr),
            disable=not self.stderr.isatty() or len(invoices) < PROGRESS_MIN_INVOICES,
        )

    # --- the real run ------------------------------------------------------------------------------

    def _run(self, result: BillingRunResult) -> None:
        run = result.run
        self.stdout.write(
            f"Allocation run #{run.pk} committed: {run.record_count:,} usage records, "
            + ", ".join(format_metered(pool.total_cost, pool.currency) for pool in result.pools)
        )
        self._run_warnings(result)
        if result.nothing_to_bill:
            raise CommandError(
                f"nothing to bill for {result.period}: no team's allocated cost comes to a minor unit or more "
                f"({result.tie_out})", returncode=1,
            )
        rows = []
        for row in result.rows():
            invoice = row.invoice
            pdf = invoice.pdf.path if invoice.pdf and row.state != "cancelled" else "—"
            if row.state == "cancelled":
                rows.append((row.team_name, "—", invoice.display_number, "cancelled, nothing to bill", "—"))
            else:
                rows.append((row.team_name, format_amount(row.amount, row.currency), invoice.display_number,
                             f"{invoice.status}, {row.state}", pdf))
        self._table(("Team", "Amount", "Invoice", "Status", "PDF"), rows, right={1})
        self._grand_total(result)
        for problem in result.problems:
            self.stderr.write(self.style.ERROR(problem))
        for invoice in result.skipped:
            self.stderr.write(self.style.WARNING(
                f"{invoice.display_number} ({invoice.team_name}) was issued before this run and was not changed; "
                "correct it with a credit note if this run bills the team differently"
            ))
        self._converted(result)
        self.stdout.write(result.tie_out)
        self._not_billed(result)

    # --- dry run -------------------------------------------------------------------------------------

    def _dry_run(self, result: BillingRunResult) -> None:
        run = result.run
        self.stdout.write(f"Would allocate {run.record_count:,} usage records, "
                          + ", ".join(format_metered(pool.total_cost, pool.currency) for pool in result.pools))
        self._run_warnings(result)
        rows = [
            (row.team_name, format_amount(row.amount, row.currency), format_metered(row.precise, row.currency),
             "would be invoiced" if row.amount else "nothing to bill (rounds to zero)")
            for row in result.rows()
        ]
        self._table(("Team", "Amount", "Metered", "Invoice"), rows, right={1, 2})
        billed = result.billed
        self.stdout.write(
            "Total that would be invoiced: "
            + (", ".join(format_amount(t, c) for c, t in result.totals().items()) or "nothing")
            + f" ({billed} invoice{'s' if billed != 1 else ''})"
        )
        self._converted(result)
        self.stdout.write(result.tie_out)
        self._pools(result)
        if result.nothing_to_bill:
            raise CommandError(f"nothing to bill for {result.period}", returncode=1)
        self._not_billed(result)

    # --- output ---------------------------------------------------------------------------------------

    def _pools(self, result: BillingRunResult) -> None:
        """The shared pools by provider and charge category: credits netted against charges are visible."""
        for pool in pool_breakdown(period=result.period):
            currency = pool.currency
            self.stdout.write(f"{pool.name} ({currency}), by provider and charge category:")
            for part in pool.parts:
                self.stdout.write(f"  {part.provider:<24} {part.charge_category:<11} {part.rows:>9,} rows "
                                  f"{format_metered(part.cost, currency):>24}")
            self.stdout.write(f"  charges {format_metered(pool.charges, currency)}, credits "
                              f"{format_metered(pool.credits, currency)}: net {format_metered(pool.net, currency)}")

    def _not_billed(self, result: BillingRunResult) -> None:
        """List the teams the run left out, then exit 3: partly billed."""
        refused = result.refused
        if not refused:
            return
        count = f"{len(refused)} team{'s' if len(refused) != 1 else ''}"
        left = "would not be invoiced" if result.dry_run else "is not invoiced"
        self.stdout.write(self.style.ERROR(f"Not billed ({count}): their usage {left} in this run"))
        for entry in refused:
            self.stdout.write(f"  {entry['message']}")
        raise CommandError(
            f"partly billed: {count} not billed (listed above); load the missing exchange rates "
            f"(manage.py load_ecb_rates FILE) and run {result.period} again",
            returncode=3,
        )

    def _converted(self, result: BillingRunResult) -> None:
        """The amounts converted into a team's currency, each with its rate, date and source."""
        converted = result.converted()
        if converted:
            self.stdout.write("Converted:")
            for entry in converted:
                self.stdout.write(f"  {billing_run_converted_line(entry)}")

    def _run_warnings(self, result: BillingRunResult) -> None:
        for warning in result.run.warnings or []:
            self.stderr.write(self.style.WARNING(f"warning: {warning.get('message', warning)}"))

    def _grand_total(self, result: BillingRunResult) -> None:
        count = len(result.live_invoices)
        self.stdout.write(self.style.SUCCESS(
            "Total invoiced: " + (", ".join(format_amount(t, c) for c, t in result.totals().items()) or "nothing")
            + f" ({count} invoice{'s' if count != 1 else ''})"
        ))
    def _table(self, header: tuple[str, ...], rows: list[tuple[str, ...]], *, right: set[int]) -> None:
        widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
        # The last column (the PDF path) is not padded: it may be long.
        widths[-1] = 0

        def line(cells):
            return "  ".join(
                (c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        self.stdout.write(line(header))
        self.stdout.write("  ".join("-" * max(w, len(h)) for w, h in zip(widths, header)))
        for row in rows:
            self.stdout.write(line(row))
