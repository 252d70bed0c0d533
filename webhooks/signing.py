"""Standard Webhooks signatures (https://www.standardwebhooks.com/, the ``standardwebhooks`` package).

Each request carries ``webhook-id`` (the event's id, the same on every attempt), ``webhook-timestamp``
(Unix seconds of this attempt) and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256, keyed with
the endpoint's secret, of ``"{id}.{timestamp}.{body}"``). Receivers verify with any Standard
Webhooks library, e.g. ``standardwebhooks.Webhook(secret).verify(body, headers)``.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets

from standardwebhooks import Webhook

#: The prefix of a Standard Webhooks secret; the rest is base64 of the key's bytes.
SECRET_PREFIX = "whsec_"


def secret_generate() -> str:
    """A new endpoint secret: ``whsec_`` + base64 of 24 random bytes (192 bits), as Svix issues them."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature_headers(*, secret: str, webhook_id: str, body: str, at: dt.datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (the exact text sent) sent at ``at`` (aware)."""
    at = at.astimezone(dt.timezone.utc)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }
