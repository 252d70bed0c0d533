"""``billing_site.formatting``: money and counts for people, through Babel, in the settings' locale."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from billing_site.formatting import money_display, number_display

NBSP = "\u00a0"


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    ("1234.5", "USD", f"1,234.50{NBSP}USD"),
    ("-125.64275", "USD", f"-125.64{NBSP}USD"),   # rounded once, by billing_site.money
    ("0E-12", "USD", f"0.00{NBSP}USD"),           # never 0E-12
    ("1.700000000000", "USD", f"1.70{NBSP}USD"),
    ("1200", "JPY", f"1,200{NBSP}JPY"),           # the currency's own decimal places
    ("1.2345", "BHD", f"1.235{NBSP}BHD"),
])
def test_money_display_uses_the_currencys_places_separators_and_a_suffix_that_does_not_wrap(amount, currency, shown):
    assert money_display(Decimal(amount), currency) == shown


def test_money_display_exact_keeps_every_metered_digit():
    assert money_display(Decimal("0.000125000000"), "USD", exact=True) == f"0.000125{NBSP}USD"
    assert money_display(Decimal("2.500000000000"), "USD", exact=True) == f"2.50{NBSP}USD"


def test_money_display_follows_the_locale():
    assert money_display(Decimal("1234.5"), "EUR", locale="de_DE") == f"1.234,50{NBSP}EUR"


def test_number_display_separates_thousands_and_drops_trailing_zeros():
    assert (number_display(5360), number_display(Decimal("2.500000000000")), number_display(None)) == ("5,360", "2.5", "—")


def test_money_filters_in_a_template():
    html = Template("{% load billing_format %}{{ a|money:'USD' }}|{{ a|money_exact:'USD' }}|{{ q|quantity_in:'token' }}"
                    "|{{ one|quantity_in:'Hours' }}").render(
        Context({"a": Decimal("1234.567"), "q": Decimal("1500"), "one": Decimal("1")}))
    assert html == f"1,234.57{NBSP}USD|1,234.567{NBSP}USD|1,500 tokens|1 Hour"
