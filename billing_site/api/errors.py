"""The API's one error shape, ``{"error": {"type", "code", "message", "param"}}``, and each error's status.

:func:`exception_handler` is DRF's ``EXCEPTION_HANDLER``: it maps DRF's and Django's errors, and every
``billing_site.errors.BillingError`` by its own ``http_status``, ``code``, ``message`` and ``param``, to
that shape (docs/api.md, "Errors"). It knows no app: each app's errors carry their status.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings

from billing_site.errors import BillingError

logger = logging.getLogger(__name__)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is too large."


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
        if code == "does_not_exist":
            # A well-formed id that names nothing answers as another team's object does (404), so
            # an id's existence never shows through; the error still names the field.
            return error_response(404, "not_found", text, param)
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
    if isinstance(exc, BillingError):
        return error_response(exc.http_status, exc.code, exc.message, exc.param)
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


#: Where the API lives: a path under it that nothing routes answers :func:`not_found` in the error shape.
API_PREFIX = "/api/"


@csrf_exempt  # the API's views are (DRF's); an unknown URL must answer 404 to any method, not 403
def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The 404 of a URL no route matches: the error shape under ``/api/``, Django's page elsewhere.

    It is the project's ``handler404`` and the last route under ``/api/`` (so it answers JSON with
    ``DEBUG`` on too). Ids are whole numbers in every route, so ``invoices/1.5/`` and
    ``invoices/abc/`` land here as well: 404 ``not_found``, never Django's HTML page.
    """
    if not request.path_info.startswith(API_PREFIX):
        return page_not_found(request, exception)
    message = f"Nothing here: {request.path_info[:200]} is not a resource of the API (see /api/docs/)."
    body = {"error": {"type": _error_type(404, "not_found"), "code": "not_found", "message": message, "param": None}}
    return JsonResponse(body, status=404)


class ErrorDetailSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["invalid_request_error", "idempotency_error", "authentication_error",
                                            "permission_error", "api_error"])
    code = serializers.CharField()
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """``{"error": {"type", "code", "message", "param"}}``"""

    error = ErrorDetailSerializer()
