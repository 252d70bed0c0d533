"""Serializer pieces shared by the apps' API serializers."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, serializers


class StrictSerializerMixin:
    """Refuse fields the serializer does not know (a typo must not be silently ignored)."""

    def to_internal_value(self, data):
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


def date_range(data: dict, start: str = "period_start", end: str = "period_end") -> None:
    """Refuse an end before (or on) the start, naming the end field."""
    if data.get(start) and data.get(end) and data[end] <= data[start]:
        raise exceptions.ValidationError({end: [f"Must be after {start} (the end is exclusive)."]})


def month_range(data: dict, start: str = "period_start", end: str = "period_end") -> None:
    """``date_range``, and both ends on the first day of a month: billing periods are whole months."""
    date_range(data, start, end)
    for name in (start, end):
        if data.get(name) and data[name].day != 1:
            raise exceptions.ValidationError({name: ["Must be the first day of a month (periods are whole months)."]})
