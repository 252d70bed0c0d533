"""Serializers of the payments API: validation and shape only (the services do the work).

Money is a decimal string in the currency's major unit with its ``currency`` beside it (``"12.34"``,
``"USD"``); Stripe's own objects (recent charges) keep Stripe's integer minor units, as Stripe shows
them, with ``currency`` in Stripe's lower case. Times from Stripe are Unix seconds (``created``).
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers

from billing_site.api.fields import MoneyStringField, StrictPrimaryKeyRelatedField, StrictSerializerMixin, TextField
from billing_site.money import to_minor_units
from invoices.models import CreditNote
from subscriptions.api.serializers import WholeNumberField
from teams.models import Team
from wallets.models import Wallet

from ..models import Payment

STRIPE_ID_PATTERN = r"^[A-Za-z0-9_]{1,255}$"


class StripeIdField(TextField):
    """A Stripe object id (``pm_…``, ``seti_…``): a JSON string of letters, digits and ``_``, at most 255."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 255)
        super().__init__(**kwargs)
        self.validators.append(RegexValidator(STRIPE_ID_PATTERN, "Give a Stripe id (letters, digits and _)."))


class TeamQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    """``?team=<id>``: which of the caller's teams (optional when the caller belongs to one)."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)


class TeamBodySerializer(TeamQuerySerializer):
    """A body naming the team (optional when the caller belongs to one)."""


class PaymentMethodSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Stripe's payment method id (pm_…).")
    type = serializers.CharField(help_text="card")
    brand = serializers.CharField(help_text="visa, mastercard, amex…")
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField(min_value=1, max_value=12)
    exp_year = serializers.IntegerField()
    created = serializers.IntegerField(help_text="When it was added (Unix seconds).")
    is_default = serializers.BooleanField(help_text="The card automatic collection and top-ups charge.")


class PaymentMethodListSerializer(serializers.Serializer):
    payment_methods = PaymentMethodSerializer(many=True)
    default_payment_method = serializers.CharField(allow_null=True)


class SetupIntentSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The SetupIntent (seti_…).")
    client_secret = serializers.CharField(help_text="For Stripe.js (confirmCardSetup) in the front end.")
    status = serializers.CharField()


class SetupIntentCompleteSerializer(TeamBodySerializer):
    setup_intent = StripeIdField(help_text="The SetupIntent the front end confirmed.")


class TopUpRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    ignored_fields = ("idempotency_key",)

    wallet = StrictPrimaryKeyRelatedField(queryset=Wallet.objects.all())
    amount = MoneyStringField(help_text="In the wallet's currency, whole minor units (\"25.00\").")
    payment_method = StripeIdField(required=False, help_text="One of the team's cards (default: the default card).")
    idempotency_key = TextField(required=False, min_length=1, max_length=255,
                                            help_text="Or the Idempotency-Key header (one of the two is required).")


class PaymentSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(help_text="invoice or top_up.")
    amount = serializers.CharField(help_text="Decimal string in the currency's minor units (\"12.50\").")
    amount_refunded = serializers.CharField(help_text="Decimal string in the currency's minor units.")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["amount"] = str(to_minor_units(instance.amount, instance.currency))
        data["amount_refunded"] = str(to_minor_units(instance.amount_refunded, instance.currency))
        return data

    class Meta:
        model = Payment
        fields = ["id", "team", "kind", "status", "amount", "amount_refunded", "currency", "invoice", "wallet",
                  "ledger_entry", "attempt", "stripe_payment_intent_id", "stripe_charge_id", "failure_code",
                  "failure_message", "created_at", "succeeded_at"]
        read_only_fields = fields


class RecentChargesQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    limit = WholeNumberField(required=False, default=20, min_value=1, max_value=100)


class StripeChargeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Stripe's charge id (ch_…).")
    amount = serializers.IntegerField(help_text="Stripe's integer of minor units.")
    currency = serializers.CharField(help_text="Stripe's lower-case ISO code.")
    status = serializers.CharField(help_text="succeeded, pending or failed.")
    customer = serializers.CharField(allow_null=True, help_text="The Stripe customer (cus_…).")
    description = serializers.CharField(allow_null=True, allow_blank=True)
    created = serializers.IntegerField(help_text="Unix seconds.")
    paid = serializers.BooleanField()
    refunded = serializers.BooleanField()


class RecentChargesSerializer(serializers.Serializer):
    charges = StripeChargeSerializer(many=True)
    total = serializers.IntegerField(help_text="How many charges are listed.")


class RefundRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    reason = serializers.ChoiceField(choices=CreditNote.Reason.choices)
    amount = MoneyStringField(required=False, help_text="Tax-inclusive; default everything not yet credited.")
    description = TextField(required=False, allow_blank=True, max_length=2000)


class RefundSerializer(serializers.Serializer):
    credit_note = serializers.IntegerField()
    number = serializers.CharField()
    total = serializers.CharField(help_text="Decimal string in the currency's minor units.")
    currency = serializers.CharField()
    refund_reference = serializers.CharField(help_text="Stripe's refund id (re_…).")
