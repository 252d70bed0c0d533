"""Dunning against localstripe: a declined card, the retries and reminders on finance's days (time-machine
moves the clock), the final action, and a later payment that reverses it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command

from invoices.models import Invoice
from invoices.services.lifecycle import invoice_mark_paid
from payments.models import Dunning, DunningAttempt, DunningPolicy, Payment
from payments.services.collection import invoice_collect, invoice_payment_attempt
from payments.services.dunning import dunning_policy_get
from subscriptions.models import Subscription
from subscriptions.services.lifecycle import subscription_create
from subscriptions.services.plans import plan_create
from tests.jobs.mail import queued_mails
from wallets.errors import WalletFrozen
from wallets.models import Wallet
from wallets.services.charges import wallet_charge
from wallets.services.wallets import wallet_open

from .conftest import DECLINED_ON_CHARGE, VISA, card_add, paying_team

D = Decimal
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def days(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def reminders() -> list[dict]:
    return [m for m in queued_mails() if m["subject"].startswith("Payment failed")]


@pytest.fixture
def plan(db):
    return plan_create(code="pro-monthly", name="Professional", tier="professional", currency="USD", fee=D("49.00"))


@pytest.fixture
def declined(stripe_settings, plan):
    """At T0: a postpaid team with a card that is declined when charged, subscribed to the 49.00 USD plan;
    its first invoice is issued and its automatic collection fails (the job's service, run here)."""
    with time_machine.travel(T0, tick=False):
        team = paying_team(card=DECLINED_ON_CHARGE, billing_model="postpaid", credit_limit=D(100000))
        wallet = wallet_open(team=team)
        subscription = subscription_create(team=team, plan=plan)
        invoice = subscription.periods.get().invoice
        payment = invoice_collect(invoice_id=invoice.pk)
    return {"team": team, "wallet": wallet, "subscription": subscription, "invoice": invoice, "payment": payment}


def run_dunning_at(when: dt.datetime) -> None:
    with time_machine.travel(when, tick=False):
        call_command("run_dunning")


def test_a_declined_card_starts_dunning_past_due_with_a_reminder(declined):
    invoice, subscription = declined["invoice"], declined["subscription"]
    assert declined["payment"].status == Payment.Status.FAILED
    dunning = Dunning.objects.get(invoice=invoice)
    assert (dunning.status, dunning.retry_days, dunning.next_attempt_at) == ("active", [1, 3, 5, 7], days(1))
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PAST_DUE
    (mail,) = reminders()
    assert mail["to"] == ["billing@example.com"]
    assert invoice.number in mail["subject"] and "49.00 USD" in mail["subject"]
    assert "Your card was declined" in mail["body"]
    assert "03 March 2026" in mail["body"]  # the next try
    assert "bank transfer" in mail["body"]  # how to pay


def test_retries_and_reminders_follow_the_schedule_then_the_final_action(declined):
    invoice, subscription, wallet = declined["invoice"], declined["subscription"], declined["wallet"]
    dunning = Dunning.objects.get(invoice=invoice)
    # Between the retry days nothing happens; on each day one retry, one reminder naming the next day.
    expected_next = {1: "05 March 2026", 3: "07 March 2026", 5: "09 March 2026"}
    for day in (1, 3, 5):
        run_dunning_at(days(day) - dt.timedelta(hours=1))
        assert DunningAttempt.objects.filter(dunning=dunning).count() == [1, 3, 5].index(day)
        run_dunning_at(days(day) + dt.timedelta(minutes=30))
        run_dunning_at(days(day) + dt.timedelta(hours=2))  # the same day again: no second retry
        attempts = list(DunningAttempt.objects.filter(dunning=dunning))
        assert [a.status for a in attempts] == ["failed"] * len(attempts)
        assert len(attempts) == [1, 3, 5].index(day) + 1
        assert attempts[-1].failure_code == "card_declined"
        assert attempts[-1].payment.status == Payment.Status.FAILED
        assert len(reminders()) == len(attempts) + 1
        assert expected_next[day] in reminders()[-1]["body"]
        subscription.refresh_from_db()
        assert subscription.status == Subscription.Status.PAST_DUE
    # Each retry was its own payment, with its own idempotency key.
    keys = list(Payment.objects.filter(invoice=invoice).order_by("attempt").values_list("idempotency_key", flat=True))
    assert keys == [f"invoice-{invoice.pk}-attempt-{n}" for n in (1, 2, 3, 4)]
    # Day 7: the last retry fails, and the final action follows.
    run_dunning_at(days(7) + dt.timedelta(minutes=30))
    dunning.refresh_from_db()
    subscription.refresh_from_db()
    wallet.refresh_from_db()
    invoice.refresh_from_db()
    assert dunning.status == Dunning.Status.EXHAUSTED
    assert dunning.attempts == 4
    assert subscription.status == Subscription.Status.UNPAID
    assert wallet.status == Wallet.Status.FROZEN
    with pytest.raises(WalletFrozen, match="frozen"):
        wallet_charge(wallet=wallet, amount=D("1.00"), idempotency_key="after-dunning")
    assert invoice.status != Invoice.Status.PAID
    assert len(reminders()) == 5
    assert "last attempt" in reminders()[-1]["body"] and "unpaid" in reminders()[-1]["body"]
    # Later days retry nothing more.
    run_dunning_at(days(9))
    assert DunningAttempt.objects.filter(dunning=dunning).count() == 4


def test_a_payment_arriving_after_the_final_action_reverses_it(declined):
    invoice, subscription, wallet = declined["invoice"], declined["subscription"], declined["wallet"]
    for day in (1, 3, 5, 7):
        run_dunning_at(days(day) + dt.timedelta(minutes=30))
    assert Dunning.objects.get(invoice=invoice).status == Dunning.Status.EXHAUSTED
    # when the team adds a working card and the invoice is charged again (finance's "charge now")
    with time_machine.travel(days(10), tick=False):
        card_add(declined["team"], VISA)
        payment = invoice_payment_attempt(invoice=invoice)
    # then the invoice is paid, the subscription active again and the wallet unfrozen
    assert payment.status == Payment.Status.SUCCEEDED
    invoice.refresh_from_db()
    subscription.refresh_from_db()
    wallet.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert subscription.status == Subscription.Status.ACTIVE
    assert wallet.status == Wallet.Status.ACTIVE
    dunning = Dunning.objects.get(invoice=invoice)
    assert (dunning.status, dunning.recovered_by) == ("recovered", payment.reference)


def test_a_retry_that_succeeds_ends_dunning_and_pays_the_invoice(declined):
    invoice, subscription = declined["invoice"], declined["subscription"]
    run_dunning_at(days(1) + dt.timedelta(minutes=5))
    with time_machine.travel(days(2), tick=False):
        card_add(declined["team"], VISA)  # the team replaces its card
    run_dunning_at(days(3) + dt.timedelta(minutes=5))
    invoice.refresh_from_db()
    subscription.refresh_from_db()
    dunning = Dunning.objects.get(invoice=invoice)
    assert invoice.status == Invoice.Status.PAID
    assert subscription.status == Subscription.Status.ACTIVE
    assert dunning.status == Dunning.Status.RECOVERED
    assert [a.status for a in dunning.retries.all()] == ["failed", "succeeded"]
    assert len(reminders()) == 2  # the failure and retry 1; none after the payment
    run_dunning_at(days(5) + dt.timedelta(minutes=5))
    assert dunning.retries.count() == 2


def test_an_invoice_marked_paid_by_hand_ends_dunning_at_the_next_run(declined):
    invoice, subscription, wallet = declined["invoice"], declined["subscription"], declined["wallet"]
    for day in (1, 3, 5, 7):
        run_dunning_at(days(day) + dt.timedelta(minutes=30))
    with time_machine.travel(days(8), tick=False):
        invoice_mark_paid(invoice=invoice, payment_reference="bank transfer 2026-03-10")
    run_dunning_at(days(8) + dt.timedelta(hours=1))
    subscription.refresh_from_db()
    wallet.refresh_from_db()
    dunning = Dunning.objects.get(invoice=invoice)
    assert (dunning.status, dunning.recovered_by) == ("recovered", "bank transfer 2026-03-10")
    assert subscription.status == Subscription.Status.ACTIVE
    assert wallet.status == Wallet.Status.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_an_invoice_marked_paid_by_hand_ends_dunning_right_after(stripe_settings, plan, run_jobs):
    # given a subscription past due after a declined card, its wallet frozen by an earlier dunning's policy
    team = paying_team(card=DECLINED_ON_CHARGE, billing_model="postpaid", credit_limit=D(100000))
    subscription = subscription_create(team=team, plan=plan)
    invoice = subscription.periods.get().invoice
    invoice_collect(invoice_id=invoice.pk)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PAST_DUE
    # when finance records a bank transfer, and the jobs that follow run
    invoice_mark_paid(invoice=invoice, payment_reference="bank transfer 42")
    run_jobs(queues=["billing"])
    # then the subscription is active again and the dunning ended, without waiting for run_dunning
    subscription.refresh_from_db()
    dunning = Dunning.objects.get(invoice=invoice)
    assert subscription.status == Subscription.Status.ACTIVE
    assert (dunning.status, dunning.recovered_by) == ("recovered", "bank transfer 42")
    assert not DunningAttempt.objects.exists()


def test_finance_sets_the_schedule_and_a_final_cancellation_without_freezing(stripe_settings, plan):
    # given finance's policy: retry on days 2 and 4, then cancel, wallets left alone
    policy = dunning_policy_get()
    policy.retry_days, policy.final_action, policy.freeze_wallet = [2, 4], DunningPolicy.FinalAction.CANCELED, False
    policy.save()
    with time_machine.travel(T0, tick=False):
        team = paying_team(card=DECLINED_ON_CHARGE, billing_model="postpaid", credit_limit=D(100000))
        wallet = wallet_open(team=team)
        subscription = subscription_create(team=team, plan=plan)
        invoice_collect(invoice_id=subscription.periods.get().invoice_id)
    # when the days pass
    run_dunning_at(days(1) + dt.timedelta(hours=1))
    assert not DunningAttempt.objects.exists()
    run_dunning_at(days(2) + dt.timedelta(hours=1))
    run_dunning_at(days(4) + dt.timedelta(hours=1))
    # then two retries, and the subscription canceled; the wallet stays active
    subscription.refresh_from_db()
    wallet.refresh_from_db()
    assert DunningAttempt.objects.count() == 2
    assert subscription.status == Subscription.Status.CANCELED
    assert wallet.status == Wallet.Status.ACTIVE
    assert "canceled" in reminders()[-1]["body"]


def test_run_dunning_without_stripe_does_nothing(db, capsys):
    call_command("run_dunning")
    assert "not configured" in capsys.readouterr().out


def test_run_dunning_is_the_hourly_periodic_job(db, stripe_settings, capsys):
    from procrastinate.contrib.django import app

    periodic = app.periodic_registry.periodic_tasks[("jobs.tasks.command_run_dunning", "command:run_dunning")]
    assert periodic.cron == "30 * * * *"
    app.tasks["jobs.tasks.command_run_dunning"](timestamp=0)  # what the periodic worker runs
    assert "Dunning: 0 retried" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_make_one_retry(stripe_settings, plan):
    # given a dunning whose first retry is due
    import threading

    from django.db import connection

    from payments.services.dunning_retries import dunnings_run_due

    with time_machine.travel(T0, tick=False):
        team = paying_team(card=DECLINED_ON_CHARGE, billing_model="postpaid", credit_limit=D(100000))
        subscription = subscription_create(team=team, plan=plan)
        invoice_collect(invoice_id=subscription.periods.get().invoice_id)
    start = threading.Barrier(2)

    def run():
        try:
            start.wait()
            dunnings_run_due(at=days(1) + dt.timedelta(minutes=5))
        finally:
            connection.close()

    # when two workers run dunning at the same moment
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then one retry was made, one payment asked of Stripe, one reminder queued for it
    assert DunningAttempt.objects.count() == 1
    assert Payment.objects.filter(invoice=subscription.periods.get().invoice).count() == 2
    assert len(reminders()) == 2
