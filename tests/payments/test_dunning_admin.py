"""The finance admin of dunning and Stripe events: the policy is edited there, the rest is read-only."""

from __future__ import annotations

import pytest

from payments.models import DunningPolicy
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

POLICY = "/admin/payments/dunningpolicy/"


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    return client


def test_finance_sets_the_retry_days_the_final_action_and_the_wallet_freeze(admin_client):
    # given the policy as it starts (opening the list creates it with the defaults)
    page = admin_client.get(POLICY)
    assert page.status_code == 200
    assert "Retry on days 1, 3, 5, 7; then subscription becomes unpaid" in page.content.decode()
    # when finance changes it
    response = admin_client.post(f"{POLICY}1/change/", {"retry_days": "2,4,8", "final_action": "canceled"})
    # then it is saved (an unticked box: no freezing)
    assert response.status_code == 302
    policy = DunningPolicy.objects.get()
    assert (policy.retry_days, policy.final_action, policy.freeze_wallet) == ([2, 4, 8], "canceled", False)


@pytest.mark.parametrize("days, message", [
    ("5,3", "must increase strictly"),
    ("0,3", "Item 1 in the array did not validate"),
    ("1,x", "Enter a whole number"),
])
def test_a_schedule_that_cannot_be_kept_is_refused_on_the_form(admin_client, days, message):
    admin_client.get(POLICY)
    response = admin_client.post(f"{POLICY}1/change/", {"retry_days": days, "final_action": "unpaid",
                                                         "freeze_wallet": "on"})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert DunningPolicy.objects.get().retry_days == [1, 3, 5, 7]


@pytest.mark.parametrize("model", ["dunning", "dunningattempt", "stripeevent"])
def test_dunnings_their_retries_and_stripe_events_are_read_only(admin_client, model):
    assert admin_client.get(f"/admin/payments/{model}/").status_code == 200
    assert admin_client.get(f"/admin/payments/{model}/add/").status_code == 403


def test_there_is_one_policy_it_is_never_added_twice_nor_deleted(admin_client):
    admin_client.get(POLICY)
    assert admin_client.get(f"{POLICY}add/").status_code == 403
    assert admin_client.get(f"{POLICY}1/delete/").status_code == 403
