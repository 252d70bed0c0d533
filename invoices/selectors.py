"""Invoice reads: the invoices of a billing period, and one invoice with its lines for the PDF."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from chargeback.models import Team
from chargeback.periods import BillingPeriod

from .models import Invoice, InvoiceLine


def invoice_list_for_period(
    *, period: BillingPeriod, team: Team | None = None, kind: str = Invoice.Kind.CHARGEBACK,
    include_cancelled: bool = False,
) -> QuerySet[Invoice]:
    """The team invoices (``user`` empty) of exactly ``period`` (``[start, end)``), by team name.

    Cancelled invoices are left out unless ``include_cancelled``. Team and allocation run are
    joined in the same query.
    """
    invoices = Invoice.objects.filter(
        kind=kind, user__isnull=True, period_start=period.start, period_end=period.end
    ).select_related("team", "allocation_run")
    if team is not None:
        invoices = invoices.filter(team=team)
    if not include_cancelled:
        invoices = invoices.exclude(status=Invoice.Status.CANCELLED)
    return invoices.order_by("team_name", "currency", "pk")


def invoice_get_with_lines(*, pk: int) -> Invoice:
    """One invoice with its team and its lines (in position order) prefetched, for rendering.

    Raises:
        Invoice.DoesNotExist: no invoice has this pk.
    """
    return (
        Invoice.objects.select_related("team", "allocation_run")
        .prefetch_related(Prefetch("lines", queryset=InvoiceLine.objects.order_by("position")))
        .get(pk=pk)
    )
