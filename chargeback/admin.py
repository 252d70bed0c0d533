"""Finance admin for the chargeback core: teams, usage, the price catalog, rules and runs.

Usage records and allocation runs are read-only here: usage arrives by import or API, and runs are
made by the billing run. Rules and prices are edited by finance.
"""

from django.contrib import admin

from billing_site.admin import ReadOnlyAdminMixin

from .models import (
    AllocatedCost,
    AllocationRule,
    AllocationRun,
    AllocationTarget,
    Price,
    Team,
    TeamMembership,
    UsageRecord,
)


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "cost_center", "parent", "currency", "is_active"]
    list_filter = ["is_active", "currency"]
    search_fields = ["name", "slug", "cost_center"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["parent"]
    list_select_related = ["parent"]
    inlines = [TeamMembershipInline]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "occurred_at", "team", "resource_type", "provider", "service_name", "quantity", "unit", "cost", "currency",
        "source",
    ]
    list_filter = ["source", "resource_type", "provider", "charge_category", "billing_period_start"]
    search_fields = ["idempotency_key", "external_reference", "resource_id", "team__name", "service_name"]
    date_hierarchy = "occurred_at"
    list_select_related = ["team", "user"]
    show_full_result_count = False


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ["category", "provider", "model", "unit", "unit_price", "currency", "team", "valid_from", "valid_to"]
    list_filter = ["category", "provider", ("team", admin.EmptyFieldListFilter)]
    search_fields = ["category", "provider", "model", "team__name"]
    autocomplete_fields = ["team"]
    list_select_related = ["team"]


class AllocationTargetInline(admin.TabularInline):
    model = AllocationTarget
    extra = 0
    autocomplete_fields = ["team", "user"]


@admin.register(AllocationRule)
class AllocationRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "rule_type", "source", "source_team", "priority", "enabled", "valid_from", "valid_to"]
    list_filter = ["rule_type", "enabled", "source"]
    search_fields = ["name", "description"]
    autocomplete_fields = ["scope_team", "source_team"]
    list_select_related = ["source_team"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [AllocationTargetInline]


class AllocatedCostInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = AllocatedCost
    fields = ["team", "user", "rule", "service", "quantity", "unit", "amount", "currency", "record_count"]
    readonly_fields = fields
    extra = 0
    show_change_link = False


@admin.register(AllocationRun)
class AllocationRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "__str__", "period_start", "period_end", "status", "total_cost", "allocated_cost", "unallocated_cost",
        "currency", "committed_at",
    ]
    list_filter = ["status", "period_start"]
    list_select_related = ["created_by"]
    inlines = [AllocatedCostInline]


# --- API keys (issue 5): a self-contained block, appended; nothing above depends on it. -------------
from django.contrib import messages as _messages  # noqa: E402 - kept inside this block on purpose

from chargeback.models import ApiKey as _ApiKey  # noqa: E402
from chargeback.services import api_key_create as _api_key_create  # noqa: E402
from chargeback.services import api_key_revoke as _api_key_revoke  # noqa: E402


@admin.register(_ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Team API keys: finance creates one (team and name), sees the full key once, and revokes it.

    Only the SHA-256 of a key is stored; the admin shows its prefix. Keys are never edited or
    deleted (revoking keeps who used what auditable).
    """

    list_display = ["prefix", "name", "team", "created_by", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "team__name", "team__slug"]
    list_select_related = ["team", "created_by"]
    autocomplete_fields = ["team"]
    actions = ["revoke_keys"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["team", "name"]
        return ["prefix", "name", "team", "created_by", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request, obj, form, change):
        if change:
            return  # nothing on a key is editable
        key = _api_key_create(team=obj.team, name=obj.name, created_by=request.user)
        obj.pk, obj.prefix, obj._state.adding = key.pk, key.prefix, False
        self.message_user(
            request,
            f"The API key for {key.team} is {key.raw_key} — copy it now: it is shown only this once "
            f"(only its hash is stored). Send it as 'Authorization: Api-Key {key.raw_key}'.",
            _messages.WARNING,
        )

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            _api_key_revoke(api_key=key)
        self.message_user(request, "Revoked.", _messages.SUCCESS)
