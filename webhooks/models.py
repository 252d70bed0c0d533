"""Outbound webhooks: the endpoints finance registers, the events the product records (an outbox),
one delivery per endpoint and event, and every HTTP attempt of a delivery.

The outbox: an :class:`Event` is inserted in the same transaction as the change it reports, with a
:class:`Delivery` row per matching endpoint and the delivery's job (Procrastinate's defer, which
writes to the same database in the same transaction). A rolled-back change therefore leaves no
event, no delivery and no job; a committed one always has all three.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

#: Every event type the product sends, with what it means. The payload's ``data`` is the JSON shape
#: the API gives the object named (docs/webhooks.md).
EVENT_TYPES: dict[str, str] = {
    "invoice.issued": "An invoice was issued (numbered, dated, frozen). data: the invoice.",
    "invoice.paid": "An invoice was recorded as paid. data: the invoice.",
    "invoice.overdue": "An issued invoice passed its due date unpaid. data: the invoice.",
    "credit_note.issued": "A credit note was issued against an invoice. data: the credit note.",
    "wallet.low_balance": "A debit took a wallet's balance below its team's warning threshold. data: the wallet.",
    "wallet.depleted": "A debit took a wallet's balance from above zero to zero or below. data: the wallet.",
    "wallet.topped_up": "Credit was bought into a wallet. data: the wallet and the ledger entry.",
    "charge.refused": "A charge was refused (insufficient funds, frozen wallet). data: the wallet, the charge and the error.",
    "billing_run.committed": "A billing run was committed: its allocation run and draft invoices. data: the run's result.",
    "usage.import_completed": "A FOCUS file was imported. data: the import's counts and costs.",
}


class Endpoint(models.Model):
    """A URL that receives the events of the types it lists, of one team or of all teams.

    Invariants: ``url`` passed the SSRF guard when it was saved (``webhooks.services.endpoint_create``
    / ``endpoint_update``; each delivery checks it again); ``secret`` is a Standard Webhooks secret
    (``whsec_`` + base64 of 24 random bytes), shown once when created or rotated and never again;
    ``event_types`` are keys of :data:`EVENT_TYPES`. A disabled endpoint gets no new deliveries.
    """

    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = ArrayField(models.CharField(max_length=64), help_text="The event types sent to this URL.")
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_endpoints",
        help_text="Only this team's events; empty: every team's.",
    )
    # Kept as given so deliveries can be signed (HMAC needs the key itself); never shown after creation.
    secret = models.CharField(max_length=100, editable=False)
    is_active = models.BooleanField(default=True)
    #: When the current run of failed attempts began (cleared by a success).
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(secret=""), name="webhook_endpoint_has_secret"),
            models.CheckConstraint(condition=Q(url__startswith="https://") | Q(url__startswith="http://"),
                                   name="webhook_endpoint_http_url"),
        ]

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:  # never the secret
        return f"<Endpoint {self.pk} {self.url}>"


class Event(models.Model):
    """Something that happened, as sent: ``type``, the team it concerns, and its payload.

    Invariants: written once, in the transaction of the change it reports; never changed (read-only
    admin). ``webhook_id`` is the Standard Webhooks ``webhook-id`` header, the same for every attempt
    and every endpoint, so receivers can drop duplicates.
    """

    webhook_id = models.CharField(max_length=64, unique=True, editable=False)
    type = models.CharField(max_length=64, db_index=True)
    team = models.ForeignKey("teams.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    #: The object as the API shows it (the envelope's ``data``).
    data = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id}"

    def envelope(self) -> dict:
        """The body sent: ``{"type", "timestamp" (ISO 8601, UTC), "data"}`` (Standard Webhooks' shape)."""
        return {"type": self.type, "timestamp": self.created_at.isoformat().replace("+00:00", "Z"),
                "data": self.data}


class Delivery(models.Model):
    """One event to one endpoint: pending until an attempt succeeds (2xx) or the retries run out.

    Invariants: one per (event, endpoint); a pending delivery is due at ``next_attempt_at``; a job
    that claims it sets a new ``job_token`` and moves ``next_attempt_at`` past its lease, and its
    attempt moves the delivery only if the token is still that (a replay gives a new token and
    makes it due now); ``status`` moves pending → succeeded | failed, and back to pending only by a
    replay.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    job_token = models.UUIDField(default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once_per_endpoint"),
            models.CheckConstraint(condition=Q(status__in=["pending", "succeeded", "failed"]),
                                   name="webhook_delivery_status"),
        ]
        indexes = [
            models.Index(fields=["endpoint", "status"], name="webhook_delivery_ep_status"),
            # What a job claims: the pending deliveries that are due, oldest first.
            models.Index(fields=["next_attempt_at", "id"], condition=Q(status="pending"), name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of {self.event_id} to endpoint {self.endpoint_id}"


class DeliveryAttempt(models.Model):
    """One HTTP POST of a delivery: when, how long, the response code (none if no response) and why
    it failed. Never changed."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    succeeded = models.BooleanField()
    #: Why it failed, for people (an HTTP status, a timeout, a refused address); at most 500 characters.
    error = models.CharField(max_length=500, blank=True)
    #: The start of the response body, at most 500 characters.
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_once"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
