"""django-filter ``FilterSet`` of the invoices API."""

from __future__ import annotations

import django_filters
from rest_framework.exceptions import ValidationError

from chargeback.periods import BillingPeriod, PeriodError
from invoices.models import Invoice


class InvoiceFilter(django_filters.FilterSet):
    """``GET invoices/``: ``period`` is a month ``YYYY-MM`` (invoices of exactly that period)."""

    team = django_filters.NumberFilter(field_name="team_id")
    user = django_filters.NumberFilter(field_name="user_id")
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Invoice.Kind.choices)
    period = django_filters.CharFilter(method="filter_period", help_text="A month, YYYY-MM.")

    class Meta:
        model = Invoice
        fields = []

    def filter_period(self, queryset, name, value):
        try:
            period = BillingPeriod.month(value)
        except PeriodError as exc:
            raise ValidationError({"period": [str(exc)]}) from None
        return queryset.filter(period_start=period.start, period_end=period.end)
