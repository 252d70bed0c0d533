"""Reading a FOCUS file: opening it (plain or gzip), checking its lines and header, and yielding its good
rows while counting every row and totalling ``BilledCost`` per billing period.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from chargeback.focus.parsing import REQUIRED_COLUMNS, ParsedRow, RowError, RowParser
from chargeback.focus.results import MAX_REPORTED_SKIPS, FocusImportError, FocusImportResult, FocusRowError, PeriodTotal

#: Rows between progress reports.
PROGRESS_EVERY = 5000

#: ``progress`` of ``focus_import``: called with the number of rows read since the previous call.
ProgressCallback = Callable[[int], Any]


def open_text(path: Path):
    """Open ``path`` as UTF-8 text (a BOM is dropped), through gzip when it starts with its magic."""
    name = str(path)
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
    except FileNotFoundError:
        raise FocusImportError("no such file", file=name) from None
    except IsADirectoryError:
        raise FocusImportError("is a directory, not a FOCUS CSV file", file=name) from None
    except OSError as exc:
        raise FocusImportError(f"cannot read the file: {exc.strerror or exc}", file=name) from None
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if path.suffix.lower() == ".gz":
        raise FocusImportError("the name ends in .gz but the file is not gzip-compressed", file=name)
    return path.open("r", encoding="utf-8-sig", newline="")


def checked_lines(text: Iterable[str], file: str) -> Iterator[str]:
    """The file's physical lines; a NUL character means a binary or corrupt file (PostgreSQL text
    cannot hold one), so it stops the import whatever ``skip_bad_rows`` says."""
    for number, line in enumerate(text, start=1):
        if "\x00" in line:
            raise FocusImportError("contains a NUL character: not a text CSV file", file=file, line=number)
        yield line


def read_header(reader: Iterator[list[str]], file: str) -> list[str]:
    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, zlib.error) as exc:
        raise FocusImportError(f"cannot read the header: {read_error(exc)}", file=file, line=1) from None
    if not header or not any(h.strip() for h in header):
        raise FocusImportError("the file is empty: no header row", file=file, line=1)
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise FocusImportError("column appears twice in the header", file=file, line=1, column=column)
        seen.add(column)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise FocusImportError(
            "required column missing from the header" + (f" (also missing: {', '.join(missing[1:])})"
                                                          if len(missing) > 1 else ""),
            file=file, line=1, column=missing[0],
        )
    return header


def read_error(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not UTF-8 text"
    return str(exc) or type(exc).__name__



def good_rows(reader: Iterator[list[str]], parser: RowParser, result: FocusImportResult, *,
               skip_bad_rows: bool, report: Callable[[int], None]) -> Iterator[ParsedRow]:
    """Yield the file's good rows; count every row; skip or raise on a bad one."""
    file = parser.file
    parse = parser.parse
    periods = result.periods
    rownum = 0
    unreported = 0
    try:
        for values in reader:
            if not values:
                continue  # a blank line
            rownum += 1
            unreported += 1
            if unreported == PROGRESS_EVERY:
                result.rows_read = rownum
                report(unreported)
                unreported = 0
            try:
                row = parse(values, rownum)
            except RowError as bad:
                if not skip_bad_rows:
                    raise FocusImportError(bad.message, file=file, row=rownum, line=reader.line_num,
                                           column=bad.column) from None
                result.rows_skipped += 1
                if len(result.skipped) < MAX_REPORTED_SKIPS:
                    result.skipped.append(FocusRowError(rownum, bad.column, bad.message, reader.line_num))
                continue
            total = periods.get((row.billing_period_start, row.currency))
            if total is None:
                total = periods[(row.billing_period_start, row.currency)] = PeriodTotal()
            total.rows += 1
            total.billed_cost += row.cost
            if row.team_key is None:
                total.unallocated_rows += 1
                total.unallocated_cost += row.cost
            yield row
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, zlib.error) as exc:
        raise FocusImportError(f"cannot read the file: {read_error(exc)}", file=file,
                               line=reader.line_num + 1) from None
    result.rows_read = rownum
    result.rows_unallocated = sum(t.unallocated_rows for t in periods.values())
    if unreported:
        report(unreported)


def progress_reporter(progress: Any) -> Callable[[int], None]:
    if progress is None:
        return lambda n: None
    update = getattr(progress, "update", None)
    return update if callable(update) else progress
