"""Importing a FOCUS cost file: cloud billing rows become ``UsageRecord`` rows (source ``focus_import``).

The input is a FOCUS 1.0, 1.1, 1.2, 1.3 or 1.4 cost-and-usage file (the FinOps Open Cost and Usage
Specification; the version is told by its columns) as CSV, gzip'd CSV or Parquet (recognised by
their first bytes), in the variety providers really write: any column order, ``NULL``,
``null`` or an empty field for a missing value, timestamps as ``2024-09-18 22:00:00`` or ISO 8601 with
``Z`` or an offset (naive means UTC), negative costs (credits, adjustments), ``Tags`` as a JSON object.

Which FOCUS column becomes which ``UsageRecord`` field is written once, in :mod:`chargeback.focus.parsing`.

Rows are charged to a team by the value of one tag (``team_tag``, default ``business_unit``), or, with
``subaccount_fallback``, by ``SubAccountName`` when the tag is absent; the rest go to the unallocated
pool (``team`` empty). Finance's team mappings (``TeamMapping``: a tag, sub-account or billing account →
team) come first; then a team whose slug, or name up to case, equals the value. A value matching no
team is left unallocated and reported, unless ``create_teams`` asks to create its team; a value
differing from a team's name only in case, spacing or punctuation never creates a second one.

The import is idempotent: each row's ``idempotency_key`` (unique with ``source``) is derived from the
row itself, so importing the same file again adds nothing. The whole file is imported in one
transaction; a bad file or value raises ``FocusImportError`` and nothing is written, unless
``skip_bad_rows`` asks to skip (and report) bad rows.

The rows go in blocks: a thread parses the next block while the connection's thread streams this
one with ``COPY`` into a temporary table and moves it with ``INSERT … SELECT … ON CONFLICT DO
NOTHING``, all in the one transaction. The file is read as a stream, so memory does not grow with
the file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.db import transaction

from chargeback.focus.parsing import RowParser, detect_version
from chargeback.focus.reading import ProgressCallback, good_rows, open_records, progress_reporter
from chargeback.focus.results import FocusImportResult
from chargeback.focus.teams import MappingIndex
from chargeback.focus.writing import BLOCK_ROWS, write_rows
from jobs.progress import job_defer
from webhooks.services import event_record


def focus_import(
    *,
    path: str | Path,
    team_tag: str = "business_unit",
    subaccount_fallback: bool = False,
    skip_bad_rows: bool = False,
    create_teams: bool = False,
    progress: ProgressCallback | Any | None = None,
    block_rows: int = BLOCK_ROWS,
) -> FocusImportResult:
    """Import a FOCUS 1.0–1.4 file (CSV, gzip'd CSV or Parquet) into ``UsageRecord`` rows, in one transaction.

    Args:
        path: the file; gzip and Parquet are recognised by their magic bytes, whatever the name.
        team_tag: the ``Tags`` key whose value names the team a row is charged to.
        subaccount_fallback: charge rows without that tag to a team named after ``SubAccountName``.
        skip_bad_rows: skip rows with a bad value (each reported in ``result.skipped``) instead of
            failing the whole file. Unreadable files and missing columns still fail.
        create_teams: create a team for a team key that names none (see
            ``chargeback.focus.teams.TeamResolver``); without it such rows stay unallocated and are
            reported in ``result.unmapped``. A key differing from a team's name only in case,
            spacing or punctuation never creates one.
        progress: called with the number of rows read since the previous call (every few thousand
            rows), or a tqdm bar (its ``update`` is called). It is called from the thread that
            parses the file.
        block_rows: rows parsed, staged and inserted per block (see
            ``chargeback.focus.writing.write_rows``); the default suits files of any size, tests pass
            small ones.

    Returns:
        A ``FocusImportResult`` with the counts, the teams created and ``BilledCost`` per billing
        period and currency (Decimal, metered precision).

    Raises:
        FocusImportError: the file is missing or unreadable, is not UTF-8 CSV, lacks a column of
            ``chargeback.focus.parsing.REQUIRED_COLUMNS``, or (without ``skip_bad_rows``) a row has a bad value: a decimal,
            timestamp, currency (ISO 4217), ChargeCategory (FOCUS 1.0 values) or ``Tags`` (a JSON
            object) that cannot be read, or a text too long for its column. The message names the
            file, the data row and physical line, and the column. Nothing has been written.

    Row identity (the idempotency key): with an ``Id`` value, ``id:<ProviderName>:<BillingAccountId>:
    <Id>``; without, ``row:<SHA-256 of the row's values>:<n>`` where ``n`` counts identical rows
    within the file, so repeated identical lines are all kept and a re-import maps to the same keys.
    """
    if not team_tag:
        raise ValueError("team_tag must name a Tags key")
    if block_rows < 1:
        raise ValueError("block_rows must be at least 1")
    path = Path(path)
    name = str(path)
    started = time.perf_counter()
    result = FocusImportResult(file=name)
    report = progress_reporter(progress)
    with open_records(path) as records:
        result.file_format = records.file_format
        result.focus_version = detect_version(records.header)
        parser = RowParser(records.header, file=name, team_tag=team_tag,
                           subaccount_fallback=subaccount_fallback)
        if records.file_format == "parquet":
            records.wanted = parser.used_columns()
            records.id_index = parser.index.get("Id")
        rows = good_rows(records, parser, result, skip_bad_rows=skip_bad_rows, report=report)
        with transaction.atomic():
            parser.use_mapping(MappingIndex.load())
            write_rows(rows, result, parser, block_rows, create_teams=create_teams)
            event_record("usage.import_completed", result)
            committing = time.perf_counter()
        result.timings["commit"] = time.perf_counter() - committing
    result.rows_duplicate = result.rows_read - result.rows_skipped - result.rows_imported
    result.seconds = time.perf_counter() - started
    return result


def focus_upload_request(*, task: str, title: str, created_by=None, **kwargs):
    """Queue a job of an uploaded FOCUS file on the ``imports`` queue: ``task`` is
    ``chargeback.tasks.focus_upload_preview`` or ``focus_upload_import`` (named, since the tasks
    import this module), ``kwargs`` its arguments. Returns its ``jobs.models.JobProgress``."""
    with transaction.atomic():
        return job_defer(task, title=title, created_by=created_by, **kwargs)
