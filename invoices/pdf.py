"""Invoice PDFs: WeasyPrint from ``templates/invoices/invoice.html``, with no network access.

Rendering never touches the network: :class:`StaticOnlyURLFetcher` refuses every URL but
``data:`` and ``file://`` URLs inside the project's ``static/`` folder, and fonts come from the
system (DejaVu, Debian package ``fonts-dejavu-core``); no web fonts. The stylesheet
(``static/invoices/invoice.css``) is parsed once per process and reused with one
``FontConfiguration``, which keeps a one-page invoice well under the 0.25 s target.

Money in the PDF is formatted from Decimals only: invoice amounts with
``billing_site.money.format_amount`` (the currency's minor units), metered amounts (unit prices,
the tie-out) exactly, with :func:`format_metered`. No float is ever made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
from decimal import Decimal
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.utils.text import slugify
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse, path2url

from billing_site.money import ROUNDING, currency_exponent, format_amount, to_minor_units
from chargeback.periods import BillingPeriod
from teams.models import Team

from .models import CreditNote, Invoice
from .selectors import credit_note_get_with_lines, invoice_get_with_lines

#: The only folder a rendering may read from.
STATIC_DIR = Path(settings.BASE_DIR) / "static"
STYLESHEET = STATIC_DIR / "invoices" / "invoice.css"
TEMPLATE = "invoices/invoice.html"
CREDIT_NOTE_TEMPLATE = "invoices/credit_note.html"

#: The sections of a prepaid statement's lines that are billed; the others (balances, top-ups,
#: grants…) are there for information (``invoices.services._statement_lines``).
STATEMENT_BILLED_SECTIONS = ("usage", "refund")

#: What each rule type means, in the words of the appendix.
RULE_TYPE_EXPLANATIONS = {
    "by_usage": "in proportion to each receiving team's own usage cost in the period",
    "equal_split": "in equal parts across the receiving teams",
    "fixed_split": "by fixed percentages agreed in advance",
    "by_team": "in equal parts among the members of the source team",
    "by_user": "to the users who caused it",
}


class UnsafeResourceError(ValueError):
    """A rendering asked for a resource outside the project's static files (a remote or local URL)."""


class InvoicePdfError(Exception):
    """A document whose PDF may not be rendered again: issued invoices and credit notes keep the PDF
    they were issued with."""


class StaticOnlyURLFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that reads the project's ``static/`` files and nothing else.

    Allowed: ``data:`` URLs and ``file://`` URLs (on this host) whose resolved path lies inside
    ``STATIC_DIR``. Everything else (``http(s)://``, ``ftp://``, ``file:///etc/passwd``, a
    ``..`` escaping static/, a symlink pointing out of it) raises :class:`UnsafeResourceError`,
    and because the fetcher is built with ``fail_on_errors=True`` WeasyPrint stops the rendering
    instead of leaving a hole in the document.
    """

    def __init__(self, static_dir: Path = STATIC_DIR) -> None:
        super().__init__(allowed_protocols=("file", "data"), fail_on_errors=True, allow_redirects=False)
        self._static_dir = static_dir.resolve()

    def fetch(self, url: str, headers=None) -> URLFetcherResponse:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "data":
            return super().fetch(url, headers)
        if scheme != "file" or parts.netloc not in ("", "localhost"):
            raise UnsafeResourceError(
                f"refused to fetch {url!r} while rendering an invoice PDF: rendering never uses the network, "
                f"only files under {self._static_dir}"
            )
        path = Path(url2pathname(parts.path)).resolve()
        if not path.is_relative_to(self._static_dir) or not path.is_file():
            raise UnsafeResourceError(
                f"refused to read {url!r} while rendering an invoice PDF: only files under {self._static_dir} "
                "may be used"
            )
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(path2url(str(path)), path.read_bytes(), {"Content-Type": content_type})


@lru_cache(maxsize=1)
def _renderer() -> tuple[StaticOnlyURLFetcher, FontConfiguration, CSS]:
    """The fetcher, font configuration and parsed stylesheet, made once per process."""
    fetcher = StaticOnlyURLFetcher()
    fonts = FontConfiguration()
    stylesheet = CSS(filename=str(STYLESHEET), url_fetcher=fetcher, font_config=fonts)
    return fetcher, fonts, stylesheet


# --- formatting (Decimal in, text out) ------------------------------------------------------------

def format_metered(amount: Decimal, currency: str, *, code: bool = True) -> str:
    """A metered amount written exactly, e.g. ``20.28022672899 USD`` (``code=False``: no currency code).

    Trailing zeros are dropped down to the currency's minor units (``0.00 USD``, ``1.50 USD``), so
    nothing is rounded: every non-zero digit of the 12-decimal value is shown.
    """
    value = amount.normalize()
    if -value.as_tuple().exponent <= currency_exponent(currency):
        # No more decimals than the currency has: widening it to minor units changes no digit.
        value = to_minor_units(value, currency)
    text = f"{value:,f}"
    return f"{text} {currency.upper()}" if code else text


def format_quantity(quantity: Decimal) -> str:
    """A quantity without trailing zeros: ``1``, ``1,250``, ``0.5``."""
    return f"{quantity.normalize():,f}" if quantity else "0"


#: Plurals of the usage units the catalog prices in (``Price.unit``); other units are shown as recorded.
UNIT_PLURALS = {
    "token": "tokens",
    "second": "seconds",
    "minute": "minutes",
    "hour": "hours",
    "character": "characters",
    "request": "requests",
    "call": "calls",
    "message": "messages",
    "image": "images",
    "page": "pages",
    "query": "queries",
}


#: The same units the other way round, for FOCUS ``PricingUnit`` values recorded in the plural ("Hours").
UNIT_SINGULARS = {plural: singular for singular, plural in UNIT_PLURALS.items()}


def _unit_word(unit: str, *, plural: bool) -> str:
    """``unit`` in the singular or plural when it is a known unit (keeping a leading capital), else as recorded."""
    lower = unit.lower()
    word = UNIT_PLURALS.get(lower, lower) if plural else UNIT_SINGULARS.get(lower, lower)
    if word == lower:
        return unit
    return word[:1].upper() + word[1:] if unit[:1].isupper() else word


def format_unit(quantity: Decimal, unit: str) -> str:
    """The unit of ``quantity`` as people write it: ``1 token``, ``1,234,567 tokens``, ``1 Hour``, ``2.5 GB-Mo``."""
    return _unit_word(unit, plural=quantity != 1)


def format_percent(percent: Decimal | str | None) -> str:
    """A share in percent to one decimal, ``37.2 %``; ``—`` when there is none.

    Display only: the stored share keeps 12 decimal places; this rounds it with the product's
    single rounding mode for people to read.
    """
    if percent in (None, ""):
        return "—"
    value = Decimal(percent)
    if 0 < abs(value) < Decimal("0.05"):
        # A share that one decimal would show as 0.0 % is not nothing.
        return "< 0.1 %" if value > 0 else "> -0.1 %"
    return f"{value.quantize(Decimal('0.1'), rounding=ROUNDING)} %"


def format_date(day: dt.date | None) -> str:
    """``1 September 2024``; ``—`` for a date not yet set (a draft's issue and due dates)."""
    return f"{day.day} {day:%B %Y}" if day else "—"


def format_period(start: dt.date, end: dt.date) -> str:
    """The half-open period ``[start, end)`` as people write it: ``1 September 2024 – 30 September 2024``."""
    return f"{format_date(start)} – {format_date(end - dt.timedelta(days=1))}"


def _amount(value: Decimal, currency: str) -> str:
    """An invoice amount in minor units without the currency code (the column header carries it)."""
    return format_amount(value, currency).rsplit(" ", 1)[0]


# --- context --------------------------------------------------------------------------------------

def _stamp(invoice: Invoice) -> str:
    if invoice.status == Invoice.Status.CANCELLED:
        return "CANCELLED"
    if invoice.status == Invoice.Status.DRAFT:
        return "DRAFT"
    return ""


def invoice_pdf_context(invoice: Invoice) -> dict:
    """The template context of ``invoice``'s PDF: every figure already formatted as text."""
    currency = invoice.currency
    lines = list(invoice.lines.all())
    rows, allocations = [], []
    direct_records = direct_count = 0
    for line in lines:
        details = line.details or {}
        if details.get("kind") == "statement":
            pass
        elif line.rule_id is not None or line.rule_name:
            share = format_percent(details.get("share_percent"))
            pool = details.get("pool_amount")
            pool_text = format_amount(Decimal(pool), currency) if pool not in (None, "") else "—"
            rule_type = line.rule_type or details.get("rule_type", "")
            note = f"{rule_type}, {share} of the shared pool of {pool_text}"
            allocations.append({
                "position": line.position,
                "rule_name": line.rule_name,
                "rule_type": rule_type,
                "explanation": RULE_TYPE_EXPLANATIONS.get(rule_type, ""),
                "share": share,
                "pool": pool_text,
                "note": note,
                "records": int(details.get("source_records", line.record_count)),
                "records_text": f"{int(details.get('source_records', line.record_count)):,}",
                "amount": format_amount(line.amount, currency),
                "amount_short": _amount(line.amount, currency),
                "amount_precise": format_metered(line.amount_precise, currency),
            })
            average = False
        else:
            note = ""
            # Marked "avg." on the row and explained once under the table, not on every row: a
            # long invoice of averaged prices would otherwise repeat the sentence 500 times.
            average = bool(line.unit) and details.get("unit_price_basis") == "average"
            direct_count += 1
            direct_records += line.record_count
        if details.get("kind") == "statement":
            # A prepaid statement's lines have no quantity or price: balances and top-ups are
            # information (their figure is in the description, nothing billed), usage and refunds
            # are billed amounts.
            info = details.get("section") not in STATEMENT_BILLED_SECTIONS
            rows.append({
                "position": line.position, "description": line.description, "note": "", "info": info,
                "quantity": "", "unit": "", "unit_price": "", "average": False,
                "amount": "" if info else _amount(line.amount, currency),
            })
            continue
        rows.append({
            "position": line.position,
            "description": line.description,
            "note": note,
            "info": False,
            "quantity": format_quantity(line.quantity),
            "unit": format_unit(line.quantity, line.unit) if line.unit else "",
            "unit_price": format_metered(line.unit_price, currency, code=False),
            "average": average,
            "amount": _amount(line.amount, currency),
        })
    run = invoice.allocation_run
    stamp = _stamp(invoice)
    period = BillingPeriod(invoice.period_start, invoice.period_end)
    return {
        "invoice": invoice,
        "company_name": settings.BILLING_COMPANY_NAME,
        "company_address": [part for part in settings.BILLING_COMPANY_ADDRESS.splitlines() if part.strip()],
        "billing_address": [part for part in invoice.billing_address.splitlines() if part.strip()],
        "number": invoice.number or f"DRAFT (ref. {invoice.display_number})",
        "reference": invoice.display_number,
        "status": invoice.get_status_display(),
        "stamp": stamp,
        "issue_date": format_date(invoice.issue_date),
        "due_date": format_date(invoice.due_date),
        "period": format_period(invoice.period_start, invoice.period_end),
        "period_label": period.label,
        "currency": currency,
        "rows": rows,
        "has_average_prices": any(row["average"] for row in rows),
        "subtotal": format_amount(invoice.subtotal, currency),
        "tax_rate": format_percent(invoice.tax_rate).replace(".0 %", " %"),
        "tax_amount": format_amount(invoice.tax_amount, currency),
        "total": format_amount(invoice.total, currency),
        # The terms the invoice was issued with (its due date counts from its issue date); a
        # draft shows the default terms it will be issued with.
        "payment_terms_days": (
            (invoice.due_date - invoice.issue_date).days if invoice.issue_date and invoice.due_date
            else settings.BILLING_PAYMENT_TERMS_DAYS
        ),
        "title": "Statement" if invoice.kind == Invoice.Kind.PREPAID_STATEMENT else "Invoice",
        "kind_label": invoice.get_kind_display(),
        "allocations": allocations,
        "direct_count": direct_count,
        "direct_records": direct_records,
        "direct_records_text": f"{direct_records:,}",
        "is_chargeback": invoice.kind == Invoice.Kind.CHARGEBACK,
        "is_statement": invoice.kind == Invoice.Kind.PREPAID_STATEMENT,
        "run": run,
        "run_date": format_date(run.committed_at.date()) if run is not None and run.committed_at else "",
    }


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


# --- rendering and storage ------------------------------------------------------------------------

def _render(template: str, context: dict) -> bytes:
    """``template`` rendered with ``context`` and the invoice stylesheet, as PDF bytes, without the network."""
    fetcher, fonts, stylesheet = _renderer()
    html = render_to_string(template, context)
    document = HTML(string=html, base_url=path2url(str(STATIC_DIR) + "/"), url_fetcher=fetcher)
    try:
        return document.write_pdf(
            stylesheets=[stylesheet], font_config=fonts, optimize_images=False, presentational_hints=False,
        )
    except FatalURLFetchingError as exc:
        # WeasyPrint wraps the fetcher's refusal in a BaseException; hand callers the clear one.
        cause = exc.__cause__
        if isinstance(cause, UnsafeResourceError):
            raise cause from None
        raise UnsafeResourceError(str(exc)) from cause


def invoice_render_pdf(invoice: Invoice) -> bytes:
    """Render ``invoice`` (with its lines) to PDF bytes, without touching the network.

    Raises:
        UnsafeResourceError: the template asked for a remote URL or a file outside ``static/``.
    """
    return _render(TEMPLATE, invoice_pdf_context(invoice))


def invoice_pdf_filename(invoice: Invoice) -> str:
    """``<number>.pdf`` for an issued invoice, else ``<team-slug>-<YYYY-MM>-draft.pdf`` (or ``-cancelled``)."""
    if invoice.number:
        return f"{slugify(invoice.number) or invoice.pk}.pdf"
    period = BillingPeriod(invoice.period_start, invoice.period_end).label.replace("..", "_")
    suffix = "cancelled" if invoice.status == Invoice.Status.CANCELLED else "draft"
    return f"{invoice.team.slug}-{period}-{suffix}.pdf"


def invoice_store_pdf(*, invoice: Invoice) -> Invoice:
    """Render ``invoice``'s PDF and store it in ``invoice.pdf`` with its SHA-256 in ``pdf_sha256``.

    The invoice row is locked while it is re-read, rendered and saved, so the PDF shows the
    invoice as stored. A previous PDF file is deleted once the transaction commits.

    Returns:
        The invoice as stored, with ``pdf`` (under ``MEDIA_ROOT/invoices/YYYY/MM/``) and
        ``pdf_sha256`` (64 hex digits) set.

    Raises:
        InvoicePdfError: the invoice is issued and already has its PDF (issued PDFs are final).
        UnsafeResourceError: see :func:`invoice_render_pdf`.
    """
    with transaction.atomic():
        locked = Invoice.objects.select_for_update(of=("self",)).get(pk=invoice.pk)
        if invoice_pdf_is_final(locked):
            raise InvoicePdfError(
                f"invoice {locked.display_number} is {locked.status}; its PDF was stored when it was issued"
            )
        full = invoice_get_with_lines(pk=locked.pk)
        pdf = invoice_render_pdf(full)
        old = locked.pdf.name if locked.pdf else ""
        storage = locked.pdf.storage
        locked.pdf.save(invoice_pdf_filename(full), ContentFile(pdf), save=False)
        locked.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        locked.save(update_fields=["pdf", "pdf_sha256", "updated_at"])
        if old and old != locked.pdf.name:
            transaction.on_commit(lambda: storage.delete(old))
    return locked


# --- credit notes ---------------------------------------------------------------------------------

def credit_note_pdf_context(credit_note: CreditNote) -> dict:
    """The template context of ``credit_note``'s PDF (every figure formatted as text).

    What is left on the invoice is computed from the credit notes numbered up to this one, so the
    document says the same whenever it is rendered: before = the totals of the invoice's earlier
    credit notes (by pk), after = before + this note's total, left = invoice total − after.
    """
    invoice = credit_note.invoice
    currency = credit_note.currency
    earlier = CreditNote.objects.filter(invoice=invoice, pk__lt=credit_note.pk).values_list("total", flat=True)
    before = sum(earlier, Decimal(0))
    after = before + credit_note.total
    left = invoice.total - after
    lines = [
        {
            "position": line.position,
            "description": line.description,
            "invoice_line": line.invoice_line.position if line.invoice_line_id else "",
            "amount": _amount(line.amount, currency),
        }
        for line in credit_note.lines.all()
    ]
    reference = invoice.number or invoice.display_number
    return {
        "note": credit_note,
        "invoice": invoice,
        "company_name": settings.BILLING_COMPANY_NAME,
        "company_address": [part for part in settings.BILLING_COMPANY_ADDRESS.splitlines() if part.strip()],
        "billing_address": [part for part in invoice.billing_address.splitlines() if part.strip()],
        "number": credit_note.number,
        "invoice_number": reference,
        "invoice_date": format_date(invoice.issue_date),
        "issue_date": format_date(credit_note.issue_date),
        "period": format_period(invoice.period_start, invoice.period_end),
        "period_label": BillingPeriod(invoice.period_start, invoice.period_end).label,
        "reason": credit_note.get_reason_display(),
        "description": credit_note.description,
        "currency": currency,
        "lines": lines,
        "subtotal": format_amount(credit_note.subtotal, currency),
        "tax_rate": format_percent(invoice.tax_rate).replace(".0 %", " %"),
        "tax_amount": format_amount(credit_note.tax_amount, currency),
        "total": format_amount(credit_note.total, currency),
        "invoice_total": format_amount(invoice.total, currency),
        "credited_before": format_amount(before, currency),
        "credited_after": format_amount(after, currency),
        "left": format_amount(left, currency),
        "has_earlier": before > 0,
        "cancels": left == 0,
    }


def credit_note_render_pdf(credit_note: CreditNote) -> bytes:
    """Render ``credit_note`` (with its lines and its invoice) to PDF bytes, without touching the network.

    Raises:
        UnsafeResourceError: the template asked for a remote URL or a file outside ``static/``.
    """
    return _render(CREDIT_NOTE_TEMPLATE, credit_note_pdf_context(credit_note))


def credit_note_store_pdf(*, credit_note: CreditNote) -> CreditNote:
    """Render ``credit_note``'s PDF once and store it in ``credit_note.pdf`` (``MEDIA_ROOT/credit_notes/YYYY/MM/<number>.pdf``)
    with its SHA-256 (64 hex digits) in ``pdf_sha256``.

    Called by ``invoices.services.credit_note_issue`` after the credit note commits. The credit
    note row is locked while it is re-read, rendered and saved. A credit note is an issued
    document: its PDF is never rendered again.

    Returns:
        The credit note as stored.

    Raises:
        InvoicePdfError: the credit note already has its PDF.
        UnsafeResourceError: see :func:`credit_note_render_pdf`.
    """
    with transaction.atomic():
        locked = CreditNote.objects.select_for_update(of=("self",)).get(pk=credit_note.pk)
        if locked.pdf_sha256:
            raise InvoicePdfError(f"credit note {locked.number} already has its PDF; issued documents are final")
        full = credit_note_get_with_lines(pk=locked.pk)
        pdf = credit_note_render_pdf(full)
        locked.pdf.save(f"{slugify(locked.number) or locked.pk}.pdf", ContentFile(pdf), save=False)
        locked.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        locked.save(update_fields=["pdf", "pdf_sha256"])
    return locked
