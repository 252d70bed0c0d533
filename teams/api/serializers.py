"""Serializers of the teams API: teams, their members and their billing settings.

Money is a decimal string (12 dp) with its ``currency`` beside it.
"""

from __future__ import annotations

from rest_framework import serializers

from billing_site.api.fields import MoneyField, StrictSerializerMixin
from teams.models import BillingSettings, Team, TeamMembership


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name", "slug", "cost_center", "currency", "parent", "is_active", "created_at"]
        read_only_fields = fields


class TeamMemberSerializer(serializers.ModelSerializer):
    user = serializers.IntegerField(source="user_id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    # A CharField, not an EmailField: a user may have no address, and "" is no e-mail address.
    email = serializers.CharField(source="user.email", read_only=True, help_text="Empty when the user has none.")

    class Meta:
        model = TeamMembership
        fields = ["user", "username", "email", "role", "created_at"]
        read_only_fields = fields


class BillingSettingsSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    """A team's billing settings. ``credit_limit`` and an absolute threshold are in ``currency`` (the team's)."""

    credit_limit = MoneyField(required=False, min_value=0)
    warning_threshold_value = MoneyField(required=False, min_value=0)
    tax_rate = serializers.DecimalField(max_digits=7, decimal_places=4, required=False, min_value=0, max_value=100)
    allowed_providers = serializers.ListField(child=serializers.CharField(max_length=100), required=False,
                                              help_text="Provider names; empty allows all.")
    extra_currencies = serializers.ListField(
        child=serializers.RegexField(r"^[A-Z]{3}$", error_messages={"invalid": "A three-letter ISO 4217 code, e.g. EUR."}),
        required=False, help_text="ISO 4217 codes the team may also be billed in, besides its own currency.",
    )
    team = serializers.IntegerField(source="team_id", read_only=True)
    currency = serializers.CharField(source="team.currency", read_only=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True,
                                           help_text="Empty while the team still has the default settings.")

    class Meta:
        model = BillingSettings
        fields = ["team", "currency", "billing_model", "credit_limit", "warning_threshold_type",
                  "warning_threshold_value", "block_on_zero_balance", "notify_on_warning", "notify_emails",
                  "billing_address", "allowed_providers", "extra_currencies", "tax_rate", "payment_terms_days",
                  "automatic_collection", "updated_at"]
        read_only_fields = ["team", "currency", "updated_at"]
