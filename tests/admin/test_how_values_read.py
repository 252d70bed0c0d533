"""What finance reads in the admin: amounts in their currency's places, right-aligned on one line,
counts with separators, periods as months, plain numbers in forms, words instead of ticks."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from chargeback.models import UsageRecord
from teams.services import billing_settings_update
from tests.admin.conftest import new_key
from tests.factories import TeamFactory, UsageRecordFactory, draft_invoice
from wallets.models import Wallet
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = pytest.mark.django_db

NBSP = "\u00a0"


def _cell(page: str, column: str) -> list[str]:
    """The contents of a changelist column's cells."""
    return re.findall(rf'<td class="field-{column}[^"]*">(.*?)</td>', page, re.S)


def test_wallet_list_shows_amounts_with_separators_and_the_currency_as_a_suffix_right_aligned(finance):
    # given a USD wallet topped up with 1,234.5 and a JPY wallet with 1,200 yen
    usd = wallet_open(team=TeamFactory(name="Search"))
    wallet_top_up(wallet=usd, amount=Decimal("1234.5"), idempotency_key=new_key())
    jpy = wallet_open(team=TeamFactory(name="Tokyo", currency="JPY"), currency="JPY")
    wallet_top_up(wallet=jpy, amount=Decimal("1200"), idempotency_key=new_key())
    # when finance opens the wallet list
    page = finance.get(reverse("admin:wallets_wallet_changelist")).content.decode()
    # then each balance has its currency's places, thousands separators and a suffix that cannot wrap
    balances = _cell(page, "balance_display")
    assert f'<span class="money">1,234.50{NBSP}USD</span>' in balances
    assert f'<span class="money">1,200{NBSP}JPY</span>' in balances  # yen have no decimals
    assert "1234.500000000000" not in page and "0E-12" not in page
    # and the admin's stylesheet right-aligns money cells and keeps each amount on one line
    css = open(finders.find("admin_billing/billing.css")).read()
    assert "admin_billing/billing.css" in page
    assert re.search(r"\.money, \.number \{ white-space: nowrap;", css)
    assert re.search(r"#result_list td:has\(\.money\)[^{]*\{ text-align: right; white-space: nowrap; \}", css)


def test_wallet_title_and_low_balance_warning_read_as_words(finance):
    wallet = wallet_open(team=TeamFactory(name="Search"))
    wallet_top_up(wallet=wallet, amount=Decimal("1.7"), idempotency_key=new_key())
    Wallet.objects.filter(pk=wallet.pk).update(low_balance_warned=True)
    wallet.refresh_from_db()
    assert str(wallet) == f"Search: 1.70{NBSP}USD"  # not "1.700000000000 USD"
    page = finance.get(reverse("admin:wallets_wallet_changelist")).content.decode()
    assert '<span class="label label-warn">Warned</span>' in _cell(page, "warned_display")
    assert "icon-yes.svg" not in "".join(_cell(page, "warned_display"))


def test_ledger_shows_a_reserved_change_only_when_there_is_one_and_the_exact_figure_as_a_tooltip(finance, wallet):
    page = finance.get(reverse("admin:wallets_ledgerentry_changelist")).content.decode()
    assert _cell(page, "reserved_delta_display") == ["-"]  # the admin's "nothing here", not 0.000000000000
    assert "0.000000000000" not in page
    entry = wallet.entries.get()
    detail = finance.get(reverse("admin:wallets_ledgerentry_change", args=[entry.pk])).content.decode()
    assert "No change" in detail and "Reserved delta" not in detail
    assert f"100.00{NBSP}USD" in detail


def test_rounded_amounts_carry_the_exact_metered_figure(finance):
    UsageRecordFactory(cost=Decimal("0.015"), quantity=Decimal("5360"))
    page = finance.get(reverse("admin:chargeback_usagerecord_changelist")).content.decode()
    assert f'<span class="money" title="exact: 0.015{NBSP}USD">0.02{NBSP}USD</span>' in _cell(page, "cost_display")
    assert '<span class="number">5,360</span>' in _cell(page, "quantity_display")  # counts with separators
    record = UsageRecord.objects.get()
    detail = finance.get(reverse("admin:chargeback_usagerecord_change", args=[record.pk])).content.decode()
    assert f"0.02{NBSP}USD</span> <span class=\"money-exact\">(exact: <span class=\"money\">0.015{NBSP}USD" in detail


def test_invoice_list_shows_the_period_as_a_month_and_a_range_filter_for_periods(finance):
    draft_invoice(amounts=("1234.50",), period_start=dt.date(2026, 10, 1), period_end=dt.date(2026, 11, 1))
    page = finance.get(reverse("admin:invoices_invoice_changelist")).content.decode()
    assert _cell(page, "period_display") == ["October 2026"]  # not "Nov. 1, 2026" as its end
    assert f'<span class="money">1,234.50{NBSP}USD</span>' in _cell(page, "total_display")
    # and the period filter is a from/to range, not "Today / Past 7 days"
    assert 'name="period_start__from"' in page and 'name="period_start__to"' in page
    assert "Past 7 days" not in page


def test_date_range_filter_keeps_both_days_and_refuses_a_malformed_date(finance):
    at = lambda day: timezone.make_aware(dt.datetime(2024, 9, day, 23, 30))  # noqa: E731
    for day in (1, 10, 20):
        UsageRecordFactory(occurred_at=at(day), cost=Decimal(day))
    url = reverse("admin:chargeback_usagerecord_changelist")
    response = finance.get(url, {"occurred_at__from": "2024-09-10", "occurred_at__to": "2024-09-20"})
    assert sorted(r.cost for r in response.context["cl"].result_list) == [Decimal(10), Decimal(20)]
    bad = finance.get(url, {"occurred_at__from": "10/09/2024"})
    assert bad.status_code == 302 and "e=1" in bad["Location"]  # Django's "bad filter" page, never a 500


def test_billing_settings_form_shows_plain_numbers_and_lists_as_text(finance):
    team = TeamFactory(name="Search")
    billing_settings_update(team=team, billing_model="prepaid_team")  # credit limit 0, read back as 0E-12
    page = finance.get(reverse("admin:teams_team_change", args=[team.pk])).content.decode()
    assert 'name="billing_settings-0-credit_limit" value="0"' in page  # not 0E-12
    assert 'name="billing_settings-0-warning_threshold_value" value="10"' in page
    assert re.search(r'<input type="text" name="billing_settings-0-extra_currencies"[^>]*>', page)  # not a "[]" box
    assert 'value="[]"' not in page and "0E-12" not in page
