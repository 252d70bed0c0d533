"""The base of the apps' django-filter ``FilterSet``s: a filter value the API cannot read is refused.

``DjangoFilterBackend`` answers a form error as a DRF ``ValidationError`` keyed by the parameter,
so the one error handler names it (``{"error": {"code": "invalid_request", "param": "team"}}``):

* an id filter (:class:`IdFilter`) takes a whole number only: ``?team=abc`` and ``?team=1.5`` are
  400 naming ``team`` (a decimal would have been cast to team 1);
* a choice filter takes one of its choices only: ``?status=bogus`` is 400 naming ``status``;
* a boolean filter (:class:`BooleanFilter`) takes ``true`` or ``false``: ``?enabled=maybe`` is 400;
* a filter given more than once (``?status=paid&status=draft``) is 400 naming it: only the last
  value would have counted, silently;
* an empty value (``?to=``) is 400 for every filter but free text: it would have meant no filter.

Query parameters no filter, paginator or view declares are ignored, as HTTP caches and proxies
add their own (``?_=<timestamp>``): they cannot change what a read returns (docs/api.md,
"Conventions").
"""

from __future__ import annotations

import re

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field

from billing_site.api.fields import ID_MAX


class IdField(forms.IntegerField):
    """A whole number, as an id: ``3``, from 1 to 2^63 - 1 (what a ``bigint`` key holds). ``1.5``,
    ``abc``, ``1e3``, ``0``, ``-3`` and 20 digits are refused."""

    default_error_messages = {"invalid": f"An id is a whole number from 1 to {ID_MAX}."}
    _ID = re.compile(r"[0-9]{1,19}")

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if not self._ID.fullmatch(str(value)) or not 1 <= int(value) <= ID_MAX:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return int(value)


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": ID_MAX})
class IdFilter(django_filters.NumberFilter):
    """Rows whose ``field_name`` is the id given (``team=3``); anything but a whole number is 400."""

    field_class = IdField


@extend_schema_field({"type": "string", "pattern": "^[A-Za-z]{3}$"})
class CurrencyFilter(django_filters.CharFilter):
    """An ISO 4217 code (``USD``, any case): three letters, else 400 naming the filter."""

    field_class = forms.RegexField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("regex", r"^[A-Za-z]{3}$")
        kwargs.setdefault("lookup_expr", "iexact")
        kwargs.setdefault("error_messages", {"invalid": "A currency is three letters (ISO 4217), e.g. USD."})
        super().__init__(*args, **kwargs)


class BooleanField(forms.Field):
    """``true`` or ``false`` (also ``1`` / ``0``, any case); anything else is refused, not read as no filter."""

    default_error_messages = {"invalid": "Give true or false."}
    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return self.VALUES[str(value).lower()]
        except KeyError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class BooleanFilter(django_filters.BooleanFilter):
    """django-filter's ``BooleanFilter`` reads an unknown value (``?enabled=maybe``) as no filter at
    all; this one refuses it (400 naming the filter)."""

    field_class = BooleanField


class StrictFilterSet(django_filters.FilterSet):
    """A ``FilterSet`` that refuses a filter given more than once, besides the values its fields refuse."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        getlist = getattr(self.data, "getlist", None)
        for name, filter_ in self.filters.items() if getlist is not None else ():
            values = getlist(name)
            if len(values) > 1:
                self.form.add_error(name, forms.ValidationError("Give this filter once.", code="invalid"))
                valid = False
            elif values == [""] and not _takes_any_text(filter_):
                self.form.add_error(name, forms.ValidationError(
                    "Give a value, or leave the filter out.", code="invalid"))
                valid = False
        return valid


def _takes_any_text(filter_: django_filters.Filter) -> bool:
    """A free-text filter (``?agent_id=``) may be empty: it then matches nothing in particular. Any
    other (an id, a date, a choice, a month) has no empty value: ``?to=`` is refused, not ignored."""
    return type(filter_) is django_filters.CharFilter
