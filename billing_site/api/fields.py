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
#: The largest id: a PostgreSQL ``bigint``. Ids run from 1 to this, as the schema states.
ID_MAX = 2**63 - 1
#: The smallest metered amount above zero (12 decimal places): ``min_value=POSITIVE`` means "more than 0".
POSITIVE = Decimal(1).scaleb(-12)
#: A whole number in a query string: digits, with an optional minus sign (``?limit=10``).
_QUERY_INTEGER = re.compile(r"-?[0-9]{1,30}")


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

    default_error_messages = {"invalid": f"An id is a whole number from 1 to {ID_MAX}, got {{value}}."}

    def run_validation(self, data=serializers.empty):
        if data == "":  # DRF reads "" as null (an HTML form's empty choice); JSON has null for that
            self.fail("invalid", value='""')
        return super().run_validation(data)

    def to_internal_value(self, data):
        pk = integer_id(data, text=isinstance(getattr(self.root, "initial_data", None), QueryDict))
        if pk is None or not 1 <= pk <= ID_MAX:  # the schema says 1 to 2^63 - 1 (BillingAutoSchema)
            self.fail("invalid", value=json_text(data))
        return super().to_internal_value(pk)


def decimal_pattern(field: serializers.DecimalField) -> str | None:
    """The pattern of ``field``'s decimal string, as the schema states it and the API holds it.

    At most ``max_digits - decimal_places`` digits before the point, without leading zeros
    (``"0.5"``, not ``"00.5"``), and ``decimal_places`` after it; a digit on at least one side
    (``"5"``, ``"5."``, ``".5"``); ``""`` only when the field allows null (DRF reads it as null). No
    exponent (``"1e3"``), spaces or ``NaN``: DRF alone reads ``" 1e3 "`` as 1000, which the schema
    calls invalid. The bounds are written into the pattern:

    * ``min_value`` ``None`` or negative: a minus sign is allowed; ``0``: zero or more; the smallest
      step, ``10^-decimal_places`` (:data:`POSITIVE` for 12 places): more than zero; ``1``: one or more;
    * ``max_value`` ``None``, or a power of ten (``100`` for a percentage): up to it, inclusive.

    Other bounds cannot be said by a pattern: :func:`decimal_bounds_unsaid` names them, and the
    schema generator warns (which fails ``test_schema_validates_without_warnings``). ``None`` when
    the field has no ``max_digits`` (nothing to bound).
    """
    if field.max_digits is None or field.decimal_places is None:
        return None
    whole, places = max(field.max_digits - field.decimal_places, 1), field.decimal_places
    fraction = fr"(?:\.\d{{0,{places}}})?" if places else ""
    zero_fraction = fr"(?:\.0{{0,{places}}})?" if places else ""
    top = _power_of_ten(field.max_value)
    if top is not None and top < whole:  # below 10^top, or 10^top itself
        digits, ceiling = top, fr"|10{{{top}}}{zero_fraction}"
    else:
        digits, ceiling = whole, ""
    integer = fr"(?:0|[1-9]\d{{0,{digits - 1}}})" if digits > 1 else "0" if digits == 0 else "[0-9]"
    bare_fraction = fr"|\.\d{{1,{places}}}" if places else ""
    minimum = field.min_value
    if minimum is not None and minimum == 1:
        body = fr"(?:[1-9]\d{{0,{digits - 1}}}{fraction}{ceiling})"
    elif minimum is not None and places and minimum == Decimal(1).scaleb(-places):
        # A digit other than 0 before the point, or within the places after it (k zeros, then 1-9).
        nonzero = "|".join(fr"0{{{k}}}[1-9]\d{{0,{places - k - 1}}}" for k in range(places))
        body = fr"(?:[1-9]\d{{0,{digits - 1}}}{fraction}|0?\.(?:{nonzero}){ceiling})"
    else:
        sign = "" if minimum is not None and minimum >= 0 else "-?"
        body = fr"{sign}(?:{integer}{fraction}{bare_fraction}{ceiling})"
    empty = "|" if field.allow_null else ""
    return f"^(?:{body}{empty})$"


def decimal_bounds_unsaid(field: serializers.DecimalField) -> list[str]:
    """The bounds of ``field`` that :func:`decimal_pattern` cannot say (so the schema would omit them)."""
    unsaid = []
    places = field.decimal_places or 0
    minimum = field.min_value
    if minimum is not None and minimum < 0 or minimum not in (None, 0, 1) and minimum != Decimal(1).scaleb(-places):
        unsaid.append(f"min_value={minimum} (use 0, 1, or POSITIVE for more than 0)")
    if field.max_value is not None and _power_of_ten(field.max_value) is None:
        unsaid.append(f"max_value={field.max_value} (use a power of ten, or bound max_digits)")
    return unsaid


def _power_of_ten(value) -> int | None:
    """``k`` when ``value`` is ``10^k`` (k from 0), else ``None``."""
    if value is None:
        return None
    number = Decimal(value)
    if number <= 0:
        return None
    exponent = number.adjusted()
    return exponent if exponent >= 0 and number == Decimal(1).scaleb(exponent) else None


def json_type_error(field: serializers.Field, value: object, *, query: bool = False) -> str | None:
    """Why ``value`` is not of the JSON type the schema gives ``field``, or ``None`` when it is.

    The API reads a request as its schema says (docs/api.md, "Conventions"), where DRF alone is
    lenient: its ``CharField``, ``SlugField`` and ``ChoiceField`` take a number (``0`` as ``"0"``),
    its ``IntegerField`` takes ``"1"`` and ``1.0``-like text, its ``BooleanField`` takes ``"true"``,
    ``1`` and ``"yes"``, its ``DecimalField`` takes ``"1e3"`` and spaces. So, in a body:

    * text (``CharField`` and its kin, a ``ChoiceField`` of text, dates and times) is a JSON string;
    * a whole number (``IntegerField``) is a JSON integer (``3.0``, the same number, too), never
      ``true`` or ``"3"``;
    * a boolean is ``true`` or ``false``;
    * a decimal is a JSON number or a string matching :func:`decimal_pattern`;
    * list items and dictionary values are checked against the field's child.

    In a query string (``query``) every value is text by nature: a whole number is digits, a
    boolean ``true`` or ``false``, a decimal matches its pattern.
    ``null`` is left to the field (``allow_null``); nested serializers check their own fields.
    """
    if value is None or isinstance(field, (serializers.BaseSerializer, serializers.RelatedField,
                                           serializers.ManyRelatedField, serializers.JSONField)):
        return None
    if isinstance(field, serializers.ListField):
        if isinstance(value, list):
            for index, item in enumerate(value):
                problem = json_type_error(field.child, item, query=query)
                if problem:
                    return f"[{index}]: {problem}"
        return None
    if isinstance(field, serializers.DictField):
        if isinstance(value, dict):
            for key, item in value.items():
                problem = json_type_error(field.child, item, query=query)
                if problem:
                    return f"{key}: {problem}"
        return None
    if isinstance(field, serializers.BooleanField):
        if query:
            return None if value in ("true", "false") else "Give true or false."
        return None if isinstance(value, bool) else "Give true or false (a JSON boolean)."
    if isinstance(field, serializers.IntegerField):
        if query:
            return None if isinstance(value, str) and _QUERY_INTEGER.fullmatch(value) else "Give a whole number."
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or (
                isinstance(value, Decimal) and not (value.is_finite() and value == value.to_integral_value())):
            return "Give a whole number (a JSON integer)."
        return None
    if isinstance(field, serializers.DecimalField):
        if isinstance(value, str):
            pattern = decimal_pattern(field)
            if pattern and not re.fullmatch(pattern, value):
                return (f"Give a decimal with at most {field.max_digits - field.decimal_places} digits before the "
                        f"point and {field.decimal_places} after it, e.g. \"12.50\".")
            return None
        if query or isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            return "Give a decimal string, e.g. \"12.50\"."
        return None
    if isinstance(field, serializers.ChoiceField) and not isinstance(field, serializers.MultipleChoiceField):
        if not isinstance(value, str) and all(isinstance(choice, str) for choice in field.choices):
            return "Give one of the choices, as text (a JSON string)."
        return None
    if isinstance(field, (serializers.CharField, serializers.DateField, serializers.DateTimeField,
                          serializers.TimeField, serializers.DurationField, serializers.UUIDField)):
        if not isinstance(value, str):
            return "Give text (a JSON string)."
        max_length = getattr(field, "max_length", None)
        if max_length is not None and len(value) > max_length:
            # DRF counts after trimming spaces; the schema's maxLength counts what is sent
            return f"Ensure this field has no more than {max_length} characters."
    return None


class StrictSerializerMixin:
    """Read a request as its schema says, no more leniently (docs/api.md, "Conventions"):

    * refuse fields the serializer does not know (a typo must not be silently ignored);
    * refuse query parameters given more than once (which one would count?), or empty when the
      field has no empty value;
    * refuse a value of another JSON type than the schema gives the field (:func:`json_type_error`:
      ``"code": 0`` where text is due, ``"1"`` or ``true`` where a whole number is due);
    * refuse ids that are not integers from 1 to 2^63 - 1 (:class:`StrictPrimaryKeyRelatedField`,
      also the related field of model serializers).

    Every refusal is 400 naming the field. Nested serializers with the mix-in check their own
    fields; ``BillingAutoSchema`` writes the same rules into the schema."""

    serializer_related_field = StrictPrimaryKeyRelatedField

    def to_internal_value(self, data):
        query = isinstance(data, QueryDict)
        if query:
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
            for name, field in self.fields.items():
                if field.read_only or name not in data:
                    continue
                value = data[name]
                if query and value == "":
                    continue  # an empty text the field allows (checked above)
                problem = json_type_error(field, value, query=query)
                if problem:
                    raise exceptions.ValidationError({name: [problem]})
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
