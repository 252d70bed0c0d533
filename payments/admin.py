"""The finance admin of payments: every attempt (and its refunds) as a read-only list with filters.

The changelist says whether payments go through Stripe ("Payments: Stripe (test mode)") or not
("Payments: not configured"). No key or secret is ever shown: the mode is read from the key's prefix.
"""

from __future__ import annotations

from django.contrib import admin

from billing_site.admin_mixins import BillingAdminMixin, ReadOnlyAdminMixin
from billing_site.money import format_amount

from .models import Payment, Refund
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
    list_filter = ["status", "kind", "currency", ("created_at", admin.DateFieldListFilter)]
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
