"""Who may call which endpoint, before any object is looked up."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from billing_site.api.auth import is_api_key
from billing_site.api.scoping import is_finance


class BillingAccess(BasePermission):
    """Who may call what, before any object is looked up.

    * Anonymous callers: nothing (401).
    * Team keys: only the view's ``key_actions`` (usage, batches, quotes, charges).
    * Reads (GET): every person; ``get_queryset`` limits what they see.
    * Writes: finance, plus the view's ``member_actions`` for members (usage, charges, quotes),
      which then check the team with ``billing_site.api.scoping.team_for_write``.
    """

    message = "You may not do this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        action = getattr(view, "action", None) or request.method.lower()
        if is_api_key(request):
            if action in getattr(view, "key_actions", ()):
                return True
            self.message = "A team API key may only record usage, batches, quotes and charges."
            return False
        if not user.is_active:
            return False
        if request.method in SAFE_METHODS or action in getattr(view, "member_actions", ()):
            return True
        if is_finance(request):
            return True
        self.message = "Only finance may do this."
        return False
