"""The finance admin of plans and subscriptions: lists, filters, search, and actions through the services."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from subscriptions.models import Coupon, Plan, Subscription, SubscriptionDiscount, SubscriptionProration
from subscriptions.services.discounts import coupon_create
from subscriptions.services.lifecycle import subscription_create
from subscriptions.services.plans import plan_create
from tests.subscriptions.api.conftest import INFERENCE, postpaid_team

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:subscriptions_subscription_changelist"


@pytest.fixture
def plans(db):
    make = lambda code, fee, **kw: plan_create(code=code, name=code.title(), tier=kw.pop("tier", code), currency="USD",  # noqa: E731
                                               fee=Decimal(fee), charges=[INFERENCE], **kw)
    return {"starter": make("starter", "19", trial_days=14), "pro": make("pro", "49", tier="professional"),
            "enterprise": make("enterprise", "499")}


@pytest.fixture
def subs(plans):
    return {
        "search": subscription_create(team=postpaid_team(name="Search", slug="search"), plan=plans["pro"]),
        "checkout": subscription_create(team=postpaid_team(name="Checkout", slug="checkout"), plan=plans["starter"]),
    }


def test_subscription_list_filters_and_search(finance, subs):
    response = finance.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert b"Search" in response.content and b"Checkout" in response.content
    trialing = finance.get(reverse(CHANGELIST) + "?status__exact=trialing").content
    assert b"Checkout" in trialing and b">Search<" not in trialing
    found = finance.get(reverse(CHANGELIST) + "?q=search").content
    assert b"Search" in found and b"Checkout" not in found
    ending = finance.get(reverse(CHANGELIST) + "?trial_ends=7d").content
    assert b"Checkout" not in ending  # a 14-day trial does not end within 7 days


def test_plan_list_and_frozen_prices(finance, subs, plans):
    response = finance.get(reverse("admin:subscriptions_plan_changelist") + "?tier=professional")
    assert response.status_code == 200 and b"pro" in response.content
    page = finance.get(reverse("admin:subscriptions_plan_change", args=[plans["pro"].pk]))
    assert b"can no longer change" in page.content
    assert b'name="fee"' not in page.content  # read-only once used
    unused = finance.get(reverse("admin:subscriptions_plan_change", args=[plans["enterprise"].pk]))
    assert b'name="fee"' in unused.content


def test_plan_edit_through_the_service(finance, plans):
    enterprise = plans["enterprise"]
    url = reverse("admin:subscriptions_plan_change", args=[enterprise.pk])
    data = {"name": "Enterprise+", "tier": "enterprise", "description": "", "currency": "USD", "fee": "599",
            "interval": "month", "interval_count": "1", "trial_days": "0", "minimum_commitment": "",
            "charges-TOTAL_FORMS": "1", "charges-INITIAL_FORMS": "1", "charges-MIN_NUM_FORMS": "0",
            "charges-MAX_NUM_FORMS": "1000"}
    response = finance.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    enterprise.refresh_from_db()
    assert (enterprise.name, enterprise.fee) == ("Enterprise+", Decimal(599))


def test_cancel_actions(finance, subs):
    search, checkout = subs["search"], subs["checkout"]
    finance.post(reverse(CHANGELIST), {"action": "cancel_at_period_end_action", "_selected_action": [search.pk]})
    search.refresh_from_db()
    assert search.cancel_at_period_end and search.status == "active"
    finance.post(reverse(CHANGELIST), {"action": "cancel_now_action", "_selected_action": [checkout.pk]})
    checkout.refresh_from_db()
    assert checkout.status == "canceled" and checkout.ended_at is not None


def test_change_plan_previews_then_commits(finance, subs, plans):
    search = subs["search"]
    redirect = finance.post(reverse(CHANGELIST), {"action": "change_plan_action", "_selected_action": [search.pk]})
    url = reverse("admin:subscriptions_subscription_change_plan", args=[search.pk])
    assert redirect.status_code == 302 and redirect.url == url
    # the preview: the proration's credit and charge, nothing written
    preview = finance.get(url, {"plan": plans["enterprise"].pk, "when": "now", "proration": "second"})
    assert preview.status_code == 200
    assert b"proration_credit" in preview.content and b"proration_charge" in preview.content
    assert not SubscriptionProration.objects.exists()
    # the commit
    done = finance.post(url, {"plan": plans["enterprise"].pk, "when": "now", "proration": "second", "step": "commit"})
    assert done.status_code == 302
    search.refresh_from_db()
    assert search.plan_id == plans["enterprise"].pk
    assert SubscriptionProration.objects.filter(subscription=search).count() == 2


def test_extend_trial(finance, subs):
    checkout = subs["checkout"]
    before = checkout.trial_end
    url = reverse("admin:subscriptions_subscription_extend_trial")
    assert finance.get(url, {"ids": str(checkout.pk)}).status_code == 200
    finance.post(url, {"ids": str(checkout.pk), "days": "7"})
    checkout.refresh_from_db()
    assert checkout.trial_end == before + dt.timedelta(days=7)


@pytest.mark.parametrize("view", ["extend_trial", "apply_coupon"])
def test_an_action_page_given_ids_that_are_not_numbers_answers_400(finance, subs, view):
    # when a hand-edited link names subscriptions by anything but numbers
    response = finance.get(reverse(f"admin:subscriptions_subscription_{view}"), {"ids": "1,x"})
    # then the page says what the ids must be, and nothing is changed
    assert response.status_code == 400 and b"subscription numbers" in response.content
    assert not SubscriptionDiscount.objects.exists()


def test_auditor_reads_but_cannot_act(auditor, subs):
    assert auditor.get(reverse(CHANGELIST)).status_code == 200
    url = reverse("admin:subscriptions_subscription_change_plan", args=[subs["search"].pk])
    assert auditor.get(url).status_code == 403
    auditor.post(reverse(CHANGELIST), {"action": "cancel_now_action", "_selected_action": [subs["search"].pk]})
    assert Subscription.objects.get(pk=subs["search"].pk).status == "active"
    assert Plan.objects.count() == 3


def test_coupon_made_in_the_admin_through_the_service_with_its_terms_then_read_only(finance):
    response = finance.post(reverse("admin:subscriptions_coupon_add"), {
        "code": "spring-15", "name": "Spring", "percent_off": "15", "amount_off": "", "currency": "",
        "duration": "repeating", "duration_in_months": "3"})
    assert response.status_code == 302
    coupon = Coupon.objects.get(code="spring-15")
    assert (coupon.percent_off, coupon.duration, coupon.duration_in_months) == (Decimal(15), "repeating", 3)
    page = finance.get(reverse("admin:subscriptions_coupon_change", args=[coupon.pk]))
    assert b'name="percent_off"' not in page.content and b'name="name"' in page.content
    refused = finance.post(reverse("admin:subscriptions_coupon_add"), {
        "code": "bad", "name": "Bad", "percent_off": "15", "amount_off": "5", "currency": "USD", "duration": "once"},
        follow=True)
    assert b"either percent_off or amount_off" in refused.content
    assert not Coupon.objects.filter(code="bad").exists()


def test_apply_a_coupon_and_remove_it_from_the_subscription_list(finance, subs):
    coupon = coupon_create(code="half", name="Half", percent_off=Decimal(50), duration="forever")
    search = subs["search"]
    response = finance.post(reverse(CHANGELIST), {"action": "apply_coupon_action", "_selected_action": [search.pk]})
    assert response.status_code == 302 and "apply-coupon" in response["Location"]
    form = finance.get(response["Location"])
    assert b"Half" in form.content
    done = finance.post(reverse("admin:subscriptions_subscription_apply_coupon"),
                        {"ids": str(search.pk), "coupon": coupon.pk}, follow=True)
    assert b"discounted by half" in done.content
    discount = SubscriptionDiscount.objects.get(subscription=search)
    assert discount.coupon == Coupon.objects.get(code="half") and discount.end is None
    page = finance.get(reverse("admin:subscriptions_subscription_change", args=[search.pk]))
    assert b"Status history" in page.content and b"Discounts" in page.content
    finance.post(reverse(CHANGELIST), {"action": "remove_discount_action", "_selected_action": [search.pk]})
    discount.refresh_from_db()
    assert discount.end is not None
