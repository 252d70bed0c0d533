"""The API's rate limits, per principal (a person or a team key)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

from billing_site.api.auth import is_api_key


class PrincipalThrottle(SimpleRateThrottle):
    """Requests per principal (a person or a team key), ``settings.API_THROTTLE_RATES["principal"]``.

    Rates are read from the settings on every request (not frozen at import) so they can differ
    per deployment and per test. Counters live in the default cache, which every worker must share
    (``CACHE_URL``; ``billing_site.checks`` refuses a per-process cache with several workers).
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
        """Count the request in its principal's window; refuse it past ``num_requests`` per window.

        The window opens with the principal's first request and lasts the rate's duration. The
        count is one atomic ``incr`` in the shared cache (Redis: INCR), so requests served at the
        same moment by several workers are each counted: a read-modify-write of a request history
        would lose some of them and let more than the rate through.
        """
        if not self.applies(request, view):
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        opened_key, count_key = f"{self.key}:opened", f"{self.key}:count"
        # The window's opening time is added first, so it never outlives its count.
        self.cache.add(opened_key, self.now, self.duration)
        self.cache.add(count_key, 0, self.duration)
        try:
            count = self.cache.incr(count_key)
        except ValueError:  # the window closed between add() and incr(): this request opens the next
            self.cache.add(count_key, 0, self.duration)
            count = self.cache.incr(count_key)
        if count <= self.num_requests:
            return True
        opened = self.cache.get(opened_key, self.now)
        self._wait = max(1.0, opened + self.duration - self.now)
        return False

    def wait(self):
        """Seconds until the principal's window closes (``Retry-After``)."""
        return getattr(self, "_wait", None)


class MoneyThrottle(PrincipalThrottle):
    """The stricter rate for calls that move money or write usage (the view's ``money_actions``)."""

    scope = "money"

    def applies(self, request, view) -> bool:
        action = getattr(view, "action", None) or request.method.lower()
        return request.method not in SAFE_METHODS and action in getattr(view, "money_actions", ())
