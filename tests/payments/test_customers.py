"""The team's Stripe customer: created on first need, once, even under concurrent requests."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from payments.errors import PaymentsNotConfigured
from payments.services.customers import customer_ensure
from payments.stripe_client import stripe_client
from teams.models import BillingSettings
from tests.factories import TeamFactory


def test_the_first_need_creates_the_customer_with_the_teams_name_email_and_id(db, stripe_settings):
    # given a team with a billing address and no customer yet
    team = TeamFactory(name="Voice agents")
    BillingSettings.objects.create(team=team, notify_emails="finance@voice.example, ops@voice.example")
    # when a customer is needed
    customer_id = customer_ensure(team=team)
    # then Stripe has it with the team's name, first billing address and id, and the team keeps its id
    customer = stripe_client().v1.customers.retrieve(customer_id)
    assert (customer.name, customer.email, customer.metadata["team_id"]) == (
        "Voice agents", "finance@voice.example", str(team.pk))
    assert BillingSettings.objects.get(team=team).stripe_customer_id == customer_id
    # and a second need finds the same customer
    assert customer_ensure(team=team) == customer_id


def test_a_team_without_billing_settings_gets_them_with_its_customer(db, stripe_settings):
    team = TeamFactory()
    customer_id = customer_ensure(team=team)
    assert BillingSettings.objects.get(team=team).stripe_customer_id == customer_id


def test_without_stripe_no_customer_is_made(db):
    team = TeamFactory()
    with pytest.raises(PaymentsNotConfigured):
        customer_ensure(team=team)
    assert not BillingSettings.objects.filter(team=team).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_create_one_customer(stripe_settings):
    # given a team without a customer, and 8 requests that need one at the same moment
    team = TeamFactory(name=f"Concurrent {uuid.uuid4().hex}")  # localstripe outlives the test database's ids
    barrier = threading.Barrier(8)
    results, errors = [], []

    def need_customer():
        try:
            barrier.wait()
            results.append(customer_ensure(team=team))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=need_customer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every request got the same customer, the only one Stripe has for the team
    assert errors == []
    assert len(set(results)) == 1
    assert BillingSettings.objects.get(team=team).stripe_customer_id == results[0]
    named = [c for c in stripe_client().v1.customers.list(params={"limit": 100}).auto_paging_iter()
             if c.name == team.name]
    assert [c.id for c in named] == results[:1], [(c.id, c.name, c.created) for c in named]
