"""Subscription invoices: the "Included usage" section of the PDF, and prepaid teams paying from their wallet."""

from __future__ import annotations

import io
import shutil
import subprocess
from decimal import Decimal

import pytest
from pypdf import PdfReader

from invoices.models import Invoice
from invoices.selectors import invoice_get_with_lines
from invoices.services.pdf_storage import invoice_pdf_store
from subscriptions.services.lifecycle import subscription_create
from subscriptions.services.renewal import subscriptions_renew_due
from teams.models import BillingSettings
from tests.factories import TeamFactory
from wallets.models import LedgerEntry
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

from .conftest import at, record_usage

D = Decimal


def test_invoice_pdf_prints_the_included_usage_section(postpaid_team, pro_plan, tmp_path, settings):
    # given January's 585 units of 500 included, renewed on 1 February
    settings.MEDIA_ROOT = str(tmp_path)
    subscription_create(team=postpaid_team, plan=pro_plan, start=at(2024, 1, 1))
    record_usage(postpaid_team, 585, at(2024, 1, 20))
    subscriptions_renew_due(at=at(2024, 2, 1))
    invoice = Invoice.objects.order_by("-pk").first()
    # when its PDF is rendered (WeasyPrint) and stored
    stored = invoice_pdf_store(invoice=invoice)
    pdf = stored.pdf.read()
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    # then a reader finds the fee, the overage and the included usage: included, used, overage and the price
    text = " ".join(text.split())
    for expected in ["Professional: fee per month, 1 February 2024 – 29 February 2024", "49.00",
                     "Included usage", "inference", "500", "585", "85", "2.00 USD per 1,000 tokens", "0.17",
                     "Total", "49.17 USD", invoice.number]:
        assert expected in text, expected
    # and the page can be looked at as an image (pdftoppm, as a reviewer does)
    pdftoppm = shutil.which("pdftoppm")
    assert pdftoppm, "pdftoppm (poppler-utils) is needed to render the PDF to PNG"
    path = tmp_path / "invoice.pdf"
    path.write_bytes(pdf)
    subprocess.run([pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")], check=True)
    png = next(tmp_path.glob("page*.png")).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.fixture
def prepaid_team(db):
    team = TeamFactory(currency="USD")
    BillingSettings.objects.create(team=team, billing_model="prepaid_team")
    return team


def test_prepaid_team_pays_fee_and_overage_from_its_wallet_once_per_period(prepaid_team, pro_plan):
    # given a prepaid team with 100.00 USD of credit
    wallet = wallet_open(team=prepaid_team)
    wallet_top_up(wallet=wallet, amount=D("100.00"), idempotency_key="top-up-1")
    sub = subscription_create(team=prepaid_team, plan=pro_plan, start=at(2024, 1, 1))
    record_usage(prepaid_team, 585, at(2024, 1, 20))
    # when January is billed at creation and February at renewal, and the renewal runs twice
    subscriptions_renew_due(at=at(2024, 2, 1))
    subscriptions_renew_due(at=at(2024, 2, 1))
    # then the wallet paid 49.00 and 49.17, one charge each, keyed by subscription and period; both invoices are paid
    charges = list(LedgerEntry.objects.filter(wallet=wallet, entry_type="charge").order_by("pk"))
    assert [c.amount for c in charges] == [D("-49.00"), D("-49.17")]
    assert [c.idempotency_key for c in charges] == [f"subscription-{sub.pk}-20240101T000000Z",
                                                    f"subscription-{sub.pk}-20240201T000000Z"]
    assert set(Invoice.objects.values_list("status", flat=True)) == {"paid"}
    wallet.refresh_from_db()
    assert wallet.balance == D("1.83")


def test_prepaid_team_without_credit_goes_past_due_and_its_invoice_stays_open(prepaid_team, pro_plan):
    wallet_top_up(wallet=wallet_open(team=prepaid_team), amount=D("50.00"), idempotency_key="top-up-1")
    sub = subscription_create(team=prepaid_team, plan=pro_plan, start=at(2024, 1, 1))
    result = subscriptions_renew_due(at=at(2024, 2, 1))
    sub.refresh_from_db()
    assert (result.past_due, sub.status) == ([sub.pk], "past_due")
    assert invoice_get_with_lines(pk=Invoice.objects.order_by("-pk").first().pk).status == "pending"
