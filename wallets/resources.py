"""Columns of the wallet admin's CSV/XLSX exports (``billing_site.exports.ExportResource``).

Amounts are exact (12 decimal places, as stored) with their currency beside them; times are UTC.
"""

from __future__ import annotations

from django.db.models import F
from import_export.fields import Field

from billing_site.exports import ExportResource

from .models import LedgerEntry, Wallet


class LedgerEntryResource(ExportResource):
    """One row per ledger entry, oldest first (a statement): the entry, its team and its reference."""

    team = Field(attribute="team_slug", column_name="team")
    team_name = Field(attribute="team_name", column_name="team_name")
    wallet = Field(attribute="wallet_id", column_name="wallet")

    class Meta:
        model = LedgerEntry
        fields = ("id", "created_at", "team", "team_name", "wallet", "entry_type", "amount", "reserved_delta",
                  "balance_after", "currency", "reference_type", "reference_id", "idempotency_key", "feature_key",
                  "description")
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        # Two columns of the team, read in the same query; no join of whole rows on a large table.
        return (queryset.select_related(None).annotate(team_slug=F("wallet__team__slug"),
                                                       team_name=F("wallet__team__name")).order_by("pk"))


class WalletResource(ExportResource):
    team = Field(attribute="team__slug", column_name="team")
    team_name = Field(attribute="team__name", column_name="team_name")
    user = Field(attribute="user__username", column_name="user")

    class Meta:
        model = Wallet
        fields = ("id", "team", "team_name", "user", "status", "balance", "reserved", "granted_balance", "currency",
                  "low_balance_warned", "created_at", "updated_at")
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("team", "user")
