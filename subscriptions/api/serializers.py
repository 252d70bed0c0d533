"""Serializers of the subscriptions API: validation and shape only (the services do the work).

Money is a decimal string with its ``currency`` beside it: fees, MRR and invoice amounts in the
currency's minor units (``"49.00"``), unit prices and included units at metered precision (12
decimal places). Timestamps are ISO 8601 in UTC; period ends are exclusive.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_site.api.fields import (
    POSITIVE,
    AwareDateTimeField,
    DecimalStringField,
    MoneyField,
    MoneyStringField,
    StrictPrimaryKeyRelatedField,
    StrictSerializerMixin,
    TextField,
)
from billing_site.money import to_minor_units
from subscriptions.discounts import discount_amount
from subscriptions.models import Coupon, Plan, PlanCharge, PlanChargeTier, Subscription, SubscriptionDiscount
from subscriptions.mrr import monthly_amount
from teams.models import Team

User = get_user_model()
#: What a caller without a subscription is on: the basic tier, free, with no included units.
BASIC_TIER = "basic"


class WholeNumberField(serializers.IntegerField):
    """A whole number: a JSON integer, or digits in a query string (``10``); ``10.0``, ``1e1`` and ``ten`` are refused."""

    _DIGITS = re.compile(r"[0-9]{1,9}")

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", 10**9 - 1)  # 9 digits at most, so the schema states the bound
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not (isinstance(data, int) or (isinstance(data, str) and self._DIGITS.fullmatch(data))):
            self.fail("invalid")
        return super().to_internal_value(data)


def minor(amount, currency: str) -> str | None:
    """``amount`` in ``currency``'s minor units, as text (``"49.00"``); ``None`` stays ``None``."""
    return None if amount is None else str(to_minor_units(amount, currency))


# --- queries --------------------------------------------------------------------------------------


class TeamQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    """``?team=<id>``: which of the caller's teams (optional when the caller belongs to one)."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)


class InvoiceListQuerySerializer(TeamQuerySerializer):
    limit = WholeNumberField(required=False, default=10, min_value=1, max_value=100)


class ListQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    """``?limit=`` (1 to 1,000, default 100) and ``?offset=`` (from 0) of the finance lists."""

    limit = WholeNumberField(required=False, default=100, min_value=1, max_value=1000)
    offset = WholeNumberField(required=False, default=0, min_value=0)


class SubscriptionListQuerySerializer(ListQuerySerializer):
    status = serializers.ChoiceField(choices=Subscription.Status.choices, required=False)
    tier = TextField(max_length=50, required=False)
    plan = StrictPrimaryKeyRelatedField(queryset=Plan.objects.all(), required=False)
    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)


class CustomerListQuerySerializer(ListQuerySerializer):
    tier = TextField(max_length=50, required=False)


# --- the caller's own --------------------------------------------------------------------------------


class CallerSubscriptionSerializer(serializers.Serializer):
    """The caller's subscription (``GET billing/subscription``); without one, the basic tier:
    ``tier`` ``basic``, ``status`` ``none``, ``amount`` ``"0.00"`` in the team's currency, no period."""

    id = serializers.IntegerField(allow_null=True)
    team = serializers.IntegerField()
    user = serializers.IntegerField(allow_null=True, help_text="Set when the subscription is the caller's own.")
    plan = TextField(allow_null=True, help_text="The plan's code.")
    tier = TextField()
    status = TextField(help_text="trialing, active, past_due, unpaid, or none (no subscription).")
    current_period_start = serializers.DateTimeField(allow_null=True)
    current_period_end = serializers.DateTimeField(allow_null=True, help_text="Exclusive.")
    trial_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    amount = TextField(help_text="The fee per period, in minor units.")
    interval = TextField(allow_null=True)
    interval_count = serializers.IntegerField(allow_null=True)
    currency = TextField()


class CallerInvoiceSerializer(serializers.Serializer):
    """One of the caller's invoices, in Stripe's shape: amounts in minor units with ``currency``."""

    id = serializers.IntegerField()
    number = TextField(allow_null=True)
    amount_due = TextField()
    amount_paid = TextField()
    currency = TextField()
    status = TextField()
    created = serializers.DateTimeField(help_text="When it was issued.")
    due_date = serializers.DateField(allow_null=True)
    paid = serializers.BooleanField()
    invoice_pdf = serializers.URLField(help_text="Our PDF of it (GET, authenticated).")
    hosted_invoice_url = serializers.URLField(allow_null=True, help_text="Null until payments exist.")


class CallerInvoiceListSerializer(serializers.Serializer):
    invoices = CallerInvoiceSerializer(many=True)
    has_more = serializers.BooleanField()


class MeterUsageSerializer(serializers.Serializer):
    meter = TextField()
    unit = TextField(allow_blank=True)
    included_credits = MoneyField()
    used = MoneyField()
    remaining = MoneyField()
    overage = MoneyField()
    overage_cost = TextField(help_text="Exact, in the plan's currency (12 decimal places).")
    price_per_1k = TextField(allow_null=True, help_text="Standard charges: the price of 1,000 units.")
    charge_model = TextField()


class CreditsSerializer(serializers.Serializer):
    """The first meter of the plan, as the seed shows it; ``meters`` has every meter."""

    tier = TextField()
    included_credits = MoneyField()
    used = MoneyField()
    remaining = MoneyField()
    overage = MoneyField()
    overage_cost = TextField()
    price_per_1k = TextField(allow_null=True)
    currency = TextField()


class UsageWindowSerializer(serializers.Serializer):
    today = serializers.DictField(child=MoneyField(), help_text="Units per meter since 00:00 UTC.")
    month = serializers.DictField(child=MoneyField(), help_text="Units per meter in the current billing period.")


class CallerUsageSerializer(serializers.Serializer):
    tier = TextField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField(help_text="Exclusive.")
    usage = UsageWindowSerializer()
    credits = CreditsSerializer(allow_null=True)
    meters = MeterUsageSerializer(many=True)


# --- finance: stats, customers, subscriptions ----------------------------------------------------------


class TierFiguresSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Subscriptions counted in MRR (active and past due).")
    revenue = TextField(help_text="MRR of the tier, minor units.")


class CurrencyMRRSerializer(serializers.Serializer):
    currency = TextField()
    monthly_revenue = TextField()
    tier_breakdown = serializers.DictField(child=TierFiguresSerializer())


class StatsSerializer(serializers.Serializer):
    """``monthly_revenue`` is MRR in ``currency`` (the reporting currency); plans in any other
    currency are in ``other_currencies``, never added to it."""

    total_customers = serializers.IntegerField()
    active_subscriptions = serializers.IntegerField()
    trial_subscriptions = serializers.IntegerField()
    past_due_subscriptions = serializers.IntegerField()
    canceled_subscriptions = serializers.IntegerField()
    currency = TextField()
    monthly_revenue = TextField()
    tier_breakdown = serializers.DictField(child=TierFiguresSerializer())
    other_currencies = CurrencyMRRSerializer(many=True)


def stats_data(stats) -> dict:
    """The JSON of ``GET admin/billing/stats`` from a ``selectors_mrr.SubscriptionStats``."""

    def figures(f):
        return {"currency": f.currency, "monthly_revenue": str(f.monthly_revenue),
                "tier_breakdown": {t: {"count": v.count, "revenue": str(v.revenue)} for t, v in f.tier_breakdown.items()}}

    reporting = figures(stats.reporting)
    return {
        "total_customers": stats.total_customers, "active_subscriptions": stats.active_subscriptions,
        "trial_subscriptions": stats.trial_subscriptions, "past_due_subscriptions": stats.past_due_subscriptions,
        "canceled_subscriptions": stats.canceled_subscriptions, **reporting,
        "other_currencies": [figures(f) for f in stats.other_currencies],
    }


class CouponSerializer(serializers.ModelSerializer):
    """A coupon: ``percent_off`` (0 < p ≤ 100) or ``amount_off`` in ``currency`` (12 decimal places), taken off
    the fee of each period its discount covers; ``duration`` ``once``, ``repeating`` (``duration_in_months``)
    or ``forever``. Its terms never change; an ``archived`` coupon is applied to nobody new."""

    percent_off = serializers.DecimalField(max_digits=5, decimal_places=2, read_only=True, allow_null=True)
    amount_off = MoneyField(read_only=True, allow_null=True)
    currency = TextField(read_only=True, allow_blank=True, help_text="The currency of amount_off; empty for a percent.")

    class Meta:
        model = Coupon
        fields = ["id", "code", "name", "percent_off", "amount_off", "currency", "duration", "duration_in_months",
                  "status", "created_at", "updated_at"]
        read_only_fields = fields


class CouponCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    """A new coupon: ``percent_off`` (a decimal string, at most 2 decimal places, 0 < p ≤ 100) or ``amount_off``
    with its ``currency`` (a decimal string within the currency's minor unit); ``duration`` (default ``once``);
    ``duration_in_months`` for ``repeating`` only. Terms that do not fit together are 422 ``coupon_terms``."""

    code = serializers.SlugField(max_length=100)
    name = TextField(max_length=200)
    # More than zero, as the schema's pattern says (the smallest step of each field's places).
    percent_off = DecimalStringField(max_digits=5, decimal_places=2, required=False, allow_null=True,
                                     min_value=Decimal("0.01"), max_value=100)
    amount_off = MoneyStringField(required=False, allow_null=True, min_value=POSITIVE)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_blank=True,
                                      error_messages={"invalid": "An ISO 4217 code, e.g. USD."})
    duration = serializers.ChoiceField(choices=Coupon.Duration.choices, required=False)
    duration_in_months = WholeNumberField(required=False, allow_null=True, min_value=1, max_value=1200)


class CouponUpdateSerializer(StrictSerializerMixin, serializers.Serializer):
    """Fields to change (PATCH): the ``name`` and ``status``. The terms never change (400 naming the field)."""

    name = TextField(max_length=200, required=False)
    status = serializers.ChoiceField(choices=Coupon.Status.choices, required=False)


class DiscountSerializer(serializers.ModelSerializer):
    """A coupon applied to a subscription: it discounts the fee of each period that starts in ``[start, end)``
    (``end`` exclusive; null: forever)."""

    coupon = CouponSerializer(read_only=True)

    class Meta:
        model = SubscriptionDiscount
        fields = ["id", "subscription", "coupon", "start", "end", "created_at"]
        read_only_fields = fields


class DiscountApplySerializer(StrictSerializerMixin, serializers.Serializer):
    """Apply ``coupon`` (its id) now; the discount the subscription had ends now."""

    coupon = StrictPrimaryKeyRelatedField(queryset=Coupon.objects.all())


class DiscountRemovedSerializer(serializers.Serializer):
    subscription = serializers.IntegerField()
    ended = serializers.IntegerField(help_text="Discounts ended (0: it had none).")


class SubscriptionSerializer(serializers.ModelSerializer):
    """A subscription: ``amount`` is the plan's fee per period and ``mrr`` its monthly part after the discount of
    the current period (0 unless active or past due), both in minor units of ``currency``; ``discount`` is the
    discount of the current period, if any."""

    plan_code = TextField(source="plan.code", read_only=True)
    tier = TextField(source="plan.tier", read_only=True)
    team_name = TextField(source="team.name", read_only=True)
    amount = serializers.SerializerMethodField()
    mrr = serializers.SerializerMethodField()
    currency = TextField(source="plan.currency", read_only=True)
    interval = TextField(source="plan.interval", read_only=True)
    interval_count = serializers.IntegerField(source="plan.interval_count", read_only=True)
    discount = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = ["id", "team", "team_name", "user", "plan", "plan_code", "tier", "pending_plan", "status", "amount",
                  "mrr", "discount", "currency", "interval", "interval_count", "started_at", "current_period_start",
                  "current_period_end", "trial_end", "cancel_at_period_end", "canceled_at", "ended_at", "time_zone"]
        read_only_fields = fields

    def get_amount(self, obj) -> str:
        return minor(obj.plan.fee, obj.plan.currency)

    def _discount(self, obj) -> SubscriptionDiscount | None:
        """The current period's discount, from the view's ``discounts`` (``{subscription id: discount}``)."""
        return self.context.get("discounts", {}).get(obj.pk)

    @extend_schema_field(DiscountSerializer(allow_null=True))
    def get_discount(self, obj):
        discount = self._discount(obj)
        return None if discount is None else DiscountSerializer(discount).data

    def get_mrr(self, obj) -> str:
        counted = obj.status in ("active", "past_due")
        return minor(subscription_mrr(obj, self._discount(obj), counted=counted), obj.plan.currency)


def subscription_mrr(sub: Subscription, discount: SubscriptionDiscount | None, *, counted: bool = True):
    """The subscription's MRR after ``discount`` (metered), 0 when not ``counted``."""
    plan = sub.plan
    fee = plan.fee
    if discount is not None:
        coupon = discount.coupon
        fee -= discount_amount(fee=fee, percent_off=coupon.percent_off,
                               amount_off=coupon.amount_off if coupon.currency == plan.currency else None)
    return monthly_amount(fee=fee, interval=plan.interval, interval_count=plan.interval_count, count=int(counted))


class SubscriptionListSerializer(serializers.Serializer):
    subscriptions = SubscriptionSerializer(many=True)
    total = serializers.IntegerField()


class CustomerSerializer(serializers.Serializer):
    """A subscriber (a team, or one member of a team) with its live subscription."""

    team = serializers.IntegerField()
    team_name = TextField()
    user = serializers.IntegerField(allow_null=True)
    username = TextField(allow_null=True)
    subscription = serializers.IntegerField()
    plan = TextField(help_text="The plan's code.")
    tier = TextField()
    status = TextField()
    mrr = TextField(help_text="Minor units of currency; 0 for a trial or an unpaid subscription.")
    currency = TextField()
    since = serializers.DateTimeField()


class CustomerListSerializer(serializers.Serializer):
    customers = CustomerSerializer(many=True)
    total = serializers.IntegerField()


# --- plans ------------------------------------------------------------------------------------------


class TierInputSerializer(StrictSerializerMixin, serializers.Serializer):
    up_to = MoneyStringField(required=False, allow_null=True, min_value=POSITIVE, help_text="More than 0; null for the last tier.")
    unit_price = MoneyStringField(min_value=0)
    flat_fee = MoneyStringField(required=False, min_value=0)


class ChargeInputSerializer(StrictSerializerMixin, serializers.Serializer):
    meter = serializers.SlugField(max_length=100)
    resource_type = TextField(max_length=50)
    feature_key = TextField(max_length=100, required=False, allow_blank=True)
    provider = TextField(max_length=100, required=False, allow_blank=True)
    unit = TextField(max_length=50, required=False, allow_blank=True)
    included_units = MoneyStringField(required=False, min_value=0)
    charge_model = serializers.ChoiceField(choices=PlanCharge.ChargeModel.choices, required=False)
    price = MoneyStringField(required=False, min_value=0)
    price_per_units = MoneyStringField(required=False, min_value=POSITIVE, help_text="More than 0 (default 1).")
    package_size = MoneyStringField(required=False, allow_null=True, min_value=1)
    tiers = TierInputSerializer(many=True, required=False)


class TierSerializer(serializers.ModelSerializer):
    up_to = MoneyField(read_only=True, allow_null=True)
    unit_price = MoneyField(read_only=True)
    flat_fee = MoneyField(read_only=True)

    class Meta:
        model = PlanChargeTier
        fields = ["up_to", "unit_price", "flat_fee"]


class ChargeSerializer(serializers.ModelSerializer):
    included_units = MoneyField(read_only=True)
    price = MoneyField(read_only=True)
    price_per_units = MoneyField(read_only=True)
    package_size = MoneyField(read_only=True, allow_null=True)
    tiers = TierSerializer(many=True, read_only=True)

    class Meta:
        model = PlanCharge
        fields = ["meter", "resource_type", "feature_key", "provider", "unit", "included_units", "charge_model",
                  "price", "price_per_units", "package_size", "tiers"]


class PlanSerializer(serializers.ModelSerializer):
    """A plan as read: ``fee`` per ``interval_count`` × ``interval`` in ``currency`` (12 decimal
    places); ``in_use``: it has (or had) subscribers, so its prices are frozen (409 ``plan_immutable``)."""

    fee = MoneyField(read_only=True)
    minimum_commitment = MoneyField(read_only=True, allow_null=True)
    charges = ChargeSerializer(many=True, read_only=True)
    in_use = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = ["id", "code", "name", "tier", "description", "currency", "fee", "interval", "interval_count",
                  "trial_days", "minimum_commitment", "status", "version", "replaces", "charges", "in_use",
                  "created_at", "updated_at"]
        read_only_fields = fields

    def get_in_use(self, obj) -> bool:
        used = getattr(obj, "in_use", None)
        return bool(used) if used is not None else obj.subscriptions.exists()


class PlanCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    """A new plan and its charges (one per meter). ``fee`` and prices are decimal strings in ``currency``."""

    code = serializers.SlugField(max_length=100)
    name = TextField(max_length=200)
    tier = TextField(max_length=50)
    description = TextField(required=False, allow_blank=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", error_messages={"invalid": "An ISO 4217 code, e.g. USD."})
    fee = MoneyStringField(min_value=0)
    interval = serializers.ChoiceField(choices=Plan.Interval.choices, required=False)
    interval_count = WholeNumberField(required=False, min_value=1, max_value=120)
    trial_days = WholeNumberField(required=False, min_value=0, max_value=3650)
    minimum_commitment = MoneyStringField(required=False, allow_null=True, min_value=0)
    charges = ChargeInputSerializer(many=True, required=False)


class PlanUpdateSerializer(StrictSerializerMixin, serializers.Serializer):
    """Fields to change (PATCH). Names, tier, description and trial days change at any time; the
    prices (``fee``, ``currency``, ``interval``, ``interval_count``, ``minimum_commitment``,
    ``charges``) only while nobody subscribes to the plan: 409 ``plan_immutable`` afterwards."""

    name = TextField(max_length=200, required=False)
    tier = TextField(max_length=50, required=False)
    description = TextField(required=False, allow_blank=True)
    trial_days = WholeNumberField(required=False, min_value=0, max_value=3650)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    fee = MoneyStringField(required=False, min_value=0)
    interval = serializers.ChoiceField(choices=Plan.Interval.choices, required=False)
    interval_count = WholeNumberField(required=False, min_value=1, max_value=120)
    minimum_commitment = MoneyStringField(required=False, allow_null=True, min_value=0)
    charges = ChargeInputSerializer(many=True, required=False)


# --- subscription writes ---------------------------------------------------------------------------------


class SubscriptionCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    """Subscribe ``team`` (or one member of it, ``user``) to ``plan``. ``trial``: start with the plan's
    trial (default: when the plan has trial days); ``trial_days`` overrides its length."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all())
    user = StrictPrimaryKeyRelatedField(queryset=User.objects.all(), required=False, allow_null=True)
    plan = StrictPrimaryKeyRelatedField(queryset=Plan.objects.all())
    trial = serializers.BooleanField(required=False, allow_null=True)
    trial_days = WholeNumberField(required=False, allow_null=True, min_value=0, max_value=3650)
    start = AwareDateTimeField(required=False, allow_null=True)
    time_zone = TextField(max_length=64, required=False)
    coupon = StrictPrimaryKeyRelatedField(queryset=Coupon.objects.all(), required=False, allow_null=True,
                                          help_text="A coupon applied from the start (its id).")


class SubscriptionCancelSerializer(StrictSerializerMixin, serializers.Serializer):
    """``at_period_end`` (default true): stop at the period end; false: now, with a prorated credit
    for the unused time unless ``prorate`` is false."""

    at_period_end = serializers.BooleanField(required=False, default=True)
    prorate = serializers.BooleanField(required=False, default=True)


class SubscriptionChangePlanSerializer(StrictSerializerMixin, serializers.Serializer):
    """Move to ``plan``. ``when``: ``now`` (prorated) or ``period_end``; default: an upgrade now, a
    downgrade at the period end. ``proration``: ``second`` (default) or ``day``."""

    plan = StrictPrimaryKeyRelatedField(queryset=Plan.objects.all())
    when = serializers.ChoiceField(choices=["now", "period_end"], required=False, allow_null=True)
    proration = serializers.ChoiceField(choices=["second", "day"], required=False)


class UpcomingQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    """``?plan=<id>``: preview a change to this plan (``when``, ``proration`` as for the change); without it, the next renewal."""

    plan = StrictPrimaryKeyRelatedField(queryset=Plan.objects.all(), required=False)
    when = serializers.ChoiceField(choices=["now", "period_end"], required=False)
    proration = serializers.ChoiceField(choices=["second", "day"], required=False)


class UpcomingLineSerializer(serializers.Serializer):
    description = TextField()
    kind = TextField(help_text="fee, discount, usage, proration_credit, proration_charge, minimum_commitment.")
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    amount = TextField(help_text="Minor units of currency; negative for a credit.")


class UpcomingInvoiceSerializer(serializers.Serializer):
    """What the next invoice would carry, computed and not written."""

    subscription = serializers.IntegerField()
    plan = TextField(help_text="The plan the invoice's fee is for.")
    when = TextField(help_text="renewal (no change), now or period_end (a change).")
    issued_at = serializers.DateTimeField(help_text="When it would be issued.")
    currency = TextField()
    lines = UpcomingLineSerializer(many=True)
    total = TextField(help_text="Minor units of currency.")
