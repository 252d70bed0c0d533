"""Columns of the invoices admin's CSV/XLSX exports (``billing_site.exports.ExportResource``).

Amounts are exact (the currency's minor units, as stored) with their currency beside them.
"""

from __future__ import annotations

from import_export.fields import Field

from billing_site.exports import ExportResource

from .models import CreditNote, Invoice


class InvoiceResource(ExportResource):
    team = Field(attribute="team__slug", column_name="team")

    class Meta:
        model = Invoice
        fields = ("id", "number", "status", "kind", "team", "team_name", "cost_center", "period_start", "period_end",
                  "issue_date", "due_date", "subtotal", "tax_rate", "tax_amount", "total", "credited_total",
                  "currency", "payment_reference", "issued_at", "sent_at", "paid_at")
        export_order = fields


class CreditNoteResource(ExportResource):
    invoice = Field(attribute="invoice__number", column_name="invoice")
    team_name = Field(attribute="invoice__team_name", column_name="team_name")

    class Meta:
        model = CreditNote
        fields = ("id", "number", "invoice", "team_name", "issue_date", "reason", "description", "subtotal",
                  "tax_amount", "total", "currency", "created_at")
        export_order = fields
