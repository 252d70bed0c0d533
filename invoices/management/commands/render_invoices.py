"""``python manage.py render_invoices --period YYYY-MM [--status S] [--team SLUG] [--workers N]``: PDFs in bulk.

Renders and stores (``invoices.services.pdf_storage.invoice_pdf_store``: the file under ``MEDIA_ROOT`` and its
SHA-256 on the invoice) the PDF of every invoice of the calendar month ``--period`` that may be
rendered: drafts and cancelled drafts every time (they render on demand), issued invoices only
when they have no PDF yet. An issued invoice's PDF is the document that was sent out and is never
rendered again: such invoices are counted as skipped.

The work is done by the ``pdf`` background jobs (``invoices.tasks.invoice_pdfs_render``, a few
invoices each), on ``--workers`` one-shot worker processes the command starts and stops (default:
one per CPU core); ``--workers 0`` leaves them to the workers already running (docs/jobs.md). A
progress bar follows the jobs on an interactive terminal. ``--workers 1`` renders in this process,
with the jobs' code.

Exit codes: 0 done (also when every matching PDF was already final); 1 no invoice of the period
matches, or some PDFs failed (each failure is printed, the others are stored); 2 a bad
``--period``, ``--status``, ``--team`` or ``--workers``.
"""

from __future__ import annotations

import os
import subprocess
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from tqdm import tqdm

from billing_site.money import format_period
from chargeback.periods import BillingPeriod, PeriodError
from invoices.management.commands.billing_run import PROGRESS_MIN_INVOICES, _ProgressStream
from invoices.models import Invoice
from invoices.selectors import invoice_list_to_render
from invoices.services.pdf_storage import PdfResult as Result
from invoices.services.pdf_storage import invoice_pdf_render_one as render_one
from invoices.tasks import PDF_CHUNK, invoice_pdfs_defer
from jobs import queues
from jobs.models import JobProgress
from jobs.workers import worker_start
from teams.models import Team


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
            help="Worker processes rendering at once (default: one per CPU core; 1 renders in this process; "
                 "0 leaves the jobs to the workers already running).",
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
        workers = min(workers, max(1, len(pks)))
        if pks:
            self.stdout.write(self.style.MIGRATE_HEADING(
                f"Rendering {len(pks):,} invoice PDF{'s' if len(pks) != 1 else ''} for {scope} "
                + (f"with {workers} {'worker process' + ('es' if workers != 1 else '') if workers > 1 else 'process'}"
                   if workers else "with the running workers (pdf queue)")
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
        if options["workers"] < 0:
            raise CommandError(f"bad --workers: {options['workers']} (0 or more)", returncode=2)
        return period, statuses, team, options["workers"]

    def _render(self, pks: list[int], workers: int) -> list[Result]:
        bar = tqdm(
            total=len(pks), desc="Rendering PDFs", unit=" invoice", leave=False, file=_ProgressStream(self.stderr),
            disable=not self.stderr.isatty() or len(pks) < PROGRESS_MIN_INVOICES,
        )
        with bar:
            if workers == 1:
                # In this process, with the code of the ``pdf`` jobs.
                results = []
                for pk in pks:
                    results.append(render_one(pk))
                    bar.update()
                return results
            if connection.in_atomic_block:
                raise CommandError(
                    "--workers other than 1 needs the invoices committed: run it outside a transaction, or use "
                    "--workers 1", returncode=2,
                )
            return self._render_by_jobs(pks, workers, bar)

    def _render_by_jobs(self, pks: list[int], workers: int, bar) -> list[Result]:
        """Queue the ``pdf`` jobs (``invoices.tasks.invoice_pdfs_render``) and follow them; with
        ``workers`` > 0, start that many one-shot workers of the ``pdf`` queue, stopped when it is
        empty; with 0, the workers already running do the work."""
        # Small enough jobs that every worker has some to the end, at most PDF_CHUNK invoices each.
        chunk = max(1, min(PDF_CHUNK, len(pks) // (max(workers, 2) * 4)))
        job_ids = invoice_pdfs_defer(invoice_ids=pks, chunk=chunk)
        processes = [worker_start(queues=[queues.PDF], one_shot=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(workers)]
        try:
            shown = 0
            while True:
                records = list(JobProgress.objects.filter(job_id__in=job_ids).select_related("job"))
                done = sum(record.done for record in records)
                bar.update(max(0, min(done, len(pks)) - shown))
                shown = max(shown, min(done, len(pks)))
                if all(record.job.status in FINISHED for record in records):
                    break
                if processes and all(process.poll() is not None for process in processes):
                    # The one-shot workers stopped before the jobs ended (another worker holds
                    # some): wait for those as with --workers 0.
                    processes = []
                time.sleep(0.2)
        finally:
            for process in processes:
                process.wait()
        results: list[Result] = []
        for record in records:
            if record.job.status != "succeeded":
                results += [(pk, "failed", "", f"invoice #{pk}: its job failed: {record.error}")
                            for pk in _job_invoices(record)]
            else:
                results += [tuple(outcome) for outcome in (record.result or {}).get("outcomes", [])]
        return results


#: Procrastinate statuses of a job that will not run again by itself.
FINISHED = {"succeeded", "failed", "cancelled", "aborted"}


def _job_invoices(record: JobProgress) -> list[int]:
    return list(record.job.args.get("invoice_ids", []))
