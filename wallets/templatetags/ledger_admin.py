"""The ledger changelist's date drill-down, computed from the bounds of the list, not from every row.

Django's ``date_hierarchy`` tag reads ``MIN``/``MAX`` of the date and then ``SELECT DISTINCT
date_trunc(…)`` over the whole list: two scans of a million-row ledger on every page view (about
a second, measured by ``bench/admin_pages.py``). This tag finds the first and last date cheaply
and offers every year, month or day between them:

* an unfiltered list: the oldest and newest entries by primary key (two index reads; ledger
  entries are appended in time order under their wallet's lock, so pk order is time order);
* a list that fits on the page: the rows already read for the page (no query);
* any other filtered list: one ``MIN``/``MAX`` over the filtered rows.

A month or day without entries may be offered; choosing it shows an empty list.
"""

from __future__ import annotations

import calendar
import datetime as dt

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.db import models
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _

register = template.Library()


def _one(value):
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    return int(value) if value not in (None, "") and str(value).isdigit() else None


def _bounds(cl, field_name: str):
    rows = list(cl.result_list)
    if rows and cl.result_count <= len(rows):
        values = [getattr(row, field_name) for row in rows]
        return min(values), max(values)
    queryset = cl.queryset
    if not queryset.query.where:
        first = queryset.order_by("pk").values_list(field_name, flat=True).first()
        last = queryset.order_by("-pk").values_list(field_name, flat=True).first()
        return first, last
    found = queryset.aggregate(first=models.Min(field_name), last=models.Max(field_name))
    return found["first"], found["last"]


def range_date_hierarchy(cl):
    if not cl.date_hierarchy:
        return {"show": False}
    field_name = cl.date_hierarchy
    year_field, month_field, day_field = (f"{field_name}__{part}" for part in ("year", "month", "day"))
    year, month, day = (_one(cl.params.get(f)) for f in (year_field, month_field, day_field))

    def link(filters):
        return cl.get_query_string(filters, [f"{field_name}__"])

    first, last = _bounds(cl, field_name)
    if first is None or last is None:
        return {"show": False}
    first, last = (timezone.localtime(v) if timezone.is_aware(v) else v for v in (first, last))
    if not (year or month or day):
        if first.year == last.year:
            year = first.year
            if first.month == last.month:
                month = first.month
    if year and month and day:
        chosen = dt.date(year, month, day)
        return {
            "show": True,
            "back": {"link": link({year_field: year, month_field: month}),
                     "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT"))},
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    if year and month:
        days = [dt.date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
        days = [d for d in days if first.date() <= d <= last.date()] or days
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [{"link": link({year_field: year, month_field: month, day_field: d.day}),
                         "title": capfirst(formats.date_format(d, "MONTH_DAY_FORMAT"))} for d in days],
        }
    if year:
        months = [dt.date(year, m, 1) for m in range(1, 13)]
        months = [m for m in months if (first.year, first.month) <= (m.year, m.month) <= (last.year, last.month)] or months
        return {
            "show": True,
            "back": {"link": link({}), "title": _("All dates")},
            "choices": [{"link": link({year_field: year, month_field: m.month}),
                         "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT"))} for m in months],
        }
    return {
        "show": True,
        "back": None,
        "choices": [{"link": link({year_field: str(y)}), "title": str(y)} for y in range(first.year, last.year + 1)],
    }


@register.tag(name="range_date_hierarchy")
def range_date_hierarchy_tag(parser, token):
    return InclusionAdminNode(parser, token, func=range_date_hierarchy, template_name="date_hierarchy.html",
                              takes_context=False)
