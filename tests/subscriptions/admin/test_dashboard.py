"""The dashboard's subscription figures: MRR now, its 12-month movements, tiers, trials ending; and
the dashboard drawn in a browser (screenshot in ``test-artifacts/admin/subscriptions-dashboard.png``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from subscriptions.selectors_mrr import mrr_history, subscription_stats
from subscriptions.services.lifecycle import subscription_cancel, subscription_change_plan, subscription_create
from subscriptions.services.plans import plan_create
from subscriptions.services.renewal import subscriptions_renew_due
from tests.subscriptions.api.conftest import INFERENCE, postpaid_team

D = Decimal


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def _plan(code, fee, interval="month", tier=None, trial_days=0):
    return plan_create(code=code, name=code.title(), tier=tier or code, currency="USD", fee=D(fee), interval=interval,
                       trial_days=trial_days, charges=[INFERENCE])


@pytest.mark.django_db
def test_mrr_history_splits_each_month_into_new_expansion_contraction_and_churn():
    # given, through the services, half a year of a small book (all dates in 2025, UTC):
    starter, pro, enterprise = _plan("starter", "19"), _plan("pro", "49"), _plan("enterprise", "1200", "year")
    team = lambda: postpaid_team()  # noqa: E731
    a = subscription_create(team=team(), plan=pro, start=at(2025, 1, 10))         # Jan: new 49
    e = subscription_create(team=team(), plan=pro, start=at(2025, 1, 15))         # Jan: new 49
    c = subscription_create(team=team(), plan=pro, start=at(2025, 2, 2))          # Feb: new 49
    b = subscription_create(team=team(), plan=starter, start=at(2025, 3, 5))      # Mar: new 19
    subscriptions_renew_due(at=at(2025, 3, 20))
    subscription_change_plan(subscription=e, plan=starter, when="period_end", at=at(2025, 3, 20))  # Apr 15: −30
    subscriptions_renew_due(at=at(2025, 4, 1))
    subscription_create(team=team(), plan=enterprise, start=at(2025, 4, 1, 12))   # Apr: new 1,200 / 12 = 100
    subscriptions_renew_due(at=at(2025, 4, 20))
    b.refresh_from_db()
    subscription_change_plan(subscription=b, plan=pro, when="now", at=at(2025, 4, 20))  # Apr: +30
    subscriptions_renew_due(at=at(2025, 5, 10))
    c.refresh_from_db()
    subscription_cancel(subscription=c, at_period_end=False, at=at(2025, 5, 10))  # May: churn −49
    subscriptions_renew_due(at=at(2025, 6, 15))
    assert a.pk

    # when the last six months are read on 15 June 2025
    months = mrr_history(months=6, now=at(2025, 6, 15))["USD"]

    # then each month's movements reconcile its start and end, and are the ones above
    rows = [(m.month.month, m.start, m.new, m.expansion, m.contraction, m.churn, m.end) for m in months]
    assert rows == [
        (1, D(0), D(98), D(0), D(0), D(0), D(98)),
        (2, D(98), D(49), D(0), D(0), D(0), D(147)),
        (3, D(147), D(19), D(0), D(0), D(0), D(166)),
        (4, D(166), D(100), D(30), D(-30), D(0), D(266)),
        (5, D(266), D(0), D(0), D(0), D(-49), D(217)),
        (6, D(217), D(0), D(0), D(0), D(0), D(217)),
    ]
    for m in months:
        assert m.start + m.new + m.expansion + m.contraction + m.churn == m.end
    # and the last point is the stats' MRR now
    assert subscription_stats().reporting.exact == months[-1].end


@pytest.mark.django_db
def test_dashboard_shows_mrr_tiers_and_trials_ending(finance):
    pro, trial = _plan("pro", "49", tier="professional"), _plan("starter", "19", trial_days=5)
    subscription_create(team=postpaid_team(name="Search"), plan=pro)
    subscription_create(team=postpaid_team(name="Maps"), plan=trial)
    response = finance.get(reverse("admin:index"))
    assert response.status_code == 200
    board = response.context["dashboard"].subscriptions
    assert board["mrr"] == "49.00\u00a0USD" and board["trialing"] == 1
    assert [t["tier"] for t in board["tiers"]] == ["professional", "starter"]
    assert [s.team.name for s in board["trials"]] == ["Maps"]
    assert board["chart"]["mrr"][-1] == "49.000000000000" and len(board["chart"]["labels"]) == 12
    html = response.content.decode()
    assert 'id="mrr-now"' in html and "49.00\u00a0USD" in html and 'id="trials-ending"' in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_dashboard_draws_the_mrr_chart(page, live_server, finance_user, artifacts):
    # given a book with a trial, monthly and yearly subscriptions, an upgrade and a cancellation
    starter, pro = _plan("starter", "19", trial_days=5), _plan("pro", "49", tier="professional")
    enterprise = _plan("enterprise", "12000", "year")
    now = timezone.now()
    start = now - dt.timedelta(days=70)
    subscription_create(team=postpaid_team(name="Search"), plan=pro, start=start)
    upgraded = subscription_create(team=postpaid_team(name="Maps"), plan=_plan("basic-m", "9", tier="starter"),
                                   start=start)
    gone = subscription_create(team=postpaid_team(name="Ads"), plan=pro, start=start)
    subscription_create(team=postpaid_team(name="Checkout"), plan=enterprise, start=start)
    subscription_create(team=postpaid_team(name="Billing"), plan=starter)
    subscriptions_renew_due(at=now)
    upgraded.refresh_from_db()
    subscription_change_plan(subscription=upgraded, plan=pro, when="now")
    gone.refresh_from_db()
    subscription_cancel(subscription=gone, at_period_end=False)
    # when finance opens the dashboard
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", finance_user.username)
    page.fill("#id_password", "pw-for-tests-only")
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard[data-charts-drawn=true]")
    # then the MRR, the movements chart, the tiers and the trial ending soon are on it
    assert page.inner_text("#mrr-now") == "1,098.00\u00a0USD"  # 49 + 49 + 12,000 / 12; no trial, no canceled
    drawn = page.evaluate("() => window.billingCharts.mrr.data.datasets.map(d => d.label)")
    assert drawn == ["New", "Expansion", "Contraction", "Churn", "MRR"]
    assert "Billing" in page.inner_text("#trials-ending")
    page.locator("#subscriptions").screenshot(path=str(artifacts / "subscriptions-dashboard.png"))
    page.screenshot(path=str(artifacts / "dashboard-with-subscriptions.png"), full_page=True)
