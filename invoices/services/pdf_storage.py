"""Storing PDFs: render an invoice's or a credit note's PDF and keep it with its SHA-256.

The renderer (``invoices.pdf``) makes bytes only; these services decide whether a document may
be rendered (an issued invoice's PDF is final, a credit note's is made once), lock the row,
store the file under ``MEDIA_ROOT`` and delete a replaced file once the transaction commits.
They open a plain ``transaction.atomic()``: the billing run calls them on their own, and
``invoice_issue`` stores the issued PDF inside its own transaction. A file written by a transaction
that never committed (its process was killed) is removed by :func:`pdf_orphans_sweep`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from chargeback.periods import BillingPeriod

from ..errors import InvoicePdfError
from ..models import CreditNote, Invoice
from ..pdf import credit_note_render_pdf, invoice_render_pdf
from ..selectors import credit_note_get_with_lines, invoice_get_with_lines, invoice_pdf_is_final


def invoice_pdf_discard(invoice: Invoice) -> None:
    """Forget ``invoice``'s stored PDF (now stale) and delete the file once the transaction commits.

    Sets ``pdf`` and ``pdf_sha256`` empty on the instance; the caller saves them with its change.
    """
    if not invoice.pdf:
        return
    storage, name = invoice.pdf.storage, invoice.pdf.name
    transaction.on_commit(lambda: storage.delete(name))
    invoice.pdf = ""
    invoice.pdf_sha256 = ""


def invoice_pdf_filename(invoice: Invoice) -> str:
    """``<number>.pdf`` for an issued invoice, else ``<team-slug>-<YYYY-MM>-draft.pdf`` (or ``-cancelled``)."""
    if invoice.number:
        return f"{slugify(invoice.number) or invoice.pk}.pdf"
    period = BillingPeriod(invoice.period_start, invoice.period_end).label.replace("..", "_")
    suffix = "cancelled" if invoice.status == Invoice.Status.CANCELLED else "draft"
    return f"{invoice.team.slug}-{period}-{suffix}.pdf"


def invoice_pdf_store(*, invoice: Invoice) -> Invoice:
    """Render ``invoice``'s PDF and store it in ``invoice.pdf`` with its SHA-256 in ``pdf_sha256``.

    The invoice row is locked while it is re-read, rendered and saved, so the PDF shows the
    invoice as stored. A previous PDF file is deleted once the transaction commits.

    Returns:
        The invoice as stored, with ``pdf`` (under ``MEDIA_ROOT/invoices/YYYY/MM/``) and
        ``pdf_sha256`` (64 hex digits) set.

    Raises:
        InvoicePdfError: the invoice is issued and already has its PDF (issued PDFs are final).
        UnsafeResourceError: see ``invoices.pdf.invoice_render_pdf``.
    """
    with transaction.atomic():
        locked = Invoice.objects.select_for_update(of=("self",)).get(pk=invoice.pk)
        if invoice_pdf_is_final(locked):
            raise InvoicePdfError(
                f"invoice {locked.display_number} is {locked.status}; its PDF was stored when it was issued"
            )
        full = invoice_get_with_lines(pk=locked.pk)
        pdf = invoice_render_pdf(full)
        old = locked.pdf.name if locked.pdf else ""
        storage = locked.pdf.storage
        locked.pdf.save(invoice_pdf_filename(full), ContentFile(pdf), save=False)
        locked.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        locked.save(update_fields=["pdf", "pdf_sha256", "updated_at"])
        if old and old != locked.pdf.name:
            transaction.on_commit(lambda: storage.delete(old))
    return locked


def credit_note_pdf_store(*, credit_note: CreditNote) -> CreditNote:
    """Render ``credit_note``'s PDF once and store it in ``credit_note.pdf`` (``MEDIA_ROOT/credit_notes/YYYY/MM/<number>.pdf``)
    with its SHA-256 (64 hex digits) in ``pdf_sha256``.

    Called by ``invoices.services.credit_notes.credit_note_issue`` after the credit note commits. The credit
    note row is locked while it is re-read, rendered and saved. A credit note is an issued
    document: its PDF is never rendered again.

    Returns:
        The credit note as stored.

    Raises:
        InvoicePdfError: the credit note already has its PDF.
        UnsafeResourceError: see ``invoices.pdf.credit_note_render_pdf``.
    """
    with transaction.atomic():
        locked = CreditNote.objects.select_for_update(of=("self",)).get(pk=credit_note.pk)
        if locked.pdf_sha256:
            raise InvoicePdfError(f"credit note {locked.number} already has its PDF; issued documents are final")
        full = credit_note_get_with_lines(pk=locked.pk)
        pdf = credit_note_render_pdf(full)
        locked.pdf.save(f"{slugify(locked.number) or locked.pk}.pdf", ContentFile(pdf), save=False)
        locked.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        locked.save(update_fields=["pdf", "pdf_sha256"])
    return locked


#: How old an unreferenced PDF must be before a billing run sweeps it: longer than any transaction
#: that writes a PDF runs, so a file whose row is about to commit is never taken.
PDF_ORPHAN_GRACE = dt.timedelta(hours=1)

#: The folders of ``MEDIA_ROOT`` that hold the stored PDFs (the ``upload_to`` of ``Invoice.pdf`` and
#: ``CreditNote.pdf``, before their dates).
PDF_FOLDERS = ("invoices", "credit_notes")


def pdf_orphans_sweep(*, older_than: dt.timedelta, dry_run: bool = False) -> list[str]:
    """Delete the PDF files that no invoice or credit note references, older than ``older_than``.

    A PDF is written to storage before the row naming it commits; a process killed in between (a
    billing run stopped by SIGKILL, a server restarted) leaves the file behind with no row. Files
    younger than ``older_than`` are kept: their transaction may still be about to commit.

    Args:
        older_than: the grace period; only files last modified before ``now − older_than`` go.
        dry_run: list the orphans without deleting them.

    Returns:
        The storage names (``invoices/2024/09/team-2024-09-draft.pdf``) of the orphans found, sorted;
        deleted unless ``dry_run``.
    """
    storage = Invoice._meta.get_field("pdf").storage
    referenced = {
        *Invoice.objects.exclude(pdf="").values_list("pdf", flat=True),
        *CreditNote.objects.exclude(pdf="").values_list("pdf", flat=True),
    }
    cutoff = timezone.now() - older_than
    orphans = sorted(
        name for folder in PDF_FOLDERS for name in _storage_files(storage, folder)
        if name.endswith(".pdf") and name not in referenced and storage.get_modified_time(name) < cutoff
    )
    if not dry_run:
        for name in orphans:
            storage.delete(name)
    return orphans


def _storage_files(storage, folder: str) -> list[str]:
    """Every file under ``folder`` of ``storage``, by storage name, walking sub-folders."""
    if not storage.exists(folder):
        return []
    found, pending = [], [folder]
    while pending:
        current = pending.pop()
        folders, files = storage.listdir(current)
        found += [f"{current}/{name}" for name in files]
        pending += [f"{current}/{name}" for name in folders]
    return found


#: What one rendering reports back (plain strings, so it crosses from a worker process unchanged):
#: ``(pk, outcome, status, text)``; outcome ``rendered`` / ``skipped`` / ``failed``, text the
#: invoice's display number or the reason.
PdfResult = tuple[int, str, str, str]


def invoice_pdf_render_one(pk: int) -> PdfResult:
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


#: Where zips of many PDFs are written (below MEDIA_ROOT; served through the Jobs page's download).
PDF_ZIP_DIR = "zips"


def invoice_pdfs_zip_store(*, invoices: Iterable[Invoice], name: str,
                           progress: Callable[[Iterable[Invoice]], Iterable[Invoice]] | None = None) -> tuple[str, int]:
    """Write the stored PDFs of ``invoices`` into one zip in the default storage, as ``zips/<name>.zip``.

    The zip is built in a temporary file (never in memory) and saved under its final name only
    when complete, replacing an earlier zip of that name: a zip killed half-way leaves nothing.
    Invoices without a PDF are listed in ``MISSING.txt`` inside it. ``progress`` wraps the
    iteration (a progress bar). Returns ``(storage name, PDFs written)``.
    """
    invoices = list(invoices)
    target = f"{PDF_ZIP_DIR}/{slugify(name) or 'invoices'}.zip"
    written, missing = 0, []
    with tempfile.TemporaryFile() as buffer:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for invoice in progress(invoices) if progress is not None else invoices:
                if not invoice.pdf:
                    missing.append(invoice.display_number)
                    continue
                with invoice.pdf.open("rb") as pdf, archive.open(f"{invoice.display_number}.pdf", "w") as member:
                    shutil.copyfileobj(pdf, member, 1024 * 1024)
                written += 1
            if missing:
                archive.writestr("MISSING.txt", "No PDF yet for: " + ", ".join(missing) + "\n")
        buffer.seek(0)
        if default_storage.exists(target):
            default_storage.delete(target)
        saved = default_storage.save(target, File(buffer, name=target))
    return saved, written
