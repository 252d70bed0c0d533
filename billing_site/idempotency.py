"""Idempotency keys: a money-moving request runs once per key; a retry gets the first result.

Stripe's semantics (https://docs.stripe.com/api/idempotent_requests): a key is claimed by
inserting its :class:`IdempotencyRecord` first, in the transaction that does the work; the unique
constraint on ``(scope, key)`` makes a concurrent request with the same key wait for the first
and then replay its result, or fail with ``IdempotencyError`` if its parameters differ. If the
work fails, the transaction rolls the claim back with it, so the key may be retried. Records are
kept at least 24 hours (:func:`idempotency_records_purge`).

``scope`` namespaces keys: ``team:<pk>`` for the wallet services, ``api:team:<pk>`` or
``api:user:<pk>`` for the API's stored responses. Used by every app's services and by the API.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from django.db import connection, transaction
from django.utils import timezone

from billing_site.errors import IdempotencyError, InvalidRequest
from billing_site.models import IdempotencyRecord

#: How long idempotency records are kept at least (Stripe keeps keys 24 hours).
IDEMPOTENCY_RETENTION = dt.timedelta(hours=24)

T = TypeVar("T")


def _canonical(value: Any) -> Any:
    """A JSON-ready form of a parameter that is equal exactly when the parameters are equal."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "_meta") and hasattr(value, "pk"):
        return f"{value._meta.label_lower}:{value.pk}"
    return value


def request_fingerprint(operation: str, params: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``operation`` and its parameters.

    Decimals compare by value (``1.50`` = ``1.5``), datetimes in UTC, model instances by label and pk.
    """
    payload = json.dumps(
        {"operation": operation, "params": _canonical(params)}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _json_leaf(value: Any) -> Any:
    # What ``_canonical`` makes of a value the JSON encoder cannot write itself (a Decimal, a time, a model).
    canonical = _canonical(value)
    return str(canonical) if canonical is value else canonical


def request_fingerprint_json(operation: str, params: Mapping[str, Any]) -> str:
    """:func:`request_fingerprint` of parameters whose mappings all have string keys, as a parsed JSON
    body's do: the same digest, written by the JSON encoder in one pass instead of a canonical copy.

    With string keys the two agree byte for byte: the encoder sorts and writes the same keys, and
    hands each Decimal, datetime or model instance to ``_canonical`` (the equality test is
    ``tests/billing_site/test_idempotency_fingerprint.py``). Other keys need :func:`request_fingerprint`.
    """
    payload = json.dumps({"operation": operation, "params": params}, sort_keys=True, separators=(",", ":"),
                         default=_json_leaf)
    return hashlib.sha256(payload.encode()).hexdigest()


def idempotency_key_check(idempotency_key: object) -> str:
    """``idempotency_key`` if it is a non-empty string of at most 255 characters, else ``InvalidRequest``."""
    if not isinstance(idempotency_key, str) or not idempotency_key.strip() or len(idempotency_key) > 255:
        raise InvalidRequest("idempotency_key must be a non-empty string of at most 255 characters", param="idempotency_key")
    return idempotency_key


def idempotency_claim(*, scope: str, key: str, operation: str, params: Mapping[str, Any],
                      fingerprint: str | None = None) -> tuple[IdempotencyRecord, bool]:
    """Insert the key's record, or return the existing one as a replay.

    Must run inside the transaction that does the work. ``INSERT … ON CONFLICT (scope, key) DO
    NOTHING RETURNING id`` (one round trip, no savepoint): a concurrent insert of the same key
    waits until the first transaction ends; if it committed, nothing is inserted and its record is
    read (READ COMMITTED sees it); if it rolled back, ours is inserted. The unique constraint, not a
    prior ``exists()`` check, is what admits exactly one request.

    ``fingerprint``: the parameters' digest when the caller has it (:func:`request_fingerprint_json`).
    Returns ``(record, replayed)``. Raises :class:`IdempotencyError` on different parameters.
    """
    fingerprint = fingerprint or request_fingerprint(operation, params)
    created_at = timezone.now()
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (scope, key, operation, fingerprint, result_type, result_id, response, created_at) "
            "VALUES (%s, %s, %s, %s, '', '', '{}', %s) ON CONFLICT (scope, key) DO NOTHING RETURNING id",
            [scope, key, operation, fingerprint, created_at],
        )
        row = cursor.fetchone()
    if row is not None:
        record = IdempotencyRecord(
            pk=row[0], scope=scope, key=key, operation=operation, fingerprint=fingerprint, created_at=created_at
        )
        record._state.adding = False
        return record, False
    return idempotency_record_claimed(scope=scope, key=key, fingerprint=fingerprint), True


def idempotency_record_claimed(*, scope: str, key: str, fingerprint: str) -> IdempotencyRecord:
    """The record a committed request left for the key; ``IdempotencyError`` if its parameters differ."""
    record = IdempotencyRecord.objects.get(scope=scope, key=key)
    if record.fingerprint != fingerprint:
        raise IdempotencyError(
            f"Idempotency key {key!r} was already used for a {record.operation} request with different "
            f"parameters; use a new key for a new request."
        )
    return record


def idempotent_run(*, scope: str, idempotency_key: str, operation: str, params: Mapping[str, Any],
                   body: Callable[[], T], response: Callable[[T], tuple[str, str, dict]],
                   replay: Callable[[IdempotencyRecord], T],
                   fingerprint: str | None = None) -> tuple[T, IdempotencyRecord, bool]:
    """Run ``body()`` once per ``(scope, idempotency_key)``; a replay returns ``replay(record)`` instead.

    Must be called inside the caller's ``transaction.atomic`` (the service's own), which covers
    the claim, ``body`` and the stored result, so a failure keeps nothing. ``response(result)``
    gives what the record stores: ``(result_type, result_id, JSON response)``.

    Returns ``(result, record, replayed)``. Raises :class:`InvalidRequest` (bad key) and
    :class:`IdempotencyError` (the key was used with other parameters or another operation).
    """
    key = idempotency_key_check(idempotency_key)
    record, replayed = idempotency_claim(scope=scope, key=key, operation=operation, params=params,
                                         fingerprint=fingerprint)
    if replayed:
        return replay(record), record, True
    result = body()
    record.result_type, record.result_id, record.response = response(result)
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        result_type=record.result_type, result_id=record.result_id, response=record.response
    )
    return result, record, False


def idempotent_request_run(*, scope: str, idempotency_key: str, operation: str, params: Mapping[str, Any],
                           body: Callable[[], tuple[int, Any]],
                           fingerprint: str | None = None) -> tuple[int, Any, bool]:
    """Run an API request that has no idempotency of its own once per ``(scope, idempotency_key)``.

    For the API's money-moving POSTs whose services take no key (usage batches, allocation runs,
    invoices, credit notes): ``body()`` returns ``(HTTP status, JSON-ready response)``; it runs in
    the same transaction as the key's claim (this function's, the outermost), and the response is
    stored on the ``IdempotencyRecord`` (result type ``api_response``). A later call with the key
    and the same ``params`` (Decimals, dates and model instances compared canonically) returns the
    stored status and response without running ``body``; the record is purged after 24 hours like
    the wallets' keys. If ``body`` raises, nothing is kept (the key may be retried).

    Returns ``(status, response, replayed)``. Raises :class:`InvalidRequest` (bad key),
    :class:`IdempotencyError` (the key was used with other parameters or another operation).
    """
    key = idempotency_key_check(idempotency_key)
    with transaction.atomic(durable=True):
        (status, response), _, replayed = idempotent_run(
            scope=scope, idempotency_key=key, operation=operation, params=params, body=body, fingerprint=fingerprint,
            response=lambda result: ("api_response", "", {"status": result[0], "body": result[1]}),
            replay=lambda record: (record.response["status"], record.response["body"]),
        )
    return status, response, replayed


def idempotency_records_purge(*, older_than: dt.timedelta = IDEMPOTENCY_RETENTION, now: dt.datetime | None = None) -> int:
    """Delete idempotency records older than ``older_than`` (at least 24 hours); returns how many.

    After that a reused key starts a new request, as with Stripe; the ledger's own unique
    ``(wallet, entry_type, idempotency_key)`` still stops a second entry from the same key.
    Raises :class:`InvalidRequest` for less than 24 hours.
    """
    if older_than < IDEMPOTENCY_RETENTION:
        raise InvalidRequest("idempotency records are kept at least 24 hours", param="older_than")
    cutoff = (now or timezone.now()) - older_than
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
