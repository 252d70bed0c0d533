"""The dashboard (admin index): the month's figures, charts data, to-do lists, each linking to its list."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing_site.dashboard import dashboard_get
from chargeback.periods import BillingPeriod
from chargeback.services.allocation import allocation_run_execute
from invoices.services.lifecycle import invoice_issue, invoice_mark_overdue, invoice_mark_sent
from tests.admin.conftest import new_key
from tests.factories import TeamFactory, UsageRecordFactory, draft_invoice
from wallets.services.charges import wallet_charge
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db

TODAY = dt.date(2024, 10, 15)
OCTOBER = BillingPeriod.month("2024-10")


def _at(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(12)))


@pytest.fixture
def months(db):
    """Search and Maps in September and October 2024, plus usage without a team; September committed."""
    search, maps = TeamFactory(name="Search", slug="search"), TeamFactory(name="Maps", slug="maps")
    for day, team, cost in [(dt.date(2024, 9, 3), search, "10"), (dt.date(2024, 9, 4), maps, "5"),
                            (dt.date(2024, 9, 5), None, "2"), (dt.date(2024, 10, 2), search, "7"),
                            (dt.date(2024, 10, 3), None, "1"), (dt.date(2024, 3, 3), maps, "4")]:
        UsageRecordFactory(team=team, cost=Decimal(cost), occurred_at=_at(day))
    allocation_run_execute(period=BillingPeriod.month("2024-09"))
    return search, maps


def test_dashboard_figures_of_a_month_and_the_month_before(months):
    board = dashboard_get(today=TODAY, period=OCTOBER)
    this, last = board.months
    assert (this.total, this.allocated, this.unallocated) == (Decimal(8), Decimal(7), Decimal(1))
    assert (last.total, last.allocated, last.unallocated) == (Decimal(17), Decimal(15), Decimal(2))
    assert last.run is not None and "allocationrun" in last.allocated_url
    assert this.unallocated_url.endswith("?period=2024-10&team=none")


def test_dashboard_charts_per_team_and_per_month(months):
    board = dashboard_get(today=TODAY, period=OCTOBER)
    assert board.team_chart["labels"] == ["Search", "Maps", "No team (unallocated)"]
    assert board.team_chart["datasets"][0]["data"] == ["7.000000000000", "0", "1.000000000000"]
    assert len(board.month_chart["labels"]) == 12 and board.month_chart["labels"][-1] == "Oct 2024"
    assert board.month_chart["data"][-2] == "17.000000000000" and board.month_chart["data"][4] == "4.000000000000"


def test_dashboard_lists_wallets_under_their_threshold_and_overdue_invoices(months):
    search, maps = months
    low = wallet_open(team=search)
    wallet_top_up(wallet=low, amount=Decimal(100), idempotency_key=new_key())
    wallet_charge(wallet=low, amount=Decimal(95), idempotency_key=new_key())  # 5 < 10 % of 100
    fine = wallet_open(team=maps)
    wallet_top_up(wallet=fine, amount=Decimal(100), idempotency_key=new_key())
    overdue = invoice_issue(invoice=draft_invoice(team=search, amounts=("12.50",)),
                                             issue_date=dt.date(2024, 9, 1))
    overdue = invoice_mark_overdue(invoice=overdue)
    not_due = invoice_issue(invoice=draft_invoice(team=maps, amounts=("3.00",)),
                                             issue_date=dt.date(2024, 10, 10))
    invoice_mark_sent(invoice=not_due)

    board = dashboard_get(today=TODAY)

    assert [w.pk for w in board.low_wallets] == [low.pk] and board.low_wallet_count == 1
    assert [i.pk for i in board.overdue] == [overdue.pk]
    assert board.overdue_totals == [("USD", "12.50\u00a0USD", 1)]


def test_dashboard_page_links_each_figure_to_its_list(finance, months):
    page = finance.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard"' in page and 'id="team-chart"' in page and "vendor/chartjs/chart.umd.min.js" in page
    assert reverse("admin:wallets_wallet_changelist") + "?below_warning=yes" in page
    assert reverse("admin:invoices_invoice_changelist") + "?overdue=yes" in page
    assert reverse("admin:chargeback_allocationrun_changelist") in page


def test_dashboard_link_targets_filter_their_lists(finance, months):
    wallets = finance.get(reverse("admin:wallets_wallet_changelist"), {"below_warning": "yes"})
    invoices = finance.get(reverse("admin:invoices_invoice_changelist"), {"overdue": "yes"})
    usage = finance.get(reverse("admin:chargeback_usagerecord_changelist"), {"period": "2024-09", "team": "none"})
    assert wallets.status_code == invoices.status_code == 200
    assert [r.cost for r in usage.context["cl"].result_list] == [Decimal(2)]


def test_dashboard_costs_the_same_queries_with_more_teams_and_usage(finance, months):
    url = reverse("admin:index")
    finance.get(url)
    with CaptureQueriesContext(connection) as few:
        finance.get(url)
    for n in range(20):
        team = TeamFactory()
        UsageRecordFactory(team=team, cost=Decimal(n + 1))
        wallet_open(team=team)
    with CaptureQueriesContext(connection) as many:
        finance.get(url)
    assert len(many) == len(few)


def test_auditor_sees_the_dashboard_too(auditor, months):
    assert 'id="dashboard"' in auditor.get(reverse("admin:index")).content.decode()


def test_dashboard_does_not_count_void_usage(months):
    from chargeback.services.usage import usage_record_void
    from tests.factories import UserFactory

    # given a wrong 100 of usage in October (not committed) and in March, both voided
    search, maps = months
    for day, team in [(dt.date(2024, 10, 4), search), (dt.date(2024, 3, 4), maps)]:
        wrong = UsageRecordFactory(team=team, cost=Decimal(100), occurred_at=_at(day))
        usage_record_void(record=wrong, reason="posted twice", voided_by=UserFactory())
    # then this month's figures and the monthly chart are as without them
    board = dashboard_get(today=TODAY, period=OCTOBER)
    assert board.months[0].total == Decimal(8)
    assert board.month_chart["data"][4] == "4.000000000000"


# --- The period picker: month, quarter, year; the latest billed month by default -----------------------

def test_dashboard_opens_on_the_latest_billed_month(finance):
    # Given demo-like data: usage in September, October and November 2026, October just billed
    search = TeamFactory(name="Search", slug="search")
    for day, cost in [(dt.date(2026, 9, 9), "3"), (dt.date(2026, 10, 9), "40"), (dt.date(2026, 11, 2), "6")]:
        UsageRecordFactory(team=search, cost=Decimal(cost), occurred_at=_at(day))
    allocation_run_execute(period=BillingPeriod.month("2026-10"))
    # When finance opens the admin in November, without a period
    response = finance.get(reverse("admin:index"))
    # Then the cards show October, as billed, beside September
    board = response.context["dashboard"]
    assert board.period == BillingPeriod.month("2026-10")
    october, september = board.months
    assert (october.label, october.total, october.state, october.run is not None) == (
        "October 2026", Decimal(40), "billed", True)
    assert september.total == Decimal(3)
    page = response.content.decode()
    assert 'id="period-picker"' in page and '<option value="2026-10" selected>October 2026</option>' in page


def test_dashboard_without_any_billing_run_opens_on_the_current_month(months):
    from chargeback.models import AllocationRun

    AllocationRun.objects.all().delete()
    assert dashboard_get(today=TODAY).period == OCTOBER


def test_dashboard_quarter_sums_its_three_months_and_compares_with_the_quarter_before(months):
    search, maps = months
    for day, team, cost in [(dt.date(2024, 7, 3), search, "100"), (dt.date(2024, 8, 3), None, "20"),
                            (dt.date(2024, 5, 3), maps, "9")]:
        UsageRecordFactory(team=team, cost=Decimal(cost), occurred_at=_at(day))
    board = dashboard_get(today=TODAY, period=BillingPeriod.parse("2024-Q3"))
    q3, q2 = board.months
    # July and August from usage, September from its committed run (17 = 10 + 5 + 2 unallocated)
    assert (q3.label, q3.total, q3.allocated, q3.unallocated) == (
        "Q3 2024 (July–September)", Decimal(137), Decimal(115), Decimal(22))
    assert q3.state == "" and q3.run is None and q3.total_url.endswith("?period=2024-Q3")
    assert q2.total == Decimal(9)
    assert board.team_chart["labels"][:2] == ["Search", "Maps"]
    assert board.team_chart["datasets"][0]["data"][:2] == ["110.000000000000", "5.000000000000"]
    assert board.month_chart["labels"][-1] == "Sep 2024"


def test_dashboard_year_sums_every_month_of_the_year(months):
    board = dashboard_get(today=TODAY, period=BillingPeriod.parse("2024"))
    year, before = board.months
    # March 4 + September 17 (billed) + October 8 (so far)
    assert (year.label, year.total, year.state) == ("2024", Decimal(29), "so far")
    assert before.total == Decimal(0) and before.label.startswith("2023")
    assert len(board.month_chart["labels"]) == 12 and board.month_chart["labels"][0] == "Jan 2024"


def test_dashboard_period_param_picks_month_quarter_and_year(finance, months):
    for param, total in [("2024-09", Decimal(17)), ("2024-Q3", Decimal(17)), ("2024", Decimal(29))]:
        response = finance.get(reverse("admin:index"), {"period": param})
        assert response.status_code == 200
        assert response.context["dashboard"].months[0].total == total, param


@pytest.mark.parametrize("bad", ["2024-13", "2024-Q5", "last month", "0999"])
def test_dashboard_bad_period_is_a_clear_400_not_a_500(finance, months, bad):
    response = finance.get(reverse("admin:index"), {"period": bad})
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="period-error"' in page and "period" in response.context["dashboard_error"]
    assert 'id="dashboard"' in page  # the default period's figures are still shown


def test_usage_list_follows_a_quarter_link_of_the_dashboard(finance, months):
    usage = finance.get(reverse("admin:chargeback_usagerecord_changelist"), {"period": "2024-Q3"})
    assert sorted(r.cost for r in usage.context["cl"].result_list) == [Decimal(2), Decimal(5), Decimal(10)]
