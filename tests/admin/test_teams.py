"""Teams in the admin: members and billing settings inline, wallet balances and links to the money."""

from decimal import Decimal

import pytest
from django.urls import reverse

from teams.models import BillingSettings
from tests.admin.conftest import new_key
from tests.factories import TeamFactory
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db


def _team_data(team, **changes):
    data = {"name": team.name, "slug": team.slug, "cost_center": team.cost_center, "parent": "",
            "currency": team.currency, "is_active": "on",
            "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
            "billing_settings-TOTAL_FORMS": "1", "billing_settings-INITIAL_FORMS": "0",
            "billing_settings-MIN_NUM_FORMS": "0", "billing_settings-MAX_NUM_FORMS": "1",
            "billing_settings-0-billing_model": "postpaid", "billing_settings-0-credit_limit": "500",
            "billing_settings-0-warning_threshold_type": "absolute",
            "billing_settings-0-warning_threshold_value": "50", "billing_settings-0-notify_emails": "",
            "billing_settings-0-billing_address": "", "billing_settings-0-allowed_providers": "[]",
            "billing_settings-0-tax_rate": "19", "billing_settings-0-payment_terms_days": "14",
            "billing_settings-0-invoice_currency": "per_currency"}
    data.update(changes)
    return data


def test_team_page_shows_wallet_balance_and_links_to_ledger_usage_invoices(finance):
    team = TeamFactory(name="Search")
    wallet = wallet_open(team=team)
    wallet_top_up(wallet=wallet, amount=Decimal("42.5"), idempotency_key=new_key())
    page = finance.get(reverse("admin:teams_team_change", args=[team.pk])).content.decode()
    assert "42.50\u00a0USD" in page
    assert f"?team={team.pk}" in page and f"?team__id__exact={team.pk}" in page
    listing = finance.get(reverse("admin:teams_team_changelist")).content.decode()
    assert "42.50\u00a0USD" in listing


def test_team_billing_settings_inline_saves_through_the_service_and_is_audited(finance, finance_user):
    team = TeamFactory(name="Search")
    response = finance.post(reverse("admin:teams_team_change", args=[team.pk]), _team_data(team))
    assert response.status_code == 302
    settings = BillingSettings.objects.get(team=team)
    assert (settings.billing_model, settings.credit_limit, settings.tax_rate) == ("postpaid", Decimal(500), Decimal(19))
    history = finance.get(reverse("admin:teams_billingsettings_history", args=[settings.pk])).content.decode()
    assert "postpaid" in history and finance_user.username in history


def test_team_billing_settings_with_a_bad_email_are_refused_in_the_form(finance):
    team = TeamFactory(name="Search")
    response = finance.post(reverse("admin:teams_team_change", args=[team.pk]),
                            _team_data(team, **{"billing_settings-0-notify_emails": "not-an-address"}))
    assert response.status_code == 200
    assert not BillingSettings.objects.filter(team=team).exists()


def test_team_billing_settings_extra_currencies_are_saved_from_the_inline_and_checked(finance):
    team = TeamFactory(name="Search")
    url = reverse("admin:teams_team_change", args=[team.pk])
    refused = finance.post(url, _team_data(team, **{"billing_settings-0-extra_currencies": '["eur"]'}))
    assert refused.status_code == 200 and not BillingSettings.objects.filter(team=team).exists()
    assert finance.post(url, _team_data(team, **{"billing_settings-0-extra_currencies": '["EUR"]'})).status_code == 302
    assert BillingSettings.objects.get(team=team).extra_currencies == ["EUR"]


def test_team_can_be_set_to_be_invoiced_in_its_own_currency_from_the_inline(finance):
    team = TeamFactory(name="Search")
    response = finance.post(reverse("admin:teams_team_change", args=[team.pk]),
                            _team_data(team, **{"billing_settings-0-invoice_currency": "team_currency"}))
    assert response.status_code == 302
    assert BillingSettings.objects.get(team=team).invoice_currency == "team_currency"
