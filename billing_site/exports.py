"""Spreadsheet-safe exports: every CSV the product writes goes through :func:`csv_writer`.

A spreadsheet opening a CSV runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK("http://…","x")`` in a ``feature_key`` set through a team's API key), and a leading
tab or carriage return can hide such a cell. OWASP's advice ("CSV Injection") is applied to text
cells: such a cell is written with a single quote before it, so it reads as text.

Numbers are not text: a ``Decimal`` or an ``int`` is written as the number it is, in fixed point
(``-12.500000000000``, never ``-1.25E+1``), and left alone, so a negative amount stays a number a
spreadsheet can sum. Only values the code passes as numbers are treated so; a string that merely
looks like a number (``"-5"`` typed as a description) is text and is neutralised.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

#: What a text cell may not begin with (OWASP, CSV Injection): formula starts, tab, carriage return.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe_cell(value: Any) -> Any:
    """One cell as it is written: numbers in fixed point, untouched; text starting a formula quoted.

    Args:
        value: ``None`` (an empty cell), a ``bool``, an ``int``, a ``Decimal`` (any sign, any
            places), or anything else, which is written as its ``str()``.

    Returns:
        ``""`` for ``None``; a ``Decimal`` as fixed-point text; an ``int`` as it is; text that
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
