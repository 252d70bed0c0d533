"""Recording priced usage: one usage record (``usage_record_create``) or a batch of them (``usage_records_create``);
finance's corrections: an adjustment (``usage_adjustment_record``) and a void (``usage_record_void``).

Money is ``Decimal`` at metered precision (12 decimal places, ``DecimalField(30, 12)``) with an
ISO 4217 currency beside it; only ``billing_site.money`` rounds, and a price is applied only by
``chargeback.selectors.price_apply``. A usage record belongs to the billing period (a UTC calendar
month) of its ``billing_period_start``.

What a team's API key can record is bounded, so one team can never hurt another's month: a cost is
never negative (credits come from FOCUS rows, credit notes and wallet refunds), and a team's usage
is in a currency it is billed in (``teams.selectors.team_currency_check``). Negative corrections
are finance's, through ``usage_adjustment_record``; wrong records are voided, never deleted. Both
are written to the audit trail (django-auditlog's ``LogEntry``, written here by the service: the
usage table itself is not registered with auditlog, which would add a write to every usage record).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal

from auditlog.models import LogEntry
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing_site.errors import IdempotencyError
from billing_site.money import MoneyError, currency_exponent, parse_amount, quantize_metered
from chargeback.errors import InvalidUsage, UsageRecordVoid
from chargeback.focus.writing import _COPY_NULL, _COPY_SPECIAL, _copy_text
from chargeback.models import UsageRecord
from chargeback.periods import BillingPeriod
from chargeback.selectors import price_amounts, price_item, price_not_found
from teams.errors import CurrencyNotAllowed
from teams.models import Team
from teams.selectors import billing_settings_get, team_currency_check


def _as_decimal(value: object, name: str, *, not_negative: bool = False) -> Decimal:
    """``value`` as a finite Decimal (``billing_site.money.parse_amount``, any number of decimal places).

    Raises ``TypeError`` for a float and ``InvalidUsage`` (its message names ``name``) for anything that is
    not a finite Decimal or int, or, with ``not_negative``, for a value below zero.
    """
    if isinstance(value, float):
        raise TypeError(f"{name} is a float; quantities and money are Decimal only")
    try:
        return parse_amount(value, param=name, decimal_places=None, not_negative=not_negative)
    except MoneyError as exc:
        raise InvalidUsage(exc.message) from None


def _check_currency(currency: str) -> str:
    try:
        currency_exponent(currency)
    except MoneyError as exc:
        raise InvalidUsage(str(exc)) from None
    return currency.upper()


def _cost_not_negative(cost: object) -> Decimal:
    """``cost`` as a Decimal ≥ 0; ``-0`` is refused too (``InvalidUsage``, ``param`` ``cost``).

    A negative cost from a team's usage would lower its month (or another team's, through a
    by-usage split) with no trace of why: credits have their own paths.
    """
    value = _as_decimal(cost, "cost")
    if value < 0 or value.is_signed():
        raise InvalidUsage(
            f"cost must not be negative, got {value}: credits, refunds and corrections are recorded by finance "
            "(credit notes, wallet refunds, usage adjustments)", param="cost",
        )
    return value


def _check_source(source: str) -> None:
    if source not in UsageRecord.Source.values:
        raise InvalidUsage(f"source must be one of {', '.join(UsageRecord.Source.values)}, got {source!r}")
    if source == UsageRecord.Source.ADJUSTMENT:
        raise InvalidUsage("adjustments are recorded by finance with usage_adjustment_record", param="source")


def usage_record_create(
    *,
    team: Team | None,
    user=None,
    resource_type: str,
    provider: str,
    model: str = "",
    unit: str,
    quantity: Decimal,
    occurred_at: dt.datetime,
    idempotency_key: str,
    source: str = UsageRecord.Source.API,
    cost: Decimal | None = None,
    currency: str | None = None,
    agent_id: str = "",
    feature_key: str = "",
    external_reference: str = "",
    metadata: dict | None = None,
) -> UsageRecord:
    """Record one metered consumption, priced from the catalog unless ``cost`` is given.

    Args:
        team: the team that consumed, or ``None`` for the unallocated pool.
        user: the user who consumed (optional).
        resource_type: what was consumed (``llm``, ``stt``, ``tts``, ``telephony``, ``compute``…);
            it is the price ``category``.
        provider, model, unit: the priced item, e.g. ``openai``/``gpt-4``/``token``.
        quantity: a non-negative ``Decimal`` (or int) of ``unit``.
        occurred_at: an aware datetime; the record is billed in its UTC calendar month
            (``billing_period_start``).
        idempotency_key: unique per ``source``; replaying it returns the recorded row.
        source: ``api`` (default), ``charge`` or ``focus_import`` (``adjustment`` is
            :func:`usage_adjustment_record`'s).
        cost: the cost at metered precision (quantized to 12 places), zero or more (``-0`` is
            refused too); ``None`` prices the usage
            with :func:`chargeback.selectors.price_item` at ``occurred_at``
            (``quantity × unit_price``) (the team's override first, then the global price).
        currency: ISO 4217 code. Priced usage is in the price's currency (a different ``currency``
            is refused); a given ``cost`` defaults to the team's currency, else
            ``settings.BILLING_DEFAULT_CURRENCY``. With a team, the currency must be one it is
            billed in (its own or its billing settings' ``extra_currencies``).
        agent_id, feature_key, external_reference, metadata: stored as given.

    Returns:
        The new ``UsageRecord``, or on a replay of ``(source, idempotency_key)`` with the same
        parameters the recorded one (then ``record.replayed`` is ``True``).

    Raises:
        InvalidUsage: negative quantity, a negative cost (``param`` ``cost``), a bad currency, a
            naive ``occurred_at``, empty ``resource_type`` or ``idempotency_key``, an unknown
            ``source`` or ``adjustment``.
        CurrencyNotAllowed: (HTTP 422, ``param`` ``currency``) the team is not billed in the
            usage's currency (given, or the price's).
        PriceNotFound: ``cost`` is ``None`` and no price is valid for the item at ``occurred_at``.
        IdempotencyError: the key was recorded before with different parameters.
        TypeError: a float quantity or cost.

    Idempotency relies on the ``usage_unique_source_idempotency_key`` constraint (Stripe's
    idempotency keys): two concurrent calls with one key insert one row.
    """
    quantity = _as_decimal(quantity, "quantity", not_negative=True)
    if not resource_type:
        raise InvalidUsage("resource_type is required")
    if not idempotency_key:
        raise InvalidUsage("idempotency_key is required")
    _check_source(source)
    if not isinstance(occurred_at, dt.datetime) or timezone.is_naive(occurred_at):
        raise InvalidUsage("occurred_at must be a timezone-aware datetime")
    if currency is not None:
        currency = _check_currency(currency)
    if cost is not None:
        cost = quantize_metered(_cost_not_negative(cost))

    requested = {
        "team_id": team.pk if team is not None else None,
        "user_id": user.pk if user is not None else None,
        "resource_type": resource_type, "provider": provider, "model": model, "unit": unit,
        "quantity": quantity, "occurred_at": occurred_at, "agent_id": agent_id,
        "feature_key": feature_key, "external_reference": external_reference,
    }
    if cost is not None:
        requested["cost"] = cost
    if currency is not None:
        requested["currency"] = currency
    if metadata is not None:
        requested["metadata"] = metadata

    # A replay returns the recorded row without pricing it again (the catalog may have changed).
    existing = UsageRecord.objects.filter(source=source, idempotency_key=idempotency_key).first()
    if existing is not None:
        return _replayed(existing, requested)

    if cost is None:
        priced = price_item(team=team, item=(resource_type, provider, model, unit), quantity=quantity, at=occurred_at)
        if currency is not None and currency != priced.currency:
            raise InvalidUsage(
                f"the price of {resource_type}/{provider}/{model}/{unit} is in {priced.currency}, not {currency}"
            )
        cost, currency = priced.amount, priced.currency
    elif currency is None:
        currency = team.currency if team is not None else settings.BILLING_DEFAULT_CURRENCY
    if team is not None:
        team_currency_check(team=team, currency=currency)

    utc_day = occurred_at.astimezone(dt.timezone.utc).date()
    record = UsageRecord(
        team=team, user=user, agent_id=agent_id, resource_type=resource_type, provider=provider, model=model,
        unit=unit, quantity=quantity, cost=cost, currency=currency, occurred_at=occurred_at,
        billing_period_start=utc_day.replace(day=1), source=source, feature_key=feature_key,
        external_reference=external_reference, idempotency_key=idempotency_key,
        metadata=metadata if metadata is not None else {},
    )
    try:
        with transaction.atomic():
            record.save(force_insert=True)
    except IntegrityError:
        # Lost a race with a concurrent call carrying the same key: the constraint kept one row.
        existing = UsageRecord.objects.filter(source=source, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _replayed(existing, requested)
    record.replayed = False
    return record


def _replayed(existing: UsageRecord, requested: Mapping[str, object]) -> UsageRecord:
    differing = [name for name, value in requested.items() if getattr(existing, name) != value]
    if differing:
        raise IdempotencyError(
            f"idempotency key {existing.idempotency_key!r} ({existing.source}) was already used for usage record "
            f"#{existing.pk} with different {', '.join(sorted(differing))}; use a new key for new usage",
            param=None,
        )
    existing.replayed = True
    return existing


#: Most records one call of :func:`usage_records_create` takes.
USAGE_BATCH_MAX = 1000


def _row_error(error: ValueError, index: int, param: str | None = None) -> ValueError:
    """``error`` with its message prefixed by the row (``records[3]: …``) and ``param`` set."""
    named = type(error)(f"records[{index}]: {error}")
    named.param = f"records[{index}]" + (f".{param}" if param else "")
    return named


def usage_records_create(
    *, team: Team | None, records: list[Mapping[str, object]], source: str = UsageRecord.Source.API
) -> list[UsageRecord]:
    """Record up to ``USAGE_BATCH_MAX`` usage records for ``team``, all or none.

    Args:
        team: the team of every record (a team API key's team), or ``None`` for the unallocated pool.
        records: mappings with the keyword arguments of :func:`usage_record_create` except ``team``
            and ``source``: ``resource_type``, ``provider``, ``model``, ``unit``, ``quantity``
            (Decimal ≥ 0), ``occurred_at`` (aware), ``idempotency_key`` (required, unique per
            source), optional ``user``, ``cost`` (Decimal ≥ 0, quantized to 12 dp), ``currency``,
            ``agent_id``, ``feature_key``, ``external_reference``, ``metadata``.
        source: as :func:`usage_record_create`.

    Returns:
        One ``UsageRecord`` per input row, in order; ``record.replayed`` is ``True`` for a row whose
        idempotency key was recorded before with the same parameters (the recorded row is returned).
        Rows repeating a key within the batch with the same parameters are recorded once.

    Raises:
        InvalidUsage: too many or no records, or a row that ``usage_record_create`` would refuse;
            the message starts with ``records[i]:`` and ``error.param`` names the row and field.
        PriceNotFound: a row without ``cost`` has no price valid at its ``occurred_at``.
        CurrencyNotAllowed: a row's currency (given, or its price's) is not one the team is
            billed in; ``param`` ``records[i].currency``.
        IdempotencyError: a row's key was used before (or earlier in the batch) with other parameters.
        Nothing is written when anything is raised. Prices are applied as ``price_item`` applies
        them, from one query for the batch's items (``price_amounts``); rows are inserted with one ``COPY``,
        first as if every key were new (the unique index checks them); when one was recorded before,
        the batch starts over reading the recorded keys, so those rows replay. A concurrent call
        inserting one of the keys in between makes this call start over once more.
    """
    return _usage_records_run(team, _usage_rows_checked(records, source), source, instances=True)


def usage_records_record(
    *, team: Team | None, records: list[Mapping[str, object]], source: str = UsageRecord.Source.API
) -> list[tuple[int, bool]]:
    """Record a batch as :func:`usage_records_create` does, answering only ``(pk, replayed)`` per input row.

    The same arguments, checks, errors, prices and rows written; what differs is the answer: no
    ``UsageRecord`` instance is built for the new rows (their values go straight into the ``COPY``),
    which is most of a batch's Python time after the parse (``bench/api_load.py``). ``POST
    usage/batch/`` answers with the ids and the replayed count, so it needs no more.
    """
    return _usage_records_run(team, _usage_rows_checked(records, source), source, instances=False)


def _usage_rows_checked(records: list[Mapping[str, object]], source: str) -> list[dict]:
    """The batch's rows as dicts, each checked as ``usage_record_create`` checks one (``InvalidUsage``)."""
    if not isinstance(records, list) or not records:
        raise InvalidUsage("records must be a non-empty list")
    if len(records) > USAGE_BATCH_MAX:
        raise InvalidUsage(f"at most {USAGE_BATCH_MAX} records per batch, got {len(records)}")
    _check_source(source)
    if _usage_rows_plain(records):
        return records
    return _usage_rows_checked_one_by_one(records)


def _usage_rows_plain(records: list) -> bool:
    """Whether every row would leave the one-by-one check unchanged: a batch the API validated.

    Dicts whose quantities are finite Decimals ≥ 0 (``parse_amount`` returns those as they are), with
    no cost, currencies already upper case (``_check_currency`` returns those as they are), a
    ``resource_type`` and an ``idempotency_key``, and aware datetimes. Checked a column at a time
    (the batch repeats its times); ``False`` sends the batch through the one-by-one check, which
    converts what it must and raises the first row's error.
    """
    if set(map(type, records)) != {dict}:
        return False
    quantities = [row.get("quantity") for row in records]
    if set(map(type, quantities)) != {Decimal} or not all(map(Decimal.is_finite, quantities)) or min(quantities) < 0:
        return False
    if any(row.get("cost") is not None for row in records):
        return False
    for currency in {row.get("currency") for row in records} - {None}:
        if type(currency) is not str or len(currency) != 3 or not currency.isalpha() or currency != currency.upper():
            return False
    if not all([row.get("resource_type") and row.get("idempotency_key") for row in records]):
        return False
    times = [row.get("occurred_at") for row in records]
    return set(map(type, times)) == {dt.datetime} and all(t.utcoffset() is not None for t in set(times))


def _usage_rows_checked_one_by_one(records: list[Mapping[str, object]]) -> list[dict]:
    rows: list[dict] = []
    for i, raw in enumerate(records):
        row = dict(raw)
        try:
            row["quantity"] = _as_decimal(row.get("quantity"), "quantity", not_negative=True)
        except InvalidUsage as exc:
            raise _row_error(exc, i, "quantity") from None
        try:
            if row.get("cost") is not None:
                row["cost"] = quantize_metered(_cost_not_negative(row["cost"]))
        except InvalidUsage as exc:
            raise _row_error(exc, i, "cost") from None
        try:
            if row.get("currency") is not None:
                row["currency"] = _check_currency(row["currency"])
        except InvalidUsage as exc:
            raise _row_error(exc, i, "currency") from None
        for name in ("resource_type", "idempotency_key"):
            if not row.get(name):
                raise _row_error(InvalidUsage(f"{name} is required"), i, name)
        occurred_at = row.get("occurred_at")
        if not isinstance(occurred_at, dt.datetime) or timezone.is_naive(occurred_at):
            raise _row_error(InvalidUsage("occurred_at must be a timezone-aware datetime"), i, "occurred_at")
        rows.append(row)
    return rows


def _usage_records_run(team: Team | None, rows: list[dict], source: str, *, instances: bool) -> list:
    # First as if every key were new: the unique index checks them during the COPY, so a batch of
    # new keys (nearly every batch, and every charge) costs no query of its keys. A key recorded
    # before fails the COPY (its savepoint rolls back, nothing is written) and the batch starts over
    # reading the recorded keys, so those rows replay; a concurrent call recording one of the keys
    # between the read and the COPY makes it start over once more.
    for look_up_keys in (False, True, True):
        try:
            return _usage_records_insert(team, rows, source, look_up_keys=look_up_keys, instances=instances)
        except IntegrityError:
            continue
    raise IdempotencyError("the batch's idempotency keys are being recorded by concurrent calls; retry")


def _usage_request(team: Team | None, row: Mapping[str, object]) -> dict:
    """What ``usage_record_create`` compares on a replay, for one batch row."""
    user = row.get("user")
    requested = {
        "team_id": team.pk if team is not None else None,
        "user_id": user.pk if user is not None else None,
        "resource_type": row["resource_type"], "provider": row.get("provider") or "", "model": row.get("model") or "",
        "unit": row.get("unit") or "", "quantity": row["quantity"], "occurred_at": row["occurred_at"],
        "agent_id": row.get("agent_id") or "", "feature_key": row.get("feature_key") or "",
        "external_reference": row.get("external_reference") or "",
    }
    for name in ("cost", "currency", "metadata"):
        if row.get(name) is not None:
            requested[name] = row[name]
    return requested


def _usage_records_insert(team: Team | None, rows: list[dict], source: str, *, look_up_keys: bool,
                          instances: bool) -> list:
    """Price and write ``rows``: a ``UsageRecord`` per row (``instances``), else ``(pk, replayed)``."""
    existing: dict[str, UsageRecord] = {}
    if look_up_keys:
        keys = [row["idempotency_key"] for row in rows]
        existing = {r.idempotency_key: r for r in UsageRecord.objects.filter(source=source, idempotency_key__in=keys)}
    unpriced = [i for i, row in enumerate(rows) if row.get("cost") is None]
    priced = dict(zip(unpriced, price_amounts(team=team, lines=[
        ((rows[i]["resource_type"], rows[i].get("provider") or "", rows[i].get("model") or "",
          rows[i].get("unit") or ""), rows[i]["quantity"], rows[i]["occurred_at"])
        for i in unpriced
    ])))

    allowed = billing_settings_get(team=team).billing_currencies() if team is not None else ()  # one read
    team_id = team.pk if team is not None else None
    if not instances and not existing and len({row["idempotency_key"] for row in rows}) == len(rows):
        # Every key new and once in the batch (nearly every batch): the rows go straight to COPY text.
        return _usage_rows_new(team, rows, source, priced, allowed)
    # Per input row: the index in ``new`` of the row that records it, or the recorded row it replays.
    results: list[int | UsageRecord] = [0] * len(rows)
    new: list[dict] = []  # each new row's column values, by attname
    users: list = []  # each new row's user (or None), for the instances
    new_index: dict[str, tuple[int, int]] = {}  # key → (index in ``new``, input row)
    for i, row in enumerate(rows):
        key = row["idempotency_key"]
        try:
            if key in existing:
                results[i] = _replayed(existing[key], _usage_request(team, row))
                continue
            if key in new_index:
                # What a row asked for is compared only when its key repeats in the batch.
                first, first_index = new_index[key]
                if _usage_request(team, rows[first_index]) != _usage_request(team, row):
                    raise IdempotencyError(
                        f"idempotency key {key!r} appears twice in the batch with different parameters",
                        param=None,
                    )
                results[i] = first
                continue
        except IdempotencyError as exc:
            raise _row_error(exc, i, "idempotency_key") from None
        item = (row["resource_type"], row.get("provider") or "", row.get("model") or "", row.get("unit") or "")
        cost, currency = _row_cost(team, i, row, priced.get(i), allowed,
                                   team.currency if team is not None else settings.BILLING_DEFAULT_CURRENCY)
        occurred_at, user = row["occurred_at"], row.get("user")
        values = {
            "id": None, "team_id": team_id, "user_id": user.pk if user is not None else None,
            "agent_id": row.get("agent_id") or "", "resource_type": row["resource_type"], "provider": item[1],
            "model": item[2], "unit": item[3], "quantity": row["quantity"], "cost": cost, "currency": currency,
            "occurred_at": occurred_at,
            "billing_period_start": occurred_at.astimezone(dt.timezone.utc).date().replace(day=1),
            "source": source, "feature_key": row.get("feature_key") or "",
            "external_reference": row.get("external_reference") or "", "idempotency_key": key,
            "metadata": row.get("metadata") if row.get("metadata") is not None else {},
        }
        new_index[key] = (len(new), i)
        results[i] = len(new)
        new.append(values)
        users.append(user)
    ids: list[int] = []
    if new:
        with transaction.atomic():
            ids, created_at = _usage_records_write(team_id, source,
                                                   [[values[name] for values in new] for name in _LINE_COLUMNS])
        for pk, values in zip(ids, new):
            values["id"], values["created_at"] = pk, created_at
    if not instances:
        return [(r.pk, True) if isinstance(r, UsageRecord) else (ids[r], False) for r in results]
    attnames = [f.attname for f in UsageRecord._meta.concrete_fields]
    defaulted = [f for f in UsageRecord._meta.concrete_fields if f.attname not in _WRITTEN]
    made = []
    for values, user in zip(new, users):
        for field in defaulted:
            values[field.attname] = field.get_default()
        # Positional values in the model's field order: the cheap way Django builds rows it reads.
        record = UsageRecord(*[values[name] for name in attnames])
        record._state.adding, record._state.db = False, connection.alias
        record._state.fields_cache.update(team=team, user=user)
        record.replayed = False
        made.append(record)
    return [r if isinstance(r, UsageRecord) else made[r] for r in results]


def _usage_rows_new(team: Team | None, rows: list[dict], source: str, priced: dict, allowed) -> list[tuple[int, bool]]:
    """Write ``rows`` whose keys are all new and distinct: ``(pk, False)`` per row.

    What the general loop of :func:`_usage_records_insert` writes (no replay can apply), a column
    at a time: when every row is priced from the catalog in a currency the team is billed in (no
    cost or currency given), the costs and currencies are the prices'; otherwise
    :func:`_usage_rows_costs` goes row by row, with the general loop's checks and errors in its order.
    """
    n = len(rows)
    picked = [priced.get(i) for i in range(n)]
    given = [row.get("cost") for row in rows] + [row.get("currency") for row in rows]
    if given.count(None) == 2 * n and None not in picked:
        costs = [line[0] for line in picked]
        currencies = [line[1].currency for line in picked]
        if team is not None and not set(currencies).issubset(allowed):
            costs, currencies = _usage_rows_costs(team, rows, priced, allowed)
    else:
        costs, currencies = _usage_rows_costs(team, rows, priced, allowed)
    times = [row["occurred_at"] for row in rows]
    months = {at: at.astimezone(dt.timezone.utc).date().replace(day=1) for at in set(times)}  # a batch repeats its times
    users = [row.get("user") for row in rows]
    columns = {
        "user_id": [None] * n if users.count(None) == n else [None if u is None else u.pk for u in users],
        "resource_type": [row["resource_type"] for row in rows],
        "quantity": [row["quantity"] for row in rows], "cost": costs, "currency": currencies,
        "occurred_at": times, "billing_period_start": list(map(months.__getitem__, times)),
        "idempotency_key": [row["idempotency_key"] for row in rows],
        "metadata": [{} if m is None else m for m in (row.get("metadata") for row in rows)],
    }
    for name in ("agent_id", "provider", "model", "unit", "feature_key", "external_reference"):
        columns[name] = [row.get(name) or "" for row in rows]
    with transaction.atomic():
        ids, _created_at = _usage_records_write(team.pk if team is not None else None, source,
                                                [columns[name] for name in _LINE_COLUMNS])
    return [(pk, False) for pk in ids]


def _usage_rows_costs(team: Team | None, rows: list[dict], priced: dict, allowed) -> tuple[list, list]:
    """Each row's cost and currency, row by row with the general loop's checks (its errors, in its order)."""
    default_currency = team.currency if team is not None else settings.BILLING_DEFAULT_CURRENCY
    costs, currencies = [], []
    for i, row in enumerate(rows):
        cost, currency = _row_cost(team, i, row, priced.get(i), allowed, default_currency)
        costs.append(cost)
        currencies.append(currency)
    return costs, currencies


def _row_cost(team: Team | None, i: int, row: dict, line, allowed, default_currency: str) -> tuple[Decimal, str]:
    """Row ``i``'s cost and currency: the priced ``line`` ``(amount, price)`` when the row gives no
    cost, else its own; refused (naming ``records[i]``'s field) without a price, in a currency
    other than its price's, or in one the team is not billed in."""
    cost, currency = row.get("cost"), row.get("currency")
    if cost is None:
        item = (row["resource_type"], row.get("provider") or "", row.get("model") or "", row.get("unit") or "")
        if line is None:
            raise _row_error(price_not_found(team=team, item=item, at=row["occurred_at"]), i, "resource_type")
        amount, price = line
        if currency is not None and currency != price.currency:
            raise _row_error(InvalidUsage(f"the price of {'/'.join(item)} is in {price.currency}, not {currency}"),
                             i, "currency")
        cost, currency = amount, price.currency
    elif currency is None:
        currency = default_currency
    if team is not None and currency not in allowed:
        try:
            team_currency_check(team=team, currency=currency)
        except CurrencyNotAllowed as exc:
            raise _row_error(exc, i, "currency") from None
    return cost, currency


#: The columns a usage record's row sets from the request; every other column takes its field default.
_ROW_VALUES = {"id", "team_id", "user_id", "agent_id", "resource_type", "provider", "model", "unit", "quantity", "cost",
               "currency", "occurred_at", "billing_period_start", "source", "feature_key", "external_reference",
               "idempotency_key", "metadata"}

#: The columns ``_usage_records_write`` takes from each row: the request's, its id and creation time.
_WRITTEN = _ROW_VALUES | {"created_at"}

#: The columns given to ``_usage_records_write``, in order (the batch's team and source, the rows'
#: ids and creation time are the writer's).
_LINE_COLUMNS = ("user_id", "agent_id", "resource_type", "provider", "model", "unit", "quantity", "cost", "currency",
                 "occurred_at", "billing_period_start", "feature_key", "external_reference", "idempotency_key",
                 "metadata")

#: The JSON text of an empty object or list, written without the encoder (most rows' metadata and tags).
_EMPTY_JSON = {dict: "{}", list: "[]"}


def _usage_records_write(team_id: int | None, source: str, columns: list[list]) -> tuple[list[int], dt.datetime]:
    """Insert rows of ``team_id`` and ``source`` given as ``columns`` (one list of values per name of
    ``_LINE_COLUMNS``, in that order) with ``COPY``; returns their ids, in order, and their creation time.

    ``bulk_create`` would spend most of a 1,000-row batch preparing values in Python (about 0.2 s);
    here the ids are drawn from the table's sequence in one query and the rows streamed with
    ``COPY`` as text written by hand, as the FOCUS import writes its rows (``chargeback.focus.writing``),
    a column at a time: each column's values as PostgreSQL's input text of what psycopg would send
    (``str`` of a Decimal, ISO 8601 times, each distinct time written once, JSON columns as JSON
    text), a text column searched once as a whole for a character COPY escapes (a backslash, a tab,
    a line break) and escaped only then. The columns a row does not set take their field default,
    one text for the batch. A duplicate idempotency key still fails on the unique constraint
    (``IntegrityError``).
    """
    table = UsageRecord._meta.db_table
    quote = connection.ops.quote_name
    now = timezone.now()
    defaulted = [f for f in UsageRecord._meta.concrete_fields if f.attname not in _WRITTEN]
    names = ["id", *_LINE_COLUMNS, "team_id", "source", "created_at", *(f.attname for f in defaulted)]
    fields = {f.attname: f for f in UsageRecord._meta.concrete_fields}
    tail = "".join("\t" + _copy_text(None if value is None else str(value)) for value in (
        team_id, source, now.isoformat(), *(_copy_value(f.get_default()) for f in defaulted)))
    texts = []
    for name, values in zip(_LINE_COLUMNS, columns):
        if name in _TEXT_COLUMNS:
            # str (a column the caller gave as text) and JSON text: escaped when the column holds a special character
            text = values if name != "metadata" else [
                "{}" if type(v) is dict and not v else str(_copy_value(v)) for v in values]
            texts.append([_copy_text(v) for v in text] if _COPY_SPECIAL("".join(text)) else text)
        elif name in _MOMENT_COLUMNS:
            written = {v: v.isoformat() for v in set(values)}
            texts.append(list(map(written.__getitem__, values)))
        else:  # ids and Decimals
            texts.append([_COPY_NULL if v is None else str(v) for v in values])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, len(columns[0])]
        )
        ids = [row[0] for row in cursor.fetchall()]
        lines = list(map("\t".join, zip(map(str, ids), *texts)))
        lines.append("")
        text = (tail + "\n").join(lines)
        sql = f"COPY {quote(table)} ({', '.join(quote(fields[name].column) for name in names)}) FROM STDIN"
        # The raw psycopg cursor: wrap its errors as Django's, so a duplicate key is an IntegrityError.
        with connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
            copy.write(text)
    return ids, now


#: The columns of ``_LINE_COLUMNS`` that are text (escaped for COPY when needed) and times (ISO 8601).
_TEXT_COLUMNS = {"agent_id", "resource_type", "provider", "model", "unit", "currency", "feature_key",
                 "external_reference", "idempotency_key", "metadata"}
_MOMENT_COLUMNS = {"occurred_at", "billing_period_start"}


def _copy_value(value: object) -> object:
    """A column value as ``COPY`` takes it: JSON columns (dicts, lists) as JSON text."""
    if isinstance(value, (dict, list)):
        return json.dumps(value) if value else _EMPTY_JSON[type(value)]
    return value


# --- finance's corrections --------------------------------------------------------------------

#: ``service_name`` of adjustments: one invoice line "Adjustment" per team and month.
ADJUSTMENT_SERVICE = "Adjustment"


def _reason(reason: object, param: str = "reason") -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidUsage(f"{param} is required: say why, for the audit trail", param=param)
    return reason.strip()


def usage_adjustment_record(
    *, team: Team, amount: Decimal, currency: str, reason: str, created_by, period: BillingPeriod,
    idempotency_key: str | None = None,
) -> UsageRecord:
    """Record finance's adjustment of ``team``'s usage in ``period``: a usage record of source ``adjustment``.

    The one door for a negative cost outside the FOCUS import (a cloud bill's credits): the API's
    usage and charges refuse one. The adjustment is billed like usage: the team's direct cost,
    one invoice line "Adjustment" per month (``service_name``), its reason in ``metadata``.

    Args:
        team: the team whose month is corrected.
        amount: a non-zero Decimal (or int) in ``currency``, negative to credit the team; at most
            12 decimal places (metered precision), never rounded.
        currency: an ISO 4217 code the team is billed in (its own or an extra currency).
        reason: why, for people and the audit trail (required).
        created_by: the finance user recording it (the audit trail's actor).
        period: the billing period corrected; the record is billed in its first month
            (``billing_period_start``), ``occurred_at`` is that month's first instant (UTC).
        idempotency_key: optional; the same key with the same figures returns the recorded
            adjustment (a form sent twice records one), with other figures ``IdempotencyError``.

    Returns:
        The ``UsageRecord`` (``replayed`` ``True`` when the key was recorded before).

    Raises:
        InvalidUsage: a zero, non-finite or over-precise amount (``param`` ``amount``), a bad
            currency, an empty reason (``param`` ``reason``).
        CurrencyNotAllowed: the team is not billed in ``currency``.
        IdempotencyError: the key was used for another adjustment.

    Audited: a django-auditlog ``LogEntry`` (create, actor ``created_by``) with the amount and the reason.
    """
    try:
        amount = parse_amount(amount, param="amount")
    except MoneyError as exc:
        raise InvalidUsage(exc.message, param="amount") from None
    if not amount:
        raise InvalidUsage("amount must not be zero: an adjustment changes the month", param="amount")
    currency = team_currency_check(team=team, currency=_check_currency(currency))
    reason = _reason(reason)
    key = idempotency_key or f"adjustment-{uuid.uuid4().hex}"
    occurred_at = dt.datetime.combine(period.start, dt.time(), dt.timezone.utc)
    requested = {"team_id": team.pk, "cost": amount, "currency": currency, "billing_period_start": period.start}
    with transaction.atomic(durable=True):
        existing = UsageRecord.objects.filter(source=UsageRecord.Source.ADJUSTMENT, idempotency_key=key).first()
        if existing is not None:
            differing = [name for name, value in requested.items() if getattr(existing, name) != value]
            if existing.metadata.get("reason") != reason:
                differing.append("reason")
            if differing:
                raise IdempotencyError(
                    f"idempotency key {key!r} was already used for adjustment #{existing.pk} with different "
                    f"{', '.join(sorted(differing))}", param=None,
                )
            existing.replayed = True
            return existing
        record = UsageRecord.objects.create(
            team=team, resource_type="adjustment", service_name=ADJUSTMENT_SERVICE, quantity=0, cost=amount,
            currency=currency, occurred_at=occurred_at, billing_period_start=period.start,
            source=UsageRecord.Source.ADJUSTMENT, idempotency_key=key,
            metadata={"reason": reason, "recorded_by": getattr(created_by, "pk", None)},
        )
        LogEntry.objects.log_create(
            record, action=LogEntry.Action.CREATE, actor=created_by,
            changes={"cost": [None, str(amount)], "currency": [None, currency], "reason": [None, reason]},
        )
    record.replayed = False
    return record


def usage_record_void(*, record: UsageRecord, reason: str, voided_by) -> UsageRecord:
    """Void a wrongly posted usage record: it is kept, marked ``void``, and no later allocation counts it.

    Under the record's row lock: refuse a record already void, then set ``status`` ``void``,
    ``void_reason``, ``voided_at`` (now) and ``voided_by``. The committed allocation of its month
    is not changed (it is history): the month's next run leaves the record out, and that run's
    warnings name the difference ("1 usage record voided since the last committed run: −12.34 USD").

    Args:
        record: the usage record (any source but ``charge``).
        reason: why, for people and the audit trail (required; a CHECK holds it in the database).
        voided_by: the finance user voiding it (the audit trail's actor).

    Returns:
        The record, re-read under the lock and voided.

    Raises:
        InvalidUsage: an empty reason (``param`` ``reason``), or a record of a wallet charge: its
            money moved on the ledger, so it is corrected by refunding the wallet (the refund's
            own path), not by voiding the usage alone.
        UsageRecordVoid: (HTTP 409) the record was voided already.

    Audited: a django-auditlog ``LogEntry`` (update, actor ``voided_by``) with the status and the reason.
    """
    reason = _reason(reason)
    with transaction.atomic(durable=True):
        locked = UsageRecord.objects.select_for_update().get(pk=record.pk)
        if locked.status == UsageRecord.Status.VOID:
            raise UsageRecordVoid(
                f"usage record #{locked.pk} was voided on {locked.voided_at:%Y-%m-%d %H:%M} UTC: {locked.void_reason}"
            )
        if locked.source == UsageRecord.Source.CHARGE:
            raise InvalidUsage(
                f"usage record #{locked.pk} was charged to a wallet; refund the wallet instead of voiding the usage",
                param="record",
            )
        locked.status = UsageRecord.Status.VOID
        locked.void_reason = reason
        locked.voided_at = timezone.now()
        locked.voided_by = voided_by
        locked.save(update_fields=["status", "void_reason", "voided_at", "voided_by"])
        LogEntry.objects.log_create(
            locked, action=LogEntry.Action.UPDATE, actor=voided_by,
            changes={"status": [UsageRecord.Status.ACTIVE, UsageRecord.Status.VOID], "void_reason": ["", reason]},
        )
    return locked
