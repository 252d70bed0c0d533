"""django-filter ``FilterSet``s of the chargeback API, on ``billing_site.api.filters.StrictFilterSet``: a bad
value, an unknown choice or a filter given twice answers 400 naming the filter."""

from __future__ import annotations

import datetime as dt

import django_filters
from django.db.models import Q
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError

from billing_site.api.filters import BooleanFilter, IdFilter, StrictFilterSet
from chargeback.models import AllocatedCost, AllocationRule, UsageRecord
from chargeback.periods import MONTH_PATTERN, BillingPeriod, PeriodError


@extend_schema_field({"type": "string", "pattern": MONTH_PATTERN})
class BillingPeriodFilter(django_filters.CharFilter):
    """A billing period given as a month ``YYYY-MM``: rows whose ``[period_start, period_end)`` is exactly it.

    ``field_prefix`` points at the model that carries the two dates (``"run__"`` for allocated
    costs, ``""`` for invoices). A malformed month answers 400 naming the filter.
    """

    def __init__(self, *args, field_prefix: str = "", **kwargs):
        kwargs.setdefault("help_text", "A month, YYYY-MM.")
        super().__init__(*args, **kwargs)
        self.field_prefix = field_prefix

    def filter(self, qs, value):
        if value in django_filters.constants.EMPTY_VALUES:
            return qs
        try:
            period = BillingPeriod.month(value)
        except PeriodError as exc:
            raise ValidationError({self.field_name: [str(exc)]}) from None
        return qs.filter(**{f"{self.field_prefix}period_start": period.start, f"{self.field_prefix}period_end": period.end})


class InstantField(IsoDateTimeField):
    """An ISO 8601 date-time (RFC 3339: any offset from -23:59 to +23:59) read as an instant in UTC.

    The instant is converted to UTC before it reaches the database (PostgreSQL itself reads offsets
    of up to 15:59 only). An instant its offset moves out of the years 1-9999 is clamped to the
    first or last instant Python can hold: as a bound of a filter it selects the same rows.
    """

    def to_python(self, value):
        instant = super().to_python(value)
        if instant is None:
            return None
        try:
            return instant.astimezone(dt.timezone.utc)
        except OverflowError:
            edge = dt.datetime.min if instant.year == 1 else dt.datetime.max
            return edge.replace(tzinfo=dt.timezone.utc)


class InstantFilter(django_filters.IsoDateTimeFilter):
    """``IsoDateTimeFilter`` through :class:`InstantField`: every RFC 3339 date-time, compared in UTC."""

    field_class = InstantField


class UsageRecordFilter(StrictFilterSet):
    """``GET usage/``: ``from``/``to`` compare ``occurred_at`` (``from`` inclusive, ``to`` exclusive)."""

    team = IdFilter(field_name="team_id")
    user = IdFilter(field_name="user_id")
    agent_id = django_filters.CharFilter()
    resource_type = django_filters.CharFilter()
    provider = django_filters.CharFilter()
    feature_key = django_filters.CharFilter()
    source = django_filters.ChoiceFilter(choices=UsageRecord.Source.choices)
    status = django_filters.ChoiceFilter(
        choices=[("assigned", "Carries a team"), ("unallocated", "In the unallocated pool (no team)")],
        method="filter_status", help_text="assigned: records with a team; unallocated: without (finance only sees those).",
    )
    # ``from`` is a Python keyword: declared below under its query-parameter name.
    to = InstantFilter(field_name="occurred_at", lookup_expr="lt", help_text="occurred_at before (exclusive).")

    class Meta:
        model = UsageRecord
        fields = []

    def filter_status(self, queryset, name, value):
        return queryset.filter(team__isnull=value == "unallocated")


UsageRecordFilter.base_filters["from"] = InstantFilter(
    field_name="occurred_at", lookup_expr="gte", help_text="occurred_at at or after (inclusive)."
)


class AllocationRuleFilter(StrictFilterSet):
    team = IdFilter(method="filter_team", help_text="Rules owned by, taking from or giving to the team.")
    enabled = BooleanFilter()

    class Meta:
        model = AllocationRule
        fields = []

    def filter_team(self, queryset, name, value):
        return queryset.filter(Q(scope_team_id=value) | Q(source_team_id=value) | Q(targets__team_id=value)).distinct()


class AllocatedCostFilter(StrictFilterSet):
    """``GET allocations/``: without ``run``, the rows of committed runs only."""

    run = IdFilter(field_name="run_id")
    team = IdFilter(field_name="team_id")
    user = IdFilter(field_name="user_id")
    period = BillingPeriodFilter(field_prefix="run__", help_text="A month, YYYY-MM: runs of exactly that month.")

    class Meta:
        model = AllocatedCost
        fields = []
