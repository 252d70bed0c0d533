"""Invoice reads: the invoices of a billing period, one invoice with its lines for the PDF, and which
PDFs may be rendered (again)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import Prefetch, Q, QuerySet

from chargeback.periods import BillingPeriod
from teams.models import Team
from teams.selectors import team_list_for_user

from .models import CreditNote, CreditNoteLine, Invoice, InvoiceLine


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


def invoice_list_for_user(*, user, status: str | None = None, period: BillingPeriod | None = None) -> QuerySet[Invoice]:
    """The invoices ``user`` may see (``teams.selectors.team_list_for_user``), newest period first.

    Every kind and status (cancelled included) unless ``status`` is given; ``period`` keeps exactly
    that ``[start, end)``. Team, user and issuer are joined in the same query.
    """
    invoices = Invoice.objects.filter(team__in=team_list_for_user(user=user)).select_related("team", "user", "issued_by")
    if status is not None:
        invoices = invoices.filter(status=status)
    if period is not None:
        invoices = invoices.filter(period_start=period.start, period_end=period.end)
    return invoices.order_by("-period_start", "team_name", "pk")


def credit_note_list(*, invoice: Invoice) -> QuerySet[CreditNote]:
    """The credit notes of ``invoice``, oldest first, with their lines prefetched."""
    return (
        CreditNote.objects.filter(invoice=invoice)
        .prefetch_related(Prefetch("lines", queryset=CreditNoteLine.objects.order_by("position")))
        .order_by("pk")
    )


def credit_note_get_with_lines(*, pk: int) -> CreditNote:
    """One credit note with its invoice (and team) and its lines (position order, with the invoice
    line each credits), for rendering.

    Raises:
        CreditNote.DoesNotExist: no credit note has this pk.
    """
    return (
        CreditNote.objects.select_related("invoice", "invoice__team", "issued_by")
        .prefetch_related(Prefetch(
            "lines", queryset=CreditNoteLine.objects.select_related("invoice_line").order_by("position")
        ))
        .get(pk=pk)
    )


# --- which PDFs may be (re-)rendered ---------------------------------------------------------------

def invoice_pdf_is_final(invoice: Invoice) -> bool:
    """Whether ``invoice`` was issued (``issued_at`` set) and has its PDF: that PDF is the document
    sent out, never rendered again, whatever the invoice's status becomes (paid, cancelled)."""
    return invoice.issued_at is not None and bool(invoice.pdf_sha256)


def invoice_list_to_render(
    *, period: BillingPeriod, statuses: Iterable[str] = (), team: Team | None = None,
) -> tuple[QuerySet[Invoice], int]:
    """The invoices of exactly ``period`` (``[start, end)``) whose PDF may be rendered, by pk; and how many
    matched but were left out because they were issued and already have their PDF.

    Drafts and cancelled drafts render on demand (again and again); an issued invoice renders once,
    when it has no PDF yet. Every kind (chargeback, prepaid statement) and every user invoice of the
    period is included; ``statuses`` (``Invoice.Status`` values) and ``team`` narrow the selection.
    """
    invoices = Invoice.objects.filter(period_start=period.start, period_end=period.end)
    if statuses:
        invoices = invoices.filter(status__in=list(statuses))
    if team is not None:
        invoices = invoices.filter(team=team)
    final = Q(issued_at__isnull=False) & ~Q(pdf_sha256="")
    return invoices.exclude(final).order_by("pk"), invoices.filter(final).count()


def invoices_overdue(*, today: dt.date) -> QuerySet[Invoice]:
    """Invoices marked overdue, and issued ones (pending, sent) whose due date has passed."""
    return Invoice.objects.filter(
        Q(status=Invoice.Status.OVERDUE)
        | Q(status__in=[Invoice.Status.PENDING, Invoice.Status.SENT], due_date__lt=today)
    )
