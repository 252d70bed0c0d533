"""Wallet actions in the admin: top up and grant through an intermediate form, freeze, unfreeze."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from wallets.models import CreditGrant, LedgerEntry, Wallet

pytestmark = pytest.mark.django_db


def _form_key(page: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_top_up_action_opens_the_form_for_the_selected_wallets(finance, wallet):
    response = finance.post(reverse("admin:wallets_wallet_changelist"),
                            {"action": "top_up_action", "_selected_action": [wallet.pk]})
    assert response.status_code == 302
    form = finance.get(response["Location"])
    assert form.status_code == 200
    page = form.content.decode()
    assert "Search" in page and _form_key(page).startswith("admin-")


def test_top_up_credits_the_wallet_once_when_the_form_is_submitted_twice(finance, wallet):
    url = reverse("admin:wallets_wallet_top_up") + f"?ids={wallet.pk}"
    key = _form_key(finance.get(url).content.decode())
    data = {"ids": str(wallet.pk), "amount": "25.50", "description": "PO 4711", "reference_id": "PO-4711",
            "idempotency_key": key}

    first = finance.post(url, data, follow=True)
    second = finance.post(url, data, follow=True)

    wallet.refresh_from_db()
    assert wallet.balance == Decimal("125.50")
    assert LedgerEntry.objects.filter(wallet=wallet, entry_type="top_up", reference_id="PO-4711").count() == 1
    assert any("Top up of 25.50\u00a0USD to Search" in m for m in _messages(first))
    assert any("already submitted" in m for m in _messages(second))


def test_top_up_form_rendered_twice_makes_two_keys(finance, wallet):
    url = reverse("admin:wallets_wallet_top_up") + f"?ids={wallet.pk}"
    assert _form_key(finance.get(url).content.decode()) != _form_key(finance.get(url).content.decode())


@pytest.mark.parametrize("amount", ["0", "-5", "1.0000000000001", "abc"])
def test_top_up_refuses_a_bad_amount_in_the_form(finance, wallet, amount):
    url = reverse("admin:wallets_wallet_top_up") + f"?ids={wallet.pk}"
    key = _form_key(finance.get(url).content.decode())
    response = finance.post(url, {"ids": str(wallet.pk), "amount": amount, "idempotency_key": key})
    assert response.status_code == 200
    assert "amount" in response.context["form"].errors
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("100")


def test_top_up_of_a_closed_wallet_is_refused_with_a_message(finance, wallet):
    Wallet.objects.filter(pk=wallet.pk).update(status=Wallet.Status.CLOSED)
    url = reverse("admin:wallets_wallet_top_up") + f"?ids={wallet.pk}"
    key = _form_key(finance.get(url).content.decode())
    response = finance.post(url, {"ids": str(wallet.pk), "amount": "5", "idempotency_key": key})
    assert response.status_code == 200
    assert "closed" in " ".join(response.context["form"].non_field_errors()).lower()
    assert LedgerEntry.objects.filter(wallet=wallet).count() == 1


def test_grant_credits_with_expiry_creates_a_grant_lot(finance, wallet):
    url = reverse("admin:wallets_wallet_grant") + f"?ids={wallet.pk}"
    key = _form_key(finance.get(url).content.decode())
    expires = (timezone.now() + dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M")
    response = finance.post(url, {"ids": str(wallet.pk), "amount": "10", "description": "Welcome credit",
                                  "expires_at": expires, "idempotency_key": key})
    assert response.status_code == 302
    grant = CreditGrant.objects.get(wallet=wallet)
    assert grant.amount == Decimal("10") and grant.expires_at is not None
    wallet.refresh_from_db()
    assert wallet.granted_balance == Decimal("10") and wallet.balance == Decimal("110")


def test_grant_refuses_an_expiry_in_the_past(finance, wallet):
    url = reverse("admin:wallets_wallet_grant") + f"?ids={wallet.pk}"
    key = _form_key(finance.get(url).content.decode())
    response = finance.post(url, {"ids": str(wallet.pk), "amount": "10", "expires_at": "2020-01-01 00:00",
                                  "idempotency_key": key})
    assert response.status_code == 200
    assert "future" in str(response.context["form"].errors["expires_at"])
    assert not CreditGrant.objects.exists()


def test_top_up_without_a_wallet_goes_back_to_the_list(finance, db):
    response = finance.get(reverse("admin:wallets_wallet_top_up") + "?ids=999999")
    assert response.status_code == 302


def test_freeze_and_unfreeze_actions_change_the_status(finance, wallet):
    changelist = reverse("admin:wallets_wallet_changelist")
    finance.post(changelist, {"action": "freeze_action", "_selected_action": [wallet.pk]})
    wallet.refresh_from_db()
    assert wallet.status == Wallet.Status.FROZEN
    finance.post(changelist, {"action": "unfreeze_action", "_selected_action": [wallet.pk]})
    wallet.refresh_from_db()
    assert wallet.status == Wallet.Status.ACTIVE


def test_freeze_of_a_closed_wallet_shows_a_message_not_an_error_page(finance, wallet):
    Wallet.objects.filter(pk=wallet.pk).update(status=Wallet.Status.CLOSED)
    response = finance.post(reverse("admin:wallets_wallet_changelist"),
                            {"action": "freeze_action", "_selected_action": [wallet.pk]}, follow=True)
    assert response.status_code == 200
    assert any("closed" in m for m in _messages(response))


def test_wallet_page_shows_balance_reserved_and_available_read_only(finance, wallet):
    page = finance.get(reverse("admin:wallets_wallet_change", args=[wallet.pk])).content.decode()
    assert "100.00 USD" in page and "Top up…" in page and "Grant credits…" in page
    assert 'name="balance"' not in page


def test_usage_event_list_shows_totals_as_amounts_with_their_currency(finance, wallet):
    # given a charged usage event of 0.015 USD (500 gpt-4 tokens at the catalog's 0.00003)
    from tests.factories import PriceFactory
    from wallets.services.usage_events import usage_event_charge

    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=Decimal("0.00003"),
                 valid_from=timezone.now() - dt.timedelta(days=1))
    usage_event_charge(team=wallet.team, user=None, feature_key="search-rewrite", external_reference_id="",
                       idempotency_key="admin-event-1",
                       items=[{"category": "llm", "provider": "openai", "model": "gpt-4", "unit": "token",
                               "quantity": Decimal(500)}])

    # when finance opens the usage events
    page = finance.get(reverse("admin:wallets_usageevent_changelist")).content.decode()

    # then the total reads as an amount in cents with its currency, right-aligned on one line, the
    # exact metered figure as its tooltip, never a 12-place number
    assert '<span class="money" title="exact: 0.015\u00a0USD">0.02\u00a0USD</span>' in page
    assert "0.015000000000" not in page


def test_finance_opens_a_wallet_for_a_team_before_any_charge_in_the_admin(finance, db):
    # given a team with no wallet yet
    from tests.factories import TeamFactory

    team = TeamFactory(name="New team", slug="new-team", currency="EUR")
    assert finance.get("/admin/wallets/wallet/add/").status_code == 200
    # when finance adds one with the team only
    response = finance.post("/admin/wallets/wallet/add/", {"team": team.pk, "user": "", "currency": ""})
    # then the wallet is open, in the team's currency, with nothing on it
    assert response.status_code == 302
    opened = Wallet.objects.get(team=team)
    assert (opened.currency, opened.balance, opened.status) == ("EUR", 0, "active")


def test_opening_a_wallet_in_the_admin_refuses_a_currency_the_team_is_not_billed_in(finance, db):
    from tests.factories import TeamFactory

    team = TeamFactory(name="New team", slug="new-team")
    response = finance.post("/admin/wallets/wallet/add/", {"team": team.pk, "user": "", "currency": "JPY"})
    assert response.status_code == 200 and "is billed in USD" in response.content.decode()
    assert not Wallet.objects.filter(team=team).exists()


def test_an_auditor_may_not_open_a_wallet(auditor, db):
    assert auditor.get("/admin/wallets/wallet/add/").status_code == 403
