"""Invoice PDFs: WeasyPrint from ``templates/invoices/invoice.html``, with no network access.

Rendering never touches the network: :class:`StaticOnlyURLFetcher` refuses every URL but
``data:`` and ``file://`` URLs inside the project's ``static/`` folder, and fonts come from the
system (DejaVu, Debian package ``fonts-dejavu-core``); no web fonts. The stylesheet
(``static/invoices/invoice.css``) is parsed once per process and reused with one
``FontConfiguration``, which keeps a one-page invoice well under the 0.25 s target.

This module renders bytes only; storing a PDF on its invoice or credit note is the service
``invoices.services.pdf_storage``. Money in the PDF is formatted from Decimals only, by the
one formatter of ``billing_site.formatting`` (Babel, the settings' locale): invoice amounts in the
currency's minor units, metered amounts (unit prices, the tie-out) exactly. No float is
ever made.
"""

from __future__ import annotations

import mimetypes
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from django.conf import settings
from django.template.loader import render_to_string
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse, path2url

from billing_site.formatting import money_display, money_number, number_display
from billing_site.money import (
    format_date,
    format_percent,
    format_period,
    format_unit,
)
from chargeback.focus.pools import pool_breakdown
from chargeback.periods import BillingPeriod

from .models import CreditNote, Invoice

#: The only folder a rendering may read from.
STATIC_DIR = Path(settings.BASE_DIR) / "static"
STYLESHEET = STATIC_DIR / "invoices" / "invoice.css"
TEMPLATE = "invoices/invoice.html"
CREDIT_NOTE_TEMPLATE = "invoices/credit_note.html"

#: The sections of a prepaid statement's lines that are billed; the others (balances, top-ups,
#: grants…) are there for information (``invoices.services.generation``).
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


# --- context --------------------------------------------------------------------------------------

def _stamp(invoice: Invoice) -> str:
    if invoice.status == Invoice.Status.CANCELLED:
        return "CANCELLED"
    if invoice.status == Invoice.Status.DRAFT:
        return "DRAFT"
    return ""


def format_amount(amount, currency: str) -> str:
    """An invoice amount: ``1,234.50 USD`` (``billing_site.formatting.money_display``)."""
    return money_display(amount, currency)


def format_amount_short(amount, currency: str) -> str:
    """An invoice amount in a column whose header names the currency: ``1,234.50``."""
    return money_number(amount, currency)


def format_metered(amount, currency: str, *, code: bool = True) -> str:
    """A metered amount with every digit: ``0.000125 USD`` (``code=False``: ``0.000125``)."""
    return money_display(amount, currency, exact=True) if code else money_number(amount, currency, exact=True)


def format_quantity(quantity) -> str:
    return number_display(quantity)


def _pools_text(period: BillingPeriod, currency: str, converted_from: set[str] | None = None) -> list[dict]:
    """``chargeback.focus.pools.pool_breakdown`` of ``period`` in ``currency`` (and, for a converted
    invoice, in each currency its lines were converted from: ``converted_from``), formatted for the
    appendix; each pool in its own currency, never converted or added to another."""
    shown = {currency} | set(converted_from or ())
    pools = []
    for pool in pool_breakdown(period=period):
        if pool.currency not in shown:
            continue
        code = pool.currency
        pools.append({
            "name": pool.name if code == currency else f"{pool.name} ({code})",
            "currency": code,
            "parts": [{"provider": part.provider, "category": part.charge_category, "rows": f"{part.rows:,}",
                       "cost": format_metered(part.cost, code), "credit": part.cost < 0} for part in pool.parts],
            "charges": format_metered(pool.charges, code), "credits": format_metered(pool.credits, code),
            "net": format_metered(pool.net, code), "netted": pool.credits < 0 < pool.charges,
        })
    return pools


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
            # A converted line's pool is in the currency it was converted from.
            pool_currency = (details.get("fx") or {}).get("from", currency)
            pool_text = format_amount(Decimal(pool), pool_currency) if pool not in (None, "") else "—"
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
                "amount_short": format_amount_short(line.amount, currency),
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
                "amount": "" if info else format_amount_short(line.amount, currency),
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
            "amount": format_amount_short(line.amount, currency),
        })
    exchange_rates = _exchange_rates(lines, currency)
    run = invoice.allocation_run
    stamp = _stamp(invoice)
    # A subscription's period follows its billing anchor (31 January – 28 February), not whole months.
    period_label = (
        format_period(invoice.period_start, invoice.period_end) if invoice.kind == Invoice.Kind.SUBSCRIPTION
        else BillingPeriod(invoice.period_start, invoice.period_end).label
    )
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
        "period_label": period_label,
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
        # The shared pools behind the rule lines, by provider and charge category (credits netted
        # against charges shown), in the invoice's currency.
        "pools": _pools_text(BillingPeriod(invoice.period_start, invoice.period_end), currency,
                             {r["from"] for r in exchange_rates}) if allocations else [],
        "direct_count": direct_count,
        "direct_records": direct_records,
        "direct_records_text": f"{direct_records:,}",
        "is_chargeback": invoice.kind == Invoice.Kind.CHARGEBACK,
        "is_statement": invoice.kind == Invoice.Kind.PREPAID_STATEMENT,
        "is_subscription": invoice.kind == Invoice.Kind.SUBSCRIPTION,
        "included_usage": _included_usage(lines, currency),
        "exchange_rates": exchange_rates,
        "run": run,
        "run_date": format_date(run.committed_at.date()) if run is not None and run.committed_at else "",
    }


def _included_usage(lines: list, currency: str) -> list[dict]:
    """The "Included usage" rows of a subscription invoice: one per meter of its overage lines.

    A subscription's overage line (``details["section"] == "overage"``) records the meter, the
    units included, used and beyond, the period they were counted in and the price applied
    (``subscriptions.services.invoicing``); they are printed as written, nothing is recomputed.
    """
    rows = []
    for line in lines:
        details = line.details or {}
        if details.get("kind") != "subscription" or details.get("section") != "overage":
            continue
        rows.append({
            "meter": details.get("meter", ""),
            "period": details.get("period", ""),
            "included": format_quantity(Decimal(details.get("included", "0"))),
            "used": format_quantity(Decimal(details.get("used", "0"))),
            "overage": format_quantity(Decimal(details.get("overage", "0"))),
            "price": details.get("price", ""),
            "amount": format_amount_short(line.amount, currency),
        })
    return rows


def _exchange_rates(lines: list, currency: str) -> list[dict]:
    """The rates a converted invoice used, one per source currency: what was converted, at which
    rate, of which date and source, and how the rate was had (direct, inverse, cross via EUR)."""
    found: dict[str, dict] = {}
    for line in lines:
        fx = (line.details or {}).get("fx")
        if not fx:
            continue
        entry = found.setdefault(fx["from"], {"fx": fx, "amount": Decimal(0), "converted": Decimal(0), "lines": []})
        entry["amount"] += Decimal(fx["original_amount"])
        entry["converted"] += line.amount
        entry["lines"].append(str(line.position))
    return [
        {
            "from": code, "to": currency, "rate": entry["fx"]["rate"], "rate_date": entry["fx"]["rate_date"],
            "source": entry["fx"]["source"], "derivation": entry["fx"]["derivation"], "basis": entry["fx"]["basis"],
            "amount": format_amount(entry["amount"], code), "converted": format_amount(entry["converted"], currency),
            "lines": ", ".join(entry["lines"]), "line_count": len(entry["lines"]),
        }
        for code, entry in sorted(found.items())
    ]


# --- rendering -------------------------------------------------------------------------------------

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
            "amount": format_amount_short(line.amount, currency),
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
        "period_label": (
            format_period(invoice.period_start, invoice.period_end) if invoice.kind == Invoice.Kind.SUBSCRIPTION
            else BillingPeriod(invoice.period_start, invoice.period_end).label
        ),
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
