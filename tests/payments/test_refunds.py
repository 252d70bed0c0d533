"""Refunds: a credit note on a paid invoice pays the credit back through Stripe."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from invoices.errors import CreditNoteLimitExceeded, InvalidTransition
from invoices.models import CreditNote, Invoice
from invoices.services.credit_notes import credit_note_issue
from invoices.services.lifecycle import invoice_issue, invoice_mark_paid
from payments.models import Payment, Refund
from payments.services.collection import invoice_collect
from payments.services.refunds import invoice_refund
from payments.stripe_client import stripe_client
from tests.factories import UserFactory, draft_invoice
from tests.payments.conftest import paying_team

D = Decimal


def paid_by_card(amount="100.00"):
    team = paying_team()
    invoice = invoice_issue(invoice=draft_invoice(team=team, amounts=(amount,)))
    payment = invoice_collect(invoice_id=invoice.pk)
    assert payment.status == "succeeded"
    invoice.refresh_from_db()
    return invoice, payment


def test_a_partial_credit_note_on_a_paid_invoice_refunds_through_stripe(db, stripe_settings):
    # given an invoice of 100.00 USD paid by card
    invoice, payment = paid_by_card()
    # when finance credits 30.00 of it
    note = invoice_refund(invoice=invoice, reason="order_change", amount=D("30.00"))
    # then Stripe refunded 3000 cents of the charge, and the credit note records the refund
    refund = stripe_client().v1.refunds.retrieve(note.refund_reference)
    assert (refund.amount, refund.status) == (3000, "succeeded")
    assert stripe_client().v1.charges.retrieve(payment.stripe_charge_id).amount_refunded == 3000
    assert note.total == D("30.00")
    # and the invoice stays paid with 30.00 credited; the payment shows the refund
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert (invoice.status, invoice.credited_total, payment.amount_refunded) == ("paid", D("30.00"), D("30.00"))
    assert Refund.objects.get(credit_note=note).status == "succeeded"


def test_the_rest_can_be_refunded_but_never_more_than_was_paid(db, stripe_settings):
    invoice, payment = paid_by_card("50.00")
    invoice_refund(invoice=invoice, reason="other", amount=D("20.00"))
    rest = invoice_refund(invoice=invoice, reason="other")
    assert rest.total == D("30.00")
    with pytest.raises(CreditNoteLimitExceeded):
        invoice_refund(invoice=invoice, reason="other", amount=D("0.01"))
    assert stripe_client().v1.charges.retrieve(payment.stripe_charge_id).amount_refunded == 5000
    assert CreditNote.objects.filter(invoice=invoice).count() == 2


def test_an_invoice_paid_by_hand_is_refunded_by_hand_with_its_reference(db):
    # given an invoice paid by bank transfer (no Stripe)
    invoice = invoice_issue(invoice=draft_invoice(amounts=("80.00",)))
    invoice_mark_paid(invoice=invoice, payment_reference="BANK-42")
    # a plain credit note is refused, naming the refund path
    with pytest.raises(InvalidTransition, match="refund"):
        credit_note_issue(invoice=invoice, reason="other", amount=D("10.00"))
    # with the manual refund's reference it is the credit note of that refund
    note = credit_note_issue(invoice=invoice, reason="other", amount=D("10.00"), refund_reference="BANK-REFUND-7")
    assert note.refund_reference == "BANK-REFUND-7"
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    assert not Payment.objects.exists()


def test_an_invoice_paid_by_hand_is_not_refunded_through_stripe(db, stripe_settings):
    invoice = invoice_issue(invoice=draft_invoice(amounts=("80.00",)))
    invoice_mark_paid(invoice=invoice, payment_reference="BANK-42")
    with pytest.raises(InvalidTransition, match="by hand"):
        invoice_refund(invoice=invoice, reason="other")


def test_finance_refunds_through_the_api(db, stripe_settings):
    invoice, _ = paid_by_card("20.00")
    finance = UserFactory(is_superuser=True, is_staff=True)
    client = APIClient()
    client.force_authenticate(finance)
    response = client.post(f"/api/v1/admin/billing/invoices/{invoice.pk}/refund/",
                           {"reason": "duplicated_charge", "amount": "5.00"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["refund_reference"].startswith("re_")
    assert body["total"] == "5.00"
