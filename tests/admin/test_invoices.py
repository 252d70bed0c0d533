"""Invoice actions in the admin: issue, mark sent, mark paid, cancel or credit, PDFs; refusals as messages."""

import hashlib
import io
import zipfile

import pytest
from django.urls import reverse

from invoices.models import CreditNote, Invoice
from invoices.services.lifecycle import invoice_issue
from jobs.models import JobProgress
from teams.selectors import billing_settings_get
from tests.factories import draft_invoice

pytestmark = pytest.mark.django_db

LIFECYCLE = "admin:invoices_invoice_lifecycle"


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def _move(client, move, invoices, **data):
    ids = ",".join(str(i.pk) for i in invoices)
    return client.post(reverse(LIFECYCLE, args=[move]), {"ids": ids, **data}, follow=True)


def test_groups_get_the_invoice_lifecycle_permissions(groups):
    finance = set(groups["finance"].permissions.values_list("codename", flat=True))
    auditor = set(groups["auditor"].permissions.values_list("codename", flat=True))
    assert {"issue", "mark_paid", "issue_credit_note", "view_creditnote"} <= finance
    assert "view_creditnote" in auditor and "issue" not in auditor


@pytest.mark.django_db(transaction=True)
def test_issue_action_asks_for_confirmation_then_a_job_numbers_the_invoice_and_stores_its_pdf(
        finance, finance_user, run_jobs):
    invoice = draft_invoice(amounts=("120.00", "30.50"))
    confirm = finance.post(reverse("admin:invoices_invoice_changelist"),
                           {"action": "issue_action", "_selected_action": [invoice.pk]}, follow=True)
    assert "150.50\u00a0USD" in confirm.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DRAFT  # nothing happens before the confirmation

    queued = _move(finance, "issue", [invoice])
    assert 'data-status="queued"' in queued.content.decode()  # the job's page
    run_jobs()

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING and invoice.number and invoice.issued_by == finance_user
    page = finance.get(queued.redirect_chain[-1][0]).content.decode()
    assert invoice.pdf and "Issue: 1 invoice(s) done" in page and invoice.number in page


@pytest.mark.django_db(transaction=True)
def test_issuing_an_issued_invoice_again_changes_nothing(finance, run_jobs):
    invoice = invoice_issue(invoice=draft_invoice())
    response = _move(finance, "issue", [invoice])
    run_jobs()
    assert response.status_code == 200
    page = finance.get(response.redirect_chain[-1][0]).content.decode()
    assert f"{invoice.number} (issued already)" in page
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING


def test_refused_transition_shows_a_message_naming_the_invoice_not_an_error_page(finance):
    invoice = draft_invoice()
    response = _move(finance, "mark_sent", [invoice])
    assert response.status_code == 200
    [message] = [m for m in _messages(response) if invoice.display_number in m]
    assert "draft" in message
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DRAFT


@pytest.mark.django_db(transaction=True)
def test_mark_sent_mails_the_invoice_with_its_pdf_to_the_teams_billing_addresses(finance, run_jobs, mailoutbox):
    # given an issued invoice of a team with two billing addresses
    invoice = invoice_issue(invoice=draft_invoice())
    billing = billing_settings_get(team=invoice.team)
    billing.notify_emails = "ap@example.com, cfo@example.com"
    billing.save()

    # when finance marks it sent: nothing leaves before the mail job runs
    _move(finance, "mark_sent", [invoice])
    assert mailoutbox == []
    run_jobs(queues=["mail"])

    # then one e-mail to both addresses carries the invoice's stored PDF
    [message] = mailoutbox
    assert sorted(message.to) == ["ap@example.com", "cfo@example.com"] and invoice.number in message.subject
    [(filename, content, mimetype)] = message.attachments
    invoice.refresh_from_db()
    assert filename == f"{invoice.number}.pdf" and mimetype == "application/pdf"
    assert hashlib.sha256(content).hexdigest() == invoice.pdf_sha256


def test_mark_sent_then_paid_with_its_payment_reference(finance):
    invoice = invoice_issue(invoice=draft_invoice())
    _move(finance, "mark_sent", [invoice])
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT
    _move(finance, "mark_paid", [invoice], payment_reference="SEPA-2024-0917")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_reference) == (Invoice.Status.PAID, "SEPA-2024-0917")
    assert invoice.amount_due == 0


def test_mark_paid_needs_a_payment_reference(finance):
    invoice = invoice_issue(invoice=draft_invoice())
    response = finance.post(reverse(LIFECYCLE, args=["mark_paid"]), {"ids": str(invoice.pk), "payment_reference": ""})
    assert response.status_code == 200 and "payment_reference" in response.context["form"].errors
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PENDING


def test_mark_paid_of_a_draft_is_refused_with_a_message(finance):
    invoice = draft_invoice()
    response = _move(finance, "mark_paid", [invoice], payment_reference="X-1")
    assert any("draft" in m for m in _messages(response))
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DRAFT


def test_cancel_cancels_a_draft_and_credits_an_issued_invoice_in_full(finance, finance_user):
    draft = draft_invoice()
    issued = invoice_issue(invoice=draft_invoice(amounts=("80.00",)))

    _move(finance, "cancel", [draft, issued], reason="order_change", description="Project stopped")

    draft.refresh_from_db()
    issued.refresh_from_db()
    assert draft.status == issued.status == Invoice.Status.CANCELLED
    note = CreditNote.objects.get(invoice=issued)
    assert (note.reason, str(note.total), note.issued_by) == ("order_change", "80.0000", finance_user)
    page = finance.get(reverse("admin:invoices_creditnote_change", args=[note.pk])).content.decode()
    assert note.number in page and 'name="_save"' not in page


@pytest.mark.django_db(transaction=True)
def test_selected_pdfs_are_zipped_by_a_job_and_downloaded_from_its_page(finance, run_jobs):
    first = invoice_issue(invoice=draft_invoice())
    second = invoice_issue(invoice=draft_invoice())
    queued = finance.post(reverse("admin:invoices_invoice_changelist"),
                          {"action": "download_pdfs_action", "_selected_action": [first.pk, second.pk]}, follow=True)
    assert 'data-status="queued"' in queued.content.decode()
    run_jobs(queues=["pdf"])
    record = JobProgress.objects.get()
    page = finance.get(reverse("admin:jobs_jobprogress_change", args=[record.pk])).content.decode()
    download = reverse("admin:jobs_jobprogress_download", args=[record.pk])
    assert "2 PDF(s) zipped" in page and download in page
    response = finance.get(download)
    assert response["Content-Disposition"].startswith("attachment")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == sorted([f"{first.number}.pdf", f"{second.number}.pdf"])
    assert all(archive.read(name).startswith(b"%PDF") for name in archive.namelist())


def test_invoice_page_offers_only_the_moves_its_status_allows(finance):
    invoice = invoice_issue(invoice=draft_invoice())
    page = finance.get(reverse("admin:invoices_invoice_change", args=[invoice.pk])).content.decode()
    assert "lifecycle-mark_sent" in page and "lifecycle-mark_paid" in page and "lifecycle-cancel" in page
    assert "lifecycle-issue" not in page and "Download PDF" in page
    assert 'name="lines-0-amount"' not in page


def test_auditor_reads_invoices_but_cannot_move_them(auditor):
    invoice = draft_invoice()
    assert auditor.get(reverse("admin:invoices_invoice_change", args=[invoice.pk])).status_code == 200
    assert auditor.post(reverse(LIFECYCLE, args=["issue"]), {"ids": str(invoice.pk)}).status_code == 403
    page = auditor.get(reverse("admin:invoices_invoice_changelist")).content.decode()
    assert "issue_action" not in page and "download_pdfs_action" in page
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DRAFT


def test_unknown_lifecycle_move_is_not_found(finance):
    assert finance.get(reverse(LIFECYCLE, args=["refund"]) + "?ids=1").status_code == 404
