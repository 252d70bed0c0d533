"""Who sees billing in the admin: finance changes, auditors read, other staff see nothing."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from teams.groups import billing_groups_sync
from tests.factories import PriceFactory, TeamFactory

pytestmark = pytest.mark.django_db

BILLING_LISTS = [
    "admin:teams_team_changelist", "admin:chargeback_usagerecord_changelist", "admin:chargeback_price_changelist",
    "admin:chargeback_allocationrule_changelist", "admin:chargeback_allocationrun_changelist",
    "admin:wallets_wallet_changelist", "admin:wallets_ledgerentry_changelist", "admin:invoices_invoice_changelist",
]


def test_groups_migration_gives_finance_the_custom_permissions_and_auditor_only_view(groups):
    finance = set(groups["finance"].permissions.values_list("content_type__app_label", "codename"))
    auditor = set(groups["auditor"].permissions.values_list("codename", flat=True))
    assert {("wallets", "top_up"), ("wallets", "grant"), ("wallets", "freeze"), ("chargeback", "change_price"),
            ("invoices", "view_invoice")} <= finance
    assert auditor and all(codename.startswith("view_") for codename in auditor)


def test_groups_sync_adds_later_permissions_and_keeps_hand_granted_ones(groups):
    finance = groups["finance"]
    extra = Permission.objects.get(codename="add_group")
    finance.permissions.add(extra)
    Permission.objects.filter(codename="top_up").delete()  # as if a later migration introduced it

    billing_groups_sync()

    codenames = set(finance.permissions.values_list("codename", flat=True))
    assert {"top_up", "add_group"} <= codenames
    assert Group.objects.filter(name="finance").count() == 1


@pytest.mark.parametrize("url_name", BILLING_LISTS)
def test_finance_and_auditor_open_every_billing_list(client, finance_user, auditor_user, url_name):
    for user in (finance_user, auditor_user):
        client.force_login(user)
        assert client.get(reverse(url_name)).status_code == 200, user


@pytest.mark.parametrize("url_name", BILLING_LISTS)
def test_staff_outside_the_groups_cannot_open_billing_lists_even_with_view_permissions(staff, url_name):
    assert staff.get(reverse(url_name)).status_code == 403


def test_staff_outside_the_groups_see_no_billing_app_and_no_dashboard(staff):
    response = staff.get(reverse("admin:index"))
    apps = {app["app_label"] for app in response.context["app_list"]}
    assert not apps & {"chargeback", "wallets", "invoices"}
    assert 'id="dashboard"' not in response.content.decode()


def test_auditor_reads_a_price_but_cannot_change_it(auditor):
    price = PriceFactory(unit_price="0.00003")
    page = auditor.get(reverse("admin:chargeback_price_change", args=[price.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    response = auditor.post(reverse("admin:chargeback_price_change", args=[price.pk]), {"unit_price": "9"})
    assert response.status_code == 403
    price.refresh_from_db()
    assert str(price.unit_price.normalize()) == "0.00003"


def test_auditor_sees_no_money_moving_actions(auditor, wallet):
    page = auditor.get(reverse("admin:wallets_wallet_changelist")).content.decode()
    assert "top_up_action" not in page and "freeze_action" not in page
    assert auditor.get(reverse("admin:wallets_wallet_top_up") + f"?ids={wallet.pk}").status_code == 403


def test_finance_team_search_finds_by_cost_center(finance):
    TeamFactory(name="Search", slug="search", cost_center="CC-4711")
    TeamFactory(name="Ads", slug="ads", cost_center="CC-1000")
    page = finance.get(reverse("admin:teams_team_changelist") + "?q=4711").content.decode()
    assert "Search" in page and ">Ads<" not in page
