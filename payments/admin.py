"""The finance admin of payments' webhooks in and dunning: the dunning policy (editable), dunnings and
their retries, and the Stripe events received (read-only)."""

from __future__ import annotations

from django.contrib import admin

from billing_site.admin_mixins import BillingAdminMixin, ReadOnlyAdminMixin

from .models import Dunning, DunningAttempt, DunningPolicy, StripeEvent
from .services.dunning import dunning_policy_get

# --- Webhooks in and dunning ---------------------------------------------------------------------

@admin.register(DunningPolicy)
class DunningPolicyAdmin(BillingAdminMixin, admin.ModelAdmin):
    """The one dunning policy: finance edits the retry days, the final action and the wallet freeze."""

    list_display = ["__str__", "retry_days_display", "final_action", "freeze_wallet", "updated_at"]
    fields = ["retry_days", "final_action", "freeze_wallet", "updated_at"]
    readonly_fields = ["updated_at"]

    @admin.display(description="Retry days")
    def retry_days_display(self, obj: DunningPolicy) -> str:
        return ", ".join(str(d) for d in obj.retry_days) or "—"

    def has_add_permission(self, request, *args):
        return not DunningPolicy.objects.exists() and super().has_add_permission(request, *args)

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        dunning_policy_get()  # the one row exists, with the defaults, before finance first opens it
        return super().changelist_view(request, extra_context)


class DunningAttemptInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = DunningAttempt
    fields = ["number", "scheduled_for", "attempted_at", "status", "payment", "payment_intent_id", "failure_code",
              "failure_message", "mailed"]
    readonly_fields = fields
    extra = 0


@admin.register(Dunning)
class DunningAdmin(BillingAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Dunnings and their retries: read-only (written by payments.dunning)."""

    list_display = ["__str__", "team", "invoice", "status", "amount", "currency", "attempts", "next_attempt_at",
                    "started_at", "ended_at"]
    list_filter = ["status", "final_action", "currency"]
    search_fields = ["invoice__number", "team__name", "team__slug"]
    list_select_related = ["team", "invoice"]
    date_hierarchy = "started_at"
    fields = ["invoice", "team", "subscription", "status", "amount", "currency", "retry_days", "final_action",
              "freeze_wallet", "started_at", "attempts", "next_attempt_at", "ended_at", "final_action_taken",
              "frozen_wallet_ids", "recovered_by", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [DunningAttemptInline]


@admin.register(DunningAttempt)
class DunningAttemptAdmin(BillingAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every retry of every dunning: read-only."""

    list_display = ["__str__", "dunning", "number", "status", "scheduled_for", "attempted_at", "failure_code", "mailed"]
    list_filter = ["status", "failure_code"]
    search_fields = ["payment_intent_id", "dunning__invoice__number", "dunning__team__name"]
    list_select_related = ["dunning"]
    date_hierarchy = "attempted_at"
    show_full_result_count = False


@admin.register(StripeEvent)
class StripeEventAdmin(BillingAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The Stripe events received, once each, with what they did: read-only."""

    list_display = ["event_id", "type", "outcome", "result", "team", "created", "received_at"]
    list_filter = ["outcome", "type", "livemode"]
    search_fields = ["event_id", "object_id", "type"]
    list_select_related = ["team"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = ["event_id", "type", "livemode", "object_id", "created", "received_at", "outcome", "result", "team",
              "payload"]
    readonly_fields = fields
