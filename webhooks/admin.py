"""Finance admin of outbound webhooks: endpoints, the events recorded, and deliveries with every attempt.

Endpoints are written by ``webhooks.services`` (the form checks the URL with the SSRF guard first,
so a refusal is a form error). A new endpoint's secret, or a rotated one, is shown once, in the
response that creates it, and never again: no form, list or log shows it. Events, deliveries and
attempts are read-only; a delivery can be replayed.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from billing_site.admin_mixins import (
    BillingAdminMixin,
    LargeTableAdminMixin,
    ReadOnlyAdminMixin,
    json_column,
    number_column,
)
from teams.selectors import user_is_finance

from .errors import WebhookError
from .guard import endpoint_url_check
from .models import EVENT_TYPES, Delivery, DeliveryAttempt, Endpoint, Event
from .services import delivery_replay, endpoint_create, endpoint_secret_rotate, endpoint_update


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=[(name, f"{name}: {text}") for name, text in EVENT_TYPES.items()],
        widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Endpoint
        fields = ["url", "description", "event_types", "team", "is_active"]

    def clean_url(self):
        try:
            return endpoint_url_check(self.cleaned_data["url"])
        except WebhookError as exc:
            raise forms.ValidationError(exc.message) from None


def _secret_page(admin_obj, request, endpoints: list[Endpoint], title: str):
    context = {**admin_obj.admin_site.each_context(request), "opts": Endpoint._meta, "title": title,
               "endpoints": endpoints, "continue_url": reverse("admin:webhooks_endpoint_changelist")}
    return TemplateResponse(request, "admin/webhooks/endpoint_secret.html", context)


@admin.register(Endpoint)
class EndpointAdmin(BillingAdminMixin, admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "team", "event_types_display", "is_active", "failing_since", "disabled_at"]
    list_filter = ["is_active"]
    list_select_related = ["team"]
    search_fields = ["url", "description"]
    autocomplete_fields = ["team"]
    readonly_fields = ["failing_since", "disabled_at", "disabled_reason", "created_at", "created_by"]
    actions = ["rotate_secret"]

    @admin.display(description="Event types")
    def event_types_display(self, obj):
        return ", ".join(obj.event_types)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            saved = endpoint_update(endpoint=obj, url=data["url"], event_types=data["event_types"], team=data["team"],
                                    description=data["description"], is_active=data["is_active"])
        else:
            saved = endpoint_create(url=data["url"], event_types=data["event_types"], team=data["team"],
                                    description=data["description"], created_by=request.user)
        obj.pk, obj.secret = saved.pk, saved.secret

    def response_add(self, request, obj, post_url_continue=None):
        # The secret is shown here, in this one response, and never again.
        return _secret_page(self, request, [obj], "Endpoint created: copy its secret now")

    @admin.action(description="Rotate the secret of the selected endpoints (shown once)")
    def rotate_secret(self, request, queryset):
        if not self.has_change_permission(request):
            self.message_user(request, "You may not change endpoints.", messages.ERROR)
            return None
        rotated = [endpoint_secret_rotate(endpoint=endpoint) for endpoint in queryset.order_by("pk")]
        return _secret_page(self, request, rotated, "New secrets: copy them now")


class DeliveryInline(ReadOnlyAdminMixin, BillingAdminMixin, admin.TabularInline):
    model = Delivery
    fields = ["endpoint", "status", "attempt_count", "last_status_code", "next_attempt_at", "delivered_at"]
    readonly_fields = fields
    show_change_link = True
    extra = 0


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, LargeTableAdminMixin, BillingAdminMixin, admin.ModelAdmin):
    list_display = ["webhook_id", "type", "team", "created_at"]
    list_filter = ["type"]
    list_select_related = ["team"]
    search_fields = ["=webhook_id"]
    date_hierarchy = "created_at"
    fields = ["webhook_id", "type", "team", "created_at", "data_display"]
    readonly_fields = fields
    inlines = [DeliveryInline]
    data_display = json_column("data", "Data", pretty=True)


class DeliveryAttemptInline(ReadOnlyAdminMixin, BillingAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = ["number", "started_at", "duration_ms", "status_code", "succeeded", "error", "response_excerpt"]
    readonly_fields = fields
    extra = 0


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, LargeTableAdminMixin, BillingAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "event_type", "event_short", "endpoint", "status", "attempts_display", "http_status",
                    "next_attempt_at", "delivered_at"]
    attempts_display = number_column("attempt_count", "Attempts")

    @admin.display(description="HTTP status", ordering="last_status_code")
    def http_status(self, obj):
        return obj.last_status_code or "—"

    @admin.display(description="Event", ordering="event")
    def event_short(self, obj):
        """The event's id, shortened (its type is the column before); the whole id as the tooltip."""
        webhook_id = obj.event.webhook_id
        return format_html('<span title="{}">{}…</span>', webhook_id, webhook_id[:12])
    list_filter = ["status", "event__type"]
    list_select_related = ["event", "endpoint"]
    fields = ["event", "endpoint", "status", "attempt_count", "last_status_code", "next_attempt_at", "created_at",
              "delivered_at"]
    readonly_fields = fields
    inlines = [DeliveryAttemptInline]
    actions = ["replay"]

    @admin.display(description="Type", ordering="event__type")
    def event_type(self, obj):
        return obj.event.type

    def get_actions(self, request):
        # ReadOnlyAdminMixin drops every action; replay is a service call, for finance.
        actions = super().get_actions(request)
        if self.has_replay_permission(request):
            actions["replay"] = self.get_action("replay")
        return actions

    def has_replay_permission(self, request):
        return user_is_finance(request.user) and request.user.has_perm("webhooks.change_delivery")

    @admin.action(description="Replay the selected deliveries now", permissions=["replay"])
    def replay(self, request, queryset):
        replayed = 0
        for delivery in queryset.select_related("endpoint").order_by("pk"):
            try:
                delivery_replay(delivery=delivery)
                replayed += 1
            except WebhookError as exc:
                self.message_user(request, f"Delivery {delivery.pk} not replayed: {exc.message}", messages.ERROR)
            if not delivery.endpoint.is_active:
                self.message_user(request, f"Delivery {delivery.pk} waits: its endpoint is disabled; enable it "
                                  "to send.", messages.WARNING)
        if replayed:
            self.message_user(request, f"{replayed} deliveries queued to be sent again.", messages.SUCCESS)
