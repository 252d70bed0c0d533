"""The finance admin of webhooks: an endpoint's secret is shown once, refusals are form errors, deliveries replay."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from procrastinate.contrib.django.models import ProcrastinateJob

from teams.groups import billing_groups_sync
from teams.selectors import AUDITOR_GROUP, FINANCE_GROUP
from tests.factories import TeamFactory, UserFactory
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open
from webhooks.models import Delivery, Endpoint
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db


def _client(group_name: str) -> Client:
    from django.contrib.auth.models import Group

    billing_groups_sync()
    user = UserFactory(username=f"{group_name}-user", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def finance():
    return _client(FINANCE_GROUP)


@pytest.fixture
def auditor():
    return _client(AUDITOR_GROUP)


def test_new_endpoint_secret_is_shown_once_and_never_again(finance, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    # when finance adds an endpoint
    response = finance.post(reverse("admin:webhooks_endpoint_add"), {
        "url": "https://10.0.0.7/hooks", "description": "ERP", "event_types": ["invoice.issued", "invoice.paid"],
        "is_active": "on",
    })
    # then the response shows its secret, once
    assert response.status_code == 200
    endpoint = Endpoint.objects.get()
    assert endpoint.event_types == ["invoice.issued", "invoice.paid"]
    assert response.content.decode().count(endpoint.secret) == 1
    # and no other page shows it
    for url in (reverse("admin:webhooks_endpoint_changelist"),
                reverse("admin:webhooks_endpoint_change", args=[endpoint.pk])):
        page = finance.get(url)
        assert page.status_code == 200 and endpoint.secret not in page.content.decode()
        assert endpoint.secret.removeprefix("whsec_") not in page.content.decode()


def test_private_url_is_a_form_error_naming_the_address(finance, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    response = finance.post(reverse("admin:webhooks_endpoint_add"), {
        "url": "https://169.254.169.254/latest", "event_types": ["invoice.issued"], "is_active": "on",
    })
    assert response.status_code == 200
    assert "169.254.169.254" in str(response.context["adminform"].form.errors["url"])
    assert not Endpoint.objects.exists()


def test_rotating_shows_the_new_secret_once(finance, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    endpoint = endpoint_create(url="https://10.0.0.7/hooks", event_types=["invoice.issued"])
    response = finance.post(reverse("admin:webhooks_endpoint_changelist"),
                            {"action": "rotate_secret", "_selected_action": [endpoint.pk]})
    rotated = Endpoint.objects.get()
    assert rotated.secret != endpoint.secret
    assert response.content.decode().count(rotated.secret) == 1


def test_finance_replays_a_delivery_and_auditors_may_not(finance, auditor, settings):
    # given a delivered-or-not delivery
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    endpoint_create(url="https://10.0.0.7/hooks", event_types=["wallet.topped_up"])
    wallet_top_up(wallet=wallet_open(team=TeamFactory()), amount=Decimal(5), idempotency_key="t1")
    delivery = Delivery.objects.get()
    token = delivery.job_token
    jobs_before = ProcrastinateJob.objects.filter(task_name="webhooks.deliver").count()
    changelist = reverse("admin:webhooks_delivery_changelist")
    # when an auditor tries to replay it, nothing happens
    auditor.post(changelist, {"action": "replay", "_selected_action": [delivery.pk]})
    delivery.refresh_from_db()
    assert delivery.job_token == token
    # when finance replays it
    response = finance.post(changelist, {"action": "replay", "_selected_action": [delivery.pk]}, follow=True)
    # then it has a new job, and the page says so
    delivery.refresh_from_db()
    assert delivery.job_token != token and delivery.status == Delivery.Status.PENDING
    assert ProcrastinateJob.objects.filter(task_name="webhooks.deliver").count() == jobs_before + 1
    assert "1 deliveries queued" in response.content.decode()
    # and the delivery's page lists its attempts' log
    page = finance.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    event_page = finance.get(reverse("admin:webhooks_event_change", args=[delivery.event_id]))
    assert event_page.status_code == 200 and "wallet.topped_up" in event_page.content.decode()
