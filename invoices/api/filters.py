"""django-filter ``FilterSet`` of the invoices API."""

from __future__ import annotations

import django_filters

from billing_site.api.filters import IdFilter, StrictFilterSet
from chargeback.api.filters import BillingPeriodFilter
from invoices.models import Invoice


class InvoiceFilter(StrictFilterSet):
    """``GET invoices/``: ``period`` is a month ``YYYY-MM`` (invoices of exactly that period)."""

    team = IdFilter(field_name="team_id")
    user = IdFilter(field_name="user_id")
    status = django_filters.ChoiceFilter(choices=Invoice.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Invoice.Kind.choices)
    period = BillingPeriodFilter()

    class Meta:
        model = Invoice
        fields = []
