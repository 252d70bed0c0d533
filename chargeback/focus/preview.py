"""What importing a FOCUS file would do, read with the importer's own parser: nothing is written.

The admin shows it between the upload of a file and its import.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from chargeback.focus.parsing import RowError, RowParser, detect_version
from chargeback.focus.reading import open_records, refuse_nul
from chargeback.focus.results import FocusImportError, FocusImportResult, FocusRowError
from chargeback.focus.teams import MappingIndex, TeamResolver
from teams.models import Team

#: Rows shown in the preview of an uploaded FOCUS file.
FOCUS_PREVIEW_ROWS = 10


@dataclass
class PreviewTeam:
    """One team key of the file (a ``team_tag`` value, or a ``SubAccountName`` with the fallback) and what
    the import would do with its rows: ``team`` (matched by mapping, slug or name) or ``None``
    (unmapped: left unallocated unless finance maps it, creates its team, or imports with
    ``create_teams``). ``resembles``: the team whose name differs only in case, spacing or punctuation."""

    key: str
    rows: int = 0
    cost: dict[str, Decimal] = field(default_factory=dict)
    source: str = "tag"  # "tag" (the team tag's value) or "sub_account_name" (the fallback)
    currency: str = ""  # BillingCurrency of its first row: a team created for it bills in it
    team: Team | None = None
    how: str = ""  # "mapping", "slug or name", or "" (unmapped)
    resembles: Team | None = None


def focus_file_preview(*, path: Path, team_tag: str, subaccount_fallback: bool, rows: int = FOCUS_PREVIEW_ROWS) -> dict:
    """What importing ``path`` would do, read with the importer's own parser and team matching; nothing is written.

    Returns ``{"rows": [{"row", "period", "service", "cost", "currency", "team", "error"}…]`` (the
    first ``rows`` data rows), ``"teams"``: ``[PreviewTeam…]`` over the whole file (mapped, matched and
    unmapped keys, by name), ``"unmapped"``: the unmapped ones, ``"unallocated"`` (rows naming no
    team at all), ``"bad"`` (rows with a bad value), ``"total"`` (data rows), ``"version"`` (FOCUS
    version the columns say) and ``"format"`` (``csv``, ``csv.gz``, ``parquet``).

    Raises ``FocusImportError`` for an unreadable file or a missing column.
    """
    name = path.name
    shown, keys, unallocated, bad, total = [], {}, 0, 0, 0
    mapping = MappingIndex.load()
    with open_records(path) as records:
        header = records.header
        parser = RowParser(header, file=name, team_tag=team_tag, subaccount_fallback=subaccount_fallback)
        parser.use_mapping(mapping)
        try:
            for values in records:
                if not values:
                    continue
                total += 1
                if records.nul is not None and records.nul.seen:
                    refuse_nul(values, header, file=name, row=total, line=records.line_num)
                try:
                    row = parser.parse(values, total)
                except RowError as exc:
                    bad += 1
                    if len(shown) < rows:
                        shown.append({"row": total, "error": str(FocusRowError(total, exc.column, exc.message))})
                    continue
                key = row.team_key
                if key is None:
                    unallocated += 1
                else:
                    entry = keys.get(key)
                    if entry is None:
                        tagged = row.tags.get(team_tag) if isinstance(row.tags, dict) else None
                        entry = keys[key] = PreviewTeam(
                            key=key, currency=row.currency,
                            source="tag" if tagged is not None and str(tagged).strip() == key else "sub_account_name")
                    entry.rows += 1
                    entry.cost[row.currency] = entry.cost.get(row.currency, Decimal(0)) + row.cost
                if len(shown) < rows:
                    shown.append({"row": total, "period": row.billing_period_start, "service": row.service_name,
                                  "provider": row.provider, "cost": row.cost, "currency": row.currency,
                                  "team": key})
        except (UnicodeDecodeError, csv.Error) as exc:
            raise FocusImportError(f"cannot read the file: {exc}", file=name,
                                   line=(records.line_num or 0) + 1) from None
    resolver = TeamResolver(FocusImportResult(file=name), create_teams=False)
    wanted = {}
    for entry in keys.values():
        team_id = resolver.resolve(entry.key, entry.currency)
        if team_id is not None:
            wanted[entry.key] = team_id
    teams = Team.objects.in_bulk(set(wanted.values()) | set())
    by_name = {t.name: t for t in Team.objects.filter(name__in=set(resolver.result.unmapped_resembles.values()))}
    for entry in keys.values():
        if entry.key in wanted:
            entry.team = teams[wanted[entry.key]]
            entry.how = "mapping" if entry.key.startswith("\x00") else "slug or name"
            if entry.how == "mapping":
                entry.key = f"(mapped) {entry.team.name}"
        entry.resembles = by_name.get(resolver.result.unmapped_resembles.get(entry.key, ""))
    listed = sorted(keys.values(), key=lambda e: e.key.lower())
    for row in shown:
        if row.get("team") in wanted:
            row["team"] = teams[wanted[row["team"]]].name
    return {"rows": shown, "teams": listed, "unmapped": [e for e in listed if e.team is None],
            "unallocated": unallocated, "bad": bad, "total": total,
            "version": detect_version(header), "format": records.file_format}
