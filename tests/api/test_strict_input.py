"""Every bad input a clear 4xx: JSON 404s under /api/, ids that are whole numbers, strict filters,
credit-note lines checked one by one, and amounts within what the columns hold."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest

from billing_site.money import METERED_BOUND, MONEY_CONTEXT
from chargeback.models import AllocationRule, UsageRecord
from invoices.models import CreditNote
from invoices.services.lifecycle import invoice_issue
from tests.api.conftest import CALL_ITEMS, new_key
from tests.factories import AllocationRuleFactory, UsageRecordFactory, draft_invoice
from wallets.models import LedgerEntry, UsageEvent
from wallets.services.amounts import MAX_AMOUNT
from wallets.services.posting import wallet_top_up

pytestmark = pytest.mark.django_db

USAGE = {"resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": "1000",
         "occurred_at": "2024-09-15T12:00:00Z"}


def assert_error(response, status: int, param: str | None, code: str | None = None):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert error["param"] == param, error
    assert code is None or error["code"] == code, error
    return error


# --- 404s ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/api/v1/invoices/1.5/", "/api/v1/invoices/abc/", "/api/v1/invoices/-1/", "/api/v1/wallets/1.5/top-up/",
    "/api/v1/nothing-here/", "/api/v1/statistics/week/", "/api/", "/api/v2/usage/", "/api/v1/reports/teams/x/",
])
def test_a_path_under_api_that_names_nothing_answers_the_json_404(finance, path):
    # when a caller asks for a URL no route takes (a non-integer id among them)
    response = finance.get(path)
    # then the answer is the error shape, not Django's HTML page
    error = assert_error(response, 404, None, "not_found")
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_any_method_on_an_unknown_api_path_answers_the_json_404(anonymous, method):
    response = getattr(anonymous, method)("/api/v1/invoices/1.5/credit-notes/", {}, format="json")
    assert_error(response, 404, None, "not_found")


def test_an_api_path_without_its_slash_is_redirected_then_answers_json(finance):
    # given an unknown API path without the trailing slash every route has
    response = finance.get("/api/v1/nothing-here", follow=True)
    # then it is redirected to the slashed path, which answers the JSON 404
    assert response.redirect_chain == [("/api/v1/nothing-here/", 301)]
    assert_error(response, 404, None, "not_found")


def test_the_json_404_holds_with_debug_on(finance, settings):
    settings.DEBUG = True
    assert_error(finance.get("/api/v1/invoices/1.5/"), 404, None, "not_found")


def test_a_huge_id_in_a_url_answers_404(finance):
    assert_error(finance.get(f"/api/v1/invoices/{10 ** 30}/"), 404, None, "not_found")


def test_a_path_outside_the_api_keeps_djangos_404_page(client):
    response = client.get("/nothing-here/")
    assert response.status_code == 404 and "application/json" not in response["Content-Type"]


# --- ids in bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("team", [Decimal("1.5"), "1.5", "1e0", True, [1], {"id": 1}, "x"])
def test_usage_post_with_a_team_that_is_not_an_integer_is_refused_naming_team(member, team_a, catalog, team):
    # given team A is team 1.5 rounded down, or not a number at all
    value = team if not isinstance(team, Decimal) else Decimal(team_a.pk) + Decimal("0.5")
    # when a member records usage naming it
    response = member.post("/api/v1/usage/", {**USAGE, "team": value}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
    # then the id is refused, and nothing is recorded for team A
    error = assert_error(response, 400, "team", "invalid_request")
    assert "whole number" in error["message"]
    assert not UsageRecord.objects.exists()


def test_an_id_in_a_body_is_a_json_integer_not_text(member, team_a, catalog):
    for value in (str(team_a.pk), ""):
        response = member.post("/api/v1/usage/", {**USAGE, "team": value}, format="json", HTTP_IDEMPOTENCY_KEY="u-1")
        assert_error(response, 400, "team", "invalid_request")
    assert not UsageRecord.objects.exists()


def test_an_id_that_names_nothing_answers_404_naming_the_field(finance, team_a):
    # an unknown id answers as another team's object does, so an id's existence never shows
    response = finance.post("/api/v1/invoices/", {"team": 10 ** 9, "period_start": "2024-09-01",
                                                  "period_end": "2024-10-01"}, format="json")
    assert_error(response, 404, "team", "not_found")
    response = finance.post("/api/v1/allocation-rules/", {"name": "r", "rule_type": "equal_split",
                                                          "targets": [{"team": team_a.pk}, {"team": 10 ** 9}]},
                            format="json")
    assert_error(response, 404, "targets[1].team", "not_found")
    assert not AllocationRule.objects.exists()


def test_an_id_in_a_query_string_is_digits(member, team_a):
    response = member.get(f"/api/v1/usage/summary/?period_start=2024-09-01&period_end=2024-10-01&team={team_a.pk}")
    assert response.status_code == 200 and response.json()["team"] == team_a.pk


def test_a_decimal_id_is_never_read_as_the_team_it_rounds_to(member, team_a, catalog):
    body = '{"resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": "1",' \
           f' "team": {team_a.pk}.5}}'
    response = member.post("/api/v1/usage/", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert_error(response, 400, "team")
    assert not UsageRecord.objects.exists()


def test_a_whole_number_written_with_a_point_is_the_same_id(member, team_a, catalog):
    body = '{"resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": "1",' \
           f' "team": {team_a.pk}.0}}'
    response = member.post("/api/v1/usage/", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="u-1")
    assert response.status_code == 201, response.json()
    assert response.json()["team"] == team_a.pk


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/api/v1/charges/", {"team": Decimal("1.5"), "items": CALL_ITEMS}, "team"),
    ("/api/v1/charges/", {"user": "2.5", "items": CALL_ITEMS}, "user"),
    ("/api/v1/quotes/", {"team": Decimal("1.5"), "items": CALL_ITEMS}, "team"),
    ("/api/v1/invoices/", {"team": Decimal("1.5"), "period_start": "2024-09-01", "period_end": "2024-10-01"}, "team"),
    ("/api/v1/allocations/", {"team": True, "period_start": "2024-09-01", "period_end": "2024-10-01"}, "team"),
    ("/api/v1/billing-runs/", {"period": "2024-09", "teams": [Decimal("1.5")]}, "teams"),
    ("/api/v1/allocation-rules/", {"name": "r", "rule_type": "equal_split", "source": "unallocated",
                                   "targets": [{"team": Decimal("1.5")}]}, "targets[0].team"),
    ("/api/v1/allocation-rules/", {"name": "r", "rule_type": "equal_split", "source": "team",
                                   "source_team": "abc"}, "source_team"),
])
def test_ids_that_are_not_integers_are_refused_everywhere(finance, team_a, catalog, wallet_a, path, body, param):
    response = finance.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=new_key())
    assert_error(response, 400, param)
    assert not UsageEvent.objects.exists() and not AllocationRule.objects.exists()


# --- filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "query", "param"), [
    ("/api/v1/usage/", "team=abc", "team"),
    ("/api/v1/usage/", "team=1.5", "team"),
    ("/api/v1/usage/", "user=1e3", "user"),
    ("/api/v1/usage/", "source=bogus", "source"),
    ("/api/v1/usage/", "status=bogus", "status"),
    ("/api/v1/usage/", "provider=aws&provider=gcp", "provider"),
    ("/api/v1/invoices/", "status=bogus", "status"),
    ("/api/v1/invoices/", "kind=bogus", "kind"),
    ("/api/v1/invoices/", "team=1.5", "team"),
    ("/api/v1/invoices/", "status=paid&status=draft", "status"),
    ("/api/v1/allocations/", "run=x", "run"),
    ("/api/v1/allocation-rules/", "enabled=maybe", "enabled"),
    ("/api/v1/allocation-rules/", "team=²", "team"),
    ("/api/v1/providers/", "team=1.5", "team"),
    ("/api/v1/providers/", "team=1&team=2", "team"),
    ("/api/v1/usage/summary/", "period_start=2024-09-01&period_end=2024-10-01&period_end=2024-11-01", "period_end"),
    ("/api/v1/usage/summary/", "period_start=2024-09-01&period_end=2024-10-01&team=1.5", "team"),
    ("/api/v1/statistics/month/", "year=2024&year=2025", "year"),
])
def test_a_filter_value_the_api_cannot_read_is_refused_naming_it(finance, team_a, path, query, param):
    assert_error(finance.get(f"{path}?{query}"), 400, param)


def test_filters_still_filter_by_id_choice_and_boolean(finance, team_a, team_b):
    # given usage of two teams and a disabled rule
    mine = UsageRecordFactory(team=team_a)
    UsageRecordFactory(team=team_b)
    AllocationRuleFactory(name="off", enabled=False)
    # then each filter keeps what it names
    assert [r["id"] for r in finance.get(f"/api/v1/usage/?team={team_a.pk}").json()["results"]] == [mine.pk]
    assert finance.get("/api/v1/usage/?status=unallocated").json()["results"] == []
    assert [r["name"] for r in finance.get("/api/v1/allocation-rules/?enabled=false").json()["results"]] == ["off"]
    assert finance.get("/api/v1/allocation-rules/?enabled=TRUE").json()["results"] == []


def test_an_unknown_query_parameter_is_ignored(finance, team_a):
    # a cache-busting parameter changes nothing a read returns (docs/api.md, "Conventions")
    UsageRecordFactory(team=team_a)
    response = finance.get("/api/v1/usage/?_=1712345678")
    assert response.status_code == 200 and len(response.json()["results"]) == 1


def test_a_huge_id_filter_finds_nothing(finance, team_a):
    UsageRecordFactory(team=team_a)
    response = finance.get(f"/api/v1/usage/?team={10 ** 18}")
    assert response.status_code == 200 and response.json()["results"] == []


# --- enums in bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/api/v1/invoices/", {"team": "{team}", "period_start": "2024-09-01", "period_end": "2024-10-01",
                           "kind": "bogus"}, "kind"),
    ("/api/v1/allocation-rules/", {"name": "r", "rule_type": "bogus", "source": "unallocated"}, "rule_type"),
    ("/api/v1/allocation-rules/", {"name": "r", "rule_type": "equal_split", "source": "bogus"}, "source"),
])
def test_an_unknown_enum_value_in_a_body_is_refused_naming_it(finance, team_a, path, body, param):
    body = {k: (team_a.pk if v == "{team}" else v) for k, v in body.items()}
    assert_error(finance.post(path, body, format="json"), 400, param)


def test_an_unknown_billing_model_is_refused_naming_it(finance, team_a):
    response = finance.put(f"/api/v1/teams/{team_a.pk}/billing-settings/", {"billing_model": "bogus"}, format="json")
    assert_error(response, 400, "billing_model")


def test_an_unknown_invoice_status_is_refused_naming_it(finance, team_a):
    invoice = draft_invoice(team=team_a)
    response = finance.post(f"/api/v1/invoices/{invoice.pk}/status/", {"status": "bogus"}, format="json")
    assert_error(response, 400, "status")


# --- credit-note lines --------------------------------------------------------------------------


@pytest.fixture
def invoice_a(team_a):
    return draft_invoice(team=team_a, amounts=("10.00", "2.50"))


@pytest.mark.parametrize(("lines", "param"), [
    ([None, None], "lines[0]"),
    ([5], "lines[0]"),
    (["x"], "lines[0]"),
    ([[]], "lines[0]"),
    ([{"invoice_line": "{line}", "amount": "1.00"}, None], "lines[1]"),
    ([{"invoice_line": "x", "amount": "1.00"}], "lines[0].invoice_line"),
    ([{"invoice_line": Decimal("1.5"), "amount": "1.00"}], "lines[0].invoice_line"),
    ([{"invoice_line": "{line}", "amount": "abc"}], "lines[0].amount"),
    ([{"invoice_line": "{line}", "amount": None}], "lines[0].amount"),
    ([{"invoice_line": "{line}"}], "lines[0].amount"),
    ([{"invoice_line": "{line}", "amount": "1.00", "bogus": 1}], "lines[0].bogus"),
    ("all of them", "lines"),
])
def test_credit_note_lines_are_checked_one_by_one(finance, invoice_a, lines, param):
    # given an invoice's line id, and lines of every wrong shape
    line = invoice_a.lines.first().pk
    if isinstance(lines, list):
        lines = [{k: (line if v == "{line}" else v) for k, v in item.items()} if isinstance(item, dict) else item
                 for item in lines]
    # when finance credits them
    response = finance.post(f"/api/v1/invoices/{invoice_a.pk}/credit-notes/", {"reason": "other", "lines": lines},
                            format="json")
    # then the first bad line is named, never a 500, and nothing is credited
    assert_error(response, 400, param)
    assert not CreditNote.objects.exists()


def test_a_credit_note_line_given_twice_or_over_what_is_left_names_that_line(finance, invoice_a):
    # Given an issued invoice's first line (10.00)
    invoice_issue(invoice=invoice_a)
    line = invoice_a.lines.order_by("position").first().pk
    url = f"/api/v1/invoices/{invoice_a.pk}/credit-notes/"
    # When the same line is credited twice in one note, the second mention is named
    twice = [{"invoice_line": line, "amount": "1.00"}, {"invoice_line": line, "amount": "1.00"}]
    response = finance.post(url, {"reason": "other", "lines": twice}, format="json")
    assert_error(response, 400, "lines[1].invoice_line")
    # And a line credited beyond what is left names that line's amount (422 credit_exceeds_invoice)
    over = [{"invoice_line": line, "amount": "10.01"}]
    response = finance.post(url, {"reason": "other", "lines": over}, format="json")
    assert_error(response, 422, "lines[0].amount", "credit_exceeds_invoice")
    assert not CreditNote.objects.exists()


# --- large amounts ------------------------------------------------------------------------------

#: The largest top-up a call takes: 10^15 less one metered quantum.
LARGEST = MAX_AMOUNT - Decimal("0.000000000001")


def _top_up_to(wallet, calls: int) -> Decimal:
    for _ in range(calls):
        wallet_top_up(wallet=wallet, amount=LARGEST, idempotency_key=new_key("big"))
    wallet.refresh_from_db()
    return wallet.balance


def test_a_balance_past_1e16_tops_up_and_charges_exactly(finance, key, catalog, wallet_a):
    with localcontext(MONEY_CONTEXT):  # the test's own sums, exact like the services'
        expected = 11 * LARGEST
        topped_up = expected + Decimal("0.000000000001")
        charged = topped_up - Decimal("0.037")
    # given a balance past 10^16, with every one of its 12 decimal places in use (29 digits)
    assert _top_up_to(wallet_a, 11) == expected and expected > Decimal(10) ** 16
    # when finance tops it up by the smallest amount through the API
    response = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "0.000000000001"}, format="json",
                            HTTP_IDEMPOTENCY_KEY="t-small")
    # then the new balance is exact (Python's 28-digit default would have rounded it, and the chain CHECK refused)
    assert response.status_code == 201, response.json()
    assert response.json()["balance_after"] == "10999999999999999.999999999990" == f"{topped_up:.12f}"
    # and a charge through the SQL function debits it exactly
    response = key.post("/api/v1/charges/", {"items": CALL_ITEMS}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert response.status_code == 201, response.json()
    wallet_a.refresh_from_db()
    assert wallet_a.balance == charged and wallet_a.available() == charged
    # and the wallet reads back exactly through the API
    body = finance.get(f"/api/v1/wallets/{wallet_a.pk}/").json()
    assert body["balance"] == body["available"] == "10999999999999999.962999999990"


@pytest.mark.slow
def test_a_top_up_past_the_largest_balance_answers_422_naming_amount(finance, wallet_a):
    # given a balance 10^-9 below 10^18, the most numeric(30, 12) holds (built by 1,000 top-ups)
    balance = _top_up_to(wallet_a, 1000)
    assert balance == Decimal("999999999999999999.999999999000") and balance == METERED_BOUND - Decimal("1E-9")
    entries = LedgerEntry.objects.count()
    # when finance tops it up past the bound
    response = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "0.000000001"}, format="json",
                            HTTP_IDEMPOTENCY_KEY="t-over")
    # then it is refused with 422 naming amount, and nothing moved
    error = assert_error(response, 422, "amount", "amount_out_of_range")
    assert "1,000,000,000,000,000,000" in error["message"]
    wallet_a.refresh_from_db()
    assert wallet_a.balance == balance and LedgerEntry.objects.count() == entries
    # and a top-up that stays below it still passes
    response = finance.post(f"/api/v1/wallets/{wallet_a.pk}/top-up/", {"amount": "0.0000000001"}, format="json",
                            HTTP_IDEMPOTENCY_KEY="t-under")
    assert response.status_code == 201, response.json()
