"""Machinery shared by every billing app's API and services: the stored outcomes of idempotent requests."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class IdempotencyRecord(models.Model):
    """The first outcome of a money-moving request, keyed by its idempotency key (Stripe's semantics).

    ``scope`` is the account the key belongs to (``team:<id>``), so a key is unique per team across
    every operation; ``fingerprint`` is the SHA-256 of the canonical JSON of the operation name and
    its parameters. The row is inserted first, in the same transaction as the money movement, so
    the unique constraint on ``(scope, key)`` lets exactly one concurrent request proceed; the others
    wait for it and replay its result (same fingerprint) or get ``idempotency_error``.

    ``result_type``/``result_id`` name what the request produced (``ledger_entry``, ``hold``,
    ``usage_event``) and ``response`` keeps its JSON for the API's replay. Records are kept at least
    24 hours (``python manage.py purge_idempotency_records`` removes older ones).
    """

    scope = models.CharField(max_length=100)
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=50)
    fingerprint = models.CharField(max_length=64)
    result_type = models.CharField(max_length=50, blank=True)
    result_id = models.CharField(max_length=100, blank=True)
    response = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_unique_scope_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key} → {self.result_type} {self.result_id}"
