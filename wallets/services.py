"""Every write of the wallets app: the only way money moves.

Each money-moving service runs in one database transaction that

1. claims the idempotency key (an ``IdempotencyRecord`` inserted in a savepoint; the unique
   constraint on ``(scope, key)`` makes concurrent requests with one key wait for the first and
   then replay its result, or fail with ``IdempotencyError`` if their parameters differ; Stripe's
   semantics, https://docs.stripe.com/api/idempotent_requests),
2. locks the wallet row (``SELECT … FOR UPDATE``) and re-reads it under the lock,
3. validates (status, available credit),
4. writes the ledger entry with the balance before and after, computed from the locked row,
5. stores the new running totals on the wallet, and records the result on the idempotency record.

A failure in 2–5 rolls everything back, the idempotency record included, so a refused request
(insufficient funds, frozen wallet) can be retried with the same key once the cause is fixed. The
one exception is ``usage_event_charge``: its rejection is a recorded outcome (the rejected event is
committed, and a replay raises the same error again).

Amounts are positive Decimals with at most 12 decimal places (``billing_site.money``), in the
wallet's currency; floats are refused. All services are keyword-only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from billing_site.db import MeteredSum
from billing_site.models import IdempotencyRecord
from billing_site.money import METERED_QUANTUM, quantize_metered
from chargeback.selectors import price_candidates, price_not_found, price_pick
from chargeback.services import usage_records_create
from teams.models import BillingSettings, Team, TeamMembership
from teams.selectors import billing_settings_get

from .errors import (
    HoldNotOpen,
    IdempotencyError,
    InsufficientFunds,
    InvalidAmount,
    InvalidRequest,
    PriceNotFound,
    ProviderNotAllowed,
    WalletFrozen,
)
from .models import (
    CreditGrant,
    Hold,
    LedgerEntry,
    UsageEvent,
    UsageEventItem,
    Wallet,
)

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
#: Largest amount a single call may move: 10^15 in the wallet's currency. Keeps every sum well
#: inside the 30-digit columns and Decimal's default 28-digit context.
MAX_AMOUNT = Decimal(10) ** 15
#: How long idempotency records are kept at least (Stripe keeps keys 24 hours).
IDEMPOTENCY_RETENTION = dt.timedelta(hours=24)

Entry = LedgerEntry.EntryType
T = TypeVar("T")


# --- validation -------------------------------------------------------------------------------


def _decimal(value: object, name: str) -> Decimal:
    """``value`` as a finite Decimal with at most 12 decimal places, or ``InvalidAmount`` naming ``name``."""
    if isinstance(value, bool) or value is None:
        raise InvalidAmount(f"{name} must be a Decimal, got {value!r}", param=name)
    if isinstance(value, float):
        raise InvalidAmount(f"{name} is a float ({value!r}); send a Decimal (money is never a float)", param=name)
    if isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal):
        raise InvalidAmount(f"{name} must be a Decimal, got {type(value).__name__}", param=name)
    if not value.is_finite():
        raise InvalidAmount(f"{name} must be a finite number, got {value}", param=name)
    if abs(value) >= MAX_AMOUNT:
        raise InvalidAmount(f"{name} must be below {MAX_AMOUNT:,}, got {value}", param=name)
    if value != value.quantize(METERED_QUANTUM):
        raise InvalidAmount(f"{name} has more than 12 decimal places: {value}", param=name)
    return value


def _positive(value: object, name: str) -> Decimal:
    amount = _decimal(value, name)
    if amount <= 0:
        raise InvalidAmount(f"{name} must be greater than zero, got {amount}", param=name)
    return amount


def _not_negative(value: object, name: str) -> Decimal:
    amount = _decimal(value, name)
    if amount < 0:
        raise InvalidAmount(f"{name} must not be negative, got {amount}", param=name)
    return amount


# --- idempotency ------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """A JSON-ready form of a parameter that is equal exactly when the parameters are equal."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "_meta") and hasattr(value, "pk"):
        return f"{value._meta.label_lower}:{value.pk}"
    return value


def request_fingerprint(operation: str, params: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``operation`` and its parameters."""
    payload = json.dumps(
        {"operation": operation, "params": _canonical(params)}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _check_key(idempotency_key: object) -> str:
    if not isinstance(idempotency_key, str) or not idempotency_key.strip() or len(idempotency_key) > 255:
        raise InvalidRequest("idempotency_key must be a non-empty string of at most 255 characters", param="idempotency_key")
    return idempotency_key


def _idempotency_claim(*, scope: str, key: str, operation: str, params: Mapping[str, Any]):
    """Insert the key's record, or return the existing one as a replay.

    Must run inside the transaction that moves the money. ``INSERT … ON CONFLICT (scope, key) DO
    NOTHING RETURNING id`` (one round trip, no savepoint): on PostgreSQL a concurrent insert of the
    same key waits until the first transaction ends; if it committed, nothing is inserted and we
    read its record (READ COMMITTED sees it); if it rolled back, ours is inserted. The unique
    constraint, not a prior ``exists()`` check, is what admits exactly one request.
    Returns ``(record, replayed)``. Raises :class:`IdempotencyError` on different parameters.
    """
    fingerprint = request_fingerprint(operation, params)
    created_at = timezone.now()
    table = connection.ops.quote_name(IdempotencyRecord._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (scope, key, operation, fingerprint, result_type, result_id, response, created_at) "
            "VALUES (%s, %s, %s, %s, '', '', '{}', %s) ON CONFLICT (scope, key) DO NOTHING RETURNING id",
            [scope, key, operation, fingerprint, connection.ops.adapt_datetimefield_value(created_at)],
        )
        row = cursor.fetchone()
    if row is not None:
        record = IdempotencyRecord(
            pk=row[0], scope=scope, key=key, operation=operation, fingerprint=fingerprint, created_at=created_at
        )
        record._state.adding = False
        return record, False
    return _claimed_record(scope=scope, key=key, fingerprint=fingerprint), True


def _claimed_record(*, scope: str, key: str, fingerprint: str) -> IdempotencyRecord:
    """The record a committed request left for the key; ``IdempotencyError`` if its parameters differ."""
    record = IdempotencyRecord.objects.get(scope=scope, key=key)
    if record.fingerprint != fingerprint:
        raise IdempotencyError(
            f"Idempotency key {key!r} was already used for a {record.operation} request with different "
            f"parameters; use a new key for a new request."
        )
    return record


_RESULT_MODELS: dict[str, type] = {"ledger_entry": LedgerEntry, "hold": Hold, "usage_event": UsageEvent}


def _replay(record: IdempotencyRecord):
    """The first result of a replayed key, marked ``replayed`` (the API answers ``Idempotent-Replayed: true``)."""
    result = _RESULT_MODELS[record.result_type].objects.get(pk=record.result_id)
    result.replayed = True
    return result


def _response(result: Any) -> tuple[str, dict]:
    """The result type and the JSON the API answers with (and replays)."""
    if isinstance(result, LedgerEntry):
        return "ledger_entry", {
            "object": "ledger_entry", "id": result.pk, "wallet": result.wallet_id, "entry_type": result.entry_type,
            "amount": format(result.amount, "f"), "currency": result.currency,
            "balance_after": format(result.balance_after, "f"), "reserved_after": format(result.reserved_after, "f"),
            "created_at": result.created_at.isoformat(),
        }
    if isinstance(result, Hold):
        return "hold", {
            "object": "hold", "id": result.pk, "wallet": result.wallet_id, "amount": str(result.amount),
            "captured_amount": str(result.captured_amount), "released_amount": str(result.released_amount),
            "status": result.status,
        }
    if isinstance(result, UsageEvent):
        return "usage_event", {
            "object": "usage_event", "id": result.pk, "status": result.status, "total": str(result.total),
            "currency": result.currency, "ledger_entry": result.ledger_entry_id,
            "rejection_code": result.rejection_code, "rejection_reason": result.rejection_reason,
        }
    raise TypeError(f"no idempotent response shape for {type(result).__name__}")


def _idempotent(*, team_id: int, idempotency_key: str, operation: str, params: Mapping[str, Any],
                body: Callable[..., T], extra_response: Callable[[], dict] | None = None,
                wallet_id: int | None = None) -> tuple[T, IdempotencyRecord, bool]:
    """Run ``body`` once per (team, key) in one transaction; replays return the first result.

    With ``wallet_id``, the key is claimed and that wallet locked and re-read in one step
    (:func:`_claim_and_lock`) and ``body(locked)`` is called with it; ``body`` may then return an
    unsaved ``LedgerEntry`` (built by ``_post(..., write=False)``), which is inserted together with
    the wallet's running totals and the record's result (:func:`_write_entry`).
    Without ``wallet_id``, ``body()`` locks what it needs itself and saves its result.
    """
    with transaction.atomic():
        scope, key = f"team:{team_id}", _check_key(idempotency_key)
        if wallet_id is None:
            record, replayed = _idempotency_claim(scope=scope, key=key, operation=operation, params=params)
        else:
            record, replayed, locked = _claim_and_lock(
                scope=scope, key=key, operation=operation, params=params, wallet_id=wallet_id
            )
        if replayed:
            return _replay(record), record, True
        result = body() if wallet_id is None else body(locked)
        result.replayed = False
        if isinstance(result, LedgerEntry) and result._state.adding:
            _write_entry(locked, result, record)
            return result, record, False
        result_type, response = _response(result)
        if extra_response is not None:
            response.update(extra_response())
        record.result_type, record.result_id, record.response = result_type, str(result.pk), response
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            result_type=result_type, result_id=str(result.pk), response=response
        )
        return result, record, False


def idempotency_records_purge(*, older_than: dt.timedelta = IDEMPOTENCY_RETENTION, now: dt.datetime | None = None) -> int:
    """Delete idempotency records older than ``older_than`` (at least 24 hours); returns how many.

    After that a reused key starts a new request, as with Stripe; the ledger's own unique
    ``(wallet, entry_type, idempotency_key)`` still stops a second entry from the same key.
    """
    if older_than < IDEMPOTENCY_RETENTION:
        raise InvalidRequest("idempotency records are kept at least 24 hours", param="older_than")
    cutoff = (now or timezone.now()) - older_than
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# --- locking and posting ----------------------------------------------------------------------


def _lock_wallet(wallet_id: int) -> Wallet:
    """Lock the wallet row and re-read it (with its team and billing settings, not locked)."""
    return (
        Wallet.objects.select_for_update(of=("self",))
        .select_related("team__billing_settings")
        .get(pk=wallet_id)
    )


def _lock_wallets(wallet_ids: Sequence[int]) -> dict[int, Wallet]:
    """Lock several wallets in primary-key order (so two callers never deadlock) and re-read them."""
    locked = (
        Wallet.objects.select_for_update(of=("self",)).select_related("team__billing_settings")
        .filter(pk__in=sorted(set(wallet_ids))).order_by("pk")
    )
    return {w.pk: w for w in locked}


# On PostgreSQL a charge (top-up, refund, adjustment) is two statements between BEGIN and COMMIT
# instead of five: (1) claim the key and lock the wallet, (2) insert the entry, store the wallet's
# totals and record the result. Same steps, same order, same locks; fewer round trips, and no ORM
# query compilation per call (that was most of the ~5 ms of Python a charge cost). The SQL text is
# built from the models' ``_meta`` once per process. Other databases (SQLite in tests) run the same
# steps one statement each through the ORM.

#: The wallet columns a money movement changes (the running totals and what goes with them).
_WALLET_TOTALS = ("balance", "reserved", "granted_balance", "low_balance_warned", "last_top_up_amount", "updated_at")


def _single_statement_paths() -> bool:
    return connection.vendor == "postgresql"


@functools.cache
def _claim_and_lock_sql() -> str:
    """``WITH claim AS (INSERT … ON CONFLICT DO NOTHING RETURNING id) SELECT claim, wallet, team, settings … FOR UPDATE``.

    The claim is an uncorrelated sub-select of the target list, so PostgreSQL runs the insert (and
    waits there for a concurrent request with the same key) before it locks the wallet row, as the
    two-statement path does; the lock then returns the row's newest committed version (READ
    COMMITTED re-reads a row it had to wait for). A replay (nothing claimed) locks the wallet too,
    which costs it only the wait.
    """
    qn = connection.ops.quote_name

    def columns(alias: str, model) -> str:
        return ", ".join(f"{alias}.{qn(f.column)}" for f in model._meta.concrete_fields)

    record, wallet = IdempotencyRecord._meta.db_table, Wallet._meta
    team_fk, settings_fk = wallet.get_field("team").column, BillingSettings._meta.get_field("team").column
    return (
        f"WITH claim AS (INSERT INTO {qn(record)} (scope, key, operation, fingerprint, result_type, result_id, "
        "response, created_at) VALUES (%s, %s, %s, %s, '', '', '{}', %s) "
        "ON CONFLICT (scope, key) DO NOTHING RETURNING id) "
        f"SELECT (SELECT id FROM claim), {columns('w', Wallet)}, {columns('t', Team)}, {columns('b', BillingSettings)} "
        f"FROM {qn(wallet.db_table)} w JOIN {qn(Team._meta.db_table)} t ON t.{qn(Team._meta.pk.column)} = w.{qn(team_fk)} "
        f"LEFT JOIN {qn(BillingSettings._meta.db_table)} b ON b.{qn(settings_fk)} = w.{qn(team_fk)} "
        f"WHERE w.{qn(wallet.pk.column)} = %s FOR UPDATE OF w"
    )


@functools.cache
def _json_fields(model) -> tuple[tuple[int, Any], ...]:
    """``(position, field)`` of the concrete fields that convert their database value (JSON)."""
    return tuple((i, f) for i, f in enumerate(model._meta.concrete_fields) if hasattr(f, "from_db_value"))


def _from_row(model, values: Sequence[Any]):
    """A model instance from its concrete columns in ``_meta`` order, as the ORM would load it."""
    values = list(values)
    for i, field in _json_fields(model):
        values[i] = field.from_db_value(values[i], None, connection)
    return model.from_db(connection.alias, [f.attname for f in model._meta.concrete_fields], values)


def _claim_and_lock(*, scope: str, key: str, operation: str, params: Mapping[str, Any],
                    wallet_id: int) -> tuple[IdempotencyRecord, bool, Wallet | None]:
    """Claim the idempotency key, then lock and re-read the wallet with its team and billing settings.

    Returns ``(record, replayed, locked wallet)``; the wallet is ``None`` for a replay on the ORM
    path. Raises :class:`IdempotencyError` (same key, other parameters) and ``Wallet.DoesNotExist``.
    """
    if not _single_statement_paths():
        record, replayed = _idempotency_claim(scope=scope, key=key, operation=operation, params=params)
        return record, replayed, None if replayed else _lock_wallet(wallet_id)
    fingerprint = request_fingerprint(operation, params)
    created_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_claim_and_lock_sql(), [scope, key, operation, fingerprint, created_at, wallet_id])
        row = cursor.fetchone()
    if row is None:
        raise Wallet.DoesNotExist(f"Wallet {wallet_id} does not exist.")
    claimed_id, values = row[0], row[1:]
    n_wallet, n_team = len(Wallet._meta.concrete_fields), len(Team._meta.concrete_fields)
    wallet = _from_row(Wallet, values[:n_wallet])
    team = _from_row(Team, values[n_wallet:n_wallet + n_team])
    settings_values = values[n_wallet + n_team:]
    billing = None if settings_values[0] is None else _from_row(BillingSettings, settings_values)
    # As select_related("team__billing_settings") would: no further query for wallet.team or
    # team.billing_settings (a missing row is cached as None, so billing_settings_get sees DoesNotExist).
    Wallet.team.field.set_cached_value(wallet, team)
    Team.billing_settings.related.set_cached_value(team, billing)
    if billing is not None:
        BillingSettings.team.field.set_cached_value(billing, team)
    if claimed_id is None:
        return _claimed_record(scope=scope, key=key, fingerprint=fingerprint), True, wallet
    record = IdempotencyRecord(pk=claimed_id, scope=scope, key=key, operation=operation, fingerprint=fingerprint,
                               created_at=created_at)
    record._state.adding = False
    return record, False, wallet


@functools.cache
def _wallet_total_fields() -> tuple:
    return tuple(map(Wallet._meta.get_field, _WALLET_TOTALS))


@functools.cache
def _write_entry_sql() -> str:
    """``WITH entry AS (INSERT ledger entry), totals AS (UPDATE wallet) UPDATE idempotency record … RETURNING entry id``."""
    qn = connection.ops.quote_name
    entry_fields = [f for f in LedgerEntry._meta.concrete_fields if not f.primary_key]
    wallet, record = Wallet._meta, qn(IdempotencyRecord._meta.db_table)
    totals = ", ".join(f"{qn(wallet.get_field(name).column)} = %s" for name in _WALLET_TOTALS)
    return (
        f"WITH entry AS (INSERT INTO {qn(LedgerEntry._meta.db_table)} ({', '.join(qn(f.column) for f in entry_fields)}) "
        f"VALUES ({', '.join(['%s'] * len(entry_fields))}) RETURNING id), "
        f"totals AS (UPDATE {qn(wallet.db_table)} SET {totals} WHERE {qn(wallet.pk.column)} = %s) "
        f"UPDATE {record} SET result_type = %s, result_id = entry.id::text, "
        "response = %s::jsonb || jsonb_build_object('id', entry.id) "
        f"FROM entry WHERE {record}.id = %s RETURNING entry.id"
    )


def _write_entry(wallet: Wallet, entry: LedgerEntry, record: IdempotencyRecord) -> None:
    """Insert ``entry`` (unsaved, built under the lock), store ``wallet``'s totals, record the result.

    One statement on PostgreSQL (the response's ``id`` is filled in from the inserted row); the
    ORM's three elsewhere. The chain rule is checked in Decimal first either way.
    """
    entry.check_chain()
    if not _single_statement_paths():
        entry.save(force_insert=True)
        _save_wallet(wallet)
        result_type, response = _response(entry)
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            result_type=result_type, result_id=str(entry.pk), response=response
        )
    else:
        db = connections[DEFAULT_DB_ALIAS]  # the real connection: every access through the proxy costs
        wallet.updated_at = timezone.now()
        entry_values = [
            f.get_db_prep_save(f.pre_save(entry, True), db) for f in LedgerEntry._meta.concrete_fields if not f.primary_key
        ]
        wallet_values = [f.get_db_prep_save(getattr(wallet, f.attname), db) for f in _wallet_total_fields()]
        result_type, response = _response(entry)  # "id": null until the insert assigns it
        with db.cursor() as cursor:
            cursor.execute(_write_entry_sql(), [
                *entry_values, *wallet_values, wallet.pk, result_type, json.dumps(response), record.pk,
            ])
            entry.pk = cursor.fetchone()[0]
        entry._state.adding, entry._state.db = False, db.alias
        response["id"] = entry.pk
    record.result_type, record.result_id, record.response = result_type, str(entry.pk), response


def _wallet_frozen(wallet_id: int, status: str) -> WalletFrozen:
    return WalletFrozen(f"Wallet {wallet_id} is {status}: it accepts no charges, holds or captures.")


def _insufficient_funds(wallet_id: int, available: Decimal, amount: Decimal, currency: str) -> InsufficientFunds:
    return InsufficientFunds(
        f"Insufficient funds: wallet {wallet_id} has {available} {currency} available, {amount} {currency} needed.",
        requested=amount, available=available, currency=currency,
    )


def _check_not_frozen(wallet: Wallet) -> None:
    if wallet.status != Wallet.Status.ACTIVE:
        raise _wallet_frozen(wallet.pk, wallet.status)


def _check_not_closed(wallet: Wallet) -> None:
    if wallet.status == Wallet.Status.CLOSED:
        raise WalletFrozen(f"Wallet {wallet.pk} is closed.")


def _funds_shortfall(wallet: Wallet, billing: BillingSettings, amount: Decimal) -> Decimal | None:
    """``None`` when ``amount`` may be spent, else the available credit that falls short."""
    floor = billing.spending_floor()
    if floor is None:
        return None
    if wallet.balance - wallet.reserved - amount < floor:
        return wallet.available(billing)
    return None


def _check_funds(wallet: Wallet, billing: BillingSettings, amount: Decimal) -> None:
    available = _funds_shortfall(wallet, billing, amount)
    if available is not None:
        raise _insufficient_funds(wallet.pk, available, amount, wallet.currency)


def _post(wallet: Wallet, *, entry_type: str, amount: Decimal = ZERO, reserved_delta: Decimal = ZERO,
          idempotency_key: str = "", reference_type: str = "", reference_id: object = "", feature_key: str = "",
          description: str = "", created_by=None, metadata: dict | None = None, write: bool = True) -> LedgerEntry:
    """Insert one ledger entry continuing the locked wallet's chain, and advance the wallet in memory.

    ``write=False`` returns the entry unsaved, for ``_idempotent`` to insert with the wallet's totals.
    """
    entry = LedgerEntry(
        wallet=wallet, entry_type=entry_type, amount=amount, reserved_delta=reserved_delta,
        balance_before=wallet.balance, balance_after=wallet.balance + amount,
        reserved_before=wallet.reserved, reserved_after=wallet.reserved + reserved_delta,
        currency=wallet.currency, idempotency_key=idempotency_key, reference_type=reference_type,
        reference_id=str(reference_id), feature_key=feature_key, description=description[:500],
        created_by=created_by, metadata=metadata or {},
    )
    if write:
        entry.save(force_insert=True)
    wallet.balance = entry.balance_after
    wallet.reserved = entry.reserved_after
    return entry


def _save_wallet(wallet: Wallet) -> None:
    wallet.save(update_fields=_WALLET_TOTALS)


def _consume_grants(wallet: Wallet, amount: Decimal) -> None:
    """Spend up to ``amount`` of the wallet's granted lots: soonest expiry first, no expiry last."""
    to_take = min(amount, wallet.granted_balance)
    if to_take <= 0:
        return
    lots = (
        CreditGrant.objects.filter(wallet=wallet, remaining__gt=0)
        .order_by(F("expires_at").asc(nulls_last=True), "pk")
    )
    for lot in lots:
        take = min(lot.remaining, to_take)
        lot.remaining -= take
        lot.save(update_fields=["remaining"])
        wallet.granted_balance -= take
        to_take -= take
        if to_take <= 0:
            break


def _debit(wallet: Wallet, billing: BillingSettings, *, entry_type: str, amount: Decimal,
           reserved_delta: Decimal = ZERO, **fields) -> LedgerEntry:
    """Post a debit of ``amount`` (> 0), spending granted credit first, and watch the warning threshold."""
    balance_before = wallet.balance
    _consume_grants(wallet, amount)
    entry = _post(wallet, entry_type=entry_type, amount=-amount, reserved_delta=reserved_delta, **fields)
    _after_debit(wallet, billing, balance_before)
    return entry


def _credit(wallet: Wallet, billing: BillingSettings, *, entry_type: str, amount: Decimal, **fields) -> LedgerEntry:
    entry = _post(wallet, entry_type=entry_type, amount=amount, **fields)
    _after_credit(wallet, billing)
    return entry


# --- low-balance warning ------------------------------------------------------------------------


def _after_debit(wallet: Wallet, billing: BillingSettings, balance_before: Decimal) -> None:
    """One warning per crossing: from at/above the threshold to below it, while not yet warned."""
    threshold = billing.warning_threshold(wallet.last_top_up_amount)
    if threshold is None or wallet.low_balance_warned:
        return
    if balance_before >= threshold > wallet.balance:
        wallet.low_balance_warned = True
        _low_balance_warn(wallet, billing, threshold)


def _low_balance_warn(wallet: Wallet, billing: BillingSettings, threshold: Decimal) -> None:
    """Mail the team's notify addresses (if it wants them) that ``wallet`` fell below ``threshold``."""
    recipients = billing.notify_email_list
    if billing.notify_on_warning and recipients:
        subject, body = _low_balance_message(wallet, threshold)
        # After commit only: a rolled-back charge must not warn. robust: a mail failure is
        # logged, it cannot undo a committed charge.
        transaction.on_commit(
            lambda: send_mail(subject, body, django_settings.DEFAULT_FROM_EMAIL, recipients), robust=True
        )


def _after_credit(wallet: Wallet, billing: BillingSettings) -> None:
    """Re-arm the warning once a credit lifts the balance back to the threshold."""
    if not wallet.low_balance_warned:
        return
    threshold = billing.warning_threshold(wallet.last_top_up_amount)
    if threshold is None or wallet.balance >= threshold:
        wallet.low_balance_warned = False


def _low_balance_message(wallet: Wallet, threshold: Decimal) -> tuple[str, str]:
    owner = f"{wallet.team.name} / {wallet.user}" if wallet.user_id else wallet.team.name
    subject = f"Low credit balance: {owner}"
    body = (
        f"The prepaid credit balance of {owner} fell below the warning threshold.\n\n"
        f"Balance:   {wallet.balance.normalize():f} {wallet.currency}\n"
        f"Reserved:  {wallet.reserved.normalize():f} {wallet.currency}\n"
        f"Threshold: {threshold.normalize():f} {wallet.currency}\n\n"
        f"Top up the wallet to keep services running."
    )
    return subject, body


# --- wallets and settings -----------------------------------------------------------------------


def billing_settings_update(*, team: Team, **changes: Any) -> BillingSettings:
    """Create or change a team's billing settings; fields as on :class:`BillingSettings`.

    Raises :class:`InvalidRequest` for an unknown field and ``ValidationError`` for invalid values
    (bad e-mail address, threshold out of range).
    """
    allowed = {
        f.name for f in BillingSettings._meta.concrete_fields if f.name not in {"id", "team", "updated_at"}
    }
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidRequest(f"unknown billing settings: {', '.join(sorted(unknown))}", param=sorted(unknown)[0])
    with transaction.atomic():
        billing = BillingSettings.objects.select_for_update().filter(team=team).first() or BillingSettings(team=team)
        for name, value in changes.items():
            setattr(billing, name, value)
        billing.full_clean(exclude=["team"] if billing._state.adding else None)
        billing.save()
    team.billing_settings = billing
    return billing


def wallet_open(*, team: Team, user=None, currency: str | None = None) -> Wallet:
    """The live wallet of ``team`` (of ``user`` within it when given) in ``currency``, created if missing.

    ``currency`` defaults to the team's. A user's wallet needs the user to be a member of the team.
    Safe under concurrency: the partial unique constraints admit one live wallet; a loser of the
    race reads the winner's. Raises :class:`InvalidRequest` for a user outside the team.
    """
    currency = (currency or team.currency).upper()
    if user is not None and not TeamMembership.objects.filter(team=team, user=user).exists():
        raise InvalidRequest(f"user {user} is not a member of team {team}", param="user")
    live = Wallet.objects.exclude(status=Wallet.Status.CLOSED).filter(team=team, user=user, currency=currency)
    wallet = live.first()
    if wallet is not None:
        return wallet
    try:
        with transaction.atomic():
            return Wallet.objects.create(team=team, user=user, currency=currency)
    except IntegrityError:
        return live.get()


def _set_status(wallet: Wallet, frm: str, to: str) -> Wallet:
    with transaction.atomic():
        locked = _lock_wallet(wallet.pk)
        if locked.status == to:
            return locked
        if locked.status != frm:
            raise InvalidRequest(f"wallet {locked.pk} is {locked.status}; only a {frm} wallet can become {to}", param="status")
        locked.status = to
        locked.save(update_fields=["status", "updated_at"])
        return locked


def wallet_freeze(*, wallet: Wallet) -> Wallet:
    """Freeze an active wallet: charges, holds and captures are refused (credits and releases are not)."""
    return _set_status(wallet, Wallet.Status.ACTIVE, Wallet.Status.FROZEN)


def wallet_unfreeze(*, wallet: Wallet) -> Wallet:
    """Make a frozen wallet active again."""
    return _set_status(wallet, Wallet.Status.FROZEN, Wallet.Status.ACTIVE)


# --- money-moving services ----------------------------------------------------------------------


def wallet_top_up(*, wallet: Wallet, amount: Decimal, idempotency_key: str, description: str = "",
                  reference_type: str = "external_payment", reference_id: str = "", created_by=None,
                  metadata: dict | None = None) -> LedgerEntry:
    """Credit purchased credit to ``wallet``: a ``top_up`` entry of ``amount`` (> 0, 12 dp, wallet currency).

    Sets the wallet's last top-up (the base of a percent warning threshold) and re-arms the
    low-balance warning. Allowed on frozen wallets, refused on closed ones.
    Raises ``InvalidAmount``, ``WalletFrozen`` (closed), ``IdempotencyError``.
    """
    amount = _positive(amount, "amount")
    params = {"wallet": wallet.pk, "amount": amount, "description": description, "reference_type": reference_type,
              "reference_id": reference_id, "metadata": metadata or {}}

    def body(locked: Wallet) -> LedgerEntry:
        _check_not_closed(locked)
        billing = billing_settings_get(team=locked.team)
        locked.last_top_up_amount = amount
        return _credit(locked, billing, entry_type=Entry.TOP_UP, amount=amount, idempotency_key=idempotency_key,
                       reference_type=reference_type, reference_id=reference_id, description=description,
                       created_by=created_by, metadata=metadata, write=False)

    return _idempotent(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_top_up",
                       params=params, body=body, wallet_id=wallet.pk)[0]


def wallet_grant(*, wallet: Wallet, amount: Decimal, idempotency_key: str, expires_at: dt.datetime | None = None,
                 description: str = "", created_by=None, metadata: dict | None = None) -> LedgerEntry:
    """Give promotional credit: a ``grant`` entry and a :class:`CreditGrant` lot of ``amount`` (> 0).

    Granted credit is spent before purchased credit; ``expires_at`` (aware, in the future, optional)
    is when ``expire_grants`` removes what is left of it. Raises ``InvalidAmount``,
    ``InvalidRequest`` (expiry in the past), ``WalletFrozen`` (closed), ``IdempotencyError``.
    """
    amount = _positive(amount, "amount")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("expires_at must be in the future", param="expires_at")
    params = {"wallet": wallet.pk, "amount": amount, "expires_at": expires_at, "description": description,
              "metadata": metadata or {}}

    def body() -> LedgerEntry:
        locked = _lock_wallet(wallet.pk)
        _check_not_closed(locked)
        billing = billing_settings_get(team=locked.team)
        entry = _credit(locked, billing, entry_type=Entry.GRANT, amount=amount, idempotency_key=idempotency_key,
                        reference_type="credit_grant", description=description, created_by=created_by,
                        metadata=metadata)
        CreditGrant.objects.create(wallet=locked, entry=entry, amount=amount, remaining=amount, expires_at=expires_at)
        locked.granted_balance += amount
        _save_wallet(locked)
        return entry

    return _idempotent(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_grant",
                       params=params, body=body)[0]


def wallet_charge(*, wallet: Wallet, amount: Decimal, idempotency_key: str, feature_key: str = "",
                  description: str = "", reference_type: str = "", reference_id: str = "", created_by=None,
                  metadata: dict | None = None) -> LedgerEntry:
    """Debit ``amount`` (> 0, 12 dp, wallet currency) from ``wallet`` with one ``charge`` entry.

    Checks available credit against the team's floor (0 with block on zero balance, −credit limit
    for postpaid, none for unlimited or without block); spends granted credit first; may send the
    low-balance e-mail after commit. Raises ``InvalidAmount``, ``WalletFrozen``,
    ``InsufficientFunds`` (nothing moved, nothing recorded), ``IdempotencyError``.

    On PostgreSQL one call of the SQL function ``wallets_charge`` (migration 0006) does it all in
    one statement; elsewhere the same steps run through the ORM (:func:`_charge_in_python`).
    """
    amount = _positive(amount, "amount")
    charge = _charge_by_function if _single_statement_paths() else _charge_in_python
    return charge(wallet=wallet, amount=amount, idempotency_key=_check_key(idempotency_key), feature_key=feature_key,
                  description=description, reference_type=reference_type, reference_id=reference_id,
                  created_by=created_by, metadata=metadata or {})


def _charge_params(*, wallet: Wallet, amount: Decimal, feature_key: str, description: str, reference_type: str,
                   reference_id: object, metadata: dict) -> dict:
    """What a ``wallet_charge`` key is bound to (its fingerprint's parameters, ``reference_id`` as given)."""
    return {"wallet": wallet.pk, "amount": amount, "feature_key": feature_key, "description": description,
            "reference_type": reference_type, "reference_id": reference_id, "metadata": metadata}


def _charge_in_python(*, wallet: Wallet, amount: Decimal, idempotency_key: str, feature_key: str, description: str,
                      reference_type: str, reference_id: object, created_by, metadata: dict) -> LedgerEntry:
    """``wallet_charge`` step by step through the ORM: SQLite's path, and the reference for the SQL function."""
    params = _charge_params(wallet=wallet, amount=amount, feature_key=feature_key, description=description,
                            reference_type=reference_type, reference_id=reference_id, metadata=metadata)

    def body(locked: Wallet) -> LedgerEntry:
        _check_not_frozen(locked)
        billing = billing_settings_get(team=locked.team)
        _check_funds(locked, billing, amount)
        # The entry, the wallet's totals and the idempotency record's result are written by
        # _idempotent in one statement (PostgreSQL); granted lots are spent here (no query without any).
        return _debit(locked, billing, entry_type=Entry.CHARGE, amount=amount, idempotency_key=idempotency_key,
                      feature_key=feature_key, reference_type=reference_type, reference_id=reference_id,
                      description=description, created_by=created_by, metadata=metadata, write=False)

    return _idempotent(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_charge",
                       params=params, body=body, wallet_id=wallet.pk)[0]


#: ``wallets_charge(...)``, the SQL function of migration 0006: see its docstring for the steps.
_CHARGE_FUNCTION_SQL = f"SELECT * FROM wallets_charge({', '.join(['%s'] * 18)})"
#: SQLSTATEs the function raises (RAISE … USING ERRCODE; DETAIL carries the figure named).
SQLSTATE_INSUFFICIENT_FUNDS = "WL402"  # DETAIL: the available credit
SQLSTATE_NO_WALLET = "WL404"
SQLSTATE_WALLET_NOT_ACTIVE = "WL409"  # DETAIL: the wallet's status


@functools.cache
def _billing_defaults() -> tuple:
    """What a team without a ``BillingSettings`` row is charged under: the model's field defaults."""
    field = BillingSettings._meta.get_field
    return (str(field("billing_model").get_default()), field("credit_limit").get_default(),
            str(field("warning_threshold_type").get_default()), field("warning_threshold_value").get_default(),
            field("block_on_zero_balance").get_default())


def _charge_by_function(*, wallet: Wallet, amount: Decimal, idempotency_key: str, feature_key: str, description: str,
                        reference_type: str, reference_id: object, created_by, metadata: dict) -> LedgerEntry:
    """``wallet_charge`` on PostgreSQL: one call of ``wallets_charge`` (one statement, one round trip).

    In autocommit mode the statement is the transaction; inside a caller's transaction it runs in a
    savepoint, so a refusal leaves the caller's transaction usable, as the Python path's nested
    ``atomic`` does. The function raises with its own SQLSTATEs; they become the same errors, with
    the same messages, as the Python path's.
    """
    params = _charge_params(wallet=wallet, amount=amount, feature_key=feature_key, description=description,
                            reference_type=reference_type, reference_id=reference_id, metadata=metadata)
    scope, fingerprint, now = f"team:{wallet.team_id}", request_fingerprint("wallet_charge", params), timezone.now()
    description, reference_id = description[:500], str(reference_id)  # as _post stores them
    args = [
        wallet.pk, scope, idempotency_key, fingerprint, amount, feature_key, description, reference_type,
        reference_id, getattr(created_by, "pk", None),
        LedgerEntry._meta.get_field("metadata").get_db_prep_save(metadata, connection), now, now.isoformat(),
        *_billing_defaults(),
    ]
    try:
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            with connection.cursor() as cursor:
                cursor.execute(_CHARGE_FUNCTION_SQL, args)
                replayed, entry_id, before, after, reserved, crossed, notify = cursor.fetchone()
    except DatabaseError as exc:
        sqlstate = getattr(exc.__cause__, "sqlstate", None)
        if sqlstate == SQLSTATE_INSUFFICIENT_FUNDS:
            available = Decimal(exc.__cause__.diag.message_detail)
            raise _insufficient_funds(wallet.pk, available, amount, wallet.currency) from None
        if sqlstate == SQLSTATE_WALLET_NOT_ACTIVE:
            raise _wallet_frozen(wallet.pk, exc.__cause__.diag.message_detail) from None
        if sqlstate == SQLSTATE_NO_WALLET:
            raise Wallet.DoesNotExist(f"Wallet {wallet.pk} does not exist.") from None
        raise
    if replayed:
        return _replay(_claimed_record(scope=scope, key=idempotency_key, fingerprint=fingerprint))
    entry = LedgerEntry(
        pk=entry_id, wallet_id=wallet.pk, entry_type=Entry.CHARGE, amount=-amount, reserved_delta=ZERO,
        balance_before=before, balance_after=after, reserved_before=reserved, reserved_after=reserved,
        currency=wallet.currency, idempotency_key=idempotency_key, reference_type=reference_type,
        reference_id=reference_id, feature_key=feature_key, description=description, created_by=created_by,
        created_at=now, metadata=metadata,
    )
    entry._state.adding, entry._state.db, entry.replayed = False, connection.alias, False
    if crossed is not None and notify:  # rare: read the team and its addresses for the e-mail
        current = Wallet.objects.select_related("team__billing_settings", "user").get(pk=wallet.pk)
        # The e-mail states the figures this charge left, not those of a charge committed since.
        current.balance, current.reserved = after, reserved
        _low_balance_warn(current, billing_settings_get(team=current.team), crossed)
    return entry


def wallet_refund(*, entry: LedgerEntry, amount: Decimal, idempotency_key: str, description: str = "",
                  created_by=None, metadata: dict | None = None) -> LedgerEntry:
    """Give back up to what is left of a debit (a ``charge`` or ``hold_capture`` entry) as a ``refund`` entry.

    The refund is purchased credit (granted credit spent by the charge is not restored). The total
    of the refunds of one entry never exceeds its amount. Raises ``InvalidAmount`` (beyond what is
    left), ``InvalidRequest`` (not a debit), ``WalletFrozen`` (closed), ``IdempotencyError``.
    """
    amount = _positive(amount, "amount")
    if entry.entry_type not in (Entry.CHARGE, Entry.HOLD_CAPTURE):
        raise InvalidRequest(f"only charges and captures are refunded, entry {entry.pk} is a {entry.entry_type}",
                             param="entry")
    params = {"entry": entry.pk, "amount": amount, "description": description, "metadata": metadata or {}}

    def body(locked: Wallet) -> LedgerEntry:
        _check_not_closed(locked)
        # Under the wallet lock no other refund of this entry can be posted concurrently.
        refunded = LedgerEntry.objects.filter(
            wallet=locked, entry_type=Entry.REFUND, reference_type="ledger_entry", reference_id=str(entry.pk)
        ).aggregate(total=MeteredSum("amount"))["total"] or ZERO
        left = -entry.amount - refunded
        if amount > left:
            raise InvalidAmount(f"amount {amount} exceeds what is left to refund of entry {entry.pk}: {left}",
                                param="amount")
        billing = billing_settings_get(team=locked.team)
        return _credit(locked, billing, entry_type=Entry.REFUND, amount=amount, idempotency_key=idempotency_key,
                       reference_type="ledger_entry", reference_id=entry.pk, feature_key=entry.feature_key,
                       description=description, created_by=created_by, metadata=metadata, write=False)

    return _idempotent(team_id=entry.wallet.team_id, idempotency_key=idempotency_key, operation="wallet_refund",
                       params=params, body=body, wallet_id=entry.wallet_id)[0]


def wallet_adjust(*, wallet: Wallet, amount: Decimal, idempotency_key: str, description: str, created_by=None,
                  reference_type: str = "admin_action", reference_id: str = "",
                  metadata: dict | None = None) -> LedgerEntry:
    """A finance correction: an ``adjustment`` entry of signed, non-zero ``amount`` with a reason.

    Not checked against available credit (a correction must always be possible); a negative
    adjustment spends granted credit first like any debit. Raises ``InvalidAmount`` (zero),
    ``InvalidRequest`` (no description), ``WalletFrozen`` (closed), ``IdempotencyError``.
    """
    amount = _decimal(amount, "amount")
    if amount == 0:
        raise InvalidAmount("amount of an adjustment must not be zero", param="amount")
    if not description.strip():
        raise InvalidRequest("an adjustment needs a description (its reason)", param="description")
    params = {"wallet": wallet.pk, "amount": amount, "description": description, "reference_type": reference_type,
              "reference_id": reference_id, "metadata": metadata or {}}

    def body(locked: Wallet) -> LedgerEntry:
        _check_not_closed(locked)
        billing = billing_settings_get(team=locked.team)
        fields = {"idempotency_key": idempotency_key, "reference_type": reference_type, "reference_id": reference_id,
                  "description": description, "created_by": created_by, "metadata": metadata, "write": False}
        if amount > 0:
            return _credit(locked, billing, entry_type=Entry.ADJUSTMENT, amount=amount, **fields)
        return _debit(locked, billing, entry_type=Entry.ADJUSTMENT, amount=-amount, **fields)

    return _idempotent(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_adjust",
                       params=params, body=body, wallet_id=wallet.pk)[0]


def wallet_settle_invoice(*, invoice, amount: Decimal, payment_reference: str = "", created_by=None) -> LedgerEntry:
    """Settle a postpaid team's wallet with a paid invoice: one ``invoice_settlement`` entry crediting ``amount``.

    Args:
        invoice: the ``invoices.models.Invoice`` being paid (its team's wallet in its currency is
            credited; the wallet is opened if the team has none).
        amount: what was paid, a positive Decimal in the invoice's currency (the invoice's
            ``amount_due``, minor units).
        payment_reference: the bank or transfer reference, kept in the entry's metadata.
        created_by: the user recording the payment.

    Idempotent by invoice: the key ``invoice-settlement-<pk>`` is claimed like any idempotency key,
    and the ledger's unique ``(wallet, entry_type, idempotency_key)`` stops a second entry even after
    the key's record is purged; a replay returns the first entry. Allowed on frozen wallets (a
    payment must always be recordable), refused on closed ones. The rule: issue 3, "the debt is
    settled by invoice"; the caller (``invoices.services.invoice_mark_paid``) holds the invoice lock.

    Raises ``InvalidAmount``, ``WalletFrozen`` (closed), ``IdempotencyError`` (a second settlement
    of the invoice with another amount).
    """
    amount = _positive(amount, "amount")
    wallet = wallet_open(team=invoice.team, currency=invoice.currency)
    key = f"invoice-settlement-{invoice.pk}"
    params = {"invoice": invoice.pk, "amount": amount}

    def body(locked: Wallet) -> LedgerEntry:
        _check_not_closed(locked)
        billing = billing_settings_get(team=locked.team)
        return _credit(locked, billing, entry_type=Entry.INVOICE_SETTLEMENT, amount=amount, idempotency_key=key,
                       reference_type="invoice", reference_id=invoice.pk,
                       description=f"Settlement of invoice {invoice.number}", created_by=created_by,
                       metadata={"invoice_number": invoice.number, "payment_reference": payment_reference},
                       write=False)

    return _idempotent(team_id=invoice.team_id, idempotency_key=key, operation="wallet_settle_invoice",
                       params=params, body=body, wallet_id=wallet.pk)[0]


def wallet_hold(*, wallet: Wallet, amount: Decimal, idempotency_key: str, expires_at: dt.datetime | None = None,
                feature_key: str = "", description: str = "", reference_type: str = "", reference_id: str = "",
                created_by=None, metadata: dict | None = None) -> Hold:
    """Reserve ``amount`` (> 0) of available credit: a :class:`Hold` and a ``hold`` entry (reserved += amount).

    The balance does not change; available credit drops by ``amount``. ``expires_at``: when
    ``expire_grants`` releases it if still open. Raises ``InvalidAmount``, ``WalletFrozen``,
    ``InsufficientFunds``, ``IdempotencyError``.
    """
    amount = _positive(amount, "amount")
    params = {"wallet": wallet.pk, "amount": amount, "expires_at": expires_at, "feature_key": feature_key,
              "description": description, "reference_type": reference_type, "reference_id": reference_id,
              "metadata": metadata or {}}

    def body() -> Hold:
        locked = _lock_wallet(wallet.pk)
        _check_not_frozen(locked)
        billing = billing_settings_get(team=locked.team)
        _check_funds(locked, billing, amount)
        hold = Hold.objects.create(
            wallet=locked, amount=amount, expires_at=expires_at, feature_key=feature_key, description=description,
            reference_type=reference_type, reference_id=reference_id, created_by=created_by,
        )
        _post(locked, entry_type=Entry.HOLD, reserved_delta=amount, idempotency_key=idempotency_key,
              reference_type="hold", reference_id=hold.pk, feature_key=feature_key, description=description,
              created_by=created_by, metadata=metadata)
        _save_wallet(locked)
        return hold

    return _idempotent(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_hold",
                       params=params, body=body)[0]


def hold_capture(*, hold: Hold, idempotency_key: str, amount: Decimal | None = None, feature_key: str | None = None,
                 description: str = "", created_by=None, metadata: dict | None = None) -> Hold:
    """Capture ``amount`` (default: all; any amount > 0 up to the hold) and release the rest.

    Posts a ``hold_capture`` entry (balance −amount, reserved −amount; granted credit first) and,
    for a partial capture, a ``hold_release`` entry for the remainder (Stripe releases the
    uncaptured part of a partial capture). A hold is captured once. Raises ``InvalidAmount``
    (beyond the hold), ``HoldNotOpen``, ``WalletFrozen``, ``IdempotencyError``.
    """
    amount = hold.amount if amount is None else _positive(amount, "amount")
    params = {"hold": hold.pk, "amount": amount, "feature_key": feature_key, "description": description,
              "metadata": metadata or {}}

    def body() -> Hold:
        locked = _lock_wallet(hold.wallet_id)
        current = Hold.objects.get(pk=hold.pk)  # re-read under the wallet lock, which guards its holds
        if current.status != Hold.Status.OPEN:
            raise HoldNotOpen(f"hold {current.pk} is already {current.status}")
        if amount > current.amount:
            raise InvalidAmount(f"amount {amount} exceeds the hold of {current.amount}", param="amount")
        _check_not_frozen(locked)
        billing = billing_settings_get(team=locked.team)
        fkey = current.feature_key if feature_key is None else feature_key
        _debit(locked, billing, entry_type=Entry.HOLD_CAPTURE, amount=amount, reserved_delta=-amount,
               idempotency_key=idempotency_key, reference_type="hold", reference_id=current.pk, feature_key=fkey,
               description=description, created_by=created_by, metadata=metadata)
        rest = current.amount - amount
        if rest:
            _post(locked, entry_type=Entry.HOLD_RELEASE, reserved_delta=-rest, idempotency_key=idempotency_key,
                  reference_type="hold", reference_id=current.pk, feature_key=fkey,
                  description="Uncaptured remainder released", created_by=created_by)
        current.status, current.captured_amount, current.released_amount = Hold.Status.CAPTURED, amount, rest
        current.closed_at = timezone.now()
        current.save(update_fields=["status", "captured_amount", "released_amount", "closed_at"])
        _save_wallet(locked)
        return current

    return _idempotent(team_id=hold.wallet.team_id, idempotency_key=idempotency_key, operation="hold_capture",
                       params=params, body=body)[0]


def _release(locked: Wallet, current: Hold, *, idempotency_key: str, description: str, created_by) -> Hold:
    if current.status != Hold.Status.OPEN:
        raise HoldNotOpen(f"hold {current.pk} is already {current.status}")
    _post(locked, entry_type=Entry.HOLD_RELEASE, reserved_delta=-current.amount, idempotency_key=idempotency_key,
          reference_type="hold", reference_id=current.pk, feature_key=current.feature_key,
          description=description, created_by=created_by)
    current.status, current.released_amount, current.closed_at = Hold.Status.RELEASED, current.amount, timezone.now()
    current.save(update_fields=["status", "released_amount", "closed_at"])
    billing = billing_settings_get(team=locked.team)
    _after_credit(locked, billing)
    _save_wallet(locked)
    return current


def hold_release(*, hold: Hold, idempotency_key: str, description: str = "", created_by=None) -> Hold:
    """Release an open hold entirely: a ``hold_release`` entry (reserved −amount); allowed on frozen wallets.

    Raises ``HoldNotOpen``, ``IdempotencyError``.
    """
    params = {"hold": hold.pk, "description": description}

    def body() -> Hold:
        locked = _lock_wallet(hold.wallet_id)
        return _release(locked, Hold.objects.get(pk=hold.pk), idempotency_key=idempotency_key,
                        description=description, created_by=created_by)

    return _idempotent(team_id=hold.wallet.team_id, idempotency_key=idempotency_key, operation="hold_release",
                       params=params, body=body)[0]


# --- expiry (the expire_grants command) -----------------------------------------------------------


def grants_expire(*, now: dt.datetime | None = None) -> list[LedgerEntry]:
    """Expire what is left of grants whose ``expires_at`` ≤ ``now``: one ``expiry`` entry per lot.

    Per wallet, in pk order, one transaction each. Only credit not backing open holds expires
    (at most ``balance − reserved``), so expiry never pushes available credit below zero; the
    rest of such a lot expires on a later run, once its holds are settled (captures spend the
    soonest-expiring credit first, so usually nothing is left). Running it twice expires nothing
    twice: a lot's ``remaining`` is 0 afterwards and the entry's idempotency key names the lot and
    the amount left. Returns the entries written.
    """
    now = now or timezone.now()
    wallet_ids = sorted(set(
        CreditGrant.objects.filter(expires_at__lte=now, remaining__gt=0).values_list("wallet_id", flat=True)
    ))
    written: list[LedgerEntry] = []
    for wallet_id in wallet_ids:
        with transaction.atomic():
            locked = _lock_wallet(wallet_id)
            billing = billing_settings_get(team=locked.team)
            lots = CreditGrant.objects.filter(wallet=locked, expires_at__lte=now, remaining__gt=0).order_by("expires_at", "pk")
            for lot in lots:
                expirable = min(lot.remaining, max(locked.balance - locked.reserved, ZERO), locked.granted_balance)
                if expirable <= 0:
                    continue
                key = f"expire-grant-{lot.pk}-{lot.remaining}"
                balance_before = locked.balance
                entry = _post(locked, entry_type=Entry.EXPIRY, amount=-expirable, idempotency_key=key,
                              reference_type="credit_grant", reference_id=lot.pk,
                              description=f"Expiry of granted credit (grant {lot.pk})")
                lot.remaining -= expirable
                locked.granted_balance -= expirable
                if lot.remaining == 0:
                    lot.expired_at = now
                lot.save(update_fields=["remaining", "expired_at"])
                _after_debit(locked, billing, balance_before)
                written.append(entry)
            _save_wallet(locked)
    return written


def holds_release_expired(*, now: dt.datetime | None = None) -> list[Hold]:
    """Release every open hold whose ``expires_at`` ≤ ``now`` (a ``hold_release`` entry each)."""
    now = now or timezone.now()
    released = []
    for hold in Hold.objects.filter(status=Hold.Status.OPEN, expires_at__lte=now).order_by("wallet_id", "pk"):
        with transaction.atomic():
            locked = _lock_wallet(hold.wallet_id)
            current = Hold.objects.get(pk=hold.pk)
            if current.status == Hold.Status.OPEN:
                released.append(_release(locked, current, idempotency_key=f"expire-hold-{current.pk}",
                                         description="Hold expired", created_by=None))
    return released


# --- quotes and usage-event charges ---------------------------------------------------------------


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


_ITEM_FIELDS = ("category", "provider", "model", "unit")
MAX_ITEMS = 100


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
        row["quantity"] = _not_negative(item.get("quantity"), f"items[{i}].quantity")
        parsed.append(row)
    return parsed


def _quote(team: Team, billing: BillingSettings, parsed: list[dict], at: dt.datetime) -> Quote:
    """Price the parsed items at ``at`` (one catalog query for all of them, ``price_resolve``'s rule)."""
    items = [(row["category"], row["provider"], row["model"], row["unit"]) for row in parsed]
    candidates = price_candidates(team=team, items=items, at=at)
    priced = []
    for i, (row, item) in enumerate(zip(parsed, items)):
        if not billing.provider_allowed(row["provider"]):
            raise ProviderNotAllowed(
                f"provider {row['provider']!r} is not allowed for team {team.slug}", param=f"items[{i}].provider"
            )
        price = price_pick(candidates[item], team=team, at=at)
        if price is None:
            raise PriceNotFound(str(price_not_found(team=team, item=item, at=at)), param=f"items[{i}]")
        priced.append(QuoteItem(
            category=row["category"], provider=row["provider"], model=row["model"], unit=row["unit"],
            quantity=row["quantity"], unit_price=price.unit_price,
            cost=quantize_metered(row["quantity"] * price.unit_price), currency=price.currency, price_id=price.pk,
        ))
    currencies = {p.currency for p in priced}
    if len(currencies) > 1:
        raise InvalidRequest(f"items are priced in different currencies: {', '.join(sorted(currencies))}", param="items")
    return Quote(items=tuple(priced), total=sum((p.cost for p in priced), ZERO), currency=currencies.pop())


def quote(*, team: Team, items: Sequence[Mapping[str, Any]], at: dt.datetime | None = None) -> Quote:
    """Price ``items`` from the catalog (the team's override first, then the global price); writes nothing.

    ``items``: ``[{"category", "provider", "model", "unit", "quantity"}]`` with ``quantity`` a
    Decimal ≥ 0. ``at``: the time the prices are valid at (default now). Each cost is
    ``quantity × unit_price`` rounded half-up to 12 dp; the total is their exact sum.
    Raises ``InvalidRequest``, ``InvalidAmount`` (a quantity), ``ProviderNotAllowed``, ``PriceNotFound``.
    """
    return _quote(team, billing_settings_get(team=team), _parse_items(items), at or timezone.now())


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
    ``ProviderNotAllowed``, ``PriceNotFound``, ``IdempotencyError``. Refusals that are recorded:
    insufficient funds (with the team's floor) and a frozen wallet commit the event as ``rejected``
    with its items and reason, move nothing, and then raise ``InsufficientFunds`` /
    ``WalletFrozen`` carrying ``.event`` (the API answers 402/409 and the attempt is kept). A
    replay of the same key and parameters returns the charged event, or raises the same error again.
    """
    parsed = _parse_items(items)
    params = {"team": team.pk, "user": getattr(user, "pk", None), "feature_key": feature_key,
              "external_reference_id": external_reference_id, "items": parsed, "metadata": metadata or {}}
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
        locked = _lock_wallet(wallet.pk)
        event = UsageEvent.objects.create(
            team=team, user=user, wallet=locked, feature_key=feature_key, external_reference_id=external_reference_id,
            idempotency_key=idempotency_key, status=UsageEvent.Status.PENDING, total=priced.total,
            currency=priced.currency, metadata=metadata or {},
        )
        shortfall = _funds_shortfall(locked, billing, priced.total) if priced.total > 0 else None
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
                event.ledger_entry = _debit(
                    locked, billing, entry_type=Entry.CHARGE, amount=priced.total, idempotency_key=idempotency_key,
                    reference_type="usage_event", reference_id=event.pk, feature_key=feature_key,
                    description=f"Usage event {event.pk}" + (f" ({external_reference_id})" if external_reference_id else ""),
                    created_by=user,
                )
                _save_wallet(locked)
            event.status = UsageEvent.Status.CHARGED
        UsageEventItem.objects.bulk_create([
            UsageEventItem(event=event, position=position, category=item.category, provider=item.provider,
                           model=item.model, unit=item.unit, quantity=item.quantity, unit_price=item.unit_price,
                           cost=item.cost, currency=item.currency, price_id=item.price_id, usage_record=records[position])
            for position, item in enumerate(priced.items)
        ])
        event.save(update_fields=["status", "rejection_code", "rejection_reason", "ledger_entry"])
        return event

    event, record, _ = _idempotent(team_id=team.pk, idempotency_key=idempotency_key, operation="usage_event_charge",
                                   params=params, body=body, extra_response=lambda: dict(rejection))
    if event.status == UsageEvent.Status.REJECTED:
        raise _rejection_error(event, record.response)
    return event


def idempotent_request_run(*, scope: str, idempotency_key: str, operation: str, params: Mapping[str, Any],
                           body: Callable[[], tuple[int, Any]]) -> tuple[int, Any, bool]:
    """Run an API request that has no idempotency of its own once per ``(scope, idempotency_key)``.

    For the API's money-moving POSTs whose services take no key (usage batches, allocation runs,
    invoices, credit notes): ``body()`` returns ``(HTTP status, JSON-ready response)``; it runs in
    the same transaction as the key's claim, and the response is stored on the
    ``IdempotencyRecord`` (result type ``api_response``). A later call with the key and the same
    ``params`` (Decimals, dates and model instances compared canonically) returns the stored
    status and response without running ``body``; the record is purged after 24 hours like the
    wallets' keys. If ``body`` raises, nothing is kept (the key may be retried).

    Returns ``(status, response, replayed)``. Raises :class:`InvalidRequest` (bad key),
    :class:`IdempotencyError` (the key was used with other parameters or another operation).
    """
    key = _check_key(idempotency_key)
    with transaction.atomic():
        record, replayed = _idempotency_claim(scope=scope, key=key, operation=operation, params=params)
        if replayed:
            return record.response["status"], record.response["body"], True
        status, response = body()
        stored = {"status": status, "body": response}
        IdempotencyRecord.objects.filter(pk=record.pk).update(result_type="api_response", response=stored)
        return status, response, False


__all__ = [
    "Quote", "QuoteItem", "billing_settings_update", "idempotent_request_run", "grants_expire", "hold_capture", "hold_release",
    "holds_release_expired", "idempotency_records_purge", "quote", "request_fingerprint", "usage_event_charge",
    "wallet_adjust", "wallet_charge", "wallet_freeze", "wallet_grant", "wallet_hold", "wallet_open",
    "wallet_refund", "wallet_top_up", "wallet_unfreeze",
]
