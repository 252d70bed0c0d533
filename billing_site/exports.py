"""Spreadsheet-safe exports: every CSV and XLSX the product writes goes through this module.

:func:`csv_safe_cell` is the one neutraliser; :func:`export_csv_response` and
:func:`export_xlsx_response` are the one streaming writer (the admin's exports of every billing
list and the portal's usage downloads use them), so no export can skip it.

A spreadsheet opening a CSV runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK("http://…","x")`` in a ``feature_key`` set through a team's API key), and a leading
tab or carriage return can hide such a cell. OWASP's advice ("CSV Injection") is applied to text
cells: such a cell is written with a single quote before it, so it reads as text.

Numbers are not text: a ``Decimal`` or an ``int`` is written as the number it is, in fixed point
(``-12.500000000000``, never ``-1.25E+1``), and left alone, so a negative amount stays a number a
spreadsheet can sum. Only values the code passes as numbers are treated so; a string that merely
looks like a number (``"-5"`` typed as a description) is text and is neutralised.

XLSX: a ``Decimal`` is written as its exact fixed-point text (``"-12.500000000000"``), never as a
float: Excel keeps 15 significant digits, and a metered amount has up to 30. Integers, dates and
booleans are native cells; datetimes are UTC without a zone (Excel has none). Text cells are
neutralised as in the CSV (a spreadsheet program may still take typed ``=…`` text for a formula).

Streaming: rows are written as they come (``queryset.iterator(chunk_size=…)``); the CSV goes to the
client in blocks of rows (``StreamingHttpResponse``), the XLSX is written by :func:`xlsx_write`
(XlsxWriter in ``constant_memory`` mode: each row flushed to a temporary file, strings inline) to a
temporary file and then sent from it. Memory stays flat however many rows (``bench/admin_export.py`` measures it).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import tempfile
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import xlsxwriter
from django.core.exceptions import FieldError
from django.http import FileResponse, StreamingHttpResponse
from import_export import resources

#: What a text cell may not begin with (OWASP, CSV Injection): formula starts, tab, carriage return.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe_cell(value: Any) -> Any:
    """One cell as it is written: numbers in fixed point, untouched; text starting a formula quoted.

    Args:
        value: ``None`` (an empty cell), a ``bool``, an ``int``, a ``Decimal`` (any sign, any
            places), or anything else, which is written as its ``str()``.

    Returns:
        ``""`` for ``None``; a ``Decimal`` as fixed-point text; an ``int`` as it is; a datetime
        in UTC as ISO 8601 (a naive one is taken as UTC), a date as ``YYYY-MM-DD``; text that
        begins with one of :data:`FORMULA_STARTS` with a ``'`` before it; other text unchanged.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        return _utc(value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


class SafeCsvWriter:
    """A ``csv.writer`` whose every cell passes through :func:`csv_safe_cell`."""

    def __init__(self, stream, **fmtparams):
        self._writer = csv.writer(stream, **fmtparams)

    def writerow(self, row: Iterable[Any]):
        return self._writer.writerow([csv_safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(stream, **fmtparams) -> SafeCsvWriter:
    """``csv.writer(stream, **fmtparams)`` made safe for spreadsheets (:func:`csv_safe_cell`)."""
    return SafeCsvWriter(stream, **fmtparams)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is None else value.astimezone(dt.UTC)


def xlsx_safe_cell(value: Any) -> Any:
    """One XLSX cell: ``None``, ``bool``, ``int`` and dates native; a datetime in UTC without a zone;
    a ``Decimal`` as its exact fixed-point text (never a float); other text through :func:`csv_safe_cell`,
    with control characters XML cannot hold (``\x00``–``\x08``, ``\x0b``, ``\x0c``, ``\x0e``–``\x1f``)
    replaced by U+FFFD."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, dt.datetime):
        return _utc(value).replace(tzinfo=None)
    if isinstance(value, dt.date):
        return value
    # XML 1.0 has no control characters but tab, LF and CR: a spreadsheet would refuse the file.
    return _XML_ILLEGAL.sub("\ufffd", csv_safe_cell(value))


class _Echo:
    """A file whose ``write`` returns what it is given: ``csv.writer`` then yields lines."""

    def write(self, value: str) -> str:
        return value


def export_csv_response(header: list[str], rows: Iterable[Iterable[Any]], *, filename: str) -> StreamingHttpResponse:
    """``rows`` under ``header`` as a streamed CSV attachment ``<filename>.csv`` (UTF-8, one header row).

    Every cell goes through :func:`csv_safe_cell`. ``rows`` is consumed while the response is sent,
    so pass a generator over ``queryset.iterator(chunk_size=…)``, never a list.
    """
    writer = csv_writer(_Echo())

    def lines() -> Iterator[str]:
        # Lines go out in blocks of CSV_BLOCK_ROWS: one write to the client per block, not per row.
        block = [writer.writerow(header)]
        for row in rows:
            block.append(writer.writerow(row))
            if len(block) >= CSV_BLOCK_ROWS:
                yield "".join(block)
                block = []
        if block:
            yield "".join(block)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


#: Rows per block the CSV response sends (about 100 KB of a ledger export).
CSV_BLOCK_ROWS = 500

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

#: XML 1.0 holds no control character but tab, LF and CR.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: What Excel refuses in a sheet's name (XlsxWriter raises on it): replaced by ``-``.
_SHEET_NAME_ILLEGAL = re.compile(r"[\[\]:*?/\\]")
#: XlsxWriter's options for every export. ``constant_memory``: each row is flushed to a temporary
#: file once the next begins and strings are inline, so memory stays flat. The ``strings_to_*``
#: conversions are off: text is never turned into a number, a formula or a link, whatever it holds
#: (the neutraliser quotes formula starts as well, for the spreadsheet program's own parsing).
XLSX_OPTIONS = {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
                "strings_to_urls": False}


def _sheet_name(sheet: str) -> str:
    """``sheet`` as Excel takes it: its illegal characters as ``-``, 31 characters, no ``'`` at an end."""
    return _SHEET_NAME_ILLEGAL.sub("-", sheet)[:31].strip("'") or "export"


def xlsx_write(out, header: list[str], rows: Iterable[Iterable[Any]], *, sheet: str = "export") -> int:
    """Write ``rows`` under ``header`` (bold) as an XLSX workbook of one sheet to ``out``.

    Args:
        out: a binary file open for writing (seekable: a zip's directory is written last), or a path.
        header: the column titles, written as text in a bold first row.
        rows: an iterable of rows (each an iterable of cells), consumed once, row by row.
        sheet: the sheet's name; characters Excel refuses (``[]:*?/`` and backslash) become
            ``-``, cut at 31 characters.

    Returns:
        The number of rows written under the header.

    Written by XlsxWriter (:data:`XLSX_OPTIONS`, ``constant_memory``): each row goes to a temporary
    file as the next begins and the sheet is zipped at the end, so memory stays flat. Cells are
    :func:`xlsx_safe_cell`'s values: text neutralised and never taken for a formula, a number or a
    link; amounts as exact decimal text; integers and booleans as numbers and booleans; dates
    (``yyyy-mm-dd``) and times in UTC (``yyyy-mm-dd hh:mm:ss``) as Excel dates. Excel's own limits
    apply: a text cell keeps its first 32,767 characters, a number its 15 significant digits. A
    carriage return in text is written as Excel's escape ``_x000D_`` (Excel shows the character).
    """
    book = xlsxwriter.Workbook(out, XLSX_OPTIONS)
    try:
        worksheet = book.add_worksheet(_sheet_name(sheet))
        bold = book.add_format({"bold": True})
        moment = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        day = book.add_format({"num_format": "yyyy-mm-dd"})
        for col, title in enumerate(header):
            worksheet.write_string(0, col, _XML_ILLEGAL.sub("\ufffd", str(title)), bold)
        write_string, write_number = worksheet.write_string, worksheet.write_number
        write_boolean, write_datetime = worksheet.write_boolean, worksheet.write_datetime
        count = 0
        for count, row in enumerate(rows, start=1):
            for col, value in enumerate(row):
                value = xlsx_safe_cell(value)
                if value is None:
                    continue
                if isinstance(value, str):
                    write_string(count, col, value)
                elif isinstance(value, bool):
                    write_boolean(count, col, value)
                elif isinstance(value, int):
                    write_number(count, col, value)
                elif isinstance(value, dt.datetime):
                    write_datetime(count, col, value, moment)
                else:  # a date: xlsx_safe_cell returns nothing else
                    write_datetime(count, col, value, day)
    finally:
        book.close()
    return count


def export_xlsx_response(header: list[str], rows: Iterable[Iterable[Any]], *, filename: str,
                         sheet: str = "export") -> FileResponse:
    """``rows`` under ``header`` as an XLSX attachment ``<filename>.xlsx``, one sheet named ``sheet``.

    Written by :func:`xlsx_write` to a temporary file (memory flat), then sent from the file in
    blocks; the first byte leaves when the last row is written (a zip's directory comes last).
    """
    handle = tempfile.TemporaryFile()
    xlsx_write(handle, header, rows, sheet=sheet)
    handle.seek(0)
    return FileResponse(handle, as_attachment=True, filename=f"{filename}.xlsx", content_type=XLSX_CONTENT_TYPE)


class ExportResource(resources.ModelResource):
    """The columns of an admin export (django-import-export's ``ModelResource``), values as stored.

    A column's value is the model's own (``Decimal`` amounts at their stored places, ``datetime``,
    ``date``, ``int``, ``str``; a foreign key as its id unless the field names ``team__slug``…), or
    a ``dehydrate_<column>`` method's; JSON as compact JSON text. The library's widgets, which turn
    numbers into locale strings, are not used: the writer above decides how each type is written.
    ``filter_export(queryset)`` may add ``select_related``, annotations or an order.
    """

    def export_field(self, field, instance, **kwargs):
        method = self.dehydrator(field)
        return export_value(method(instance) if method is not None else field.get_value(instance))

    def dehydrator(self, field):
        """The field's ``dehydrate_*`` method (or callable), or ``None``."""
        dehydrate = field.get_dehydrate_method(self.get_field_name(field))
        return dehydrate if callable(dehydrate) else getattr(self, dehydrate, None)

    def export_rows(self, queryset, *, chunk_size: int = 2000) -> tuple[list[str], Iterator[list]]:
        """``(header, rows)`` of ``queryset`` after :meth:`filter_export`; ``rows`` a generator of lists.

        When every column is a plain attribute path (no ``dehydrate_*``), the rows are read with
        ``values_list(…).iterator(chunk_size)``: tuples, no model instance per row (about twice
        as fast, ``bench/admin_export.py``); otherwise instances with ``iterator(chunk_size)``.
        """
        fields = self.get_export_fields()
        header = [str(field.column_name) for field in fields]
        queryset = self.filter_export(queryset)
        if all(field.attribute and self.dehydrator(field) is None for field in fields):
            try:
                values = queryset.values_list(*[field.attribute for field in fields])
            except FieldError:  # an attribute that is a property, not a column: read instances
                values = None
            if values is not None:
                return header, ([export_value(value) for value in row] for row in values.iterator(chunk_size=chunk_size))
        return header, ([self.export_field(field, obj) for field in fields]
                        for obj in queryset.iterator(chunk_size=chunk_size))


def export_value(value: Any) -> Any:
    """A value as the writer takes it: JSON (a dict or list) as compact JSON text, anything else as it is."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value
