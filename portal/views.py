"""The team portal's pages: server-rendered, one team at a time, scoped like the API.

Every page takes the team from the URL through ``portal.selectors.portal_team_get``
(``teams.selectors.team_list_for_user``): another team's id answers 404, finance and auditors see
every team. Writes (budget, API keys) call the services and are open to team leads and finance only.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_POST

from billing_site.errors import BillingError
from billing_site.money import format_percent
from chargeback.selectors import allocation_committed_run, allocation_rows, usage_grouped
from invoices.models import CreditNote
from invoices.pdf import RULE_TYPE_EXPLANATIONS, credit_note_render_pdf, invoice_render_pdf
from invoices.selectors import credit_note_get_with_lines, credit_note_list, invoice_get_with_lines
from invoices.services.pdf_storage import invoice_pdf_filename
from subscriptions.selectors import subscription_get_for, subscription_usage
from teams.selectors import team_list_for_user
from teams.services import api_key_create, api_key_revoke
from wallets.selectors import hold_list, ledger_entry_list, wallet_balance_get

from . import selectors as sel
from .exports import usage_csv_response, usage_xlsx_response
from .forms import USAGE_GROUPS, ApiKeyForm, BudgetForm, UsageFilterForm
from .services import budget_alerts_check, budget_set

portal_login_required = login_required(login_url=reverse_lazy("portal:login"))

NAV = [("overview", "Overview"), ("usage", "Usage"), ("wallet", "Wallet"), ("invoices", "Invoices"),
       ("allocations", "Allocations"), ("budget", "Budget"), ("api_keys", "API keys")]


def _today() -> dt.date:
    return timezone.now().date()


def _page(request, template: str, team, active: str, status: int = 200, **context) -> HttpResponse:
    context.update(
        team=team, active=active, nav=NAV, teams=team_list_for_user(user=request.user),
        role=sel.user_role_label(user=request.user, team=team),
        is_lead=sel.user_leads_team(user=request.user, team=team),
    )
    return render(request, template, context, status=status)


@portal_login_required
def home(request):
    """The teams the user may see; straight to the overview when there is only one (or one is chosen)."""
    chosen = request.GET.get("team", "")
    if chosen.isdigit():
        return redirect("portal:overview", team_id=sel.portal_team_get(user=request.user, team_id=int(chosen)).pk)
    teams = list(team_list_for_user(user=request.user).order_by("name"))
    if len(teams) == 1:
        return redirect("portal:overview", team_id=teams[0].pk)
    return render(request, "portal/home.html", {"teams": teams})


@portal_login_required
def overview(request, team_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    today = _today()
    this_month = sel.current_month(today)
    last_month = sel.previous_month(this_month)
    cost_now = sel.team_period_cost(team=team, period=this_month)
    cost_last = sel.team_period_cost(team=team, period=last_month)
    currencies = sorted(set(cost_now) | set(cost_last) | {team.currency})
    costs = [{"currency": c, "now": cost_now.get(c, sel.ZERO), "last": cost_last.get(c, sel.ZERO)} for c in currencies]
    budget_alerts_check(team=team, today=today)
    # The team's wallet and the user's own (a prepaid_user team); the members' wallets are on the wallet page.
    wallets = [(w, wallet_balance_get(wallet_id=w.pk)) for w in sel.team_wallets(user=request.user, team=team)
               if w.user_id in (None, request.user.pk)]
    # The team's plan and the user's own (a per-member subscription): included units against usage so far.
    subscriptions = [sub for sub in (subscription_get_for(team=team), subscription_get_for(team=team, user=request.user))
                     if sub is not None]
    plans = [{"subscription": sub, "meters": subscription_usage(subscription=sub)} for sub in subscriptions]
    return _page(
        request, "portal/overview.html", team, "overview",
        this_month=this_month, last_month=last_month, costs=costs, plans=plans,
        budget=sel.budget_status_get(team=team, today=today), wallets=wallets,
        open_invoices=sel.team_open_invoices(user=request.user, team=team)[:20],
    )


def _usage_query(request, team):
    form = UsageFilterForm(request.GET or None, default_period=f"{_today():%Y-%m}")
    if not form.is_bound:
        form = UsageFilterForm({"period": f"{_today():%Y-%m}", "group": "day"}, default_period=f"{_today():%Y-%m}")
    if not form.is_valid():
        return form, None
    records = sel.team_usage_records(team=team, period=form.cleaned_data["period"]).filter(**form.record_filters())
    return form, records


def _querystring(request, **changes) -> str:
    query = request.GET.copy()
    for key, value in changes.items():
        query.pop(key, None)
        if value not in (None, ""):
            query[key] = value
    query.pop("page", None)
    return query.urlencode()


@portal_login_required
def usage(request, team_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    form, records = _usage_query(request, team)
    if records is None:
        return _page(request, "portal/usage.html", team, "usage", status=400, form=form)
    group = form.cleaned_data["group"]
    field, heading = USAGE_GROUPS[group]
    rows = usage_grouped(records=records, fields=[field])
    names = {}
    if group == "user":
        ids = [row["user"] for row in rows if row["user"]]
        names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
    for row in rows:
        key = row[field]
        if group == "day":
            row["label"], drill = f"{key:%a %d %b}", {"day": key.isoformat()}
        elif group == "user":
            row["label"], drill = names.get(key, "(no user)"), {"user": key or ""}
        else:
            row["label"], drill = key or "(none)", {group: key}
        row["rows_url"] = "rows/?" + _querystring(request, **drill)
    chart_currency = team.currency if any(r["currency"] == team.currency for r in rows) else (
        rows[0]["currency"] if rows else team.currency)
    chart = {"label": f"Cost by {heading.lower()} ({chart_currency})", "currency": chart_currency,
             "labels": [r["label"] for r in rows if r["currency"] == chart_currency],
             "values": [f"{r['cost']:f}" for r in rows if r["currency"] == chart_currency]}
    totals = usage_grouped(records=records, fields=[])
    choices = {name: [r[name] for r in usage_grouped(records=sel.team_usage_records(
        team=team, period=form.cleaned_data["period"]), fields=[name]) if r[name]]
        for name in ("feature_key", "provider", "resource_type")}
    return _page(request, "portal/usage.html", team, "usage", form=form, rows=rows, heading=heading, group=group,
                 chart=chart, totals=totals, choices=choices, query=_querystring(request),
                 groups=[(key, label, _querystring(request, group=key)) for key, (_, label) in USAGE_GROUPS.items()])


@portal_login_required
def usage_rows(request, team_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    form, records = _usage_query(request, team)
    if records is None:
        return _page(request, "portal/usage.html", team, "usage", status=400, form=form)
    page = Paginator(records.select_related("user").order_by("-occurred_at", "-pk"), 50).get_page(
        request.GET.get("page"))
    return _page(request, "portal/usage_rows.html", team, "usage", form=form, page=page,
                 query=_querystring(request), filters=form.record_filters())


@portal_login_required
def usage_export(request, team_id: int, fmt: str):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    form, records = _usage_query(request, team)
    if records is None:
        return _page(request, "portal/usage.html", team, "usage", status=400, form=form)
    filename = f"usage-{team.slug}-{form.cleaned_data['period'].label}"
    if fmt == "xlsx":
        return usage_xlsx_response(records, filename=filename)
    return usage_csv_response(records, filename=filename)


@portal_login_required
def wallet(request, team_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    wallets = list(sel.team_wallets(user=request.user, team=team))
    chosen = None
    if wallets:
        wanted = request.GET.get("wallet")
        chosen = next((w for w in wallets if str(w.pk) == wanted), None) if wanted else wallets[0]
        if chosen is None:
            return _page(request, "portal/not_found.html", team, "wallet", status=404)
    context = {"wallets": wallets, "chosen": chosen}
    if chosen is not None:
        context.update(
            balance=wallet_balance_get(wallet_id=chosen.pk),
            page=Paginator(ledger_entry_list(wallet=chosen), 50).get_page(request.GET.get("page")),
            holds=hold_list(wallet=chosen, status="open").order_by("-pk"),
        )
    return _page(request, "portal/wallet.html", team, "wallet", **context)


@portal_login_required
def invoices(request, team_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    listed = sel.team_invoices(user=request.user, team=team).prefetch_related("credit_notes")
    return _page(request, "portal/invoices.html", team, "invoices", invoices=listed)


def _team_invoice(request, team, invoice_id: int):
    return get_object_or_404(sel.team_invoices(user=request.user, team=team), pk=invoice_id)


@portal_login_required
def invoice_detail(request, team_id: int, invoice_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    invoice = invoice_get_with_lines(pk=_team_invoice(request, team, invoice_id).pk)
    return _page(request, "portal/invoice_detail.html", team, "invoices", invoice=invoice,
                 credit_notes=credit_note_list(invoice=invoice))


@portal_login_required
def invoice_pdf(request, team_id: int, invoice_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    invoice = _team_invoice(request, team, invoice_id)
    filename = f"{invoice.number}.pdf" if invoice.number else invoice_pdf_filename(invoice)
    if invoice.pdf:
        return FileResponse(invoice.pdf.open("rb"), as_attachment=True, filename=filename,
                            content_type="application/pdf")
    response = HttpResponse(invoice_render_pdf(invoice_get_with_lines(pk=invoice.pk)), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@portal_login_required
def credit_note_pdf(request, team_id: int, credit_note_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    note = get_object_or_404(CreditNote.objects.filter(invoice__in=sel.team_invoices(user=request.user, team=team)),
                             pk=credit_note_id)
    if note.pdf:
        return FileResponse(note.pdf.open("rb"), as_attachment=True, filename=f"{note.number}.pdf",
                            content_type="application/pdf")
    response = HttpResponse(credit_note_render_pdf(credit_note_get_with_lines(pk=note.pk)),
                            content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{note.number}.pdf"'
    return response


@portal_login_required
def allocations(request, team_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    default = sel.previous_month(sel.current_month(_today()))
    form = UsageFilterForm({"period": request.GET.get("period") or default.label}, default_period=default.label)
    if not form.is_valid():
        return _page(request, "portal/allocations.html", team, "allocations", status=400, form=form)
    period = form.cleaned_data["period"]
    run = allocation_committed_run(period=period)
    rows = allocation_rows(run, team=team) if run is not None else []
    direct = [row for row in rows if row.rule_id is None]
    shared = []
    for row in rows:
        if row.rule_id is None:
            continue
        details = row.details or {}
        rule_type = details.get("rule_type") or row.rule.rule_type
        share = details.get("share")
        shared.append({"row": row, "rule_type": rule_type, "explanation": RULE_TYPE_EXPLANATIONS.get(rule_type, ""),
                       "share": format_percent(Decimal(share) * 100) if share not in (None, "") else "—",
                       "pool": Decimal(details["pool_amount"]) if details.get("pool_amount") else None,
                       "records": details.get("source_records", row.record_count)})
    return _page(request, "portal/allocations.html", team, "allocations", form=form, period=period, run=run,
                 direct=direct, shared=shared)


@portal_login_required
def budget(request, team_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    lead = sel.user_leads_team(user=request.user, team=team)
    current = sel.budget_get(team=team)
    status = 200
    if request.method == "POST":
        if not lead:
            raise PermissionDenied("Only the team's lead and finance set its budget.")
        form = BudgetForm(request.POST)
        if form.is_valid():
            try:
                budget_set(team=team, amount=form.cleaned_data["amount"], thresholds=form.cleaned_data["thresholds"],
                           alert_on_forecast=form.cleaned_data["alert_on_forecast"], set_by=request.user)
            except BillingError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                messages.success(request, "Budget saved.")
                return redirect("portal:budget", team_id=team.pk)
        status = 400
    else:
        initial = {"thresholds": ", ".join(str(t) for t in current.thresholds), "amount": format(current.amount.normalize(), "f"),
                   "alert_on_forecast": current.alert_on_forecast} if current else {}
        form = BudgetForm(initial=initial)
        budget_alerts_check(team=team)
    return _page(request, "portal/budget.html", team, "budget", status=status, form=form,
                 budget=sel.budget_status_get(team=team, today=_today()), method=sel.FORECAST_METHOD)


@portal_login_required
def api_keys(request, team_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    lead = sel.user_leads_team(user=request.user, team=team)
    created = None
    form = ApiKeyForm()
    status = 200
    if request.method == "POST":
        if not lead:
            raise PermissionDenied("Only the team's lead and finance create API keys.")
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            created = api_key_create(team=team, name=form.cleaned_data["name"], created_by=request.user)
            form = ApiKeyForm()
        else:
            status = 400
    return _page(request, "portal/api_keys.html", team, "api_keys", status=status, form=form, created=created,
                 keys=sel.team_api_keys(team=team))


@portal_login_required
@require_POST
def api_key_revoke_view(request, team_id: int, key_id: int):
    team = sel.portal_team_get(user=request.user, team_id=team_id)
    key = get_object_or_404(sel.team_api_keys(team=team), pk=key_id)
    if not sel.user_leads_team(user=request.user, team=team):
        raise PermissionDenied("Only the team's lead and finance revoke API keys.")
    api_key_revoke(api_key=key)
    messages.success(request, f"Key {key.prefix}… revoked: it no longer authenticates.")
    return redirect(reverse("portal:api_keys", kwargs={"team_id": team.pk}))
