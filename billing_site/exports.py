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
(the sheet compressed into the zip as the rows come, strings inline) to a temporary file and then
sent from it. Memory stays flat however many rows (``bench/admin_export.py`` measures it).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

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
#: Excel's day 0 (its 1900 leap-year bug included): a date is written as days since then.
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
_SHEET_NAME_ILLEGAL = re.compile(r"[\[\]:*?/\\]")
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_XLSX_PARTS = {
    "[Content_Types].xml": (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'
    ),
    "_rels/.rels": (
        f'<Relationships xmlns="{_PKG_REL_NS}"><Relationship Id="rId1" '
        f'Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/_rels/workbook.xml.rels": (
        f'<Relationships xmlns="{_PKG_REL_NS}">'
        f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{_REL_NS}/styles" Target="styles.xml"/></Relationships>'
    ),
    # Cell styles: 0 plain, 1 date and time, 2 date, 3 bold (the header row).
    "xl/styles.xml": (
        f'<styleSheet xmlns="{_MAIN_NS}"><numFmts count="2">'
        '<numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/><numFmt numFmtId="165" formatCode="yyyy-mm-dd"/>'
        '</numFmts><fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
        '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/>'
        '</fill></fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
    ),
}
#: Rows per write to the compressed sheet.
XLSX_BLOCK_ROWS = 500


def _xlsx_text(text: str, style: str = "") -> str:
    text = escape(_XML_ILLEGAL.sub("\ufffd", text)).replace("\r", "&#13;")
    return f'<c t="inlineStr"{style}><is><t xml:space="preserve">{text}</t></is></c>'


def _xlsx_cell(value: Any) -> str:
    """One ``<c>`` element of :func:`xlsx_safe_cell`'s value: a number, a boolean, a date or text."""
    value = xlsx_safe_cell(value)
    if value is None:
        return "<c/>"
    if isinstance(value, bool):
        return f'<c t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int):
        return f"<c><v>{value}</v></c>"
    if isinstance(value, float):
        return f"<c><v>{value!r}</v></c>"
    if isinstance(value, dt.datetime):
        since = value - _EXCEL_EPOCH
        return f'<c s="1"><v>{since.days + (since.seconds + since.microseconds / 1e6) / 86400!r}</v></c>'
    if isinstance(value, dt.date):
        return f'<c s="2"><v>{(value - _EXCEL_EPOCH.date()).days}</v></c>'
    return _xlsx_text(str(value))


def xlsx_write(out, header: list[str], rows: Iterable[Iterable[Any]], *, sheet: str = "export") -> int:
    """Write ``rows`` under ``header`` (bold) as an XLSX workbook of one sheet to the binary file ``out``.

    The sheet's XML is compressed into the zip as the rows come, in blocks of
    :data:`XLSX_BLOCK_ROWS`: memory stays flat. Strings are inline (no shared-strings table to keep
    in memory); cells are :func:`xlsx_safe_cell`'s values: text neutralised, amounts as exact
    decimal text, times in UTC as Excel dates. About ten times as fast as openpyxl's write-only
    workbook, which builds a cell object per value (``bench/admin_export.py``). Returns the rows.
    """
    name = escape(_SHEET_NAME_ILLEGAL.sub("-", sheet)[:31] or "export", {'"': "&quot;"})
    count = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as book:
        for part, xml in _XLSX_PARTS.items():
            book.writestr(part, _XML_HEAD + xml)
        book.writestr("xl/workbook.xml", f'{_XML_HEAD}<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheets>'
                                         f'<sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>')
        with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as part:
            head = "".join(_xlsx_text(str(title), ' s="3"') for title in header)
            block = [f'{_XML_HEAD}<worksheet xmlns="{_MAIN_NS}"><sheetData><row>{head}</row>']
            for row in rows:
                block.append("<row>" + "".join(map(_xlsx_cell, row)) + "</row>")
                count += 1
                if len(block) >= XLSX_BLOCK_ROWS:
                    part.write("".join(block).encode())
                    block = []
            block.append("</sheetData></worksheet>")
            part.write("".join(block).encode())
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
