"""Several currencies in one month: pools per currency, invoices per currency or converted at an
exchange rate, the ECB rates loader, the per-currency tie-out, and amounts right to the unit."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from billing_site.money import convert, minor_unit, rate_cross, round_preserving_sum, to_minor_units
from chargeback.models import AllocatedCost, AllocationRule
from chargeback.periods import BillingPeriod
from chargeback.selectors import allocation_currency_totals
from invoices.errors import InvalidRatesFile, MissingExchangeRate
from invoices.models import ExchangeRate, Invoice
from invoices.pdf import invoice_render_pdf
from invoices.selectors import exchange_rate_find
from invoices.services.billing_run import billing_run_execute
from invoices.services.exchange_rates import exchange_rates_load_ecb
from invoices.services.generation import invoice_generate, team_amounts
from teams.services import billing_settings_update
from tests.factories import AllocationRuleFactory, TeamFactory, UsageRecordFactory

D = Decimal
SEPT = BillingPeriod.month("2024-09")
ECB_FILE = Path(__file__).parent / "fixtures" / "eurofxref-hist.csv"

pytestmark = pytest.mark.django_db


@pytest.fixture
def ecb_rates():
    call_command("load_ecb_rates", str(ECB_FILE), stdout=io.StringIO())


def live(team=None):
    invoices = Invoice.objects.exclude(status=Invoice.Status.CANCELLED).order_by("team_name", "currency")
    return list(invoices.filter(team=team) if team else invoices)


# --- the ECB loader --------------------------------------------------------------------------------

def test_load_ecb_rates_stores_each_quote_as_eur_to_currency_and_skips_na():
    # when the hand-made ECB file is loaded
    out = io.StringIO()
    call_command("load_ecb_rates", str(ECB_FILE), stdout=out)
    # then 4 days × 13 quoted currencies are stored (CYP is N/A), EUR → currency, source ECB
    assert ExchangeRate.objects.count() == 52
    assert "52 ECB rates written (4 days, 2024-09-26 to 2024-10-01; 13 currencies" in out.getvalue()
    usd = ExchangeRate.objects.get(date=dt.date(2024, 9, 30), to_currency="USD")
    assert (usd.from_currency, usd.rate, usd.source) == ("EUR", D("1.1196"), "ECB")
    assert not ExchangeRate.objects.filter(to_currency="CYP").exists()


def test_load_ecb_rates_twice_writes_nothing_new_and_a_corrected_rate_replaces_the_old(tmp_path):
    exchange_rates_load_ecb(path=ECB_FILE)
    assert exchange_rates_load_ecb(path=ECB_FILE).rates == 0
    corrected = tmp_path / "eurofxref.csv"
    corrected.write_text("Date, USD, JPY, \n30 September 2024, 1.1200, 160.95, \n")
    loaded = exchange_rates_load_ecb(path=corrected)
    assert loaded.rates == 1 and ExchangeRate.objects.count() == 52
    assert ExchangeRate.objects.get(date=dt.date(2024, 9, 30), to_currency="USD").rate == D("1.12")


@pytest.mark.parametrize(("text", "message"), [
    ("Day,USD\n2024-09-30,1.1\n", "first line must be the ECB header"),
    ("Date,USD,DOLLARS\n2024-09-30,1.1,2\n", "column 'DOLLARS' of the header is not a currency code"),
    ("Date,USD,JPY,\n2024-09-30,1.1196,160.95,\n2024-31-09,1.1,160,\n", "line 3, column Date: '2024-31-09'"),
    ("Date,USD,JPY,\n2024-09-30,1.1196,-160.95,\n", "line 2, column JPY: '-160.95' is not a positive rate"),
    ("Date,USD,\n2024-09-30,1.1,\n2024-09-30,1.2,\n", "line 3: 2024-09-30 appears twice"),
])
def test_load_ecb_rates_refuses_a_bad_file_naming_line_and_column_and_loads_nothing(tmp_path, text, message):
    path = tmp_path / "rates.csv"
    path.write_text(text)
    with pytest.raises(CommandError, match=message) as refused:
        call_command("load_ecb_rates", str(path), stdout=io.StringIO())
    assert refused.value.returncode == 2
    assert not ExchangeRate.objects.exists()


def test_load_ecb_rates_reads_the_zipped_file(tmp_path):
    import zipfile

    archive = tmp_path / "eurofxref-hist.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(ECB_FILE, "eurofxref-hist.csv")
    assert exchange_rates_load_ecb(path=archive).rates == 52


def test_load_ecb_rates_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidRatesFile, match="cannot read"):
        exchange_rates_load_ecb(path=tmp_path / "nope.csv")


def test_database_refuses_a_rate_of_zero_or_between_one_currency():
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeRate.objects.create(date=dt.date(2024, 9, 30), from_currency="EUR", to_currency="USD", rate=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeRate.objects.create(date=dt.date(2024, 9, 30), from_currency="USD", to_currency="USD", rate=1)


# --- finding a rate: direct, inverse, cross via EUR -------------------------------------------------

def test_rate_direct_inverse_and_cross_via_eur(ecb_rates):
    day = dt.date(2024, 9, 30)
    direct = exchange_rate_find(from_currency="EUR", to_currency="USD", on=day)
    assert (direct.rate, direct.derivation, direct.source) == (D("1.1196"), "direct", "ECB")
    inverse = exchange_rate_find(from_currency="USD", to_currency="EUR", on=day)
    assert (inverse.rate, inverse.derivation) == (rate_cross(D("1.1196"), D(1)), "inverse")
    assert inverse.rate == D("0.8931761343")
    cross = exchange_rate_find(from_currency="USD", to_currency="JPY", on=day)
    # USD → JPY = (EUR → JPY) / (EUR → USD), rounded once to 10 decimal places
    assert (cross.rate, cross.derivation) == (D("143.7566988210"), "cross via EUR")
    assert cross.basis == "(EUR→JPY 160.95) / (EUR→USD 1.1196)"


def test_rate_of_a_weekend_is_the_last_business_days_and_finance_wins_over_the_ecb(ecb_rates):
    sunday = dt.date(2024, 9, 29)
    assert exchange_rate_find(from_currency="EUR", to_currency="USD", on=sunday).rate_date == dt.date(2024, 9, 27)
    ExchangeRate.objects.create(date=dt.date(2024, 9, 27), from_currency="EUR", to_currency="USD", rate=D("1.2"),
                                source="manual")
    found = exchange_rate_find(from_currency="EUR", to_currency="USD", on=sunday)
    assert (found.rate, found.source) == (D("1.2"), "manual")


def test_missing_rate_names_the_pair_and_the_date(ecb_rates):
    with pytest.raises(MissingExchangeRate, match=r"no exchange rate USD→KWD on 2024-09-30") as missing:
        exchange_rate_find(from_currency="USD", to_currency="KWD", on=dt.date(2024, 9, 30))
    assert (missing.value.code, missing.value.http_status, missing.value.param) == (
        "exchange_rate_missing", 422, "currency")
    # a rate older than the look-back window is not used
    with pytest.raises(MissingExchangeRate, match="EUR→USD on 2024-11-30"):
        exchange_rate_find(from_currency="EUR", to_currency="USD", on=dt.date(2024, 11, 30))


# --- a month in three currencies, end to end ------------------------------------------------------

@pytest.fixture
def three_currency_month():
    """USD, EUR and JPY usage: teams in each, one team in two, and an untagged pool per currency."""
    usd, eur = TeamFactory(name="Alpha", slug="alpha"), TeamFactory(name="Beta", slug="beta", currency="EUR")
    jpy = TeamFactory(name="Gamma", slug="gamma", currency="JPY")
    billing_settings_update(team=usd, extra_currencies=["EUR"])
    UsageRecordFactory(team=usd, cost=D("10.004"))
    UsageRecordFactory(team=usd, cost=D("5.333333333333"), currency="EUR")
    UsageRecordFactory(team=eur, cost=D("20.006"), currency="EUR")
    UsageRecordFactory(team=jpy, cost=D("1000.5"), currency="JPY")
    UsageRecordFactory(team=None, cost=D("3"))
    UsageRecordFactory(team=None, cost=D("1.01"), currency="EUR")
    UsageRecordFactory(team=None, cost=D("99.9"), currency="JPY")
    AllocationRuleFactory(rule_type=AllocationRule.RuleType.BY_USAGE)
    return usd, eur, jpy


def test_billing_run_of_three_currencies_writes_one_invoice_per_team_and_currency(three_currency_month):
    usd, eur, jpy = three_currency_month
    out = io.StringIO()
    # when the month is billed from the command line
    call_command("billing_run", "--period", "2024-09", "--no-pdf", stdout=out, stderr=io.StringIO())
    # then Alpha gets a USD and an EUR invoice, Beta EUR, Gamma JPY (whole yen)
    assert [(i.team_name, i.currency, i.subtotal) for i in live()] == [
        ("Alpha", "EUR", D("5.55")), ("Alpha", "USD", D("13.00")), ("Beta", "EUR", D("20.80")),
        ("Gamma", "JPY", D("1100")),
    ]
    # and the pools tie out per currency, and each currency's invoices sum to its allocated total rounded
    summary = out.getvalue()
    for line in ("allocated 26.349333333333 EUR of 26.349333333333 EUR, unallocated 0.00 EUR",
                 "allocated 1,100.4 JPY of 1,100.4 JPY, unallocated 0 JPY",
                 "allocated 13.004 USD of 13.004 USD, unallocated 0.00 USD"):
        assert line in summary
    assert "Total invoiced: 26.35 EUR, 1,100 JPY, 13.00 USD (4 invoices)" in summary
    run = live()[0].allocation_run
    for pool in allocation_currency_totals(run):
        invoiced = sum((i.subtotal for i in live() if i.currency == pool.currency), D(0))
        assert invoiced == to_minor_units(pool.allocated_cost, pool.currency)
    # and each invoice's lines are in its own currency only
    for invoice in live():
        assert {a.currency for a in AllocatedCost.objects.filter(run=run, team=invoice.team)} >= {invoice.currency}
        assert sum(line.amount for line in invoice.lines.all()) == invoice.subtotal


def test_a_teams_usage_in_another_currency_never_changes_the_others_pool(three_currency_month):
    # the USD pool's by-usage split is the same with or without Alpha's EUR usage
    result = billing_run_execute(period=SEPT, dry_run=True)
    usd_pool = next(p for p in result.pools if p.currency == "USD")
    assert (usd_pool.total_cost, usd_pool.record_count) == (D("13.004"), 2)
    assert result.outcome == "billed" and result.refused == []


def test_converted_team_gets_one_invoice_in_its_currency_with_the_rate_on_the_line(three_currency_month, ecb_rates):
    usd, _eur, _jpy = three_currency_month
    billing_settings_update(team=usd, invoice_currency="team_currency")
    # when the month is billed
    result = billing_run_execute(period=SEPT, render_pdfs=False)
    # then Alpha has one USD invoice: its USD 13.00 and its EUR 5.55 converted once at 1.1196 (ECB, 30 Sept)
    (invoice,) = live(usd)
    assert invoice.currency == "USD"
    converted = convert(D("5.55"), D("1.1196"), "USD")
    assert converted == D("6.21")  # 6.21378, rounded once
    assert invoice.subtotal == D("13.00") + converted
    fx_lines = [line for line in invoice.lines.all() if "fx" in line.details]
    assert fx_lines and sum(line.amount for line in fx_lines) == converted
    fx = fx_lines[0].details["fx"]
    assert (fx["from"], fx["to"], fx["rate"], fx["rate_date"], fx["source"], fx["derivation"]) == (
        "EUR", "USD", "1.1196", "2024-09-30", "ECB", "direct")
    assert "at 1.1196 USD/EUR" in fx_lines[0].description
    # and the EUR pool still ties out: Beta's EUR invoice plus Alpha's EUR converted
    assert result.invoiced_by_source_currency()["EUR"] == D("26.35") and not result.problems
    assert result.converted()[0]["converted"] == converted


def test_converted_invoice_pdf_appendix_prints_the_rate(three_currency_month, ecb_rates, tmp_path):
    usd, _eur, _jpy = three_currency_month
    billing_settings_update(team=usd, invoice_currency="team_currency")
    billing_run_execute(period=SEPT, render_pdfs=False)
    (invoice,) = live(usd)
    pdf = invoice_render_pdf(invoice)
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).replace("\u00a0", " ")
    assert "Exchange rates" in text
    assert "1 EUR = 1.1196 USD" in text and "ECB rate of 2024-09-30" in text
    assert "5.55 EUR converted to 6.21 USD" in text
    # and beside the rates, the shared pools behind its lines: the USD pool and the EUR pool it was
    # converted from, each in its own currency (never converted or added together)
    assert "Unallocated pool, by provider and charge category" in text
    assert "Unallocated pool (EUR), by provider and charge category" in text
    # rendered to PNG (pdftoppm), the appendix page is an image one can look at
    (tmp_path / "invoice.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(tmp_path / "invoice.pdf"), str(tmp_path / "page")],
                   check=True)
    assert sorted(p.name for p in tmp_path.glob("page*.png"))


def test_missing_rate_bills_every_other_team_and_nothing_of_the_team(three_currency_month):
    usd, _eur, _jpy = three_currency_month
    billing_settings_update(team=usd, invoice_currency="team_currency")
    # when the month is billed without rates
    result = billing_run_execute(period=SEPT, render_pdfs=False)
    # then Alpha has no invoice at all (not even its USD), the others are billed, and it is named
    assert live(usd) == []
    assert [(i.team_name, i.currency) for i in live()] == [("Beta", "EUR"), ("Gamma", "JPY")]
    assert result.outcome == "partly_billed"
    assert result.refused[0]["message"].startswith("Alpha: invoiced in USD, but no exchange rate EUR→USD on 2024-09-30")
    # and generating Alpha's invoice by itself is the same clear error, writing nothing
    with pytest.raises(MissingExchangeRate, match="EUR→USD on 2024-09-30"):
        invoice_generate(team=usd, period=SEPT)
    assert live(usd) == []


# --- right to the unit: JPY (no minor unit) and KWD / BHD (three) -----------------------------------

def test_jpy_and_kwd_invoices_are_right_to_the_unit():
    yen, dinar = TeamFactory(name="Yen", currency="JPY"), TeamFactory(name="Dinar", currency="KWD")
    bahrain = TeamFactory(name="Bahrain", currency="BHD")
    for cost in ("333.5", "333.5", "0.4"):
        UsageRecordFactory(team=yen, cost=D(cost), currency="JPY")
    UsageRecordFactory(team=dinar, cost=D("1.23456"), currency="KWD")
    UsageRecordFactory(team=dinar, cost=D("0.0005"), currency="KWD")
    UsageRecordFactory(team=bahrain, cost=D("7.77777"), currency="BHD")
    billing_run_execute(period=SEPT, render_pdfs=False)
    assert [(i.team_name, i.currency, i.total) for i in live()] == [
        ("Bahrain", "BHD", D("7.778")), ("Dinar", "KWD", D("1.235")), ("Yen", "JPY", D("667"))]
    for invoice in live():
        quantum = minor_unit(invoice.currency)
        assert all(line.amount % quantum == 0 for line in invoice.lines.all())


def test_conversion_into_jpy_and_kwd_is_rounded_once_to_their_unit(ecb_rates):
    ExchangeRate.objects.create(date=dt.date(2024, 9, 30), from_currency="USD", to_currency="KWD",
                                rate=D("0.3054"), source="manual")
    yen, dinar = TeamFactory(name="Yen", currency="JPY"), TeamFactory(name="Dinar", currency="KWD")
    for team in (yen, dinar):
        billing_settings_update(team=team, invoice_currency="team_currency", extra_currencies=["USD"])
        UsageRecordFactory(team=team, cost=D("10.01"))
    billing_run_execute(period=SEPT, render_pdfs=False)
    by_team = {i.team_name: i for i in live()}
    # USD → JPY is the cross rate via EUR; 10.01 × 143.7566988210 = 1,439.0045… → 1,439 yen
    assert (by_team["Yen"].currency, by_team["Yen"].subtotal) == ("JPY", D("1439"))
    # USD → KWD is finance's own rate: 10.01 × 0.3054 = 3.057054 → 3.057 KWD
    assert (by_team["Dinar"].currency, by_team["Dinar"].subtotal) == ("KWD", D("3.057"))
    assert by_team["Dinar"].lines.get().details["fx"]["source"] == "manual"


# --- properties ------------------------------------------------------------------------------------

_CURRENCIES = ("USD", "JPY", "KWD")
_metered = st.decimals(min_value=D("-50"), max_value=D("5000"), places=12, allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(st.integers(1, 6), st.sampled_from(_CURRENCIES), _metered), min_size=1, max_size=40))
def test_property_per_currency_invoice_amounts_sum_to_each_currencys_total(rows):
    # given any allocated rows of several teams in three currencies
    allocations = [AllocatedCost(team_id=t, currency=c, amount=a, record_count=1) for t, c, a in rows]
    # when every team's amount is rounded (per currency, with every team)
    amounts = team_amounts(allocations)
    # then each currency's amounts sum exactly to its total rounded, to its own minor unit
    for currency in {c for _t, c, _a in rows}:
        total = sum((a for _t, c, a in rows if c == currency), D(0))
        mine = [a.amount for a in amounts if a.currency == currency]
        assert sum(mine, D(0)) == to_minor_units(total, currency)
        assert all(amount % minor_unit(currency) == 0 for amount in mine)


@given(
    st.lists(st.integers(-10**6, 10**7), min_size=1, max_size=20),
    st.decimals(min_value=D("0.0001"), max_value=D("500"), places=10, allow_nan=False, allow_infinity=False),
    st.sampled_from(["EUR", "JPY", "KWD"]), st.sampled_from(["USD", "JPY", "BHD"]),
)
def test_property_converted_lines_sum_to_the_amount_converted_once(units, rate, source, target):
    # given an invoice's lines in the source currency and a rate
    lines = [D(u) * minor_unit(source) for u in units]
    converted = convert(sum(lines, D(0)), rate, target)
    # when the converted total is spread over the lines
    spread = round_preserving_sum([line * rate for line in lines], minor_unit(target), total=converted)
    # then they sum to it exactly, each within one minor unit of its exact value
    assert sum(spread, D(0)) == converted
    assert all(abs(s - line * rate) < minor_unit(target) for s, line in zip(spread, lines))


_months = iter(range(1000))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(_CURRENCIES),
                          st.decimals(min_value=D("0"), max_value=D("900"), places=5)), min_size=1, max_size=12))
def test_property_billing_run_invoices_of_each_currency_sum_to_its_total(db, rows):
    # every example bills a month of its own (the billing run commits in a durable transaction)
    n = next(_months)
    month = BillingPeriod.month(f"{2030 + n // 12}-{n % 12 + 1:02d}")
    at = timezone.make_aware(dt.datetime.combine(month.start, dt.time(12)))
    teams = [TeamFactory(name=f"P{n}-{i}", slug=f"p{n}-{i}") for i in range(3)]
    for team in teams:
        billing_settings_update(team=team, extra_currencies=list(_CURRENCIES))
    for index, currency, cost in rows:
        UsageRecordFactory(team=teams[index] if index < 3 else None, cost=cost, currency=currency, occurred_at=at)
    if n == 0:
        AllocationRuleFactory(rule_type=AllocationRule.RuleType.BY_USAGE)
    result = billing_run_execute(period=month, render_pdfs=False)
    for pool in result.pools:
        invoiced = sum((i.subtotal for i in result.invoices if i.currency == pool.currency), D(0))
        assert invoiced == to_minor_units(pool.allocated_cost, pool.currency)
        assert pool.allocated_cost + pool.unallocated_cost == pool.total_cost
    assert not result.problems
