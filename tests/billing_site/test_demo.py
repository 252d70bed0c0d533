"""``manage.py demo``, the data behind ``make demo``: a billed month and wallets in use, loaded once."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from chargeback.models import AllocationRun
from invoices.models import Invoice
from subscriptions.models import Subscription
from subscriptions.selectors_mrr import subscription_stats
from wallets.models import LedgerEntry, UsageEvent, Wallet
from wallets.selectors import ledger_verify

pytestmark = pytest.mark.django_db


def _demo() -> str:
    out = io.StringIO()
    call_command("demo", "--rows", "400", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_demo_bills_the_month_and_puts_wallets_to_use_and_a_second_run_adds_nothing():
    # when the demo is loaded
    first = _demo()

    # then the month is billed, every cent allocated, one draft invoice per team with costs
    run = AllocationRun.objects.get(status=AllocationRun.Status.COMMITTED)
    assert run.unallocated_cost == 0
    invoices = Invoice.objects.filter(status=Invoice.Status.DRAFT)
    assert invoices.count() >= 10 and "Total invoiced:" in first
    # and the wallets show each billing model at work, with a whole ledger
    by_owner = {(w.team.slug, getattr(w.user, "username", None)): w for w in Wallet.objects.select_related("team", "user")}
    assert set(by_owner) == {("support", None), ("search", "chloe"), ("search", "dev"), ("ml-platform", None),
                             ("checkout", None)}
    assert by_owner[("support", None)].reserved == Decimal(15)  # the open hold
    assert by_owner[("ml-platform", None)].balance < 0  # postpaid: spent on credit
    assert by_owner[("checkout", None)].low_balance_warned  # below its threshold, on the dashboard
    assert UsageEvent.objects.filter(status=UsageEvent.Status.REJECTED, team__slug="search").exists()
    assert all(check.ok for check in ledger_verify())
    # and the team users it prints (docs/api.md gets chloe's token) log in to the portal with that password
    password = re.search(r"Team users \(leads: [^)]*\)  password: (\S+)", first).group(1)
    assert get_user_model().objects.get(username="chloe").check_password(password)
    assert "/portal/" in first
    # and plans and subscriptions through the services: a trial, monthly ones with overage, a yearly
    # enterprise, a cancellation and an upgrade in the current period, with MRR on the dashboard
    statuses = dict(Subscription.objects.values_list("team__slug", "status"))
    assert statuses["identity"] == "trialing" and statuses["mobile-app"] == "canceled"
    assert Subscription.objects.get(team__slug="data-warehouse").plan.code == "pro-monthly"
    assert Subscription.objects.get(team__slug="ml-platform").plan.interval == "year"
    assert subscription_stats().reporting.monthly_revenue == Decimal("1196.00")  # 4 × 49 + 12,000 / 12

    # when it is loaded again, then no money moves twice and the invoices are the same
    entries, totals = LedgerEntry.objects.count(), sorted(invoices.values_list("total", flat=True))
    second = _demo()
    assert "Wallets: already loaded" in second and "Subscriptions: already loaded" in second
    assert LedgerEntry.objects.count() == entries
    assert sorted(Invoice.objects.filter(status=Invoice.Status.DRAFT).values_list("total", flat=True)) == totals
