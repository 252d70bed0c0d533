"""CSV exports are safe to open in a spreadsheet: text that would start a formula is quoted, numbers stay numbers."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from billing_site.exports import FORMULA_STARTS, csv_safe_cell, csv_writer, xlsx_safe_cell


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


# --- XLSX cells: the same neutraliser, exact amounts -------------------------------------------------

@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_xlsx_text_cell_starting_a_formula_is_quoted_like_the_csv(start):
    text = f"{start}SUM(A1:A9)"
    assert xlsx_safe_cell(text) == csv_safe_cell(text) == "'" + text


@pytest.mark.parametrize(("value", "cell"), [
    (Decimal("-12.500000000000"), "-12.500000000000"),
    (Decimal("1E-12"), "0.000000000001"),
    (Decimal("123456789012345678.123456789012"), "123456789012345678.123456789012"),
])
def test_xlsx_amount_is_its_exact_decimal_text_never_a_float(value, cell):
    assert xlsx_safe_cell(value) == cell


def test_xlsx_times_are_utc_without_a_zone_dates_and_numbers_native():
    paris = dt.timezone(dt.timedelta(hours=2))
    assert xlsx_safe_cell(dt.datetime(2026, 10, 1, 2, 30, tzinfo=paris)) == dt.datetime(2026, 10, 1, 0, 30)
    assert xlsx_safe_cell(dt.date(2026, 10, 1)) == dt.date(2026, 10, 1)
    assert [xlsx_safe_cell(v) for v in (None, 7, True)] == [None, 7, True]


def test_csv_times_are_utc_iso_8601():
    paris = dt.timezone(dt.timedelta(hours=2))
    assert written([dt.datetime(2026, 10, 1, 2, 30, tzinfo=paris), dt.date(2026, 10, 1)]) == [
        "2026-10-01T00:30:00+00:00", "2026-10-01"]


# --- Export resources: columns by django-import-export, rows streamed by the one writer ---------------

@pytest.mark.django_db
def test_a_resource_with_a_dehydrate_method_reads_instances_and_its_cells_are_still_neutralised():
    from import_export.fields import Field

    from billing_site.exports import ExportResource, export_csv_response
    from teams.models import Team
    from tests.factories import TeamFactory

    class TeamShout(ExportResource):
        shout = Field(column_name="shout")

        class Meta:
            model = Team
            fields = ("slug", "shout", "currency")
            export_order = fields

        def dehydrate_shout(self, team):
            return f"={team.name.upper()}"

    # Given a team, and a column computed by a method (the rows are model instances then)
    TeamFactory(name="Search", slug="search")
    header, rows = TeamShout().export_rows(Team.objects.all())
    # When they are written as CSV
    response = export_csv_response(header, rows, filename="teams")
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    # Then the computed cell that starts a formula is text
    assert lines == [["slug", "shout", "currency"], ["search", "'=SEARCH", "USD"]]
    assert response["Content-Disposition"] == 'attachment; filename="teams.csv"'


def test_xlsx_text_with_control_characters_is_written_not_refused():
    # A description sent through the API may hold a control character XML cannot carry
    assert xlsx_safe_cell("bell\x07 and nul\x00") == "bell\ufffd and nul\ufffd"
    assert xlsx_safe_cell("two\nlines\tand a tab") == "two\nlines\tand a tab"


def test_xlsx_workbook_reads_back_in_openpyxl_with_dates_numbers_and_text():
    from openpyxl import load_workbook
    from openpyxl.utils.escape import unescape

    from billing_site.exports import xlsx_write

    # Given rows of every kind of value, text that XML must escape and a formula start
    rows = [[1, True, Decimal("-0.000000000001"), dt.datetime(2026, 10, 31, 23, 59, 59, tzinfo=dt.UTC),
             dt.date(2026, 10, 1), 'a < b & "c"\r\n', "=1+2", None, "  spaced  "]]
    out = io.BytesIO()
    # When they are written
    assert xlsx_write(out, ["n", "b", "amount", "at", "day", "text", "formula", "none", "pad"], rows,
                      sheet="usage: Q4/2026") == 1
    # Then a spreadsheet reads them back as they were, dates as dates and the amount exact
    # (a carriage return is written as Excel's escape "_x000D_", which Excel decodes as it reads;
    # openpyxl leaves an inline string's escapes as written, so the test decodes them as Excel does)
    book = load_workbook(io.BytesIO(out.getvalue()))
    sheet = book.active
    assert sheet.title == "usage- Q4-2026"
    assert [c.value for c in sheet[1]] == ["n", "b", "amount", "at", "day", "text", "formula", "none", "pad"]
    assert sheet["A1"].font.b
    cells = [unescape(c.value) if isinstance(c.value, str) else c.value for c in sheet[2]]
    assert cells == [1, True, "-0.000000000001", dt.datetime(2026, 10, 31, 23, 59, 59),
                     dt.datetime(2026, 10, 1), 'a < b & "c"\r\n', "'=1+2", None, "  spaced  "]
    assert sheet["E2"].is_date and sheet["F2"].data_type == "s"
