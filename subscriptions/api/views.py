"""Views of the subscriptions API: the caller's own subscription, invoices and usage; finance's
stats, customers, subscriptions and plans; creating, cancelling and changing a subscription.

Thin: writes are ``subscriptions.services`` (``plan_*``, ``subscription_*``), reads
``subscriptions.selectors`` and ``subscriptions.selectors_mrr``; errors map through
``billing_site.api.errors.exception_handler`` (409 ``plan_immutable``, ``subscription_exists``,
``invalid_subscription_transition``; 400 naming the field).

Who may call what:

* ``billing/…`` (the caller's own): every person, for their teams (``?team=`` when they belong to
  several; another team's id is 404), and a team's API key for its team.
* ``admin/billing/…``: finance reads and writes; auditors read; anybody else gets 403.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Exists, OuterRef, Prefetch, Q, Sum
from django.urls import path, reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.auth import is_api_key
from billing_site.api.idempotency import run_idempotent
from billing_site.api.scoping import is_finance, sees_all_teams, team_for_read
from billing_site.money import METERED_QUANTUM, to_minor_units
from chargeback.selectors import usage_records_active
from invoices.models import Invoice
from subscriptions import selectors
from subscriptions.api import serializers as s
from subscriptions.models import Coupon, Plan, PlanCharge, PlanChargeTier, Subscription
from subscriptions.mrr import MRR_STATUSES
from subscriptions.selectors_mrr import LIVE_STATUSES, subscription_stats
from subscriptions.services.discounts import (
    coupon_archive,
    coupon_create,
    coupon_update,
    subscription_discount_apply,
    subscription_discount_remove,
)
from subscriptions.services.lifecycle import subscription_cancel, subscription_change_plan, subscription_create
from subscriptions.services.plans import plan_archive, plan_create, plan_update
from subscriptions.upcoming import subscription_upcoming_invoice

ZERO = Decimal(0)
IDEMPOTENCY_HEADER = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                      description="Optional: a retry with the same key replays the first response.")


def _exact(value: Decimal) -> str:
    return str(value.quantize(METERED_QUANTUM))


# --- the caller's own ------------------------------------------------------------------------------------


def _caller_team(request, team):
    """The team the caller asks about: the key's team, else ``?team=`` or the caller's only team (404 outside)."""
    if is_api_key(request):
        if team is not None and team.pk != request.user.team.pk:
            raise NotFound(f"No team {team.pk}.")
        return request.user.team
    return team_for_read(request, team)


def _caller_subscription(request, team) -> Subscription | None:
    """The caller's own live subscription in ``team`` if they have one, else the team's."""
    if not is_api_key(request):
        own = selectors.subscription_get_for(team=team, user=request.user)
        if own is not None:
            return own
    return selectors.subscription_get_for(team=team, user=None)


class CallerView(APIView):
    """A read of the caller's own billing; a team's API key may call it for its team."""

    key_actions = ("get",)

    def caller(self):
        query = s.TeamQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        team = _caller_team(self.request, query.validated_data.get("team"))
        return team, _caller_subscription(self.request, team)


class CallerSubscriptionView(CallerView):
    @extend_schema(parameters=[s.TeamQuerySerializer], responses=s.CallerSubscriptionSerializer)
    def get(self, request):
        """The caller's subscription: ``tier, status, current_period_start, current_period_end (exclusive),
        cancel_at_period_end, amount`` (the fee per period, minor units), ``interval`` and ``currency``.
        Without a subscription: the basic tier (``tier`` ``basic``, ``status`` ``none``, ``amount`` 0)."""
        team, sub = self.caller()
        if sub is None:
            body = {"id": None, "team": team.pk, "user": None, "plan": None, "tier": s.BASIC_TIER, "status": "none",
                    "current_period_start": None, "current_period_end": None, "trial_end": None,
                    "cancel_at_period_end": False, "amount": s.minor(ZERO, team.currency), "interval": None,
                    "interval_count": None, "currency": team.currency}
        else:
            plan = sub.plan
            body = {"id": sub.pk, "team": sub.team_id, "user": sub.user_id, "plan": plan.code, "tier": plan.tier,
                    "status": sub.status, "current_period_start": sub.current_period_start,
                    "current_period_end": sub.current_period_end, "trial_end": sub.trial_end,
                    "cancel_at_period_end": sub.cancel_at_period_end, "amount": s.minor(plan.fee, plan.currency),
                    "interval": plan.interval, "interval_count": plan.interval_count, "currency": plan.currency}
        return Response(s.CallerSubscriptionSerializer(body).data)


class CallerInvoicesView(CallerView):
    @extend_schema(parameters=[s.InvoiceListQuerySerializer], responses=s.CallerInvoiceListSerializer)
    def get(self, request):
        """The caller's issued invoices, newest first (``?limit=``, 1 to 100, default 10): the team's, and
        the caller's own per-user ones. Amounts in minor units of ``currency``; drafts are not listed."""
        query = s.InvoiceListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit = query.validated_data["limit"]
        team = _caller_team(request, query.validated_data.get("team"))
        who = Q(user__isnull=True) if is_api_key(request) else Q(user__isnull=True) | Q(user=request.user)
        invoices = list(Invoice.objects.filter(who, team=team, issued_at__isnull=False)
                        .order_by("-issued_at", "-pk")[: limit + 1])
        rows = []
        for invoice in invoices[:limit]:
            paid = invoice.status == Invoice.Status.PAID
            amount_paid = invoice.total - invoice.credited_total if paid else ZERO
            rows.append({
                "id": invoice.pk, "number": invoice.number,
                "amount_due": str(to_minor_units(invoice.amount_due, invoice.currency)),
                "amount_paid": str(to_minor_units(amount_paid, invoice.currency)),
                "currency": invoice.currency, "status": invoice.status, "created": invoice.issued_at,
                "due_date": invoice.due_date, "paid": paid,
                "invoice_pdf": request.build_absolute_uri(reverse("invoice-pdf", args=[invoice.pk])),
                "hosted_invoice_url": None,
            })
        return Response(s.CallerInvoiceListSerializer({"invoices": rows, "has_more": len(invoices) > limit}).data)


class CallerUsageView(CallerView):
    @extend_schema(parameters=[s.TeamQuerySerializer], responses=s.CallerUsageSerializer)
    def get(self, request):
        """Units used per meter today (since 00:00 UTC) and in the current billing period, and the
        included credits of the plan: ``credits`` (the plan's first meter, as the seed shows it:
        ``tier, included_credits, used, remaining, overage, overage_cost, price_per_1k``) and
        ``meters`` (every meter). Without a subscription: units per resource type in the calendar
        month (UTC), ``credits`` null, ``tier`` ``basic``."""
        team, sub = self.caller()
        now = timezone.now()
        today = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        if sub is None:
            month = today.replace(day=1)
            body = {"tier": s.BASIC_TIER, "period_start": month,
                    "period_end": (month + dt.timedelta(days=32)).replace(day=1), "credits": None, "meters": [],
                    "usage": {"today": _units_by_resource(team, today, now),
                              "month": _units_by_resource(team, month, now)}}
            return Response(s.CallerUsageSerializer(body).data)
        meters = selectors.subscription_usage(subscription=sub, at=now)
        since = max(today, sub.current_period_start)
        today_meters = selectors.subscription_usage(subscription=sub, period_start=since, period_end=max(now, since))
        rows = [{
            "meter": m.meter, "unit": m.unit, "included_credits": m.included, "used": m.used,
            "remaining": m.remaining, "overage": m.overage, "overage_cost": _exact(m.overage_cost),
            "price_per_1k": None if m.price_per_1k is None else _exact(m.price_per_1k), "charge_model": m.charge_model,
        } for m in meters]
        credits = None
        if rows:
            first = rows[0]
            credits = {"tier": sub.plan.tier, "currency": sub.plan.currency,
                       **{k: first[k] for k in ("included_credits", "used", "remaining", "overage", "overage_cost",
                                                "price_per_1k")}}
        body = {"tier": sub.plan.tier, "period_start": sub.current_period_start, "period_end": sub.current_period_end,
                "usage": {"today": {m.meter: m.used for m in today_meters}, "month": {m.meter: m.used for m in meters}},
                "credits": credits, "meters": rows}
        return Response(s.CallerUsageSerializer(body).data)


def _units_by_resource(team, start: dt.datetime, end: dt.datetime) -> dict[str, Decimal]:
    """Units of the team's active usage records in ``[start, end)``, per resource type (1 query)."""
    rows = (usage_records_active().filter(team=team, occurred_at__gte=start, occurred_at__lt=end).order_by()
            .values("resource_type").annotate(units=Sum("quantity")).order_by("resource_type"))
    return {row["resource_type"]: row["units"] for row in rows}


# --- finance -----------------------------------------------------------------------------------------------


class FinanceAccess(BasePermission):
    """Finance reads and writes; auditors read; anybody else (members, keys) gets 403."""

    message = "Only finance may do this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_key(request):
            return False
        if request.method in SAFE_METHODS:
            return sees_all_teams(request)
        return is_finance(request)


class FinanceView(APIView):
    permission_classes = [FinanceAccess]


class StatsView(FinanceView):
    @extend_schema(responses=s.StatsSerializer)
    def get(self, request):
        """The subscription base: ``total_customers`` (subscribers with a live subscription),
        ``active_subscriptions``, ``trial_subscriptions``, ``monthly_revenue`` (MRR: active and past-due
        subscriptions, a period's fee divided by its months, no trials, cancellations or usage) in the
        reporting ``currency``, ``tier_breakdown`` ``{tier: {count, revenue}}`` (adds up to it), and
        ``other_currencies``: the MRR of plans in any other currency, never added to the first."""
        return Response(s.stats_data(subscription_stats()))


def _subscriptions():
    return Subscription.objects.select_related("plan", "team", "user")


def _discounts(subs) -> dict:
    """The serializer context of subscriptions: the discount of each one's current period (1 query)."""
    return {"discounts": selectors.discounts_current(subs)}


def _subscription_data(sub: Subscription) -> dict:
    return s.SubscriptionSerializer(sub, context=_discounts([sub])).data


class CustomerListView(FinanceView):
    @extend_schema(parameters=[s.CustomerListQuerySerializer], responses=s.CustomerListSerializer)
    def get(self, request):
        """Subscribers with a live subscription (``total`` of them), by team name (``?limit=``, ``?offset=``,
        ``?tier=``). ``mrr`` is the subscription's monthly part after its discount, 0 for trials and unpaid ones."""
        query = s.CustomerListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        rows = _subscriptions().filter(status__in=LIVE_STATUSES)
        if data.get("tier"):
            rows = rows.filter(plan__tier=data["tier"])
        total = rows.count()
        page = rows.order_by("team__name", "team_id", "user_id", "pk")[data["offset"]: data["offset"] + data["limit"]]
        page = list(page)
        discounts = selectors.discounts_current(page)
        customers = []
        for sub in page:
            plan = sub.plan
            mrr = s.subscription_mrr(sub, discounts.get(sub.pk), counted=sub.status in MRR_STATUSES)
            customers.append({
                "team": sub.team_id, "team_name": sub.team.name, "user": sub.user_id,
                "username": sub.user.get_username() if sub.user_id else None, "subscription": sub.pk,
                "plan": plan.code, "tier": plan.tier, "status": sub.status, "mrr": s.minor(mrr, plan.currency),
                "currency": plan.currency, "since": sub.started_at,
            })
        return Response(s.CustomerListSerializer({"customers": customers, "total": total}).data)


class SubscriptionListView(FinanceView):
    money_actions = ("post",)

    @extend_schema(operation_id="admin_billing_subscriptions_list", parameters=[s.SubscriptionListQuerySerializer],
                   responses=s.SubscriptionListSerializer)
    def get(self, request):
        """Subscriptions, newest first, with their ``total``: ``?status=``, ``?tier=``, ``?plan=``, ``?team=``,
        ``?limit=`` (1 to 1,000, default 100), ``?offset=``."""
        query = s.SubscriptionListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        rows = _subscriptions()
        for name, lookup in (("status", "status"), ("tier", "plan__tier"), ("plan", "plan"), ("team", "team")):
            if data.get(name) is not None:
                rows = rows.filter(**{lookup: data[name]})
        total = rows.count()
        page = list(rows.order_by("-created_at", "-pk")[data["offset"]: data["offset"] + data["limit"]])
        return Response(s.SubscriptionListSerializer({"subscriptions": page, "total": total},
                                                     context=_discounts(page)).data)

    @extend_schema(request=s.SubscriptionCreateSerializer, responses={201: s.SubscriptionSerializer},
                   parameters=[IDEMPOTENCY_HEADER])
    def post(self, request):
        """Subscribe a team (or one member, ``user``) to a plan: a trial when the plan has trial days
        (``trial`` false skips it), else the first period is invoiced now. 409 ``subscription_exists``
        when the subscriber has a live subscription, 409 ``plan_archived`` for an archived plan."""
        serializer = s.SubscriptionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if v is not None}

        def body():
            sub = subscription_create(**data)
            return status.HTTP_201_CREATED, _subscription_data(_subscriptions().get(pk=sub.pk))

        return run_idempotent(request, operation="subscription_create", params=data, body=body)


class SubscriptionDetailView(FinanceView):
    def get_subscription(self, pk: int) -> Subscription:
        sub = _subscriptions().filter(pk=pk).first()
        if sub is None:
            raise NotFound(f"No subscription {pk}.")
        return sub


class SubscriptionView(SubscriptionDetailView):
    @extend_schema(responses=s.SubscriptionSerializer)
    def get(self, request, pk: int):
        """One subscription."""
        return Response(_subscription_data(self.get_subscription(pk)))


class SubscriptionCancelView(SubscriptionDetailView):
    money_actions = ("post",)

    @extend_schema(request=s.SubscriptionCancelSerializer, responses=s.SubscriptionSerializer,
                   parameters=[IDEMPOTENCY_HEADER])
    def post(self, request, pk: int):
        """Cancel at the period end (default), or now (``at_period_end`` false) with a prorated credit for
        the unused time. 409 ``invalid_subscription_transition`` for a canceled subscription."""
        sub = self.get_subscription(pk)
        serializer = s.SubscriptionCancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        def body():
            subscription_cancel(subscription=sub, at_period_end=data["at_period_end"], prorate_unused=data["prorate"])
            return status.HTTP_200_OK, _subscription_data(self.get_subscription(pk))

        return run_idempotent(request, operation="subscription_cancel", params={"subscription": pk, **data}, body=body)


class SubscriptionChangePlanView(SubscriptionDetailView):
    money_actions = ("post",)

    @extend_schema(request=s.SubscriptionChangePlanSerializer, responses=s.SubscriptionSerializer,
                   parameters=[IDEMPOTENCY_HEADER])
    def post(self, request, pk: int):
        """Move to another plan: an upgrade now with proration (a credit for the unused time of the old plan,
        a charge for the rest of the period on the new one, on the next invoice), a downgrade at the period
        end; ``when`` overrides. Preview it first with ``GET …/upcoming-invoice/?plan=``."""
        sub = self.get_subscription(pk)
        serializer = s.SubscriptionChangePlanSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if v is not None}

        def body():
            subscription_change_plan(subscription=sub, **data)
            return status.HTTP_200_OK, _subscription_data(self.get_subscription(pk))

        return run_idempotent(request, operation="subscription_change_plan", params={"subscription": pk, **data},
                              body=body)


class SubscriptionUpcomingView(SubscriptionDetailView):
    @extend_schema(parameters=[s.UpcomingQuerySerializer], responses=s.UpcomingInvoiceSerializer)
    def get(self, request, pk: int):
        """The next invoice, computed and not written: without ``plan``, the next renewal (pending prorations,
        overage so far, the next period's fee); with ``?plan=``, the invoice a change to it would make: the
        credit for the unused time and the charge for the remaining time (the proration), before anything
        is committed. 400 naming ``plan`` for the same plan or another currency."""
        sub = self.get_subscription(pk)
        query = s.UpcomingQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        upcoming = subscription_upcoming_invoice(subscription=sub, plan=data.get("plan"), when=data.get("when"),
                                                 proration=data.get("proration", "second"))
        currency = upcoming.currency
        return Response(s.UpcomingInvoiceSerializer({
            "subscription": sub.pk, "plan": upcoming.plan.code, "when": upcoming.when, "issued_at": upcoming.issued_at,
            "currency": currency, "total": str(upcoming.total),
            "lines": [{"description": line.description, "kind": line.kind, "period_start": line.period_start,
                       "period_end": line.period_end, "amount": str(line.amount)} for line in upcoming.lines],
        }).data)


class SubscriptionDiscountView(SubscriptionDetailView):
    money_actions = ("post", "delete")

    @extend_schema(request=s.DiscountApplySerializer, responses={201: s.DiscountSerializer},
                   parameters=[IDEMPOTENCY_HEADER])
    def post(self, request, pk: int):
        """Apply a coupon now: the fee of each period that starts while it runs is discounted (the next renewal's
        invoice carries a ``discount`` line), and MRR counts the discounted fee. The discount the subscription
        had ends now. 400 naming ``coupon`` for an archived coupon or an amount in another currency; 409
        ``invalid_subscription_transition`` for a canceled subscription."""
        sub = self.get_subscription(pk)
        serializer = s.DiscountApplySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        coupon = serializer.validated_data["coupon"]

        def body():
            discount = subscription_discount_apply(subscription=sub, coupon=coupon)
            return status.HTTP_201_CREATED, s.DiscountSerializer(discount).data

        return run_idempotent(request, operation="subscription_discount_apply",
                              params={"subscription": pk, "coupon": coupon.pk}, body=body)

    @extend_schema(responses=s.DiscountRemovedSerializer)
    def delete(self, request, pk: int):
        """End the subscription's discount now: periods that start from now on pay the full fee."""
        ended = subscription_discount_remove(subscription=self.get_subscription(pk))
        return Response(s.DiscountRemovedSerializer({"subscription": pk, "ended": ended}).data)


# --- coupons -----------------------------------------------------------------------------------------------


class CouponListView(FinanceView):
    @extend_schema(operation_id="admin_billing_coupons_list", responses=s.CouponSerializer(many=True))
    def get(self, request):
        """Every coupon, by code."""
        return Response(s.CouponSerializer(Coupon.objects.order_by("code"), many=True).data)

    @extend_schema(request=s.CouponCreateSerializer, responses={201: s.CouponSerializer})
    def post(self, request):
        """Make a coupon (Stripe's shape): ``percent_off`` or ``amount_off`` with ``currency``, and a ``duration``.
        400 naming the field for terms that do not fit, or a code in use."""
        if not is_finance(request):
            raise PermissionDenied("Only finance may do this.")
        serializer = s.CouponCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if v is not None}
        coupon = coupon_create(**data)
        return Response(s.CouponSerializer(coupon).data, status=status.HTTP_201_CREATED)


class CouponView(FinanceView):
    def get_coupon(self, pk: int) -> Coupon:
        coupon = Coupon.objects.filter(pk=pk).first()
        if coupon is None:
            raise NotFound(f"No coupon {pk}.")
        return coupon

    @extend_schema(responses=s.CouponSerializer)
    def get(self, request, pk: int):
        """One coupon."""
        return Response(s.CouponSerializer(self.get_coupon(pk)).data)

    @extend_schema(request=s.CouponUpdateSerializer, responses=s.CouponSerializer)
    def patch(self, request, pk: int):
        """Rename or archive a coupon; its terms never change (make another coupon)."""
        coupon = self.get_coupon(pk)
        serializer = s.CouponUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(s.CouponSerializer(coupon_update(coupon=coupon, **serializer.validated_data)).data)

    @extend_schema(responses=s.CouponSerializer)
    def delete(self, request, pk: int):
        """Archive the coupon (it is kept: discounts and invoices name it): applied to nobody new; the discounts
        it made keep running."""
        return Response(s.CouponSerializer(coupon_archive(coupon=self.get_coupon(pk))).data)


# --- plans -------------------------------------------------------------------------------------------------


def _plans():
    charges = PlanCharge.objects.order_by("position", "meter").prefetch_related(
        Prefetch("tiers", queryset=PlanChargeTier.objects.order_by("position")))
    return Plan.objects.prefetch_related(Prefetch("charges", queryset=charges)).annotate(
        in_use=Exists(Subscription.objects.filter(plan=OuterRef("pk"))))


def _charges_input(charges):
    return [{k: ([dict(t) for t in v] if k == "tiers" else v) for k, v in dict(c).items()} for c in charges]


class PlanListView(FinanceView):
    @extend_schema(operation_id="admin_billing_plans_list", responses=s.PlanSerializer(many=True))
    def get(self, request):
        """Every plan with its charges, by tier and code; ``in_use`` plans have frozen prices."""
        return Response(s.PlanSerializer(_plans().order_by("tier", "code"), many=True).data)

    @extend_schema(request=s.PlanCreateSerializer, responses={201: s.PlanSerializer})
    def post(self, request):
        """Create a plan and its charges (one per meter). 400 naming the field for a bad charge or tier."""
        if not is_finance(request):
            raise PermissionDenied("Only finance may do this.")
        serializer = s.PlanCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "charges" in data:
            data["charges"] = _charges_input(data["charges"])
        plan = plan_create(**data)
        return Response(s.PlanSerializer(_plans().get(pk=plan.pk)).data, status=status.HTTP_201_CREATED)


class PlanView(FinanceView):
    def get_plan(self, pk: int) -> Plan:
        plan = _plans().filter(pk=pk).first()
        if plan is None:
            raise NotFound(f"No plan {pk}.")
        return plan

    @extend_schema(responses=s.PlanSerializer)
    def get(self, request, pk: int):
        """One plan with its charges and tiers."""
        return Response(s.PlanSerializer(self.get_plan(pk)).data)

    @extend_schema(request=s.PlanUpdateSerializer, responses=s.PlanSerializer)
    def patch(self, request, pk: int):
        """Change a plan. Its prices (fee, currency, interval, minimum commitment, charges) are frozen once
        it has subscribers: 409 ``plan_immutable`` naming the field; make a new plan and move the
        subscriptions to it."""
        plan = self.get_plan(pk)
        serializer = s.PlanUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "charges" in data:
            data["charges"] = _charges_input(data["charges"])
        plan_update(plan=plan, **data)
        return Response(s.PlanSerializer(self.get_plan(pk)).data)

    @extend_schema(responses=s.PlanSerializer)
    def delete(self, request, pk: int):
        """Archive the plan (it is kept: invoices and subscriptions name it): nobody new subscribes to it;
        its subscriptions keep renewing."""
        plan = plan_archive(plan=self.get_plan(pk))
        return Response(s.PlanSerializer(self.get_plan(plan.pk)).data)


def urlpatterns() -> list:
    """The subscription routes of ``/api/v1/``."""
    return [
        path("billing/subscription/", CallerSubscriptionView.as_view(), name="billing-subscription"),
        path("billing/invoices/", CallerInvoicesView.as_view(), name="billing-invoices"),
        path("billing/usage/", CallerUsageView.as_view(), name="billing-usage"),
        path("admin/billing/stats/", StatsView.as_view(), name="admin-billing-stats"),
        path("admin/billing/customers/", CustomerListView.as_view(), name="admin-billing-customers"),
        path("admin/billing/subscriptions/", SubscriptionListView.as_view(), name="admin-billing-subscriptions"),
        path("admin/billing/subscriptions/<int:pk>/", SubscriptionView.as_view(), name="admin-billing-subscription"),
        path("admin/billing/subscriptions/<int:pk>/cancel/", SubscriptionCancelView.as_view(),
             name="admin-billing-subscription-cancel"),
        path("admin/billing/subscriptions/<int:pk>/change-plan/", SubscriptionChangePlanView.as_view(),
             name="admin-billing-subscription-change-plan"),
        path("admin/billing/subscriptions/<int:pk>/upcoming-invoice/", SubscriptionUpcomingView.as_view(),
             name="admin-billing-subscription-upcoming"),
        path("admin/billing/subscriptions/<int:pk>/discount/", SubscriptionDiscountView.as_view(),
             name="admin-billing-subscription-discount"),
        path("admin/billing/coupons/", CouponListView.as_view(), name="admin-billing-coupons"),
        path("admin/billing/coupons/<int:pk>/", CouponView.as_view(), name="admin-billing-coupon"),
        path("admin/billing/plans/", PlanListView.as_view(), name="admin-billing-plans"),
        path("admin/billing/plans/<int:pk>/", PlanView.as_view(), name="admin-billing-plan"),
    ]
