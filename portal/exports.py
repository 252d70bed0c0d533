"""The portal's usage downloads: CSV and XLSX, streamed row by row by ``billing_site.exports``.

That one writer neutralises text, so a cell such as ``=HYPERLINK(…)`` in a feature key is written
as text, never run as a formula. Cost and quantity keep their full metered precision (in the XLSX
as exact decimal text, never a float), times are UTC.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet
from django.http import FileResponse, StreamingHttpResponse

from billing_site.exports import export_csv_response, export_xlsx_response
from chargeback.models import UsageRecord

HEADER = ["occurred_at (UTC)", "billing_period_start", "resource_type", "provider", "model", "service_name",
          "feature_key", "agent_id", "user", "quantity", "unit", "cost", "currency", "source",
          "external_reference", "idempotency_key"]


def _rows(records: QuerySet[UsageRecord]) -> Iterator[list]:
    for r in records.select_related("user").order_by("occurred_at", "pk").iterator(chunk_size=2000):
        yield [r.occurred_at.replace(tzinfo=None), r.billing_period_start, r.resource_type, r.provider, r.model,
               r.service_name, r.feature_key, r.agent_id, r.user.username if r.user else "", r.quantity, r.unit,
               r.cost, r.currency, r.source, r.external_reference, r.idempotency_key]


def usage_csv_response(records: QuerySet[UsageRecord], *, filename: str) -> StreamingHttpResponse:
    """``records`` as a streamed CSV attachment (one header row, then one row per record)."""
    return export_csv_response(HEADER, _rows(records), filename=filename)


def usage_xlsx_response(records: QuerySet[UsageRecord], *, filename: str) -> FileResponse:
    """``records`` as an XLSX attachment, written by openpyxl's write-only workbook (rows go to disk
    as they come, so memory stays flat however many records the month has)."""
    return export_xlsx_response(HEADER, _rows(records), filename=filename, sheet="usage")
