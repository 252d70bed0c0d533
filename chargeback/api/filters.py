"""django-filter ``FilterSet``s of the chargeback API. Bad values answer 400 naming the filter."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from chargeback.models import AllocatedCost, AllocationRule, UsageRecord
from chargeback.periods import BillingPeriod, PeriodError


class UsageRecordFilter(django_filters.FilterSet):
    """``GET usage/``: ``from``/``to`` compare ``occurred_at`` (``from`` inclusive, ``to`` exclusive)."""

    team = django_filters.NumberFilter(field_name="team_id")
    user = django_filters.NumberFilter(field_name="user_id")
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
    to = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt", help_text="occurred_at before (exclusive).")

    class Meta:
        model = UsageRecord
        fields = []

    def filter_status(self, queryset, name, value):
        return queryset.filter(team__isnull=value == "unallocated")


UsageRecordFilter.base_filters["from"] = django_filters.IsoDateTimeFilter(
    field_name="occurred_at", lookup_expr="gte", help_text="occurred_at at or after (inclusive)."
)


class AllocationRuleFilter(django_filters.FilterSet):
    team = django_filters.NumberFilter(method="filter_team", help_text="Rules owned by, taking from or giving to the team.")
    enabled = django_filters.BooleanFilter()

    class Meta:
        model = AllocationRule
        fields = []

    def filter_team(self, queryset, name, value):
        return queryset.filter(Q(scope_team_id=value) | Q(source_team_id=value) | Q(targets__team_id=value)).distinct()


class AllocatedCostFilter(django_filters.FilterSet):
    """``GET allocations/``: without ``run``, the rows of committed runs only."""

    run = django_filters.NumberFilter(field_name="run_id")
    team = django_filters.NumberFilter(field_name="team_id")
    user = django_filters.NumberFilter(field_name="user_id")
    period = django_filters.CharFilter(method="filter_period", help_text="A month, YYYY-MM: runs of exactly that month.")

    class Meta:
        model = AllocatedCost
        fields = []

    def filter_period(self, queryset, name, value):
        from rest_framework.exceptions import ValidationError

        try:
            period = BillingPeriod.month(value)
        except PeriodError as exc:
            raise ValidationError({"period": [str(exc)]}) from None
        return queryset.filter(run__period_start=period.start, run__period_end=period.end)
