"""Finance's endpoints: stats (MRR), customers, subscriptions, plans, and subscription writes with a preview."""

from __future__ import annotations

from decimal import Decimal

import pytest

from subscriptions.models import Plan, Subscription
from subscriptions.selectors_mrr import _counts_by_status_and_plan, subscription_counts_recount
from subscriptions.services.lifecycle import subscription_cancel, subscription_change_plan, subscription_create
from subscriptions.services.status import subscription_transition
from tests.factories import UserFactory
from tests.subscriptions.api.conftest import postpaid_team

pytestmark = pytest.mark.django_db


@pytest.fixture
def book(make_plan):
    """MRR book: pro monthly 49 ×2 (one past due), enterprise yearly 12,000, starter 19 on trial, a
    canceled starter, an unpaid pro, and a EUR plan of 45 a month."""
    pro = make_plan("pro", tier="professional", fee="49")
    enterprise = make_plan("enterprise", fee="12000", interval="year")
    starter = make_plan("starter", fee="19", trial_days=14)
    euro = make_plan("pro-eur", tier="professional", fee="45", currency="EUR")
    teams = [postpaid_team() for _ in range(6)]
    subscription_create(team=teams[0], plan=pro)
    past_due = subscription_create(team=teams[1], plan=pro)
    subscription_transition(subscription=past_due, to_status="past_due")
    subscription_create(team=teams[2], plan=enterprise)
    subscription_create(team=teams[3], plan=starter)  # trialing
    gone = subscription_create(team=teams[4], plan=starter, trial=False)
    subscription_cancel(subscription=gone, at_period_end=False)
    unpaid = subscription_create(team=teams[5], plan=pro)
    subscription_transition(subscription=unpaid, to_status="past_due")
    subscription_transition(subscription=unpaid, to_status="unpaid")
    subscription_create(team=postpaid_team(currency="EUR"), plan=euro)
    return {"pro": pro, "enterprise": enterprise, "starter": starter, "euro": euro, "teams": teams}


def test_stats_mrr_counts_active_and_past_due_by_tier_per_currency(finance, book):
    response = finance.get("/api/v1/admin/billing/stats/")
    assert response.status_code == 200
    body = response.json()
    # 6 live subscribers (the canceled one is not), 3 active (+1 past due, 1 unpaid), 1 trialing
    assert (body["total_customers"], body["active_subscriptions"], body["trial_subscriptions"]) == (6, 3, 1)
    assert (body["past_due_subscriptions"], body["canceled_subscriptions"]) == (1, 1)
    # MRR: 49 + 49 (past due) + 12,000 / 12; no trial, no canceled, no unpaid; EUR apart
    assert (body["currency"], body["monthly_revenue"]) == ("USD", "1098.00")
    assert body["tier_breakdown"] == {"enterprise": {"count": 1, "revenue": "1000.00"},
                                      "professional": {"count": 2, "revenue": "98.00"}}
    assert body["other_currencies"] == [{"currency": "EUR", "monthly_revenue": "45.00",
                                         "tier_breakdown": {"professional": {"count": 1, "revenue": "45.00"}}}]


def test_stats_with_no_subscriptions_is_zero(finance):
    body = finance.get("/api/v1/admin/billing/stats/").json()
    assert (body["total_customers"], body["monthly_revenue"], body["tier_breakdown"]) == (0, "0.00", {})


def test_finance_endpoints_refuse_members_and_keys(member, key, auditor, outsider):
    for client in (member, key, outsider):
        for url in ("stats/", "customers/", "subscriptions/", "plans/"):
            response = client.get(f"/api/v1/admin/billing/{url}")
            assert response.status_code == 403, url
            assert response.json()["error"]["type"] == "permission_error"
    # auditors read, never write
    assert auditor.get("/api/v1/admin/billing/stats/").status_code == 200
    assert auditor.post("/api/v1/admin/billing/plans/", {}, format="json").status_code == 403


def test_customers_lists_live_subscribers_with_their_mrr(finance, book):
    response = finance.get("/api/v1/admin/billing/customers/?limit=100")
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 6 and len(body["customers"]) == 6
    by_plan = {(c["plan"], c["status"]): c for c in body["customers"]}
    assert by_plan[("enterprise", "active")]["mrr"] == "1000.00"
    assert by_plan[("starter", "trialing")]["mrr"] == "0.00"
    assert set(body["customers"][0]) >= {"team", "team_name", "user", "subscription", "plan", "tier", "status", "mrr",
                                         "currency", "since"}
    assert finance.get("/api/v1/admin/billing/customers/?limit=2&offset=5").json()["customers"].__len__() == 1


def test_subscriptions_filtered_by_status_with_total(finance, book):
    response = finance.get("/api/v1/admin/billing/subscriptions/?status=active&limit=100")
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 3 and {s["status"] for s in body["subscriptions"]} == {"active"}
    row = next(s for s in body["subscriptions"] if s["plan_code"] == "enterprise")
    assert (row["amount"], row["mrr"], row["currency"], row["interval"]) == ("12000.00", "1000.00", "USD", "year")
    assert finance.get("/api/v1/admin/billing/subscriptions/?status=active&limit=1").json()["total"] == 3


@pytest.mark.parametrize("query, param", [("status=bogus", "status"), ("limit=5000", "limit"), ("limit=0", "limit"),
                                          ("offset=-1", "offset"), ("team=1.5", "team"),
                                          ("status=active&status=trialing", "status")])
def test_subscriptions_refuse_bad_filters(finance, query, param):
    response = finance.get(f"/api/v1/admin/billing/subscriptions/?{query}")
    assert response.status_code == 400 and response.json()["error"]["param"] == param


# --- plans -------------------------------------------------------------------------------------------------------


PLAN_BODY = {
    "code": "team-monthly", "name": "Team", "tier": "team", "currency": "USD", "fee": "99.00", "interval": "month",
    "charges": [{"meter": "inference", "resource_type": "llm", "included_units": "1000", "charge_model": "graduated",
                 "tiers": [{"up_to": "10000", "unit_price": "0.002"}, {"up_to": None, "unit_price": "0.001"}]}],
}


def test_plan_create_read_update_archive(finance):
    created = finance.post("/api/v1/admin/billing/plans/", PLAN_BODY, format="json")
    assert created.status_code == 201, created.json()
    plan = created.json()
    assert (plan["code"], Decimal(plan["fee"]), plan["in_use"], plan["status"]) == ("team-monthly", 99, False, "active")
    assert [Decimal(t["unit_price"]) for t in plan["charges"][0]["tiers"]] == [Decimal("0.002"), Decimal("0.001")]
    url = f"/api/v1/admin/billing/plans/{plan['id']}/"
    # unused: its price may change
    assert Decimal(finance.patch(url, {"fee": "109.00"}, format="json").json()["fee"]) == 109
    assert finance.get(url).json()["name"] == "Team"
    assert any(p["id"] == plan["id"] for p in finance.get("/api/v1/admin/billing/plans/").json())
    archived = finance.delete(url)
    assert archived.status_code == 200 and archived.json()["status"] == "archived"


def test_plan_prices_are_immutable_once_used(finance, pro, team_a):
    subscription_create(team=team_a, plan=pro)
    url = f"/api/v1/admin/billing/plans/{pro.pk}/"
    response = finance.patch(url, {"fee": "59.00"}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "plan_immutable" and "new plan" in error["message"].lower()
    assert Plan.objects.get(pk=pro.pk).fee == Decimal(49)
    # its name may still change
    assert finance.patch(url, {"name": "Professional"}, format="json").json()["name"] == "Professional"
    assert finance.get(url).json()["in_use"] is True


@pytest.mark.parametrize("body, param", [
    ({**PLAN_BODY, "fee": "-1"}, "fee"), ({**PLAN_BODY, "currency": "usd"}, "currency"),
    ({**PLAN_BODY, "interval": "week"}, "interval"), ({**PLAN_BODY, "colour": "red"}, "colour"),
])
def test_plan_create_refuses_bad_input_naming_the_field(finance, body, param):
    response = finance.post("/api/v1/admin/billing/plans/", body, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_plan_unknown_is_404_and_members_cannot_create(finance, member):
    assert finance.get("/api/v1/admin/billing/plans/999999/").status_code == 404
    assert member.post("/api/v1/admin/billing/plans/", PLAN_BODY, format="json").status_code == 403


# --- subscription writes --------------------------------------------------------------------------------------------


def test_subscription_create_then_conflict(finance, pro, team_a):
    body = {"team": team_a.pk, "plan": pro.pk}
    created = finance.post("/api/v1/admin/billing/subscriptions/", body, format="json")
    assert created.status_code == 201, created.json()
    assert (created.json()["status"], created.json()["plan_code"]) == ("active", "pro")
    again = finance.post("/api/v1/admin/billing/subscriptions/", body, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "subscription_exists"


def test_subscription_create_for_a_user_outside_the_team_is_400(finance, pro, team_a):
    stranger = UserFactory()
    response = finance.post("/api/v1/admin/billing/subscriptions/", {"team": team_a.pk, "plan": pro.pk,
                                                                     "user": stranger.pk}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "user"


def test_subscription_cancel_at_period_end_and_now(finance, pro, team_a, team_b):
    sub = subscription_create(team=team_a, plan=pro)
    url = f"/api/v1/admin/billing/subscriptions/{sub.pk}/"
    response = finance.post(url + "cancel/", {}, format="json")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["cancel_at_period_end"]) == ("active", True)
    other = subscription_create(team=team_b, plan=pro)
    now = finance.post(f"/api/v1/admin/billing/subscriptions/{other.pk}/cancel/", {"at_period_end": False}, format="json")
    assert now.json()["status"] == "canceled" and now.json()["ended_at"]
    # a canceled subscription cannot be canceled again
    again = finance.post(f"/api/v1/admin/billing/subscriptions/{other.pk}/cancel/", {"at_period_end": False},
                         format="json")
    assert again.status_code == 409


def test_subscription_change_plan_previews_the_proration_then_commits(finance, make_plan, pro, team_a):
    sub = subscription_create(team=team_a, plan=pro)
    enterprise = make_plan("enterprise", fee="499")
    url = f"/api/v1/admin/billing/subscriptions/{sub.pk}/"
    # the preview shows a credit for the unused time of pro and a charge for the rest on enterprise
    preview = finance.get(url + f"upcoming-invoice/?plan={enterprise.pk}")
    assert preview.status_code == 200, preview.json()
    lines = preview.json()["lines"]
    kinds = {line["kind"] for line in lines}
    assert {"proration_credit", "proration_charge"} <= kinds
    credit = sum(Decimal(line["amount"]) for line in lines if line["kind"] == "proration_credit")
    charge = sum(Decimal(line["amount"]) for line in lines if line["kind"] == "proration_charge")
    assert credit < 0 < charge and charge > -credit
    # and nothing was written
    assert Subscription.objects.get(pk=sub.pk).plan_id == pro.pk
    changed = finance.post(url + "change-plan/", {"plan": enterprise.pk, "when": "now"}, format="json")
    assert changed.status_code == 200 and changed.json()["plan_code"] == "enterprise"


def test_subscription_of_nobody_is_404(finance):
    assert finance.get("/api/v1/admin/billing/subscriptions/999999/").status_code == 404
    assert finance.post("/api/v1/admin/billing/subscriptions/999999/cancel/", {}, format="json").status_code == 404


def test_kept_counts_equal_the_counted_ones(book, make_plan):
    # given the book's creates, transitions and cancellation, then a plan change and a trial extended
    sub = Subscription.objects.filter(plan=book["pro"], status="active").first()
    subscription_change_plan(subscription=sub, plan=make_plan("pro-plus", tier="professional", fee="99"), when="now")
    # then the trigger's counts are the counted ones
    assert _counts_by_status_and_plan() == subscription_counts_recount()
