"""A FOCUS import's result as JSON values: the ``data`` of the ``usage.import_completed`` webhook event."""

from __future__ import annotations

from pathlib import Path

from .results import FocusImportResult


def focus_import_summary(result: FocusImportResult) -> dict:
    """``{"file": base name, "rows_read", "rows_imported", "rows_duplicate", "rows_skipped",
    "rows_unallocated", "new_teams": [names], "periods": [{"billing_period_start": "YYYY-MM-DD",
    "currency", "rows", "billed_cost": "decimal string, metered precision", "unallocated_rows",
    "unallocated_cost"}]}``. The file's folder is left out (a path on the server)."""
    return {
        "file": Path(result.file).name,
        "rows_read": result.rows_read,
        "rows_imported": result.rows_imported,
        "rows_duplicate": result.rows_read - result.rows_skipped - result.rows_imported,
        "rows_skipped": result.rows_skipped,
        "rows_unallocated": result.rows_unallocated,
        "new_teams": list(result.new_teams),
        "periods": [
            {"billing_period_start": start.isoformat(), "currency": currency, "rows": total.rows,
             "billed_cost": str(total.billed_cost), "unallocated_rows": total.unallocated_rows,
             "unallocated_cost": str(total.unallocated_cost)}
            for (start, currency), total in sorted(result.periods.items())
        ],
    }
