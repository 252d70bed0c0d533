"""Errors of the teams app: :class:`TeamsError` and its subclasses, each a ``BillingError``.

Each carries its ``code`` and HTTP status (``billing_site.errors`` has the table) and a message a
finance user can act on. Both refusals are requests the caller got wrong, so they are also the
shared ``InvalidRequest`` (HTTP 400, ``invalid_request``).
"""

from __future__ import annotations

from billing_site.errors import BillingError, InvalidRequest


class TeamsError(BillingError):
    """Base class: a teams operation that was refused. Nothing was written when it is raised."""

    code = "teams_error"
    http_status = 400


class InvalidTeamRequest(TeamsError, InvalidRequest):
    """Input about a team that cannot be used, such as an unknown billing settings field (``param``)."""

    code = "invalid_request"
    http_status = 400


class InvalidApiKeyRequest(TeamsError, InvalidRequest):
    """An API key that cannot be created: no name saying what uses it, or an inactive team."""

    code = "invalid_request"
    http_status = 400
