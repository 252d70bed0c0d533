"""The webhooks API under /api/v1/: finance registers endpoints (the secret shown once), rotates
secrets, reads deliveries with their attempts and replays them; anybody else gets 403."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from procrastinate.contrib.django.models import ProcrastinateJob
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from teams.services import api_key_create
from tests.api.conftest import _api_settings  # noqa: F401 - the API tests' throttle rates and fresh counters
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory
from wallets.services.wallets import wallet_open
from webhooks.models import Delivery, Endpoint
from webhooks.services import event_record
from webhooks.signing import signature_headers

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhook-endpoints/"
DELIVERIES = "/api/v1/webhook-deliveries/"



def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _in_group(name: str) -> APIClient:
    user = UserFactory(username=f"{name}-user")
    user.groups.add(Group.objects.get_or_create(name=name)[0])
    return _client(user)


@pytest.fixture
def finance():
    return _in_group("finance")


@pytest.fixture
def private_allowed(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    return settings


def test_finance_creates_an_endpoint_and_sees_its_secret_once(finance, private_allowed):
    # given a team
    team = TeamFactory()
    # when finance registers an endpoint for one team's top-ups
    response = finance.post(ENDPOINTS, {"url": "https://10.0.0.7/hooks", "event_types": ["wallet.topped_up"],
                                        "team": team.pk, "description": "ERP"}, format="json")
    # then it is created, and the answer carries the secret that signs its deliveries
    assert response.status_code == 201, response.json()
    body = response.json()
    endpoint = Endpoint.objects.get()
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert (body["url"], body["event_types"], body["team"], body["is_active"]) == (
        "https://10.0.0.7/hooks", ["wallet.topped_up"], team.pk, True)
    # and no later read shows the secret
    for page in (finance.get(ENDPOINTS), finance.get(f"{ENDPOINTS}{endpoint.pk}/")):
        assert page.status_code == 200 and endpoint.secret not in page.content.decode()


def test_a_url_the_ssrf_guard_refuses_is_a_422_naming_url(finance):
    # when finance registers an endpoint on a private address, or over plain http
    for url in ("https://10.0.0.7/hooks", "https://169.254.169.254/latest", "http://example.com/hooks",
                "not a url", "https://exa mple.com/"):
        response = finance.post(ENDPOINTS, {"url": url, "event_types": ["invoice.paid"]}, format="json")
        # then it is refused naming the url (well-formed, but where it points is refused), nothing written
        assert response.status_code == 422, response.json()
        assert response.json()["error"]["param"] == "url"
        assert response.json()["error"]["code"] == "endpoint_url_refused"
    assert not Endpoint.objects.exists()


def test_bad_input_is_a_400_naming_the_field(finance, private_allowed):
    cases = [
        ({"url": "https://10.0.0.7/", "event_types": ["invoice.unknown"]}, "event_types"),
        ({"url": "https://10.0.0.7/", "event_types": []}, "event_types"),
        ({"url": "https://10.0.0.7/", "event_types": ["invoice.paid"], "secret": "whsec_mine"}, "secret"),
        ({"url": "https://10.0.0.7/", "event_types": ["invoice.paid"], "team": "1.5"}, "team"),
        ({"url": 42, "event_types": ["invoice.paid"]}, "url"),
    ]
    for data, param in cases:
        response = finance.post(ENDPOINTS, data, format="json")
        assert response.status_code == 400, (data, response.json())
        assert response.json()["error"]["param"].split("[")[0] == param  # event_types[0]: the item


def test_finance_changes_rotates_and_deletes_an_endpoint(finance, private_allowed):
    # given an endpoint
    created = finance.post(ENDPOINTS, {"url": "https://10.0.0.7/a", "event_types": ["invoice.paid"]},
                           format="json").json()
    url = f"{ENDPOINTS}{created['id']}/"
    # when finance changes its event types only (PATCH), the rest stays
    response = finance.patch(url, {"event_types": ["invoice.paid", "invoice.overdue"]}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["url"] == "https://10.0.0.7/a" and "secret" not in response.json()
    assert Endpoint.objects.get().event_types == ["invoice.paid", "invoice.overdue"]
    # and a PUT replaces it whole, disabled
    response = finance.put(url, {"url": "https://10.0.0.8/b", "event_types": ["invoice.paid"], "is_active": False},
                           format="json")
    assert response.status_code == 200 and response.json()["is_active"] is False
    # when it rotates the secret, the answer shows the new one, which now signs
    rotated = finance.post(f"{url}rotate-secret/")
    assert rotated.status_code == 200
    secret = rotated.json()["secret"]
    assert secret != created["secret"] and Endpoint.objects.get().secret == secret
    # when it deletes the endpoint, it is gone
    assert finance.delete(url).status_code == 204
    assert not Endpoint.objects.exists()
    assert finance.get(url).status_code == 404


def test_finance_lists_deliveries_with_attempts_and_replays_one(finance, private_allowed):
    # given two endpoints and an event delivered to both
    team = TeamFactory()
    first = finance.post(ENDPOINTS, {"url": "https://10.0.0.7/a", "event_types": ["wallet.low_balance"]},
                         format="json").json()
    finance.post(ENDPOINTS, {"url": "https://10.0.0.7/b", "event_types": ["wallet.low_balance"]}, format="json")
    event = event_record("wallet.low_balance", wallet_open(team=team), team=team)
    # when finance lists the first endpoint's deliveries
    response = finance.get(DELIVERIES, {"endpoint": first["id"]})
    # then it sees the one delivery with its event, as sent
    assert response.status_code == 200, response.json()
    [delivery] = response.json()["results"]
    assert delivery["endpoint"] == first["id"] and delivery["status"] == "pending"
    assert delivery["event"]["webhook_id"] == event.webhook_id and delivery["event"]["type"] == "wallet.low_balance"
    assert finance.get(DELIVERIES, {"status": "succeeded"}).json()["results"] == []
    # and when it replays it, a job is queued and the delivery is due now, with its attempts listed
    jobs = ProcrastinateJob.objects.filter(task_name="webhooks.deliver").count()
    replayed = finance.post(f"{DELIVERIES}{delivery['id']}/replay/")
    assert replayed.status_code == 202, replayed.json()
    assert replayed.json()["status"] == "pending" and replayed.json()["attempts"] == []
    assert ProcrastinateJob.objects.filter(task_name="webhooks.deliver").count() == jobs + 1
    detail = finance.get(f"{DELIVERIES}{delivery['id']}/")
    assert detail.status_code == 200 and detail.json()["attempts"] == []
    # and a filter that is not a choice is a 400 naming it
    assert finance.get(DELIVERIES, {"status": "lost"}).json()["error"]["param"] == "status"


def test_only_finance_may_use_the_webhooks_api(finance, private_allowed):
    # given an endpoint with a delivery, and callers of every other kind
    team = TeamFactory()
    created = finance.post(ENDPOINTS, {"url": "https://10.0.0.7/a", "event_types": ["wallet.low_balance"]},
                           format="json").json()
    event_record("wallet.low_balance", wallet_open(team=team), team=team)
    delivery = Delivery.objects.get()
    auditor = _in_group("auditor")
    member = _client(TeamMembershipFactory(team=team).user)
    key = APIClient()
    key.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(team=team, name='k').raw_key}")
    # when they read or write, every call is refused with 403, and the secret never shows
    calls = [("get", ENDPOINTS), ("post", ENDPOINTS), ("get", f"{ENDPOINTS}{created['id']}/"),
             ("delete", f"{ENDPOINTS}{created['id']}/"), ("post", f"{ENDPOINTS}{created['id']}/rotate-secret/"),
             ("get", DELIVERIES), ("get", f"{DELIVERIES}{delivery.pk}/"), ("post", f"{DELIVERIES}{delivery.pk}/replay/")]
    for client in (auditor, member, key):
        for method, url in calls:
            response = getattr(client, method)(url, {"url": "https://10.0.0.9/", "event_types": ["invoice.paid"]}
                                               if method == "post" else None, format="json")
            assert response.status_code == 403, (method, url, response.content)
            assert created["secret"] not in response.content.decode()
    # and anonymous callers are 401
    assert APIClient().get(ENDPOINTS).status_code == 401
    assert Endpoint.objects.get().secret == created["secret"]


def test_signature_of_a_rotated_secret_verifies(finance, private_allowed):
    # the secret shown on rotation is a Standard Webhooks secret (it signs and verifies)
    created = finance.post(ENDPOINTS, {"url": "https://10.0.0.7/a", "event_types": ["invoice.paid"]},
                           format="json").json()
    secret = finance.post(f"{ENDPOINTS}{created['id']}/rotate-secret/").json()["secret"]


    headers = signature_headers(secret=secret, webhook_id="msg_1", body="{}", at=dt.datetime.now(dt.UTC))
    assert Webhook(secret).verify("{}", headers) == {}
