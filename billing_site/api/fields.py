"""Serializer pieces shared by the apps' API serializers."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers

from billing_site.errors import PeriodOrder

#: Ids are bigints: at most 19 digits (and Python refuses to read thousands of digits).
_DIGITS = re.compile(r"-?[0-9]{1,19}")


def integer_id(value: object, *, text: bool = True) -> int | None:
    """``value`` as an id, or ``None`` when it is not a whole number.

    An id is a JSON integer (``3``; ``3.0`` is the same number), or, with ``text`` (a query
    parameter: every one arrives as text), a string of up to 19 digits (``"3"``). ``1.5``,
    ``"1.5"``, ``"1e0"``, ``true``, ``""`` and lists are not ids: a lookup would cast ``1.5`` to 1
    and act on another object than the one named.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        whole = value.is_finite() and value.adjusted() < 19 and value == value.to_integral_value()
        return int(value) if whole else None
    if text and isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return None


def json_text(value: object) -> str:
    """A short rendering of a JSON value for an error message: ``1.5``, ``"abc"``, ``true``, ``a list``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value[:40])
    if isinstance(value, (int, Decimal)):
        return str(value)[:40]
    return "a list" if isinstance(value, list) else "an object"


class StrictPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related object named by its integer id (:func:`integer_id`: a JSON integer in a body, digits
    in a query string); anything else is refused (400 naming the field) before the database is
    asked. An id that names nothing is DRF's ``does_not_exist``, which the API answers with 404.
    ``StrictSerializerMixin`` makes it the related field of model serializers too."""

    default_error_messages = {"invalid": "An id is a whole number (at most 19 digits), got {value}."}

    def run_validation(self, data=serializers.empty):
        if data == "":  # DRF reads "" as null (an HTML form's empty choice); JSON has null for that
            self.fail("invalid", value='""')
        return super().run_validation(data)

    def to_internal_value(self, data):
        pk = integer_id(data, text=isinstance(getattr(self.root, "initial_data", None), QueryDict))
        if pk is None:
            self.fail("invalid", value=json_text(data))
        return super().to_internal_value(pk)


class StrictSerializerMixin:
    """Refuse fields the serializer does not know (a typo must not be silently ignored), query
    parameters given more than once (which one would count?), and ids that are not integers
    (:class:`StrictPrimaryKeyRelatedField` for the related fields of model serializers)."""

    serializer_related_field = StrictPrimaryKeyRelatedField

    def to_internal_value(self, data):
        if isinstance(data, QueryDict):
            repeated = sorted(name for name, values in data.lists() if len(values) > 1)
            if repeated:
                raise exceptions.ValidationError({repeated[0]: ["Give this parameter once."]})
            # DRF reads ``?user=`` as if the parameter were left out; only text that allows blank may be empty.
            blank = sorted(name for name, values in data.lists() if values == [""] and name in self.fields
                           and not getattr(self.fields[name], "allow_blank", False))
            if blank:
                raise exceptions.ValidationError({blank[0]: ["Give a value, or leave the parameter out."]})
        if isinstance(data, dict):
            known = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - known - set(getattr(self, "ignored_fields", ())))
            if unknown:
                raise exceptions.ValidationError({unknown[0]: ["Unknown field."]})
        return super().to_internal_value(data)


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 timestamp that must carry its time zone (``2024-09-15T12:00:00Z``)."""

    default_error_messages = {"naive": "Give the time zone, e.g. 2024-09-15T12:00:00Z."}

    def to_internal_value(self, value):
        if isinstance(value, str):
            parsed = serializers.DateTimeField(default_timezone=dt.timezone.utc).to_internal_value(value)
            raw = parse_datetime(value)
            if raw is not None and timezone.is_naive(raw):
                self.fail("naive")
            return parsed
        return super().to_internal_value(value)


def MoneyField(**kwargs) -> serializers.DecimalField:  # noqa: N802 - reads as a field class
    """A metered amount as a decimal string (30 digits, 12 decimals)."""
    kwargs.setdefault("max_digits", 30)
    kwargs.setdefault("decimal_places", 12)
    return serializers.DecimalField(**kwargs)


class TextField(serializers.CharField):
    """A JSON string only: DRF's ``CharField`` would read ``0`` or ``1.5`` as text. A number is
    refused (400 naming the field), as the schema's ``type: string`` says."""

    default_error_messages = {"not_a_string": "Give text (a JSON string)."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class DecimalStringField(serializers.DecimalField):
    """A decimal string only (``"49.00"``): the API's money shape, as the schema documents it. A JSON
    number is refused (400 naming the field), for fields of a resource that has always taken strings."""

    default_error_messages = {"not_a_string": "Give the amount as a decimal string, e.g. \"49.00\"."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


def MoneyStringField(**kwargs) -> DecimalStringField:  # noqa: N802 - reads as a field class
    """:func:`MoneyField` (30 digits, 12 decimals) that takes a decimal string only."""
    kwargs.setdefault("max_digits", 30)
    kwargs.setdefault("decimal_places", 12)
    return DecimalStringField(**kwargs)


def date_range(data: dict, start: str = "period_start", end: str = "period_end") -> None:
    """Refuse an end before (or on) the start: :class:`~billing_site.errors.PeriodOrder` (422) naming the end.

    Each date is well-formed on its own (those errors are 400); only the pair is wrong.
    """
    if data.get(start) and data.get(end) and data[end] <= data[start]:
        raise PeriodOrder(f"{end}: Must be after {start} (the end is exclusive).", param=end)


@extend_schema_field({"type": "string", "format": "date", "pattern": r"^(19[0-9]{2}|2[0-9]{3}|3000)-[0-9]{2}-01$"})
class MonthStartField(serializers.DateField):
    """A date on the first day of a month, years 1900 to 3000 (``2024-09-01``): an end or a start of
    a billing period, which is whole months. Another day is 400 naming the field."""

    default_error_messages = {
        "month_start": "Must be the first day of a month (periods are whole months).",
        "years": "Must lie in the years 1900 to 3000.",
    }

    def to_internal_value(self, value):
        day = super().to_internal_value(value)
        if day.day != 1:
            self.fail("month_start")
        if not 1900 <= day.year <= 3000:
            self.fail("years")
        return day


def month_range(data: dict, start: str = "period_start", end: str = "period_end") -> None:
    """``date_range`` over two :class:`MonthStartField` values: billing periods are whole months."""
    date_range(data, start, end)
