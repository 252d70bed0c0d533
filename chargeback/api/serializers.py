"""Serializers of the chargeback API: validation and shape only (the services do the work).

Money is a decimal string with 12 decimal places and its ``currency`` beside it; timestamps are
ISO 8601 with their time zone. Fields a caller must not set are read-only.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_site.api.fields import (
    AwareDateTimeField,
    MoneyField,
    MonthStartField,
    StrictPrimaryKeyRelatedField,
    StrictSerializerMixin,
    date_range,
    month_range,
)
from chargeback.models import AllocatedCost, AllocationRule, AllocationRun, AllocationTarget, Price, UsageRecord
from chargeback.selectors import allocation_currency_totals
from chargeback.services.usage import USAGE_BATCH_MAX
from teams.models import Team

User = get_user_model()


# --- usage ------------------------------------------------------------------------------------


class UsageRecordSerializer(serializers.ModelSerializer):
    """A usage record as read: ``cost`` (12 dp) in ``currency``; ``quantity`` in ``unit``; ``status``
    ``void`` (with ``void_reason``) when finance voided it: it then counts in no allocation or summary."""

    cost = MoneyField(read_only=True)
    quantity = MoneyField(read_only=True)

    class Meta:
        model = UsageRecord
        fields = [
            "id", "team", "user", "agent_id", "resource_type", "provider", "model", "unit", "quantity", "cost",
            "currency", "occurred_at", "billing_period_start", "source", "feature_key", "external_reference",
            "idempotency_key", "metadata", "service_name", "created_at", "status", "void_reason",
        ]
        read_only_fields = fields


class UsageInputSerializer(StrictSerializerMixin, serializers.Serializer):
    """One usage record to record. ``cost`` empty: priced from the catalog at ``occurred_at``; else zero or
    more (a negative cost, ``-0`` too, is refused by the service: 400 naming ``cost``). ``currency`` must be
    one the team is billed in (422 ``currency_not_allowed``)."""

    user = StrictPrimaryKeyRelatedField(queryset=User.objects.all(), required=False, allow_null=True)
    agent_id = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    resource_type = serializers.CharField(max_length=50)
    provider = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    model = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    unit = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    quantity = serializers.DecimalField(max_digits=30, decimal_places=12, min_value=0)
    cost = serializers.DecimalField(max_digits=30, decimal_places=12, required=False, allow_null=True)
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_null=True,
                                      error_messages={"invalid": "A three-letter ISO 4217 code, e.g. USD."})
    occurred_at = AwareDateTimeField(required=False)
    idempotency_key = serializers.CharField(max_length=255, required=False)
    feature_key = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    external_reference = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    metadata = serializers.DictField(required=False, allow_null=True)


class UsageCreateSerializer(UsageInputSerializer):
    """``POST usage/``: one record; ``team`` may be left out by a key or a member of one team."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True)


class UsageBatchSerializer(StrictSerializerMixin, serializers.Serializer):
    """``POST usage/batch/``: up to 1,000 records, each with its own ``idempotency_key``; all or none."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True)
    records = UsageInputSerializer(many=True, allow_empty=False, max_length=USAGE_BATCH_MAX)

    def validate_records(self, records):
        for index, record in enumerate(records):
            if not record.get("idempotency_key"):
                raise serializers.ValidationError(
                    {index: {"idempotency_key": ["Every record of a batch needs its own idempotency key."]}}
                )
        return records


class UsageBatchResultSerializer(serializers.Serializer):
    object = serializers.CharField(default="usage_batch")
    team = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Records in the request.")
    created = serializers.IntegerField(help_text="Records written now.")
    replayed = serializers.IntegerField(help_text="Records whose idempotency key was recorded before (not written again).")
    ids = serializers.ListField(child=serializers.IntegerField(), help_text="Record ids, in request order.")


class UsageSummaryQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    period_start = serializers.DateField(help_text="First day (inclusive), UTC.")
    period_end = serializers.DateField(help_text="Day after the last (exclusive), UTC.")
    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)
    user = StrictPrimaryKeyRelatedField(queryset=User.objects.all(), required=False)

    def validate(self, data):
        date_range(data)
        return data


class _SummaryRow(serializers.Serializer):
    currency = serializers.CharField()
    cost = MoneyField()
    quantity = MoneyField(allow_null=True, help_text="Summed in unit; null when the rows mix units (see by_unit).")
    unit = serializers.CharField(allow_blank=True, help_text="The one unit of quantity; empty when the rows mix units.")
    records = serializers.IntegerField()


class _ByResourceType(_SummaryRow):
    resource_type = serializers.CharField()


class _ByAgent(_SummaryRow):
    agent_id = serializers.CharField()


class _ByProvider(_SummaryRow):
    provider = serializers.CharField()


class _ByFeature(_SummaryRow):
    feature_key = serializers.CharField()


class _ByUnit(_SummaryRow):
    pass


class UsageSummarySerializer(serializers.Serializer):
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    team = serializers.IntegerField(allow_null=True)
    user = serializers.IntegerField(allow_null=True)
    totals = _SummaryRow(many=True)
    by_resource_type = _ByResourceType(many=True)
    by_agent = _ByAgent(many=True)
    by_provider = _ByProvider(many=True)
    by_feature = _ByFeature(many=True)
    by_unit = _ByUnit(many=True, help_text="Quantity per unit: the one sum of quantities that means something.")


# --- prices and providers ---------------------------------------------------------------------


class PriceQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    category = serializers.CharField(max_length=50)
    provider = serializers.CharField(max_length=100)
    model = serializers.CharField(max_length=100)
    unit = serializers.CharField(max_length=50)
    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)
    at = AwareDateTimeField(required=False, help_text="When the price must be valid; default now.")


class ProviderQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    """``?team=<id>``: the providers that team may use (default: the caller's only team, or the whole catalog)."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)


class PriceSerializer(serializers.ModelSerializer):
    unit_price = MoneyField(read_only=True)
    scope = serializers.SerializerMethodField()

    class Meta:
        model = Price
        fields = ["id", "category", "provider", "model", "unit", "unit_price", "currency", "valid_from", "valid_to",
                  "team", "scope"]
        read_only_fields = fields

    def get_scope(self, price) -> str:
        return "team_override" if price.team_id else "global"


class ProviderSerializer(serializers.Serializer):
    provider = serializers.CharField()
    categories = serializers.ListField(child=serializers.CharField())


class ProviderListSerializer(serializers.Serializer):
    team = serializers.IntegerField(allow_null=True)
    results = ProviderSerializer(many=True)


# --- allocation rules and runs ---------------------------------------------------------------


class AllocationTargetSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    user = StrictPrimaryKeyRelatedField(queryset=User.objects.all(), required=False, allow_null=True)
    percentage = serializers.DecimalField(max_digits=7, decimal_places=4, required=False, allow_null=True,
                                          min_value=0, max_value=100)

    class Meta:
        model = AllocationTarget
        fields = ["team", "user", "percentage"]


class AllocationRuleSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    """An allocation rule and its targets (replaced as a whole when given)."""

    targets = AllocationTargetSerializer(many=True, required=False)

    class Meta:
        model = AllocationRule
        fields = [
            "id", "name", "description", "rule_type", "enabled", "priority", "scope_team", "source", "source_team",
            "match_resource_type", "match_provider", "match_service_name", "match_tag_key", "match_tag_value",
            "valid_from", "valid_to", "targets", "created_by", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]

    def validate(self, data):
        date_range(data, "valid_from", "valid_to")
        return data


class AllocationRunCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    period_start = MonthStartField(help_text="First day of a month (inclusive).")
    period_end = MonthStartField(help_text="First day of a later month (exclusive).")
    rule = StrictPrimaryKeyRelatedField(queryset=AllocationRule.objects.all(), required=False, allow_null=True)
    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True)
    dry_run = serializers.BooleanField(required=False, default=False)

    def validate(self, data):
        month_range(data)
        return data


class AllocatedCostSerializer(serializers.ModelSerializer):
    amount = MoneyField(read_only=True)
    quantity = MoneyField(read_only=True, allow_null=True)
    period_start = serializers.DateField(source="run.period_start", read_only=True)
    period_end = serializers.DateField(source="run.period_end", read_only=True)

    class Meta:
        model = AllocatedCost
        fields = ["id", "run", "period_start", "period_end", "rule", "team", "user", "service", "quantity", "unit",
                  "amount", "currency", "record_count", "details"]
        read_only_fields = fields


class AllocationPoolSerializer(serializers.Serializer):
    """One currency's pool of a run: metered figures, ``allocated + unallocated == total`` exactly."""

    currency = serializers.CharField()
    record_count = serializers.IntegerField()
    total_cost = MoneyField()
    allocated_cost = MoneyField()
    unallocated_cost = MoneyField()


class AllocationRunSerializer(serializers.ModelSerializer):
    """A run: ``pools`` has every currency's figures; ``currency``, ``total_cost``… repeat the principal one's."""

    pools = serializers.SerializerMethodField()
    total_cost = MoneyField(read_only=True)
    allocated_cost = MoneyField(read_only=True)
    unallocated_cost = MoneyField(read_only=True)
    id = serializers.IntegerField(read_only=True, allow_null=True, help_text="Empty for a dry run (never saved).")

    class Meta:
        model = AllocationRun
        fields = ["id", "period_start", "period_end", "status", "dry_run", "rule", "team", "currency", "total_cost",
                  "allocated_cost", "unallocated_cost", "record_count", "pools", "warnings", "refused", "created_by",
                  "created_at", "committed_at"]
        read_only_fields = fields

    @extend_schema_field(AllocationPoolSerializer(many=True))
    def get_pools(self, run) -> list[dict]:
        return AllocationPoolSerializer(allocation_currency_totals(run), many=True).data


class AllocationRunResultSerializer(serializers.Serializer):
    run = AllocationRunSerializer()
    allocations = AllocatedCostSerializer(many=True, help_text="A dry run's rows (the team's when one was asked for); "
                                                                "empty for a saved run: read them with GET allocations/?run=.")


# --- the batch's fast path --------------------------------------------------------------------

import datetime as _dt  # noqa: E402
import re as _re  # noqa: E402
from decimal import Decimal as _Decimal  # noqa: E402
from decimal import InvalidOperation as _InvalidOperation

_TEXT = {  # name: (max length, required)
    "agent_id": (200, False), "resource_type": (50, True), "provider": (100, False), "model": (100, False),
    "unit": (50, False), "idempotency_key": (255, True), "feature_key": (100, False),
    "external_reference": (255, False),
}
_BATCH_FIELDS = set(_TEXT) | {"user", "quantity", "cost", "currency", "occurred_at", "metadata"}
_CURRENCY = _re.compile(r"^[A-Z]{3}$")


def _record_error(index: int, field: str | None, message: str) -> serializers.ValidationError:
    detail = {field: [message]} if field else [message]
    return serializers.ValidationError({"records": {index: detail}})


def _metered(value, index: int, field: str, *, minimum=None) -> _Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, _Decimal)):
        raise _record_error(index, field, "A valid number is required.")
    try:
        number = _Decimal(value) if not isinstance(value, _Decimal) else value
    except _InvalidOperation:
        raise _record_error(index, field, "A valid number is required.") from None
    if not number.is_finite():
        raise _record_error(index, field, "A valid number is required.")
    sign, digits, exponent = number.as_tuple()
    if exponent < -12:
        raise _record_error(index, field, "Ensure that there are no more than 12 decimal places.")
    if len(digits) + min(exponent, 0) > 18 or max(len(digits), -exponent) > 30:
        raise _record_error(index, field, "Ensure that there are no more than 30 digits in total.")
    if minimum is not None and number < minimum:
        raise _record_error(index, field, f"Ensure this value is greater than or equal to {minimum}.")
    return number


def batch_records_validate(raw) -> list[dict]:
    """Validate ``POST usage/batch/``'s ``records`` as :class:`UsageInputSerializer` would, ~50× faster.

    A DRF serializer costs about a millisecond per record; a batch of 1,000 records must take a
    fraction of a second (≥ 5,000 records/s, ``bench/api_load.py``). Same fields, types, limits and messages;
    an error names the row and field (``records[3].quantity``). Users are read in one query.

    The batch is checked column by column first (:func:`_records_columns`: each check one C-level
    pass over the 1,000 values, each distinct quantity and time parsed once); a batch that passes
    gives the same rows as the check of one record after another (:func:`_records_one_by_one`),
    which runs only when a check fails, to name the first bad field in reading order with its message.
    """
    if not isinstance(raw, list):
        raise serializers.ValidationError({"records": ["Expected a list of items."]})
    if not raw:
        raise serializers.ValidationError({"records": ["This list may not be empty."]})
    if len(raw) > USAGE_BATCH_MAX:
        raise serializers.ValidationError({"records": [f"Ensure this field has no more than {USAGE_BATCH_MAX} elements."]})
    checked = _records_columns(raw)
    rows, user_ids = checked if checked is not None else _records_one_by_one(raw)
    if user_ids:
        users = User.objects.in_bulk(list(user_ids))
        for user_id, first in user_ids.items():
            if user_id not in users:
                raise _record_error(first, "user", f'Invalid pk "{user_id}" - object does not exist.')
        for row in rows:
            if "user" in row:
                row["user"] = users[row["user"]]
    return rows


def _records_one_by_one(raw: list) -> tuple[list[dict], dict[int, int]]:
    """The records checked one after another, each field in order: the first bad one raises its error.

    Returns the rows and ``{user id: first row}`` of the users named (read by the caller).
    """
    rows, user_ids = [], {}
    for i, record in enumerate(raw):
        if not isinstance(record, dict):
            raise _record_error(i, None, "Expected an object.")
        unknown = record.keys() - _BATCH_FIELDS
        if unknown:
            raise _record_error(i, sorted(unknown)[0], "Unknown field.")
        row: dict = {}
        for name, (max_length, required) in _TEXT.items():
            value = record.get(name)
            if value is None:
                if required:
                    raise _record_error(i, name, "This field is required.")
                row[name] = ""
                continue
            if not isinstance(value, str):
                raise _record_error(i, name, "Not a valid string.")
            value = value.strip()
            if required and not value:
                raise _record_error(i, name, "This field may not be blank.")
            if len(value) > max_length:
                raise _record_error(i, name, f"Ensure this field has no more than {max_length} characters.")
            row[name] = value
        if "quantity" not in record:
            raise _record_error(i, "quantity", "This field is required.")
        row["quantity"] = _metered(record["quantity"], i, "quantity", minimum=0)
        if record.get("cost") is not None:
            row["cost"] = _metered(record["cost"], i, "cost")
        currency = record.get("currency")
        if currency is not None:
            if not isinstance(currency, str) or not _CURRENCY.match(currency):
                raise _record_error(i, "currency", "A three-letter ISO 4217 code, e.g. USD.")
            row["currency"] = currency
        occurred_at = record.get("occurred_at")
        if occurred_at is not None:
            row["occurred_at"] = _occurred_at(occurred_at, i)
        metadata = record.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise _record_error(i, "metadata", "Expected a dictionary of items.")
            row["metadata"] = metadata
        user = record.get("user")
        if user is not None:
            if isinstance(user, bool) or not isinstance(user, int):
                raise _record_error(i, "user", "Incorrect type. Expected pk value.")
            user_ids.setdefault(user, i)
            row["user"] = user
        rows.append(row)
    return rows, user_ids


def _occurred_at(value, index: int) -> _dt.datetime:
    """``occurred_at`` as an aware datetime in UTC (ISO 8601 text with its time zone), else the row's error."""
    try:
        parsed = _dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise _record_error(index, "occurred_at", "Datetime has wrong format. Use ISO 8601, e.g. 2024-09-15T12:00:00Z.")
    if parsed.tzinfo is None:
        raise _record_error(index, "occurred_at", "Give the time zone, e.g. 2024-09-15T12:00:00Z.")
    try:
        # In UTC, as the single path reads it: PostgreSQL cannot read an offset of 16 hours.
        return parsed.astimezone(_dt.timezone.utc)
    except OverflowError:
        raise _record_error(index, "occurred_at", "Datetime value out of range.") from None


_NONE = type(None)
_TEXT_TYPES, _OPTIONAL_TEXT_TYPES = {str}, {str, _NONE}
_NUMBER_TYPES = {str, int, _Decimal}  # bool is refused: ``type(True)`` is ``bool``, not ``int``


def _records_columns(raw: list) -> tuple[list[dict], dict[int, int]] | None:
    """The rows of :func:`_records_one_by_one`, checked a column at a time; ``None`` if any check fails.

    Every check is the one-by-one check's, over the batch's column of that field: types by the set of
    the values' types, blanks and lengths by ``map``; a quantity, cost or time is parsed once per
    distinct text (a batch repeats them) with the one-by-one functions. ``None`` says only that some
    record is wrong (or of a kind this pass leaves to the other, e.g. a ``dict`` subclass): the caller
    then checks one by one, which raises the first error in reading order.
    """
    if set(map(type, raw)) != {dict} or not set().union(*raw) <= _BATCH_FIELDS:
        return None
    names, columns = [], []
    for name, (max_length, required) in _TEXT.items():
        column = [record.get(name) for record in raw]
        types = set(map(type, column))
        if types == _TEXT_TYPES:
            column = list(map(str.strip, column))
            if required and not all(column):
                return None
        elif required or not types <= _OPTIONAL_TEXT_TYPES:
            return None
        else:
            column = ["" if value is None else value.strip() for value in column]
        if max(map(len, column)) > max_length:
            return None
        names.append(name)
        columns.append(column)
    if not all("quantity" in record for record in raw):
        return None
    quantities = [record["quantity"] for record in raw]
    if not set(map(type, quantities)) <= _NUMBER_TYPES:
        return None
    quantities = _numbers_column(quantities, 0)
    if quantities is None:
        return None
    names.append("quantity")
    columns.append(quantities)
    rows = [dict(zip(names, values)) for values in zip(*columns)]
    user_ids: dict[int, int] = {}
    for name in ("cost", "currency", "occurred_at", "metadata", "user"):
        column = [record.get(name) for record in raw]
        types = set(map(type, column))
        if types == {_NONE}:
            continue
        if name == "cost":
            column = _numbers_column(column, None)
        elif name == "currency":
            if not types <= _OPTIONAL_TEXT_TYPES or not all(_CURRENCY.match(v) for v in column if v is not None):
                return None
        elif name == "occurred_at":
            column = _times_column(column) if types <= _OPTIONAL_TEXT_TYPES else None
        elif name == "metadata":
            if not types <= {dict, _NONE}:
                return None
        elif types <= {int, _NONE}:
            for i, value in enumerate(column):
                if value is not None:
                    user_ids.setdefault(value, i)
        else:
            return None
        if column is None:
            return None
        for row, value in zip(rows, column):
            if value is not None:
                row[name] = value
    return rows, user_ids


def _numbers_column(column: list, minimum) -> list | None:
    """Each value as :func:`_metered` reads it (``None`` stays, for a cost); ``None`` if one is refused.

    Texts are parsed once each; an int or a Decimal is checked where it stands (equal numbers of
    different types, ``1`` and ``1.0``, must keep their own digits).
    """
    types = set(map(type, column))
    if not types <= _NUMBER_TYPES | {_NONE}:
        return None
    parsed: dict[str, _Decimal] = {}
    out = []
    try:
        if types == {str}:  # as JSON clients send decimals: each distinct text once, then looked up
            for value in set(column):
                parsed[value] = _metered(value, 0, "", minimum=minimum)
            return list(map(parsed.__getitem__, column))
        for value in column:
            if value is None:
                out.append(None)
            elif type(value) is str:
                number = parsed.get(value)
                if number is None:
                    number = parsed[value] = _metered(value, 0, "", minimum=minimum)
                out.append(number)
            else:
                out.append(_metered(value, 0, "", minimum=minimum))
    except serializers.ValidationError:
        return None
    return out


def _times_column(column: list) -> list | None:
    """Each ``occurred_at`` text as :func:`_occurred_at` reads it, each distinct text once; ``None`` if one is refused."""
    parsed: dict[str, _dt.datetime] = {}
    try:
        for value in set(column) - {None}:
            parsed[value] = _occurred_at(value, 0)
    except serializers.ValidationError:
        return None
    return [None if value is None else parsed[value] for value in column]
