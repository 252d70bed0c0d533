"""Reading a FOCUS file: recognising its format (CSV, gzip'd CSV, Parquet) by its first bytes, checking
its header, and yielding its good rows while counting every row and totalling ``BilledCost`` per
billing period and currency.

Every format gives the parser the same thing: a header (list of column names) and records (lists
of text values, missing ones as ``""``), so one parser reads them all. Parquet is read row group by
row group (``pyarrow.parquet.ParquetFile.iter_batches``): memory holds one batch, whatever the size
of the file; its typed columns are turned into the text the CSV would have held (decimals exactly,
timestamps in ISO 8601 with ``Z``, maps and structs as JSON objects).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import itertools
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from chargeback.focus.parsing import PROVIDER_COLUMNS, REQUIRED_COLUMNS, ParsedRow, RowError, RowParser
from chargeback.focus.results import MAX_REPORTED_SKIPS, FocusImportError, FocusImportResult, FocusRowError, PeriodTotal

#: Rows between progress reports.
PROGRESS_EVERY = 5000

#: Rows per Parquet batch: a row group is read in slices of this many rows.
PARQUET_BATCH_ROWS = 20_000

#: ``progress`` of ``focus_import``: called with the number of rows read since the previous call.
ProgressCallback = Callable[[int], Any]

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"


def _magic(path: Path) -> bytes:
    name = str(path)
    try:
        with path.open("rb") as probe:
            return probe.read(4)
    except FileNotFoundError:
        raise FocusImportError("no such file", file=name) from None
    except IsADirectoryError:
        raise FocusImportError("is a directory, not a FOCUS file", file=name) from None
    except OSError as exc:
        raise FocusImportError(f"cannot read the file: {exc.strerror or exc}", file=name) from None


def open_text(path: Path):
    """Open ``path`` as UTF-8 text (a BOM is dropped), through gzip when it starts with its magic."""
    name = str(path)
    magic = _magic(path)
    if magic[:2] == _GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if path.suffix.lower() == ".gz":
        raise FocusImportError("the name ends in .gz but the file is not gzip-compressed", file=name)
    return path.open("r", encoding="utf-8-sig", newline="")


def file_format(path: Path) -> str:
    """``"parquet"``, ``"csv.gz"`` or ``"csv"``, told by the file's first bytes (its name does not count).

    Raises ``FocusImportError`` for a missing or unreadable file.
    """
    magic = _magic(path)
    if magic == _PARQUET_MAGIC:
        return "parquet"
    if magic[:2] == _GZIP_MAGIC:
        return "csv.gz"
    return "csv"


class NulWatch:
    """The file's physical lines, noting whether one held a NUL character.

    PostgreSQL text cannot hold a NUL, so a record with one is refused, naming its column and line,
    whatever ``skip_bad_rows`` says (it usually means a binary or corrupt file). Noting it here and
    looking for the column only when ``seen`` keeps the common path to one test per line.
    """

    def __init__(self, text: Iterable[str]) -> None:
        self.text = text
        self.seen = False

    def __iter__(self) -> Iterator[str]:
        for line in self.text:
            if "\x00" in line:
                self.seen = True
            yield line


def checked_lines(text: Iterable[str], file: str) -> NulWatch:
    """``text`` watched for NUL characters (see ``NulWatch``)."""
    return NulWatch(text)


def refuse_nul(values: list[str], header: list[str], *, file: str, row: int | None, line: int | None) -> None:
    """Raise ``FocusImportError`` naming the first column of ``values`` that holds a NUL character."""
    for i, value in enumerate(values):
        if "\x00" in value:
            column = header[i] if i < len(header) else f"field {i + 1}"
            raise FocusImportError("contains a NUL character (PostgreSQL text cannot hold one: a binary or "
                                   "corrupt file?)", file=file, row=row, line=line, column=column)


class FocusRecords:
    """A FOCUS file opened for reading: ``header``, ``file_format``, and iteration over its records.

    ``line_num`` is the physical line the last record ended on (CSV), or ``None`` (Parquet).
    ``nul`` is the ``NulWatch`` of a CSV (``None`` for Parquet, whose columns are checked whole).
    """

    header: list[str]
    file_format: str
    nul: NulWatch | None = None
    line_num: int | None = None

    def __iter__(self) -> Iterator[list[str]]:  # pragma: no cover - overridden
        raise NotImplementedError


class _CsvRecords(FocusRecords):
    def __init__(self, text, name: str, fmt: str) -> None:
        self.file_format = fmt
        self.nul = NulWatch(text)
        self.reader = csv.reader(self.nul)
        self.header = read_header(self.reader, name)

    @property
    def line_num(self) -> int:
        return self.reader.line_num

    def __iter__(self):
        return self.reader


class _ParquetRecords(FocusRecords):
    """Parquet records as text, one batch of ``PARQUET_BATCH_ROWS`` at a time."""

    file_format = "parquet"

    def __init__(self, path: Path, name: str, batch_rows: int) -> None:
        import pyarrow.parquet as pq  # noqa: PLC0415 - pyarrow is heavy; CSV imports never need it

        self.name, self.batch_rows = name, batch_rows
        try:
            # No pre-buffering: it coalesces reads for remote storage through pyarrow's I/O threads;
            # for a local file it only added CPU (a quarter of the decoding, measured on 300,000 rows).
            self.file = pq.ParquetFile(path, pre_buffer=False)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError…: all "unreadable"
            raise FocusImportError(f"not a readable Parquet file ({exc})", file=name) from None
        self.header = _checked_header([f.name for f in self.file.schema_arrow], name)

    #: Indexes of the columns the parser reads from a row with an Id (``RowParser.used_columns``);
    #: ``None``: all. In a batch where every row has an Id, only these are converted to text (the
    #: others are given as empty): converting typed columns is most of the reading time.
    wanted: set[int] | None = None
    id_index: int | None = None

    def __iter__(self) -> Iterator[list[str]]:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.compute as pc  # noqa: PLC0415

        rownum = 0
        blank = pa.array(["", "NULL", "null", "Null"])
        header = self.header
        try:
            for group in range(self.file.num_row_groups):
                # Read only the wanted columns of a row group whose rows all have an Id.
                names = None
                if self.wanted is not None and self.id_index is not None:
                    ids = self.file.read_row_group(group, columns=[header[self.id_index]],
                                                   use_threads=False).column(0)
                    if not ids.null_count and not (pa.types.is_string(ids.type)
                                                   and pc.any(pc.is_in(ids, blank)).as_py()):
                        names = [header[i] for i in sorted(self.wanted)]
                    del ids
                for batch in self.file.iter_batches(batch_size=self.batch_rows, row_groups=[group], columns=names,
                                                    use_threads=False):
                    got = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
                    columns = [_text_column(got[name], name, self, rownum) if name in got else itertools.repeat("")
                               for name in header]
                    rownum += batch.num_rows
                    yield from map(list, zip(*columns))
        except FocusImportError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise FocusImportError(f"cannot read the Parquet file: {exc}", file=self.name,
                                   row=rownum + 1) from None


def _text_column(array, column: str, records: _ParquetRecords, first_row: int) -> list[str]:
    """A Parquet column as the text values a CSV export would hold; missing values as ``""``."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.cast(kind.value_type)
        kind = array.type
    if pa.types.is_map(kind) or pa.types.is_struct(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [_json_text(value) for value in array.to_pylist()]
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        if pa.types.is_timestamp(kind) and kind.tz is None:
            array = array.cast(pa.timestamp(kind.unit, tz="UTC"))  # naive means UTC, as in a CSV
        # A cost file has few distinct moments (hours of one month): format each once.
        encoded = pc.dictionary_encode(array)
        texts = pc.cast(encoded.dictionary, pa.string()).to_pylist()
        return [("" if i is None else texts[i]) for i in encoded.indices.to_pylist()]
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        array = pc.cast(array, pa.string())
    elif pc.any(pc.match_substring(array, "\x00")).as_py():
        where = pc.index(pc.match_substring(array, "\x00"), True).as_py()
        raise FocusImportError("contains a NUL character (PostgreSQL text cannot hold one: a binary or "
                               "corrupt file?)", file=records.name, row=first_row + where + 1, column=column)
    return pc.fill_null(array, "").to_pylist()


def _json_text(value: object) -> str:
    """A Parquet map (list of key/value pairs), struct (dict) or list as JSON text."""
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)
    return json.dumps(value, ensure_ascii=False, default=str)


@contextlib.contextmanager
def open_records(path: Path, *, batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[FocusRecords]:
    """Open a FOCUS file of any supported format and check its header; closes it on exit.

    Raises ``FocusImportError`` (naming the file, line and column, or the format) for a missing,
    unreadable or empty file, a header without a required column, or a column named twice.
    """
    name = str(path)
    fmt = file_format(path)
    if fmt == "parquet":
        yield _ParquetRecords(path, name, batch_rows)
        return
    with open_text(path) as text:
        yield _CsvRecords(text, name, fmt)


def _checked_header(header: list[str], file: str) -> list[str]:
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise FocusImportError("column appears twice in the header", file=file, line=1, column=column)
        seen.add(column)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if not seen.intersection(PROVIDER_COLUMNS):
        missing.append("ProviderName")
    if missing:
        also = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        hint = (" (FOCUS 1.4 names it ServiceProviderName; HostProviderName or InvoiceIssuerName "
                "will also do)" if missing[0] == "ProviderName" else "")
        raise FocusImportError("required column missing from the header" + hint + also,
                               file=file, line=1, column=missing[0])
    return header


def read_header(reader: Iterator[list[str]], file: str) -> list[str]:
    try:
        header = next(reader, None)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, zlib.error) as exc:
        raise FocusImportError(f"cannot read the header: {read_error(exc)}", file=file, line=1) from None
    if not header or not any(h.strip() for h in header):
        raise FocusImportError("the file is empty: no header row", file=file, line=1)
    if any("\x00" in h for h in header):
        refuse_nul(header, [f"field {i + 1} of the header" for i in range(len(header))], file=file, row=None, line=1)
    return _checked_header(header, file)


def read_error(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not UTF-8 text"
    return str(exc) or type(exc).__name__



def good_rows(records: FocusRecords, parser: RowParser, result: FocusImportResult, *,
              skip_bad_rows: bool, report: Callable[[int], None]) -> Iterator[ParsedRow]:
    """Yield the file's good rows; count every row; skip or raise on a bad one.

    A record holding a NUL character is refused (``FocusImportError`` naming its column and line)
    even with ``skip_bad_rows``: it is a sign of a corrupt file, not of one bad value.
    """
    file = parser.file
    parse = parser.parse
    periods = result.periods
    nul = records.nul
    rownum = 0
    unreported = 0
    try:
        for values in records:
            if not values:
                continue  # a blank line
            rownum += 1
            unreported += 1
            if unreported == PROGRESS_EVERY:
                result.rows_read = rownum
                report(unreported)
                unreported = 0
            if nul is not None and nul.seen:
                refuse_nul(values, parser.header, file=file, row=rownum, line=records.line_num)
            try:
                row = parse(values, rownum)
            except RowError as bad:
                if not skip_bad_rows:
                    raise FocusImportError(bad.message, file=file, row=rownum, line=records.line_num,
                                           column=bad.column) from None
                result.rows_skipped += 1
                if len(result.skipped) < MAX_REPORTED_SKIPS:
                    result.skipped.append(FocusRowError(rownum, bad.column, bad.message, records.line_num))
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
        line = records.line_num
        raise FocusImportError(f"cannot read the file: {read_error(exc)}", file=file,
                               line=None if line is None else line + 1) from None
    result.rows_read = rownum
    result.rows_unallocated = sum(t.unallocated_rows for t in periods.values())
    if unreported:
        report(unreported)


def progress_reporter(progress: Any) -> Callable[[int], None]:
    if progress is None:
        return lambda n: None
    update = getattr(progress, "update", None)
    return update if callable(update) else progress
