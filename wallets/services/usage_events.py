"""Quotes and usage-event charges: multi-item usage priced from the catalog, charged as one entry.

A quote prices items (``quantity × unit_price``, rounded half-up to 12 dp) and writes nothing. A
usage-event charge prices the same way and debits the right wallet with one ``charge`` ledger
entry, recording the event, its items and one chargeback usage record per item; a refusal for
funds or a frozen wallet is recorded as a rejected event.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone

from billing_site.errors import InvalidRequest
from billing_site.idempotency import request_fingerprint
from chargeback.errors import PriceNotFound
from chargeback.models import UsageRecord
from chargeback.selectors import price_items, price_not_found
from chargeback.services.usage import usage_records_create
from teams.models import BillingSettings, Team
from teams.selectors import billing_settings_get, team_currency_check
from wallets.errors import InsufficientFunds, ProviderNotAllowed, WalletFrozen
from wallets.models import LedgerEntry, UsageEvent, UsageEventItem, Wallet

from .amounts import ZERO, amount_not_negative
from .charges import billing_defaults
from .posting import entry_debit, funds_shortfall, wallet_totals_save
from .results import result_response, team_idempotent_run
from .wallets import wallet_lock, wallet_open

#: Most items one quote or usage event may carry.
MAX_ITEMS = 100
_ITEM_FIELDS = ("category", "provider", "model", "unit")


@dataclass(frozen=True)
class QuoteItem:
    """One priced item: ``cost = quantize_metered(quantity × unit_price)`` in ``currency``."""

    category: str
    provider: str
    model: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    cost: Decimal
    currency: str
    price_id: int | None


@dataclass(frozen=True)
class Quote:
    """A priced list of items and their exact total (Σ costs, 12 dp) in one currency."""

    items: tuple[QuoteItem, ...]
    total: Decimal
    currency: str


def _parse_items(items: Sequence[Mapping[str, Any]]) -> list[dict]:
    if not isinstance(items, (list, tuple)) or not items:
        raise InvalidRequest("items must be a non-empty list", param="items")
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"at most {MAX_ITEMS} items per request", param="items")
    parsed = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"items[{i}] must be an object", param=f"items[{i}]")
        row = {}
        for name in _ITEM_FIELDS:
            value = item.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"items[{i}].{name} is required", param=f"items[{i}].{name}")
            row[name] = value.strip()
        row["quantity"] = amount_not_negative(item.get("quantity"), f"items[{i}].quantity")
        parsed.append(row)
    return parsed


def _quote(team: Team, billing: BillingSettings, parsed: list[dict], at: dt.datetime) -> Quote:
    """Price the parsed items at ``at`` with ``chargeback.selectors.price_items`` (one catalog query for all
    of them; the team's override first, then the global price; ``price_apply``'s amount)."""
    items = [(row["category"], row["provider"], row["model"], row["unit"]) for row in parsed]
    lines = price_items(team=team, lines=[(item, row["quantity"], at) for row, item in zip(parsed, items)])
    priced = []
    for i, (row, item, line) in enumerate(zip(parsed, items, lines)):
        if not billing.provider_allowed(row["provider"]):
            raise ProviderNotAllowed(
                f"provider {row['provider']!r} is not allowed for team {team.slug}", param=f"items[{i}].provider"
            )
        if line is None:
            raise PriceNotFound(str(price_not_found(team=team, item=item, at=at)), param=f"items[{i}]")
        priced.append(QuoteItem(
            category=row["category"], provider=row["provider"], model=row["model"], unit=row["unit"],
            quantity=line.quantity, unit_price=line.unit_price, cost=line.amount, currency=line.currency,
            price_id=line.price.pk,
        ))
    currencies = {p.currency for p in priced}
    if len(currencies) > 1:
        raise InvalidRequest(f"items are priced in different currencies: {', '.join(sorted(currencies))}", param="items")
    # Charged usage is chargeback usage too: in a currency the team is billed in, or refused (422).
    currency = team_currency_check(team=team, currency=currencies.pop())
    return Quote(items=tuple(priced), total=sum((p.cost for p in priced), ZERO), currency=currency)


def quote(*, team: Team, items: Sequence[Mapping[str, Any]], at: dt.datetime | None = None) -> Quote:
    """Price ``items`` from the catalog (the team's override first, then the global price); writes nothing.

    ``items``: ``[{"category", "provider", "model", "unit", "quantity"}]`` with ``quantity`` a
    Decimal ≥ 0. ``at``: the time the prices are valid at (default now). Each cost is
    ``quantity × unit_price`` rounded half-up to 12 dp; the total is their exact sum.
    Raises ``InvalidRequest``, ``InvalidAmount`` (a quantity), ``ProviderNotAllowed``, ``PriceNotFound``,
    ``CurrencyNotAllowed`` (the items are priced in a currency the team is not billed in; 422).
    """
    return _quote(team, billing_settings_get(team=team), _parse_items(items), at or timezone.now())


#: ``wallets_usage_event_charge(...)``, the SQL function of wallets migration 0011.
_EVENT_FUNCTION_SQL = f"SELECT * FROM wallets_usage_event_charge({', '.join(['%s'] * 18)})"
#: The function declined the call (nothing kept): the step-by-step path answers it.
SQLSTATE_STEP_BY_STEP = "WLSTP"
#: PostgreSQL's numeric_value_out_of_range: the step-by-step path names the amount out of range.
SQLSTATE_OUT_OF_RANGE = "22003"
_RECORD_FIELDS = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]


def _json_value(field, value):
    """A usage record's field value as ``jsonb_populate_record`` reads it back into its column."""
    if isinstance(value, DatabaseDefault):
        return getattr(field.db_default, "value", None)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _charge_in_one_call(*, team: Team, user, feature_key: str, external_reference_id: str, idempotency_key: str,
                        parsed: list[dict], params: dict, metadata: dict) -> UsageEvent | None:
    """The charged event, written by one call of ``wallets_usage_event_charge``; ``None`` when the
    step-by-step path must answer (any error, refusal, replay or uncommon case; nothing is kept then)."""
    if not isinstance(idempotency_key, str) or not idempotency_key.strip() or len(idempotency_key) > 255:
        return None
    now, currency = timezone.now(), team.currency.upper()
    period = now.astimezone(dt.timezone.utc).date().replace(day=1)
    records = []
    for row in parsed:  # every column from the model (its defaults included); cost, key and ids from the function
        record = UsageRecord(
            team=team, user=user, agent_id="", resource_type=row["category"], provider=row["provider"],
            model=row["model"], unit=row["unit"], quantity=row["quantity"], cost=ZERO, currency=currency,
            occurred_at=now, billing_period_start=period, source=UsageRecord.Source.CHARGE, feature_key=feature_key,
            external_reference=external_reference_id, created_at=now,
        )
        records.append({f.column: _json_value(f, getattr(record, f.attname)) for f in _RECORD_FIELDS})
    lines = [{name: row[name] for name in _ITEM_FIELDS} | {"quantity": format(row["quantity"], "f")} for row in parsed]
    _type, response = result_response(UsageEvent(status=UsageEvent.Status.CHARGED, currency=currency))
    jsonb = connection.ops.adapt_json_value
    args = [
        f"team:{team.pk}", idempotency_key, request_fingerprint("usage_event_charge", params), now, team.pk, currency,
        getattr(user, "pk", None), feature_key, external_reference_id, jsonb(metadata, None), jsonb(lines, None),
        jsonb(records, None), jsonb(response, None), *billing_defaults(),
    ]
    try:
        with transaction.atomic(durable=True) if connection.in_atomic_block else contextlib.nullcontext():
            with connection.cursor() as cursor:
                cursor.execute(_EVENT_FUNCTION_SQL, args)
                event_id, wallet_id, entry_id, total, unit_prices, costs, price_ids, record_ids = cursor.fetchone()
    except DatabaseError as exc:
        if getattr(exc.__cause__, "sqlstate", None) in (SQLSTATE_STEP_BY_STEP, SQLSTATE_OUT_OF_RANGE):
            return None
        raise
    event = UsageEvent(
        pk=event_id, team=team, user=user, wallet_id=wallet_id, feature_key=feature_key,
        external_reference_id=external_reference_id, idempotency_key=idempotency_key,
        status=UsageEvent.Status.CHARGED, total=total, currency=currency, ledger_entry_id=entry_id,
        metadata=metadata, created_at=now,
    )
    event._state.adding, event._state.db, event.replayed = False, connection.alias, False
    items = event.items.all()  # the items as a prefetch leaves them: read without a query
    items._result_cache = [
        UsageEventItem(event=event, position=position, category=row["category"], provider=row["provider"],
                       model=row["model"], unit=row["unit"], quantity=row["quantity"], unit_price=unit_prices[position],
                       cost=costs[position], currency=currency, price_id=price_ids[position],
                       usage_record_id=record_ids[position])
        for position, row in enumerate(parsed)
    ]
    items._prefetch_done = True
    event._prefetched_objects_cache = {"items": items}
    return event


def _rejection_error(event: UsageEvent, response: dict) -> Exception:
    if event.rejection_code == WalletFrozen.code:
        return WalletFrozen(event.rejection_reason, event=event)
    return InsufficientFunds(
        event.rejection_reason, requested=event.total, available=Decimal(response.get("available", "0")),
        currency=event.currency, event=event,
    )


def usage_event_charge(*, team: Team, user, feature_key: str, external_reference_id: str, idempotency_key: str,
                       items: Sequence[Mapping[str, Any]], metadata: dict | None = None) -> UsageEvent:
    """Price a multi-item usage event and debit the right wallet with ONE ``charge`` entry, atomically.

    The wallet: the team wallet, or ``user``'s wallet for ``prepaid_user`` (created empty when
    missing). The event is written ``pending`` and becomes ``charged`` with its ledger entry and
    one chargeback ``UsageRecord`` (source ``charge``) per item, all in one transaction.

    Refusals before anything is written: ``InvalidRequest``/``InvalidAmount`` (items),
    ``ProviderNotAllowed``, ``PriceNotFound``, ``CurrencyNotAllowed`` (priced in a currency the
    team is not billed in, 422), ``IdempotencyError``. Refusals that are recorded:
    insufficient funds (with the team's floor) and a frozen wallet commit the event as ``rejected``
    with its items and reason, move nothing, and then raise ``InsufficientFunds`` /
    ``WalletFrozen`` carrying ``.event`` (the API answers 402/409 and the attempt is kept). A
    replay of the same key and parameters returns the charged event, or raises the same error again.

    The common case (a new key, every item priced in the team's currency, an active team wallet
    or member's wallet that exists, without granted credit, within the floor, crossing no warning
    threshold) is one call of the SQL function ``wallets_usage_event_charge`` (wallets migration
    0011), which prices, records and debits; the returned event carries its items, so answering it
    reads nothing more. Everything else, and every error, takes the steps below, with the same
    rules (``tests/wallets/test_event_function.py`` checks the two agree).
    """
    parsed = _parse_items(items)
    params = {"team": team.pk, "user": getattr(user, "pk", None), "feature_key": feature_key,
              "external_reference_id": external_reference_id, "items": parsed, "metadata": metadata or {}}
    event = _charge_in_one_call(team=team, user=user, feature_key=feature_key,
                                external_reference_id=external_reference_id, idempotency_key=idempotency_key,
                                parsed=parsed, params=params, metadata=metadata or {})
    if event is not None:
        return event
    rejection: dict = {}

    def body() -> UsageEvent:
        billing = billing_settings_get(team=team)
        if billing.uses_user_wallets and user is None:
            raise InvalidRequest("a prepaid_user team charges its users' wallets: user is required", param="user")
        priced = _quote(team, billing, parsed, timezone.now())
        wallet = wallet_open(team=team, user=user if billing.uses_user_wallets else None)
        if wallet.currency != priced.currency:
            raise InvalidRequest(f"items are priced in {priced.currency}, the wallet holds {wallet.currency}",
                                 param="items")
        locked = wallet_lock(wallet.pk)
        event = UsageEvent.objects.create(
            team=team, user=user, wallet=locked, feature_key=feature_key, external_reference_id=external_reference_id,
            idempotency_key=idempotency_key, status=UsageEvent.Status.PENDING, total=priced.total,
            currency=priced.currency, metadata=metadata or {},
        )
        shortfall = funds_shortfall(locked, billing, priced.total) if priced.total > 0 else None
        if locked.status != Wallet.Status.ACTIVE:
            event.rejection_code = WalletFrozen.code
            event.rejection_reason = f"Wallet {locked.pk} is {locked.status}."
        elif shortfall is not None:
            event.rejection_code = InsufficientFunds.code
            event.rejection_reason = (f"Insufficient funds: {shortfall} {locked.currency} available, "
                                      f"{priced.total} {locked.currency} needed.")
            rejection["available"] = str(shortfall)
        records = [None] * len(priced.items)
        if event.rejection_code:
            event.status = UsageEvent.Status.REJECTED
        else:
            records = usage_records_create(team=team, source="charge", records=[
                {"user": user, "resource_type": item.category, "provider": item.provider, "model": item.model,
                 "unit": item.unit, "quantity": item.quantity, "occurred_at": event.created_at,
                 "idempotency_key": f"usage-event-{event.pk}-{position}", "cost": item.cost,
                 "currency": item.currency, "feature_key": feature_key, "external_reference": external_reference_id,
                 "metadata": {"usage_event_id": event.pk}}
                for position, item in enumerate(priced.items)
            ])
            if priced.total > 0:
                event.ledger_entry = entry_debit(
                    locked, billing, entry_type=LedgerEntry.EntryType.CHARGE, amount=priced.total,
                    idempotency_key=idempotency_key, reference_type="usage_event", reference_id=event.pk,
                    feature_key=feature_key,
                    description=f"Usage event {event.pk}" + (f" ({external_reference_id})" if external_reference_id else ""),
                    created_by=user,
                )
                wallet_totals_save(locked)
            event.status = UsageEvent.Status.CHARGED
        UsageEventItem.objects.bulk_create([
            UsageEventItem(event=event, position=position, category=item.category, provider=item.provider,
                           model=item.model, unit=item.unit, quantity=item.quantity, unit_price=item.unit_price,
                           cost=item.cost, currency=item.currency, price_id=item.price_id, usage_record=records[position])
            for position, item in enumerate(priced.items)
        ])
        event.save(update_fields=["status", "rejection_code", "rejection_reason", "ledger_entry"])
        return event

    with transaction.atomic(durable=True):
        event, record, _ = team_idempotent_run(team_id=team.pk, idempotency_key=idempotency_key,
                                               operation="usage_event_charge", params=params, body=body,
                                               extra_response=lambda: dict(rejection))
    if event.status == UsageEvent.Status.REJECTED:
        raise _rejection_error(event, record.response)
    return event
