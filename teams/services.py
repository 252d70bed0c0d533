"""Writes of the teams app: a team's billing settings, and team API keys for services.

An API key reads ``<prefix>.<secret>`` and is sent as ``Authorization: Api-Key <prefix>.<secret>``
(``billing_site.api.auth``). Only its SHA-256 is stored; a key is revoked, never deleted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from teams.errors import InvalidApiKeyRequest, InvalidTeamRequest
from teams.models import ApiKey, BillingSettings, Team

#: Refresh ``ApiKey.last_used_at`` at most this often: one write a minute, not one per request.
API_KEY_TOUCH_INTERVAL = dt.timedelta(minutes=1)


def _api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, team: Team, name: str, created_by=None) -> ApiKey:
    """Create a team API key; the full key is on the returned model as ``raw_key``, shown once.

    The key reads ``<prefix>.<secret>``: an 8-hex-digit prefix (stored, shown in the admin) and a
    43-character URL-safe secret (256 bits). Only the SHA-256 of the whole key is stored.
    Raises ``InvalidApiKeyRequest`` for an empty name or an inactive team.
    """
    if not name or not name.strip():
        raise InvalidApiKeyRequest("an API key needs a name saying what uses it")
    if not team.is_active:
        raise InvalidApiKeyRequest(f"team {team.slug!r} is inactive; it gets no new API keys")
    for _attempt in range(5):
        prefix = secrets.token_hex(4)
        raw_key = f"{prefix}.{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    team=team, name=name.strip(), prefix=prefix, key_hash=_api_key_hash(raw_key), created_by=created_by
                )
        except IntegrityError:  # a prefix collision (1 in 4 billion): draw again
            continue
        key.raw_key = raw_key
        return key
    raise RuntimeError("could not draw a unique API key prefix")


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke ``api_key`` (sets ``revoked_at``; revoking twice keeps the first time). Returns it re-read."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key whose full text is ``raw_key`` (with its team), or ``None``.

    Looks the key up by its SHA-256 (unique index) and compares in constant time; refreshes
    ``last_used_at`` at most once per ``API_KEY_TOUCH_INTERVAL``.
    """
    if not isinstance(raw_key, str) or "." not in raw_key or len(raw_key) > 200:
        return None
    digest = _api_key_hash(raw_key)
    key = ApiKey.objects.select_related("team").filter(key_hash=digest, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, digest) or not key.team.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > API_KEY_TOUCH_INTERVAL:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def billing_settings_update(*, team: Team, **changes: Any) -> BillingSettings:
    """Create or change a team's billing settings; fields as on :class:`BillingSettings`.

    The one write of them (the billing model, limits, warning, e-mails), from the admin, the API
    and the commands. Raises :class:`InvalidTeamRequest` (``invalid_request``, ``param`` the first
    unknown field) for an unknown field and ``ValidationError`` for invalid values (bad e-mail
    address, threshold out of range).
    """
    allowed = {
        # The Stripe customer id is the payments app's to set (payments.services.customers.customer_ensure).
        f.name for f in BillingSettings._meta.concrete_fields
        if f.name not in {"id", "team", "updated_at", "stripe_customer_id"}
    }
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidTeamRequest(f"unknown billing settings: {', '.join(sorted(unknown))}", param=sorted(unknown)[0])
    with transaction.atomic():
        billing = BillingSettings.objects.select_for_update().filter(team=team).first() or BillingSettings(team=team)
        for name, value in changes.items():
            setattr(billing, name, value)
        billing.full_clean(exclude=["team"] if billing._state.adding else None)
        billing.save()
    team.billing_settings = billing
    return billing
