"""Building blocks every billing app's admin shares: scoping to finance and auditors, read-only admins,
counts that cost no scan of a large table, exact search, CSV/XLSX export, and django-auditlog's history.

Who sees what: billing screens are for the ``finance`` group (and superusers), which may change what
its permissions allow, and the read-only ``auditor`` group. Staff outside these groups see nothing of
billing, whatever model permissions they were given (``teams.selectors.user_sees_all_teams`` is the
one definition, shared with the API).

How values read (docs/admin.md, "Money and dates"): ``money_column``, ``number_column`` and
``period_column`` make the list and detail columns of amounts, counts and billing periods, through the
one formatter of ``billing_site.formatting``; the admin's CSS (``static/admin_billing/billing.css``)
right-aligns them and keeps each amount on one line.

This module imports only Django, django-auditlog, django-import-export, the ground floor's
``billing_site.formatting`` and ``billing_site.exports``, and ``teams``' models and selectors, so any
app's admin may use it; the admin site (``billing_site.admin``) sits above the apps.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from functools import cached_property

from auditlog.models import LogEntry
from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.core.paginator import Paginator
from django.db import connection, models
from django.db.models import Q, QuerySet
from django.http import Http404, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing_site.exports import export_csv_response, export_xlsx_response
from billing_site.formatting import money_display, number_display, period_display
from teams.models import Team
from teams.selectors import user_is_finance, user_sees_all_teams


def user_may_run_billing(user) -> bool:
    """Finance with the rights to write allocation runs and invoices may run billing for a period."""
    return user_is_finance(user) and user.has_perm("chargeback.add_allocationrun") and user.has_perm(
        "invoices.add_invoice")


class BillingAdminMixin:
    """Scope a billing ``ModelAdmin`` or inline to finance (read and write) and auditors (read).

    Model permissions still apply on top (the groups' data migration grants them), so a finance
    user without ``wallets.top_up`` cannot top up; but a permission alone never opens billing to
    staff outside the two groups.
    """

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # Amounts and rates are edited as plain numbers (``0``, not ``0E-12``).
        if isinstance(db_field, models.DecimalField) and not db_field.choices:
            kwargs.setdefault("form_class", PlainDecimalField)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def has_module_permission(self, request):
        return user_sees_all_teams(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return user_sees_all_teams(request.user) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return user_is_finance(request.user) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return user_is_finance(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return user_is_finance(request.user) and super().has_delete_permission(request, obj)


class LargeTablePaginator(Paginator):
    """Counts that cost no extra scan of a large table.

    The admin counts the rows of every list it pages; ``COUNT(*)`` of a million-row table is a scan
    (about 150 ms, ``bench/admin_pages.py``) on every page view, and a search that no index serves
    would scan twice (rows, then count). So:

    * an unfiltered list of a PostgreSQL table with at least ``ESTIMATE_FROM`` rows shows the
      planner's estimate (``pg_class.reltuples``, kept by ``ANALYZE`` and autovacuum);
    * a filtered or searched list first reads its first page and one row more (the page it shows
      anyway): when that is all there is, the count is the number of rows read; else it is
      counted exactly.
    """

    ESTIMATE_FROM = 100_000

    def _head(self) -> list:
        if not hasattr(self, "_head_rows"):
            self._head_rows = list(self.object_list[: self.per_page + 1])
        return self._head_rows

    @cached_property
    def count(self):
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        if not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                               [queryset.model._meta.db_table])
                row = cursor.fetchone()
            if row and row[0] >= self.ESTIMATE_FROM:
                return row[0]
            return super().count
        head = self._head()
        if len(head) <= self.per_page:
            return len(head)
        return super().count

    def page(self, number):
        number = self.validate_number(number)
        if number == 1 and hasattr(self, "_head_rows"):
            return self._get_page(self._head_rows[: self.per_page], number, self)
        return super().page(number)


class LargeTableChangeList(ChangeList):
    """A changelist that shows the rows its ``LargeTablePaginator`` already read.

    Django reads a list that fits on one page again with the whole queryset; for a search no
    index serves, that is a second scan of the table.
    """

    def get_results(self, request):
        super().get_results(request)
        head = getattr(self.paginator, "_head_rows", None)
        if head is not None and not self.multi_page and not self.show_all:
            self.result_list = head[: self.list_per_page]


class LargeTableAdminMixin:
    """``LargeTablePaginator`` and ``LargeTableChangeList`` for a ``ModelAdmin`` of a big table."""

    paginator = LargeTablePaginator
    show_full_result_count = False

    def get_changelist(self, request, **kwargs):
        return LargeTableChangeList


class ExactSearchMixin:
    """Search ``exact_search_fields`` for the whole term, case-sensitively: ``col = term``.

    Django's ``=field`` search compares ``UPPER(col) = UPPER(term)``, which no index serves and
    which costs a scan per field; keys and references are case-sensitive anyway.
    """

    exact_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q()
        for name in self.exact_search_fields:
            condition |= Q(**{name: term})
        return queryset.filter(condition), False


class ExportAdminMixin:
    """*Export CSV* and *Export XLSX* of the changelist as it is filtered and searched, streamed.

    The columns are a ``billing_site.exports.ExportResource`` (a django-import-export
    ``ModelResource``, ``resource_classes[0]``): its fields, ``dehydrate_*`` methods and export
    order, values as stored (amounts as ``Decimal``, dates as dates). The rows are not built by the
    library's ``export()`` (it fills a ``tablib.Dataset`` in memory); they are read in chunks
    (``ExportResource.export_rows``) and written by ``billing_site.exports`` (the one writer and its
    formula neutraliser), so a million rows never sit in memory. The resource's ``filter_export``
    may add ``select_related``, annotations or an order to the queryset.

    URLs: ``<app>_<model>_export`` (``export.csv``) and ``<app>_<model>_export_xlsx`` (``export.xlsx``),
    carrying the changelist's query string. Only users who may view the list may export (the
    billing scoping of ``BillingAdminMixin`` applies); a bad filter answers 400.
    """

    resource_classes: list = []
    export_chunk_size = 2000
    #: File name stem; the model's plural name by default.
    export_filename = ""

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("export.csv", self.admin_site.admin_view(self.export_csv_view), name="%s_%s_export" % info),
            path("export.xlsx", self.admin_site.admin_view(self.export_xlsx_view), name="%s_%s_export_xlsx" % info),
        ] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "export_formats": ["csv", "xlsx"] if self.resource_classes else []}
        return super().changelist_view(request, extra_context)

    def export_csv_view(self, request):
        """The changelist's filtered, searched rows as CSV (UTF-8, one header row), streamed."""
        return self._export(request, export_csv_response)

    def export_xlsx_view(self, request):
        """The changelist's filtered, searched rows as XLSX (one sheet, one header row)."""
        return self._export(request, export_xlsx_response)

    def export_rows(self, request):
        """``(header, rows)`` of the changelist's queryset; ``rows`` is a generator of lists.

        Raises:
            PermissionDenied: the user may not view this list.
            IncorrectLookupParameters: a filter of the query string is wrong.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        return self.resource_classes[0]().export_rows(changelist.get_queryset(request),
                                                      chunk_size=self.export_chunk_size)

    def _export(self, request, respond):
        try:
            header, rows = self.export_rows(request)
        except IncorrectLookupParameters as exc:
            return HttpResponseBadRequest(f"Bad filter: {exc}")
        stem = self.export_filename or str(self.opts.verbose_name_plural).replace(" ", "-")
        filename = f"{stem}-{timezone.now():%Y%m%d-%H%M%S}"
        if respond is export_xlsx_response:
            return respond(header, rows, filename=filename, sheet=stem)
        return respond(header, rows, filename=filename)


class FragmentSearchMixin(ExactSearchMixin):
    """Search by key (exactly), by a fragment of the text (case-insensitive) and by team name or slug.

    A row matches when one of ``exact_search_fields`` equals the term, when ``search_text`` (an
    upper-cased text expression of the model, e.g. its description and reference) contains the
    term upper-cased, or when its team's name or slug contains it. Where the table's writes can
    afford it, ``search_text`` is the very expression a trigram GIN index is built on
    (``gin_trgm_ops``; the ledger's), so the fragment search is an index scan, not a scan of a
    million rows; without one (usage) the search is one sequential scan. The teams are looked up first (one
    query on the small teams table, through ``search_team_path``: ``team``, or ``wallet__team``
    through the wallets table) and passed as ids, so that branch is served by the table's index on
    its team or wallet too. The branches are OR-ed: PostgreSQL combines the indexes (BitmapOr).
    """

    #: An expression such as ``Upper(Concat("description", Value(" "), "reference_id"))``.
    search_text = None
    #: The path to the row's team: ``team``, or ``<fk>__team`` through one related table.
    search_team_path = "team"

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q()
        for name in self.exact_search_fields:
            condition |= Q(**{name: term})
        if self.search_text is not None:
            queryset = queryset.alias(_search_text=self.search_text)
            condition |= Q(_search_text__contains=term.upper())
        # The teams (and their wallets) are read first, in one small query, and passed as a list of
        # ids: PostgreSQL combines "col IN (1, 2, 3)" with the trigram index (BitmapOr), while an
        # "IN (subquery)" OR-ed with it becomes a filter applied to every row of the table.
        teams = Team.objects.filter(Q(name__icontains=term) | Q(slug__icontains=term)).values("pk")
        via, _, last = self.search_team_path.rpartition("__")
        if via:
            related = self.model._meta.get_field(via).related_model
            ids = list(related._default_manager.filter(**{f"{last}__in": teams}).values_list("pk", flat=True))
            if ids:
                condition |= Q(**{f"{via}__in": ids})
        else:
            ids = list(teams.values_list("pk", flat=True))
            if ids:
                condition |= Q(**{f"{last}__in": ids})
        return queryset.filter(condition) if condition else queryset.none(), False


class ReadOnlyAdminMixin:
    """No add, change or delete for anyone, and no bulk delete action: rows are written by services.

    For immutable records (ledger entries, usage, allocation runs) and read-only inlines (invoice
    lines, credit notes): the admin shows them, it never edits them (HOUSE_STYLE, "Admin").
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class AuditHistoryAdminMixin:
    """The object's "History" button shows django-auditlog's trail: who changed which field, when.

    Django's own history lists only admin "change messages"; auditlog records every save of a
    registered model (``AUDITLOG_INCLUDE_TRACKING_MODELS`` in settings) with the actor (its
    middleware) and the old and new value of each field. ``audit_log_entries`` may widen the trail
    (an allocation rule shows its targets' changes too).
    """

    auditlog_history_template = "admin/billing_audit_history.html"
    auditlog_history_per_page = 25

    def audit_log_entries(self, obj):
        return LogEntry.objects.get_for_object(obj)

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        entries = self.audit_log_entries(obj).select_related("actor", "content_type").order_by("-timestamp", "-pk")
        paginator = self.get_paginator(request, entries, self.auditlog_history_per_page)
        page = paginator.get_page(request.GET.get(PAGE_VAR, 1))
        changes = _readable_changes(list(page))
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}",
            "subtitle": None,
            "object": obj,
            "opts": self.model._meta,
            "log_entries": page,
            "entries": changes,
            "page_range": paginator.get_elided_page_range(page.number),
            "page_var": PAGE_VAR,
            "pagination_required": paginator.count > self.auditlog_history_per_page,
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.auditlog_history_template, context)


def _readable_changes(entries) -> list[tuple[object, list[tuple[str, str, str]]]]:
    """``[(log entry, [(field label, old, new)…])…]`` with related objects named, not numbered.

    auditlog stores a foreign key as the related row's pk; the rows it names are read with one
    query per related model on the page. Reverse relations (which auditlog lists with a
    placeholder value) are left out.
    """
    wanted: dict[type, set[int]] = defaultdict(set)
    parsed = []
    for entry in entries:
        model = entry.content_type.model_class() if entry.content_type_id else None
        rows = []
        for name, values in (entry.changes_dict or {}).items():
            try:
                field = model._meta.get_field(name) if model is not None else None
            except FieldDoesNotExist:
                field = None
            if field is not None and not field.concrete:
                continue
            old, new = (list(values) + ["", ""])[:2] if isinstance(values, (list, tuple)) else ("", values)
            rows.append((field, name, old, new))
            if field is not None and field.is_relation:
                wanted[field.related_model].update(int(v) for v in (old, new) if str(v).isdigit())
        parsed.append((entry, rows))
    names = {
        related: {str(pk): str(obj) for pk, obj in related._default_manager.in_bulk(list(pks)).items()}
        for related, pks in wanted.items()
    }

    def shown(field, value):
        if value in (None, "None"):
            return "—"
        if field is not None and field.is_relation:
            return names.get(field.related_model, {}).get(str(value), f"#{value}")
        return str(value)

    return [
        (entry, [(str(field.verbose_name) if field is not None else name, shown(field, old), shown(field, new))
                 for field, name, old, new in rows])
        for entry, rows in parsed
    ]


# --- how values read: amounts, counts, periods -------------------------------------------------------


def _attr(obj, path: str):
    """``obj``'s attribute at a dotted ``path`` (``wallet.currency``); ``None`` past a missing link."""
    for name in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, name)
    return obj


def money_html(amount, currency: str | None):
    """An amount for a list cell or a detail page: ``<span class="money" title="exact">1,234.50 USD</span>``.

    Rounded to the currency's minor units, with the locale's separators and the code as a no-break
    suffix; the tooltip holds the exact metered figure when rounding hid digits. ``—`` without one.
    """
    if amount is None or not currency:
        return "—"
    shown = money_display(amount, currency)
    exact = money_display(amount, currency, exact=True)
    if exact == shown:
        return format_html('<span class="money">{}</span>', shown)
    return format_html('<span class="money" title="{}">{}</span>', f"exact: {exact}", shown)


def money_exact_html(amount, currency: str | None):
    """An amount on a detail page: in minor units, followed by the exact metered figure when rounding
    hid digits (``0.02 USD (exact: 0.015 USD)``); a unit price keeps its digits the same way."""
    if amount is None or not currency:
        return "—"
    shown = money_display(amount, currency)
    exact = money_display(amount, currency, exact=True)
    if exact == shown:
        return format_html('<span class="money">{}</span>', shown)
    return format_html('<span class="money">{}</span> <span class="money-exact">(exact: <span class="money">{}</span>)</span>',
                       shown, exact)


def money_metered_html(amount, currency: str | None):
    """An amount with every non-zero digit and nothing else, for unit prices and "metered amount"
    columns, whose point is the exact figure: ``0.00003 USD``, ``1.904763725 USD``."""
    if amount is None or not currency:
        return "—"
    return format_html('<span class="money">{}</span>', money_display(amount, currency, exact=True))


def number_html(value):
    """A count or quantity with separators, right-aligned like an amount: ``5,360``, ``0.5``."""
    if value is None:
        return "—"
    return format_html('<span class="number">{}</span>', number_display(value))


def _column(show, description: str, field: str, ordering: str | None):
    """``show`` as an admin column: its header, and its sort (``field`` as a lookup path by default,
    ``ordering`` when given, none when ``ordering`` is ``None``)."""
    show.short_description = description
    order = field.replace(".", "__") if ordering == "" else ordering
    if order:
        show.admin_order_field = order
    return show


def money_column(field: str, description: str, *, currency: str = "currency", ordering: str | None = "",
                 exact: bool = False, metered: bool = False):
    """A ``list_display`` / ``readonly_fields`` method showing ``obj.<field>`` in ``obj.<currency>``.

    ``field`` and ``currency`` may be dotted paths (``wallet.currency``). ``ordering`` defaults to
    ``field`` when it is a plain column; ``None`` makes the column unsortable. By default the amount
    is in minor units with the exact figure as a tooltip (``money_html``); ``exact``: followed by the
    exact figure (detail pages, ``money_exact_html``); ``metered``: the exact figure alone (unit
    prices, ``money_metered_html``).
    """
    render = money_metered_html if metered else money_exact_html if exact else money_html

    def show(self, obj):
        return render(_attr(obj, field), _attr(obj, currency))

    return _column(show, description, field, ordering)


def number_column(field: str, description: str, *, ordering: str | None = ""):
    """A ``list_display`` / ``readonly_fields`` method showing a count or quantity with separators."""

    def show(self, obj):
        return number_html(_attr(obj, field))

    return _column(show, description, field, ordering)


def period_column(start: str, end: str, description: str = "Period", *, ordering: str | None = ""):
    """A column showing the half-open period ``[obj.<start>, obj.<end>)``: ``October 2026`` or an
    inclusive range (``billing_site.formatting.period_display``)."""

    def show(self, obj):
        return period_display(_attr(obj, start), _attr(obj, end))

    return _column(show, description, start, ordering)


def readable_html(value):
    """A JSON value on a read-only page, for people: a list as bullets, an object as "key: value"
    lines, nested values as compact JSON; "None" for an empty list or object (never a raw ``[]``)."""
    if value in (None, "", [], {}):
        return "None"
    if isinstance(value, list):
        return format_html('<ul class="readable-list">{}</ul>', format_html_join(
            "", "<li>{}</li>", ((_scalar(v),) for v in value)))
    if isinstance(value, dict):
        return format_html('<dl class="readable-map">{}</dl>', format_html_join(
            "", "<dt>{}</dt><dd>{}</dd>", ((k, _scalar(v)) for k, v in value.items())))
    return _scalar(value)


def _scalar(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return "—" if value is None else str(value)


def json_column(field: str, description: str, *, pretty: bool = False):
    """A read-only detail field showing the JSON ``obj.<field>`` readably (``readable_html``), or
    ``pretty``: indented JSON in a ``<pre>`` (a webhook's payload, which is read as JSON)."""

    def show(self, obj):
        value = _attr(obj, field)
        if pretty and value not in (None, "", [], {}):
            return format_html('<pre class="readable-json">{}</pre>',
                               json.dumps(value, indent=2, sort_keys=True, default=str))
        return readable_html(value)

    show.short_description = description
    return show


def readable_fields(model, **shown: str) -> list[str]:
    """The model's concrete fields in order, ``id`` left out, each named in ``shown`` replaced by its
    display method: ``readable_fields(Hold, amount="amount_display")`` for a read-only detail page."""
    return [shown.get(f.name, f.name) for f in model._meta.concrete_fields if f.name != "id"]


# --- form fields that read like the rest -------------------------------------------------------------


class PlainDecimalField(forms.DecimalField):
    """A decimal input showing its value without padding: ``0``, ``1.7``, ``250`` — never ``0E-12``
    or ``1.700000000000`` (a metered column holds 12 decimal places)."""

    def prepare_value(self, value):
        if isinstance(value, Decimal):
            return f"{value.normalize():f}" if value else "0"
        return super().prepare_value(value)


class CommaListField(forms.CharField):
    """A JSON list of short strings (provider names, currency codes) edited as ``a, b`` text."""

    def prepare_value(self, value):
        if isinstance(value, str) and value.startswith("["):
            try:
                value = json.loads(value)
            except ValueError:
                return value
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value):
        if isinstance(value, (list, tuple)):
            return list(value)
        text = (super().to_python(value) or "").strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise forms.ValidationError("Write the values separated by commas.") from None
            if isinstance(parsed, list):
                return [str(v).strip() for v in parsed if str(v).strip()]
        return [part.strip() for part in text.split(",") if part.strip()]

    def has_changed(self, initial, data):
        return self.to_python(self.prepare_value(initial) or "") != self.to_python(data)


# --- a date-range filter -------------------------------------------------------------------------------


class DateRangeFilter(admin.FieldListFilter):
    """From and to dates (both inclusive) for a date or date-time column, in the filter sidebar.

    ``list_filter = [("created_at", DateRangeFilter)]``. The query string holds
    ``<field>__from=YYYY-MM-DD`` and ``<field>__to=YYYY-MM-DD``; a date-time column is compared in the
    current time zone, the "to" day included (``< to + 1 day``). A malformed date is a 400-free
    "bad filter" message (``IncorrectLookupParameters``), not a 500.
    """

    template = "admin/billing_date_range_filter.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.param_from, self.param_to = f"{field_path}__from", f"{field_path}__to"
        self.value_from = self._pop(params, self.param_from)
        self.value_to = self._pop(params, self.param_to)
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = f"{self.title} between"

    @staticmethod
    def _pop(params, name):
        value = params.pop(name, None)
        if isinstance(value, list):
            value = value[-1] if value else None
        return value or ""

    def expected_parameters(self):
        return [self.param_from, self.param_to]

    def has_output(self):
        return True

    def _day(self, text: str):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise IncorrectLookupParameters(f"{self.field_path}: dates are YYYY-MM-DD, got {text!r}") from None

    def queryset(self, request, queryset):
        bounds = {}
        is_datetime = isinstance(self.field, models.DateTimeField)
        if self.value_from:
            start = self._day(self.value_from)
            bounds[f"{self.field_path}__gte"] = _day_start(start) if is_datetime else start
        if self.value_to:
            end = self._day(self.value_to)
            bounds[f"{self.field_path}__lt" if is_datetime else f"{self.field_path}__lte"] = (
                _day_start(end + dt.timedelta(days=1)) if is_datetime else end)
        return queryset.filter(**bounds) if bounds else queryset

    def choices(self, changelist):
        kept = [(k, v) for k, v in changelist.get_filters_params().items()
                if k not in (self.param_from, self.param_to)]
        if changelist.query:
            kept.append(("q", changelist.query))
        yield {
            "param_from": self.param_from, "param_to": self.param_to,
            "value_from": self.value_from, "value_to": self.value_to,
            "kept": [(k, item) for k, values in kept for item in (values if isinstance(values, list) else [values])],
            "clear_url": changelist.get_query_string(remove=[self.param_from, self.param_to]),
            "selected": bool(self.value_from or self.value_to),
        }


def _day_start(day: dt.date):
    return timezone.make_aware(dt.datetime.combine(day, dt.time()))
