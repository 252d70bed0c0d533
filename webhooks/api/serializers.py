"""Serializers of the webhooks API (finance only): endpoints, their secret shown once, deliveries with
their attempts. Strict: unknown fields, a number for text and an id that is not a whole number are
400 naming the field (``billing_site.api.fields``)."""

from __future__ import annotations

from rest_framework import serializers

from billing_site.api.fields import StrictPrimaryKeyRelatedField, StrictSerializerMixin, TextField
from teams.models import Team
from webhooks.models import EVENT_TYPES, Delivery, DeliveryAttempt, Endpoint, Event


class WebhookEndpointSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    """An endpoint as read and written. ``url`` must pass the SSRF guard (https, a public address:
    400 ``endpoint_url_refused`` naming ``url``); ``event_types``: one or more of the event types;
    ``team``: one team's events only, or ``null`` for every team's. The secret is never shown here."""

    # Text here: whether the URL is valid and where it points is the SSRF guard's to say (422 naming url).
    url = TextField(max_length=2000, help_text="Where to POST: an https URL whose host resolves to public "
                                               "addresses only; else 422 endpoint_url_refused naming url.")
    description = TextField(max_length=200, required=False, allow_blank=True, default="")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EVENT_TYPES)), min_length=1, max_length=len(EVENT_TYPES),
        help_text="The event types sent to this URL (docs/webhooks.md).")
    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True, default=None,
                                        help_text="Only this team's events; null: every team's.")
    is_active = serializers.BooleanField(required=False, default=True,
                                         help_text="false: no new deliveries. true again clears the failure record.")

    class Meta:
        model = Endpoint
        fields = ["id", "url", "description", "event_types", "team", "is_active", "failing_since", "disabled_at",
                  "disabled_reason", "created_at"]
        read_only_fields = ["id", "failing_since", "disabled_at", "disabled_reason", "created_at"]


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    """An endpoint just created, or whose secret was just rotated, with its ``secret`` (``whsec_`` +
    base64): shown in this one response and never again."""

    secret = serializers.CharField(read_only=True, help_text="The signing secret. Shown once: keep it now.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookEndpointSerializer.Meta.read_only_fields, "secret"]


class WebhookEventSerializer(serializers.ModelSerializer):
    """The event a delivery sends: ``webhook_id`` (the ``webhook-id`` header), ``type``, ``team``,
    ``created_at`` and ``data`` (the object, as the API shows it)."""

    data = serializers.JSONField(read_only=True)

    class Meta:
        model = Event
        fields = ["id", "webhook_id", "type", "team", "created_at", "data"]
        read_only_fields = fields


class WebhookDeliveryAttemptSerializer(serializers.ModelSerializer):
    """One POST: ``number`` (1, 2, …), ``started_at``, ``duration_ms``, ``status_code`` (null: no
    answer), ``succeeded`` (a 2xx), ``error`` and ``response_excerpt`` (at most 500 characters each)."""

    class Meta:
        model = DeliveryAttempt
        fields = ["number", "started_at", "duration_ms", "status_code", "succeeded", "error", "response_excerpt"]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    """One event to one endpoint: ``status`` (pending, succeeded, failed), ``attempt_count``,
    ``next_attempt_at`` (when pending), ``last_status_code``, ``delivered_at``."""

    event = WebhookEventSerializer(read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "endpoint", "event", "status", "attempt_count", "next_attempt_at", "last_status_code",
                  "created_at", "delivered_at"]
        read_only_fields = fields


class WebhookDeliveryDetailSerializer(WebhookDeliverySerializer):
    """A delivery with every attempt, first to last."""

    attempts = WebhookDeliveryAttemptSerializer(many=True, read_only=True)

    class Meta(WebhookDeliverySerializer.Meta):
        fields = [*WebhookDeliverySerializer.Meta.fields, "attempts"]
        read_only_fields = fields


class WebhookDeliveryQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    """``?endpoint=`` (an endpoint's id) and ``?status=`` narrow the list of deliveries."""

    endpoint = StrictPrimaryKeyRelatedField(queryset=Endpoint.objects.all(), required=False,
                                            help_text="Only this endpoint's deliveries.")
    status = serializers.ChoiceField(choices=Delivery.Status.choices, required=False)

    #: The pagination's parameters, read by it.
    ignored_fields = ("limit", "cursor")
