"""The FOCUS import refuses a NUL in a cell with a clear error naming the file and its line; nothing is written.

(The whole file is refused as not being text CSV, before its cells are read: the error names the
line, not the column.)"""

from __future__ import annotations

import pytest

from chargeback.focus.results import FocusImportError
from chargeback.models import UsageRecord
from chargeback.services.focus_import import focus_import
from tests.chargeback.test_focus_import import HEADER, _row, _write_csv

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("column", "override"), [
    ("ServiceName", {"service": "Amazon\x00EC2"}),
    ("SubAccountName", {"sub_account": "Atlas\x00Orion"}),
    ("Tags", {"tags": '{"business_unit": "check\x00out"}'}),
])
def test_focus_import_nul_in_a_cell_names_row_and_column_and_writes_nothing(tmp_path, column, override):
    # Given a file whose second row holds a NUL in one text cell
    path = _write_csv(tmp_path / "nul.csv", HEADER, [_row("1"), _row("2", **override)])

    # When it is imported
    with pytest.raises(FocusImportError) as caught:
        focus_import(path=path)

    # Then the error says which line holds the NUL, and nothing is written
    error = caught.value
    assert (error.file, error.line) == (str(path), 3), str(error)
    assert "NUL" in str(error) and "line 3" in str(error)
    assert not UsageRecord.objects.exists()
