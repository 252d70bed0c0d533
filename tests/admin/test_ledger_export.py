"""The ledger's CSV export: a feature key set through the API cannot become a formula in finance's spreadsheet."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from tests.admin.conftest import new_key
from wallets.services.charges import wallet_charge

pytestmark = pytest.mark.django_db


def test_ledger_csv_quotes_formula_text_and_keeps_negative_amounts_numeric(finance, wallet):
    # Given a charge whose feature key and description, chosen by a team, start formulas
    formula = '=HYPERLINK("http://evil.example/","x")'
    wallet_charge(wallet=wallet, amount=Decimal("12.5"), idempotency_key=new_key(), feature_key=formula,
                  description="@SUM(1+1)", reference_id="+1-555")

    # When finance exports the ledger
    response = finance.get(reverse("admin:wallets_ledgerentry_export"), {"entry_type__exact": "charge"})
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))

    # Then the text reads as text, and the debit is the number -12.5
    assert (row["feature_key"], row["description"], row["reference_id"]) == ("'" + formula, "'@SUM(1+1)", "'+1-555")
    assert Decimal(row["amount"]) == Decimal("-12.5")
    assert row["amount"].startswith("-12.5")
    assert Decimal(row["balance_after"]) == Decimal("87.5")
