"""Columns of the subscriptions admin's CSV/XLSX exports (``billing_site.exports.ExportResource``).

Fees are exact (as stored) with their currency beside them; times are UTC.
"""

from __future__ import annotations

from import_export.fields import Field

from billing_site.exports import ExportResource

from .models import Plan, Subscription


class PlanResource(ExportResource):
    class Meta:
        model = Plan
        fields = ("id", "code", "name", "tier", "status", "version", "fee", "currency", "interval", "interval_count",
                  "trial_days", "minimum_commitment", "created_at", "updated_at")
        export_order = fields


class SubscriptionResource(ExportResource):
    team = Field(attribute="team__slug", column_name="team")
    team_name = Field(attribute="team__name", column_name="team_name")
    user = Field(attribute="user__username", column_name="user")
    plan = Field(attribute="plan__code", column_name="plan")
    tier = Field(attribute="plan__tier", column_name="tier")
    fee = Field(attribute="plan__fee", column_name="fee")
    currency = Field(attribute="plan__currency", column_name="currency")

    class Meta:
        model = Subscription
        fields = ("id", "team", "team_name", "user", "plan", "tier", "fee", "currency", "status", "started_at",
                  "current_period_start", "current_period_end", "trial_end", "cancel_at_period_end", "canceled_at",
                  "ended_at", "created_at")
        export_order = fields
