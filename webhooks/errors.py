"""Errors of the webhooks app: :class:`WebhookError` and its subclasses, each a ``BillingError``.

Each carries its ``code`` and HTTP status (``billing_site.errors`` has the table).
"""

from __future__ import annotations

from billing_site.errors import BillingError


class WebhookError(BillingError):
    """Base class: a webhook operation that was refused. Nothing was written when it is raised."""

    code = "webhook_error"
    http_status = 400


class EndpointUrlRefused(WebhookError):
    """An endpoint URL the SSRF guard refuses (not https, no host, a private, loopback or link-local
    address, a host that does not resolve). ``param`` is ``url``. HTTP 422: the URL is well-formed
    (a 400 is what the schema states); where it points is what is refused (docs/api.md, "400 or 422")."""

    code = "endpoint_url_refused"
    http_status = 422

    def __init__(self, message: str, *, param: str | None = "url", code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)


class UnknownEventType(WebhookError):
    """An event type that is not one of ``webhooks.models.EVENT_TYPES``. HTTP 400."""

    code = "unknown_event_type"
    http_status = 400

    def __init__(self, message: str, *, param: str | None = "event_types", code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
