"""Finance's view of payments: recent charges (API), the Payments changelist, and no secret anywhere."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from invoices.services.lifecycle import invoice_issue
from payments.services.collection import invoice_collect
from teams.groups import billing_groups_sync
from teams.selectors import FINANCE_GROUP
from tests.conftest import TEST_STRIPE_SECRET_KEY, TEST_STRIPE_WEBHOOK_SECRET
from tests.factories import TeamMembershipFactory, UserFactory, draft_invoice
from tests.payments.conftest import paying_team

pytestmark = pytest.mark.django_db


@pytest.fixture
def finance_user(db):
    billing_groups_sync()
    user = UserFactory(username="fiona-finance", is_staff=True)
    user.groups.add(Group.objects.get(name=FINANCE_GROUP))
    return user


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_finance_sees_the_recent_charges_newest_first(stripe_settings, finance_user):
    # given two invoices paid by card
    for amount in ("11.00", "22.00"):
        invoice = invoice_issue(invoice=draft_invoice(team=paying_team(), amounts=(amount,)))
        invoice_collect(invoice_id=invoice.pk)
    # when finance asks for the 2 most recent charges
    response = api(finance_user).get("/api/v1/admin/billing/recent-charges/?limit=2")
    # then they come in Stripe's shape, newest first
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["total"] == len(body["charges"]) == 2
    assert set(body["charges"][0]) == {"id", "amount", "currency", "status", "customer", "description", "created",
                                       "paid", "refunded"}
    assert body["charges"][0]["created"] >= body["charges"][1]["created"]
    assert all(c["paid"] and not c["refunded"] and c["currency"] == "usd" for c in body["charges"]), body


def test_a_member_may_not_see_the_recent_charges(stripe_settings):
    team = paying_team(card=None)
    member = UserFactory()
    TeamMembershipFactory(user=member, team=team)
    assert api(member).get("/api/v1/admin/billing/recent-charges/").status_code == 403


def test_without_stripe_recent_charges_say_payments_are_not_configured(finance_user):
    response = api(finance_user).get("/api/v1/admin/billing/recent-charges/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payments_not_configured"


def test_the_payments_changelist_says_payments_are_not_configured(client, finance_user):
    client.force_login(finance_user)
    page = client.get("/admin/payments/payment/")
    assert page.status_code == 200
    assert "Payments: not configured" in page.content.decode()


def test_the_payments_changelist_lists_payments_and_never_shows_a_secret(client, stripe_settings, finance_user, caplog):
    caplog.set_level(logging.DEBUG)
    # given an invoice paid by card
    invoice = invoice_issue(invoice=draft_invoice(team=paying_team(), amounts=("33.00",)))
    payment = invoice_collect(invoice_id=invoice.pk)
    client.force_login(finance_user)
    # when finance opens the list, filtered to succeeded payments, and the payment's page
    listing = client.get("/admin/payments/payment/?status__exact=succeeded").content.decode()
    detail = client.get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()
    # then the payment is there, Stripe is said to be in test mode, and no secret shows anywhere
    assert payment.stripe_charge_id in listing
    assert "Payments: Stripe (test mode)" in listing
    for text in (listing, detail, caplog.text):
        assert TEST_STRIPE_SECRET_KEY not in text
        assert TEST_STRIPE_WEBHOOK_SECRET not in text


def test_stripe_not_answering_is_a_clear_error_without_the_key(stripe_settings, finance_user, caplog):
    stripe_settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens: Stripe does not answer
    response = api(finance_user).get("/api/v1/admin/billing/recent-charges/")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "stripe_unavailable"
    assert TEST_STRIPE_SECRET_KEY not in response.content.decode()
    assert TEST_STRIPE_SECRET_KEY not in caplog.text


def test_the_dashboard_says_whether_payments_are_configured(client, finance_user, settings):
    client.force_login(finance_user)
    assert "Payments: not configured" in client.get("/admin/").content.decode()
    settings.STRIPE_SECRET_KEY = TEST_STRIPE_SECRET_KEY
    page = client.get("/admin/").content.decode()
    assert "Payments: Stripe (test mode)" in page
    assert TEST_STRIPE_SECRET_KEY not in page
