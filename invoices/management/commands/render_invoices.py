"""``python manage.py render_invoices --period YYYY-MM [--status S] [--team SLUG] [--workers N]``: PDFs in bulk.

Renders and stores (``invoices.services.pdf_storage.invoice_pdf_store``: the file under ``MEDIA_ROOT`` and its
SHA-256 on the invoice) the PDF of every invoice of the calendar month ``--period`` that may be
rendered: drafts and cancelled drafts every time (they render on demand), issued invoices only
when they have no PDF yet. An issued invoice's PDF is the document that was sent out and is never
rendered again: such invoices are counted as skipped.

The work is spread over ``--workers`` processes (default: one per CPU core), each with its own
database connection and its own parsed stylesheet; a progress bar shows on an interactive
terminal. ``--workers 1`` renders in this process.

Exit codes: 0 done (also when every matching PDF was already final); 1 no invoice of the period
matches, or some PDFs failed (each failure is printed, the others are stored); 2 a bad
``--period``, ``--status``, ``--team`` or ``--workers``.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from tqdm import tqdm

from billing_site.money import format_period
from chargeback.periods import BillingPeriod, PeriodError
from invoices.errors import InvoicePdfError
from invoices.management.commands.billing_run import PROGRESS_MIN_INVOICES, _ProgressStream
from invoices.models import Invoice
from invoices.selectors import invoice_list_to_render
from invoices.services.pdf_storage import invoice_pdf_store
from teams.models import Team

#: What one rendering reports back (plain strings, so it crosses from a worker process unchanged):
#: ``(pk, outcome, status, text)``; outcome ``rendered`` / ``skipped`` / ``failed``, text the
#: invoice's display number or the reason.
Result = tuple[int, str, str, str]


def render_one(pk: int) -> Result:
    """Render and store invoice ``pk``'s PDF; never raises, so one bad invoice does not stop a batch."""
    try:
        invoice = invoice_pdf_store(invoice=Invoice(pk=pk))
    except InvoicePdfError as exc:
        # Issued (and rendered) between the selection and now: its PDF stays as it is.
        return pk, "skipped", "", str(exc)
    except Invoice.DoesNotExist:
        return pk, "skipped", "", f"invoice #{pk} was deleted before its PDF was rendered"
    except Exception as exc:  # noqa: BLE001 - reported per invoice, the batch goes on
        return pk, "failed", "", f"invoice #{pk}: {type(exc).__name__}: {exc}"
    return pk, "rendered", invoice.status, invoice.display_number


def _worker_start() -> None:
    # A forked worker must not use the parent's database connection (closed before the fork
    # anyway): each worker opens its own on its first query.
    for conn in connections.all(initialized_only=True):
        conn.connection = None


class Command(BaseCommand):
    help = (
        "Render and store the PDFs of a month's invoices on all CPU cores: drafts always, issued invoices only "
        "when they have no PDF yet."
    )

    def add_arguments(self, parser):
        parser.add_argument("--period", required=True, metavar="YYYY-MM", help="The calendar month, e.g. 2024-09.")
        parser.add_argument(
            "--status", action="append", metavar="STATUS",
            help=f"Only invoices in this status (repeatable): {', '.join(Invoice.Status.values)}.",
        )
        parser.add_argument("--team", metavar="SLUG", help="Only this team's invoices.")
        parser.add_argument(
            "--workers", type=int, default=os.cpu_count() or 1, metavar="N",
            help="Processes rendering at once (default: one per CPU core; 1 renders in this process).",
        )

    def handle(self, *args, **options):
        period, statuses, team, workers = self._arguments(options)
        invoices, final = invoice_list_to_render(period=period, statuses=statuses, team=team)
        pks = list(invoices.values_list("pk", flat=True))
        scope = f"{period} ({format_period(period.start, period.end)})" + (
            f", status {' or '.join(statuses)}" if statuses else ""
        ) + (f", team {team.name}" if team else "")
        if not pks and not final:
            raise CommandError(f"no invoices to render for {scope}", returncode=1)
        workers = max(1, min(workers, len(pks)))
        if pks:
            self.stdout.write(self.style.MIGRATE_HEADING(
                f"Rendering {len(pks):,} invoice PDF{'s' if len(pks) != 1 else ''} for {scope} "
                f"with {workers} {'worker process' + ('es' if workers != 1 else '') if workers > 1 else 'process'}"
            ))

        started = time.perf_counter()
        results = self._render(pks, workers) if pks else []
        seconds = time.perf_counter() - started

        rendered = [r for r in results if r[1] == "rendered"]
        skipped = [r for r in results if r[1] == "skipped"]
        failed = [r for r in results if r[1] == "failed"]
        drafts = sum(1 for r in rendered if r[2] in (Invoice.Status.DRAFT, Invoice.Status.CANCELLED))
        if pks:
            rate = f": {len(rendered) / seconds:.1f} invoices/s" if rendered and seconds > 0 else ""
            self.stdout.write(self.style.SUCCESS(
                f"Rendered {len(rendered):,} PDF{'s' if len(rendered) != 1 else ''} "
                f"({drafts:,} draft or cancelled, {len(rendered) - drafts:,} issued) in {seconds:.1f} s{rate}"
            ))
        if final or skipped:
            count = final + len(skipped)
            self.stdout.write(
                f"Skipped {count:,} issued invoice" + (": its PDF is" if count == 1 else "s: their PDFs are")
                + " final (an issued invoice's PDF is never rendered again)"
            )
        for _pk, _outcome, _status, reason in failed:
            self.stderr.write(self.style.ERROR(f"failed: {reason}"))
        if failed:
            raise CommandError(
                f"{len(failed):,} of {len(pks):,} PDFs failed (listed above); the others are stored", returncode=1,
            )

    def _arguments(self, options) -> tuple[BillingPeriod, list[str], Team | None, int]:
        try:
            period = BillingPeriod.month(options["period"])
        except PeriodError as exc:
            raise CommandError(f"bad --period: {exc}", returncode=2) from exc
        statuses = options["status"] or []
        for status in statuses:
            if status not in Invoice.Status.values:
                raise CommandError(
                    f"bad --status: {status!r} is not an invoice status ({', '.join(Invoice.Status.values)})",
                    returncode=2,
                )
        team = None
        if options["team"]:
            team = Team.objects.filter(slug=options["team"]).first()
            if team is None:
                raise CommandError(f"bad --team: no team has the slug {options['team']!r}", returncode=2)
        if options["workers"] < 1:
            raise CommandError(f"bad --workers: {options['workers']} (at least 1)", returncode=2)
        return period, statuses, team, options["workers"]

    def _render(self, pks: list[int], workers: int) -> list[Result]:
        bar = tqdm(
            total=len(pks), desc="Rendering PDFs", unit=" invoice", leave=False, file=_ProgressStream(self.stderr),
            disable=not self.stderr.isatty() or len(pks) < PROGRESS_MIN_INVOICES,
        )
        results = []
        with bar:
            if workers == 1:
                for pk in pks:
                    results.append(render_one(pk))
                    bar.update()
                return results
            if connection.in_atomic_block:
                raise CommandError(
                    "--workers above 1 needs the invoices committed: run it outside a transaction, or use --workers 1",
                    returncode=2,
                )
            # Forked workers inherit the loaded Django but must not share this process's database
            # socket: close it first (Django reconnects on the next query).
            connections.close_all()
            # A few invoices per hand-out keep both cores busy to the end without a round trip per PDF.
            chunk = max(1, min(8, len(pks) // (workers * 8)))
            with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_start) as pool:
                for result in pool.imap_unordered(render_one, pks, chunksize=chunk):
                    results.append(result)
                    bar.update()
        return results
