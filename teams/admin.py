"""Finance admin for teams: their members, billing settings and API keys.

Teams and billing settings are edited by finance; their changes are in the audit trail
(django-auditlog, the objects' "History"). Billing settings change only through their service
(validation, row lock), never a raw save. API keys are created by finance, shown once, and revoked,
never edited or deleted.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing_site.admin_mixins import (
    AuditHistoryAdminMixin,
    BillingAdminMixin,
    CommaListField,
    ExportAdminMixin,
    money_html,
)
from billing_site.formatting import number_display
from teams.models import ApiKey, BillingSettings, Team, TeamMembership
from teams.resources import TeamResource
from teams.services import api_key_create, api_key_revoke, billing_settings_update


class TeamMembershipInline(BillingAdminMixin, admin.TabularInline):
    model = TeamMembership
    extra = 0
    autocomplete_fields = ["user"]


class ThresholdDisplayMixin:
    """The warning threshold as people read it: ``10 %`` of the last top-up, or an amount."""

    @admin.display(description="Warning threshold", ordering="warning_threshold_value")
    def threshold_display(self, obj):
        if obj.warning_threshold_type == BillingSettings.ThresholdType.ABSOLUTE:
            return money_html(obj.warning_threshold_value, obj.team.currency)
        return format_html('<span class="number">{} % of the last top-up</span>',
                           number_display(obj.warning_threshold_value))

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # Provider names and currency codes as "a, b" text rather than a JSON box showing "[]".
        if db_field.name in ("allowed_providers", "extra_currencies"):
            return CommaListField(required=False, label=db_field.verbose_name.capitalize(),
                                  help_text=f"{db_field.help_text} Comma-separated.".replace(', e.g. ["EUR"]', ""))
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class BillingSettingsInline(ThresholdDisplayMixin, BillingAdminMixin, admin.StackedInline):
    """The team's billing settings, saved through ``teams.services.billing_settings_update``."""

    model = BillingSettings
    can_delete = False
    max_num = 1
    extra = 0
    fields = ["billing_model", "credit_limit", "block_on_zero_balance", "warning_threshold_type",
              "warning_threshold_value", "notify_on_warning", "notify_emails", "billing_address",
              "allowed_providers", "extra_currencies", "invoice_currency", "tax_rate", "payment_terms_days",
              "automatic_collection"]


@admin.register(Team)
class TeamAdmin(BillingAdminMixin, ExportAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    resource_classes = [TeamResource]  # Export CSV / XLSX (ExportAdminMixin)
    list_display = ["name", "slug", "cost_center", "parent", "currency", "is_active", "wallet_balances"]
    list_filter = ["is_active", "currency"]
    search_fields = ["name", "slug", "cost_center"]
    search_help_text = "Name, slug or cost center."
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["parent"]
    list_select_related = ["parent"]
    readonly_fields = ["wallet_balances", "money_links"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "cost_center", "parent", "currency", "is_active"]}),
        ("Money", {"fields": ["wallet_balances", "money_links"]}),
    ]
    inlines = [TeamMembershipInline, BillingSettingsInline]

    def get_queryset(self, request):
        # One query for every shown team's wallets, not one per row.
        return super().get_queryset(request).prefetch_related("wallets")

    @admin.display(description="Wallet balances")
    def wallet_balances(self, obj):
        if obj.pk is None:
            return "—"
        wallets = [w for w in obj.wallets.all() if w.status != "closed"]
        if not wallets:
            return "no wallet"
        return format_html_join(
            ", ", '<a href="{}">{}{}</a>',
            (
                (reverse("admin:wallets_wallet_change", args=[w.pk]), money_html(w.balance, w.currency),
                 f" ({w.user})" if w.user_id else "" if w.status == "active" else f" ({w.status})")
                for w in sorted(wallets, key=lambda w: (w.user_id or 0, w.currency))
            ),
        )

    @admin.display(description="See")
    def money_links(self, obj):
        if obj.pk is None:
            return "—"
        links = [
            ("Ledger", reverse("admin:wallets_ledgerentry_changelist") + f"?team={obj.pk}"),
            ("Usage", reverse("admin:chargeback_usagerecord_changelist") + f"?team={obj.pk}"),
            ("Invoices", reverse("admin:invoices_invoice_changelist") + f"?team__id__exact={obj.pk}"),
            ("Price overrides", reverse("admin:chargeback_price_changelist") + f"?team__id__exact={obj.pk}"),
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', ((url, label) for label, url in links))

    def save_formset(self, request, form, formset, change):
        if formset.model is not BillingSettings:
            return super().save_formset(request, form, formset, change)
        # Billing settings change through their service (validation, row lock), never a raw save.
        for inline_form in formset.forms:
            if not inline_form.has_changed() or not inline_form.cleaned_data:
                continue
            changes = {name: inline_form.cleaned_data[name] for name in BillingSettingsInline.fields}
            billing_settings_update(team=form.instance, **changes)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []


@admin.register(BillingSettings)
class BillingSettingsAdmin(ThresholdDisplayMixin, BillingAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    list_display = ["team", "billing_model", "credit_limit_display", "block_on_zero_balance", "threshold_display",
                    "tax_rate_display", "payment_terms_days"]
    list_filter = ["billing_model", "block_on_zero_balance"]
    search_fields = ["team__name", "team__slug"]
    autocomplete_fields = ["team"]
    list_select_related = ["team"]

    @admin.display(description="Credit limit", ordering="credit_limit")
    def credit_limit_display(self, obj):
        """Postpaid teams' limit; other billing models have none ("—", not "0.00 USD")."""
        if obj.billing_model != BillingSettings.BillingModel.POSTPAID:
            return "—"
        return money_html(obj.credit_limit, obj.team.currency)

    @admin.display(description="Tax rate", ordering="tax_rate")
    def tax_rate_display(self, obj):
        return format_html('<span class="number">{} %</span>', number_display(obj.tax_rate))


@admin.register(ApiKey)
class ApiKeyAdmin(BillingAdminMixin, admin.ModelAdmin):
    """Team API keys: finance creates one (team and name), sees the full key once, and revokes it.

    Scoped like every billing admin (``BillingAdminMixin``): finance writes, auditors read, other
    staff see nothing.

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
        key = api_key_create(team=obj.team, name=obj.name, created_by=request.user)
        obj.pk, obj.prefix, obj._state.adding = key.pk, key.prefix, False
        self.message_user(
            request,
            f"The API key for {key.team} is {key.raw_key} — copy it now: it is shown only this once "
            f"(only its hash is stored). Send it as 'Authorization: Api-Key {key.raw_key}'.",
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke_keys(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            api_key_revoke(api_key=key)
        self.message_user(request, "Revoked.", messages.SUCCESS)
