"""The finance admin site: its index is the finance dashboard, and it holds the "Run billing for a period…"
view. It sits above every app (it imports the dashboard and the billing run service); the apps'
admins share the building blocks of ``billing_site.admin_mixins`` instead.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from billing_site.admin_mixins import BillingAdminMixin, ReadOnlyAdminMixin, user_may_run_billing
from billing_site.dashboard import dashboard_get
from billing_site.formatting import money_display
from billing_site.models import IdempotencyRecord
from chargeback.errors import AllocationError
from chargeback.focus.pools import pool_breakdown
from chargeback.forms import BillingRunCommitForm, BillingRunForm
from chargeback.models import AllocationRun
from chargeback.periods import BillingPeriod, PeriodError
from chargeback.selectors import allocation_currency_totals, usage_period_stats
from invoices.errors import BillingRunBusy
from invoices.services.billing_run import billing_run_converted_line, billing_run_execute, billing_run_request
from teams.selectors import user_sees_all_teams


class BillingAdminSite(admin.AdminSite):
    """The admin whose index is the finance dashboard (``billing_site.dashboard``).

    Finance and auditors see the month's figures, charts and to-do lists above the app list;
    other staff see the ordinary index (without billing apps).
    """

    site_header = "Billing — finance"
    site_title = "Billing"
    index_title = "Chargeback, wallets and invoices"
    index_template = "admin/billing_index.html"
    #: No app list beside every page: at 1440 px it took a fifth of the width the finance lists need.
    enable_nav_sidebar = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The site registers the billing_site app's own models: this module is both that app's
        # admin and the site's home, and Django may import it while it builds ``admin.site``, so a
        # module-level ``admin.register`` would land on a site that is then replaced.
        self.register(IdempotencyRecord, IdempotencyRecordAdmin)

    def index(self, request, extra_context=None):
        """The dashboard of ``?period=`` (``2026-10``, ``2026-Q4`` or ``2026``; default: the latest billed
        month); a period it cannot read answers 400 with the reason, above the default period's figures."""
        extra_context = dict(extra_context or {})
        status = 200
        if user_sees_all_teams(request.user):
            period = None
            if request.GET.get("period"):
                try:
                    period = BillingPeriod.parse(request.GET["period"])
                except PeriodError as exc:
                    extra_context["dashboard_error"] = exc.message
                    status = 400
            extra_context["dashboard"] = dashboard_get(today=None, period=period)
        response = super().index(request, extra_context)
        response.status_code = status
        return response

    def get_urls(self):
        return [
            path("chargeback/allocationrun/billing-run/", self.admin_view(self.billing_run_view),
                 name="chargeback_allocationrun_billing_run"),
        ] + super().get_urls()

    def billing_run_view(self, request):
        """"Run billing for a period…": a month and teams → dry-run preview (per team, tie-out) → commit.

        The preview calls ``invoices.services.billing_run.billing_run_execute`` (the command's and
        the API's service) with ``dry_run``. Commit queues a background job
        (``billing_run_request``; the job calls the same service) and goes to the job's progress
        page, where the summary, tie-out and warnings appear when it is done. It goes ahead only if
        the month's usage is still what the preview showed (record count and total; checked here
        and again by the job), else it shows the new preview. One billing run per period at a time:
        a commit while one runs waits for it; while another waits to start, it is refused.
        """
        if not user_may_run_billing(request.user):
            raise PermissionDenied
        template = "admin/chargeback/allocationrun/billing_run.html"
        context = {**self.each_context(request), "opts": AllocationRun._meta, "title": "Run billing for a period"}
        commit = request.method == "POST" and request.POST.get("step") == "commit"
        form_class = BillingRunCommitForm if commit else BillingRunForm
        form = form_class(request.POST) if request.method == "POST" else BillingRunForm()
        context["form"] = form
        if request.method != "POST" or not form.is_valid():
            return TemplateResponse(request, template, context)
        data = form.cleaned_data
        period, teams = data["period"], list(data["teams"])
        context["period"] = period
        if commit:
            now = usage_period_stats(period=period)
            principal = now.get(data["previewed_currency"], (None, 0))[0]
            if (principal, sum(n for _total, n in now.values())) != (
                data["previewed_total"], data["previewed_records"]
            ) or data.get("previewed_pools") and data["previewed_pools"] != _pools_key(now):
                self._message(request, f"The usage of {period} changed since the preview; check the new preview and "
                                       "commit again.", messages.WARNING)
            else:
                # The commit and its PDFs run in a background job; the user follows it on its page.
                try:
                    record = billing_run_request(
                        period=period, teams=teams, render_pdfs=bool(data.get("render_pdfs")), created_by=request.user,
                        previewed={"currency": data["previewed_currency"], "total": str(data["previewed_total"]),
                                   "records": data["previewed_records"]},
                    )
                except BillingRunBusy as exc:
                    self._message(request, exc.message, messages.ERROR)
                    return TemplateResponse(request, template, context)
                return HttpResponseRedirect(reverse("admin:jobs_jobprogress_change", args=[record.pk]))
        try:
            result = billing_run_execute(period=period, teams=teams, dry_run=True, created_by=request.user)
        except AllocationError as exc:
            context["refused"] = f"Nothing can be billed for {period}: {exc}"
            return TemplateResponse(request, template, context)
        run = result.run
        totals = result.totals()
        pools = [
            {"currency": pool.currency, "records": pool.record_count,
             "total": money_display(pool.total_cost, pool.currency, exact=True),
             "allocated": money_display(pool.allocated_cost, pool.currency, exact=True),
             "unallocated": money_display(pool.unallocated_cost, pool.currency, exact=True),
             "invoiced": money_display(totals.get(pool.currency, Decimal(0)), pool.currency),
             "ties_out": pool.allocated_cost + pool.unallocated_cost == pool.total_cost}
            for pool in allocation_currency_totals(run)
        ]
        context.update(
            run=run, pools=pools, converted=[billing_run_converted_line(e) for e in result.converted()],
            rows=[{"team": row.team, "amount": money_display(row.amount, row.currency),
                   "precise": money_display(row.precise, row.currency, exact=True), "records": row.record_count,
                   "billed": bool(row.amount)} for row in result.rows()],
            invoiced=money_display(result.totals().get(run.currency, Decimal(0)), run.currency),
            total=money_display(run.total_cost, run.currency, exact=True),
            allocated=money_display(run.allocated_cost, run.currency, exact=True),
            unallocated=money_display(run.unallocated_cost, run.currency, exact=True),
            ties_out=run.allocated_cost + run.unallocated_cost == run.total_cost,
            not_billed=[entry["message"] for entry in result.refused],
            pool_breakdown=pool_breakdown(period=period),
            commit_form=BillingRunCommitForm(initial={
                "period": f"{period.start:%Y-%m}", "teams": teams, "render_pdfs": data["render_pdfs"],
                "previewed_records": run.record_count, "previewed_total": run.total_cost,
                "previewed_currency": run.currency,
                "previewed_pools": _pools_key({p.currency: (p.total_cost, p.record_count)
                                               for p in allocation_currency_totals(run)}),
            }),
        )
        return TemplateResponse(request, template, context)

    @staticmethod
    def _message(request, text: str, level: int) -> None:
        messages.add_message(request, level, text, fail_silently=True)


def _pools_key(stats: dict[str, tuple[Decimal, int]]) -> str:
    """The usage a preview was computed from, per currency (``EUR:12.5:3 USD:4:1``): a commit compares it."""
    return " ".join(f"{code}:{total.normalize():f}:{records}" for code, (total, records) in sorted(stats.items()))


# --- The shared models ---------------------------------------------------------------------------


class IdempotencyRecordAdmin(BillingAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "scope", "key", "operation", "result_type", "result_id"]
    search_fields = ["key", "scope"]
    date_hierarchy = "created_at"
    show_full_result_count = False
