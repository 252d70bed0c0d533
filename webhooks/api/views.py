"""Views of the webhooks API, under ``/api/v1/`` (docs/webhooks.md, "The API"): finance manages
endpoints, reads deliveries with their attempts and replays them. Anybody else, a team's API key
included, gets 403.

Thin: writes are ``webhooks.services`` (``endpoint_*``, ``delivery_replay``); errors map through
``billing_site.api.errors.exception_handler`` (422 ``endpoint_url_refused`` naming ``url``).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from billing_site.api.pagination import NewestFirstCursorPagination, PagePagination
from billing_site.api.scoping import is_finance
from webhooks.models import Delivery, Endpoint
from webhooks.services import (
    delivery_replay,
    endpoint_create,
    endpoint_delete,
    endpoint_secret_rotate,
    endpoint_update,
)

from . import serializers as s


class FinanceOnly(BasePermission):
    """Finance only, reads included (an endpoint's URL and its deliveries' payloads are finance's
    business); anybody else authenticated gets 403."""

    message = "Only finance may manage webhooks."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and is_finance(request))


class EndpointViewSet(viewsets.ModelViewSet):
    """Webhook endpoints: list, create (the secret is shown once, in the answer), read, change
    (``PUT`` whole, ``PATCH`` in part; the secret stays), delete (with its deliveries and their
    attempts), and rotate the secret."""

    serializer_class = s.WebhookEndpointSerializer
    permission_classes = [FinanceOnly]
    pagination_class = PagePagination
    filter_backends: list = []
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return Endpoint.objects.order_by("pk")

    @extend_schema(request=s.WebhookEndpointSerializer, responses={201: s.WebhookEndpointWithSecretSerializer})
    def create(self, request, *args, **kwargs):
        """Register an endpoint; the answer carries its ``secret``, shown this once. 422 naming ``url``
        when the SSRF guard refuses it."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        endpoint = endpoint_create(url=data["url"], event_types=data["event_types"], team=data["team"],
                                   description=data["description"], is_active=data["is_active"],
                                   created_by=request.user)
        return Response(s.WebhookEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        # A PATCH changes only what it names (DRF skips the fields' defaults when partial).
        endpoint, data = serializer.instance, serializer.validated_data
        serializer.instance = endpoint_update(
            endpoint=endpoint, url=data.get("url", endpoint.url),
            event_types=data.get("event_types", endpoint.event_types), team=data.get("team", endpoint.team),
            description=data.get("description", endpoint.description),
            is_active=data.get("is_active", endpoint.is_active))

    def perform_destroy(self, instance):
        endpoint_delete(endpoint=instance)

    @extend_schema(request=None, responses={200: s.WebhookEndpointWithSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """Give the endpoint a new secret (the old one stops signing at once); the answer carries it,
        shown this once."""
        endpoint = endpoint_secret_rotate(endpoint=self.get_object())
        return Response(s.WebhookEndpointWithSecretSerializer(endpoint).data)


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deliveries, newest first (``?endpoint=``, ``?status=``; a cursor), each with its event; one
    delivery with every attempt; replay."""

    permission_classes = [FinanceOnly]
    pagination_class = NewestFirstCursorPagination
    filter_backends: list = []

    def get_serializer_class(self):
        return s.WebhookDeliveryDetailSerializer if self.action in ("retrieve", "replay") else s.WebhookDeliverySerializer

    def get_queryset(self):
        deliveries = Delivery.objects.select_related("event").order_by("-pk")
        if self.action == "list":
            query = s.WebhookDeliveryQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            if query.validated_data.get("endpoint") is not None:
                deliveries = deliveries.filter(endpoint=query.validated_data["endpoint"])
            if query.validated_data.get("status"):
                deliveries = deliveries.filter(status=query.validated_data["status"])
        elif self.action in ("retrieve", "replay"):
            deliveries = deliveries.prefetch_related("attempts")
        return deliveries

    @extend_schema(parameters=[s.WebhookDeliveryQuerySerializer])
    def list(self, request, *args, **kwargs):
        """Deliveries, newest first, each with its event (``data`` as sent)."""
        return super().list(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        """One delivery, its event, and every attempt, first to last."""
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=None, responses={202: s.WebhookDeliveryDetailSerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        """Send the delivery again now, whatever its status: it becomes pending, due now, with a job
        queued (202). 422 naming ``url`` if its endpoint's URL no longer passes the SSRF guard."""
        delivery = delivery_replay(delivery=self.get_object())
        delivery = self.get_queryset().get(pk=delivery.pk)
        return Response(s.WebhookDeliveryDetailSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
