"""The invoice lifecycle: every transition allowed and refused, issuing, payment and settlement, overdue."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from invoices.errors import InvalidInvoiceRequest, InvalidTransition
from invoices.models import Invoice
from invoices.services.credit_notes import credit_note_issue
from invoices.services.lifecycle import (
    invoice_cancel,
    invoice_issue,
    invoice_mark_overdue,
    invoice_mark_paid,
    invoice_mark_sent,
    invoice_transition,
    invoices_mark_overdue,
)
from teams.services import billing_settings_update
from tests.factories import UserFactory, draft_invoice
from wallets.models import LedgerEntry
from wallets.services.charges import wallet_charge
from wallets.services.posting import wallet_settle_invoice
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db

D = Decimal
STATUSES = ["draft", "pending", "sent", "paid", "overdue", "cancelled"]
ISSUED_ON = dt.date(2026, 11, 22)


def invoice_in(status: str, **fields) -> Invoice:
    """A draft invoice brought to ``status`` through the services (never by writing the status)."""
    invoice = draft_invoice(**fields)
    if status == "draft":
        return invoice
    if status == "cancelled":
        return invoice_cancel(invoice=invoice)
    invoice = invoice_issue(invoice=invoice, issue_date=ISSUED_ON)
    if status == "sent":
        invoice = invoice_mark_sent(invoice=invoice)
    elif status == "paid":
        invoice = invoice_mark_paid(invoice=invoice, payment_reference="BANK-1")
    elif status == "overdue":
        invoice = invoice_mark_overdue(invoice=invoice)
    assert invoice.status == status
    return invoice


def _allowed_directly(current: str, requested: str) -> bool:
    return requested in Invoice.TRANSITIONS[current] and (current, requested) not in Invoice.CREDIT_NOTE_ONLY


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("requested", STATUSES)
def test_invoice_transition_allows_exactly_the_moves_in_transitions(current, requested):
    # Given an invoice in the current status
    invoice = invoice_in(current)

    if _allowed_directly(current, requested):
        # When the allowed move is asked for, then the invoice has the new status, stored
        moved = invoice_transition(invoice=invoice, to_status=requested, payment_reference="REF")
        assert moved.status == requested
        assert Invoice.objects.get(pk=invoice.pk).status == requested
    else:
        # When a refused move is asked for, then the error names both statuses and nothing changes
        with pytest.raises(InvalidTransition) as refused:
            invoice_transition(invoice=invoice, to_status=requested, payment_reference="REF")
        assert f"is {current}; it cannot move to {requested}" in refused.value.message
        assert (refused.value.code, refused.value.current, refused.value.requested) == (
            "invalid_transition", current, requested)
        assert Invoice.objects.get(pk=invoice.pk).status == current


def test_invoice_transition_refusal_lists_what_is_allowed():
    # Given a paid invoice
    invoice = invoice_in("paid")

    # When it is asked to go back to draft
    with pytest.raises(InvalidTransition) as refused:
        invoice_transition(invoice=invoice, to_status="draft")

    # Then the message reads like the contract's example
    assert refused.value.message == f"Invoice {invoice.number} is paid; it cannot move to draft (allowed: none)"


@pytest.mark.parametrize("current", ["pending", "sent", "overdue"])
def test_invoice_transition_to_cancelled_of_an_issued_invoice_points_to_a_credit_note(current):
    # Given an issued invoice
    invoice = invoice_in(current)

    # When it is cancelled directly
    with pytest.raises(InvalidTransition, match="except by issuing a full credit note"):
        invoice_transition(invoice=invoice, to_status="cancelled")

    # Then it keeps its status, and a full credit note does cancel it
    assert Invoice.objects.get(pk=invoice.pk).status == current
    credit_note_issue(invoice=invoice, reason="other")
    assert Invoice.objects.get(pk=invoice.pk).status == "cancelled"


def test_invoice_transition_refuses_an_unknown_status():
    invoice = invoice_in("draft")
    with pytest.raises(InvalidInvoiceRequest) as refused:
        invoice_transition(invoice=invoice, to_status="archived")
    assert refused.value.param == "status"
    assert "'archived' is not an invoice status" in refused.value.message


def test_invoice_issue_numbers_dates_and_stores_the_pdf(settings):
    # Given a draft of a team with 14-day payment terms, and its draft PDF
    from invoices.services.pdf_storage import invoice_pdf_store
    from tests.factories import TeamFactory

    team = TeamFactory(name="Checkout")
    billing_settings_update(team=team, payment_terms_days=14, billing_address="2 Team Road")
    draft = invoice_pdf_store(invoice=draft_invoice(team=team, amounts=("12.34", "0.66")))
    draft_pdf = draft.pdf.name
    clerk = UserFactory()

    # When it is issued
    issued = invoice_issue(invoice=draft, issued_by=clerk, issue_date=ISSUED_ON)

    # Then it is pending, numbered INV-YYYYMMDD-NNNN, due 14 days later, and its PDF is stored with its SHA-256
    assert issued.status == "pending"
    assert issued.number == "INV-20261122-0001"
    assert (issued.issue_date, issued.due_date) == (ISSUED_ON, dt.date(2026, 12, 6))
    assert issued.issued_by == clerk and issued.issued_at is not None
    assert issued.billing_address == "2 Team Road"
    assert issued.pdf and issued.pdf.name != draft_pdf
    with issued.pdf.open("rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == issued.pdf_sha256
    assert issued.amount_due == D("13.00")


def test_invoice_issue_defaults_to_today_and_net_30():
    invoice = invoice_issue(invoice=draft_invoice())
    today = timezone.localdate()
    assert invoice.issue_date == today
    assert invoice.due_date == today + dt.timedelta(days=30)
    assert invoice.number == f"INV-{today:%Y%m%d}-0001"


def test_invoice_issue_refuses_an_issued_invoice_without_changing_it():
    invoice = invoice_in("pending")
    with pytest.raises(InvalidTransition, match="is pending; it cannot move to pending"):
        invoice_issue(invoice=invoice)
    assert Invoice.objects.get(pk=invoice.pk).number == "INV-20261122-0001"


def test_invoice_mark_sent_records_when():
    invoice = invoice_mark_sent(invoice=invoice_in("pending"))
    assert invoice.status == "sent" and invoice.sent_at is not None


def test_invoice_mark_paid_of_a_postpaid_team_settles_its_wallet_once():
    # Given a postpaid team that used 130 on credit, and its issued invoice of 130
    from tests.factories import TeamFactory

    team = TeamFactory(currency="USD")
    billing_settings_update(team=team, billing_model="postpaid", credit_limit=D(500))
    wallet = wallet_open(team=team)
    wallet_charge(wallet=wallet, amount=D(130), idempotency_key="usage-1")
    invoice = invoice_issue(invoice=draft_invoice(team=team, amounts=("100.00", "30.00")), issue_date=ISSUED_ON)
    clerk = UserFactory()

    # When its payment is recorded
    paid = invoice_mark_paid(invoice=invoice, payment_reference="SEPA-2026-11-77", by=clerk)

    # Then it is paid with its reference, and one invoice_settlement entry brings the wallet back to 0
    assert (paid.status, paid.payment_reference, paid.amount_due) == ("paid", "SEPA-2026-11-77", D(0))
    assert paid.paid_at is not None
    settlement = LedgerEntry.objects.get(entry_type="invoice_settlement")
    assert (settlement.amount, settlement.reference_type, settlement.reference_id) == (
        D("130"), "invoice", str(invoice.pk))
    assert settlement.created_by == clerk
    assert settlement.metadata["payment_reference"] == "SEPA-2026-11-77"
    wallet.refresh_from_db()
    assert wallet.balance == D(0)

    # And a second payment is refused and settles nothing more
    with pytest.raises(InvalidTransition, match="is paid; it cannot move to paid"):
        invoice_mark_paid(invoice=invoice, payment_reference="again")
    assert LedgerEntry.objects.filter(entry_type="invoice_settlement").count() == 1


def test_wallet_settle_invoice_is_idempotent_by_invoice():
    from tests.factories import TeamFactory

    team = TeamFactory(currency="USD")
    billing_settings_update(team=team, billing_model="postpaid", credit_limit=D(50))
    invoice = invoice_issue(invoice=draft_invoice(team=team), issue_date=ISSUED_ON)
    first = wallet_settle_invoice(invoice=invoice, amount=D("10.00"))
    again = wallet_settle_invoice(invoice=invoice, amount=D("10.00"))
    assert first.pk == again.pk
    assert LedgerEntry.objects.filter(entry_type="invoice_settlement").count() == 1


def test_invoice_mark_paid_settles_only_what_is_left_after_a_credit():
    from tests.factories import TeamFactory

    team = TeamFactory(currency="USD")
    billing_settings_update(team=team, billing_model="postpaid", credit_limit=D(500))
    invoice = invoice_issue(invoice=draft_invoice(team=team, amounts=("100.00",)), issue_date=ISSUED_ON)
    credit_note_issue(invoice=invoice, reason="duplicated_charge", amount=D("25.00"))

    invoice_mark_paid(invoice=invoice, payment_reference="P-1")

    assert LedgerEntry.objects.get(entry_type="invoice_settlement").amount == D("75")


def test_invoice_mark_paid_of_a_prepaid_team_writes_no_ledger_entry():
    invoice = invoice_mark_paid(invoice=invoice_in("sent"), payment_reference="")
    assert invoice.status == "paid"
    assert not LedgerEntry.objects.exists()


def test_invoice_cancel_of_a_draft_frees_the_period_for_a_new_invoice():
    from tests.factories import TeamFactory

    team = TeamFactory()
    cancelled = invoice_cancel(invoice=draft_invoice(team=team))
    assert cancelled.status == "cancelled" and cancelled.number is None
    # The partial unique constraint admits a new live invoice for the same team and period.
    assert draft_invoice(team=team).status == "draft"


def test_invoices_mark_overdue_moves_only_issued_invoices_past_due_and_is_idempotent():
    # Given invoices issued on 22 Nov (due 22 Dec): pending, sent, paid; and a draft
    pending, sent, paid, draft = invoice_in("pending"), invoice_in("sent"), invoice_in("paid"), invoice_in("draft")

    # When the due date itself is judged, nothing is overdue yet
    assert invoices_mark_overdue(today=dt.date(2026, 12, 22)) == []

    # When the day after is judged, the pending and sent invoices become overdue
    moved = invoices_mark_overdue(today=dt.date(2026, 12, 23))
    assert sorted(i.pk for i in moved) == sorted([pending.pk, sent.pk])
    statuses = dict(Invoice.objects.values_list("pk", "status"))
    assert (statuses[pending.pk], statuses[sent.pk], statuses[paid.pk], statuses[draft.pk]) == (
        "overdue", "overdue", "paid", "draft")

    # And a second run moves nothing
    assert invoices_mark_overdue(today=dt.date(2026, 12, 23)) == []


def test_mark_overdue_command_prints_what_it_moved():
    invoice = invoice_in("pending")
    out = StringIO()

    call_command("mark_overdue", "--date", "2027-01-05", stdout=out)

    assert f"{invoice.number}" in out.getvalue() and "-> overdue" in out.getvalue()
    assert "1 invoice marked overdue" in out.getvalue()
    out = StringIO()
    call_command("mark_overdue", "--date", "2027-01-05", stdout=out)
    assert "0 invoices marked overdue" in out.getvalue()


def test_mark_overdue_command_refuses_a_bad_date_with_exit_code_2():
    with pytest.raises(CommandError) as failed:
        call_command("mark_overdue", "--date", "05/01/2027")
    assert failed.value.returncode == 2
    assert "YYYY-MM-DD" in str(failed.value)


def test_overdue_invoice_can_still_be_paid():
    invoice = invoice_mark_paid(invoice=invoice_in("overdue"), payment_reference="late")
    assert invoice.status == "paid"


def test_invoice_list_for_user_shows_members_only_their_teams_invoices():
    # Given invoices of two teams and a member of the first
    from django.contrib.auth.models import Group

    from invoices.selectors import invoice_list_for_user
    from tests.factories import TeamMembershipFactory

    mine, theirs = invoice_in("pending"), invoice_in("draft")
    member = TeamMembershipFactory(team=mine.team).user
    finance = UserFactory()
    finance.groups.add(Group.objects.get_or_create(name="finance")[0])

    # Then the member sees only their team's invoice, finance sees both
    assert list(invoice_list_for_user(user=member)) == [mine]
    assert {i.pk for i in invoice_list_for_user(user=finance)} == {mine.pk, theirs.pk}
    assert list(invoice_list_for_user(user=finance, status="draft")) == [theirs]
