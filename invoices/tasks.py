"""Background jobs of invoices (docs/jobs.md): billing-run commits and issuing on the ``billing``
queue, PDFs and zips of PDFs on ``pdf``, overdue marking on ``periodic``.

Each job calls the services every other door calls, and is idempotent: a billing run commits once
per job (its idempotency key), a PDF of a draft is rendered again identically, issuing skips what
is issued already, a zip is written under a temporary name and replaced whole.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from procrastinate.contrib.django import app
from procrastinate.exceptions import AlreadyEnqueued

from billing_site.models import IdempotencyRecord
from billing_site.money import format_amount
from chargeback.errors import AllocationError
from chargeback.periods import BillingPeriod
from chargeback.selectors import usage_period_stats
from jobs import queues
from jobs.progress import Progress, job, job_defer, job_parent_advance, job_parent_result_update
from teams.models import Team

from .errors import InvoiceError, InvoiceGenerationError
from .models import Invoice
from .services.billing_run import BILLING_RUN_IDEMPOTENCY_SCOPE, billing_run_execute
from .services.lifecycle import invoice_issue, invoices_mark_overdue
from .services.pdf_storage import PDF_ORPHAN_GRACE, invoice_pdf_render_one, invoice_pdfs_zip_store, pdf_orphans_sweep

#: Invoices per PDF job: enough to make a job's own cost small beside its renders (about 0.1 s
#: each), few enough that the PDFs of a run spread over every worker.
PDF_CHUNK = 8


def _user(pk: int | None):
    return get_user_model().objects.filter(pk=pk).first() if pk else None


@job(queue=queues.BILLING)
def billing_run_commit(progress: Progress, *, period: str, team_ids: list[int], render_pdfs: bool = True,
                       created_by_id: int | None = None, previewed: dict | None = None) -> dict:
    """Commit the billing run of ``period`` (``YYYY-MM``) for ``team_ids`` (empty: every team), then
    queue its PDFs (``pdf`` jobs of ``PDF_CHUNK`` invoices) and the zip of them.

    ``previewed`` (``{"currency", "total", "records"}``): commit only if the usage is still what the
    dry run showed. Commits once per job (``billing_run_execute``'s idempotency key), so a retry
    after a crash after the commit goes on with the same run. A refusal (usage changed, allocation
    refused) ends the job with the reason as its result, since a retry could not change it.
    """
    billing_period = BillingPeriod.month(period)
    teams = list(Team.objects.filter(pk__in=team_ids).order_by("pk"))
    progress.step("checking the usage")
    if previewed:
        # The preview's figures: its principal currency's total, and the records of every currency.
        now = usage_period_stats(period=billing_period)
        principal = now.get(previewed.get("currency"), (None, 0))[0]
        if (principal, sum(records for _total, records in now.values())) != (
                Decimal(str(previewed.get("total"))), previewed.get("records")):
            if not _committed_by(progress):
                return {"refused": True, "message": f"The usage of {period} changed since the preview; nothing was "
                                                    "committed. Check the new preview and commit again.",
                        "links": [{"url": reverse("admin:chargeback_allocationrun_billing_run"),
                                   "label": "Run billing for a period…"}]}
    progress.step("allocating and writing the drafts")
    try:
        result = billing_run_execute(
            period=billing_period, teams=teams, render_pdfs=False, created_by=_user(created_by_id),
            idempotency_key=f"job:{progress.job_id}" if progress.job_id else None,
        )
    except (AllocationError, InvoiceGenerationError) as exc:
        return {"refused": True, "message": f"The billing run of {period} was refused: {exc}"}
    run = result.run
    summary = {
        "run_id": run.pk,
        "tie_out": result.tie_out,
        "message": f"Allocation run #{run.pk} committed for {period}: {result.tie_out}. "
                   f"{len(result.invoices)} draft invoice(s) written"
                   + (f"; {len(result.skipped)} issued invoice(s) left unchanged" if result.skipped else "") + ".",
        "lines": [f"{row.team_name}: {format_amount(row.amount, row.currency) if row.amount is not None else '—'} "
                  f"({row.state})" for row in result.rows()],
        "warnings": result.warnings + [f"Not billed: {entry['message']}" for entry in result.refused],
        "links": [{"url": reverse("admin:chargeback_allocationrun_change", args=[run.pk]),
                   "label": f"Allocation run #{run.pk}"},
                  {"url": reverse("admin:invoices_invoice_changelist") + f"?allocation_run__id__exact={run.pk}",
                   "label": "Its invoices"}],
    }
    if render_pdfs and result.invoices:
        ids = [invoice.pk for invoice in result.invoices]
        if progress.job_id is None:
            for pk in progress.iterate(ids, name="rendering PDFs"):
                invoice_pdf_render_one(pk)
        else:
            # The total is written before the PDF jobs exist (they start once this transaction
            # commits), so their counts add up from zero.
            progress.step("rendering PDFs", total=len(ids))
            invoice_pdfs_defer(invoice_ids=ids, parent_job_id=progress.job_id,
                               then_zip={"name": f"billing-run-{run.pk}-{period}", "allocation_run_id": run.pk})
    return summary


def _committed_by(progress: Progress) -> bool:
    """This job already committed its run (a retry after a crash): the usage check no longer applies."""
    return progress.job_id is not None and IdempotencyRecord.objects.filter(
        scope=BILLING_RUN_IDEMPOTENCY_SCOPE, key=f"job:{progress.job_id}").exists()


def invoice_pdfs_defer(*, invoice_ids: list[int], parent_job_id: int | None = None,
                       then_zip: dict | None = None, created_by=None, chunk: int = PDF_CHUNK) -> list[int]:
    """Queue the PDFs of ``invoice_ids`` as ``pdf`` jobs of ``chunk`` invoices each, in one
    transaction; the job that renders the last one queues ``invoice_pdfs_zip(**then_zip)`` if given.
    Returns the jobs' ids."""
    ids = []
    with transaction.atomic():
        for start in range(0, len(invoice_ids), chunk):
            part = invoice_ids[start:start + chunk]
            record = job_defer(invoice_pdfs_render, title=f"PDFs of {len(part)} invoice(s)", created_by=created_by,
                               parent_job_id=parent_job_id, invoice_ids=part, parent_job=parent_job_id,
                               then_zip=then_zip)
            ids.append(record.job_id)
    return ids


@job(queue=queues.PDF)
def invoice_pdfs_render(progress: Progress, *, invoice_ids: list[int], parent_job: int | None = None,
                        then_zip: dict | None = None) -> dict:
    """Render and store the PDFs of ``invoice_ids`` (``invoice_pdf_store``: drafts again, issued ones
    only when they have none). Each rendered PDF counts on the parent job's page; the job whose
    PDF is the parent's last queues the zip (``then_zip``).

    Returns ``{"message", "warnings": [failures], "outcomes": [[pk, outcome, status, text]…]}``
    (``invoice_pdf_render_one``'s, read by ``render_invoices``). One failed PDF does not stop the
    others; it is listed, and a zip names it in its ``MISSING.txt``.
    """
    outcomes = []
    for pk in progress.iterate(invoice_ids, name="rendering PDFs"):
        outcomes.append(list(invoice_pdf_render_one(pk)))
        done, total = job_parent_advance(parent_job, 1, step="rendering PDFs")
        if then_zip and total is not None and done == total:
            _zip_defer(then_zip, parent_job)
    failed = [text for _pk, outcome, _status, text in outcomes if outcome == "failed"]
    return {"message": f"{len(invoice_ids) - len(failed)} of {len(invoice_ids)} PDF(s) stored",
            "warnings": failed, "outcomes": outcomes}


def _zip_defer(then_zip: dict, parent_job: int | None) -> None:
    try:
        job_defer(invoice_pdfs_zip, title=f"Zip {then_zip['name']}", queueing_lock=f"zip:{then_zip['name']}",
                  parent_job_id=parent_job, parent_job=parent_job, **then_zip)
    except AlreadyEnqueued:
        pass  # the same zip is waiting already


@job(queue=queues.PDF)
def invoice_pdfs_zip(progress: Progress, *, name: str, invoice_ids: list[int] | None = None,
                     allocation_run_id: int | None = None, parent_job: int | None = None) -> dict:
    """Write the zip of the stored PDFs of ``invoice_ids`` (or of the drafts of allocation run
    ``allocation_run_id``) to storage; its download is offered on this job's page and the parent's."""
    invoices = Invoice.objects.order_by("team_name", "pk")
    if allocation_run_id is not None:
        invoices = invoices.filter(allocation_run_id=allocation_run_id, status=Invoice.Status.DRAFT)
    else:
        invoices = invoices.filter(pk__in=invoice_ids or [])
    invoices = list(invoices)
    stored, written = invoice_pdfs_zip_store(
        invoices=invoices, name=name,
        progress=lambda items: progress.iterate(items, name="zipping PDFs", total=len(invoices)),
    )
    file = {"file": stored, "file_label": f"the zip of {written} PDF(s)"}
    job_parent_result_update(parent_job, file)
    # A run killed while rendering left PDFs no row names; remove those past the grace period.
    if allocation_run_id is not None:
        pdf_orphans_sweep(older_than=PDF_ORPHAN_GRACE)
    missing = len(invoices) - written
    return {"message": f"{written} PDF(s) zipped" + (f"; {missing} without a PDF yet" if missing else ""), **file}


@job(queue=queues.BILLING)
def invoices_issue(progress: Progress, *, invoice_ids: list[int], issued_by_id: int | None = None) -> dict:
    """Issue the drafts ``invoice_ids`` one by one (number, PDF, one transaction each). Idempotent:
    an invoice issued already (by an earlier attempt of this job) is counted, not issued again."""
    user = _user(issued_by_id)
    issued, already, refused = [], [], []
    for pk in progress.iterate(invoice_ids, name="issuing invoices"):
        invoice = Invoice.objects.filter(pk=pk).first()
        if invoice is None:
            refused.append(f"invoice #{pk} no longer exists")
            continue
        if invoice.status != Invoice.Status.DRAFT and invoice.number:
            already.append(invoice.display_number)
            continue
        try:
            issued.append(invoice_issue(invoice=invoice, issued_by=user).display_number)
        except InvoiceError as exc:
            refused.append(f"{invoice.display_number} ({invoice.team_name}): {exc.message}")
    return {
        "message": f"Issue: {len(issued) + len(already)} invoice(s) done"
                   + (f", {len(refused)} refused" if refused else "") + ".",
        "lines": issued + [f"{number} (issued already)" for number in already],
        "warnings": refused,
        "links": [{"url": reverse("admin:invoices_invoice_changelist"), "label": "Invoices"}],
    }


@app.periodic(cron="15 0 * * *", periodic_id="mark_overdue")
@app.task(queue=queues.PERIODIC, name="invoices.tasks.mark_overdue_daily")
def mark_overdue_daily(timestamp: int) -> None:
    """Every day at 00:15: issued invoices past their due date become ``overdue`` (as ``manage.py mark_overdue``)."""
    invoices_mark_overdue()
