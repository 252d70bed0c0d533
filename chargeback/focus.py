"""FOCUS 1.0 cost file import: cloud billing rows become ``UsageRecord`` rows (source ``focus_import``).

The input is a FOCUS 1.0 CSV (the FinOps Open Cost and Usage Specification), plain or gzip-compressed
(recognised by its magic bytes), in the variety providers really write: any column order, ``NULL``,
``null`` or an empty field for a missing value, timestamps as ``2024-09-18 22:00:00`` or ISO 8601 with
``Z`` or an offset (naive means UTC), negative costs (credits, adjustments), ``Tags`` as a JSON object.

Column mapping (FOCUS column → ``UsageRecord`` field):

* ``BilledCost`` → ``cost`` (Decimal, quantized as ``money.quantize_metered`` does; may be negative);
  ``EffectiveCost`` → ``effective_cost``; ``BillingCurrency`` → ``currency``.
* ``BillingPeriodStart`` → ``billing_period_start`` (the date as written, which must be the first day of
  a month); ``ChargePeriodStart`` → ``occurred_at`` (UTC).
* ``ChargeCategory`` → ``charge_category``; ``ServiceName`` → ``service_name``; ``ProviderName`` →
  ``provider``; ``SubAccountName`` → ``sub_account_name``; ``ResourceId`` → ``resource_id``;
  ``Tags`` → ``tags``; ``Id`` → ``external_reference``; ``ConsumedQuantity``/``ConsumedUnit`` →
  ``quantity``/``unit``.
* ``resource_type`` is always ``"cloud"`` (``ServiceCategory`` is kept in ``metadata``), so one
  allocation rule can match every imported cloud cost.
* ``metadata`` keeps the raw text of the columns in ``METADATA_COLUMNS`` that the row has.

Rows are charged to a team by the value of one tag (``team_tag``, default ``business_unit``), or, with
``subaccount_fallback``, by ``SubAccountName`` when the tag is absent; the rest go to the unallocated
pool (``team`` empty). Teams are matched by name (case-insensitive) and created on first sight.

The import is idempotent: each row's ``idempotency_key`` (unique with ``source``) is derived from the
row itself, so importing the same file again adds nothing. The whole file is imported in one
transaction; a bad file or value raises ``FocusImportError`` and nothing is written, unless
``skip_bad_rows`` asks to skip (and report) bad rows.

The rows go in blocks: a thread parses the next block while the connection's thread streams this
one with ``COPY`` into a temporary table and moves it with ``INSERT … SELECT … ON CONFLICT DO
NOTHING``, all in the one transaction. The file is read as a stream, so memory does not grow with
the file.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import json
import operator
import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Lower
from django.utils.text import slugify

from billing_site.money import METERED_QUANTUM, ROUNDING
from chargeback.models import UsageRecord
from teams.models import Team

#: Columns a row cannot do without: what it cost, in which currency, when, in which billing period,
#: what kind of charge, and from whom (provider and service). All are mandatory in FOCUS 1.0 and
#: may not be null there; a missing value in one of them is a bad row.
REQUIRED_COLUMNS = (
    "BilledCost",
    "BillingCurrency",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodStart",
    "ProviderName",
    "ServiceName",
)

#: Columns copied, as written, into ``UsageRecord.metadata`` when the row has a value for them.
METADATA_COLUMNS = (
    "BillingAccountId",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ConsumedQuantity",
    "ConsumedUnit",
    "RegionId",
    "ServiceCategory",
    "SkuId",
    "SubAccountId",
)

#: FOCUS 1.0 ChargeCategory allowed values (matched case-insensitively, stored in this spelling).
CHARGE_CATEGORIES = {
    spelling: name
    for name in ("Adjustment", "Credit", "Purchase", "Tax", "Usage")
    for spelling in (name, name.lower())
}

#: Field values that mean "no value" (FOCUS writes null; CSV exports spell it in several ways).
MISSING_VALUES = frozenset({"", "NULL", "null", "Null"})

#: ``UsageRecord.resource_type`` of every imported FOCUS row.
RESOURCE_TYPE = "cloud"

#: How many skipped rows the result keeps in ``skipped`` (all are counted in ``rows_skipped``).
MAX_REPORTED_SKIPS = 1000

#: Rows between progress reports.
PROGRESS_EVERY = 5000

#: Rows per block on PostgreSQL, where one block is inserted while the next is parsed. Larger blocks
#: cost memory (up to four blocks of COPY text, under 1 kB a row, may be held at once); smaller ones
#: add a few statements per block (measured: 25,000 gave the same speed at 57 MiB more peak memory).
BLOCK_ROWS = 10_000

_MAX_LENGTHS = {
    "ProviderName": 100,
    "ServiceName": 200,
    "SubAccountName": 200,
    "ResourceId": 1000,
    "ConsumedUnit": 50,
    "Id": 255,
}
_TEAM_NAME_MAX = 200
_SLUG_MAX = 100
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_ID_KEY_MAX = 255
# Any 64-bit number will do: it only has to be the same for every FOCUS import.
_ADVISORY_LOCK_KEY = 0x466F637573496D70  # "FocusImp"


class FocusImportError(Exception):
    """A FOCUS file that cannot be imported: unreadable, a missing required column, or a bad value.

    ``file``, ``row`` (1-based data row, the header not counted; ``None`` for the whole file or its
    header), ``line`` (physical line in the file) and ``column`` say where; the message names them.
    """

    def __init__(self, message: str, *, file: str, row: int | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        self.file, self.row, self.line, self.column = file, row, line, column
        self.reason = message
        super().__init__(_locate(file, row, line, column) + message)


@dataclass(frozen=True)
class FocusRowError:
    """One bad row: its 1-based data row number, the column at fault and what is wrong."""

    row: int
    column: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return _locate(None, self.row, self.line, self.column) + self.message


@dataclass
class PeriodTotal:
    """The good rows of one billing period and currency: how many, and their ``BilledCost``."""

    rows: int = 0
    billed_cost: Decimal = Decimal(0)
    unallocated_rows: int = 0
    unallocated_cost: Decimal = Decimal(0)


@dataclass
class FocusImportResult:
    """What an import did.

    ``rows_read = rows_imported + rows_duplicate + rows_skipped``. ``periods`` counts every good row
    of the file (new or imported before), keyed by ``(BillingPeriodStart, BillingCurrency)``; amounts
    are exact Decimals at metered precision. ``skipped`` keeps the first ``MAX_REPORTED_SKIPS`` bad
    rows; ``new_teams`` the names of the teams created, in the order first seen.
    """

    file: str
    rows_read: int = 0
    rows_imported: int = 0
    rows_duplicate: int = 0
    rows_skipped: int = 0
    rows_unallocated: int = 0
    skipped: list[FocusRowError] = field(default_factory=list)
    new_teams: list[str] = field(default_factory=list)
    periods: dict[tuple[dt.date, str], PeriodTotal] = field(default_factory=dict)
    seconds: float = 0.0
    #: Wall seconds per phase: ``read`` (parse the file and stage its rows), ``teams``, ``insert``,
    #: ``commit``; for benchmarks.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def teams_created(self) -> int:
        return len(self.new_teams)

    @property
    def currencies(self) -> list[str]:
        return sorted({currency for _, currency in self.periods})

    @property
    def billed_cost(self) -> dict[dt.date, Decimal]:
        """Σ ``BilledCost`` of the file's good rows per ``BillingPeriodStart``, in its one currency.

        Raises:
            ValueError: the file bills in more than one currency (use ``periods``).
        """
        if len(self.currencies) > 1:
            raise ValueError(f"{self.file} bills in several currencies ({', '.join(self.currencies)}): "
                             "sums per billing period are in `periods`, per currency")
        return {start: total.billed_cost for (start, _), total in sorted(self.periods.items())}

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


ProgressCallback = Callable[[int], Any]


def focus_import(
    *,
    path: str | Path,
    team_tag: str = "business_unit",
    subaccount_fallback: bool = False,
    skip_bad_rows: bool = False,
    progress: ProgressCallback | Any | None = None,
    block_rows: int = BLOCK_ROWS,
) -> FocusImportResult:
    """Import a FOCUS 1.0 CSV file (plain or gzip) into ``UsageRecord`` rows, in one transaction.

    Args:
        path: the CSV file; gzip is recognised by its magic bytes, whatever the name.
        team_tag: the ``Tags`` key whose value names the team a row is charged to.
        subaccount_fallback: charge rows without that tag to a team named after ``SubAccountName``.
        skip_bad_rows: skip rows with a bad value (each reported in ``result.skipped``) instead of
            failing the whole file. Unreadable files and missing columns still fail.
        progress: called with the number of rows read since the previous call (every few thousand
            rows), or a tqdm bar (its ``update`` is called). On PostgreSQL it is called from the
            thread that parses the file.
        block_rows: on PostgreSQL, rows parsed, staged and inserted per block (see
            ``_write_postgresql``); the default suits files of any size, tests pass small ones.

    Returns:
        A ``FocusImportResult`` with the counts, the teams created and ``BilledCost`` per billing
        period and currency (Decimal, metered precision).

    Raises:
        FocusImportError: the file is missing or unreadable, is not UTF-8 CSV, lacks a column of
            ``REQUIRED_COLUMNS``, or (without ``skip_bad_rows``) a row has a bad value: a decimal,
            timestamp, currency (ISO 4217), ChargeCategory (FOCUS 1.0 values) or ``Tags`` (a JSON
            object) that cannot be read, or a text too long for its column. The message names the
            file, the data row and physical line, and the column. Nothing has been written.

    Row identity (the idempotency key): with an ``Id`` value, ``id:<ProviderName>:<BillingAccountId>:
    <Id>``; without, ``row:<SHA-256 of the row's values>:<n>`` where ``n`` counts identical rows
    within the file, so repeated identical lines are all kept and a re-import maps to the same keys.
    """
    if not team_tag:
        raise ValueError("team_tag must name a Tags key")
    if block_rows < 1:
        raise ValueError("block_rows must be at least 1")
    path = Path(path)
    name = str(path)
    started = time.perf_counter()
    result = FocusImportResult(file=name)
    report = _progress_reporter(progress)
    with _open_text(path) as text:
        reader = csv.reader(_checked_lines(text, name))
        header = _read_header(reader, name)
        parser = _RowParser(header, file=name, team_tag=team_tag,
                            subaccount_fallback=subaccount_fallback)
        rows = _good_rows(reader, parser, result, skip_bad_rows=skip_bad_rows, report=report)
        with transaction.atomic():
            _write_postgresql(rows, result, parser, block_rows)
            committing = time.perf_counter()
        result.timings["commit"] = time.perf_counter() - committing
    result.rows_duplicate = result.rows_read - result.rows_skipped - result.rows_imported
    result.seconds = time.perf_counter() - started
    return result


# --- reading -----------------------------------------------------------------------------------


def _locate(file: str | None, row: int | None, line: int | None, column: str | None) -> str:
    parts = [file] if file else []
    if row is not None:
        parts.append(f"row {row}" + (f" (line {line})" if line is not None else ""))
    elif line is not None:
        parts.append(f"line {line}")
    if column:
        parts.append(f"column {column}")
    return ", ".join(parts) + ": " if parts else ""


def _open_text(path: Path):
    """Open ``path`` as UTF-8 text (a BOM is dropped), through gzip when it starts with its magic."""
    name = str(path)
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
    except FileNotFoundError:
        raise FocusImportError("no such file", file=name) from None
    except IsADirectoryError:
        raise FocusImportError("is a directory, not a FOCUS CSV file", file=name) from None
    except OSError as exc:
        raise FocusImportError(f"cannot read the file: {exc.strerror or exc}", file=name) from None
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if path.suffix.lower() == ".gz":
        raise FocusImportError("the name ends in .gz but the file is not gzip-compressed", file=name)
    return path.open("r", encoding="utf-8-sig", newline="")


def _checked_lines(text: Iterable[str], file: str) -> Iterator[str]:
    """The file's physical lines; a NUL character means a binary or corrupt file (PostgreSQL text
    cannot hold one), so it stops the import whatever ``skip_bad_rows`` says."""
    for number, line in enumerate(text, start=1):
        if "\x00" in line:
            raise FocusImportError("contains a NUL character: not a text CSV file", file=file, line=number)
        yield line


def _read_header(reader: Iterator[list[str]], file: str) -> list[str]:
    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, zlib.error) as exc:
        raise FocusImportError(f"cannot read the header: {_read_error(exc)}", file=file, line=1) from None
    if not header or not any(h.strip() for h in header):
        raise FocusImportError("the file is empty: no header row", file=file, line=1)
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise FocusImportError("column appears twice in the header", file=file, line=1, column=column)
        seen.add(column)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise FocusImportError(
            "required column missing from the header" + (f" (also missing: {', '.join(missing[1:])})"
                                                          if len(missing) > 1 else ""),
            file=file, line=1, column=missing[0],
        )
    return header


def _read_error(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not UTF-8 text"
    return str(exc) or type(exc).__name__


class _RowError(Exception):
    def __init__(self, column: str | None, message: str) -> None:
        super().__init__(message)
        self.column, self.message = column, message


class _Row(NamedTuple):
    """One good row, parsed, in the shape both writers need."""

    rownum: int
    team_key: str | None
    id_key: str | None  # idempotency key from Id, or None when the row is identified by its hash
    row_hash: str | None
    provider: str
    service_name: str
    sub_account_name: str
    resource_id: str
    charge_category: str
    cost: Decimal
    effective_cost: Decimal | None
    currency: str
    occurred_at: dt.datetime
    billing_period_start: dt.date
    tags: dict
    tags_json: str
    values: list[str]  # the raw record (metadata is taken from it by the writer that needs it)
    quantity: Decimal
    unit: str
    external_reference: str


class _RowParser:
    """Turns one CSV record into a ``_Row``, or raises ``_RowError(column, message)``.

    Timestamps, currencies and ``Tags`` repeat a lot in a cost file, so their parsed forms are
    cached (bounded): most rows cost a dictionary lookup for them.
    """

    _CACHE_LIMIT = 50_000

    def __init__(self, header: list[str], *, file: str, team_tag: str,
                 subaccount_fallback: bool) -> None:
        self.file = file
        self.team_tag, self.subaccount_fallback = team_tag, subaccount_fallback
        self.width = len(header)
        index = {name: i for i, name in enumerate(header)}
        self.index = index
        self.i_cost = index["BilledCost"]
        self.i_currency = index["BillingCurrency"]
        self.i_period = index["BillingPeriodStart"]
        self.i_category = index["ChargeCategory"]
        self.i_start = index["ChargePeriodStart"]
        self.i_provider = index["ProviderName"]
        self.i_service = index["ServiceName"]
        # An optional column absent from the header points past the row's values, where parse()
        # appends a NULL.
        absent = self.width
        self.i_effective = index.get("EffectiveCost", absent)
        self.i_subaccount = index.get("SubAccountName", absent)
        self.i_resource = index.get("ResourceId", absent)
        self.i_tags = index.get("Tags", absent)
        self.i_id = index.get("Id", absent)
        self.i_account = index.get("BillingAccountId", absent)
        self.i_quantity = index.get("ConsumedQuantity", absent)
        self.i_unit = index.get("ConsumedUnit", absent)
        self.metadata_columns = [(c, index[c]) for c in METADATA_COLUMNS if c in index]
        # Row hashes ignore column order: values are taken in the order of the sorted column names.
        self.hash_order = [index[c] for c in sorted(header)]
        self.hash_seed = hashlib.sha256("\x1f".join(sorted(header)).encode() + b"\x1e")
        self.timestamps: dict[str, dt.datetime] = {}
        self.periods: dict[str, dt.date] = {}
        self.tag_cache: dict[str, tuple[dict, str, str | None]] = {}
        self.currencies: dict[str, str] = {}

    def parse(self, values: list[str], rownum: int) -> _Row:
        # Written for speed (it runs once per row of files with millions): locals, dictionary
        # caches, and one membership test for the required values on the common path.
        if len(values) != self.width:
            raise _RowError(None, f"has {len(values)} values, the header has {self.width} columns")
        values.append("NULL")  # index ``self.width``: where columns absent from the header point
        missing = MISSING_VALUES
        cost_text = values[self.i_cost]
        currency_text = values[self.i_currency]
        period_text = values[self.i_period]
        start_text = values[self.i_start]
        category_text = values[self.i_category]
        provider = values[self.i_provider]
        service = values[self.i_service]
        if not missing.isdisjoint((cost_text, currency_text, period_text, start_text, category_text,
                                   provider, service)):
            for column in REQUIRED_COLUMNS:
                if values[self.index[column]] in missing:
                    raise _RowError(column, "required value is missing")

        cost = self._amount(cost_text, "BilledCost")
        currency = self.currencies.get(currency_text) or self._currency(currency_text)
        period = self.periods.get(period_text) or self._period(period_text)
        occurred_at = self.timestamps.get(start_text) or self._timestamp(start_text, "ChargePeriodStart")
        category = CHARGE_CATEGORIES.get(category_text) or self._category(category_text)
        if len(provider) > 100 or len(service) > 200:
            self._text(provider, "ProviderName")
            self._text(service, "ServiceName")

        effective = values[self.i_effective]
        effective_cost = None if effective in missing else self._amount(effective, "EffectiveCost")
        sub_account = values[self.i_subaccount]
        if sub_account in missing:
            sub_account = ""
        elif len(sub_account) > 200:
            self._text(sub_account, "SubAccountName")
        resource = values[self.i_resource]
        if resource in missing:
            resource = ""
        elif len(resource) > 1000:
            self._text(resource, "ResourceId")

        raw_tags = values[self.i_tags]
        if raw_tags in missing:
            tags, tags_json, team_key = _NO_TAGS
        else:
            tags, tags_json, team_key = self.tag_cache.get(raw_tags) or self._tags(raw_tags)
        if team_key is None and self.subaccount_fallback and sub_account:
            team_key = sub_account.strip() or None

        raw_quantity = values[self.i_quantity]
        if raw_quantity in missing:
            quantity = _ZERO
        else:
            quantity = self._amount(raw_quantity, "ConsumedQuantity")
            if quantity < 0:  # not valid FOCUS, and the column may not be negative: kept in metadata
                quantity = _ZERO
        unit = values[self.i_unit]
        if unit in missing:
            unit = ""
        elif len(unit) > 50:
            self._text(unit, "ConsumedUnit")

        record_id = values[self.i_id]
        if record_id not in missing:
            if len(record_id) > 255:
                self._text(record_id, "Id")
            account = values[self.i_account]
            id_key = f"id:{provider}:{'' if account in missing else account}:{record_id}"
            if len(id_key) > _ID_KEY_MAX:
                id_key = "idh:" + hashlib.sha256(id_key.encode()).hexdigest()
            row_hash = None
        else:
            record_id, id_key = "", None
            hasher = self.hash_seed.copy()
            hasher.update("\x1f".join(
                "\x1e" if values[i] in missing else values[i] for i in self.hash_order
            ).encode())
            row_hash = hasher.hexdigest()

        return _Row(
            rownum, team_key, id_key, row_hash, provider, service, sub_account, resource, category,
            cost, effective_cost, currency, occurred_at, period, tags, tags_json, values, quantity,
            unit, record_id,
        )

    def metadata(self, values: list[str]) -> dict[str, str]:
        """``UsageRecord.metadata`` of a record: the ``METADATA_COLUMNS`` it has a value for, as written."""
        return {c: values[i] for c, i in self.metadata_columns if values[i] not in MISSING_VALUES}

    def metadata_json(self, values: list[str]) -> str:
        """``metadata(values)`` as JSON text."""
        return json.dumps(self.metadata(values), ensure_ascii=False)

    def _category(self, text: str) -> str:
        category = CHARGE_CATEGORIES.get(text.strip().lower())
        if category is None:
            raise _RowError("ChargeCategory", f"{text!r} is not a FOCUS 1.0 ChargeCategory "
                                              f"({', '.join(sorted(set(CHARGE_CATEGORIES.values())))})")
        return category

    @staticmethod
    def _text(value: str, column: str) -> str:
        limit = _MAX_LENGTHS.get(column)
        if limit is not None and len(value) > limit:
            raise _RowError(column, f"value is {len(value)} characters long; at most {limit} are kept")
        return value

    @staticmethod
    def _amount(text: str, column: str) -> Decimal:
        # money.quantize_metered inlined (it runs up to three times per row): the same quantum and
        # rounding mode, without its type checks, since the value is a Decimal made here. Infinities
        # and amounts of 10**16 or more fail in quantize (the default context keeps 28 digits, 12 of
        # them decimals); a quiet NaN passes quantize, so it is refused by hand.
        try:
            value = Decimal(text).quantize(METERED_QUANTUM, ROUNDING)
        except (InvalidOperation, ValueError):
            value = None
        if value is None or value.is_nan():
            raise _RowError(column, f"{text!r} is not a decimal amount (at most 15 digits before "
                                    "the point)")
        return value

    def _currency(self, text: str) -> str:
        code = self.currencies.get(text)
        if code is None:
            code = text.strip().upper()
            if not _CURRENCY.match(code):
                raise _RowError("BillingCurrency", f"{text!r} is not an ISO 4217 currency code")
            self.currencies[text] = code
        return code

    def _parse_datetime(self, text: str, column: str) -> dt.datetime:
        try:
            value = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise _RowError(column, f"{text!r} is not a timestamp (2024-09-18 22:00:00 or ISO 8601, "
                                    "e.g. 2024-09-18T22:00:00Z)") from None
        return value

    def _timestamp(self, text: str, column: str) -> dt.datetime:
        value = self.timestamps.get(text)
        if value is None:
            value = self._parse_datetime(text, column)
            # FOCUS timestamps are UTC; a naive one is read as UTC, an offset is converted.
            value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
            if len(self.timestamps) >= self._CACHE_LIMIT:
                self.timestamps.clear()
            self.timestamps[text] = value
        return value

    def _period(self, text: str) -> dt.date:
        day = self.periods.get(text)
        if day is None:
            # The calendar date as written: a billing period starting at local midnight
            # (2024-09-01T00:00:00+02:00) is still the September period.
            day = self._parse_datetime(text, "BillingPeriodStart").date()
            if day.day != 1:
                raise _RowError("BillingPeriodStart", f"{text!r} is not the first day of a month "
                                                      "(billing periods are calendar months)")
            if len(self.periods) >= self._CACHE_LIMIT:
                self.periods.clear()
            self.periods[text] = day
        return day

    def _tags(self, raw: str) -> tuple[dict, str, str | None]:
        cached = self.tag_cache.get(raw)
        if cached is not None:
            return cached
        try:
            tags = json.loads(raw, parse_constant=_reject_constant)
        except ValueError as exc:
            raise _RowError("Tags", f"is not valid JSON ({exc})") from None
        if not isinstance(tags, dict):
            raise _RowError("Tags", f"must be a JSON object, got {type(tags).__name__}")
        tags_json = json.dumps(tags, ensure_ascii=False)
        if "\\u0000" in tags_json:
            raise _RowError("Tags", "contains a NUL character")
        team_key = _team_key(tags.get(self.team_tag))
        if team_key is not None and len(team_key) > _TEAM_NAME_MAX:
            raise _RowError("Tags", f"the {self.team_tag} value is longer than {_TEAM_NAME_MAX} characters")
        cached = (tags, tags_json, team_key)
        if len(self.tag_cache) >= self._CACHE_LIMIT:
            self.tag_cache.clear()
        self.tag_cache[raw] = cached
        return cached


_NO_TAGS: tuple[dict, str, None] = ({}, "{}", None)
_ZERO = Decimal(0)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _team_key(value: object) -> str | None:
    """The team a tag value names: a non-blank string or a number; anything else names none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _good_rows(reader: Iterator[list[str]], parser: _RowParser, result: FocusImportResult, *,
               skip_bad_rows: bool, report: Callable[[int], None]) -> Iterator[_Row]:
    """Yield the file's good rows; count every row; skip or raise on a bad one."""
    file = parser.file
    parse = parser.parse
    periods = result.periods
    rownum = 0
    unreported = 0
    try:
        for values in reader:
            if not values:
                continue  # a blank line
            rownum += 1
            unreported += 1
            if unreported == PROGRESS_EVERY:
                result.rows_read = rownum
                report(unreported)
                unreported = 0
            try:
                row = parse(values, rownum)
            except _RowError as bad:
                if not skip_bad_rows:
                    raise FocusImportError(bad.message, file=file, row=rownum, line=reader.line_num,
                                           column=bad.column) from None
                result.rows_skipped += 1
                if len(result.skipped) < MAX_REPORTED_SKIPS:
                    result.skipped.append(FocusRowError(rownum, bad.column, bad.message, reader.line_num))
                continue
            total = periods.get((row.billing_period_start, row.currency))
            if total is None:
                total = periods[(row.billing_period_start, row.currency)] = PeriodTotal()
            total.rows += 1
            total.billed_cost += row.cost
            if row.team_key is None:
                total.unallocated_rows += 1
                total.unallocated_cost += row.cost
            yield row
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, zlib.error) as exc:
        raise FocusImportError(f"cannot read the file: {_read_error(exc)}", file=file,
                               line=reader.line_num + 1) from None
    result.rows_read = rownum
    result.rows_unallocated = sum(t.unallocated_rows for t in periods.values())
    if unreported:
        report(unreported)


def _progress_reporter(progress: Any) -> Callable[[int], None]:
    if progress is None:
        return lambda n: None
    update = getattr(progress, "update", None)
    return update if callable(update) else progress


# --- teams -------------------------------------------------------------------------------------


class _Teams:
    """Resolves team keys (tag values, sub-account names) to team ids, creating teams on first sight.

    A key names the team whose ``name`` equals it case-insensitively (the oldest such team); else a
    team is created with ``name`` = the key and a slug from ``slugify(key)``, made unique with
    ``-2``, ``-3``… when another team has it. The currency of a new team is the ``BillingCurrency``
    of the first row naming it.
    """

    def __init__(self, result: FocusImportResult) -> None:
        self.result = result
        self.ids: dict[str, int] = {}

    def prefetch(self, keys: Iterable[str]) -> None:
        wanted = {k.lower(): k for k in keys if k not in self.ids}
        if not wanted:
            return
        found = (
            Team.objects.annotate(lname=Lower("name"))
            .filter(lname__in=list(wanted))
            .order_by("-pk")
            .values_list("lname", "pk")
        )
        by_lower = dict(found)  # descending pk, so the oldest team wins
        for lower, key in wanted.items():
            if lower in by_lower:
                self.ids[key] = by_lower[lower]

    def resolve(self, key: str, currency: str) -> int:
        team_id = self.ids.get(key)
        if team_id is None:
            team = Team.objects.filter(name__iexact=key).order_by("pk").first()
            team_id = team.pk if team is not None else self._create(key, currency)
            self.ids[key] = team_id
        return team_id

    def _create(self, name: str, currency: str) -> int:
        base = slugify(name)[: _SLUG_MAX - 8].strip("-") or "team"
        taken = set(Team.objects.filter(slug__startswith=base).values_list("slug", flat=True))
        suffix = 1
        while True:
            slug = base if suffix == 1 else f"{base}-{suffix}"
            suffix += 1
            if slug in taken:
                continue
            try:
                # A savepoint, so a slug taken meanwhile by another writer costs one retry, not the import.
                with transaction.atomic():
                    team = Team.objects.create(name=name, slug=slug, currency=currency)
            except IntegrityError:
                taken.add(slug)
                continue
            self.result.new_teams.append(name)
            return team.pk


# --- writing -----------------------------------------------------------------------------------

#: The usage table's columns that a COPY line fills, in the line's order. The last six are the same
#: for every imported row and end each line as one precomputed text (see ``_line_renderer``).
_COPY_COLUMNS = (
    "team_id", "provider", "unit", "quantity", "cost", "currency", "occurred_at", "billing_period_start",
    "external_reference", "idempotency_key", "metadata", "effective_cost", "charge_category", "service_name",
    "sub_account_name", "resource_id", "tags",
    "resource_type", "source", "agent_id", "model", "feature_key", "created_at",
)
#: Rows without Id wait in ``focus_stage_hashed`` with two more columns in front of the line.
_HASHED_COLUMNS = ("rownum", "row_hash") + _COPY_COLUMNS

_COPY_SPECIAL = re.compile(r"[\\\t\n\r]").search
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"
# What a JSON string may not hold as it is, besides a quote: a backslash, a control character.
_JSON_SPECIAL = re.compile(r"[\\\x00-\x1f]").search


def _copy_text(value: str | None) -> str:
    """``value`` as a field of COPY's text format (backslash, tab and line breaks escaped)."""
    if value is None:
        return _COPY_NULL
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL(value) else value


def _moment_text(cache: dict, value: dt.datetime | dt.date) -> str:
    if len(cache) >= _RowParser._CACHE_LIMIT:
        cache.clear()
    text = cache[value] = value.isoformat()
    return text  # not read back from the cache: the other thread may clear it meanwhile


def _raw_getter(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """A function giving the values at ``indexes`` of a record as a tuple (itemgetter when it can)."""
    if len(indexes) >= 2:
        return operator.itemgetter(*indexes)
    if len(indexes) == 1:
        only = indexes[0]
        return lambda values: (values[only],)
    return lambda values: ()


def _line_renderer(parser: _RowParser, created_at: dt.datetime) -> Callable[[_Row, str], str]:
    """A function turning a good row and its team id (as text, or ``\\N``) into one COPY text line
    (without its line break) for the usage table's ``_COPY_COLUMNS``, the team id first. A row
    without Id gets ``\\N`` for the idempotency key, which is decided at the end (the caller puts
    its rownum and hash in front: ``_hashed_prefix``).

    Lines in COPY's text format are written by hand: several times cheaper than ``write_row()``
    adapting 23 Python values per row, and the values are validated already. A line is joined as
    it is and then searched once for a character COPY would need escaped (a backslash beyond those
    of its NULLs, a line break, a tab inside a value: one tab too many); only such rare lines are
    built again field by field with escapes. The metadata JSON is a template filled in when it can
    be; the server parses it (and Tags) during the COPY.
    """
    raw_metadata = _raw_getter([i for _, i in parser.metadata_columns])
    # The metadata JSON of a record with every metadata column present and no character that JSON
    # escapes is this template filled in (the column names are plain ASCII); others use json.dumps.
    template = "{" + ", ".join(f'"{name}": "%s"' for name, _ in parser.metadata_columns) + "}"
    quotes = 4 * len(parser.metadata_columns)  # a quote inside a value makes more
    tabs = len(_COPY_COLUMNS) - 7  # between the 17 fields before the constant ones
    null, missing, special, metadata_of = _COPY_NULL, MISSING_VALUES, _JSON_SPECIAL, parser.metadata_json
    # resource_type, source, agent_id, model, feature_key, created_at (the transaction's now(), as
    # the ORM's auto_now_add would give every row of one save).
    constant = f"\t{RESOURCE_TYPE}\t{UsageRecord.Source.FOCUS_IMPORT}\t\t\t\t{created_at.isoformat()}"
    moments: dict[object, str] = {}  # occurred_at / billing period → text (few distinct values)

    def render(row: _Row, team: str) -> str:
        occurred, period = row.occurred_at, row.billing_period_start
        effective = row.effective_cost
        id_key = row.id_key
        values = raw_metadata(row.values)
        if missing.isdisjoint(values):
            metadata = template % values
            if metadata.count('"') != quotes or special(metadata):
                metadata = metadata_of(row.values)
        else:
            metadata = metadata_of(row.values)
        fields = (
            team, row.provider, row.unit, str(row.quantity), str(row.cost), row.currency,
            moments.get(occurred) or _moment_text(moments, occurred),
            moments.get(period) or _moment_text(moments, period),
            row.external_reference, null if id_key is None else id_key, metadata,
            null if effective is None else str(effective), row.charge_category, row.service_name,
            row.sub_account_name, row.resource_id, row.tags_json,
        )
        line = "\t".join(fields)
        # Each NULL (\N) brings one backslash; any other means a value needs escaping.
        nulls = (team == null) + (id_key is None) + (effective is None)
        if line.count("\\") != nulls or "\n" in line or "\r" in line or line.count("\t") != tabs:
            line = "\t".join(null if f is null else _copy_text(f) for f in fields)
        return line + constant

    return render


def _hashed_prefix(row: _Row) -> str:
    """What goes before a row's line in ``focus_stage_hashed``: ``rownum`` and ``row_hash``."""
    return f"{row.rownum}\t{row.row_hash}\t"


class _Block(NamedTuple):
    """One block of parsed rows, as the parsing thread hands it to the thread that writes."""

    data: bytes  # COPY text lines (each ending in a line break) of rows with an Id
    rows: int  # lines in data
    hashed: bytes  # COPY text lines of rows without Id, for focus_stage_hashed
    # Rows naming a team that had no id yet when parsed: (team key, what goes before the team id,
    # the line after it), completed by the writer once it has resolved the team.
    pending: list[tuple[str, str, str]]
    new_teams: list[tuple[str, str]]  # team keys first seen in this block, with their first currency


#: Sent by the parsing thread after the last block.
_END = object()


def _copy_blocks(rows: Iterator[_Row], render: Callable[[_Row, str], str], team_ids: dict[str, str],
                 block_rows: int, put: Callable[[object], bool], timings: dict[str, float]) -> None:
    """Turn the good rows into ``_Block``s of COPY text and ``put`` them; stop when ``put`` says so.

    Runs in the parsing thread: it touches no database connection (Django's are per thread), only
    the file, the parser, the result counters that ``_good_rows`` keeps, and ``team_ids`` (team key
    → id as text), which the writing thread fills as it resolves the teams of each block. A row
    naming a team not in it yet is handed over as a line without its team id, which the writer
    puts in (as text, so the memory of a block does not depend on how many teams are new in it).
    """
    first_seen: set[str] = set()
    new_teams: list[tuple[str, str]] = []
    lines: list[str] = []
    hashed: list[str] = []
    pending: list[tuple[str, str, str]] = []
    append, append_hashed, null = lines.append, hashed.append, _COPY_NULL
    busy = 0.0  # seconds spent parsing, not waiting for the writer to take a block

    def hand_over() -> bool:
        nonlocal new_teams, pending
        block = _Block(_copy_data(lines), len(lines), _copy_data(hashed), pending, new_teams)
        lines.clear()
        hashed.clear()
        new_teams, pending = [], []
        return put(block)

    started = time.perf_counter()
    count = 0
    for row in rows:
        team_key = row.team_key
        if team_key is None:
            team = null
        else:
            team = team_ids.get(team_key)
            if team is None:
                if team_key not in first_seen:
                    first_seen.add(team_key)
                    new_teams.append((team_key, row.currency))
                prefix = "" if row.id_key is not None else _hashed_prefix(row)
                pending.append((team_key, prefix, render(row, "")))
                count += 1
                if count == block_rows:
                    count = 0
                    busy += time.perf_counter() - started
                    if not hand_over():
                        return
                    started = time.perf_counter()
                continue
        if row.id_key is not None:
            append(render(row, team))
        else:
            append_hashed(_hashed_prefix(row) + render(row, team))
        count += 1
        if count == block_rows:
            count = 0
            busy += time.perf_counter() - started
            if not hand_over():
                return
            started = time.perf_counter()
    busy += time.perf_counter() - started
    if count and not hand_over():
        return
    timings["read"] = busy


def _copy_data(lines: list[str]) -> bytes:
    """COPY text of ``lines``, each ending in a line break."""
    if not lines:
        return b""
    lines.append("")  # the last line's break
    try:
        return "\n".join(lines).encode()
    finally:
        lines.pop()


def _team_fk_constraint(cursor: Any, table: str) -> str | None:
    """The name of the foreign key constraint of ``table.team_id`` (Django names it with a hash)."""
    cursor.execute(
        "SELECT c.conname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
        "AND a.attnum = ANY (c.conkey) WHERE c.conrelid = %s::regclass AND c.contype = 'f' "
        "AND a.attname = 'team_id'", [table])
    found = cursor.fetchone()
    return found[0] if found else None


def _may_skip_fk_triggers(cursor: Any, table: str) -> bool:
    """Whether the fast path may COPY with ``session_replication_role = replica`` (no trigger fires)
    and check the team foreign key itself, once per team instead of once per row.

    Only when this role may set that parameter (a superuser, or ``GRANT SET ON PARAMETER
    session_replication_role``, PostgreSQL 15+) and ``table`` has no trigger but the internal ones
    of its foreign keys, so that nothing else would be skipped.
    """
    if connection.pg_version < 150000:  # has_parameter_privilege() is new in 15
        return False
    cursor.execute(
        "SELECT has_parameter_privilege('session_replication_role', 'SET') AND NOT EXISTS (SELECT 1 FROM "
        "pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal) AND NOT EXISTS (SELECT 1 FROM "
        "pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) "
        "WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND a.attname NOT IN ('team_id', 'user_id'))",
        [table, table])
    return bool(cursor.fetchone()[0])


def _write_postgresql(rows: Iterator[_Row], result: FocusImportResult, parser: _RowParser,
                      block_rows: int) -> None:
    """Write the rows block by block, parsing the next block while the server writes this one;
    rows whose key exists already are left out and counted as duplicates.

    Why two threads: parsing is Python (one core, holding the GIL) and COPY, index upkeep and
    foreign key checks are the server's work (another core). Done one after the other they add up;
    here a parsing thread turns block N+1 into COPY text while this thread, which owns the
    connection (and the transaction), writes block N. psycopg releases the GIL while it waits on
    the server, so the two overlap. The queue holds at most one finished block, so at most three
    are in memory (being parsed, waiting, being written) whatever the size of the file.

    Each block of rows with an Id is first COPYed straight into the usage table in a savepoint (the
    fast path: no staging, no INSERT … SELECT, no ON CONFLICT). When a row of it exists already
    (the unique ``(source, idempotency_key)`` refuses it: a re-import, an overlapping file, the same
    Id twice in the file), the savepoint is rolled back and the block goes the careful way: COPY
    into a temporary table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``, which counts what it
    inserted. Once a block met duplicates, the following blocks take the careful way too, until one
    inserts all its rows (an overlap is usually a run of rows). Either way the unique index decides,
    so the result is the same row for row; the fast path only saves work when nothing conflicts.

    The foreign key to the team is checked at the end of each statement (``SET CONSTRAINTS …
    IMMEDIATE``) rather than at commit: the same checks, but now they run while the parsing thread
    works instead of after it, and a wrong team id still fails the import. The team ids come from
    ``_Teams`` in this same transaction. Where the role may (``_may_skip_fk_triggers``), the fast
    path's COPY runs with ``session_replication_role = replica``, which skips the per-row foreign
    key triggers (a query per row, about a quarter of the server's work), and the foreign key is
    checked per team instead: each team id is read with ``FOR KEY SHARE`` as it is resolved, before
    any line carries it, which is what the trigger does for each row (the team exists, and cannot be
    deleted or have its id changed until this transaction ends). ``user_id`` is always NULL here.

    Everything still happens in the caller's one transaction: a bad value in any block (or any
    other failure of the parsing thread) is re-raised here, as it was raised there, before the
    commit, and the transaction rolls back what earlier blocks wrote.

    Rows without Id are kept in a second staging table until the end, because the n-th copy of the
    same values in the file gets ordinal n, counted over the whole file; such rows are rare in real
    files.
    """
    import psycopg  # the PostgreSQL driver, present whenever this path runs

    table = UsageRecord._meta.db_table
    teams = _Teams(result)
    timings = result.timings
    blocks: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()  # set by the writer when it gives up: the parser then stops too
    team_ids: dict[str, str] = {}  # filled here, read by the parsing thread

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                blocks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    columns = ", ".join(_COPY_COLUMNS)
    copy_usage = f"COPY {table} ({columns}) FROM STDIN"
    copy_stage = f"COPY focus_stage ({columns}) FROM STDIN"
    copy_hashed = f"COPY focus_stage_hashed ({', '.join(_HASHED_COLUMNS)}) FROM STDIN"
    insert_staged = (f"INSERT INTO {table} ({columns}) SELECT {columns} FROM focus_stage "
                     "ON CONFLICT (source, idempotency_key) DO NOTHING")
    # Rows without Id: the n-th copy of the same values in the file gets ordinal n.
    ordinal = "'row:' || s.row_hash || ':' || row_number() OVER (PARTITION BY s.row_hash ORDER BY s.rownum)"
    insert_hashed = (
        f"INSERT INTO {table} ({columns}) SELECT "
        + ", ".join(ordinal if c == "idempotency_key" else f"s.{c}" for c in _COPY_COLUMNS)
        + " FROM focus_stage_hashed s ON CONFLICT (source, idempotency_key) DO NOTHING"
    )

    with connection.cursor() as cursor:
        raw = cursor.cursor

        def copy(sql: str, *chunks: bytes) -> None:
            with raw.copy(sql) as stream:
                for chunk in chunks:
                    if chunk:
                        stream.write(chunk)

        # Serialize FOCUS imports: two files naming the same new team must not race to create it.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])
        cursor.execute("SELECT now()")
        created_at = cursor.fetchone()[0]
        cursor.execute("DROP TABLE IF EXISTS focus_stage, focus_stage_hashed")
        # Same column types as the usage table, no constraints, dropped at commit.
        cursor.execute(f"CREATE TEMPORARY TABLE focus_stage ON COMMIT DROP AS SELECT {columns} FROM {table} "
                       "WITH NO DATA")
        cursor.execute(f"CREATE TEMPORARY TABLE focus_stage_hashed ON COMMIT DROP AS SELECT 0::bigint AS rownum, "
                       f"''::text AS row_hash, {columns} FROM {table} WITH NO DATA")
        team_fk = _team_fk_constraint(cursor, table)
        if team_fk:
            cursor.execute(f"SET CONSTRAINTS {connection.ops.quote_name(team_fk)} IMMEDIATE")
        replica = _may_skip_fk_triggers(cursor, table)
        if replica:
            cursor.execute("SELECT current_setting('session_replication_role')")
            role = cursor.fetchone()[0]
        render = _line_renderer(parser, created_at)

        def produce() -> None:
            try:
                _copy_blocks(rows, render, team_ids, block_rows, put, timings)
            except BaseException as exc:  # noqa: BLE001 - handed over and re-raised in the writer
                put(exc)
            else:
                put(_END)

        waited = copying = staging = resolving = inserting = 0.0
        inserted = 0
        fast = True
        parser_thread = threading.Thread(target=produce, name="focus-import-parser", daemon=True)
        parser_thread.start()
        try:
            while True:
                clock = time.perf_counter()
                block = blocks.get()
                if block is _END:
                    break
                if isinstance(block, BaseException):
                    raise block
                clock, before = time.perf_counter(), clock
                waited += clock - before
                if block.new_teams:
                    teams.prefetch(key for key, _ in block.new_teams)
                    resolved = {key: teams.resolve(key, currency) for key, currency in block.new_teams}
                    if replica:  # the foreign key check, once per team (see the docstring)
                        cursor.execute(f"SELECT id FROM {Team._meta.db_table} WHERE id = ANY(%s) FOR KEY SHARE",
                                       [sorted(set(resolved.values()))])
                        missing = set(resolved.values()) - {found for found, in cursor.fetchall()}
                        if missing:
                            raise IntegrityError(f"teams {sorted(missing)} disappeared during the FOCUS import")
                    team_ids.update((key, str(team_id)) for key, team_id in resolved.items())
                data, count, hashed = block.data, block.rows, block.hashed
                if block.pending:  # every team named so far has an id now
                    with_id = [team_ids[key] + rest for key, prefix, rest in block.pending if not prefix]
                    without = [prefix + team_ids[key] + rest for key, prefix, rest in block.pending if prefix]
                    data, count = data + _copy_data(with_id), count + len(with_id)
                    hashed += _copy_data(without)
                    del with_id, without
                block = None  # its text may go before the next block comes
                clock, before = time.perf_counter(), clock
                resolving += clock - before
                if hashed:
                    copy(copy_hashed, hashed)
                if count and fast:
                    try:
                        with transaction.atomic():
                            if replica:  # reverted by the savepoint's rollback too
                                cursor.execute("SET LOCAL session_replication_role = replica")
                            copy(copy_usage, data)
                            if replica:
                                cursor.execute("SELECT set_config('session_replication_role', %s, true)", [role])
                        inserted += count
                        count = 0
                    except psycopg.errors.UniqueViolation:
                        fast = False
                    clock, before = time.perf_counter(), clock
                    copying += clock - before
                if count:  # not done by the fast path
                    copy(copy_stage, data)
                    clock, before = time.perf_counter(), clock
                    staging += clock - before
                    cursor.execute(insert_staged)
                    inserted += cursor.rowcount
                    fast = cursor.rowcount == count  # no duplicates: try the fast path again
                    cursor.execute("TRUNCATE focus_stage")
                    clock, before = time.perf_counter(), clock
                    inserting += clock - before
                del data, hashed
        finally:
            stop.set()
            parser_thread.join()
        clock = time.perf_counter()
        cursor.execute(insert_hashed)
        inserted += cursor.rowcount
        if team_fk:  # back to Django's INITIALLY DEFERRED for the rest of the caller's transaction
            cursor.execute(f"SET CONSTRAINTS {connection.ops.quote_name(team_fk)} DEFERRED")
        inserting += time.perf_counter() - clock
    result.rows_imported = inserted
    # The phases overlap (parsing runs beside the others), so they add up to more than the wall time.
    timings.update(wait=waited, teams=resolving, copy=copying, stage=staging, insert=inserting)
