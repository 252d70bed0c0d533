"""Finance admin for wallets: balances, money-moving actions, the ledger and its CSV export.

Money moves only through ``wallets.services``: the "Top up…" and "Grant credits…" actions open an
intermediate form whose idempotency key is made when the form is rendered, so a double-submitted
form credits once. The ledger is append-only (no add, change or delete, no delete action); grants,
holds and events are written by the services only. Billing settings are plain configuration and
are edited here (their changes are in the audit trail).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing_site.admin_mixins import (
    BillingAdminMixin,
    ExportAdminMixin,
    FragmentSearchMixin,
    LargeTableAdminMixin,
    ReadOnlyAdminMixin,
    json_column,
    money_column,
    money_html,
    number_column,
    readable_fields,
)
from billing_site.errors import BillingError
from billing_site.formatting import money_display
from teams.models import Team
from teams.selectors import billing_settings_get, user_is_finance

from .forms import GrantForm, TopUpForm, WalletOpenForm
from .models import LEDGER_SEARCH_TEXT, CreditGrant, Hold, LedgerEntry, UsageEvent, UsageEventItem, Wallet
from .resources import LedgerEntryResource, WalletResource
from .selectors import wallets_below_warning
from .services.posting import wallet_grant, wallet_top_up
from .services.wallets import wallet_freeze, wallet_open, wallet_unfreeze


class BelowWarningFilter(admin.SimpleListFilter):
    """Wallets whose balance is under their team's warning threshold (the dashboard's list)."""

    title = "balance"
    parameter_name = "below_warning"

    def lookups(self, request, model_admin):
        return [("yes", "Below the warning threshold")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return wallets_below_warning(queryset)
        return queryset


class LowBalanceWarnedFilter(admin.SimpleListFilter):
    """Wallets whose team was (or was not yet) e-mailed that the balance is low, in words."""

    title = "low-balance warning"
    parameter_name = "low_balance_warned"

    def lookups(self, request, model_admin):
        return [("1", "Warned"), ("0", "Not warned")]

    def queryset(self, request, queryset):
        if self.value() in ("0", "1"):
            return queryset.filter(low_balance_warned=self.value() == "1")
        return queryset


@admin.register(Wallet)
class WalletAdmin(BillingAdminMixin, ExportAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    resource_classes = [WalletResource]  # Export CSV / XLSX (ExportAdminMixin)
    list_display = ["pk", "team", "user", "status", "balance_display", "reserved_display", "available_display",
                    "granted_display", "warned_display", "updated_at"]
    list_display_links = ["pk", "team"]
    list_filter = ["status", BelowWarningFilter, "currency", LowBalanceWarnedFilter]
    search_fields = ["team__name", "team__slug", "user__username"]
    list_select_related = ["team__billing_settings", "user"]
    readonly_fields = ["team", "user", "currency", "status", "balance_display", "reserved_display",
                       "available_display", "granted_display", "last_top_up_display", "warned_display",
                       "created_at", "updated_at", "ledger_link"]
    fields = readonly_fields
    actions = ["top_up_action", "grant_action", "freeze_action", "unfreeze_action"]
    change_form_template = "admin/wallets/wallet/change_form.html"

    # --- opening a wallet (finance): before the first top-up or charge ---------------------------
    add_fields = ["team", "user", "currency"]

    def has_add_permission(self, request):
        return user_is_finance(request.user)

    def get_fields(self, request, obj=None):
        return self.add_fields if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = WalletOpenForm
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        # Opened by the service (the live wallet if one is already open), never saved here.
        if not change:
            data = form.cleaned_data
            obj.pk = wallet_open(team=data["team"], user=data.get("user"), currency=data["currency"]).pk

    def save_related(self, request, form, formsets, change):
        pass  # a wallet has no related rows to save with it

    # --- figures -----------------------------------------------------------------------------
    balance_display = money_column("balance", "Balance")
    reserved_display = money_column("reserved", "Reserved")
    granted_display = money_column("granted_balance", "Granted (unspent)")
    last_top_up_display = money_column("last_top_up_amount", "Last top-up")

    @admin.display(description="Available")
    def available_display(self, obj):
        return money_html(obj.available(billing_settings_get(team=obj.team)), obj.currency)

    @admin.display(description="Low-balance warning", ordering="low_balance_warned")
    def warned_display(self, obj):
        """A label, not a tick: "Warned" once the team was e-mailed about the low balance."""
        if obj.low_balance_warned:
            return format_html('<span class="label label-warn">{}</span>', "Warned")
        return "Not warned"

    @admin.display(description="Ledger")
    def ledger_link(self, obj):
        url = reverse("admin:wallets_ledgerentry_changelist") + f"?wallet__id__exact={obj.pk}"
        return format_html('<a href="{}">Ledger entries of this wallet</a>', url)

    # --- permissions of the custom actions ---------------------------------------------------
    def _has(self, request, codename: str) -> bool:
        return user_is_finance(request.user) and request.user.has_perm(f"wallets.{codename}")

    def has_top_up_permission(self, request):
        return self._has(request, "top_up")

    def has_grant_permission(self, request):
        return self._has(request, "grant")

    def has_freeze_permission(self, request):
        return self._has(request, "freeze")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "has_top_up": self.has_top_up_permission(request),
                         "has_grant": self.has_grant_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- actions -----------------------------------------------------------------------------
    def _to_form(self, queryset, url_name):
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse(url_name)}?ids={ids}")

    @admin.action(description="Top up…", permissions=["top_up"])
    def top_up_action(self, request, queryset):
        return self._to_form(queryset, "admin:wallets_wallet_top_up")

    @admin.action(description="Grant credits…", permissions=["grant"])
    def grant_action(self, request, queryset):
        return self._to_form(queryset, "admin:wallets_wallet_grant")

    def _set_status(self, request, queryset, service, done: str):
        changed = 0
        for wallet in queryset.order_by("pk"):
            try:
                service(wallet=wallet)
                changed += 1
            except BillingError as exc:
                self.message_user(request, f"Wallet #{wallet.pk} ({wallet.team}): {exc.message}", messages.ERROR)
        if changed:
            self.message_user(request, f"{changed} wallet(s) {done}.", messages.SUCCESS)

    @admin.action(description="Freeze selected wallets", permissions=["freeze"])
    def freeze_action(self, request, queryset):
        self._set_status(request, queryset, wallet_freeze, "frozen: charges and holds are refused")

    @admin.action(description="Unfreeze selected wallets", permissions=["freeze"])
    def unfreeze_action(self, request, queryset):
        self._set_status(request, queryset, wallet_unfreeze, "active again")

    # --- the intermediate forms --------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("top-up/", view(self.top_up_view), name="wallets_wallet_top_up"),
            path("grant/", view(self.grant_view), name="wallets_wallet_grant"),
        ] + super().get_urls()

    def top_up_view(self, request):
        if not self.has_top_up_permission(request):
            raise PermissionDenied
        return self._credit_view(request, TopUpForm, "Top up", LedgerEntry.EntryType.TOP_UP, self._top_up)

    def grant_view(self, request):
        if not self.has_grant_permission(request):
            raise PermissionDenied
        return self._credit_view(request, GrantForm, "Grant credits", LedgerEntry.EntryType.GRANT, self._grant)

    @staticmethod
    def _top_up(request, form, wallet):
        data = form.cleaned_data
        return wallet_top_up(
            wallet=wallet, amount=data["amount"], idempotency_key=form.key_for(wallet.pk),
            description=data["description"],
            reference_type="external_payment" if data["reference_id"] else "admin_action",
            reference_id=data["reference_id"], created_by=request.user,
        )

    @staticmethod
    def _grant(request, form, wallet):
        data = form.cleaned_data
        return wallet_grant(
            wallet=wallet, amount=data["amount"], idempotency_key=form.key_for(wallet.pk),
            expires_at=data["expires_at"], description=data["description"], created_by=request.user,
        )

    def _credit_view(self, request, form_class, title, entry_type, credit):
        source = request.POST if request.method == "POST" else request.GET
        try:
            ids = [int(part) for part in source.get("ids", "").split(",") if part]
        except ValueError:
            return HttpResponseBadRequest("ids must be wallet numbers separated by commas")
        wallets = list(self.get_queryset(request).filter(pk__in=ids).order_by("pk"))
        changelist = reverse("admin:wallets_wallet_changelist")
        if not wallets:
            self.message_user(request, "Choose at least one wallet first.", messages.WARNING)
            return HttpResponseRedirect(changelist)
        form = form_class(request.POST) if request.method == "POST" else form_class()
        if request.method == "POST" and form.is_valid():
            done = []
            for wallet in wallets:
                key = form.key_for(wallet.pk)
                # A read for the message only: the service itself makes the replay harmless.
                seen = LedgerEntry.objects.filter(wallet=wallet, entry_type=entry_type, idempotency_key=key).exists()
                try:
                    entry = credit(request, form, wallet)
                except BillingError as exc:
                    form.add_error(exc.param if exc.param in form.fields else None,
                                   f"Wallet #{wallet.pk} ({wallet.team}): {exc.message}")
                    break
                done.append((wallet, entry, seen))
            for wallet, entry, seen in done:
                amount = money_display(entry.amount, entry.currency)
                if seen:
                    self.message_user(
                        request, f"This form was already submitted: {title.lower()} of {amount} to {wallet.team} "
                        f"is recorded once (ledger entry #{entry.pk}).", messages.WARNING,
                    )
                else:
                    self.message_user(
                        request, f"{title} of {amount} to {wallet.team}: ledger entry #{entry.pk}, balance now "
                        f"{money_display(entry.balance_after, entry.currency)}.", messages.SUCCESS,
                    )
            if form.is_valid():
                return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{title}: {len(wallets)} wallet(s)",
            "opts": self.model._meta,
            "form": form,
            "wallets": wallets,
            "ids": ",".join(str(w.pk) for w in wallets),
            "submit_label": title,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/wallets/wallet/credit_form.html", context)


class LedgerTeamFilter(admin.SimpleListFilter):
    """The wallet's team, by name; one query on teams, none on the (large) ledger."""

    title = "team"
    parameter_name = "team"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in Team.objects.order_by("name").values_list("pk", "name")]

    def queryset(self, request, queryset):
        if self.value():
            try:
                return queryset.filter(wallet__team_id=int(self.value()))
            except ValueError:
                raise IncorrectLookupParameters(f"team must be a number, got {self.value()!r}") from None
        return queryset


class LedgerCurrencyFilter(admin.SimpleListFilter):
    """Currency, offered from the wallets (a small table), never by a DISTINCT over the ledger."""

    title = "currency"
    parameter_name = "currency"

    def lookups(self, request, model_admin):
        currencies = Wallet.objects.order_by("currency").values_list("currency", flat=True).distinct()
        return [(c, c) for c in currencies]

    def queryset(self, request, queryset):
        return queryset.filter(currency=self.value()) if self.value() else queryset


@admin.register(LedgerEntry)
class LedgerEntryAdmin(BillingAdminMixin, ExportAdminMixin, LargeTableAdminMixin, FragmentSearchMixin, ReadOnlyAdminMixin,
                       admin.ModelAdmin):
    resource_classes = [LedgerEntryResource]  # Export CSV / XLSX (ExportAdminMixin)
    export_filename = "ledger"
    list_display = ["pk", "created_at", "wallet_team", "entry_type", "amount_display", "balance_after_display",
                    "reserved_delta_display", "reference_type", "reference_id", "idempotency_key"]
    list_filter = ["entry_type", LedgerTeamFilter, LedgerCurrencyFilter]
    search_fields = ["description", "reference_id", "idempotency_key"]  # searched by FragmentSearchMixin:
    search_text = LEDGER_SEARCH_TEXT  # a fragment of these (one trigram index),
    search_team_path = "wallet__team"  # or of the team's name or slug
    search_help_text = "A fragment of the description, reference (payment, invoice number, hold), key or team name."
    date_hierarchy = "created_at"
    list_select_related = ["wallet__team", "wallet__user"]
    show_full_result_count = False
    raw_id_fields = ["wallet", "created_by"]
    change_list_template = "admin/wallets/ledgerentry/change_list.html"

    @admin.display(description="Team", ordering="wallet__team__name")
    def wallet_team(self, obj):
        wallet = obj.wallet
        return f"{wallet.team} / {wallet.user}" if wallet.user_id else str(wallet.team)

    amount_display = money_column("amount", "Amount")
    balance_after_display = money_column("balance_after", "Balance after")

    @admin.display(description="Reserved change", ordering="reserved_delta")
    def reserved_delta_display(self, obj):
        """Empty ("-") when the entry moved no reservation (most do), instead of "0.000000000000"."""
        return money_html(obj.reserved_delta, obj.currency) if obj.reserved_delta else ""

    def get_fields(self, request, obj=None):
        return self.detail_fields

    #: The entry's page: amounts in their currency (exact figures), reservation moves only when there are.
    detail_fields = ["wallet", "entry_type", "amount_exact", "balance_before_exact", "balance_after_exact",
                     "reserved_exact", "currency", "description", "feature_key", "reference_type", "reference_id",
                     "idempotency_key", "created_by", "created_at"]
    readonly_fields = detail_fields
    amount_exact = money_column("amount", "Amount", exact=True)
    balance_before_exact = money_column("balance_before", "Balance before", exact=True)
    balance_after_exact = money_column("balance_after", "Balance after", exact=True)

    @admin.display(description="Reserved")
    def reserved_exact(self, obj):
        if not obj.reserved_delta:
            return "No change"
        return format_html("{} → {} (change {})", money_html(obj.reserved_before, obj.currency),
                           money_html(obj.reserved_after, obj.currency), money_html(obj.reserved_delta, obj.currency))


@admin.register(CreditGrant)
class CreditGrantAdmin(BillingAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "wallet", "amount_display", "remaining_display", "expires_at", "expired_at", "created_at"]
    list_filter = [("expires_at", admin.EmptyFieldListFilter)]
    list_select_related = ["wallet__team", "wallet__user"]
    raw_id_fields = ["wallet", "entry"]
    fields = readonly_fields = readable_fields(CreditGrant, amount="amount_display", remaining="remaining_display")
    amount_display = money_column("amount", "Amount", currency="wallet.currency")
    remaining_display = money_column("remaining", "Remaining", currency="wallet.currency")


@admin.register(Hold)
class HoldAdmin(BillingAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "wallet", "amount_display", "captured_display", "released_display", "status", "expires_at",
                    "created_at"]
    list_filter = ["status"]
    list_select_related = ["wallet__team", "wallet__user"]
    raw_id_fields = ["wallet", "created_by"]
    amount_display = money_column("amount", "Amount", currency="wallet.currency")
    captured_display = money_column("captured_amount", "Captured", currency="wallet.currency")
    released_display = money_column("released_amount", "Released", currency="wallet.currency")

    fields = readonly_fields = readable_fields(Hold, amount="amount_display", captured_amount="captured_display",
                                               released_amount="released_display")


class UsageEventItemInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = UsageEventItem
    extra = 0
    fields = ["position", "category", "provider", "model", "unit", "quantity_display", "unit_price_display",
              "cost_display", "usage_record"]
    readonly_fields = fields
    quantity_display = number_column("quantity", "Quantity")
    unit_price_display = money_column("unit_price", "Unit price", metered=True)
    cost_display = money_column("cost", "Cost")


@admin.register(UsageEvent)
class UsageEventAdmin(BillingAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["pk", "created_at", "team", "user", "feature_key", "status", "rejection_code", "total_display"]
    list_filter = ["status", "rejection_code", "currency"]
    search_fields = ["idempotency_key", "external_reference_id", "feature_key", "team__name"]
    date_hierarchy = "created_at"
    list_select_related = ["team", "user"]
    show_full_result_count = False
    inlines = [UsageEventItemInline]

    fields = readonly_fields = readable_fields(UsageEvent, total="total_exact", metadata="metadata_display")
    total_display = money_column("total", "Total")
    total_exact = money_column("total", "Total", exact=True)
    metadata_display = json_column("metadata", "Metadata")
