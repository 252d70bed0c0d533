"""Reads behind the finance dashboard (the admin index): a fixed number of queries, whatever the data size.

The dashboard shows one period, a month, a quarter or a year (``chargeback.periods.BillingPeriod``,
``?period=2026-10``, ``2026-Q4`` or ``2026``), beside the period as long just before it; by default
the latest billed month (:func:`dashboard_default_period`). The cards, the cost-per-team chart and
the 12-month line chart (ending with the period's last month) follow it.

Figures are metered ``Decimal`` amounts (12 decimal places) per currency, summed in the database;
months are billing periods (``UsageRecord.billing_period_start``, ``[start, end)``). Every figure
carries the admin URL of the filtered list behind it.

A month with a committed allocation run is read from the run (its totals, its rows per team), not
from its usage: the run is what was billed, and the usage of a closed month is the largest read
of all. Queries: the latest committed run (1, only without a chosen period); committed runs of the
chart's months and the period before (1); the period and the one before by month and team, from
usage for the months without a committed run (≤ 1) and from the runs' rows otherwise (≤ 1); usage
of the other chart months without a committed run (≤ 1); team names (1); wallets under their
warning threshold (2: count and first rows); overdue invoices (2: totals and first rows); latest
billing runs (1).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Max, Sum
from django.urls import reverse
from django.utils import timezone

from billing_site.db import MeteredSum
from billing_site.formatting import money_display
from billing_site.money import METERED_DECIMAL_PLACES, METERED_MAX_DIGITS
from chargeback.models import AllocatedCost, AllocationRun
from chargeback.periods import BillingPeriod, month_start, next_month
from chargeback.selectors import usage_records_active
from invoices.models import Invoice
from invoices.selectors import invoices_overdue
from payments.stripe_client import payments_configured, payments_mode
from subscriptions.selectors_mrr import mrr_history, subscription_stats, subscriptions_by_tier, trials_ending
from teams.models import Team
from wallets.models import Wallet
from wallets.selectors import wallets_below_warning

ZERO = Decimal(0)
#: Teams shown in the bar chart (the largest cost first); the rest are summed as "Other teams".
CHART_TEAMS = 12
#: Rows of the to-do lists (wallets under threshold, overdue invoices, latest runs).
LIST_ROWS = 8
#: Months of the line chart, the current one included.
CHART_MONTHS = 12

_METERED = DecimalField(max_digits=METERED_MAX_DIGITS, decimal_places=METERED_DECIMAL_PLACES)


def _usage_url(**params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("admin:chargeback_usagerecord_changelist") + (f"?{query}" if query else "")


@dataclass
class MonthFigures:
    """One period's cost (a month, quarter or year) in one currency: usage total, allocated and unallocated, with their lists.

    With a committed allocation run, allocated and unallocated are the run's (rules applied);
    without one, "allocated" is the usage that carries a team and "unallocated" the pool without.
    """

    label: str
    period: str  # BillingPeriod.key: YYYY-MM, YYYY-Qn or YYYY
    currency: str
    total: Decimal = ZERO
    allocated: Decimal = ZERO
    unallocated: Decimal = ZERO
    run: AllocationRun | None = None  # the committed run of a one-month period
    runs: list[int] = field(default_factory=list)  # the committed runs behind the figures (ids)
    state: str = ""  # "billed" (every month committed), "so far" (the period holds today) or ""
    total_url: str = ""
    allocated_url: str = ""
    unallocated_url: str = ""

    # Shown rounded to the currency's minor units (billing_site.formatting.money_display); the lists behind them are exact.
    @property
    def total_display(self) -> str:
        return money_display(self.total, self.currency)

    @property
    def allocated_display(self) -> str:
        return money_display(self.allocated, self.currency)

    @property
    def unallocated_display(self) -> str:
        return money_display(self.unallocated, self.currency)


@dataclass
class Dashboard:
    period: BillingPeriod | None = None
    previous: BillingPeriod | None = None
    picker: dict = field(default_factory=dict)
    months: list[MonthFigures] = field(default_factory=list)
    team_chart: dict = field(default_factory=dict)
    month_chart: dict = field(default_factory=dict)
    low_wallets: list[Wallet] = field(default_factory=list)
    low_wallet_count: int = 0
    low_wallets_url: str = ""
    overdue: list[Invoice] = field(default_factory=list)
    overdue_totals: list[tuple[str, str, int]] = field(default_factory=list)
    overdue_url: str = ""
    runs: list[AllocationRun] = field(default_factory=list)
    runs_url: str = ""
    subscriptions: dict = field(default_factory=dict)
    payments: dict = field(default_factory=dict)


def _run_in(run: AllocationRun, pool) -> AllocationRun:
    """``run`` as seen in one currency: a copy with ``pool``'s currency, total, allocated and unallocated."""
    if pool is run:
        return run
    seen = copy.copy(run)
    seen.currency, seen.total_cost = pool.currency, pool.total_cost
    seen.allocated_cost, seen.unallocated_cost = pool.allocated_cost, pool.unallocated_cost
    return seen


def dashboard_default_period(*, today: dt.date | None = None) -> BillingPeriod:
    """The month the dashboard opens on: the latest billed month, else the current one (UTC).

    Billed means a committed allocation run (``billing_run_execute`` commits one per period, and its
    invoices come from it); a run of several months counts for its last month. A run dated after
    ``today``'s month is ignored. One query.
    """
    today = today or timezone.now().date()
    latest = (AllocationRun.objects.filter(status=AllocationRun.Status.COMMITTED, period_end__lte=next_month(today))
              .aggregate(end=Max("period_end"))["end"])
    start = month_start(latest - dt.timedelta(days=1)) if latest else month_start(today)
    return BillingPeriod(start, next_month(start))


def dashboard_periods(*, today: dt.date, chosen: BillingPeriod) -> list[tuple[str, list[tuple[str, str]]]]:
    """The picker's choices: ``[(group, [(key, name)…])…]``: the last 24 months, 8 quarters and 4 years
    (newest first, to ``today``), and ``chosen`` among them even when it is older."""
    month = BillingPeriod(month_start(today), next_month(month_start(today)))
    quarter = BillingPeriod.parse(f"{today.year}-Q{(today.month + 2) // 3}")
    year = BillingPeriod.parse(str(today.year))
    groups = []
    for title, latest, count in (("Months", month, 24), ("Quarters", quarter, 8), ("Years", year, 4)):
        options, period = [], latest
        for _ in range(count):
            options.append((period.key, period.name))
            period = period.previous()
        if chosen.kind == latest.kind and chosen.key not in dict(options):
            options.append((chosen.key, chosen.name))
        groups.append((title, options))
    return groups


def dashboard_get(*, today: dt.date | None = None, period: BillingPeriod | None = None) -> Dashboard:
    """The dashboard's figures for ``period`` (a month, quarter or year; default
    :func:`dashboard_default_period`), beside the period as long just before it; ``today`` (default:
    today in UTC) dates the overdue list and the picker."""
    today = today or timezone.now().date()
    period = period or dashboard_default_period(today=today)
    previous = period.previous()
    board = Dashboard(period=period, previous=previous)
    board.picker = {
        "key": period.key, "kind": period.kind, "groups": dashboard_periods(today=today, chosen=period),
        "previous": previous.key, "previous_name": previous.name,
        "following": period.following().key, "following_name": period.following().name,
    }

    # The line chart's 12 months end with the period's last month.
    last_month = month_start(period.end - dt.timedelta(days=1))
    first = last_month
    for _ in range(CHART_MONTHS - 1):
        first = month_start(first - dt.timedelta(days=1))
    # A month with a committed allocation run shows the run's figures: the billed truth, read from
    # the run and its rows instead of summing the month's usage again (hundreds of thousands of
    # rows a month). Months without one are summed from usage.
    # One entry per currency pool of a run (a month in three currencies has three), each a copy of
    # the run carrying that pool's figures, so no figure of two currencies is ever added.
    runs = {
        (run.period_start, pool.currency): _run_in(run, pool)
        for run in AllocationRun.objects.filter(
            status=AllocationRun.Status.COMMITTED, period_start__gte=min(first, previous.start),
            period_start__lte=last_month,
        ).prefetch_related("currency_totals")
        if run.period_end == next_month(run.period_start)
        for pool in (run.currency_totals.all() or [run])
    }
    committed = {start for start, _ in runs}

    # 1. The period and the one before it, by month and team.
    shown_months = previous.months() + period.months()
    by_month: dict[tuple[dt.date, str], dict[int | None, Decimal]] = defaultdict(dict)
    scan = [m for m in shown_months if m not in committed]
    if scan:
        for row in (
            usage_records_active().filter(billing_period_start__in=scan).order_by()
            .values("billing_period_start", "currency", "team_id").annotate(total=MeteredSum("cost"))
        ):
            by_month[(row["billing_period_start"], row["currency"])][row["team_id"]] = row["total"]
    recent_runs = [run for (start, _), run in runs.items() if start in shown_months]
    if recent_runs:
        for row in (
            AllocatedCost.objects.filter(run__in=recent_runs).order_by()
            .values("run__period_start", "currency", "team_id").annotate(total=MeteredSum("amount"))
        ):
            by_month[(row["run__period_start"], row["currency"])][row["team_id"]] = row["total"]
        for run in recent_runs:
            if run.unallocated_cost:
                by_month[(run.period_start, run.currency)][None] = run.unallocated_cost
    currencies = sorted({c for _, c in by_month} | {c for start, c in runs if start in shown_months}) or ["USD"]

    def by_team(span: BillingPeriod, currency: str) -> dict[int | None, Decimal]:
        teams: dict[int | None, Decimal] = defaultdict(lambda: ZERO)
        for month in span.months():
            for team, total in by_month.get((month, currency), {}).items():
                teams[team] += total
        return dict(teams)

    def state(span: BillingPeriod) -> str:
        if all(m in committed for m in span.months()):
            return "billed"
        return "so far" if span.start <= today < span.end else ""

    for span, label in ((period, period.name), (previous, f"{previous.name}, the {period.kind} before")):
        for currency in currencies:
            teams = by_team(span, currency)
            figures = MonthFigures(label=label, period=span.key, currency=currency, total=sum(teams.values(), ZERO))
            figures.total_url = _usage_url(period=span.key)
            figures.unallocated_url = _usage_url(period=span.key, team="none")
            figures.allocated_url = figures.total_url
            for month in span.months():
                month_teams = by_month.get((month, currency), {})
                run = runs.get((month, currency))
                if run is not None:
                    figures.allocated += run.allocated_cost
                    figures.unallocated += run.unallocated_cost
                else:
                    unallocated = month_teams.get(None, ZERO)
                    figures.unallocated += unallocated
                    figures.allocated += sum(month_teams.values(), ZERO) - unallocated
            figures.runs = sorted({runs[(m, currency)].pk for m in span.months() if (m, currency) in runs})
            figures.state = state(span)
            if span.kind == "month" and (span.start, currency) in runs:
                figures.run = runs[(span.start, currency)]
                figures.allocated_url = reverse("admin:chargeback_allocationrun_change", args=[figures.run.pk])
            board.months.append(figures)

    # Bar chart: cost per team, the period and the one before, the largest teams by the two together.
    main = max(currencies, key=lambda c: sum(by_team(period, c).values(), ZERO) + sum(by_team(previous, c).values(), ZERO))
    this, last = by_team(period, main), by_team(previous, main)
    team_ids = sorted({t for t in (*this, *last) if t is not None},
                      key=lambda t: -(this.get(t, ZERO) + last.get(t, ZERO)))
    shown = team_ids[:CHART_TEAMS]
    names = dict(Team.objects.filter(pk__in=shown).values_list("pk", "name")) if shown else {}
    labels, urls = [names[t] for t in shown], [_usage_url(team=t, period=period.key) for t in shown]
    this_values, last_values = [this.get(t, ZERO) for t in shown], [last.get(t, ZERO) for t in shown]
    rest = team_ids[CHART_TEAMS:]
    if rest:
        labels.append(f"{len(rest)} other teams")
        urls.append(_usage_url(period=period.key))
        this_values.append(sum((this.get(t, ZERO) for t in rest), ZERO))
        last_values.append(sum((last.get(t, ZERO) for t in rest), ZERO))
    if None in this or None in last:
        labels.append("No team (unallocated)")
        urls.append(_usage_url(team="none", period=period.key))
        this_values.append(this.get(None, ZERO))
        last_values.append(last.get(None, ZERO))
    board.team_chart = {
        "currency": main, "labels": labels, "urls": urls,
        "datasets": [
            {"label": period.name + (f" ({state(period)})" if state(period) else ""),
             "data": [str(v) for v in this_values]},
            {"label": previous.name + (f" ({state(previous)})" if state(previous) else ""),
             "data": [str(v) for v in last_values]},
        ],
    }

    # 2. Line chart: cost per month for the 12 months ending with the period; usage is summed only
    # for the months without a committed run and not already summed above.
    monthly = {(start, currency): run.total_cost for (start, currency), run in runs.items()}
    for (start, currency), teams in by_month.items():
        monthly.setdefault((start, currency), sum(teams.values(), ZERO))
    months, day = [], first
    while day <= last_month:
        months.append(day)
        day = next_month(day)
    missing = [m for m in months if m not in committed and m not in shown_months]
    if missing:
        for row in (
            usage_records_active().filter(billing_period_start__in=missing).order_by()
            .values("billing_period_start", "currency").annotate(total=MeteredSum("cost"))
        ):
            monthly[(row["billing_period_start"], row["currency"])] = row["total"]
    board.month_chart = {
        "currency": main,
        "labels": [f"{m:%b %Y}" for m in months],
        "urls": [_usage_url(period=f"{m:%Y-%m}") for m in months],
        "data": [str(monthly.get((m, main), ZERO)) for m in months],
    }

    # 3. Wallets under their warning threshold.
    low = wallets_below_warning()
    board.low_wallet_count = low.count()
    board.low_wallets = list(low.select_related("team", "user").order_by("balance", "pk")[:LIST_ROWS])
    for wallet in board.low_wallets:
        wallet.balance_display = money_display(wallet.balance, wallet.currency)
        wallet.threshold_display = money_display(wallet.warning_threshold, wallet.currency)
    board.low_wallets_url = reverse("admin:wallets_wallet_changelist") + "?below_warning=yes"

    # 4. Overdue invoices, with their amounts per currency.
    overdue = invoices_overdue(today=today)
    # What is still owed: the total less what credit notes took off (Invoice.amount_due).
    board.overdue_totals = [
        (row["currency"], money_display(row["amount"], row["currency"]), row["count"])
        for row in overdue.order_by("currency").values("currency")
        .annotate(amount=Sum(F("total") - F("credited_total")), count=Count("id"))
    ]
    board.overdue = list(overdue.select_related("team").order_by("due_date", "pk")[:LIST_ROWS])
    for invoice in board.overdue:
        invoice.total_display = money_display(invoice.amount_due, invoice.currency)
    board.overdue_url = reverse("admin:invoices_invoice_changelist") + "?overdue=yes"

    # 5. The latest billing runs and their tie-out.
    board.runs = list(AllocationRun.objects.order_by("-created_at", "-pk").prefetch_related("currency_totals")[:LIST_ROWS])
    for run in board.runs:
        pools = list(run.currency_totals.all()) or [run]  # one figure per currency, never summed
        run.ties_out = all(p.allocated_cost + p.unallocated_cost == p.total_cost for p in pools)
        run.total_display = ", ".join(money_display(p.total_cost, p.currency) for p in pools)
        run.allocated_display = ", ".join(money_display(p.allocated_cost, p.currency) for p in pools)
        run.unallocated_display = ", ".join(money_display(p.unallocated_cost, p.currency) for p in pools)
    board.runs_url = reverse("admin:chargeback_allocationrun_changelist")

    # 6. Subscriptions: MRR now, its 12-month movements, subscriptions by tier, trials ending soon.
    board.subscriptions = _subscriptions_board()
    # Whether payments go through Stripe (no query; never the key): "Payments: not configured" otherwise.
    board.payments = {"configured": payments_configured(), "mode": payments_mode(),
                      "url": reverse("admin:payments_payment_changelist")}
    return board


def _subscriptions_board() -> dict:
    """MRR now (reporting currency, other currencies beside), the MRR chart of the last 12 months
    (new, expansion, contraction, churn as stacked bars, MRR as a line; exact decimal strings),
    live subscriptions by tier and the trials ending within 7 days (5 queries)."""
    stats = subscription_stats()
    history = mrr_history(months=CHART_MONTHS)
    currency = stats.reporting.currency
    months = history.get(currency) or next(iter(history.values()), [])
    subscriptions_url = reverse("admin:subscriptions_subscription_changelist")
    tiers: dict[str, dict] = {}
    for row in subscriptions_by_tier():
        tier = tiers.setdefault(row["tier"], {"tier": row["tier"], "total": 0, "statuses": []})
        tier["total"] += row["count"]
        tier["statuses"].append((row["status"], row["count"]))
    trials = list(trials_ending()[:LIST_ROWS])
    return {
        "mrr": money_display(stats.reporting.monthly_revenue, currency),
        "other_mrr": [money_display(f.monthly_revenue, f.currency) for f in stats.other_currencies],
        "customers": stats.total_customers, "active": stats.active_subscriptions,
        "trialing": stats.trial_subscriptions, "past_due": stats.past_due_subscriptions,
        "tiers": sorted(tiers.values(), key=lambda t: t["tier"]),
        "trials": trials, "trials_url": subscriptions_url + "?trial_ends=7d",
        "url": subscriptions_url,
        "chart": {
            "currency": currency,
            "labels": [f"{m.month:%b %Y}" for m in months],
            "mrr": [str(m.end) for m in months],
            "movements": {name: [str(getattr(m, name)) for m in months]
                          for name in ("new", "expansion", "contraction", "churn")},
        },
    }
