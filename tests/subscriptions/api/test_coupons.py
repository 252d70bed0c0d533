"""Finance's coupons (create, read, rename, archive) and discounts applied to subscriptions, through the API."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoices.models import Invoice
from subscriptions.services.lifecycle import subscription_create

pytestmark = pytest.mark.django_db

COUPONS = "/api/v1/admin/billing/coupons/"


def test_coupon_create_read_rename_archive(finance):
    created = finance.post(COUPONS, {"code": "launch", "name": "Launch", "percent_off": "20.5",
                                     "duration": "repeating", "duration_in_months": 3}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["percent_off"], body["amount_off"], body["currency"], body["duration"], body["duration_in_months"],
            body["status"]) == ("20.50", None, "", "repeating", 3, "active")
    url = f"{COUPONS}{body['id']}/"
    assert finance.get(url).json()["code"] == "launch"
    assert [c["code"] for c in finance.get(COUPONS).json()] == ["launch"]
    assert finance.patch(url, {"name": "Launch 2025"}, format="json").json()["name"] == "Launch 2025"
    frozen = finance.patch(url, {"percent_off": "30"}, format="json")
    assert frozen.status_code == 400 and frozen.json()["error"]["param"] == "percent_off"
    assert finance.delete(url).json()["status"] == "archived"
    assert finance.get(f"{COUPONS}999999/").status_code == 404


@pytest.mark.parametrize("body, status, param", [
    ({"percent_off": "10", "amount_off": "5.00", "currency": "USD"}, 422, "percent_off"),
    ({"percent_off": "100.01"}, 400, "percent_off"),
    ({"percent_off": 10}, 400, "percent_off"),
    ({"amount_off": "5.00"}, 422, "currency"),
    ({"amount_off": "5.001", "currency": "USD"}, 400, "amount_off"),
    ({"percent_off": "10", "duration": "repeating"}, 422, "duration_in_months"),
    ({"percent_off": "10", "duration": "once", "duration_in_months": 2}, 422, "duration_in_months"),
    ({"percent_off": "10", "duration": "weekly"}, 400, "duration"),
    ({"percent_off": "10", "colour": "red"}, 400, "colour"),
    ({"percent_off": "0"}, 400, "percent_off"),
    ({"amount_off": "0", "currency": "USD"}, 400, "amount_off"),
])
def test_coupon_create_refuses_bad_terms_naming_the_field(finance, body, status, param):
    response = finance.post(COUPONS, {"code": "bad", "name": "Bad", **body}, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["error"]["param"] == param


def test_members_cannot_make_coupons(member):
    assert member.post(COUPONS, {"code": "x", "name": "X", "percent_off": "10"}, format="json").status_code == 403
    assert member.get(COUPONS).status_code == 403


def test_apply_a_coupon_to_a_subscription_then_remove_it(finance, pro, team_a):
    sub = subscription_create(team=team_a, plan=pro)
    coupon = finance.post(COUPONS, {"code": "ten-off", "name": "Ten off", "amount_off": "10.00", "currency": "USD",
                                    "duration": "forever"}, format="json").json()
    url = f"/api/v1/admin/billing/subscriptions/{sub.pk}/"
    applied = finance.post(url + "discount/", {"coupon": coupon["id"]}, format="json")
    assert applied.status_code == 201, applied.json()
    assert applied.json()["coupon"]["code"] == "ten-off" and applied.json()["end"] is None
    # the upcoming renewal shows the discount beside the fee
    upcoming = finance.get(url + "upcoming-invoice/").json()
    assert [(line["kind"], line["amount"]) for line in upcoming["lines"]][:2] == [("fee", "49.00"), ("discount", "-10.00")]
    removed = finance.delete(url + "discount/")
    assert removed.status_code == 200 and removed.json() == {"subscription": sub.pk, "ended": 1}
    unknown = finance.post(url + "discount/", {"coupon": 999999}, format="json")
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "coupon"


def test_subscription_created_with_a_coupon_shows_its_discount_and_mrr(finance, pro, team_a):
    coupon = finance.post(COUPONS, {"code": "half", "name": "Half", "percent_off": "50", "duration": "forever"},
                          format="json").json()
    created = finance.post("/api/v1/admin/billing/subscriptions/", {"team": team_a.pk, "plan": pro.pk,
                                                                    "coupon": coupon["id"]}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["amount"], body["mrr"], body["discount"]["coupon"]["code"]) == ("49.00", "24.50", "half")
    invoice = Invoice.objects.get(team=team_a, kind="subscription")
    assert invoice.total == invoice.subtotal == Decimal("24.50")
    stats = finance.get("/api/v1/admin/billing/stats/").json()
    assert stats["monthly_revenue"] == "24.50"
    customers = finance.get("/api/v1/admin/billing/customers/").json()
    assert customers["customers"][0]["mrr"] == "24.50"


def test_coupon_create_with_a_taken_code_is_409_naming_the_code(finance):
    # given a coupon "launch"
    assert finance.post(COUPONS, {"code": "launch", "name": "Launch", "percent_off": "20"}, format="json").status_code == 201
    # when another is made with the same code
    response = finance.post(COUPONS, {"code": "launch", "name": "Again", "percent_off": "10"}, format="json")
    # then it is refused as the state of the books, not as bad input
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "coupon_code_taken" and response.json()["error"]["param"] == "code"
