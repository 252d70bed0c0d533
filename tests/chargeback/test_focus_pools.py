"""The shared pool broken down by provider and charge category: credits netted against charges are visible."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import Sum
from pypdf import PdfReader

from chargeback.focus.pools import pool_breakdown
from chargeback.models import AllocationRule, UsageRecord
from chargeback.periods import BillingPeriod
from chargeback.services.focus_import import focus_import
from invoices.models import Invoice
from invoices.pdf import invoice_render_pdf

pytestmark = pytest.mark.django_db
SEPTEMBER = BillingPeriod.month("2024-09")


@pytest.fixture
def sample(focus_sample):
    focus_import(path=focus_sample, create_teams=True)
    AllocationRule.objects.create(name="Untagged cloud costs, by usage", rule_type=AllocationRule.RuleType.BY_USAGE,
                                  source=AllocationRule.Source.UNALLOCATED)


def test_pool_breakdown_of_the_focus_sample_shows_credits_against_charges(sample):
    # when the unallocated pool of September is broken down
    (pool,) = pool_breakdown(period=SEPTEMBER)

    # then its parts sum to the pool, one provider's credits sit beside another's charges
    untagged = UsageRecord.objects.filter(team=None, billing_period_start=SEPTEMBER.start).aggregate(s=Sum("cost"))["s"]
    assert pool.name == "Unallocated pool" and pool.currency == "USD"
    assert pool.net == untagged == sum(p.cost for p in pool.parts)
    assert pool.credits < 0 < pool.charges
    credits = {p.provider for p in pool.parts if p.cost < 0}
    charges = {p.provider for p in pool.parts if p.cost > 0}
    assert credits and charges and credits != charges or len(charges) > 1
    assert {p.charge_category for p in pool.parts} >= {"Usage"}


def test_billing_run_preview_prints_the_pool_breakdown(sample):
    out = io.StringIO()
    call_command("billing_run", "--period", "2024-09", "--dry-run", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    (pool,) = pool_breakdown(period=SEPTEMBER)
    assert "Unallocated pool (USD), by provider and charge category:" in text
    assert f"net {pool.net:.12f}"[:10] in text and "credits -" in text


def test_invoice_pdf_appendix_breaks_the_pool_down(sample):
    call_command("billing_run", "--period", "2024-09", "--no-pdf", stdout=io.StringIO(), stderr=io.StringIO())
    invoice = next(i for i in Invoice.objects.filter(period_start=SEPTEMBER.start)
                   if i.lines.exclude(rule=None).exists())
    pages = PdfReader(io.BytesIO(invoice_render_pdf(invoice))).pages
    text = " ".join(" ".join(page.extract_text() for page in pages).split())
    assert "Unallocated pool, by provider and charge category" in text
    assert "credits are netted against the charges" in text
    assert Decimal(0) != pool_breakdown(period=SEPTEMBER)[0].credits
