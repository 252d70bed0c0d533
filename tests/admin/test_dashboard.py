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


def test_dashboard_figures_of_this_and_last_month(months):
    board = dashboard_get(today=TODAY)
    this, last = board.months
    assert (this.total, this.allocated, this.unallocated) == (Decimal(8), Decimal(7), Decimal(1))
    assert (last.total, last.allocated, last.unallocated) == (Decimal(17), Decimal(15), Decimal(2))
    assert last.run is not None and "allocationrun" in last.allocated_url
    assert this.unallocated_url.endswith("?period=2024-10&team=none")


def test_dashboard_charts_per_team_and_per_month(months):
    board = dashboard_get(today=TODAY)
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
    board = dashboard_get(today=TODAY)
    assert board.months[0].total == Decimal(8)
    assert board.month_chart["data"][4] == "4.000000000000"
