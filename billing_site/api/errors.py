"""The API's one error shape, ``{"error": {"type", "code", "message", "param"}}``, and each error's status.

:func:`exception_handler` is DRF's ``EXCEPTION_HANDLER``: it maps DRF's, Django's and the billing
apps' errors to a status and that shape (docs/api.md, "Errors").
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings

from billing_site.money import MoneyError
from chargeback import errors as chargeback_errors
from chargeback.periods import PeriodError
from invoices import errors as invoice_errors
from wallets import errors as wallet_errors

logger = logging.getLogger(__name__)


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
    if isinstance(exc, invoice_errors.InvoiceError):
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


class ErrorDetailSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["invalid_request_error", "idempotency_error", "authentication_error",
                                            "permission_error", "api_error"])
    code = serializers.CharField()
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """``{"error": {"type", "code", "message", "param"}}``"""

    error = ErrorDetailSerializer()
