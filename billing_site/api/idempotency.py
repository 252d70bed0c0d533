"""Request-level idempotency: reading a request's key and replaying a stored response.

A money-moving request sent twice with one ``Idempotency-Key`` runs once; the retry gets the stored
response with ``Idempotent-Replayed: true`` (Stripe's semantics). The stored outcomes are
``billing_site.models.IdempotencyRecord`` rows.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from billing_site.api.auth import is_api_key
from billing_site.errors import IdempotencyKeyRequired
from billing_site.idempotency import idempotent_request_run, request_fingerprint_json

IDEMPOTENCY_HEADER = "Idempotency-Key"
#: What :func:`idempotency_key_of` accepts as a key: 1 to 255 characters, not all white space.
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"}


def idempotency_key_parameter(description: str) -> OpenApiParameter:
    """The ``Idempotency-Key`` header as the OpenAPI schema documents it on an operation."""
    return OpenApiParameter(IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY_SCHEMA, OpenApiParameter.HEADER, required=False,
                            description=description)


def idempotency_key_of(request, *, required: bool) -> str | None:
    """The request's idempotency key: the ``Idempotency-Key`` header or the body's ``idempotency_key``.

    Both given and different, or ``required`` and neither given:
    :class:`~billing_site.errors.IdempotencyKeyRequired` (422, ``idempotency_key_mismatch`` or
    ``idempotency_key_required``) naming ``idempotency_key``: each part of the request is
    well-formed, and the schema cannot say "one of the two". A key that is no string: 400.
    """
    header = request.headers.get(IDEMPOTENCY_HEADER)
    body = request.data.get("idempotency_key") if isinstance(request.data, dict) else None
    if header is not None and body is not None and header != body:
        raise IdempotencyKeyRequired("idempotency_key: The Idempotency-Key header and the body's idempotency_key "
                                     "differ; send one key.", code="idempotency_key_mismatch")
    key = header if header is not None else body
    if key is None:
        if required:
            raise IdempotencyKeyRequired("idempotency_key: Send an Idempotency-Key header (or idempotency_key in the "
                                         "body) so a retry cannot move money twice.")
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


def run_idempotent(request, *, operation: str, params: dict, body, json_params: bool = False) -> Response:
    """Run ``body() -> (status, data)`` once per Idempotency-Key (stored response); without a key, just run it.

    ``json_params``: every mapping in ``params`` has string keys (a parsed JSON body's parts), so the
    fingerprint is written in one pass (``billing_site.idempotency.request_fingerprint_json``).
    """
    key = idempotency_key_of(request, required=False)
    if key is None:
        status_code, data = body()
        return Response(data, status=status_code)

    def json_body():
        status_code, data = body()
        # Store exactly what is sent: the rendered JSON (decimal strings, ISO dates).
        return status_code, json.loads(json.dumps(data, cls=_ApiJSONEncoder))

    fingerprint = request_fingerprint_json(operation, params) if json_params else None
    status_code, data, replayed = idempotent_request_run(
        scope=principal_scope(request), idempotency_key=key, operation=operation, params=params, body=json_body,
        fingerprint=fingerprint,
    )
    return replayable(Response(data, status=status_code), replayed)


class _ApiJSONEncoder(json.JSONEncoder):
    def default(self, o):
        if isinstance(o, Decimal):
            return str(o)
        if isinstance(o, (dt.datetime, dt.date)):
            return serializers.DateTimeField().to_representation(o) if isinstance(o, dt.datetime) else o.isoformat()
        return super().default(o)
