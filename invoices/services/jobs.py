"""Requests for background work on invoices: each queues a job of ``invoices.tasks`` (by name, so
this module needs not import the tasks, which import the services) and returns its
``jobs.models.JobProgress``, whose admin page follows the job.
"""

from __future__ import annotations

from django.db import transaction

from jobs.progress import job_defer

from ..models import Invoice


def invoices_issue_request(*, invoices: list[Invoice], issued_by=None):
    """Queue the issuing of ``invoices`` (one ``billing`` job); returns its ``JobProgress``."""
    with transaction.atomic():
        return job_defer("invoices.tasks.invoices_issue", title=f"Issue {len(invoices)} invoice(s)", created_by=issued_by,
                         invoice_ids=[invoice.pk for invoice in invoices],
                         issued_by_id=getattr(issued_by, "pk", None))


def invoice_pdfs_zip_request(*, invoices: list[Invoice], name: str, created_by=None):
    """Queue the zip of ``invoices``' PDFs (one ``pdf`` job); returns its ``JobProgress``."""
    with transaction.atomic():
        return job_defer("invoices.tasks.invoice_pdfs_zip", title=f"Zip of {len(invoices)} invoice PDF(s)", created_by=created_by,
                         name=name, invoice_ids=[invoice.pk for invoice in invoices])
