"""A request is read as its schema says, no more leniently (docs/api.md, "JSON types", "Decimal strings").

The rules live once in ``billing_site.api.fields`` (``StrictSerializerMixin``), so every endpoint
built with the mix-in holds them; plans (``admin/billing/plans/``) are the example here, as a plan
needs nothing else to exist.
"""

from __future__ import annotations

import pytest

PLANS = "/api/v1/admin/billing/plans/"
PLAN = {"code": "pro", "name": "Pro", "tier": "professional", "currency": "USD", "fee": "49.00"}


def _refused(response, param: str, status: int = 400) -> None:
    assert response.status_code == status, response.json()
    assert response.json()["error"]["param"] == param


def test_a_plan_sent_as_the_schema_says_is_created(finance):
    response = finance.post(PLANS, {**PLAN, "interval_count": 1, "trial_days": 0,
                                    "charges": [{"meter": "calls", "resource_type": "llm", "price": "0.002",
                                                 "price_per_units": "1", "charge_model": "standard"}]},
                            format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["charges"][0]["price"] == "0.002000000000"


@pytest.mark.parametrize("field, value", [
    ("code", 0),  # text is a JSON string: DRF alone would read 0 as "0"
    ("name", 1.5),
    ("interval", 1),  # a choice of text
    ("interval_count", "1"),  # a whole number is a JSON integer
    ("interval_count", True),
    ("trial_days", 1.5),
    ("fee", 49),  # a plan's fee is a decimal string
    ("fee", "1e3"),  # no exponent
    ("fee", " 49"),  # no spaces
    ("fee", "049"),  # no leading zeros
    ("fee", "-1"),  # no sign where the minimum is 0
    ("fee", "1.0000000000001"),  # 13 places
    ("name", "   "),  # blank once trimmed
    ("tier", "x" * 50 + " "),  # maxLength (50) counts what is sent
])
def test_a_value_of_another_json_type_or_shape_is_refused_naming_the_field(finance, field, value):
    _refused(finance.post(PLANS, {**PLAN, field: value}, format="json"), field)


@pytest.mark.parametrize("charge, param", [
    ({"price_per_units": "0"}, "charges[0].price_per_units"),  # more than 0
    ({"charge_model": "package", "package_size": "0.5"}, "charges[0].package_size"),  # at least 1
    ({"tiers": [{"unit_price": "1", "up_to": "0"}]}, "charges[0].tiers[0].up_to"),
])
def test_a_charge_bound_the_schema_states_is_held(finance, charge, param):
    body = {**PLAN, "charges": [{"meter": "calls", "resource_type": "llm", **charge}]}
    _refused(finance.post(PLANS, body, format="json"), param)


def test_charges_that_do_not_go_together_are_422_and_a_taken_code_409(finance):
    twice = [{"meter": "calls", "resource_type": "llm"}, {"meter": "calls", "resource_type": "llm"}]
    _refused(finance.post(PLANS, {**PLAN, "charges": twice}, format="json"), "charges[1].meter", 422)
    sizeless = [{"meter": "calls", "resource_type": "llm", "charge_model": "package"}]
    _refused(finance.post(PLANS, {**PLAN, "charges": sizeless}, format="json"), "charges[0].package_size", 422)
    assert finance.post(PLANS, PLAN, format="json").status_code == 201
    _refused(finance.post(PLANS, PLAN, format="json"), "code", 409)


@pytest.mark.parametrize("team", ["0", "9223372036854775808", "1.0", "-1"])
def test_an_id_in_a_query_outside_1_to_2_63_is_refused(member, team):
    _refused(member.get("/api/v1/providers/", {"team": team}), "team")
    _refused(member.get("/api/v1/statistics/month/", {"year": "2024", "month": "9", "team": team}), "team")


def test_the_largest_id_names_nothing(member):
    assert member.get("/api/v1/providers/", {"team": str(2**63 - 1)}).status_code == 404


def test_an_empty_choice_in_a_query_is_refused_not_read_as_the_default(member):
    _refused(member.get("/api/v1/focus-export/", {"period": "2024-09", "file_format": ""}), "file_format")


def test_a_quote_quantity_of_10_15_is_refused_as_the_schema_says(key):
    item = {"category": "llm", "provider": "openai", "model": "gpt", "unit": "1k_tokens"}
    _refused(key.post("/api/v1/quotes/", {"items": [{**item, "quantity": "1000000000000000"}]}, format="json"),
             "items[0].quantity")


@pytest.mark.parametrize("params, param", [
    ({"page": ""}, "page"), ({"page": "last"}, "page"), ({"limit": ""}, "limit"),  # no default for an empty value
])
def test_pagination_parameters_are_whole_numbers_as_the_schema_says(member, params, param):
    _refused(member.get("/api/v1/invoices/", params), param)
    assert member.get("/api/v1/invoices/", {"page": "1", "limit": "10"}).status_code == 200
