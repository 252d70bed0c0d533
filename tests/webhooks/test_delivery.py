"""Webhooks delivered by a real Procrastinate worker to a receiver on loopback: signed per Standard
Webhooks, retried until the receiver accepts, never sent for a change that rolled back."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from invoices.services.lifecycle import invoice_issue, invoice_mark_overdue
from tests.factories import TeamFactory, UserFactory, draft_invoice
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open
from webhooks.models import Delivery, Endpoint, Event
from webhooks.services import (
    deliveries_claim,
    deliveries_send,
    delivery_replay,
    endpoint_create,
    endpoint_update,
    event_record,
)
from webhooks.tasks import webhook_sweep

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def team():
    return TeamFactory(currency="USD")


def _top_up(team, amount="50", key="top-up-1"):
    wallet = wallet_open(team=team)
    wallet_top_up(wallet=wallet, amount=Decimal(amount), idempotency_key=key)
    return wallet


def test_delivery_signature_verifies_with_the_standardwebhooks_verifier(loopback_allowed, receiver, run_jobs, team):
    # given an endpoint for top-ups
    endpoint = endpoint_create(url=receiver.url, event_types=["wallet.topped_up"])
    # when a top-up commits and the worker runs
    wallet = _top_up(team, "50")
    run_jobs(queues=["webhooks"])
    # then the receiver got one request whose signature verifies with the endpoint's secret
    assert len(receiver.received) == 1
    got = receiver.received[0]
    payload = Webhook(endpoint.secret).verify(got.body, got.headers)
    assert payload["type"] == "wallet.topped_up"
    assert payload["data"]["wallet"]["id"] == wallet.pk
    assert payload["data"]["wallet"]["balance"] == "50.000000000000"
    assert payload["data"]["ledger_entry"]["entry_type"] == "top_up"
    assert got.headers["webhook-id"] == Event.objects.get().webhook_id
    # and a changed body or another secret fails verification
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(got.body.replace(b"50.0", b"99.0"), got.headers)
    other = endpoint_create(url=receiver.url, event_types=["invoice.paid"])
    with pytest.raises(WebhookVerificationError):
        Webhook(other.secret).verify(got.body, got.headers)
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.SUCCEEDED and delivery.last_status_code == 200


def test_receiver_failing_twice_gets_the_event_three_times_and_one_success_is_recorded(
        loopback_allowed, receiver, run_jobs, team):
    # given a receiver that answers 500, 500, then 200
    endpoint_create(url=receiver.url, event_types=["wallet.topped_up"])
    receiver.answers = [500, 500, 200]
    # when a top-up commits and the worker runs its retries
    _top_up(team)
    run_jobs(queues=["webhooks"])
    # then the event arrived three times, with one id
    assert len(receiver.received) == 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    # and the delivery is succeeded, with its three attempts logged
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.SUCCEEDED and delivery.attempt_count == 3
    attempts = list(delivery.attempts.order_by("number"))
    assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [(1, 500, False), (2, 500, False), (3, 200, True)]
    assert attempts[0].error == "HTTP 500" and attempts[0].response_excerpt == "receiver says no"
    assert all(a.duration_ms >= 0 for a in attempts)
    assert delivery.endpoint.failing_since is None  # the success cleared the failure record


def test_event_of_a_rolled_back_change_is_never_sent(loopback_allowed, receiver, run_jobs, team):
    # given an endpoint for overdue invoices and two issued invoices
    endpoint_create(url=receiver.url, event_types=["invoice.overdue"])
    rolled_back = invoice_issue(invoice=draft_invoice())
    kept = invoice_issue(invoice=draft_invoice())

    # when one is marked overdue in a transaction that rolls back, and the other in one that commits
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        invoice_mark_overdue(invoice=rolled_back)
        raise Abort
    invoice_mark_overdue(invoice=kept)
    run_jobs(queues=["webhooks"])
    # then only the committed change was sent: no event, delivery or job remains of the other
    sent = [json.loads(r.body) for r in receiver.received]
    assert [(s["type"], s["data"]["id"]) for s in sent] == [("invoice.overdue", kept.pk)]
    assert list(Event.objects.filter(type="invoice.overdue").values_list("data__id", flat=True)) == [kept.pk]
    assert ProcrastinateJob.objects.filter(task_name="webhooks.deliver").count() == 1


def test_endpoint_failing_for_days_is_disabled_and_finance_is_mailed(loopback_allowed, receiver, run_jobs, team):
    # given a receiver that always fails, an endpoint disabled after 0 hours of failures, and finance
    loopback_allowed.WEBHOOKS_DISABLE_AFTER_HOURS = 0
    UserFactory(username="fin", email="finance@example.com", is_superuser=True)
    endpoint = endpoint_create(url=receiver.url, event_types=["wallet.topped_up"])
    receiver.answers = [503] * 20
    # when an event is delivered, and the mail queue runs
    _top_up(team)
    run_jobs(queues=["webhooks"])
    assert mail.outbox == []  # queued, not sent by the webhooks job
    run_jobs(queues=["mail"])
    # then one attempt was made, the endpoint is disabled and finance got one e-mail
    endpoint.refresh_from_db()
    assert len(receiver.received) == 1
    assert not endpoint.is_active and "HTTP 503" in endpoint.disabled_reason
    assert [m.to for m in mail.outbox] == [["finance@example.com"]]
    assert endpoint.url in mail.outbox[0].subject
    assert endpoint.secret not in mail.outbox[0].body
    # and a later event is not queued to it
    _top_up(team, key="top-up-2")
    assert Delivery.objects.count() == 1


def test_replay_sends_a_delivery_again_with_the_same_id(loopback_allowed, receiver, run_jobs, team):
    # given a delivered event
    endpoint_create(url=receiver.url, event_types=["wallet.topped_up"])
    _top_up(team)
    run_jobs(queues=["webhooks"])
    # when it is replayed
    delivery_replay(delivery=Delivery.objects.get())
    run_jobs(queues=["webhooks"])
    # then the receiver got it twice, with one id, and both attempts are logged
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.SUCCEEDED and delivery.attempts.count() == 2


def test_private_address_is_refused_at_delivery_when_the_setting_is_off(loopback_allowed, receiver, run_jobs, team):
    # given an endpoint registered while private receivers were allowed
    endpoint_create(url=receiver.url, event_types=["wallet.topped_up"])
    loopback_allowed.WEBHOOKS_ALLOW_PRIVATE = False
    loopback_allowed.WEBHOOKS_MAX_ATTEMPTS = 2
    # when an event is delivered
    _top_up(team)
    run_jobs(queues=["webhooks"])
    # then nothing reached the receiver, and the attempts say why
    assert receiver.received == []
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED
    assert [a.status_code for a in delivery.attempts.all()] == [None, None]
    assert "loopback" in delivery.attempts.first().error


def test_secret_is_never_logged_sent_or_shown(loopback_allowed, receiver, run_jobs, team, caplog):
    # given an endpoint, a receiver failing once, and every log record kept
    endpoint = endpoint_create(url=receiver.url, event_types=["wallet.topped_up"])
    receiver.answers = [500]
    caplog.set_level(logging.DEBUG)
    # when an event is delivered
    _top_up(team)
    run_jobs(queues=["webhooks"])
    # then the secret (or its key) is in no log line, request body or header, nor in the endpoint's repr
    key = endpoint.secret.removeprefix("whsec_")
    assert len(receiver.received) == 2
    assert "webhook delivery" in caplog.text
    for text in [caplog.text, repr(endpoint), str(endpoint),
                 *(r.body.decode() + json.dumps(r.headers) for r in receiver.received)]:
        assert key not in text
    assert Endpoint.objects.get().secret == endpoint.secret  # kept, to sign


def test_event_recorded_outside_a_transaction_commits_with_its_job(loopback_allowed, receiver, run_jobs, team):
    # given an endpoint of one team
    endpoint_create(url=receiver.url, event_types=["wallet.low_balance"], team=team)
    other = TeamFactory()
    # when events of both teams are recorded in autocommit mode
    wallet = wallet_open(team=team)
    event_record("wallet.low_balance", wallet, team=team)
    event_record("wallet.low_balance", wallet_open(team=other), team=other)
    run_jobs(queues=["webhooks"])
    # then only the team's own event was sent
    assert [json.loads(r.body)["data"]["id"] for r in receiver.received] == [wallet.pk]


def test_worker_process_delivers_and_retries(loopback_allowed, receiver, worker_process, team):
    # given a real `manage.py procrastinate worker` on the webhooks queue, and a receiver failing once
    endpoint = endpoint_create(url=receiver.url, event_types=["wallet.topped_up"])
    receiver.answers = [500]
    worker_process.start(queues=["webhooks"], WEBHOOKS_ALLOW_HTTP="true", WEBHOOKS_ALLOW_PRIVATE="true",
                         WEBHOOKS_RETRY_BASE_SECONDS="0")
    # when a top-up commits
    _top_up(team)
    # then the worker delivers it on the second attempt, signed
    deadline = time.monotonic() + 60
    while Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count() < 1:
        if time.monotonic() > deadline:
            pytest.fail(f"not delivered: {list(Delivery.objects.values())}\n{worker_process.logs()}")
        time.sleep(0.1)
    assert len(receiver.received) == 2
    Webhook(endpoint.secret).verify(receiver.received[1].body, receiver.received[1].headers)
    assert [a.status_code for a in Delivery.objects.get().attempts.all()] == [500, 200]


def test_many_events_of_one_transaction_are_sent_in_batches_each_once(loopback_allowed, receiver, team):
    # given two endpoints, and jobs that claim 7 deliveries at a time
    loopback_allowed.WEBHOOKS_BATCH_SIZE = 7
    first = endpoint_create(url=receiver.url + "/a", event_types=["wallet.low_balance"])
    endpoint_create(url=receiver.url + "/b", event_types=["wallet.low_balance"])
    # when 30 events are recorded in one transaction
    wallet = wallet_open(team=team)
    with transaction.atomic():
        for _ in range(30):
            event_record("wallet.low_balance", wallet, team=team)
    # then one job was queued for them all
    assert ProcrastinateJob.objects.filter(task_name="webhooks.deliver").count() == 1
    # and when two senders claim batches at once, every delivery arrives once, signed, and is logged once
    threads = [threading.Thread(target=_send_until_none_due) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(receiver.received) == 60
    assert len({(r.headers["webhook-id"], r.headers["webhook-signature"]) for r in receiver.received}) == 60
    assert sum(_verifies(first, r) for r in receiver.received) == 30
    assert Delivery.objects.filter(status=Delivery.Status.SUCCEEDED, attempt_count=1).count() == 60


def _send_until_none_due() -> None:
    try:
        while deliveries_send():
            pass
    finally:
        connection.close()


def _verifies(endpoint, received) -> bool:
    try:
        Webhook(endpoint.secret).verify(received.body, received.headers)
    except WebhookVerificationError:
        return False
    return True


def test_batch_of_a_lost_worker_is_sent_once_its_lease_ends(loopback_allowed, receiver, run_jobs, team):
    # given a delivery claimed by a job whose worker was then lost (nothing sent, nothing logged)
    endpoint_create(url=receiver.url, event_types=["wallet.low_balance"])
    event_record("wallet.low_balance", wallet_open(team=team), team=team)
    assert len(deliveries_claim()) == 1
    # when the queued jobs run while the lease holds
    run_jobs(queues=["webhooks"])
    # then nobody sends it
    assert receiver.received == []
    # and when the lease has ended, the minute's sweep sends it, once
    Delivery.objects.update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))
    webhook_sweep(timestamp=0)
    assert len(receiver.received) == 1
    assert Delivery.objects.get().status == Delivery.Status.SUCCEEDED


def test_deliveries_that_waited_on_a_disabled_endpoint_go_out_once_it_is_enabled(
        loopback_allowed, receiver, run_jobs, team):
    # given a disabled endpoint with a pending delivery
    endpoint = endpoint_create(url=receiver.url, event_types=["wallet.low_balance"])
    event_record("wallet.low_balance", wallet_open(team=team), team=team)
    endpoint_update(endpoint=endpoint, url=endpoint.url, event_types=endpoint.event_types, team=None,
                    is_active=False)
    run_jobs(queues=["webhooks"])
    assert receiver.received == [] and Delivery.objects.get().status == Delivery.Status.PENDING
    # when finance enables it again
    endpoint_update(endpoint=endpoint, url=endpoint.url, event_types=endpoint.event_types, team=None,
                    is_active=True)
    run_jobs(queues=["webhooks"])
    # then the delivery that waited is sent, once
    assert len(receiver.received) == 1
    assert Delivery.objects.get().status == Delivery.Status.SUCCEEDED
