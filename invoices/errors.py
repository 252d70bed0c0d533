"""Errors of the invoice services, one class per ``code`` the API maps to a response.

Every error carries ``code`` (a stable machine-readable string, the ``error.code`` of the API's
error body), ``message`` and ``param`` (the request field at fault, or ``None``), like
``wallets.errors``. Nothing was written when one is raised. The API maps them:

========================  ===========  ============================================================
code                      HTTP status  meaning
========================  ===========  ============================================================
invalid_transition        409          the invoice's status does not allow the requested move
                                       (``Invoice.TRANSITIONS``); the message names both statuses
invoice_immutable         409          an issued invoice, its lines or a credit note was to be
                                       changed; issued documents never change (credit notes correct)
duplicate_invoice_number  409          the invoice number is taken (``param`` ``invoice_number``)
credit_exceeds_invoice    422          a credit note for more than is left on the invoice
                                       (``param`` ``amount`` or ``lines``)
invoice_generation_error  422          nothing to bill, no committed allocation run for the period…
invalid_request           400          malformed input: a number, an amount with more digits than the
                                       currency's minor unit, an unknown reason or status
========================  ===========  ============================================================
"""

from __future__ import annotations


class InvoiceError(Exception):
    """Base class: an invoice operation that was refused. Nothing was written when it is raised."""

    code = "invoice_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidTransition(InvoiceError):
    """The invoice's current status does not allow the requested one (``Invoice.TRANSITIONS``).

    ``current`` and ``requested`` are the two statuses (``requested`` may be an action name such as
    ``"credit"`` when no status change was asked for).
    """

    code = "invalid_transition"

    def __init__(self, message: str, *, current: str = "", requested: str = "", param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.current = current
        self.requested = requested


class InvoiceImmutable(InvoiceError):
    """Code tried to change the amounts or lines of an issued invoice, or a credit note."""

    code = "invoice_immutable"


class DuplicateInvoiceNumber(InvoiceError):
    """The invoice number (caller-supplied or generated) is already used by another invoice."""

    code = "duplicate_invoice_number"

    def __init__(self, message: str, *, param: str | None = "invoice_number") -> None:
        super().__init__(message, param=param)


class CreditNoteLimitExceeded(InvoiceError):
    """A credit note for more than is left on the invoice (``total − credited_total``), or on a line."""

    code = "credit_exceeds_invoice"


class InvoiceGenerationError(InvoiceError):
    """The invoice cannot be generated: nothing to bill, no committed allocation run, a dry run…"""

    code = "invoice_generation_error"


class InvalidInvoiceRequest(InvoiceError, ValueError):
    """Input that cannot be used (a malformed number, an amount with sub-minor-unit digits, an unknown
    reason or status); ``param`` names the field. HTTP 400, code ``invalid_request``."""

    code = "invalid_request"


class InvoicePdfError(Exception):
    """A document whose PDF may not be rendered again: issued invoices and credit notes keep the PDF
    they were issued with (``invoices.services.pdf_storage``)."""
