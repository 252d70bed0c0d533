"""``billing_site.formatting``: money and counts for people, through Babel, in the settings' locale."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.template import Context, Template

from billing_site.formatting import money_display, money_number, month_display, number_display, period_display

NBSP = "\u00a0"
DASH = "\u2009–\u2009"  # CLDR's range dash, between thin spaces


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


@pytest.mark.parametrize(("start", "end", "shown"), [
    (dt.date(2026, 10, 1), dt.date(2026, 11, 1), "October 2026"),            # a whole month: its name
    (dt.date(2026, 12, 1), dt.date(2027, 1, 1), "December 2026"),
    (dt.date(2026, 10, 1), dt.date(2026, 10, 16), f"Oct 1{DASH}15, 2026"),        # the exclusive end is not shown
    (dt.date(2026, 12, 15), dt.date(2027, 1, 15), f"Dec 15, 2026{DASH}Jan 14, 2027"),
    (dt.date(2026, 10, 1), dt.date(2026, 10, 2), "Oct 1, 2026"),              # one day
    (dt.date(2026, 10, 1), None, "from Oct 1, 2026"),
    (None, None, "—"),
])
def test_period_display_names_the_month_or_the_inclusive_days(start, end, shown):
    assert period_display(start, end) == shown


def test_period_display_of_instants_counts_the_local_days(settings):
    # a subscription period [1 Oct 00:00, 1 Nov 00:00) UTC is October; one from anniversary to anniversary
    # ends the day before (as its invoice's dates do); one that ends later in its day includes that day
    utc = dt.UTC
    assert period_display(dt.datetime(2026, 10, 1, tzinfo=utc), dt.datetime(2026, 11, 1, tzinfo=utc)) == "October 2026"
    assert period_display(dt.datetime(2026, 10, 15, 10, 23, tzinfo=utc),
                          dt.datetime(2026, 11, 15, 10, 23, tzinfo=utc)) == f"Oct 15{DASH}Nov 14, 2026"
    assert period_display(dt.datetime(2026, 10, 15, 10, 23, tzinfo=utc),
                          dt.datetime(2026, 10, 20, 18, 0, tzinfo=utc)) == f"Oct 15{DASH}20, 2026"


def test_period_and_month_in_a_template():
    out = Template("{% load billing_format %}{{ s|period:e }}").render(
        Context({"s": dt.date(2026, 10, 1), "e": dt.date(2026, 11, 1)}))
    assert out == "October 2026"
    assert month_display(dt.date(2026, 10, 1)) == "October 2026"


def test_money_number_leaves_the_code_to_the_column_header():
    assert money_number(Decimal("1234.5"), "USD") == "1,234.50"
    assert money_number(Decimal("1234.5"), "JPY") == "1,235"
    assert money_number(Decimal("0.000125"), "USD", exact=True) == "0.000125"
