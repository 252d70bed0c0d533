"""Errors of the teams app: :class:`TeamsError` and its subclasses, each a ``BillingError``.

Each carries its ``code`` and HTTP status (``billing_site.errors`` has the table) and a message a
finance user can act on. The refusals of a team request or an API key are requests the caller got
wrong, so they are also the shared ``InvalidRequest`` (HTTP 400, ``invalid_request``); a currency
the team is not billed in is :class:`CurrencyNotAllowed` (HTTP 422).
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


class CurrencyNotAllowed(TeamsError):
    """Usage or a charge in a currency the team is not billed in (its own, or one of its billing
    settings' ``extra_currencies``). HTTP 422, ``currency_not_allowed``, ``param`` the currency field.
    """

    code = "currency_not_allowed"
    http_status = 422

    def __init__(self, message: str, *, param: str | None = "currency", code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
