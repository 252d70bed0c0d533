"""Invoice reads: the invoices of a billing period, one invoice with its lines for the PDF, which
PDFs may be rendered (again), and the exchange rate that converts one currency into another."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Prefetch, Q, QuerySet

from billing_site.money import rate_cross
from chargeback.periods import BillingPeriod
from teams.models import Team
from teams.selectors import team_list_for_user

from .errors import MissingExchangeRate
from .models import CreditNote, CreditNoteLine, ExchangeRate, Invoice, InvoiceLine


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


# --- exchange rates ---------------------------------------------------------------------------------

#: How far back a rate is looked for: the ECB publishes on TARGET business days only, so a weekend,
#: a holiday or Easter (four days without a rate) has none of its own; the latest rate of the seven
#: days up to the date is used. Older rates are never used: the error names the pair and date.
RATE_LOOKBACK_DAYS = 7
#: The base currency of the ECB's reference rates: cross rates are derived through it.
RATE_BASE_CURRENCY = "EUR"


@dataclass(frozen=True)
class FoundRate:
    """The rate that converts ``from_currency`` into ``to_currency`` on ``on``, and how it was found.

    ``rate``: units of ``to_currency`` per one ``from_currency`` (10 decimal places at most).
    ``rate_date``: the date of the rate(s) used (``on`` or up to ``RATE_LOOKBACK_DAYS`` before).
    ``source``: the rates' source (``ECB``, ``manual``…). ``derivation``: ``direct``, ``inverse``
    (1 / the rate to→from) or ``cross via EUR`` (EUR→to / EUR→from), written out in ``basis``.
    """

    from_currency: str
    to_currency: str
    rate: Decimal
    rate_date: dt.date
    source: str
    derivation: str
    basis: str

    def as_details(self) -> dict:
        """The rate as stored on an invoice line (``InvoiceLine.details["fx"]``), all text."""
        return {
            "from": self.from_currency, "to": self.to_currency, "rate": f"{self.rate.normalize():f}",
            "rate_date": self.rate_date.isoformat(), "source": self.source, "derivation": self.derivation,
            "basis": self.basis,
        }


def exchange_rate_find(*, from_currency: str, to_currency: str, on: dt.date) -> FoundRate:
    """The exchange rate from ``from_currency`` to ``to_currency`` valid on ``on`` (one query).

    Rule (docs/billing-run.md, "Exchange rates"): the latest date in ``[on − RATE_LOOKBACK_DAYS, on]``
    for which a rate can be had, and on that date, in this order:

    1. **direct**: a stored rate ``from → to``;
    2. **inverse**: a stored rate ``to → from``, inverted (``money.rate_cross(r, 1)``);
    3. **cross via EUR**: the ECB quotes every currency per euro, so ``A → B`` is
       ``(EUR → B) / (EUR → A)`` (``money.rate_cross``), each leg direct or inverse, of one date.

    A rate finance entered (any source but ``ECB``) wins over the ECB's of the same date and pair.
    Derived rates are rounded once, to ``money.RATE_DECIMAL_PLACES`` (10).

    Raises:
        MissingExchangeRate: no rate in the window, e.g. "no exchange rate USD→JPY on 2024-09-30
            (nor in the 7 days before): load the ECB rates (manage.py load_ecb_rates FILE) or add the
            rate in the admin".
    """
    from_currency, to_currency = from_currency.upper(), to_currency.upper()
    if from_currency == to_currency:
        return FoundRate(from_currency, to_currency, Decimal(1), on, "identity", "identity", "same currency")
    codes = {from_currency, to_currency, RATE_BASE_CURRENCY}
    rows = (
        ExchangeRate.objects.filter(
            date__gte=on - dt.timedelta(days=RATE_LOOKBACK_DAYS), date__lte=on,
            from_currency__in=codes, to_currency__in=codes,
        ).order_by("-date").values_list("date", "from_currency", "to_currency", "rate", "source")
    )
    by_date: dict[dt.date, dict[tuple[str, str], tuple[Decimal, str]]] = {}
    for day, source_code, target_code, rate, source in rows:
        pairs = by_date.setdefault(day, {})
        known = pairs.get((source_code, target_code))
        # finance's own rate wins over the ECB's on the same date
        if known is None or (known[1] == "ECB" and source != "ECB"):
            pairs[(source_code, target_code)] = (rate, source)
    for day in sorted(by_date, reverse=True):
        found = _rate_on(by_date[day], from_currency, to_currency, day)
        if found is not None:
            return found
    raise MissingExchangeRate(
        f"no exchange rate {from_currency}→{to_currency} on {on.isoformat()} (nor in the {RATE_LOOKBACK_DAYS} days "
        "before): load the ECB rates (manage.py load_ecb_rates FILE) or add the rate in the admin",
        param="currency",
    )


def _leg(pairs: dict, a: str, b: str) -> tuple[Decimal, str, str] | None:
    """``a → b`` on one date: the stored rate, or the inverse of ``b → a``; (rate, source, how)."""
    if (a, b) in pairs:
        rate, source = pairs[(a, b)]
        return rate, source, "direct"
    if (b, a) in pairs:
        rate, source = pairs[(b, a)]
        return rate_cross(rate, Decimal(1)), source, "inverse"
    return None


def _rate_on(pairs: dict, a: str, b: str, day: dt.date) -> FoundRate | None:
    leg = _leg(pairs, a, b)
    if leg is not None:
        rate, source, how = leg
        basis = (f"1 {a} = {rate.normalize():f} {b}" if how == "direct"
                 else f"1 / ({b}→{a} {pairs[(b, a)][0].normalize():f})")
        return FoundRate(a, b, rate, day, source, how, basis)
    base = RATE_BASE_CURRENCY
    if base in (a, b):
        return None
    to_a, to_b = _leg(pairs, base, a), _leg(pairs, base, b)
    if to_a is None or to_b is None:
        return None
    rate = rate_cross(to_a[0], to_b[0])
    source = to_a[1] if to_a[1] == to_b[1] else f"{to_a[1]}+{to_b[1]}"
    basis = f"({base}→{b} {to_b[0].normalize():f}) / ({base}→{a} {to_a[0].normalize():f})"
    return FoundRate(a, b, rate, day, source, f"cross via {base}", basis)
