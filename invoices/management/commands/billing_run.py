"""``python manage.py billing_run --period YYYY-MM [--team SLUG] [--dry-run]``: the month-end run.

Allocates the calendar month (``chargeback.services.allocation_run_execute``: commits the run and
supersedes the month's previous one), creates or refreshes one draft invoice per team
(``invoices.services.invoice_generate_for_run``), renders each draft's PDF
(``invoices.pdf.invoice_store_pdf``), and prints a summary: team, amount, invoice, status, PDF,
then the total invoiced and the tie-out line ``allocated X of Y, unallocated Z``.

Figures: invoice amounts in the currency's minor units (rounded by the largest-remainder method);
the tie-out line in metered precision, written exactly (no rounding), so X + Z = Y to the last
digit. ``--dry-run`` allocates in memory and prints what would be invoiced: it writes nothing (no
run, no invoice, no PDF).

Exit codes: 0 done; 1 nothing to bill or the allocation failed; 2 a bad ``--period`` or ``--team``.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from billing_site.money import format_amount, to_minor_units
from chargeback.errors import AllocationError, NothingToAllocate
from chargeback.models import AllocationRun
from chargeback.periods import BillingPeriod, PeriodError
from chargeback.services import allocation_run_create, allocation_run_execute
from invoices.models import Invoice
from invoices.pdf import format_metered, format_period, invoice_store_pdf
from invoices.services import invoice_generate_for_run, team_amounts
from teams.models import Team

#: Below this many invoices the PDFs render without a progress bar.
PROGRESS_MIN_INVOICES = 5


def tie_out_line(run: AllocationRun) -> str:
    """``allocated X of Y, unallocated Z``: the run's totals written exactly, in its currency."""
    currency = run.currency
    return (
        f"allocated {format_metered(run.allocated_cost, currency)} of {format_metered(run.total_cost, currency)}, "
        f"unallocated {format_metered(run.unallocated_cost, currency)}"
    )


class _ProgressStream:
    """tqdm's output through the command's stderr wrapper (no added line endings, no styling)."""

    def __init__(self, wrapper) -> None:
        self._wrapper = wrapper

    def write(self, text: str) -> None:
        self._wrapper.write(text, style_func=lambda s: s, ending="")

    def flush(self) -> None:
        self._wrapper.flush()



@contextmanager
def _allocation_errors(period: BillingPeriod):
    """Turn the allocation's refusals into a clear message and exit code 1."""
    try:
        yield
    except NothingToAllocate as exc:
        raise CommandError(f"nothing to bill: {exc}", returncode=1) from exc
    except AllocationError as exc:
        raise CommandError(f"the allocation of {period} failed: {exc}", returncode=1) from exc

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
        if options["dry_run"]:
            self._dry_run(period, team)
        else:
            self._run(period, team, render=not options["no_pdf"])

    # --- the real run ------------------------------------------------------------------------------

    def _run(self, period: BillingPeriod, team: Team | None, *, render: bool) -> None:
        with _allocation_errors(period):
            run = allocation_run_execute(period=period, team=team)
        self.stdout.write(
            f"Allocation run #{run.pk} committed: {run.record_count:,} usage records, "
            f"{format_metered(run.total_cost, run.currency)}"
        )
        self._warnings(run)

        result = invoice_generate_for_run(run=run, team=team)
        if not result and not result.skipped:
            raise CommandError(
                f"nothing to bill for {period}: no team's allocated cost comes to a minor unit or more "
                f"({tie_out_line(run)})", returncode=1,
            )

        invoices = list(result)
        if render and invoices:
            bar = tqdm(
                invoices, desc="Rendering PDFs", unit=" invoice", leave=False, file=_ProgressStream(self.stderr),
                disable=not self.stderr.isatty() or len(invoices) < PROGRESS_MIN_INVOICES,
            )
            invoices = [invoice_store_pdf(invoice=invoice) for invoice in bar]

        rows = []
        for invoice in invoices:
            state = "new" if invoice.pk in result.created else "refreshed"
            rows.append((invoice.team_name, format_amount(invoice.total, invoice.currency), invoice.display_number,
                         f"{invoice.status}, {state}", invoice.pdf.path if invoice.pdf else "—"))
        for invoice in result.skipped:
            rows.append((invoice.team_name, format_amount(invoice.total, invoice.currency), invoice.display_number,
                         f"{invoice.status}, issued: not changed", invoice.pdf.path if invoice.pdf else "—"))
        for invoice in result.cancelled:
            rows.append((invoice.team_name, "—", invoice.display_number, "cancelled, nothing to bill", "—"))
        self._table(("Team", "Amount", "Invoice", "Status", "PDF"), rows, right={1})

        live = invoices + result.skipped
        self._grand_total(live)
        if team is None and not result.skipped:
            # Every cent allocated is on some invoice: the drafts sum to the allocated cost rounded.
            expected = to_minor_units(run.allocated_cost, run.currency)
            invoiced = sum((i.total - i.tax_amount for i in live), Decimal(0))
            if invoiced != expected:
                self.stderr.write(self.style.ERROR(
                    f"the invoices ({invoiced}) do not sum to the allocated cost rounded ({expected} {run.currency})"
                ))
        for invoice in result.skipped:
            self.stderr.write(self.style.WARNING(
                f"{invoice.display_number} ({invoice.team_name}) was issued before this run and was not changed; "
                "correct it with a credit note if this run bills the team differently"
            ))
        self.stdout.write(tie_out_line(run))

    # --- dry run -------------------------------------------------------------------------------------

    def _dry_run(self, period: BillingPeriod, team: Team | None) -> None:
        with _allocation_errors(period):
            # The whole period, whatever --team says: the rounding of one team depends on all teams.
            run = allocation_run_create(period=period, dry_run=True)
        self.stdout.write(f"Would allocate {run.record_count:,} usage records, {format_metered(run.total_cost, run.currency)}")
        self._warnings(run)
        amounts = [a for a in team_amounts(run.preview) if team is None or a.team_id == team.pk]
        names = Team.objects.in_bulk([a.team_id for a in amounts])
        rows = [
            (names[a.team_id].name, format_amount(a.amount, a.currency), format_metered(a.precise, a.currency),
             "would be invoiced" if a.amount else "nothing to bill (rounds to zero)")
            for a in sorted(amounts, key=lambda a: (names[a.team_id].name.lower(), a.team_id))
        ]
        self._table(("Team", "Amount", "Metered", "Invoice"), rows, right={1, 2})
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for a in amounts:
            totals[a.currency] += a.amount
        billed = sum(1 for a in amounts if a.amount)
        self.stdout.write(
            "Total that would be invoiced: "
            + (", ".join(format_amount(t, c) for c, t in sorted(totals.items())) or "nothing")
            + f" ({billed} invoice{'s' if billed != 1 else ''})"
        )
        self.stdout.write(tie_out_line(run))
        if not billed:
            raise CommandError(f"nothing to bill for {period}", returncode=1)

    # --- output ---------------------------------------------------------------------------------------

    def _warnings(self, run: AllocationRun) -> None:
        for warning in run.warnings or []:
            self.stderr.write(self.style.WARNING(f"warning: {warning.get('message', warning)}"))

    def _grand_total(self, invoices: list[Invoice]) -> None:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for invoice in invoices:
            totals[invoice.currency] += invoice.total
        self.stdout.write(self.style.SUCCESS(
            "Total invoiced: " + (", ".join(format_amount(t, c) for c, t in sorted(totals.items())) or "nothing")
            + f" ({len(invoices)} invoice{'s' if len(invoices) != 1 else ''})"
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
