"""``GET billing/subscription``, ``billing/invoices`` and ``billing/usage``: the caller's own, in the seed's shapes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from chargeback.services.usage import usage_record_create
from invoices.services.lifecycle import invoice_transition
from subscriptions.services.lifecycle import subscription_create
from tests.factories import draft_invoice

pytestmark = pytest.mark.django_db


def test_subscription_shape_for_a_member_of_a_subscribed_team(member, team_a, pro):
    # given team A on the professional plan
    sub = subscription_create(team=team_a, plan=pro)
    # when a member asks for their subscription
    response = member.get("/api/v1/billing/subscription/")
    # then they see the team's, in the seed's shape, the fee as a decimal string with its currency
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("id", "tier", "status", "cancel_at_period_end", "amount", "interval", "currency")} == {
        "id": sub.pk, "tier": "professional", "status": "active", "cancel_at_period_end": False, "amount": "49.00",
        "interval": "month", "currency": "USD"}
    assert body["current_period_start"] and body["current_period_end"] > body["current_period_start"]


def test_subscription_without_one_is_the_basic_tier_not_an_error(member):
    response = member.get("/api/v1/billing/subscription/")
    assert response.status_code == 200
    body = response.json()
    assert (body["tier"], body["status"], body["amount"], body["currency"], body["id"]) == (
        "basic", "none", "0.00", "USD", None)


def test_subscription_of_another_team_is_404(member, outsider, team_a, team_b, pro):
    subscription_create(team=team_b, plan=pro)
    response = member.get(f"/api/v1/billing/subscription/?team={team_b.pk}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    # the outsider sees team B's own
    assert outsider.get("/api/v1/billing/subscription/").json()["tier"] == "professional"


def test_subscription_for_a_team_key_and_a_bad_team_param(key, team_a, team_b, pro):
    subscription_create(team=team_a, plan=pro)
    assert key.get("/api/v1/billing/subscription/").json()["tier"] == "professional"
    assert key.get(f"/api/v1/billing/subscription/?team={team_b.pk}").status_code == 404
    response = key.get("/api/v1/billing/subscription/?team=abc")
    assert response.status_code == 400 and response.json()["error"]["param"] == "team"


def test_subscription_needs_authentication(anonymous):
    assert anonymous.get("/api/v1/billing/subscription/").status_code == 401


def test_invoices_list_the_callers_issued_invoices_newest_first(member, team_a, team_b, finance_user):
    # given two issued invoices of team A (one paid), a draft, and an issued invoice of team B
    first = draft_invoice(team=team_a, amounts=("10.00",))
    invoice_transition(invoice=first, to_status="pending", by=finance_user)
    second = draft_invoice(team=team_a, amounts=("25.50",), period_start=dt.date(2026, 10, 1),
                           period_end=dt.date(2026, 11, 1))
    invoice_transition(invoice=second, to_status="pending", by=finance_user)
    invoice_transition(invoice=second, to_status="paid", by=finance_user, payment_reference="wire 42")
    draft_invoice(team=team_a, amounts=("99.00",), period_start=dt.date(2026, 11, 1), period_end=dt.date(2026, 12, 1))
    other = draft_invoice(team=team_b, amounts=("7.00",))
    invoice_transition(invoice=other, to_status="pending", by=finance_user)
    # when the member lists their invoices
    response = member.get("/api/v1/billing/invoices/?limit=10")
    # then they see team A's two issued invoices, in Stripe's shape, with our PDF's URL
    assert response.status_code == 200
    rows = response.json()["invoices"]
    assert [row["id"] for row in rows] == [second.pk, first.pk]
    paid = rows[0]
    assert set(paid) == {"id", "number", "amount_due", "amount_paid", "currency", "status", "created", "due_date",
                         "paid", "invoice_pdf", "hosted_invoice_url"}
    assert (paid["amount_due"], paid["amount_paid"], paid["paid"], paid["currency"]) == ("0.00", "25.50", True, "USD")
    assert (rows[1]["amount_due"], rows[1]["amount_paid"], rows[1]["paid"]) == ("10.00", "0.00", False)
    assert paid["invoice_pdf"].endswith(f"/api/v1/invoices/{second.pk}/pdf/") and paid["hosted_invoice_url"] is None
    assert member.get(paid["invoice_pdf"]).status_code == 200
    # and the limit holds
    limited = member.get("/api/v1/billing/invoices/?limit=1").json()
    assert len(limited["invoices"]) == 1 and limited["has_more"] is True


@pytest.mark.parametrize("limit", ["0", "101", "1.5", "ten"])
def test_invoices_refuse_a_bad_limit(member, limit):
    response = member.get(f"/api/v1/billing/invoices/?limit={limit}")
    assert response.status_code == 400 and response.json()["error"]["param"] == "limit"


def test_usage_holds_the_seed_example(member, member_user, team_a, pro):
    # given team A on a plan with 500 inference units included, at 2.00 USD per 1,000 beyond
    now = timezone.now()
    subscription_create(team=team_a, plan=pro, start=now - dt.timedelta(hours=1))
    # and 585 units used in the period: 400 half an hour ago, 185 a second ago
    for key, quantity, at in (("u1", 400, now - dt.timedelta(minutes=30)), ("u2", 185, now - dt.timedelta(seconds=1))):
        usage_record_create(team=team_a, user=member_user, resource_type="llm", provider="openai", model="gpt-4",
                            unit="token", quantity=Decimal(quantity), occurred_at=at, idempotency_key=key,
                            cost=Decimal(0))
    # when the member reads their usage
    response = member.get("/api/v1/billing/usage/")
    # then: remaining 0, overage 85, overage cost 0.17 USD
    assert response.status_code == 200
    body = response.json()
    credits = body["credits"]
    assert body["tier"] == credits["tier"] == "professional"
    assert Decimal(credits["included_credits"]) == 500 and Decimal(credits["used"]) == 585
    assert Decimal(credits["remaining"]) == 0 and Decimal(credits["overage"]) == 85
    assert Decimal(credits["overage_cost"]) == Decimal("0.17") and Decimal(credits["price_per_1k"]) == 2
    assert credits["currency"] == "USD"
    assert Decimal(body["usage"]["month"]["inference"]) == 585
    assert Decimal(body["usage"]["today"]["inference"]) >= 185


def test_usage_without_a_subscription_counts_units_per_resource_type(member, member_user, team_a):
    usage_record_create(team=team_a, user=member_user, resource_type="llm", provider="openai", model="gpt-4",
                        unit="token", quantity=Decimal(120), occurred_at=timezone.now() - dt.timedelta(seconds=5),
                        idempotency_key="basic-1", cost=Decimal(0))
    body = member.get("/api/v1/billing/usage/").json()
    assert body["tier"] == "basic" and body["credits"] is None
    assert Decimal(body["usage"]["today"]["llm"]) == 120 and Decimal(body["usage"]["month"]["llm"]) == 120
