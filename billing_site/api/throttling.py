"""The API's rate limits, per principal (a person or a team key)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

from billing_site.api.auth import is_api_key


class PrincipalThrottle(SimpleRateThrottle):
    """Requests per principal (a person or a team key), ``settings.API_THROTTLE_RATES["principal"]``.

    Rates are read from the settings on every request (not frozen at import) so they can differ
    per deployment and per test. Counters live in the default cache.
    """

    scope = "principal"

    def __init__(self):  # noqa: D107 - the rate is read per request in get_rate
        pass

    def get_rate(self):
        return settings.API_THROTTLE_RATES.get(self.scope)

    def applies(self, request, view) -> bool:
        return True

    def get_cache_key(self, request, view):
        if is_api_key(request):
            ident = f"key:{request.user.api_key.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"

    def allow_request(self, request, view):
        if not self.applies(request, view):
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class MoneyThrottle(PrincipalThrottle):
    """The stricter rate for calls that move money or write usage (the view's ``money_actions``)."""

    scope = "money"

    def applies(self, request, view) -> bool:
        action = getattr(view, "action", None) or request.method.lower()
        return request.method not in SAFE_METHODS and action in getattr(view, "money_actions", ())
