"""Finance admin for wallets: read-only views of wallets, the ledger, grants, holds and usage events.

Money never moves from a form here: the ledger is append-only (no add, change or delete, no delete
action), and wallets, grants, holds and events are written by ``wallets.services`` only. Billing
settings are plain configuration and are edited here.
"""

from django.contrib import admin

from billing_site.admin import ReadOnlyAdminMixin

from .models import BillingSettings, CreditGrant, Hold, IdempotencyRecord, LedgerEntry, UsageEvent, UsageEventItem, Wallet


@admin.register(BillingSettings)
class BillingSettingsAdmin(admin.ModelAdmin):
    list_display = ["team", "billing_model", "credit_limit", "block_on_zero_balance", "warning_threshold_type",
                    "warning_threshold_value", "tax_rate", "payment_terms_days"]
    list_filter = ["billing_model", "block_on_zero_balance"]
    search_fields = ["team__name", "team__slug"]
    autocomplete_fields = ["team"]
    list_select_related = ["team"]


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "team", "user", "currency", "balance", "reserved", "granted_balance", "status",
                    "low_balance_warned", "updated_at"]
    list_filter = ["status", "currency", "low_balance_warned"]
    search_fields = ["team__name", "team__slug", "user__username"]
    list_select_related = ["team", "user"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "created_at", "wallet", "entry_type", "amount", "reserved_delta", "balance_after",
                    "currency", "feature_key", "reference_type", "reference_id"]
    list_filter = ["entry_type", "currency"]
    search_fields = ["idempotency_key", "reference_id", "feature_key", "description"]
    date_hierarchy = "created_at"
    list_select_related = ["wallet__team", "wallet__user"]
    show_full_result_count = False
    raw_id_fields = ["wallet", "created_by"]


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "wallet", "amount", "remaining", "expires_at", "expired_at", "created_at"]
    list_filter = [("expires_at", admin.EmptyFieldListFilter)]
    list_select_related = ["wallet__team"]
    raw_id_fields = ["wallet", "entry"]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "wallet", "amount", "captured_amount", "released_amount", "status", "expires_at", "created_at"]
    list_filter = ["status"]
    list_select_related = ["wallet__team"]
    raw_id_fields = ["wallet", "created_by"]


class UsageEventItemInline(admin.TabularInline):
    model = UsageEventItem
    extra = 0
    can_delete = False
    fields = ["position", "category", "provider", "model", "unit", "quantity", "unit_price", "cost", "currency",
              "usage_record"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "created_at", "team", "user", "feature_key", "status", "rejection_code", "total", "currency"]
    list_filter = ["status", "rejection_code", "currency"]
    search_fields = ["idempotency_key", "external_reference_id", "feature_key", "team__name"]
    date_hierarchy = "created_at"
    list_select_related = ["team", "user"]
    show_full_result_count = False
    inlines = [UsageEventItemInline]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "scope", "key", "operation", "result_type", "result_id"]
    search_fields = ["key", "scope"]
    date_hierarchy = "created_at"
    show_full_result_count = False
