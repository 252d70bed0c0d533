"""Who is calling the API (the *principal*).

* a person, with ``Authorization: Token <key>`` (DRF authtoken, ``manage.py drf_create_token``) or
  the admin session;
* a service, with ``Authorization: Api-Key <prefix>.<secret>`` (``teams.models.ApiKey``): it acts
  for its team only, and only on the endpoints that say so (``key_actions`` on the view).
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from teams.services import api_key_authenticate


class ApiKeyUser:
    """``request.user`` for a call made with a team API key: authenticated, not a person.

    ``pk`` is ``None`` (no row in the users table): selectors that take a person are never given
    it; ``billing_site.api.scoping.visible_team_ids`` answers the key's team instead.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key) -> None:
        self.api_key = api_key
        self.team = api_key.team
        self.username = f"api-key:{api_key.prefix}"

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm, obj=None) -> bool:
        return False


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Api-Key <prefix>.<secret>``: a team's service key (``teams.models.ApiKey``)."""

    keyword = "Api-Key"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Api-Key <key>', with no spaces in the key.")
        api_key = api_key_authenticate(raw_key=parts[1].decode("ascii", "replace"))
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyUser(api_key), api_key

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api", Token realm="api"'


def is_api_key(request) -> bool:
    return isinstance(getattr(request, "user", None), ApiKeyUser)
