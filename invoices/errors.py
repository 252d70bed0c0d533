"""Errors of the invoice services: :class:`InvoiceError` and its subclasses, each a ``BillingError``.

Each carries its ``code`` and HTTP status (``billing_site.errors`` has the table), ``message`` and
``param`` (the request field at fault, or ``None``). Nothing was written when one is raised:

* ``InvalidTransition`` (409): the invoice's status does not allow the requested move
  (``Invoice.TRANSITIONS``); the message names both statuses.
* ``InvoiceImmutable`` (409): an issued invoice, its lines or a credit note was to be changed;
  issued documents never change (credit notes correct). ``InvoicePdfError`` is one: an issued
  document's PDF is final too.
* ``DuplicateInvoiceNumber`` (409): the number is taken (``param`` ``invoice_number``).
* ``CreditNoteLimitExceeded`` (422, ``credit_exceeds_invoice``): a credit note for more than is left
  on the invoice (``param`` ``amount`` or ``lines``).
* ``InvoiceGenerationError`` (422): nothing to bill, no committed allocation run for the period…
* ``BillingRunBusy`` (409): a billing run of the period is already waiting to start.
* ``InvalidInvoiceRequest`` (400, ``invalid_request``): malformed input, such as a number, an amount
  with more digits than the currency's minor unit, an unknown reason or status.
"""

from __future__ import annotations

from billing_site.errors import BillingError, InvalidRequest


class InvoiceError(BillingError):
    """Base class: an invoice operation that was refused. Nothing was written when it is raised."""

    code = "invoice_error"
    http_status = 422


class InvalidTransition(InvoiceError):
    """The invoice's current status does not allow the requested one (``Invoice.TRANSITIONS``).

    ``current`` and ``requested`` are the two statuses (``requested`` may be an action name such as
    ``"credit"`` when no status change was asked for).
    """

    code = "invalid_transition"
    http_status = 409

    def __init__(self, message: str, *, current: str = "", requested: str = "", param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.current = current
        self.requested = requested


class InvoiceImmutable(InvoiceError):
    """Code tried to change the amounts or lines of an issued invoice, or a credit note."""

    code = "invoice_immutable"
    http_status = 409


class DuplicateInvoiceNumber(InvoiceError):
    """The invoice number (caller-supplied or generated) is already used by another invoice."""

    code = "duplicate_invoice_number"
    http_status = 409

    def __init__(self, message: str, *, param: str | None = "invoice_number") -> None:
        super().__init__(message, param=param)


class CreditNoteLimitExceeded(InvoiceError):
    """A credit note for more than is left on the invoice (``total − credited_total``), or on a line."""

    code = "credit_exceeds_invoice"
    http_status = 422


class InvoiceGenerationError(InvoiceError):
    """The invoice cannot be generated: nothing to bill, no committed allocation run, a dry run…"""

    code = "invoice_generation_error"
    http_status = 422


class BillingRunBusy(InvoiceError):
    """A billing run of the period is already waiting to start (one runs per period at a time;
    a request while one runs waits for it, a second one waiting is refused)."""

    code = "billing_run_busy"
    http_status = 409


class InvalidInvoiceRequest(InvoiceError, InvalidRequest):
    """Input that cannot be used (a malformed number, an amount with sub-minor-unit digits, an unknown
    reason or status); ``param`` names the field. HTTP 400, code ``invalid_request``."""

    code = "invalid_request"
    http_status = 400


class InvoicePdfError(InvoiceImmutable):
    """A document whose PDF may not be rendered again: issued invoices and credit notes keep the PDF
    they were issued with (``invoices.services.pdf_storage``). HTTP 409, ``invoice_immutable``."""


class MissingExchangeRate(InvoiceError):
    """No exchange rate converts a team's costs into the currency it is invoiced in. HTTP 422,
    ``exchange_rate_missing``; the message names the currency pair and the date, ``param`` is
    ``"currency"``. Nothing of that team is invoiced (its invoices of the period are not half-written)."""

    code = "exchange_rate_missing"
    http_status = 422


class InvalidRatesFile(InvoiceError):
    """A reference-rate file that cannot be read (not the ECB CSV format, a bad date or rate). HTTP 400,
    ``invalid_rates_file``; the message names the line and column. Nothing is loaded."""

    code = "invalid_rates_file"
    http_status = 400
