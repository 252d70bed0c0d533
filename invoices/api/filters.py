"""django-filter ``FilterSet`` of the invoices API."""

from __future__ import annotations

import django_filters

from chargeback.api.filters import BillingPeriodFilter
from invoices.models import Invoice


class InvoiceFilter(django_filters.FilterSet):
    """``GET invoices/``: ``period`` is a month ``YYYY-MM`` (invoices of exactly that period)."""

    team = django_filters.NumberFilter(field_name="team_id")
    user = django_filters.NumberFilter(field_name="user_id")
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Invoice.Kind.choices)
    period = BillingPeriodFilter()

    class Meta:
        model = Invoice
        fields = []
