"""Reads of wallets, the ledger and usage events. No writes here (see ``wallets.services``).

Periods are half-open ``[start, end)`` datetimes (aware, UTC in storage). Amounts are Decimals at
metered precision (12 decimal places) in the wallet's or event's currency. Every total is computed
in the database (``GROUP BY``), never by summing rows in Python.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Case, Count, DecimalField, F, Max, Q, QuerySet, Value, When, Window
from django.db.models.functions import Coalesce, Lag, TruncDay, TruncMonth, TruncYear

from billing_site.db import MeteredSum
from billing_site.errors import InvalidRequest
from billing_site.money import METERED_DECIMAL_PLACES, METERED_MAX_DIGITS
from teams.models import BillingSettings, Team
from teams.selectors import billing_settings_get, team_ids_managed_by, team_list_for_user, user_sees_all_teams

from .models import CreditGrant, Hold, LedgerEntry, UsageEvent, UsageEventItem, Wallet

ZERO = Decimal(0)
_METERED_FIELD = DecimalField(max_digits=METERED_MAX_DIGITS, decimal_places=METERED_DECIMAL_PLACES)


def wallet_get(*, team: Team, user=None, currency: str | None = None) -> Wallet | None:
    """The live (not closed) wallet of ``team`` (or of ``user`` within it) in ``currency``, or ``None``.

    ``currency`` defaults to the team's currency.
    """
    return (
        Wallet.objects.exclude(status=Wallet.Status.CLOSED)
        .filter(team=team, user=user, currency=currency or team.currency)
        .first()
    )


def wallet_list(*, team: Team | None = None, user=None) -> QuerySet[Wallet]:
    """Wallets, optionally of one team and/or one user, with team and user joined."""
    qs = Wallet.objects.select_related("team", "user")
    if team is not None:
        qs = qs.filter(team=team)
    if user is not None:
        qs = qs.filter(user=user)
    return qs.order_by("pk")


@dataclass(frozen=True)
class WalletBalance:
    """A wallet's figures, read from its stored running totals (O(1) in the number of entries)."""

    wallet_id: int
    currency: str
    balance: Decimal
    reserved: Decimal
    granted_balance: Decimal
    available: Decimal
    status: str
    low_balance_warned: bool


def wallet_balance_get(*, wallet_id: int) -> WalletBalance:
    """One primary-key read of the wallet and its team's billing settings; never a SUM over the ledger.

    ``available`` = balance − reserved, plus the credit limit for postpaid teams.
    Raises ``Wallet.DoesNotExist``.
    """
    wallet = Wallet.objects.select_related("team__billing_settings").get(pk=wallet_id)
    return WalletBalance(
        wallet_id=wallet.pk,
        currency=wallet.currency,
        balance=wallet.balance,
        reserved=wallet.reserved,
        granted_balance=wallet.granted_balance,
        available=wallet.available(billing_settings_get(team=wallet.team)),
        status=wallet.status,
        low_balance_warned=wallet.low_balance_warned,
    )


def ledger_entry_list(*, wallet: Wallet) -> QuerySet[LedgerEntry]:
    """The wallet's ledger entries, newest first (index ``ledger_wallet_newest``)."""
    return LedgerEntry.objects.filter(wallet=wallet).order_by("-pk")


def hold_list(*, wallet: Wallet, status: str | None = None) -> QuerySet[Hold]:
    qs = Hold.objects.filter(wallet=wallet)
    return qs.filter(status=status) if status else qs


# --- ledger verification ---------------------------------------------------------------------


@dataclass
class WalletVerification:
    """The outcome of checking one wallet against its ledger; ``problems`` empty means it agrees."""

    wallet_id: int
    balance: Decimal
    ledger_balance: Decimal
    reserved: Decimal
    ledger_reserved: Decimal
    entry_count: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def ledger_verify(*, wallet_ids: list[int] | None = None) -> list[WalletVerification]:
    """Check every wallet (or the given ones) against its ledger.

    Checks, per wallet: stored ``balance`` = Σ entry ``amount``; stored ``reserved`` = Σ entry
    ``reserved_delta`` = Σ amount of open holds; stored ``granted_balance`` = Σ ``remaining`` of its
    grants; and the chain, ordered by pk: each entry's ``balance_before``/``reserved_before`` equal
    the previous entry's ``*_after`` (0 for the first), and the last ``*_after`` equal the stored
    figures. Sums and the chain walk run in the database (GROUP BY and a LAG window), so the cost is
    one pass over the ledger.

    Returns one :class:`WalletVerification` per wallet, in pk order.
    """
    wallets = Wallet.objects.order_by("pk")
    entries = LedgerEntry.objects.all()
    if wallet_ids is not None:
        wallets = wallets.filter(pk__in=wallet_ids)
        entries = entries.filter(wallet_id__in=wallet_ids)

    sums = {
        row["wallet_id"]: row
        for row in entries.values("wallet_id").order_by().annotate(
            total=MeteredSum("amount"), reserved_total=MeteredSum("reserved_delta"), count=Count("pk"), last_id=Max("pk")
        )
    }
    last_ids = [row["last_id"] for row in sums.values()]
    last_entries = {
        e.wallet_id: e for e in LedgerEntry.objects.filter(pk__in=last_ids).only(
            "wallet_id", "balance_after", "reserved_after"
        )
    }
    holds, grants = Hold.objects.all(), CreditGrant.objects.all()
    if wallet_ids is not None:
        holds, grants = holds.filter(wallet_id__in=wallet_ids), grants.filter(wallet_id__in=wallet_ids)
    open_holds = dict(
        holds.filter(status=Hold.Status.OPEN).values("wallet_id").order_by().annotate(t=MeteredSum("amount"))
        .values_list("wallet_id", "t")
    )
    granted = dict(
        grants.values("wallet_id").order_by().annotate(t=MeteredSum("remaining")).values_list("wallet_id", "t")
    )
    broken = _broken_chain_links(entries)

    results = []
    for wallet in wallets.only("pk", "balance", "reserved", "granted_balance"):
        row = sums.get(wallet.pk, {})
        check = WalletVerification(
            wallet_id=wallet.pk,
            balance=wallet.balance,
            ledger_balance=_metered(row.get("total")),
            reserved=wallet.reserved,
            ledger_reserved=_metered(row.get("reserved_total")),
            entry_count=row.get("count", 0),
        )
        if check.balance != check.ledger_balance:
            check.problems.append(f"balance {check.balance} != ledger sum {check.ledger_balance}")
        if check.reserved != check.ledger_reserved:
            check.problems.append(f"reserved {check.reserved} != ledger reserved sum {check.ledger_reserved}")
        held = _metered(open_holds.get(wallet.pk))
        if check.reserved != held:
            check.problems.append(f"reserved {check.reserved} != open holds {held}")
        grant_sum = _metered(granted.get(wallet.pk))
        if wallet.granted_balance != grant_sum:
            check.problems.append(f"granted balance {wallet.granted_balance} != grants remaining {grant_sum}")
        last = last_entries.get(wallet.pk)
        if last is not None and (last.balance_after != wallet.balance or last.reserved_after != wallet.reserved):
            check.problems.append(
                f"last entry {last.pk} ends at balance {last.balance_after}, reserved {last.reserved_after}; "
                f"the wallet stores {wallet.balance}, {wallet.reserved}"
            )
        for entry_id, expected, found in broken.get(wallet.pk, [])[:5]:
            check.problems.append(f"chain broken at entry {entry_id}: starts from {found}, previous ended at {expected}")
        results.append(check)
    return results


def _metered(value: Decimal | None) -> Decimal:
    """A ``MeteredSum`` (exact, 12 dp on every database), zero for no rows."""
    return value if value is not None else ZERO


def _broken_chain_links(entries: QuerySet[LedgerEntry]) -> dict[int, list[tuple[int, Decimal, Decimal]]]:
    """Entries whose ``*_before`` differ from the previous entry's ``*_after`` (per wallet, by pk).

    Runs as one query with ``LAG`` windows; filtering on a window (Django ≥ 4.2) wraps it in a
    subquery, so only the broken links come back.
    """
    zero = Decimal(0)
    annotated = entries.annotate(
        prev_balance=Window(Lag("balance_after", default=zero), partition_by=[F("wallet_id")], order_by=F("pk").asc()),
        prev_reserved=Window(Lag("reserved_after", default=zero), partition_by=[F("wallet_id")], order_by=F("pk").asc()),
    ).filter(~Q(balance_before=F("prev_balance")) | ~Q(reserved_before=F("prev_reserved")))
    broken: dict[int, list] = {}
    for e in annotated.values("pk", "wallet_id", "balance_before", "prev_balance").order_by("pk"):
        broken.setdefault(e["wallet_id"], []).append((e["pk"], e["prev_balance"], e["balance_before"]))
    return broken


# --- usage history, summaries and statistics ----------------------------------------------------


def _events(
    *, team: Team, start: dt.datetime | None = None, end: dt.datetime | None = None, feature_key: str | None = None,
    status: str | None = None, provider: str | None = None, user=None,
) -> QuerySet[UsageEvent]:
    qs = UsageEvent.objects.filter(team=team)
    if start is not None:
        qs = qs.filter(created_at__gte=start)
    if end is not None:
        qs = qs.filter(created_at__lt=end)
    if feature_key:
        qs = qs.filter(feature_key=feature_key)
    if status:
        qs = qs.filter(status=status)
    if user is not None:
        qs = qs.filter(user=user)
    if provider:
        qs = qs.filter(pk__in=UsageEventItem.objects.filter(provider=provider).values("event_id"))
    return qs


def usage_event_list(
    *, team: Team, start: dt.datetime | None = None, end: dt.datetime | None = None, feature_key: str | None = None,
    status: str | None = None, provider: str | None = None, user=None,
) -> QuerySet[UsageEvent]:
    """A team's usage events in ``[start, end)`` (by ``created_at``), newest first, items prefetched.

    Filters: ``feature_key``, ``status`` (pending/charged/rejected), ``provider`` (events with at
    least one item of that provider), ``user``.
    """
    return (
        _events(team=team, start=start, end=end, feature_key=feature_key, status=status, provider=provider, user=user)
        .select_related("user", "ledger_entry")
        .prefetch_related("items")
        .order_by("-created_at", "-pk")
    )


def usage_event_summary(
    *, team: Team, start: dt.datetime | None = None, end: dt.datetime | None = None, feature_key: str | None = None,
    status: str | None = None, provider: str | None = None, user=None,
) -> dict:
    """Totals of a team's usage events in ``[start, end)``, grouped in the database.

    Returns ``{"event_count", "total_cost", "by_feature": [{"feature_key", "count", "cost"}],
    "by_status": [{"status", "count", "cost"}], "by_provider": [{"provider", "cost", "quantity"}],
    "by_resource_type": [{"resource_type", "cost"}]}``. ``total_cost`` and the feature and provider
    totals count charged events only (a rejected event moved no money); ``by_status`` shows every
    status with the amount each would have cost. Costs are Decimals (12 dp) in the events' currency.
    """
    events = _events(team=team, start=start, end=end, feature_key=feature_key, status=status, provider=provider, user=user)
    charged = events.filter(status=UsageEvent.Status.CHARGED)
    items = UsageEventItem.objects.filter(event__in=charged)
    if provider:
        items = items.filter(provider=provider)
    totals = charged.aggregate(cost=Coalesce(MeteredSum("total"), ZERO), count=Count("pk"))
    return {
        "event_count": events.count(),
        "charged_count": totals["count"],
        "total_cost": totals["cost"],
        "by_feature": list(
            charged.values("feature_key").order_by("feature_key").annotate(count=Count("pk"), cost=MeteredSum("total"))
        ),
        "by_status": list(events.values("status").order_by("status").annotate(count=Count("pk"), cost=MeteredSum("total"))),
        "by_provider": list(
            items.values("provider").order_by("provider").annotate(cost=MeteredSum("cost"), quantity=MeteredSum("quantity"))
        ),
        "by_resource_type": [
            {"resource_type": row["category"], "cost": row["cost"]}
            for row in items.values("category").order_by("category").annotate(cost=MeteredSum("cost"))
        ],
    }


_GRANULARITIES = {"day": TruncDay, "month": TruncMonth, "year": TruncYear}


def statistics_period(*, granularity: str, year: int | None = None, month: int | None = None):
    """The half-open period ``[start, end)`` a statistics request covers (UTC).

    ``day``: the days of ``year``-``month``; ``month``: the months of ``year``; ``year``: ``year``
    alone when given, else all time (``start``/``end`` ``None``).
    """
    utc = dt.timezone.utc
    if granularity == "day":
        if year is None or month is None:
            raise InvalidRequest("day statistics need a year and a month", param="month")
        start = dt.datetime(year, month, 1, tzinfo=utc)
        end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=utc)
        return start, end
    if granularity == "month":
        if year is None:
            raise InvalidRequest("month statistics need a year", param="year")
        return dt.datetime(year, 1, 1, tzinfo=utc), dt.datetime(year + 1, 1, 1, tzinfo=utc)
    if granularity == "year":
        if year is None:
            return None, None
        return dt.datetime(year, 1, 1, tzinfo=utc), dt.datetime(year + 1, 1, 1, tzinfo=utc)
    raise InvalidRequest(f"granularity must be day, month or year, got {granularity!r}", param="granularity")


def usage_statistics(
    *, team: Team, granularity: str, year: int | None = None, month: int | None = None, user=None
) -> dict:
    """Charged usage of a team for a period, with a series for a chart.

    ``granularity``: ``day`` (the days of ``year``-``month``), ``month`` (the months of ``year``),
    ``year`` (per year; ``year`` given: that year only). Returns ``{"granularity", "start", "end",
    "total_cost", "transaction_count", "by_provider": [{"provider", "cost"}], "by_feature":
    [{"feature_key", "cost", "count"}], "series": [{"period": date, "cost", "count"}]}``; the series
    has a point for every day or month of the period, zero where nothing was charged. Buckets are UTC.
    Raises :class:`billing_site.errors.InvalidRequest` for a bad granularity or a missing year/month.
    """
    start, end = statistics_period(granularity=granularity, year=year, month=month)
    events = _events(team=team, start=start, end=end, user=user).filter(status=UsageEvent.Status.CHARGED)
    trunc = _GRANULARITIES[granularity]
    totals = events.aggregate(cost=Coalesce(MeteredSum("total"), ZERO), count=Count("pk"))
    rows = (
        events.annotate(bucket=trunc("created_at", tzinfo=dt.timezone.utc))
        .values("bucket").order_by("bucket").annotate(cost=MeteredSum("total"), count=Count("pk"))
    )
    found = {_as_date(r["bucket"]): (r["cost"], r["count"]) for r in rows}
    series = [
        {"period": bucket, "cost": found.get(bucket, (ZERO, 0))[0], "count": found.get(bucket, (ZERO, 0))[1]}
        for bucket in _buckets(granularity, start, end, found)
    ]
    return {
        "granularity": granularity,
        "start": start,
        "end": end,
        "total_cost": totals["cost"],
        "transaction_count": totals["count"],
        "by_provider": list(
            UsageEventItem.objects.filter(event__in=events).values("provider").order_by("provider")
            .annotate(cost=MeteredSum("cost"))
        ),
        "by_feature": list(events.values("feature_key").order_by("feature_key").annotate(cost=MeteredSum("total"), count=Count("pk"))),
        "series": series,
    }


def _as_date(value) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _buckets(granularity: str, start, end, found: dict) -> list[dt.date]:
    if start is None:
        return sorted(found)
    buckets, day = [], start.date()
    while day < end.date():
        buckets.append(day)
        if granularity == "day":
            day += dt.timedelta(days=1)
        elif granularity == "month":
            day = dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)
        else:
            day = dt.date(day.year + 1, 1, 1)
    return buckets


def wallet_list_for_user(*, user) -> QuerySet[Wallet]:
    """The wallets ``user`` may see, with team and billing settings joined, by pk.

    Finance and auditors: every wallet. Anybody else: the team wallets of their teams, their own
    wallets, and, in teams they manage, every member's wallet
    (``teams.selectors.team_list_for_user`` and ``team_ids_managed_by``). Nobody else's.
    """
    wallets = Wallet.objects.select_related("team__billing_settings", "user").order_by("pk")
    if user is None or not user.is_authenticated or not user.is_active:
        return wallets.none()
    if user_sees_all_teams(user):
        return wallets
    teams = team_list_for_user(user=user).values("pk")
    managed = team_ids_managed_by(user=user)
    return wallets.filter(
        Q(team_id__in=teams, user__isnull=True) | Q(team_id__in=teams, user=user) | Q(team_id__in=managed)
    )


def ledger_entry_list_for_user(*, user) -> QuerySet[LedgerEntry]:
    """The ledger entries of every wallet ``user`` may see (:func:`wallet_list_for_user`), newest first."""
    return LedgerEntry.objects.filter(wallet__in=wallet_list_for_user(user=user).values("pk")).order_by("-pk")


def wallets_below_warning(queryset: QuerySet[Wallet] | None = None) -> QuerySet[Wallet]:
    """Live wallets whose balance is below their team's warning threshold.

    The threshold is ``BillingSettings.warning_threshold`` written in SQL: an absolute amount, or a
    percentage of the wallet's last top-up (a team without settings: 10 % of it; no top-up yet: no
    threshold, as ``warning_threshold`` returns ``None``).
    """
    queryset = Wallet.objects.all() if queryset is None else queryset
    percent = Coalesce(F("team__billing_settings__warning_threshold_value"), Value(Decimal(10), output_field=_METERED_FIELD))
    return queryset.exclude(status=Wallet.Status.CLOSED).annotate(
        warning_threshold=Case(
            When(team__billing_settings__warning_threshold_type=BillingSettings.ThresholdType.ABSOLUTE,
                 then=F("team__billing_settings__warning_threshold_value")),
            default=F("last_top_up_amount") * percent / Value(Decimal(100), output_field=_METERED_FIELD),
            output_field=_METERED_FIELD,
        )
    ).filter(balance__lt=F("warning_threshold"))
