"""Finance creates a team API key in the admin, sees it once, and revokes it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from teams.models import ApiKey
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    """A finance staff user: the group's permissions come from the data migrations."""
    user = UserFactory(username="fin", is_staff=True)
    user.groups.add(Group.objects.get(name="finance"))
    client.force_login(user)
    return client


def test_api_key_created_in_the_admin_is_shown_once_and_works(admin_client, team_a):
    # when finance adds a key for team A
    response = admin_client.post("/admin/teams/apikey/add/", {"team": team_a.pk, "name": "voice agent"},
                                 follow=True)
    # then the page shows the full key once, and only its hash is stored
    key = ApiKey.objects.get()
    page = response.content.decode()
    raw = next(word for word in page.split() if word.startswith(key.prefix + "."))
    assert key.key_hash != raw and raw not in key.key_hash
    assert raw not in admin_client.get(f"/admin/teams/apikey/{key.pk}/change/").content.decode()
    # and the key authenticates for its team
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert api.post("/api/v1/quotes/", {"items": []}, format="json").status_code == 400


def test_api_key_revoked_by_the_admin_action_stops_working(admin_client, api_key):
    admin_client.post("/admin/teams/apikey/", {"action": "revoke_keys", "_selected_action": [api_key.pk]})
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key.raw_key}")
    assert api.post("/api/v1/quotes/", {"items": []}, format="json").status_code == 401


def test_api_key_admin_is_read_only_for_auditors(client, api_key):
    user = UserFactory(username="aud", is_staff=True)
    user.groups.add(Group.objects.get(name="auditor"))
    client.force_login(user)
    assert client.get("/admin/teams/apikey/").status_code == 200
    assert client.get("/admin/teams/apikey/add/").status_code == 403
