"""What importing a FOCUS file would do, read with the importer's own parser: nothing is written.

The admin shows it between the upload of a file and its import.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from django.db.models.functions import Lower

from chargeback.focus.parsing import RowError, RowParser
from chargeback.focus.reading import checked_lines, open_text, read_header
from chargeback.focus.results import FocusImportError, FocusRowError
from teams.models import Team

#: Rows shown in the preview of an uploaded FOCUS file.
FOCUS_PREVIEW_ROWS = 10


def focus_file_preview(*, path: Path, team_tag: str, subaccount_fallback: bool, rows: int = FOCUS_PREVIEW_ROWS) -> dict:
    """What importing ``path`` would do, read with the importer's own parser; nothing is written.

    Returns ``{"rows": [{"row", "period", "service", "cost", "currency", "team", "error"}…]`` (the
    first ``rows`` data rows), ``"teams"``: ``[(team key, rows, existing Team or None)…]`` over the
    whole file (``None``: the import creates the team), ``"unallocated"`` (rows without a team),
    ``"bad"`` (rows with a bad value) and ``"total"`` (data rows).
    Raises ``FocusImportError`` for an unreadable file or a missing column.
    """
    name = path.name
    shown, keys, unallocated, bad, total = [], Counter(), 0, 0, 0
    with open_text(path) as text:
        reader = csv.reader(checked_lines(text, name))
        parser = RowParser(read_header(reader, name), file=name, team_tag=team_tag,
                           subaccount_fallback=subaccount_fallback)
        try:
            for values in reader:
                if not values:
                    continue
                total += 1
                try:
                    row = parser.parse(values, total)
                except RowError as exc:
                    bad += 1
                    if len(shown) < rows:
                        shown.append({"row": total, "error": str(FocusRowError(total, exc.column, exc.message))})
                    continue
                if row.team_key is None:
                    unallocated += 1
                else:
                    keys[row.team_key] += 1
                if len(shown) < rows:
                    shown.append({"row": total, "period": row.billing_period_start, "service": row.service_name,
                                  "provider": row.provider, "cost": row.cost, "currency": row.currency,
                                  "team": row.team_key})
        except (UnicodeDecodeError, csv.Error) as exc:
            raise FocusImportError(f"cannot read the file: {exc}", file=name, line=reader.line_num + 1) from None
    existing = {}
    lowered = [key.lower() for key in keys]
    for team in Team.objects.annotate(lname=Lower("name")).filter(lname__in=lowered).order_by("-pk"):
        existing[team.lname] = team  # descending pk: the oldest team wins, as in the import
    teams = [(key, count, existing.get(key.lower())) for key, count in sorted(keys.items(), key=lambda kv: kv[0].lower())]
    return {"rows": shown, "teams": teams, "unallocated": unallocated, "bad": bad, "total": total}
