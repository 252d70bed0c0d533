"""The team portal as its users meet it: log in, see only their teams, read usage, wallet, invoices and
allocations, download exports, set a budget and get its alerts once, manage API keys."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone
from openpyxl import load_workbook

from chargeback.periods import BillingPeriod
from chargeback.services.allocation import allocation_run_execute
from portal.models import BudgetAlert
from portal.services import budget_alerts_check, budget_set
from subscriptions.services.lifecycle import subscription_create
from subscriptions.services.plans import plan_create
from teams.services import api_key_authenticate, billing_settings_update
from tests.factories import AllocationRuleFactory, AllocationTargetFactory, UsageRecordFactory, draft_invoice
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db

TEAM_PAGES = ["", "usage/", "usage/rows/", "usage/export.csv", "usage/export.xlsx", "wallet/", "invoices/",
              "allocations/", "budget/", "api-keys/"]


def _usage(team, cost, *, day=5, **fields):
    occurred = timezone.make_aware(dt.datetime(2024, 9, day, 12))
    return UsageRecordFactory(team=team, cost=Decimal(cost), occurred_at=occurred, **fields)


# --- access ----------------------------------------------------------------------------------------

def test_portal_anonymous_is_sent_to_the_login_page(client, search):
    response = client.get(f"/portal/teams/{search.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/?next=")


def test_portal_login_with_the_same_account_lands_on_the_only_team(client, member_user, search):
    response = client.post("/portal/login/", {"username": "mia-member", "password": "pw-for-tests-only"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/portal/teams/{search.pk}/"
    assert b"Search: overview" in response.content


@pytest.mark.parametrize("page", TEAM_PAGES)
def test_portal_another_teams_id_answers_404_on_every_page(member, maps, today, page):
    assert member.get(f"/portal/teams/{maps.pk}/{page}").status_code == 404


def test_portal_another_teams_invoice_through_my_team_answers_404(member, search, maps, today):
    theirs = draft_invoice(team=maps)
    assert member.get(f"/portal/teams/{search.pk}/invoices/{theirs.pk}/").status_code == 404
    assert member.get(f"/portal/teams/{search.pk}/invoices/{theirs.pk}/pdf/").status_code == 404


def test_portal_finance_sees_every_team(finance, search, maps, today):
    response = finance.get("/portal/")
    assert b"Search" in response.content and b"Maps" in response.content
    assert finance.get(f"/portal/teams/{maps.pk}/").status_code == 200


def test_portal_password_reset_mails_a_link_that_sets_a_new_password(client, member_user):
    client.post("/portal/password-reset/", {"email": member_user.email})
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [member_user.email]
    link = re.search(r"https?://[^/]+(/portal/password-reset/\S+/)", mail.outbox[0].body).group(1)
    form_url = client.get(link, follow=True).redirect_chain[-1][0]
    client.post(form_url, {"new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"})
    assert client.login(username="mia-member", password="a-new-long-passphrase")


# --- overview, usage, exports --------------------------------------------------------------------------

def test_portal_overview_shows_the_month_so_far_against_last_month_and_the_wallet(member, search, today):
    _usage(search, "1234.5")
    UsageRecordFactory(team=search, cost=Decimal("99"), occurred_at=timezone.make_aware(dt.datetime(2024, 8, 3)))
    wallet = wallet_open(team=search)
    wallet_top_up(wallet=wallet, amount=Decimal("5000"), idempotency_key="portal-1")
    page = member.get(f"/portal/teams/{search.pk}/").content.decode()
    assert "1,234.50\u00a0USD" in page and "August 2024: 99.00\u00a0USD" in page
    assert "5,000.00\u00a0USD" in page
    assert 'id="plan-slot"' in page and "no subscription" in page


def test_portal_overview_shows_included_units_used_against_the_plan(member, search, today):
    # given the team on a plan with 500 included LLM tokens a month and 585 used this period
    billing_settings_update(team=search, billing_model="postpaid", credit_limit=Decimal(100000))
    plan = plan_create(code="pro", name="Pro", tier="pro", currency="USD", fee=Decimal("49"), charges=[{
        "meter": "inference", "resource_type": "llm", "unit": "token", "included_units": Decimal(500),
        "charge_model": "standard", "price": Decimal("2.00"), "price_per_units": Decimal(1000)}])
    subscription_create(team=search, plan=plan, start=timezone.make_aware(dt.datetime(2024, 9, 1)))
    _usage(search, "1", resource_type="llm", unit="token", quantity=Decimal("585"))
    # when a member opens the overview
    page = member.get(f"/portal/teams/{search.pk}/").content.decode()
    # then the plan's included units, the usage so far and what lies beyond the plan are shown
    plan_part = page.split('id="plan-slot"')[1].split("</section>")[0]
    assert "Pro" in plan_part and "49.00\u00a0USD" in plan_part
    assert "500 tokens" in plan_part and "585 tokens" in plan_part and "85 tokens" in plan_part
    assert "0.17\u00a0USD" in plan_part


def test_portal_usage_groups_by_provider_and_drills_down_to_rows(member, search, maps, today):
    _usage(search, "2", provider="openai", resource_type="llm", unit="token", quantity=Decimal("1000"))
    _usage(search, "3", provider="openai", resource_type="llm", unit="token", quantity=Decimal("500"))
    _usage(search, "7", provider="AWS")
    _usage(maps, "100", provider="openai")
    response = member.get(f"/portal/teams/{search.pk}/usage/", {"period": "2024-09", "group": "provider"})
    page = response.content.decode()
    assert "5.00\u00a0USD" in page and "1,500 tokens" in page and "100.00" not in page
    assert response.context["chart"]["values"] == ["7.000000000000", "5.000000000000"]
    rows = member.get(f"/portal/teams/{search.pk}/usage/rows/", {"period": "2024-09", "provider": "openai"})
    assert rows.context["page"].paginator.count == 2


def test_portal_usage_bad_month_names_the_field(member, search, today):
    response = member.get(f"/portal/teams/{search.pk}/usage/", {"period": "2024-13"})
    assert response.status_code == 400
    assert "Enter a month as YYYY-MM" in response.content.decode()


def test_portal_usage_csv_neutralises_formulas_and_keeps_numbers(member, search, today):
    _usage(search, "-1.25", feature_key='=HYPERLINK("http://evil","x")')
    response = member.get(f"/portal/teams/{search.pk}/usage/export.csv", {"period": "2024-09"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    header, row = rows[0], rows[1]
    assert row[header.index("feature_key")].startswith("'=HYPERLINK")
    assert row[header.index("cost")] == "-1.250000000000"


def test_portal_usage_xlsx_neutralises_formulas_and_keeps_exact_amounts(member, search, today):
    _usage(search, "2.5", feature_key="=1+2", provider="@SUM(A1)")
    response = member.get(f"/portal/teams/{search.pk}/usage/export.xlsx", {"period": "2024-09"})
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True).active
    header, row = [list(r) for r in sheet.iter_rows(max_row=2, values_only=True)]
    assert row[header.index("feature_key")] == "'=1+2" and row[header.index("provider")] == "'@SUM(A1)"
    assert row[header.index("cost")] == "2.500000000000"  # exact, never a float


# --- wallet, invoices, allocations ---------------------------------------------------------------------

def test_portal_wallet_ledger_newest_first_with_running_balance(member, search, today):
    wallet = wallet_open(team=search)
    wallet_top_up(wallet=wallet, amount=Decimal("10"), idempotency_key="w-1")
    wallet_top_up(wallet=wallet, amount=Decimal("2.5"), idempotency_key="w-2")
    response = member.get(f"/portal/teams/{search.pk}/wallet/")
    entries = list(response.context["page"])
    assert [e.balance_after for e in entries] == [Decimal("12.5"), Decimal("10")]
    assert "12.50\u00a0USD" in response.content.decode()


def test_portal_invoice_detail_and_pdf(member, search, today):
    invoice = draft_invoice(team=search, amounts=("1234.50",))
    page = member.get(f"/portal/teams/{search.pk}/invoices/{invoice.pk}/").content.decode()
    assert "1,234.50\u00a0USD" in page
    pdf = member.get(f"/portal/teams/{search.pk}/invoices/{invoice.pk}/pdf/")
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


def test_portal_allocations_explain_a_shared_cost_rule_by_rule(member, search, maps, today):
    _usage(search, "30")
    _usage(maps, "10")
    _usage(None, "100", resource_type="shared")
    rule = AllocationRuleFactory(name="Shared platform", rule_type="by_usage")
    AllocationTargetFactory(rule=rule, team=search)
    AllocationTargetFactory(rule=rule, team=maps)
    allocation_run_execute(period=BillingPeriod.month("2024-09"))
    page = member.get(f"/portal/teams/{search.pk}/allocations/", {"period": "2024-09"}).content.decode()
    assert "Shared platform" in page and "75.00\u00a0USD" in page and "75.0 %" in page


# --- budgets ---------------------------------------------------------------------------------------

def test_portal_budget_only_a_lead_or_finance_sets_it(member, search, today):
    response = member.post(f"/portal/teams/{search.pk}/budget/", {"amount": "100", "thresholds": "80, 100"})
    assert response.status_code == 403
    assert not hasattr(search, "budget") or search.budget is None


def test_portal_budget_set_by_the_lead_sends_each_alert_once(lead, lead_user, search, today,
                                                              django_capture_on_commit_callbacks):
    # given 85 USD spent by the 10th of September
    _usage(search, "85")
    # when the lead sets a budget of 100 USD
    with django_capture_on_commit_callbacks(execute=True):
        response = lead.post(f"/portal/teams/{search.pk}/budget/",
                             {"amount": "100", "thresholds": "80, 100", "alert_on_forecast": "on"})
    assert response.status_code == 302
    # then the 80 % and forecast alerts go out, once each, to the lead
    assert sorted(a.threshold for a in BudgetAlert.objects.all()) == ["80", "forecast"]
    assert len(mail.outbox) == 2 and all(m.to == [lead_user.email] for m in mail.outbox)
    assert any("80 %" in m.subject for m in mail.outbox)
    # and a second check sends nothing new, while crossing 100 % sends that one alert
    with django_capture_on_commit_callbacks(execute=True):
        assert budget_alerts_check(team=search) == []
    _usage(search, "20")
    with django_capture_on_commit_callbacks(execute=True):
        assert [a.threshold for a in budget_alerts_check(team=search)] == ["100"]
    assert len(mail.outbox) == 3
    page = lead.get(f"/portal/teams/{search.pk}/budget/").content.decode()
    assert "linear projection" in page and "forecast to exceed" in page


def test_budget_forecast_is_a_linear_projection_of_the_month(search, today):
    # given 20 USD by the 10th of a 30-day month, a budget of 50
    _usage(search, "20")
    budget_set(team=search, amount=Decimal("50"), thresholds=[80])
    from portal.selectors import budget_status_get

    status = budget_status_get(team=search, today=today)
    assert status.forecast == Decimal("60") and status.crossed == ["forecast"]


def test_budget_refuses_a_bad_threshold_and_amount(search):
    from billing_site.errors import BillingError

    with pytest.raises(BillingError) as excinfo:
        budget_set(team=search, amount=Decimal("100"), thresholds=[0])
    assert excinfo.value.param == "thresholds"
    with pytest.raises(BillingError) as excinfo:
        budget_set(team=search, amount=Decimal("0"))
    assert excinfo.value.param == "amount"


# --- API keys ------------------------------------------------------------------------------------

def test_portal_api_keys_a_lead_creates_and_revokes(lead, search, today):
    response = lead.post(f"/portal/teams/{search.pk}/api-keys/", {"name": "voice agent"})
    raw = response.context["created"].raw_key
    assert raw in response.content.decode()
    key = api_key_authenticate(raw_key=raw)
    assert key is not None and key.team == search
    lead.post(f"/portal/teams/{search.pk}/api-keys/{key.pk}/revoke/")
    assert api_key_authenticate(raw_key=raw) is None


def test_portal_api_keys_a_member_may_not_create_or_revoke(member, search, today):
    from teams.services import api_key_create

    key = api_key_create(team=search, name="existing")
    assert member.post(f"/portal/teams/{search.pk}/api-keys/", {"name": "mine"}).status_code == 403
    assert member.post(f"/portal/teams/{search.pk}/api-keys/{key.pk}/revoke/").status_code == 403
    assert api_key_authenticate(raw_key=key.raw_key) is not None
    assert b"Create the key" not in member.get(f"/portal/teams/{search.pk}/api-keys/").content
