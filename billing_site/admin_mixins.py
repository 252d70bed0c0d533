"""Building blocks every billing app's admin shares: scoping to finance and auditors, read-only admins,
counts that cost no scan of a large table, exact search, CSV/XLSX export, and django-auditlog's history.

Who sees what: billing screens are for the ``finance`` group (and superusers), which may change what
its permissions allow, and the read-only ``auditor`` group. Staff outside these groups see nothing of
billing, whatever model permissions they were given (``teams.selectors.user_sees_all_teams`` is the
one definition, shared with the API).

This module imports only Django, django-auditlog, django-import-export and the ground floor's
``teams`` models and selectors and ``billing_site.exports``, so any app's admin may use it; the admin site (``billing_site.admin``) sits above the apps.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property

from auditlog.models import LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import Http404, HttpResponseBadRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from billing_site.exports import export_csv_response, export_xlsx_response
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
