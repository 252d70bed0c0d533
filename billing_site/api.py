"""The REST API's shared machinery: authentication, scoping, permissions, errors, pagination,
throttles, idempotency, the OpenAPI schema and the router of ``/api/v1/`` (issue 5, docs/api.md).

Who is calling (the *principal*):

* a person, with ``Authorization: Token <key>`` (DRF authtoken, ``manage.py drf_create_token``) or
  the admin session;
* a service, with ``Authorization: Api-Key <prefix>.<secret>`` (``chargeback.models.ApiKey``): it
  acts for its team only, and only on the endpoints that say so (``key_actions`` on the view).

What a principal sees is scoped in ``get_queryset`` through :func:`visible_team_ids`, which uses
``chargeback.selectors.team_list_for_user`` for people: another team's object is simply not found
(404). Writes by members (usage, charges) go only to teams they belong to (:func:`member_team_ids`).

Every error answers ``{"error": {"type", "code", "message", "param"}}`` (:func:`exception_handler`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from django.http import Http404
from django.utils import timezone
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from chargeback import errors as chargeback_errors
from chargeback.models import Team, TeamMembership
from chargeback.periods import PeriodError
from chargeback.selectors import team_list_for_user, user_is_auditor, user_is_finance
from billing_site.idempotency import idempotent_request_run
from billing_site.money import MoneyError
from wallets import errors as wallet_errors

logger = logging.getLogger(__name__)


# --- principals and authentication -------------------------------------------------------------


class ApiKeyUser:
    """``request.user`` for a call made with a team API key: authenticated, not a person.

    ``pk`` is ``None`` (no row in the users table): selectors that take a person are never given
    it; :func:`visible_team_ids` answers the key's team instead.
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
    """``Authorization: Api-Key <prefix>.<secret>``: a team's service key (``chargeback.ApiKey``)."""

    keyword = "Api-Key"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Api-Key <key>', with no spaces in the key.")
        from chargeback.services import api_key_authenticate

        api_key = api_key_authenticate(raw_key=parts[1].decode("ascii", "replace"))
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return ApiKeyUser(api_key), api_key

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api", Token realm="api"'


def is_api_key(request) -> bool:
    return isinstance(getattr(request, "user", None), ApiKeyUser)


def is_finance(request) -> bool:
    """A person in the ``finance`` group (or a superuser); never a key."""
    return not is_api_key(request) and user_is_finance(request.user)


def sees_all_teams(request) -> bool:
    return not is_api_key(request) and (user_is_finance(request.user) or user_is_auditor(request.user))


def visible_team_ids(request) -> set[int] | None:
    """Ids of the teams whose money the caller may read; ``None`` means every team (finance, auditors).

    A key sees its own team; a person, ``chargeback.selectors.team_list_for_user``.
    """
    cached = getattr(request, "_billing_visible_teams", False)
    if cached is not False:
        return cached
    if is_api_key(request):
        ids: set[int] | None = {request.user.team.pk}
    elif sees_all_teams(request):
        ids = None
    else:
        ids = set(team_list_for_user(user=request.user).values_list("pk", flat=True))
    request._billing_visible_teams = ids
    return ids


def member_team_ids(request) -> set[int] | None:
    """Ids of the teams the caller may *write* usage and charges for; ``None`` = any (finance).

    A key: its team. Finance: any team. Anybody else: the teams they are a member of (auditors
    read everything but write nothing).
    """
    if is_api_key(request):
        return {request.user.team.pk}
    if is_finance(request):
        return None
    return set(TeamMembership.objects.filter(user=request.user).values_list("team_id", flat=True))


def scope_by_team(queryset, request, field: str = "team"):
    """Filter ``queryset`` to the caller's visible teams (on ``field``)."""
    ids = visible_team_ids(request)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{field}__in": ids})


def team_for_write(request, team: Team | None, *, param: str = "team") -> Team:
    """The team a write acts for: the key's team, or ``team`` from the body, checked against the caller.

    A member who belongs to exactly one team may leave it out. Another team's id answers 404
    (as if it did not exist), an absent one 400 naming ``param``.
    """
    if is_api_key(request):
        key_team = request.user.team
        if team is not None and team.pk != key_team.pk:
            raise exceptions.NotFound(f"No team {team.pk}.")
        return key_team
    allowed = member_team_ids(request)
    if team is None:
        if allowed is not None and len(allowed) == 1:
            return Team.objects.get(pk=next(iter(allowed)))
        raise exceptions.ValidationError({param: ["This field is required (you belong to several teams or none)."]})
    if allowed is not None and team.pk not in allowed:
        visible = visible_team_ids(request)
        if visible is not None and team.pk not in visible:
            raise exceptions.NotFound(f"No team {team.pk}.")
        raise exceptions.PermissionDenied("Only the team's members and finance write its usage and charges.")
    return team


def team_for_read(request, team: Team | None, *, param: str = "team") -> Team:
    """The team a per-team read is about: ``team``, or the caller's only team. 404 outside the scope."""
    ids = visible_team_ids(request)
    if team is None:
        if ids is not None and len(ids) == 1:
            return Team.objects.get(pk=next(iter(ids)))
        raise exceptions.ValidationError({param: ["This field is required."]})
    if ids is not None and team.pk not in ids:
        raise exceptions.NotFound(f"No team {team.pk}.")
    return team


# --- permissions ------------------------------------------------------------------------------


class BillingAccess(BasePermission):
    """Who may call what, before any object is looked up.

    * Anonymous callers: nothing (401).
    * Team keys: only the view's ``key_actions`` (usage, batches, quotes, charges).
    * Reads (GET): every person; ``get_queryset`` limits what they see.
    * Writes: finance, plus the view's ``member_actions`` for members (usage, charges, quotes),
      which then check the team with :func:`team_for_write`.
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


# --- errors -----------------------------------------------------------------------------------


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is too large."


#: Domain error code → HTTP status (wallets/errors.py's table, chargeback and invoices errors).
STATUS_BY_CODE = {
    "invalid_amount": 400,
    "invalid_request": 400,
    "invalid_usage": 400,
    "invalid_period": 400,
    "insufficient_funds": 402,
    "provider_not_allowed": 403,
    "wallet_frozen": 409,
    "hold_not_open": 409,
    "idempotency_error": 409,
    "stale_allocation_run": 409,
    "invalid_transition": 409,
    "invoice_immutable": 409,
    "duplicate_invoice_number": 409,
    "object_in_use": 409,
    "price_not_found": 422,
    "nothing_to_allocate": 422,
    "rule_configuration_error": 422,
    "mixed_currency": 422,
    "allocation_error": 422,
    "credit_exceeds_invoice": 422,
    "invoice_generation_error": 422,
}

_CHARGEBACK_CODES = [
    (chargeback_errors.IdempotencyError, "idempotency_error"),
    (chargeback_errors.PriceNotFound, "price_not_found"),
    (chargeback_errors.InvalidUsage, "invalid_usage"),
    (chargeback_errors.NothingToAllocate, "nothing_to_allocate"),
    (chargeback_errors.RuleConfigurationError, "rule_configuration_error"),
    (chargeback_errors.MixedCurrencyError, "mixed_currency"),
    (chargeback_errors.StaleAllocationRun, "stale_allocation_run"),
    (chargeback_errors.AllocationError, "allocation_error"),
    (PeriodError, "invalid_period"),
    (MoneyError, "invalid_amount"),
]


def _error_type(status_code: int, code: str) -> str:
    if code == "idempotency_error":
        return "idempotency_error"
    if status_code == 401:
        return "authentication_error"
    if status_code == 403:
        return "permission_error"
    if status_code >= 500:
        return "api_error"
    return "invalid_request_error"


def error_response(status_code: int, code: str, message: str, param: str | None = None, headers=None) -> Response:
    """The one error body: ``{"error": {"type", "code", "message", "param"}}``."""
    body = {"error": {"type": _error_type(status_code, code), "code": code, "message": message, "param": param}}
    return Response(body, status=status_code, headers=headers)


def _first_error(detail: Any, path: str = "") -> tuple[str | None, str, str]:
    """``(param, message, code)`` of the first error in a DRF ``ValidationError.detail``.

    Nested fields are named ``records[3].quantity``; ``non_field_errors`` names no field.
    """
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in (api_settings.NON_FIELD_ERRORS_KEY, "__all__"):
                sub = path or None
            elif isinstance(key, int) or str(key).isdigit():  # a row of a list: records[3]
                sub = f"{path}[{key}]"
            else:
                sub = f"{path}.{key}" if path else str(key)
            if _has_error(value):
                return _first_error(value, sub or "")
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                if _has_error(value):
                    return _first_error(value, f"{path}[{index}]")
            else:
                return path or None, str(value), getattr(value, "code", "invalid") or "invalid"
    return path or None, str(detail), getattr(detail, "code", "invalid") or "invalid"


def _has_error(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_error(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_error(v) for v in value)
    return bool(value)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Map every error to the one error shape and its status (docs/api.md, "Errors")."""
    if isinstance(exc, exceptions.ValidationError):
        param, message, code = _first_error(exc.detail)
        code = "invalid" if code in ("invalid", None) else code
        text = f"{param}: {message}" if param else message
        return error_response(400, "invalid_request" if code == "invalid" else code, text, param)
    if isinstance(exc, exceptions.Throttled):
        wait = max(1, int(exc.wait or 1))
        return error_response(429, "rate_limited", f"Too many requests; retry in {wait} s.", None,
                               headers={"Retry-After": str(wait)})
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        response = error_response(401, exc.default_code, str(exc.detail))
        request = context.get("request")
        if request is not None:
            authenticators = getattr(request, "authenticators", None)
            if authenticators:
                response["WWW-Authenticate"] = authenticators[0].authenticate_header(request)
        return response
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, "request_too_large", f"The request body is larger than the limit of "
                                                        f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes.")
    if isinstance(exc, (Http404, ObjectDoesNotExist)):
        return error_response(404, "not_found", str(exc) or "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return error_response(403, "permission_denied", str(exc) or "You may not do this.")
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = str(detail) if not isinstance(detail, (dict, list)) else _first_error(detail)[1]
        code = exc.get_codes() if not isinstance(exc.get_codes(), (dict, list)) else exc.default_code
        headers = {}
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return error_response(exc.status_code, str(code), message, getattr(exc, "param", None), headers=headers)
    if isinstance(exc, wallet_errors.WalletError):
        code = exc.code
        return error_response(STATUS_BY_CODE.get(code, 400), code, exc.message, exc.param)
    if _is_invoice_error(exc):
        code = getattr(exc, "code", "invoice_error")
        message = getattr(exc, "message", None) or str(exc)
        return error_response(STATUS_BY_CODE.get(code, 422), code, message, getattr(exc, "param", None))
    for cls, code in _CHARGEBACK_CODES:
        if isinstance(exc, cls):
            return error_response(STATUS_BY_CODE[code], code, str(exc), getattr(exc, "param", None))
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            field, errors = next(iter(exc.error_dict.items()))
            param = None if field == "__all__" else field
            message = " ".join(m for e in errors for m in e.messages)
            return error_response(400, "invalid_request", f"{param}: {message}" if param else message, param)
        return error_response(400, "invalid_request", " ".join(exc.messages))
    if isinstance(exc, ProtectedError):
        return error_response(409, "object_in_use", "It is still used by other records (allocation runs, invoices…); "
                                                     "disable it instead.")
    logger.exception("Unhandled API error", exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")


def _is_invoice_error(exc: Exception) -> bool:
    try:
        from invoices import errors as invoice_errors
    except ImportError:  # before the invoice lifecycle (issue 4) is merged
        return False
    return isinstance(exc, invoice_errors.InvoiceError)


class ErrorDetailSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["invalid_request_error", "idempotency_error", "authentication_error",
                                            "permission_error", "api_error"])
    code = serializers.CharField()
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """``{"error": {"type", "code", "message", "param"}}``"""

    error = ErrorDetailSerializer()


# --- parsing ----------------------------------------------------------------------------------


class LimitedJSONParser(JSONParser):
    """JSON with numbers as ``Decimal`` (never float) and a body no larger than
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413 in the error shape, not a 500).

    DRF's parsers read the request stream directly, so Django's own size check on ``request.body``
    never runs for them; this one reads at most the limit plus one byte.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        if request is not None and limit is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                raise RequestTooLarge(f"The request body is {length:,} bytes; the limit is {limit:,} bytes.")
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than the limit of {limit:,} bytes.")
        try:
            return json.loads(raw.decode(settings.DEFAULT_CHARSET), parse_float=Decimal, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


# --- pagination -------------------------------------------------------------------------------

MAX_PAGE_SIZE = 1000


def _page_size(request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        size = int(raw)
    except ValueError:
        raise exceptions.ValidationError({"limit": ["A whole number from 1 to 1000."]}) from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise exceptions.ValidationError({"limit": [f"Must be from 1 to {MAX_PAGE_SIZE}, got {size}."]})
    return size


class PagePagination(PageNumberPagination):
    """``?page=N&limit=M`` (1 ≤ M ≤ 1000, default 100); a bigger ``limit`` is a 400, not clamped."""

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        return _page_size(request, self.page_size)


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination over ``-id`` (newest first): O(limit) per page at any depth of a large table.

    ``?limit=M`` (1 ≤ M ≤ 1000, default 100) and the opaque ``cursor`` from ``next``/``previous``.
    """

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = MAX_PAGE_SIZE
    ordering = "-id"

    def get_page_size(self, request):
        return _page_size(request, self.page_size)

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError({"cursor": ["Invalid cursor; use the next or previous link as given."]}) from None


# --- throttling -------------------------------------------------------------------------------


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


# --- idempotency ------------------------------------------------------------------------------

IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key_of(request, *, required: bool) -> str | None:
    """The request's idempotency key: the ``Idempotency-Key`` header or the body's ``idempotency_key``.

    Both given and different: 400. ``required`` and neither given: 400 naming ``idempotency_key``.
    """
    header = request.headers.get(IDEMPOTENCY_HEADER)
    body = request.data.get("idempotency_key") if isinstance(request.data, dict) else None
    if header is not None and body is not None and header != body:
        raise exceptions.ValidationError({"idempotency_key": ["The Idempotency-Key header and the body's "
                                                              "idempotency_key differ."]})
    key = header if header is not None else body
    if key is None:
        if required:
            raise exceptions.ValidationError({"idempotency_key": ["Send an Idempotency-Key header (or idempotency_key "
                                                                  "in the body) so a retry cannot move money twice."]})
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise exceptions.ValidationError({"idempotency_key": ["A non-empty string of at most 255 characters."]})
    return key


def principal_scope(request) -> str:
    """The namespace of a principal's idempotency keys for stored API responses."""
    if is_api_key(request):
        return f"api:team:{request.user.team.pk}"
    return f"api:user:{request.user.pk}"


def replayable(response: Response, replayed: bool) -> Response:
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def run_idempotent(request, *, operation: str, params: dict, body) -> Response:
    """Run ``body() -> (status, data)`` once per Idempotency-Key (stored response); without a key, just run it."""
    key = idempotency_key_of(request, required=False)
    if key is None:
        status_code, data = body()
        return Response(data, status=status_code)

    def json_body():
        status_code, data = body()
        # Store exactly what is sent: the rendered JSON (decimal strings, ISO dates).
        return status_code, json.loads(json.dumps(data, cls=_ApiJSONEncoder))

    status_code, data, replayed = idempotent_request_run(
        scope=principal_scope(request), idempotency_key=key, operation=operation, params=params, body=json_body
    )
    return replayable(Response(data, status=status_code), replayed)


class _ApiJSONEncoder(json.JSONEncoder):
    def default(self, o):
        if isinstance(o, Decimal):
            return str(o)
        if isinstance(o, (dt.datetime, dt.date)):
            return serializers.DateTimeField().to_representation(o) if isinstance(o, dt.datetime) else o.isoformat()
        return super().default(o)


# --- shared serializer pieces -----------------------------------------------------------------


class StrictSerializerMixin:
    """Refuse fields the serializer does not know (a typo must not be silently ignored)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - known - set(getattr(self, "ignored_fields", ())))
            if unknown:
                raise exceptions.ValidationError({unknown[0]: ["Unknown field."]})
        return super().to_internal_value(data)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 timestamp that must carry its time zone (``2024-09-15T12:00:00Z``)."""

    default_error_messages = {"naive": "Give the time zone, e.g. 2024-09-15T12:00:00Z."}

    def to_internal_value(self, value):
        if isinstance(value, str):
            parsed = serializers.DateTimeField(default_timezone=dt.timezone.utc).to_internal_value(value)
            from django.utils.dateparse import parse_datetime

            raw = parse_datetime(value)
            if raw is not None and timezone.is_naive(raw):
                self.fail("naive")
            return parsed
        return super().to_internal_value(value)


def MoneyField(**kwargs) -> serializers.DecimalField:  # noqa: N802 - reads as a field class
    """A metered amount as a decimal string (30 digits, 12 decimals)."""
    kwargs.setdefault("max_digits", 30)
    kwargs.setdefault("decimal_places", 12)
    return serializers.DecimalField(**kwargs)


def date_range(data: dict, start: str = "period_start", end: str = "period_end") -> None:
    """Refuse an end before (or on) the start, naming the end field."""
    if data.get(start) and data.get(end) and data[end] <= data[start]:
        raise exceptions.ValidationError({end: [f"Must be after {start} (the end is exclusive)."]})


def month_range(data: dict, start: str = "period_start", end: str = "period_end") -> None:
    """``date_range``, and both ends on the first day of a month: billing periods are whole months."""
    date_range(data, start, end)
    for name in (start, end):
        if data.get(name) and data[name].day != 1:
            raise exceptions.ValidationError({name: ["Must be the first day of a month (periods are whole months)."]})


# --- the router -------------------------------------------------------------------------------


def api_urlpatterns() -> list:
    """The URL patterns of ``/api/v1/`` (the views are imported here, after the apps are ready)."""
    from django.urls import path
    from rest_framework.routers import SimpleRouter

    from chargeback.api import views as chargeback_views
    from wallets.api import views as wallet_views

    router = SimpleRouter(trailing_slash=True)
    router.register("teams", chargeback_views.TeamViewSet, basename="team")
    router.register("usage", chargeback_views.UsageViewSet, basename="usage")
    router.register("allocation-rules", chargeback_views.AllocationRuleViewSet, basename="allocation-rule")
    router.register("allocations", chargeback_views.AllocationViewSet, basename="allocation")
    router.register("wallets", wallet_views.WalletViewSet, basename="wallet")
    patterns = [
        path("prices/", chargeback_views.PriceView.as_view(), name="price-resolve"),
        path("providers/", chargeback_views.ProviderView.as_view(), name="provider-list"),
        path("quotes/", wallet_views.QuoteView.as_view(), name="quote-create"),
        path("charges/", wallet_views.ChargeView.as_view(), name="charge-create"),
        *[
            path(f"statistics/{granularity}/", wallet_views.StatisticsView.as_view(), {"granularity": granularity},
                 name=f"statistics-{granularity}")
            for granularity in ("day", "month", "year")
        ],
    ]
    try:
        import invoices.errors  # noqa: F401 - the invoice lifecycle (issue 4) is merged
    except ImportError:
        pass
    else:
        from invoices.api import views as invoice_views

        patterns += invoice_views.urlpatterns(router)
    return patterns + router.urls
