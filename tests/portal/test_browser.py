"""The team portal in a real browser (Playwright + Debian's Chromium), as a member and a team lead use it.

Screenshots land in ``test-artifacts/portal/`` (gitignored): a member's overview on a desktop and a
phone, the usage page with its chart, a lead's budget page with an alert, another team's id (404).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from portal.models import BudgetAlert
from tests.factories import UsageRecordFactory, draft_invoice
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory
PHONE = {"width": 390, "height": 844}


def _log_in(page, live_server, username):
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/portal/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("nav.tabs")


def _month_of_usage(team):
    now = timezone.now()
    for day, provider, cost in ((1, "openai", "120.5"), (1, "AWS", "300"), (2, "openai", "80.25")):
        UsageRecordFactory(team=team, provider=provider, cost=Decimal(cost),
                           occurred_at=now.replace(day=day, hour=9, minute=0, second=0, microsecond=0))


def test_browser_member_sees_the_team_and_nothing_else(page, live_server, member_user, search, maps,
                                                       portal_artifacts):
    _month_of_usage(search)
    wallet_top_up(wallet=wallet_open(team=search), amount=Decimal("12345.67"), idempotency_key="b-1")
    draft_invoice(team=search, amounts=("1234.50",))
    _log_in(page, live_server, "mia-member")
    assert "Member" in page.inner_text("header")
    assert "500.75\u00a0USD" in page.inner_text("main")
    assert "12,345.67\u00a0USD" in page.inner_text("main")
    page.screenshot(path=str(portal_artifacts / "member-overview.png"), full_page=True)

    page.click("nav.tabs >> text=Usage")
    page.wait_for_function("window.portalChart !== undefined")
    page.screenshot(path=str(portal_artifacts / "member-usage.png"), full_page=True)
    page.click("nav.pills >> text=Provider")
    page.click("table >> text=openai")
    assert "2 records" in page.inner_text("caption")

    page.click("nav.tabs >> text=API keys")
    assert page.locator("text=Create the key").count() == 0

    page.set_viewport_size(PHONE)
    page.click("nav.tabs >> text=Overview")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(portal_artifacts / "member-overview-phone.png"), full_page=True)

    response = page.goto(f"{live_server.url}/portal/teams/{maps.pk}/")
    assert response.status == 404
    assert "Maps" not in page.content()
    page.screenshot(path=str(portal_artifacts / "other-team-404.png"), full_page=True)


def test_browser_lead_sets_a_budget_and_sees_the_alert(page, live_server, lead_user, search, portal_artifacts):
    _month_of_usage(search)  # 500.75 USD this month
    _log_in(page, live_server, "lars-lead")
    assert "Team lead" in page.inner_text("header")
    page.click("nav.tabs >> text=Budget")
    page.fill("#id_amount", "550")
    page.fill("#id_thresholds", "80, 100")
    page.click("text=Save the budget")
    page.wait_for_selector("#budget-alerts")
    alerts = page.inner_text("#budget-alerts")
    assert "80 %" in alerts
    assert "linear projection" in page.inner_text("#budget-status")
    assert BudgetAlert.objects.filter(team=search, threshold="80").count() == 1
    assert any("80 %" in m.subject and m.to == [lead_user.email] for m in mail.outbox)
    page.screenshot(path=str(portal_artifacts / "lead-budget-alert.png"), full_page=True)

    page.click("nav.tabs >> text=API keys")
    page.fill("#id_name", "voice agent (production)")
    page.click("text=Create the key")
    page.wait_for_selector("#new-key")
    page.screenshot(path=str(portal_artifacts / "lead-api-keys.png"), full_page=True)
    page.click("button:has-text('Revoke')")
    page.wait_for_selector(".messages")
    assert "revoked" in page.inner_text(".messages")
