"""django-filter ``FilterSet``s of the wallets API: wallets by team, user, status and currency; ledger
entries by team, wallet, entry type and time."""

from __future__ import annotations

import django_filters

from billing_site.api.filters import CurrencyFilter, IdFilter, StrictFilterSet
from chargeback.api.filters import InstantFilter
from wallets.models import LedgerEntry, Wallet


class WalletFilter(StrictFilterSet):
    """``GET wallets/``: ``team``, ``user`` (ids), ``status``, ``currency`` (ISO 4217)."""

    team = IdFilter(field_name="team_id")
    user = IdFilter(field_name="user_id")
    status = django_filters.ChoiceFilter(choices=Wallet.Status.choices)
    currency = CurrencyFilter(field_name="currency")

    class Meta:
        model = Wallet
        fields = []


class LedgerEntryFilter(StrictFilterSet):
    """``GET ledger-entries/``: ``team``, ``wallet`` (ids), ``entry_type``, ``from`` (inclusive) and ``to``
    (exclusive) on ``created_at``."""

    team = IdFilter(field_name="wallet__team_id")
    wallet = IdFilter(field_name="wallet_id")
    entry_type = django_filters.ChoiceFilter(choices=LedgerEntry.EntryType.choices)
    # ``from`` is a Python keyword: declared below under its query-parameter name.
    to = InstantFilter(field_name="created_at", lookup_expr="lt", help_text="created_at before (exclusive).")

    class Meta:
        model = LedgerEntry
        fields = []


LedgerEntryFilter.base_filters["from"] = InstantFilter(
    field_name="created_at", lookup_expr="gte", help_text="created_at at or after (inclusive)."
)
