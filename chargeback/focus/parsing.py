"""Parsing one record of a FOCUS 1.0–1.4 file into a row: required values, amounts, timestamps, currency,
ChargeCategory, ``Tags`` and the team they name, and the row's identity (its idempotency key).

The FOCUS version is told by the columns (``detect_version``): 1.4 drops ``ProviderName`` for
``ServiceProviderName`` (who sold the service) and ``HostProviderName`` (whose cloud runs it); 1.3
adds them beside it; ``InvoiceIssuerName`` is in every version. The provider of a row is the first
of ``PROVIDER_COLUMNS`` the header has.

Column mapping (FOCUS column → ``UsageRecord`` field):

* ``BilledCost`` → ``cost`` (Decimal, quantized as ``money.quantize_metered`` does; may be negative);
  ``EffectiveCost`` → ``effective_cost``; ``BillingCurrency`` → ``currency``.
* ``BillingPeriodStart`` → ``billing_period_start`` (the date as written, which must be the first day of
  a month); ``ChargePeriodStart`` → ``occurred_at`` (UTC).
* ``ChargeCategory`` → ``charge_category``; ``ServiceName`` → ``service_name``; ``ProviderName``
  (1.0–1.3; 1.4: ``ServiceProviderName``, else ``HostProviderName``, else ``InvoiceIssuerName``) →
  ``provider``; ``SubAccountName`` → ``sub_account_name``; ``ResourceId`` → ``resource_id``;
  ``Tags`` → ``tags``; ``Id`` → ``external_reference``; ``ConsumedQuantity``/``ConsumedUnit`` →
  ``quantity``/``unit``.
* ``resource_type`` is always ``"cloud"`` (``ServiceCategory`` is kept in ``metadata``), so one
  allocation rule can match every imported cloud cost.
* ``metadata`` keeps the raw text of the columns in ``METADATA_COLUMNS`` that the row has, and of
  every provider column (a name starting with ``x_``, or OCI's ``oci_``).
* ``ChargeClass`` may be empty or ``Correction``: a correction is billed in the month of its
  ``BillingPeriodStart`` (the period it corrects), like every row; the value is kept in ``metadata``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from billing_site.money import METERED_QUANTUM, ROUNDING
from chargeback.focus.teams import mapped_key

#: Columns a row cannot do without: what it cost, in which currency, when, in which billing period,
#: what kind of charge, and from whom (provider and service). All are mandatory in FOCUS 1.0 and
#: may not be null there; a missing value in one of them is a bad row.
REQUIRED_COLUMNS = (
    "BilledCost",
    "BillingCurrency",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodStart",
    "ServiceName",
)

#: Where a row's provider is read, the first the header has: ``ProviderName`` (FOCUS 1.0–1.3, deprecated
#: in 1.3, gone in 1.4), ``ServiceProviderName`` and ``HostProviderName`` (1.3+), ``InvoiceIssuerName``.
#: One of them is required.
PROVIDER_COLUMNS = ("ProviderName", "ServiceProviderName", "HostProviderName", "InvoiceIssuerName")

#: Columns that first appear in a FOCUS version (cost-and-usage dataset), newest first: the version
#: of a file is the newest whose columns it has. 1.4 is also any file with ``ServiceProviderName``
#: but no ``ProviderName`` (1.4 removed it).
VERSION_MARKERS = (
    ("1.4", ("InvoiceDetailId", "CommitmentProgramEligibilityDetails")),
    ("1.3", ("ServiceProviderName", "HostProviderName", "ContractApplied", "AllocatedMethodId",
             "AllocatedResourceId", "AllocatedTags")),
    ("1.2", ("InvoiceId", "BillingAccountType", "SubAccountType", "PricingCurrency",
             "PricingCurrencyEffectiveCost")),
    ("1.1", ("ServiceSubcategory", "CapacityReservationId", "CapacityReservationStatus",
             "CommitmentDiscountQuantity", "CommitmentDiscountUnit", "SkuMeter", "SkuPriceDetails")),
)


def detect_version(header: list[str]) -> str:
    """The FOCUS version (``"1.0"`` … ``"1.4"``) a cost-and-usage file's columns say it is."""
    columns = set(header)
    if "ProviderName" not in columns and "ServiceProviderName" in columns:
        return "1.4"
    for version, markers in VERSION_MARKERS:
        if columns.intersection(markers):
            return version
    return "1.0"

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
    # FOCUS 1.1–1.4: what a FinOps reader asks of a line once it is billed.
    "ChargeClass",
    "ServiceSubcategory",
    "CommitmentDiscountId",
    "CommitmentDiscountCategory",
    "CommitmentDiscountType",
    "CommitmentDiscountStatus",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "SkuPriceDetails",
    "ContractApplied",
    "InvoiceId",
    "InvoiceIssuerName",
    "ServiceProviderName",
    "HostProviderName",
)

#: Provider columns, kept in ``metadata`` as written: FOCUS reserves ``x_`` for them; OCI's FOCUS
#: reports use ``oci_``.
PROVIDER_COLUMN_PREFIXES = ("x_", "oci_")

#: ``ChargeClass`` values: none, or a correction of an earlier billing period.
CHARGE_CLASSES = {"correction": "Correction"}

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


_MAX_LENGTHS = {
    "ProviderName": 100,
    "ServiceName": 200,
    "SubAccountName": 200,
    "ResourceId": 1000,
    "ConsumedUnit": 50,
    "Id": 255,
}
_TEAM_NAME_MAX = 200
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_ID_KEY_MAX = 255


class RowError(Exception):
    def __init__(self, column: str | None, message: str) -> None:
        super().__init__(message)
        self.column, self.message = column, message


class ParsedRow(NamedTuple):
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


class RowParser:
    """Turns one CSV record into a ``ParsedRow``, or raises ``RowError(column, message)``.

    Timestamps, currencies and ``Tags`` repeat a lot in a cost file, so their parsed forms are
    cached (bounded): most rows cost a dictionary lookup for them.
    """

    CACHE_LIMIT = 50_000

    def __init__(self, header: list[str], *, file: str, team_tag: str,
                 subaccount_fallback: bool) -> None:
        self.file = file
        self.team_tag, self.subaccount_fallback = team_tag, subaccount_fallback
        self.width = len(header)
        self.header = header
        index = {name: i for i, name in enumerate(header)}
        self.index = index
        self.i_cost = index["BilledCost"]
        self.i_currency = index["BillingCurrency"]
        self.i_period = index["BillingPeriodStart"]
        self.i_category = index["ChargeCategory"]
        self.i_start = index["ChargePeriodStart"]
        self.provider_column = next(c for c in PROVIDER_COLUMNS if c in index)
        self.i_provider = index[self.provider_column]
        self.i_service = index["ServiceName"]
        self.required = [(c, index[c]) for c in (*REQUIRED_COLUMNS, self.provider_column)]
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
        self.i_class = index.get("ChargeClass", absent)
        self.metadata_columns = [(c, index[c]) for c in METADATA_COLUMNS if c in index] + [
            (c, i) for i, c in enumerate(header) if c.startswith(PROVIDER_COLUMN_PREFIXES)]
        # Row hashes ignore column order: values are taken in the order of the sorted column names.
        self.hash_order = [index[c] for c in sorted(header)]
        self.hash_seed = hashlib.sha256("\x1f".join(sorted(header)).encode() + b"\x1e")
        self.timestamps: dict[str, dt.datetime] = {}
        self.periods: dict[str, dt.date] = {}
        self.tag_cache: dict[str, tuple[dict, str, str | None]] = {}
        self.currencies: dict[str, str] = {}
        self.mapping = None

    def parse(self, values: list[str], rownum: int) -> ParsedRow:
        # Written for speed (it runs once per row of files with millions): locals, dictionary
        # caches, and one membership test for the required values on the common path.
        if len(values) != self.width:
            raise RowError(None, f"has {len(values)} values, the header has {self.width} columns")
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
            for column, i in self.required:
                if values[i] in missing:
                    raise RowError(column, "required value is missing")

        cost = self._amount(cost_text, "BilledCost")
        currency = self.currencies.get(currency_text) or self._currency(currency_text)
        period = self.periods.get(period_text) or self._period(period_text)
        occurred_at = self.timestamps.get(start_text) or self._timestamp(start_text, "ChargePeriodStart")
        category = CHARGE_CATEGORIES.get(category_text) or self._category(category_text)
        charge_class = values[self.i_class]
        if charge_class not in missing and charge_class != "Correction":
            self._charge_class(charge_class)
        if len(provider) > 100 or len(service) > 200:
            self._text(provider, self.provider_column)
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
        if self.mapping:
            team_key = self._mapped(tags, values, sub_account, period) or team_key

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

        return ParsedRow(
            rownum, team_key, id_key, row_hash, provider, service, sub_account, resource, category,
            cost, effective_cost, currency, occurred_at, period, tags, tags_json, values, quantity,
            unit, record_id,
        )

    def _mapped(self, tags: dict, values: list[str], sub_account: str, period: dt.date) -> str | None:
        """The team key of finance's mapping for this row, if one applies: a mapped tag (keys in
        name order), else ``SubAccountId``, else ``SubAccountName``, else ``BillingAccountId``."""
        mapping = self.mapping
        for key in self.mapped_tag_keys:
            value = _team_key(tags.get(key))
            if value is not None:
                team_id = mapping.team("tag", key, value, period)
                if team_id is not None:
                    return mapped_key(team_id)
        for kind, i in self.mapped_columns:
            value = sub_account if kind == "sub_account_name" else values[i]
            if value and value not in MISSING_VALUES:
                team_id = mapping.team(kind, "", value, period)
                if team_id is not None:
                    return mapped_key(team_id)
        return None

    def used_columns(self) -> set[int]:
        """Indexes of the header's columns a row with an ``Id`` is read from (every other column only
        counts in the hash of a row without one): a Parquet reader converts just these."""
        used = {self.i_cost, self.i_currency, self.i_period, self.i_category, self.i_start, self.i_provider,
                self.i_service, self.i_effective, self.i_subaccount, self.i_resource, self.i_tags, self.i_id,
                self.i_account, self.i_quantity, self.i_unit, self.i_class}
        used.update(i for _, i in self.metadata_columns)
        used.update(self.index[c] for c in ("SubAccountId",) if c in self.index)
        return {i for i in used if i < self.width}

    def use_mapping(self, mapping) -> None:
        """Apply finance's team mappings (a ``chargeback.focus.teams.MappingIndex``) before the team tag."""
        self.mapping = mapping
        self.mapped_tag_keys = sorted(mapping.tag_keys)
        columns = (("sub_account_id", "SubAccountId"), ("sub_account_name", "SubAccountName"),
                   ("billing_account", "BillingAccountId"))
        self.mapped_columns = [(kind, self.index.get(column, self.width)) for kind, column in columns
                               if kind in mapping.kinds and column in self.index]

    def metadata(self, values: list[str]) -> dict[str, str]:
        """``UsageRecord.metadata`` of a record: the ``METADATA_COLUMNS`` it has a value for, as written."""
        return {c: values[i] for c, i in self.metadata_columns if values[i] not in MISSING_VALUES}

    def metadata_json(self, values: list[str]) -> str:
        """``metadata(values)`` as JSON text."""
        return json.dumps(self.metadata(values), ensure_ascii=False)

    def _category(self, text: str) -> str:
        category = CHARGE_CATEGORIES.get(text.strip().lower())
        if category is None:
            raise RowError("ChargeCategory", f"{text!r} is not a FOCUS 1.0 ChargeCategory "
                                              f"({', '.join(sorted(set(CHARGE_CATEGORIES.values())))})")
        return category

    @staticmethod
    def _charge_class(text: str) -> None:
        if text.strip().lower() not in CHARGE_CLASSES:
            raise RowError("ChargeClass", f"{text!r} is not a FOCUS ChargeClass (empty, or Correction)")

    @staticmethod
    def _text(value: str, column: str) -> str:
        limit = _MAX_LENGTHS.get(column, _MAX_LENGTHS["ProviderName"] if column in PROVIDER_COLUMNS else None)
        if limit is not None and len(value) > limit:
            raise RowError(column, f"value is {len(value)} characters long; at most {limit} are kept")
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
            raise RowError(column, f"{text!r} is not a decimal amount (at most 15 digits before "
                                    "the point)")
        return value

    def _currency(self, text: str) -> str:
        code = self.currencies.get(text)
        if code is None:
            code = text.strip().upper()
            if not _CURRENCY.match(code):
                raise RowError("BillingCurrency", f"{text!r} is not an ISO 4217 currency code")
            self.currencies[text] = code
        return code

    def _parse_datetime(self, text: str, column: str) -> dt.datetime:
        try:
            value = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise RowError(column, f"{text!r} is not a timestamp (2024-09-18 22:00:00 or ISO 8601, "
                                    "e.g. 2024-09-18T22:00:00Z)") from None
        return value

    def _timestamp(self, text: str, column: str) -> dt.datetime:
        value = self.timestamps.get(text)
        if value is None:
            value = self._parse_datetime(text, column)
            # FOCUS timestamps are UTC; a naive one is read as UTC, an offset is converted.
            value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
            if len(self.timestamps) >= self.CACHE_LIMIT:
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
                raise RowError("BillingPeriodStart", f"{text!r} is not the first day of a month "
                                                      "(billing periods are calendar months)")
            if len(self.periods) >= self.CACHE_LIMIT:
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
            raise RowError("Tags", f"is not valid JSON ({exc})") from None
        if not isinstance(tags, dict):
            raise RowError("Tags", f"must be a JSON object, got {type(tags).__name__}")
        tags_json = json.dumps(tags, ensure_ascii=False)
        if "\\u0000" in tags_json:
            raise RowError("Tags", "contains a NUL character")
        team_key = _team_key(tags.get(self.team_tag))
        if team_key is not None and len(team_key) > _TEAM_NAME_MAX:
            raise RowError("Tags", f"the {self.team_tag} value is longer than {_TEAM_NAME_MAX} characters")
        cached = (tags, tags_json, team_key)
        if len(self.tag_cache) >= self.CACHE_LIMIT:
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
