"""The status history of subscriptions: every move recorded where it is checked, and the MRR of past months read from it."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.db import connection

from subscriptions.errors import SubscriptionTransitionError
from subscriptions.models import SubscriptionStatusChange
from subscriptions.selectors_mrr import mrr_history
from subscriptions.services.lifecycle import subscription_cancel, subscription_create
from subscriptions.services.renewal import subscriptions_renew_due
from subscriptions.services.status import subscription_transition
from teams.models import BillingSettings
from tests.factories import TeamFactory

from .conftest import at

D = Decimal


def _history(sub):
    return [(c.from_status, c.to_status, c.at) for c in SubscriptionStatusChange.objects.filter(subscription=sub)]


def test_each_status_move_is_recorded_at_the_instant_it_took_effect(postpaid_team, pro_plan):
    # given a 14-day trial from 1 March, renewed after its end, then dunned and canceled
    sub = subscription_create(team=postpaid_team, plan=pro_plan, trial=True, trial_days=14, start=at(2024, 3, 1))
    subscriptions_renew_due(at=at(2024, 3, 20))
    subscription_transition(subscription=sub, to_status="past_due", at=at(2024, 3, 22))
    subscription_transition(subscription=sub, to_status="unpaid", at=at(2024, 3, 29))
    subscription_cancel(subscription=sub, at_period_end=False, at=at(2024, 4, 2))

    # then the history has each move, the trial's end at its boundary (not when the renewal ran)
    assert _history(sub) == [
        ("", "trialing", at(2024, 3, 1)),
        ("trialing", "active", at(2024, 3, 15)),
        ("active", "past_due", at(2024, 3, 22)),
        ("past_due", "unpaid", at(2024, 3, 29)),
        ("unpaid", "canceled", at(2024, 4, 2)),
    ]


def test_a_refused_move_records_nothing(postpaid_team, pro_plan):
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 3, 1))
    with pytest.raises(SubscriptionTransitionError):
        subscription_transition(subscription=sub, to_status="unpaid", at=at(2024, 3, 5))
    assert _history(sub) == [("", "active", at(2024, 3, 1))]


def test_past_mrr_points_leave_out_a_subscription_that_was_unpaid_then(postpaid_team, pro_plan):
    # given a 49 USD subscription from 10 January that went unpaid in March and paid again in May
    sub = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 10))
    subscriptions_renew_due(at=at(2024, 3, 1))
    subscription_transition(subscription=sub, to_status="past_due", at=at(2024, 3, 5))
    subscription_transition(subscription=sub, to_status="unpaid", at=at(2024, 3, 20))
    subscriptions_renew_due(at=at(2024, 4, 15))
    subscription_transition(subscription=sub, to_status="active", at=at(2024, 5, 3))
    subscriptions_renew_due(at=at(2024, 6, 15))

    # when the MRR of the first half of 2024 is read
    months = mrr_history(months=6, now=at(2024, 6, 15))["USD"]

    # then the points of April and May (unpaid on their 1st) leave it out: churn in March, new in May
    rows = [(m.month.month, m.start, m.new, m.churn, m.end) for m in months]
    assert rows == [
        (1, D(0), D(49), D(0), D(49)),
        (2, D(49), D(0), D(0), D(49)),
        (3, D(49), D(0), D(-49), D(0)),
        (4, D(0), D(0), D(0), D(0)),
        (5, D(0), D(49), D(0), D(49)),
        (6, D(49), D(0), D(0), D(49)),
    ]


def test_a_trial_point_is_left_out_until_the_trial_converts(postpaid_team, pro_plan):
    # given a trial from 20 January for 20 days, converted on 9 February
    subscription_create(team=postpaid_team, plan=pro_plan, trial=True, trial_days=20, start=at(2024, 1, 20))
    subscriptions_renew_due(at=at(2024, 3, 15))
    months = mrr_history(months=3, now=at(2024, 3, 15))["USD"]
    assert [(m.month.month, m.start, m.new) for m in months] == [(1, D(0), D(0)), (2, D(0), D(49)), (3, D(49), D(0))]


def test_the_migration_backfills_the_history_from_what_is_known(postpaid_team, pro_plan, starter_plan):
    # given subscriptions of each kind whose history is lost (as before it was kept)

    def team():
        t = TeamFactory(currency="USD")
        BillingSettings.objects.create(team=t, billing_model="postpaid", credit_limit=D(100000))
        return t

    plain = subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 10))
    trial = subscription_create(team=team(), plan=pro_plan, trial=True, trial_days=14, start=at(2024, 1, 1))
    converted = subscription_create(team=team(), plan=starter_plan, trial=True, trial_days=5, start=at(2024, 1, 1))
    canceled = subscription_create(team=team(), plan=starter_plan, start=at(2024, 1, 3))
    subscription_cancel(subscription=canceled, at_period_end=False, at=at(2024, 1, 20))
    subscriptions_renew_due(at=at(2024, 1, 7))
    kept = {s.pk: _history(s) for s in (plain, converted, canceled)}
    SubscriptionStatusChange.objects.all().delete()

    # when the migration's backfill runs
    migration = importlib.import_module("subscriptions.migrations.0002_status_history")
    with connection.cursor() as cursor:
        cursor.execute(migration.BACKFILL_SQL)

    # then the history says what the services would have recorded
    for pk, history in kept.items():
        assert _history(pk) == history
    assert _history(trial) == [("", "trialing", at(2024, 1, 1))]
