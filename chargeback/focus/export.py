"""FOCUS out: the allocated costs of a billing period as a FOCUS 1.0 cost-and-usage file (CSV or Parquet).

One row per ``AllocatedCost`` of the period's committed allocation run(s): what a FinOps tool
downstream (a BI dashboard, the FinOps Foundation's validator) reads. The columns are the FOCUS 1.0
ones (``EXPORT_COLUMNS``), then the allocation in ``x_`` columns (``X_COLUMNS``): the team, the rule
and its type, the run, the source records.

What each FOCUS column holds:

* ``BilledCost`` = ``EffectiveCost`` = ``ListCost`` = ``ContractedCost``: the allocated amount
  (metered, 12 decimal places) in ``BillingCurrency``. Per currency, Σ ``BilledCost`` is the run's
  allocated cost, and rounded half-up to minor units it equals Σ of the period's invoice subtotals
  (the invoices round all teams together by largest remainder, ``invoices.services.generation``).
* ``BillingPeriodStart`` / ``BillingPeriodEnd`` and ``ChargePeriodStart`` / ``ChargePeriodEnd``: the
  run's period, ``[start, end)`` at midnight UTC (ISO 8601 with ``Z``).
* ``ChargeCategory`` ``Usage``, ``ChargeClass`` empty, ``ChargeFrequency`` ``Usage-Based``,
  ``ServiceCategory`` ``Other``; ``ChargeDescription``: the service, or the rule that shared a pool.
* ``SubAccountId`` / ``SubAccountName``: the team's slug and name; ``Tags``: ``{"team": slug}`` and
  ``"rule"`` when a rule gave the line. ``ProviderName``/``PublisherName``/``InvoiceIssuerName``:
  ``ISSUER`` (the internal chargeback), ``BillingAccountId``/``BillingAccountName`` likewise.
* ``ConsumedQuantity`` / ``ConsumedUnit``: the summed quantity of API/AI lines, else empty.

Rows are read in primary-key order with a server-side cursor and written as they come, so memory
does not grow with the period.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import IO

from chargeback.models import AllocatedCost, AllocationRun
from chargeback.periods import BillingPeriod

#: FOCUS 1.0 columns of the export, in the FOCUS sample's order.
EXPORT_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
    "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
    "ServiceCategory", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)
#: The allocation, in provider columns.
X_COLUMNS = ("x_Team", "x_TeamName", "x_Rule", "x_RuleType", "x_AllocationRunId", "x_AllocatedCostId",
             "x_RecordCount", "x_UserId")
COLUMNS = EXPORT_COLUMNS + X_COLUMNS
#: Who issues the chargeback: provider, publisher, invoice issuer and billing account of every row.
ISSUER = "Internal chargeback"
#: Export formats and their content types.
FORMATS = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_DECIMAL = {"BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "ConsumedQuantity", "PricingQuantity",
            "ContractedUnitPrice", "ListUnitPrice"}
_BATCH = 5000


def focus_export_rows(*, period: BillingPeriod, team_ids: set[int] | None = None) -> Iterator[dict[str, object]]:
    """The export's rows for ``period`` (whole months), as ``{column: value}`` (Decimal amounts, text
    timestamps, ``None`` for empty), from every committed run of the period; ``team_ids`` limits them
    to those teams (``None``: all). Nothing when the period has no committed run."""
    runs = AllocationRun.objects.filter(status=AllocationRun.Status.COMMITTED, period_start=period.start,
                                        period_end=period.end)
    rows = (AllocatedCost.objects.filter(run__in=runs).select_related("team", "rule", "run").order_by("pk"))
    if team_ids is not None:
        rows = rows.filter(team_id__in=team_ids)
    for allocation in rows.iterator(chunk_size=_BATCH):
        yield _row(allocation)


def _moment(day: dt.date) -> str:
    return f"{day:%Y-%m-%d}T00:00:00Z"


def _row(a: AllocatedCost) -> dict[str, object]:
    run, team, rule = a.run, a.team, a.rule
    details = a.details or {}
    tags = {"team": team.slug}
    if rule is not None:
        tags["rule"] = rule.name
    description = a.service or (f"Share of {rule.name} ({rule.rule_type})" if rule is not None else "Allocated cost")
    start, end = _moment(run.period_start), _moment(run.period_end)
    row: dict[str, object] = dict.fromkeys(COLUMNS)
    row.update({
        "BilledCost": a.amount, "EffectiveCost": a.amount, "ListCost": a.amount, "ContractedCost": a.amount,
        "BillingAccountId": ISSUER, "BillingAccountName": ISSUER, "BillingCurrency": a.currency,
        "BillingPeriodStart": start, "BillingPeriodEnd": end, "ChargePeriodStart": start, "ChargePeriodEnd": end,
        "ChargeCategory": "Usage", "ChargeDescription": description, "ChargeFrequency": "Usage-Based",
        "InvoiceIssuerName": ISSUER, "ProviderName": details.get("provider") or ISSUER,
        "PublisherName": details.get("provider") or ISSUER, "ServiceCategory": "Other",
        "ServiceName": a.service or (rule.name if rule is not None else "Allocated cost"),
        "SubAccountId": team.slug, "SubAccountName": team.name, "Tags": json.dumps(tags, ensure_ascii=False),
        "x_Team": team.slug, "x_TeamName": team.name, "x_Rule": rule.name if rule is not None else None,
        "x_RuleType": rule.rule_type if rule is not None else None, "x_AllocationRunId": run.pk,
        "x_AllocatedCostId": a.pk, "x_RecordCount": a.record_count, "x_UserId": a.user_id,
    })
    if a.quantity is not None:
        row.update(ConsumedQuantity=a.quantity, ConsumedUnit=a.unit or None, PricingQuantity=a.quantity,
                   PricingUnit=a.unit or None)
    return row


def focus_export_write(*, period: BillingPeriod, out: IO, fmt: str = "csv", team_ids: set[int] | None = None) -> int:
    """Write the FOCUS export of ``period`` to ``out`` (a binary stream) as ``fmt`` (``csv`` or ``parquet``).

    CSV: UTF-8, a header row, empty fields for missing values, amounts as exact decimals. Parquet:
    amounts as ``decimal128(30, 12)``, text columns as strings, one row group per 5,000 rows.
    Returns the number of rows written. Raises ``ValueError`` for another ``fmt``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    rows = focus_export_rows(period=period, team_ids=team_ids)
    if fmt == "csv":
        return _write_csv(rows, out)
    return _write_parquet(rows, out)


def _write_csv(rows: Iterator[dict[str, object]], out: IO) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
        count += 1
    text.flush()
    text.detach()
    return count


def _write_parquet(rows: Iterator[dict[str, object]], out: IO) -> int:
    import pyarrow as pa  # noqa: PLC0415 - heavy, and CSV exports never need it
    import pyarrow.parquet as pq  # noqa: PLC0415

    amount = pa.decimal128(30, 12)
    fields = [pa.field(c, amount if c in _DECIMAL else pa.int64() if c in {"x_AllocationRunId", "x_AllocatedCostId",
                                                                               "x_RecordCount", "x_UserId"}
                       else pa.string()) for c in COLUMNS]
    schema = pa.schema(fields, metadata={"focus.version": "1.0", "focus.dataset": "Cost and Usage"})
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[dict[str, object]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == _BATCH:
                writer.write_table(_table(batch, schema, pa))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_table(_table(batch, schema, pa))
            count += len(batch)
    return count


def _table(batch: list[dict[str, object]], schema, pa):
    columns = []
    for f in schema:
        values = [row[f.name] for row in batch]
        if pa.types.is_decimal(f.type):
            values = [None if v is None else Decimal(v) for v in values]
        columns.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)
