"""Serializers of the wallets API: wallets, the ledger, top-ups, quotes, charges, statistics and
billing settings. Money is a decimal string (12 dp) with its ``currency`` beside it."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from billing_site.api.fields import (
    POSITIVE,
    AwareDateTimeField,
    MoneyField,
    StrictPrimaryKeyRelatedField,
    StrictSerializerMixin,
)
from teams.models import BillingSettings, Team
from teams.selectors import billing_settings_get
from wallets.models import LedgerEntry, UsageEvent, UsageEventItem, Wallet
from wallets.services.usage_events import MAX_ITEMS

User = get_user_model()


class WalletSerializer(serializers.ModelSerializer):
    """A wallet's figures: ``available`` = balance − reserved (+ credit limit when postpaid)."""

    balance = MoneyField(read_only=True)
    reserved = MoneyField(read_only=True)
    granted_balance = MoneyField(read_only=True)
    available = serializers.SerializerMethodField()
    warning_threshold = serializers.SerializerMethodField()
    low_balance_warned = serializers.BooleanField(read_only=True,
                                                  help_text="True once the balance fell below the warning threshold.")
    last_top_up_amount = MoneyField(read_only=True, allow_null=True)

    class Meta:
        model = Wallet
        fields = ["id", "team", "user", "currency", "balance", "reserved", "granted_balance", "available", "status",
                  "warning_threshold", "low_balance_warned", "last_top_up_amount", "created_at", "updated_at"]
        read_only_fields = fields

    def _billing(self, wallet: Wallet) -> BillingSettings:
        return billing_settings_get(team=wallet.team)

    def get_available(self, wallet: Wallet) -> str:
        return _money(wallet.available(self._billing(wallet)))

    def get_warning_threshold(self, wallet: Wallet) -> str | None:
        threshold = self._billing(wallet).warning_threshold(wallet.last_top_up_amount)
        return None if threshold is None else _money(threshold)


def _money(value) -> str:
    return MoneyField().to_representation(value)


class WalletOpenSerializer(StrictSerializerMixin, serializers.Serializer):
    """Open a wallet (finance) before its first top-up or charge: a team, optionally a member (for
    ``prepaid_user``) and a currency the team is billed in (default the team's)."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all())
    user = StrictPrimaryKeyRelatedField(queryset=get_user_model().objects.all(), required=False, allow_null=True)
    currency = serializers.RegexField(r"^[A-Za-z]{3}$", required=False, help_text="ISO 4217; default the team's.")


class LedgerEntrySerializer(serializers.ModelSerializer):
    """One ledger entry: ``amount`` signed (credit > 0, debit < 0), balances before and after, in ``currency``."""

    amount = MoneyField(read_only=True)
    reserved_delta = MoneyField(read_only=True)
    balance_before = MoneyField(read_only=True)
    balance_after = MoneyField(read_only=True)
    reserved_after = MoneyField(read_only=True)

    class Meta:
        model = LedgerEntry
        fields = ["id", "wallet", "entry_type", "amount", "reserved_delta", "balance_before", "balance_after",
                  "reserved_after", "currency", "idempotency_key", "reference_type", "reference_id", "feature_key",
                  "description", "created_by", "created_at", "metadata"]
        read_only_fields = fields


class TopUpSerializer(StrictSerializerMixin, serializers.Serializer):
    # More than zero, as the schema's pattern says (POSITIVE: the smallest step of 12 places).
    amount = serializers.DecimalField(max_digits=30, decimal_places=12, min_value=POSITIVE,
                                      help_text="> 0, in the wallet's currency.")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    reference_id = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                         help_text="The payment's reference (bank transfer, PO…).")
    idempotency_key = serializers.CharField(max_length=255, required=False)


class ItemSerializer(StrictSerializerMixin, serializers.Serializer):
    category = serializers.CharField(max_length=50)
    provider = serializers.CharField(max_length=100)
    model = serializers.CharField(max_length=100)
    unit = serializers.CharField(max_length=50)
    #: Below 10^15 (``wallets.services.amounts.MAX_AMOUNT``): 15 digits before the point, 12 after it.
    quantity = serializers.DecimalField(max_digits=27, decimal_places=12, min_value=0)


class QuoteRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)
    items = ItemSerializer(many=True, allow_empty=False, max_length=MAX_ITEMS)
    at = AwareDateTimeField(required=False, help_text="When the prices must be valid; default now.")


class QuoteItemSerializer(serializers.Serializer):
    category = serializers.CharField()
    provider = serializers.CharField()
    model = serializers.CharField()
    unit = serializers.CharField()
    quantity = MoneyField()
    unit_price = MoneyField()
    cost = MoneyField()
    currency = serializers.CharField()
    price_id = serializers.IntegerField(allow_null=True)


class QuoteSerializer(serializers.Serializer):
    team = serializers.IntegerField()
    items = QuoteItemSerializer(many=True)
    total = MoneyField()
    currency = serializers.CharField()


class ChargeRequestSerializer(StrictSerializerMixin, serializers.Serializer):
    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)
    user = StrictPrimaryKeyRelatedField(queryset=User.objects.all(), required=False, allow_null=True,
                                              help_text="Who used it; for prepaid_user teams the wallet charged. "
                                                        "A member calling is the user by default.")
    feature_key = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    external_reference_id = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    items = ItemSerializer(many=True, allow_empty=False, max_length=MAX_ITEMS)
    metadata = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=255, required=False)


class UsageEventItemSerializer(serializers.ModelSerializer):
    quantity = MoneyField(read_only=True)
    unit_price = MoneyField(read_only=True)
    cost = MoneyField(read_only=True)

    class Meta:
        model = UsageEventItem
        fields = ["position", "category", "provider", "model", "unit", "quantity", "unit_price", "cost", "currency",
                  "usage_record"]
        read_only_fields = fields


class UsageEventSerializer(serializers.ModelSerializer):
    """A charged usage event: its ``total`` (12 dp) debited from ``wallet`` by ``ledger_entry``."""

    total = MoneyField(read_only=True)
    items = UsageEventItemSerializer(many=True, read_only=True)

    class Meta:
        model = UsageEvent
        fields = ["id", "team", "user", "wallet", "feature_key", "external_reference_id", "idempotency_key", "status",
                  "total", "currency", "ledger_entry", "items", "metadata", "created_at"]
        read_only_fields = fields


class StatisticsQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    """``statistics/year/``: ``year`` alone, or all time without it."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)
    user = StrictPrimaryKeyRelatedField(queryset=User.objects.all(), required=False)
    year = serializers.IntegerField(required=False, min_value=2000, max_value=2100)
    month = serializers.IntegerField(required=False, min_value=1, max_value=12)


class MonthStatisticsQuerySerializer(StatisticsQuerySerializer):
    """``statistics/month/``: the months of ``year``, which is required."""

    year = serializers.IntegerField(min_value=2000, max_value=2100)


class DayStatisticsQuerySerializer(StatisticsQuerySerializer):
    """``statistics/day/``: the days of ``year``-``month``, both required."""

    year = serializers.IntegerField(min_value=2000, max_value=2100)
    month = serializers.IntegerField(min_value=1, max_value=12)


class _StatProvider(serializers.Serializer):
    provider = serializers.CharField()
    cost = MoneyField()


class _StatFeature(serializers.Serializer):
    feature_key = serializers.CharField()
    cost = MoneyField()
    count = serializers.IntegerField()


class _StatPoint(serializers.Serializer):
    period = serializers.DateField()
    cost = MoneyField()
    count = serializers.IntegerField()


class StatisticsSerializer(serializers.Serializer):
    """Charged usage events of a team in ``[start, end)`` (UTC), with a point per day / month / year."""

    team = serializers.IntegerField()
    currency = serializers.CharField()
    granularity = serializers.CharField()
    start = serializers.DateTimeField(allow_null=True)
    end = serializers.DateTimeField(allow_null=True)
    total_cost = MoneyField()
    transaction_count = serializers.IntegerField()
    by_provider = _StatProvider(many=True)
    by_feature = _StatFeature(many=True)
    series = _StatPoint(many=True)
