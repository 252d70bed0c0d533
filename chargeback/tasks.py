"""Background jobs of chargeback (docs/jobs.md): the preview and import of an uploaded FOCUS file on
the ``imports`` queue, and the removal of abandoned uploads on ``periodic``.

The import is one transaction with its rows keyed by their FOCUS identity (``focus_import``), so a
worker killed half-way leaves nothing and the retry imports the file whole; a second import of the
same file adds nothing (its rows are counted as already imported).
"""

from __future__ import annotations

from django.urls import reverse
from procrastinate.contrib.django import app

from jobs import queues
from jobs.progress import Progress, job

from .focus.preview import focus_file_preview
from .focus.results import FocusImportError
from .focus.uploads import focus_upload_path, focus_uploads_remove_abandoned
from .services.focus_import import focus_import

#: Bad rows listed on the import's page (the result counts them all).
LISTED_SKIPS = 50


@job(queue=queues.IMPORTS, retry=2)
def focus_upload_preview(progress: Progress, *, token: str, file_name: str, team_tag: str,
                         subaccount_fallback: bool, skip_bad_rows: bool) -> dict:
    """Read the uploaded file once with the importer's parser: the first rows, the team mapping, the
    counts. Its page links to the preview and the "Import" button; nothing is written."""
    path = focus_upload_path(token)
    progress.step("reading the file", total=path.stat().st_size if path.exists() else None, unit="bytes")
    try:
        preview = focus_file_preview(path=path, team_tag=team_tag, subaccount_fallback=subaccount_fallback)
    except FocusImportError as exc:
        path.unlink(missing_ok=True)
        return {"refused": True, "message": f"{file_name}: {exc.reason}"
                + (f" (line {exc.line}, column {exc.column})" if exc.column else "") + ". Nothing was imported."}
    progress.set(progress.total or 0)
    preview_json = {
        "total": preview["total"], "bad": preview["bad"], "unallocated": preview["unallocated"],
        "rows": [{**row, "period": f"{row['period']:%Y-%m}" if row.get("period") else "",
                  "cost": str(row["cost"]) if row.get("cost") is not None else ""} for row in preview["rows"]],
        "teams": [[key, count, {"pk": team.pk, "name": team.name} if team else None]
                  for key, count, team in preview["teams"]],
    }
    url = reverse("admin:chargeback_usagerecord_import_focus") + f"?preview_job={progress.job_id or ''}"
    return {
        "message": f"{file_name}: {preview['total']:,} data rows, {preview['bad']:,} with a bad value, "
                   f"{preview['unallocated']:,} without a team.",
        "links": [{"url": url, "label": "Review the preview and import"}],
        "preview": preview_json,
        "upload": {"token": token, "file_name": file_name, "team_tag": team_tag,
                   "subaccount_fallback": subaccount_fallback, "skip_bad_rows": skip_bad_rows},
    }


@job(queue=queues.IMPORTS)
def focus_upload_import(progress: Progress, *, token: str, file_name: str, team_tag: str,
                        subaccount_fallback: bool, skip_bad_rows: bool, total_rows: int | None = None) -> dict:
    """Import the uploaded file (``focus_import``: one transaction), counting rows as they are read
    ("importing 1.2 M of 3.4 M rows"); the upload is removed once imported or refused."""
    path = focus_upload_path(token)
    if not path.exists():
        return {"refused": True, "message": f"{file_name}: the upload is gone (imported already, or removed "
                                            "after a day); upload the file again."}
    progress.step("importing", total=total_rows, unit="rows")
    try:
        result = focus_import(path=path, team_tag=team_tag, subaccount_fallback=subaccount_fallback,
                              skip_bad_rows=skip_bad_rows, progress=progress.advance)
    except FocusImportError as exc:
        path.unlink(missing_ok=True)
        return {"refused": True, "message": str(exc).replace(str(path), file_name) + " Nothing was imported."}
    path.unlink(missing_ok=True)
    return {
        "message": f"{file_name}: {result.rows_imported:,} rows imported, {result.rows_duplicate:,} already "
                   f"imported, {result.rows_skipped:,} skipped, {result.teams_created} team(s) created.",
        "lines": [f"{period:%Y-%m} {currency}: {total.billed_cost} billed ({total.rows:,} rows)"
                  for (period, currency), total in sorted(result.periods.items())],
        "warnings": [str(error) for error in result.skipped[:LISTED_SKIPS]],
        "links": [{"url": reverse("admin:chargeback_usagerecord_changelist") + "?source__exact=focus_import",
                   "label": "See the imported usage"}],
        "rows_imported": result.rows_imported,
    }


@app.periodic(cron="20 * * * *", periodic_id="remove_abandoned_focus_uploads")
@app.task(queue=queues.PERIODIC, name="chargeback.tasks.remove_abandoned_focus_uploads")
def remove_abandoned_focus_uploads(timestamp: int) -> None:
    """Every hour at :20: remove uploads older than ``FOCUS_UPLOAD_ABANDONED_HOURS`` (never imported)."""
    focus_uploads_remove_abandoned()
