"""Columns of the chargeback admin's CSV/XLSX exports (``billing_site.exports.ExportResource``).

Costs and quantities are exact (12 decimal places, as stored) with their currency and unit beside
them; times are UTC; periods are ``[start, end)`` dates.
"""

from __future__ import annotations

from django.db.models import F
from import_export.fields import Field

from billing_site.exports import ExportResource

from .models import AllocatedCost, AllocationRun, UsageRecord


class UsageRecordResource(ExportResource):
    team = Field(attribute="team_slug", column_name="team")
    team_name = Field(attribute="team_name", column_name="team_name")
    user = Field(attribute="user_name", column_name="user")

    class Meta:
        model = UsageRecord
        fields = ("id", "occurred_at", "billing_period_start", "team", "team_name", "user", "resource_type",
                  "provider", "model", "service_name", "feature_key", "agent_id", "quantity", "unit", "cost",
                  "currency", "source", "status", "external_reference", "idempotency_key", "resource_id")
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related(None).annotate(
            team_slug=F("team__slug"), team_name=F("team__name"), user_name=F("user__username"))


class AllocatedCostResource(ExportResource):
    """Allocation lines: what each run put on each team, rule by rule."""

    period_start = Field(attribute="run__period_start", column_name="period_start")
    run = Field(attribute="run_id", column_name="run")
    team = Field(attribute="team__slug", column_name="team")
    team_name = Field(attribute="team__name", column_name="team_name")
    user = Field(attribute="user__username", column_name="user")
    rule = Field(attribute="rule__name", column_name="rule")

    class Meta:
        model = AllocatedCost
        fields = ("id", "run", "period_start", "team", "team_name", "user", "rule", "service", "quantity", "unit",
                  "amount", "currency", "record_count")
        export_order = fields


class AllocationRunResource(ExportResource):
    class Meta:
        model = AllocationRun
        fields = ("id", "period_start", "period_end", "status", "dry_run", "currency", "total_cost", "allocated_cost",
                  "unallocated_cost", "record_count", "created_at", "committed_at")
        export_order = fields
