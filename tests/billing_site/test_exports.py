"""CSV exports are safe to open in a spreadsheet: text that would start a formula is quoted, numbers stay numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from billing_site.exports import FORMULA_STARTS, csv_safe_cell, csv_writer


def written(row) -> list[str]:
    """``row`` as a spreadsheet reads it back from the CSV the safe writer writes."""
    out = io.StringIO()
    csv_writer(out).writerow(row)
    return next(csv.reader(io.StringIO(out.getvalue())))


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_text_cell_starting_a_formula_is_quoted(start):
    # Given text that a spreadsheet would run (or hide) because of its first character
    text = f'{start}HYPERLINK("http://evil.example/","x")'
    # When it is written / then it reads back as text, behind a single quote, otherwise whole
    assert written([text]) == ["'" + text]


def test_every_leading_character_of_owasps_list_is_covered():
    assert set(FORMULA_STARTS) == {"=", "+", "-", "@", "\t", "\r"}


@pytest.mark.parametrize("text", ["summaries", "a=b", "x-1", "", "'already quoted", "CN 2024-01"])
def test_plain_text_is_written_as_it_is(text):
    assert written([text]) == [text]


@pytest.mark.parametrize(("value", "cell"), [
    (Decimal("-12.50"), "-12.50"),
    (Decimal("-0.000000000001"), "-0.000000000001"),
    (Decimal("1E-12"), "0.000000000001"),
    (Decimal("100"), "100"),
    (-7, "-7"),
])
def test_numbers_are_numbers_a_negative_amount_is_not_quoted(value, cell):
    assert written([value]) == [cell]


def test_text_that_looks_like_a_negative_number_is_still_text():
    # A description typed as "-5" is text, not an amount the code wrote
    assert csv_safe_cell("-5") == "'-5"


def test_empty_and_boolean_cells():
    assert written([None, True, False]) == ["", "True", "False"]
