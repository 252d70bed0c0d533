"""Finance admin for the chargeback core: teams, usage, the price catalog, rules and billing runs.

Usage records and allocation runs are read-only here: usage arrives by import ("Import FOCUS
file…") or the API, and runs are made by "Run billing for a period…" (the admin site's view,
``billing_site.admin``, calling the billing run service). Finance corrects usage through two
audited services only: "Void…" (an action: the records are kept, marked void, and left out of
later allocations) and "Record an adjustment…" (a usage record of source ``adjustment``, negative
to credit a team). Rules, prices, teams and billing settings are edited by finance; their
changes are in the audit trail (django-auditlog, the objects' "History").
"""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid

from auditlog.models import LogEntry
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import FileResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from billing_site.admin_mixins import (
    AuditHistoryAdminMixin,
    BillingAdminMixin,
    DateRangeFilter,
    ExportAdminMixin,
    FragmentSearchMixin,
    LargeTableAdminMixin,
    ReadOnlyAdminMixin,
    json_column,
    money_column,
    money_exact_html,
    money_html,
    number_column,
    period_column,
    readable_fields,
    user_may_run_billing,
)
from billing_site.errors import BillingError
from billing_site.formatting import money_display, month_display
from chargeback.errors import TeamMappingError
from chargeback.focus.export import FORMATS as FOCUS_FORMATS
from chargeback.focus.export import focus_export_write
from chargeback.focus.uploads import FocusUploadHandler, UploadTokenError, focus_upload_path
from chargeback.forms import (
    AllocationTargetFormSet,
    FocusUploadForm,
    PriceAdminForm,
    UsageAdjustmentForm,
    UsageVoidForm,
)
from chargeback.periods import BillingPeriod, PeriodError, month_start
from chargeback.services.focus_import import focus_upload_request
from chargeback.services.team_mapping import (
    team_mapping_check,
    team_mapping_create_team,
    team_mapping_end,
    team_mapping_set,
)
from chargeback.services.usage import usage_adjustment_record, usage_record_void
from jobs.models import JobProgress
from teams.models import Team
from teams.selectors import user_is_finance

from .models import (
    USAGE_SEARCH_TEXT,
    AllocatedCost,
    AllocationRule,
    AllocationRun,
    AllocationTarget,
    Price,
    TeamMapping,
    UsageRecord,
)
from .resources import AllocatedCostResource, AllocationRunResource, UsageRecordResource

# --- Usage ---------------------------------------------------------------------------------------


class UsageTeamFilter(admin.SimpleListFilter):
    """The record's team by name, or the unallocated pool; one query on teams, none on usage."""

    title = "team"
    parameter_name = "team"
    NONE = "none"

    def lookups(self, request, model_admin):
        return [(self.NONE, "No team (unallocated pool)")] + [
            (str(pk), name) for pk, name in Team.objects.order_by("name").values_list("pk", "name")
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == self.NONE:
            return queryset.filter(team__isnull=True)
        if not value.isdigit():
            raise IncorrectLookupParameters(f"team must be a team number or 'none', got {value!r}")
        return queryset.filter(team_id=int(value))


class UsagePeriodFilter(admin.SimpleListFilter):
    """Billing period (``billing_period_start``): the last 24 months, computed, not read from usage.

    The parameter also takes a quarter (``2026-Q4``) or a year (``2026``): the dashboard's links.
    """

    title = "billing period"
    parameter_name = "period"
    MONTHS = 24

    def lookups(self, request, model_admin):
        months, day = [], month_start(dt.date.today())
        for _ in range(self.MONTHS):
            months.append((f"{day:%Y-%m}", f"{day:%B %Y}"))
            day = month_start(day - dt.timedelta(days=1))
        return months

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            period = BillingPeriod.parse(self.value())
        except PeriodError:
            raise IncorrectLookupParameters(f"period must be YYYY-MM, YYYY-Qn or YYYY, got {self.value()!r}") from None
        if period.kind == "month":
            return queryset.filter(billing_period_start=period.start)
        return queryset.filter(billing_period_start__gte=period.start, billing_period_start__lt=period.end)


class _CachedValuesFilter(admin.SimpleListFilter):
    """Distinct values of one usage column; the DISTINCT scans the table, so it is cached ten minutes."""

    column = ""

    def lookups(self, request, model_admin):
        key = f"admin:usage-distinct:{self.column}"
        values = cache.get(key)
        if values is None:
            values = list(
                UsageRecord.objects.order_by(self.column).values_list(self.column, flat=True).distinct()[:200]
            )
            cache.set(key, values, 600)
        if self.value() is not None and self.value() not in values:
            values = [*values, self.value()]  # a value newer than the cached list still filters
        return [(v, v or "(empty)") for v in values]

    def has_output(self):
        return True  # even while the cached list is empty: the filter must still apply

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.column: self.value()})


class UsageProviderFilter(_CachedValuesFilter):
    title = "provider"
    parameter_name = "provider"
    column = "provider"


class UsageResourceTypeFilter(_CachedValuesFilter):
    title = "resource type"
    parameter_name = "resource_type"
    column = "resource_type"


#: Most usage records one "Void…" sends to the service (a void is read, checked and audited one by one).
VOID_MAX_RECORDS = 100


@admin.register(UsageRecord)
class UsageRecordAdmin(BillingAdminMixin, ExportAdminMixin, LargeTableAdminMixin, FragmentSearchMixin,
                       AuditHistoryAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    resource_classes = [UsageRecordResource]  # Export CSV / XLSX (ExportAdminMixin)
    export_filename = "usage"
    list_display = [
        "occurred_at", "period_display", "team", "resource_type", "provider", "service_name", "quantity_display",
        "unit", "cost_display", "source", "status_display",
    ]
    list_filter = [UsageTeamFilter, UsageProviderFilter, UsageResourceTypeFilter, "source", "status",
                   UsagePeriodFilter, ("occurred_at", DateRangeFilter)]
    actions = ["void_records"]
    # Searched by FragmentSearchMixin: a fragment of these (no index: USAGE_SEARCH_TEXT says why), or of the
    # team's name or slug.
    search_fields = ["service_name", "model", "feature_key", "external_reference", "idempotency_key", "resource_id"]
    search_text = USAGE_SEARCH_TEXT
    search_help_text = ("A fragment of the service, model, feature, external reference (FOCUS Id), idempotency key, "
                        "resource id or team name.")
    list_select_related = ["team"]
    show_full_result_count = False
    # Newest first by primary key (an index walk). The model's order, occurred_at then pk, has no
    # index of its own and sorts a million rows for every first page (about a second measured);
    # the column still sorts by a click.
    ordering = ["-pk"]
    change_list_template = "admin/chargeback/usagerecord/change_list.html"

    quantity_display = number_column("quantity", "Quantity")

    @admin.display(description="Billing period", ordering="billing_period_start")
    def period_display(self, obj):
        return month_display(obj.billing_period_start)

    @admin.display(description="Cost", ordering="cost")
    def cost_display(self, obj):
        if obj.status == UsageRecord.Status.VOID:
            return format_html("<del>{}</del>", money_html(obj.cost, obj.currency))
        return money_html(obj.cost, obj.currency)

    def get_fields(self, request, obj=None):
        return readable_fields(UsageRecord, quantity="quantity_display", cost="cost_exact",
                               effective_cost="effective_cost_exact", billing_period_start="period_display",
                               metadata="metadata_display", tags="tags_display")

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    cost_exact = money_column("cost", "Cost", exact=True)
    effective_cost_exact = money_column("effective_cost", "Effective cost", exact=True)
    metadata_display = json_column("metadata", "Metadata")
    tags_display = json_column("tags", "Tags")

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj):
        if obj.status == UsageRecord.Status.VOID:
            return format_html('<strong class="usage-void" title="{}">VOID</strong> {}', obj.void_reason,
                               obj.void_reason[:60])
        return obj.get_status_display()

    def has_import_permission(self, request):
        return user_is_finance(request.user) and request.user.has_perm("chargeback.add_usagerecord")

    def has_void_permission(self, request):
        """Voiding is finance's, with the right to change usage records."""
        return user_is_finance(request.user) and request.user.has_perm("chargeback.change_usagerecord")

    def has_adjust_permission(self, request):
        return user_is_finance(request.user) and request.user.has_perm("chargeback.add_usagerecord")

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_import": self.has_import_permission(request),
                         "can_adjust": self.has_adjust_permission(request)}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path("import-focus/", self.admin_site.admin_view(csrf_exempt(self.import_focus_entry)),
                 name="chargeback_usagerecord_import_focus"),
            path("adjustment/", self.admin_site.admin_view(self.adjustment_view),
                 name="chargeback_usagerecord_adjustment"),
        ] + super().get_urls()

    @admin.action(description="Void… the selected usage records (kept, left out of later allocations)",
                  permissions=["void"])
    def void_records(self, request, queryset):
        """Ask for the reason, then void each record with ``usage_record_void`` (audited)."""
        records = list(queryset.order_by("pk")[: VOID_MAX_RECORDS + 1])
        if len(records) > VOID_MAX_RECORDS:
            self.message_user(request, f"Void at most {VOID_MAX_RECORDS} usage records at once; narrow the list.",
                              messages.ERROR)
            return None
        form = UsageVoidForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            voided, refused = [], []
            for record in records:
                try:
                    usage_record_void(record=record, reason=form.cleaned_data["reason"], voided_by=request.user)
                except BillingError as exc:
                    refused.append(str(exc))
                else:
                    voided.append(record)
            if voided:
                self.message_user(
                    request, f"{len(voided)} usage record(s) voided; the next billing run of their month leaves them "
                    "out and names the difference.", messages.SUCCESS)
            for message in refused:
                self.message_user(request, f"Not voided: {message}", messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Void usage records",
            "records": records, "form": form, "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "already_void": [r for r in records if r.status == UsageRecord.Status.VOID],
        }
        return TemplateResponse(request, "admin/chargeback/usagerecord/void.html", context)

    def adjustment_view(self, request):
        """"Record an adjustment…": a team, a month, a signed amount and a reason → ``usage_adjustment_record``."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        form = UsageAdjustmentForm(request.POST) if request.method == "POST" else UsageAdjustmentForm(
            initial={"idempotency_key": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                record = usage_adjustment_record(
                    team=data["team"], amount=data["amount"], currency=data["currency"] or data["team"].currency,
                    reason=data["reason"], created_by=request.user, period=data["period"],
                    idempotency_key=f"admin-{data['idempotency_key']}",
                )
            except BillingError as exc:
                field = exc.param if exc.param in form.fields else None
                form.add_error(field, exc.message)
            else:
                self.message_user(
                    request, f"Adjustment of {money_display(record.cost, record.currency)} recorded for "
                    f"{record.team} in {record.billing_period_start:%Y-%m}: it is billed in that month's next run.",
                    messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:chargeback_usagerecord_change", args=[record.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Record a usage adjustment", "form": form}
        return TemplateResponse(request, "admin/chargeback/usagerecord/adjustment.html", context)

    def import_focus_entry(self, request):
        """The upload's door: the file is streamed to storage as it arrives (``FocusUploadHandler``,
        size-limited) before the view reads the form; then the CSRF check, as for any admin view."""
        request.upload_handlers = [FocusUploadHandler(request)]
        return csrf_protect(self.import_focus_view)(request)

    def import_focus_view(self, request):
        """Upload → preview job → preview page → import job, each job followed on its progress page.

        The file is stored while it arrives (``FOCUS_UPLOAD_MAX_BYTES`` at most; gzip accepted),
        then ``chargeback.tasks.focus_upload_preview`` reads it; its page links back here
        (``?preview_job=<job id>``) to show the preview and the "Import" button, which queues
        ``focus_upload_import``. Uploads never imported are removed after a day.
        """
        if not self.has_import_permission(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Import a FOCUS file",
                   "max_size": filesizeformat(settings.FOCUS_UPLOAD_MAX_BYTES)}
        step = request.POST.get("step", "upload")
        if request.method == "POST" and step == "import":
            return self._import(request)
        if request.method == "GET" and request.GET.get("preview_job"):
            return self._preview(request, context)
        form = FocusUploadForm(request.POST, request.FILES) if request.method == "POST" else FocusUploadForm()
        if request.method == "POST" and getattr(request, "focus_upload_too_large", False):
            form.is_valid()
            form.add_error("file", f"The file is larger than the upload limit of "
                                   f"{filesizeformat(settings.FOCUS_UPLOAD_MAX_BYTES)} (FOCUS_UPLOAD_MAX_BYTES).")
        elif request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            options = {k: form.cleaned_data[k] for k in ("team_tag", "subaccount_fallback", "skip_bad_rows")}
            record = focus_upload_request(task="chargeback.tasks.focus_upload_preview", created_by=request.user,
                                          title=f"Preview of {upload.name}"[:200], token=upload.token,
                                          file_name=upload.name[:200], **options)
            return HttpResponseRedirect(reverse("admin:jobs_jobprogress_change", args=[record.pk]))
        context["form"] = form
        return TemplateResponse(request, "admin/chargeback/usagerecord/import_focus.html", context)

    def _apply_team_choices(self, request, team_tag: str) -> int:
        """Finance's choice for each unmapped value of the preview: ``map:<team id>`` maps it to that team,
        ``new:<currency>`` creates its team; anything else leaves it unallocated. Each choice is a
        ``TeamMapping``, so the next file is matched the same way. Returns how many were recorded."""
        decided = 0
        for name, choice in request.POST.items():
            if not name.startswith("choice_") or not choice:
                continue
            index = name.removeprefix("choice_")
            value = request.POST.get(f"value_{index}", "")
            source = request.POST.get(f"source_{index}", "tag")
            kind, key = ((TeamMapping.Kind.SUB_ACCOUNT_NAME, "") if source == "sub_account_name"
                         else (TeamMapping.Kind.TAG, team_tag))
            if choice.startswith("map:"):
                team = Team.objects.get(pk=int(choice.removeprefix("map:")))
                team_mapping_set(kind=kind, key=key, value=value, team=team, created_by=request.user,
                                 note="mapped in the FOCUS upload preview")
            elif choice.startswith("new:"):
                team_mapping_create_team(kind=kind, key=key, value=value, currency=choice.removeprefix("new:"),
                                         created_by=request.user)
            else:
                continue
            decided += 1
        return decided

    def _preview(self, request, context):
        record = JobProgress.objects.filter(job_id=request.GET.get("preview_job", "")[:20] or 0).first() \
            if request.GET.get("preview_job", "").isdigit() else None
        result = (record.result or {}) if record is not None else {}
        if "preview" not in result:
            self.message_user(request, "That preview is not ready, or gone; upload the file again.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:chargeback_usagerecord_import_focus"))
        upload = result["upload"]
        context.update(preview=result["preview"], token=upload["token"], file_name=upload["file_name"],
                       options=upload, all_teams=Team.objects.order_by("name"), title="Import a FOCUS file: preview")
        return TemplateResponse(request, "admin/chargeback/usagerecord/import_focus.html", context)

    def _import(self, request):
        token = request.POST.get("token", "")
        try:
            exists = focus_upload_path(token).exists()
        except UploadTokenError:
            raise PermissionDenied("bad upload token") from None
        file_name = request.POST.get("file_name", "upload")[:200]
        if not exists:
            self.message_user(request, "That upload is gone (imported already, or expired); upload the file again.",
                              messages.ERROR)
            return HttpResponseRedirect(reverse("admin:chargeback_usagerecord_import_focus"))
        team_tag = request.POST.get("team_tag") or "business_unit"
        # Finance's choices for the unmapped values are mappings, recorded now: the import job then
        # matches those rows by them, as it will the next file's.
        try:
            decided = self._apply_team_choices(request, team_tag)
        except (TeamMappingError, Team.DoesNotExist, ValueError) as exc:
            self.message_user(request, f"Team choice refused: {getattr(exc, 'message', exc)}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:chargeback_usagerecord_import_focus"))
        if decided:
            self.message_user(request, f"{decided} value(s) mapped from the preview.", messages.SUCCESS)
        total = request.POST.get("total_rows", "")
        record = focus_upload_request(
            task="chargeback.tasks.focus_upload_import", created_by=request.user, title=f"Import of {file_name}",
            token=token, file_name=file_name, team_tag=team_tag,
            subaccount_fallback=request.POST.get("subaccount_fallback") == "True",
            skip_bad_rows=request.POST.get("skip_bad_rows") == "True", total_rows=int(total) if total.isdigit() else None,
        )
        return HttpResponseRedirect(reverse("admin:jobs_jobprogress_change", args=[record.pk]))


# --- Price catalog -------------------------------------------------------------------------------


class PriceScopeFilter(admin.SimpleListFilter):
    """Global catalog prices or team overrides: the overrides are their own view."""

    title = "scope"
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return [("global", "Global catalog"), ("override", "Team overrides")]

    def queryset(self, request, queryset):
        if self.value() == "global":
            return queryset.filter(team__isnull=True)
        if self.value() == "override":
            return queryset.filter(team__isnull=False)
        return queryset


@admin.register(Price)
class PriceAdmin(BillingAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    form = PriceAdminForm
    list_display = ["category", "provider", "model", "unit", "unit_price_display", "team", "valid_from", "valid_to"]
    unit_price_display = money_column("unit_price", "Unit price", metered=True)
    list_filter = [PriceScopeFilter, "category", "provider", "team"]
    search_fields = ["category", "provider", "model", "team__name"]
    autocomplete_fields = ["team"]
    list_select_related = ["team"]


# --- Allocation rules ----------------------------------------------------------------------------


class AllocationTargetInline(BillingAdminMixin, admin.TabularInline):
    model = AllocationTarget
    formset = AllocationTargetFormSet
    extra = 0
    autocomplete_fields = ["team", "user"]


@admin.register(AllocationRule)
class AllocationRuleAdmin(BillingAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    list_display = ["name", "rule_type", "source", "source_team", "priority", "enabled", "valid_from", "valid_to"]
    list_filter = ["rule_type", "enabled", "source"]
    search_fields = ["name", "description"]
    autocomplete_fields = ["scope_team", "source_team"]
    list_select_related = ["source_team"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [AllocationTargetInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def audit_log_entries(self, obj):
        """The rule's own changes and its targets' (added, changed, removed), newest first."""
        target_type = ContentType.objects.get_for_model(AllocationTarget)
        return LogEntry.objects.filter(
            Q(content_type=ContentType.objects.get_for_model(AllocationRule), object_pk=str(obj.pk))
            | Q(content_type=target_type, serialized_data__fields__rule=obj.pk)
        )


# --- Allocation runs and the billing run ---------------------------------------------------------


class _LargestRowsFormSet(forms.BaseInlineFormSet):
    """The run's largest allocations only: a month has tens of thousands of rows (one per team,
    user and service), far more than a page can show; the full list is the allocations changelist."""

    LIMIT = 200

    def get_queryset(self):
        if not hasattr(self, "_largest"):
            self._largest = super().get_queryset().order_by("-amount", "pk")[: self.LIMIT]
        return self._largest


class AllocatedCostInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = AllocatedCost
    formset = _LargestRowsFormSet
    verbose_name_plural = f"allocations (the {_LargestRowsFormSet.LIMIT} largest; every row: “All allocations” above)"
    fields = ["team", "user", "rule", "service", "quantity_display", "unit", "amount_display", "record_count_display"]
    readonly_fields = fields
    quantity_display = number_column("quantity", "Quantity")
    amount_display = money_column("amount", "Amount")
    record_count_display = number_column("record_count", "Records")
    extra = 0
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("team", "user", "rule")


class AllocationTeamFilter(UsageTeamFilter):
    """The team an allocation goes to (no unallocated pool here: every allocation has a team)."""

    def lookups(self, request, model_admin):
        return super().lookups(request, model_admin)[1:]


@admin.register(AllocatedCost)
class AllocatedCostAdmin(BillingAdminMixin, ExportAdminMixin, LargeTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    resource_classes = [AllocatedCostResource]  # Export CSV / XLSX (ExportAdminMixin)
    export_filename = "allocations"
    """Every row of every run, read-only: the run page shows only its largest rows."""

    list_display = ["run_display", "team", "user", "rule", "service", "quantity_display", "unit", "amount_display",
                    "record_count_display"]
    list_filter = ["run", AllocationTeamFilter, "rule"]
    quantity_display = number_column("quantity", "Quantity")
    amount_display = money_column("amount", "Amount")
    record_count_display = number_column("record_count", "Records")

    @admin.display(description="Run", ordering="run")
    def run_display(self, obj):
        return f"{month_display(obj.run.period_start)} #{obj.run_id}"

    def get_fields(self, request, obj=None):
        return readable_fields(AllocatedCost, quantity="quantity_display", amount="amount_exact",
                               record_count="record_count_display", details="details_display")

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    amount_exact = money_column("amount", "Amount", exact=True)
    details_display = json_column("details", "Details")
    search_fields = ["service"]
    list_select_related = ["run", "team", "user", "rule"]
    show_full_result_count = False
    ordering = ["-run", "-amount", "pk"]


@admin.register(AllocationRun)
class AllocationRunAdmin(BillingAdminMixin, ExportAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    resource_classes = [AllocationRunResource]  # Export CSV / XLSX (ExportAdminMixin)
    list_display = [
        "__str__", "period_display", "status", "total_display", "allocated_display",
        "unallocated_display", "ties_out", "committed_at", "invoices_link",
    ]
    list_filter = ["status", ("period_start", DateRangeFilter)]
    list_select_related = ["created_by"]
    inlines = [AllocatedCostInline]
    period_display = period_column("period_start", "period_end", "Period")

    def get_fields(self, request, obj=None):
        names = readable_fields(AllocationRun, period_start="period_display", total_cost="total_exact",
                                allocated_cost="allocated_exact", unallocated_cost="unallocated_exact",
                                warnings="warnings_display", refused="not_billed")
        return [n for n in names if n not in ("period_end", "record_count")] + ["records_display", "all_allocations"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    records_display = number_column("record_count", "Usage records")
    warnings_display = json_column("warnings", "Warnings")
    actions = ["export_focus_csv", "export_focus_parquet"]

    def _export_focus(self, request, queryset, fmt: str):
        """The FOCUS export (``chargeback.focus.export``) of the selected run's month, as a download."""
        runs = list(queryset.order_by("pk")[:2])
        if len(runs) != 1 or runs[0].status != AllocationRun.Status.COMMITTED:
            self.message_user(request, "Select one committed run: its month is exported.", messages.ERROR)
            return None
        run = runs[0]
        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - closed by FileResponse
        focus_export_write(period=BillingPeriod(run.period_start, run.period_end), out=spool, fmt=fmt)
        spool.seek(0)
        return FileResponse(spool, as_attachment=True, filename=f"focus-{run.period_start:%Y-%m}.{fmt}",
                            content_type=FOCUS_FORMATS[fmt])

    @admin.action(description="Export the month as FOCUS (CSV)")
    def export_focus_csv(self, request, queryset):
        return self._export_focus(request, queryset, "csv")

    @admin.action(description="Export the month as FOCUS (Parquet)")
    def export_focus_parquet(self, request, queryset):
        return self._export_focus(request, queryset, "parquet")

    @admin.display(description="Not billed")
    def not_billed(self, obj):
        """The teams whose usage the run left out (``AllocationRun.refused``), and why."""
        if not obj.refused:
            return "—"
        return format_html_join("", '<p class="errornote">{}</p>', ((entry.get("message", ""),) for entry in obj.refused))

    @admin.display(description="All allocations")
    def all_allocations(self, obj):
        url = reverse("admin:chargeback_allocatedcost_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">Every row of this run, filterable by team and rule</a>', url)
    change_list_template = "admin/chargeback/allocationrun/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("currency_totals")

    @staticmethod
    def _pools(obj) -> list:
        """The run's pools, one per currency (a run made before them: its own figures)."""
        return list(obj.currency_totals.all()) or [obj]

    @admin.display(description="Total", ordering="total_cost")
    def total_display(self, obj):
        return format_html_join(", ", "{}", ((money_html(p.total_cost, p.currency),) for p in self._pools(obj)))

    @admin.display(description="Total")
    def total_exact(self, obj):
        return format_html_join(", ", "{}", ((money_exact_html(p.total_cost, p.currency),) for p in self._pools(obj)))

    @admin.display(description="Allocated", ordering="allocated_cost")
    def allocated_display(self, obj):
        return format_html_join(", ", "{}", ((money_html(p.allocated_cost, p.currency),) for p in self._pools(obj)))

    @admin.display(description="Allocated")
    def allocated_exact(self, obj):
        return format_html_join(", ", "{}", ((money_exact_html(p.allocated_cost, p.currency),) for p in self._pools(obj)))

    @admin.display(description="Unallocated", ordering="unallocated_cost")
    def unallocated_display(self, obj):
        return format_html_join(", ", "{}", ((money_html(p.unallocated_cost, p.currency),) for p in self._pools(obj)))

    @admin.display(description="Unallocated")
    def unallocated_exact(self, obj):
        return format_html_join(", ", "{}", ((money_exact_html(p.unallocated_cost, p.currency),) for p in self._pools(obj)))

    @admin.display(description="Ties out", boolean=True)
    def ties_out(self, obj):
        return all(p.allocated_cost + p.unallocated_cost == p.total_cost for p in self._pools(obj))

    @admin.display(description="Invoices")
    def invoices_link(self, obj):
        url = reverse("admin:invoices_invoice_changelist") + f"?allocation_run__id__exact={obj.pk}"
        return format_html('<a href="{}">Invoices</a>', url)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_run_billing": user_may_run_billing(request.user)}
        return super().changelist_view(request, extra_context)



# --- Team mappings -------------------------------------------------------------------------------


class TeamMappingForm(forms.ModelForm):
    """A new mapping; the service's checks run in ``clean`` so a refusal shows in the form."""

    class Meta:
        model = TeamMapping
        fields = ["kind", "key", "value", "team", "valid_from", "note"]

    valid_from = forms.DateField(required=False, help_text=(
        "First of the first month it applies to. Empty: every month for a new value, this month for a "
        "value mapped already (the mapping in force then ends)."))

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            team_mapping_check(kind=data["kind"], key=data.get("key", ""), value=data["value"], team=data["team"],
                               valid_from=data.get("valid_from"))
        except TeamMappingError as exc:
            raise forms.ValidationError({exc.param if exc.param in self.fields else None: exc.message}) from None
        return data


@admin.register(TeamMapping)
class TeamMappingAdmin(BillingAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    """Which tag, sub-account or billing account belongs to which team, with its history.

    Mappings are added (through ``team_mapping_set``) and ended (the action, ``team_mapping_end``),
    never edited or deleted: the rows are the history.
    """

    form = TeamMappingForm
    list_display = ["kind", "key", "value", "team", "months_display", "created_by", "created_at"]
    list_filter = ["kind", ("valid_to", admin.EmptyFieldListFilter)]
    months_display = period_column("valid_from", "valid_to", "Applies to")
    search_fields = ["value", "key", "team__name", "team__slug"]
    list_select_related = ["team", "created_by"]
    autocomplete_fields = ["team"]
    actions = ["end_next_month"]

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["kind", "key", "value", "team", "valid_from", "valid_to", "note"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = team_mapping_set(kind=data["kind"], key=data.get("key", ""), value=data["value"], team=data["team"],
                                 valid_from=data.get("valid_from"), created_by=request.user,
                                 note=data.get("note", ""))
        obj.pk = saved.pk

    @admin.action(description="End the selected mappings from next month on")
    def end_next_month(self, request, queryset):
        today = dt.date.today()
        next_month = (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        for mapping in queryset.filter(valid_to=None).order_by("pk"):
            try:
                team_mapping_end(mapping=mapping, valid_to=next_month)
            except TeamMappingError as exc:
                self.message_user(request, f"{mapping}: {exc.message}", messages.ERROR)
