"""The portal's usage downloads: CSV and XLSX, streamed row by row.

Both go through ``billing_site.exports.csv_safe_cell`` for text, so a cell such as ``=HYPERLINK(…)``
in a feature key is written as text, never run as a formula. Numbers stay numbers (cost and
quantity at their full metered precision), times are UTC.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from decimal import Decimal

from django.db.models import QuerySet
from django.http import FileResponse, StreamingHttpResponse
from openpyxl import Workbook

from billing_site.exports import csv_safe_cell, csv_writer
from chargeback.models import UsageRecord

HEADER = ["occurred_at (UTC)", "billing_period_start", "resource_type", "provider", "model", "service_name",
          "feature_key", "agent_id", "user", "quantity", "unit", "cost", "currency", "source",
          "external_reference", "idempotency_key"]


def _rows(records: QuerySet[UsageRecord]) -> Iterator[list]:
    for r in records.select_related("user").order_by("occurred_at", "pk").iterator(chunk_size=2000):
        yield [r.occurred_at.replace(tzinfo=None), r.billing_period_start, r.resource_type, r.provider, r.model,
               r.service_name, r.feature_key, r.agent_id, r.user.username if r.user else "", r.quantity, r.unit,
               r.cost, r.currency, r.source, r.external_reference, r.idempotency_key]


class _Echo:
    def write(self, value: str) -> str:
        return value


def usage_csv_response(records: QuerySet[UsageRecord], *, filename: str) -> StreamingHttpResponse:
    """``records`` as a streamed CSV attachment (one header row, then one row per record)."""
    writer = csv_writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(HEADER)
        for row in _rows(records):
            yield writer.writerow([cell.isoformat() if hasattr(cell, "isoformat") else cell for cell in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def _xlsx_cell(value):
    # Numbers and dates are written as such; every text cell is neutralised like the CSV's.
    if value is None or isinstance(value, (Decimal, int)) or hasattr(value, "isoformat"):
        return value
    return csv_safe_cell(value)


def usage_xlsx_response(records: QuerySet[UsageRecord], *, filename: str) -> FileResponse:
    """``records`` as an XLSX attachment, written by openpyxl's write-only workbook (rows go to disk
    as they come, so memory stays flat however many records the month has)."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet("usage")
    sheet.append(HEADER)
    for row in _rows(records):
        sheet.append([_xlsx_cell(cell) for cell in row])
    handle = tempfile.TemporaryFile()
    book.save(handle)
    handle.seek(0)
    return FileResponse(
        handle, as_attachment=True, filename=f"{filename}.xlsx",
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
