"""Stripe webhooks in (``POST /webhooks/stripe/``): signatures, once per event, the object read again.

Payloads are signed with the SDK's own scheme (``stripe.WebhookSignature.generate_signature_header``:
``t=<timestamp>,v1=<HMAC-SHA256 of "<timestamp>.<body>">``) and posted over HTTP through Django's
test client; the objects they name live on the session's localstripe, which the product reads again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from decimal import Decimal

import pytest
import stripe
from django.db import connection
from django.test import Client

from invoices.models import Invoice
from invoices.services.lifecycle import invoice_issue
from payments.models import Dunning, Payment, StripeEvent
from payments.stripe_client import stripe_call, stripe_client, stripe_id
from teams.models import BillingSettings
from tests.conftest import TEST_STRIPE_SECRET_KEY, TEST_STRIPE_WEBHOOK_SECRET
from tests.factories import UserFactory, draft_invoice
from tests.jobs.mail import queued_mails

from .conftest import DECLINED_ON_CHARGE, VISA, card_add, paying_team

pytestmark = pytest.mark.django_db

D = Decimal
URL = "/webhooks/stripe/"


def event(type_: str, obj: dict, *, event_id: str = "evt_dun_1", **extra) -> dict:
    """A Stripe event as Stripe sends it (``data.object`` is the object as it was then)."""
    return {"id": event_id, "object": "event", "type": type_, "api_version": stripe.api_version,
            "created": int(time.time()), "livemode": False, "data": {"object": obj, **extra}}


def deliver(client: Client, payload: dict, *, secret: str = TEST_STRIPE_WEBHOOK_SECRET, timestamp: int | None = None,
            header: str | None = None):
    """POST the payload as Stripe does: the JSON body and its ``Stripe-Signature`` header."""
    body = json.dumps(payload)
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)
    extra = {"HTTP_STRIPE_SIGNATURE": header} if header else {}
    return client.post(URL, data=body, content_type="application/json", **extra)


def open_invoice(team, amount: str = "49.00") -> Invoice:
    """An issued invoice of ``team`` awaiting payment (the automatic collection job is queued, not run)."""
    return invoice_issue(invoice=draft_invoice(team=team, amounts=(amount,)))


def payment_at_stripe(invoice: Invoice, card: str = VISA) -> tuple[Payment, dict]:
    """A payment of ``invoice`` the database still has as pending while Stripe already knows its outcome
    (Stripe's answer was lost): the Payment row, and the PaymentIntent as Stripe holds it now."""
    client = stripe_client()
    pm_id = card_add(invoice.team, card)
    customer_id = BillingSettings.objects.get(team=invoice.team).stripe_customer_id
    payment = Payment.objects.create(
        team=invoice.team, kind=Payment.Kind.INVOICE, invoice=invoice, amount=invoice.amount_due,
        currency=invoice.currency, idempotency_key=f"invoice-{invoice.pk}-attempt-1", stripe_customer_id=customer_id,
        stripe_payment_method_id=pm_id,
    )
    params = {"amount": int(invoice.amount_due * 100), "currency": "usd", "customer": customer_id,
              "payment_method": pm_id, "confirm": True, "off_session": True,
              "metadata": {"payment_id": str(payment.pk), "invoice_id": str(invoice.pk)}}
    try:
        intent = stripe_call(client.v1.payment_intents.create, params=params)
    except Exception:  # a declined card: Stripe created the PaymentIntent, then refused it
        listed = stripe_call(client.v1.charges.list, params={"customer": customer_id})
        intent = stripe_call(client.v1.payment_intents.retrieve, listed.data[0].payment_intent)
    Payment.objects.filter(pk=payment.pk).update(stripe_payment_intent_id=intent.id)
    return payment, intent.to_dict()


def finance_mails() -> list[dict]:
    return [m for m in queued_mails() if m["subject"].startswith("Payment disputed")]


def dispute_of(intent: dict, *, dispute_id: str = "dp_dun_1") -> dict:
    """A dispute object as Stripe sends it in ``charge.dispute.created`` (localstripe has no disputes)."""
    return {"id": dispute_id, "object": "dispute", "amount": intent["amount"], "currency": "usd",
            "charge": stripe_id(intent["latest_charge"]), "payment_intent": intent["id"], "reason": "fraudulent",
            "status": "needs_response", "created": int(time.time())}


@pytest.fixture
def finance_user(db):
    user = UserFactory(email="finance@example.com", is_superuser=True, is_staff=True)
    return user


# --- signatures ----------------------------------------------------------------------------------


def test_valid_signature_applies_the_event_once_and_records_it(client, stripe_settings):
    # given a payment Stripe took while our database missed the answer
    team = paying_team(card=None)
    invoice = open_invoice(team)
    payment, intent = payment_at_stripe(invoice)
    # when Stripe reports it, signed
    response = deliver(client, event("payment_intent.succeeded", intent))
    # then the invoice is paid with the charge as its reference, and the event is recorded once
    assert response.status_code == 200, response.content
    assert response.json()["replayed"] is False
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert invoice.payment_reference == stripe_id(intent["latest_charge"])
    row = StripeEvent.objects.get(event_id="evt_dun_1")
    assert (row.type, row.outcome, row.team_id) == ("payment_intent.succeeded", "processed", team.pk)
    assert "client_secret" not in json.dumps(row.payload)


@pytest.mark.parametrize("how", ["wrong secret", "missing header", "garbled header", "stale timestamp"])
def test_a_bad_missing_or_stale_signature_answers_400_and_writes_nothing(client, stripe_settings, how):
    # given a payment Stripe took
    team = paying_team(card=None)
    invoice = open_invoice(team)
    payment_at_stripe(invoice)
    intent = Payment.objects.get(invoice=invoice).stripe_payment_intent_id
    payload = event("payment_intent.succeeded", {"id": intent, "object": "payment_intent"})
    sign = {
        "wrong secret": {"secret": "whsec_not_the_one"},
        "missing header": {"header": ""},
        "garbled header": {"header": "t=abc,v1=00"},
        "stale timestamp": {"timestamp": int(time.time()) - 301},  # Stripe's tolerance is 300 s
    }[how]
    # when it is delivered with a bad signature
    response = deliver(client, payload, **sign)
    # then 400 in the error shape, nothing recorded, the invoice untouched, the secret never echoed
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert TEST_STRIPE_WEBHOOK_SECRET not in response.content.decode()
    assert not StripeEvent.objects.exists()
    invoice.refresh_from_db()
    assert invoice.status == "pending"


def test_without_a_webhook_secret_the_endpoint_says_payments_are_not_configured(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = deliver(client, event("customer.updated", {"id": "cus_x"}), secret="whsec_any")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "payments_not_configured"
    assert not StripeEvent.objects.exists()


def test_get_is_not_allowed(client):
    assert client.get(URL).status_code == 405


# --- once per event ------------------------------------------------------------------------------


def test_a_replayed_event_answers_200_and_does_nothing_more(client, stripe_settings, finance_user):
    # given a disputed payment of a paid invoice, reported once
    team = paying_team(card=None)
    invoice = open_invoice(team)
    _, intent = payment_at_stripe(invoice)
    payload = event("charge.dispute.created", dispute_of(intent))
    first = deliver(client, payload)
    assert first.status_code == 200 and first.json()["replayed"] is False
    # when Stripe delivers it again
    again = deliver(client, payload)
    # then 200, replayed, and still one row and one e-mail to finance
    assert again.status_code == 200
    assert again.json() == {"received": True, "event": "evt_dun_1", "outcome": "processed", "replayed": True}
    assert StripeEvent.objects.count() == 1
    assert len(finance_mails()) == 1


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_deliveries_of_one_event_have_one_effect(stripe_settings, finance_user):
    # given a disputed payment, and ten deliveries of its event at once (Stripe retries, a proxy's repeats)
    team = paying_team(card=None)
    invoice = open_invoice(team)
    _, intent = payment_at_stripe(invoice)
    payload = event("charge.dispute.created", dispute_of(intent), event_id="evt_dun_concurrent")
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, TEST_STRIPE_WEBHOOK_SECRET)
    start = threading.Barrier(10)
    answers: list[tuple[int, bool]] = []

    def post():
        try:
            start.wait()
            response = Client().post(URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
            answers.append((response.status_code, response.json().get("replayed")))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(10)]
    # when they arrive together
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then all ten are answered 200, one applied the event and nine found it applied
    assert sorted(answers) == [(200, False)] + [(200, True)] * 9
    assert StripeEvent.objects.filter(event_id="evt_dun_concurrent").count() == 1
    assert len(finance_mails()) == 1
    invoice.refresh_from_db()
    assert invoice.disputed_at is not None


# --- the object read again -----------------------------------------------------------------------


def test_a_failure_event_arriving_after_the_success_pays_the_invoice(client, stripe_settings):
    # given a PaymentIntent that failed once and then succeeded at Stripe; the failure's event arrives late
    team = paying_team(card=None)
    invoice = open_invoice(team)
    _, intent = payment_at_stripe(invoice)
    stale = dict(intent, status="requires_payment_method",
                 last_payment_error={"code": "card_declined", "message": "Your card was declined."})
    # when the stale failure is delivered
    response = deliver(client, event("payment_intent.payment_failed", stale))
    # then the product acted on Stripe's state now: the invoice is paid, no dunning started
    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert not Dunning.objects.exists()


def test_a_payment_failed_event_starts_dunning_and_reminds_the_team(client, stripe_settings):
    # given a payment declined at Stripe, the database not told yet
    team = paying_team(card=None)
    invoice = open_invoice(team)
    payment, intent = payment_at_stripe(invoice, DECLINED_ON_CHARGE)
    # when the failure's event arrives
    response = deliver(client, event("payment_intent.payment_failed", intent))
    # then the payment failed with Stripe's code, dunning started and the team got a reminder
    assert response.status_code == 200
    payment.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("failed", "card_declined")
    dunning = Dunning.objects.get(invoice=invoice)
    assert dunning.status == "active"
    reminders = [m for m in queued_mails() if m["subject"].startswith("Payment failed")]
    assert len(reminders) == 1
    assert reminders[0]["to"] == ["billing@example.com"]
    assert invoice.number in reminders[0]["body"] and "49.00 USD" in reminders[0]["body"]


def test_a_dispute_flags_the_invoice_and_emails_finance(client, stripe_settings, finance_user):
    team = paying_team(card=None)
    invoice = open_invoice(team)
    _, intent = payment_at_stripe(invoice)
    response = deliver(client, event("charge.dispute.created", dispute_of(intent)))
    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.disputed_at is not None
    assert invoice.dispute_reference == "dp_dun_1 (fraudulent)"
    (mail,) = finance_mails()
    assert mail["to"] == ["finance@example.com"]
    assert invoice.number in mail["subject"] and "49.00 USD" in mail["subject"]
    # and finance finds it in the admin's invoices, filtered as disputed
    client.force_login(finance_user)
    other = open_invoice(paying_team(card=None))
    page = client.get("/admin/invoices/invoice/?disputed=yes").content.decode()
    assert invoice.number in page and other.number not in page


def test_a_refund_made_at_stripe_is_recorded_on_the_payment(client, stripe_settings):
    # given a paid invoice, then a partial refund made in the Stripe dashboard
    team = paying_team(card=None)
    invoice = open_invoice(team)
    payment, intent = payment_at_stripe(invoice)
    assert deliver(client, event("payment_intent.succeeded", intent)).status_code == 200
    stripe_call(stripe_client().v1.refunds.create, params={"payment_intent": intent["id"], "amount": 1200})
    charge = stripe_call(stripe_client().v1.charges.retrieve, stripe_id(intent["latest_charge"])).to_dict()
    # when charge.refunded arrives (its payload stale: before the refund)
    response = deliver(client, event("charge.refunded", dict(charge, amount_refunded=0), event_id="evt_dun_2"))
    # then the payment records what Stripe refunded
    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.amount_refunded == D("12.00")


def test_a_refund_through_a_credit_note_is_not_counted_twice_by_its_webhook(client, stripe_settings):
    # given an invoice paid by card, then refunded in part through a credit note
    from payments.services.refunds import invoice_refund

    team = paying_team(card=None)
    invoice = open_invoice(team)
    payment, intent = payment_at_stripe(invoice)
    assert deliver(client, event("payment_intent.succeeded", intent)).status_code == 200
    invoice.refresh_from_db()
    invoice_refund(invoice=invoice, reason="duplicated_charge", amount=D("10.00"))
    charge = stripe_call(stripe_client().v1.charges.retrieve, stripe_id(intent["latest_charge"])).to_dict()
    # when Stripe's charge.refunded arrives afterwards
    response = deliver(client, event("charge.refunded", charge, event_id="evt_dun_5"))
    # then the payment shows the one refund
    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.amount_refunded == D("10.00")


def test_a_set_up_card_becomes_the_default_when_the_team_has_none(client, stripe_settings):
    # given a team whose customer has no card, and a SetupIntent its front end confirmed
    team = paying_team(card=None)
    from payments.services.customers import customer_ensure
    customer_id = customer_ensure(team=team)
    client_ = stripe_client()
    card = stripe_call(client_.v1.payment_methods.retrieve, VISA)
    intent = stripe_call(client_.v1.setup_intents.create, params={"customer": customer_id})
    intent = stripe_call(client_.v1.setup_intents.confirm, intent.id, params={"payment_method": card.id})
    # when setup_intent.succeeded arrives
    response = deliver(client, event("setup_intent.succeeded", intent.to_dict()))
    # then the card is the team's default at Stripe, and the event names the team
    assert response.status_code == 200
    customer = stripe_call(client_.v1.customers.retrieve, customer_id)
    assert customer.invoice_settings.default_payment_method == card.id
    assert StripeEvent.objects.get().team_id == team.pk


def test_payment_method_events_and_customer_updates_are_recorded_against_the_team(client, stripe_settings):
    team = paying_team()
    customer_id = BillingSettings.objects.get(team=team).stripe_customer_id
    client_ = stripe_client()
    pm_id = card_add(team, VISA, default=False)
    stripe_call(client_.v1.payment_methods.detach, pm_id)
    method = stripe_call(client_.v1.payment_methods.retrieve, pm_id).to_dict()
    detached = deliver(client, event("payment_method.detached", method, event_id="evt_dun_3",
                                     previous_attributes={"customer": customer_id}))
    customer = stripe_call(client_.v1.customers.update, customer_id, params={"email": "new@example.com"})
    updated = deliver(client, event("customer.updated", customer.to_dict(), event_id="evt_dun_4"))
    assert detached.status_code == updated.status_code == 200
    rows = {row.type: row for row in StripeEvent.objects.all()}
    assert rows["payment_method.detached"].team_id == team.pk
    assert "detached" in rows["payment_method.detached"].result
    assert rows["customer.updated"].team_id == team.pk
    assert "new@example.com" in rows["customer.updated"].result


def test_an_unknown_event_type_is_recorded_and_ignored(client, stripe_settings):
    response = deliver(client, event("balance.available", {"id": "txn_1", "object": "balance"}))
    assert response.status_code == 200
    assert StripeEvent.objects.get().outcome == "ignored"


def test_an_event_about_someone_elses_payment_is_recorded_as_unmatched(client, stripe_settings):
    client_ = stripe_client()
    customer = stripe_call(client_.v1.customers.create, params={"name": "Not ours"})
    card = stripe_call(client_.v1.payment_methods.retrieve, VISA)
    stripe_call(client_.v1.payment_methods.attach, card.id, params={"customer": customer.id})
    intent = stripe_call(client_.v1.payment_intents.create, params={
        "amount": 500, "currency": "usd", "customer": customer.id, "payment_method": card.id, "confirm": True})
    response = deliver(client, event("payment_intent.succeeded", intent.to_dict()))
    assert response.status_code == 200
    assert StripeEvent.objects.get().outcome == "unmatched"
    assert not Invoice.objects.filter(status="paid").exists()


# --- no leaks ------------------------------------------------------------------------------------


def test_no_secret_reaches_the_logs_the_answers_or_the_admin(client, stripe_settings, caplog, finance_user):
    # given every kind of answer the endpoint gives, logged at DEBUG
    caplog.set_level(logging.DEBUG)
    team = paying_team(card=None)
    invoice = open_invoice(team)
    _, intent = payment_at_stripe(invoice)
    answers = [
        deliver(client, event("payment_intent.succeeded", intent)),
        deliver(client, event("payment_intent.succeeded", intent), secret="whsec_wrong"),
        deliver(client, event("payment_intent.succeeded", intent), header=""),
    ]
    client.force_login(finance_user)
    row = StripeEvent.objects.get()
    pages = [client.get("/admin/payments/stripeevent/"), client.get(f"/admin/payments/stripeevent/{row.pk}/change/")]
    # then neither secret, nor the PaymentIntent's client secret, appears anywhere
    assert [page.status_code for page in pages] == [200, 200]
    text = caplog.text + "".join(r.content.decode() for r in answers + pages)
    for secret in (TEST_STRIPE_WEBHOOK_SECRET, TEST_STRIPE_SECRET_KEY, intent["client_secret"]):
        assert secret not in text


# --- delivered by localstripe itself ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_events_localstripe_sends_are_verified_and_recorded(live_server, localstripe_url, stripe_settings):
    # given localstripe told to deliver its events to the running site, signed with our secret
    import requests

    register = f"{localstripe_url}/_config/webhooks/dun"
    requests.post(register, data={"url": f"{live_server.url}{URL}", "secret": TEST_STRIPE_WEBHOOK_SECRET},
                  timeout=10).raise_for_status()
    try:
        # when a card payment of an invoice succeeds at Stripe
        team = paying_team()
        invoice = open_invoice(team)
        from payments.services.collection import invoice_payment_attempt
        payment = invoice_payment_attempt(invoice=invoice)
        # then Stripe's payment_intent.succeeded arrives (about a second later), passes the signature
        # check and is recorded once against the team; the invoice was paid once
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not StripeEvent.objects.filter(
                type="payment_intent.succeeded", object_id=payment.stripe_payment_intent_id).exists():
            time.sleep(0.2)
        row = StripeEvent.objects.get(type="payment_intent.succeeded", object_id=payment.stripe_payment_intent_id)
        assert (row.outcome, row.team_id) == ("processed", team.pk)
        invoice.refresh_from_db()
        assert invoice.status == "paid"
        assert Payment.objects.filter(invoice=invoice).count() == 1
    finally:
        # Later tests' events go nowhere (localstripe delivers only the listed types).
        requests.post(register, data={"url": "http://127.0.0.1:9/", "secret": "whsec_off", "events[0]": "none"},
                      timeout=10)


def test_an_event_whose_object_stripe_no_longer_has_is_recorded_as_unmatched(client, stripe_settings):
    response = deliver(client, event("customer.updated", {"id": "cus_gone0000000000", "object": "customer"}))
    assert response.status_code == 200
    row = StripeEvent.objects.get()
    assert row.outcome == "unmatched" and "cus_gone0000000000" in row.result
