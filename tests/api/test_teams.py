"""Teams, members and the API's authentication, through HTTP."""

from __future__ import annotations

import pytest

from teams.services import api_key_revoke

pytestmark = pytest.mark.django_db


def test_teams_list_shows_a_member_only_their_team(member, team_a, team_b):
    # given a member of team A, and team B
    # when they list teams
    response = member.get("/api/v1/teams/")
    # then only team A is there
    assert response.status_code == 200
    assert [t["slug"] for t in response.json()["results"]] == ["team-a"]


def test_teams_list_shows_finance_every_team(finance, team_a, team_b):
    response = finance.get("/api/v1/teams/")
    assert [t["slug"] for t in response.json()["results"]] == ["team-a", "team-b"]


def test_team_detail_of_another_team_answers_404(member, team_b):
    response = member.get(f"/api/v1/teams/{team_b.pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_team_members_lists_usernames_and_roles(member, manager_user, member_user, team_a):
    response = member.get(f"/api/v1/teams/{team_a.pk}/members/")
    assert response.status_code == 200
    assert {(m["username"], m["role"]) for m in response.json()["results"]} == {
        ("max-manager", "manager"), ("mia-member", "member"),
    }


def test_api_without_credentials_answers_401_in_the_error_shape(anonymous, team_a):
    response = anonymous.get("/api/v1/teams/")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert "Api-Key" in response["WWW-Authenticate"]


def test_api_with_a_wrong_token_answers_401(anonymous, team_a):
    anonymous.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = anonymous.get("/api/v1/teams/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_api_key_revoked_answers_401(key, api_key):
    # given a key that works
    assert key.post("/api/v1/quotes/", {"items": []}, format="json").status_code == 400
    # when finance revokes it
    api_key_revoke(api_key=api_key)
    # then it is refused
    response = key.post("/api/v1/quotes/", {"items": []}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or revoked API key."


def test_api_key_may_not_read_teams(key, team_a):
    response = key.get("/api/v1/teams/")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_api_key_is_stored_hashed_with_its_prefix_shown(api_key):
    assert api_key.raw_key.startswith(api_key.prefix + ".")
    assert api_key.raw_key not in (api_key.key_hash, api_key.prefix)
    assert len(api_key.key_hash) == 64


def test_swagger_ui_is_served_from_own_static_files(anonymous):
    response = anonymous.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower()
    assert "/static/drf_spectacular_sidecar/" in html


def test_schema_is_served_as_openapi_3(anonymous):
    response = anonymous.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")
