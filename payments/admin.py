"""The finance admin of payments: every attempt (and its refunds) as a read-only list with filters; the
dunning policy (editable), dunnings and their retries, and the Stripe events received (read-only).

The changelist says whether payments go through Stripe ("Payments: Stripe (test mode)") or not
("Payments: not configured"). No key or secret is ever shown: the mode is read from the key's prefix.
"""

from __future__ import annotations

from django.contrib import admin

from billing_site.admin_mixins import BillingAdminMixin, DateRangeFilter, ReadOnlyAdminMixin
from billing_site.money import format_amount

from .models import Dunning, DunningAttempt, DunningPolicy, Payment, Refund, StripeEvent
from .services.dunning import dunning_policy_get
from .stripe_client import payments_configured, payments_mode


class RefundInline(BillingAdminMixin, admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ["created_at", "status", "amount", "currency", "stripe_refund_id", "credit_note", "failure_message"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Payment)
class PaymentAdmin(BillingAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "created_at", "team", "kind", "status", "amount_display", "refunded_display", "invoice",
                    "stripe_charge_id", "stripe_customer_id", "failure_code"]
    list_filter = ["status", "kind", "currency", ("created_at", DateRangeFilter)]
    search_fields = ["team__name", "invoice__number", "stripe_payment_intent_id", "stripe_charge_id",
                     "stripe_customer_id"]
    search_help_text = "Team, invoice number, or a Stripe id (pi_…, ch_…, cus_…)."
    list_select_related = ["team", "invoice"]
    date_hierarchy = "created_at"
    inlines = [RefundInline]

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj):
        return format_amount(obj.amount, obj.currency)

    @admin.display(description="Refunded", ordering="amount_refunded")
    def refunded_display(self, obj):
        return format_amount(obj.amount_refunded, obj.currency) if obj.amount_refunded else "—"

    def changelist_view(self, request, extra_context=None):
        extra = {"payments_configured": payments_configured(), "payments_mode": payments_mode(), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)


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
