"""Renewal on a schedule: the jobs app's periodic hook runs ``renew_subscriptions`` (``jobs.tasks.PERIODIC_COMMANDS``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from invoices.models import Invoice
from jobs import tasks
from jobs.tasks import PERIODIC_COMMANDS
from subscriptions.models import Subscription
from subscriptions.services.lifecycle import subscription_create
from subscriptions.services.plans import plan_create
from teams.models import BillingSettings
from tests.factories import TeamFactory

D = Decimal


def test_a_periodic_run_renews_the_due_subscriptions(run_jobs):
    # given a monthly subscription that started 40 days ago (its first period has ended) and the hourly hook
    assert PERIODIC_COMMANDS["renew_subscriptions"] == "0 * * * *"
    team = TeamFactory(currency="USD")
    BillingSettings.objects.create(team=team, billing_model="postpaid", credit_limit=D(100000))
    plan = plan_create(code="pro-job", name="Pro", tier="professional", currency="USD", fee=D("49.00"))
    sub = subscription_create(team=team, plan=plan, start=timezone.now() - dt.timedelta(days=40))
    first_end = sub.current_period_end

    # when the periodic job of the command runs on a worker
    job_id = tasks.app.tasks["jobs.tasks.command_renew_subscriptions"].defer(timestamp=int(timezone.now().timestamp()))
    run_jobs(queues=["periodic"])

    # then it succeeded, the subscription is in its next period, and a second invoice was issued for it
    assert ProcrastinateJob.objects.get(pk=job_id).status == "succeeded"
    sub = Subscription.objects.get(pk=sub.pk)
    assert sub.current_period_start == first_end and sub.current_period_end > timezone.now()
    assert Invoice.objects.filter(team=team, kind=Invoice.Kind.SUBSCRIPTION, status="pending").count() == 2

    # and a second run bills nothing twice
    tasks.app.tasks["jobs.tasks.command_renew_subscriptions"].defer(timestamp=int(timezone.now().timestamp()) + 1)
    run_jobs(queues=["periodic"])
    assert Invoice.objects.filter(team=team, kind=Invoice.Kind.SUBSCRIPTION).count() == 2
