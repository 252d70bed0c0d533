"""What a FOCUS import reports: its result and per-period totals, and the errors for a bad file or row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from chargeback.errors import ChargebackError

#: How many skipped rows the result keeps in ``skipped`` (all are counted in ``rows_skipped``).
MAX_REPORTED_SKIPS = 1000


class FocusImportError(ChargebackError):
    """A FOCUS file that cannot be imported: unreadable, a missing required column, or a bad value.

    ``file``, ``row`` (1-based data row, the header not counted; ``None`` for the whole file or its
    header), ``line`` (physical line in the file) and ``column`` say where; the message names them,
    and ``param`` is the column. Nothing of the file is written when it is raised. HTTP 400,
    ``invalid_focus_file``.
    """

    code = "invalid_focus_file"
    http_status = 400

    def __init__(self, message: str, *, file: str, row: int | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        self.file, self.row, self.line, self.column = file, row, line, column
        self.reason = message
        super().__init__(_locate(file, row, line, column) + message, param=column)


@dataclass(frozen=True)
class FocusRowError:
    """One bad row: its 1-based data row number, the column at fault and what is wrong."""

    row: int
    column: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return _locate(None, self.row, self.line, self.column) + self.message


@dataclass
class PeriodTotal:
    """The good rows of one billing period and currency: how many, and their ``BilledCost``."""

    rows: int = 0
    billed_cost: Decimal = Decimal(0)
    unallocated_rows: int = 0
    unallocated_cost: Decimal = Decimal(0)


@dataclass
class UnmappedValue:
    """Rows naming a team key that matched no team: how many, and Σ BilledCost per currency."""

    rows: int = 0
    cost: dict[str, Decimal] = field(default_factory=dict)

    def add(self, currency: str, cost: Decimal) -> None:
        self.rows += 1
        self.cost[currency] = self.cost.get(currency, Decimal(0)) + cost


@dataclass
class FocusImportResult:
    """What an import did.

    ``rows_read = rows_imported + rows_duplicate + rows_skipped``. ``periods`` counts every good row
    of the file (new or imported before), keyed by ``(BillingPeriodStart, BillingCurrency)``; amounts
    are exact Decimals at metered precision. ``skipped`` keeps the first ``MAX_REPORTED_SKIPS`` bad
    rows; ``new_teams`` the names of the teams created, in the order first seen.
    """

    file: str
    rows_read: int = 0
    rows_imported: int = 0
    rows_duplicate: int = 0
    rows_skipped: int = 0
    rows_unallocated: int = 0
    skipped: list[FocusRowError] = field(default_factory=list)
    new_teams: list[str] = field(default_factory=list)
    periods: dict[tuple[dt.date, str], PeriodTotal] = field(default_factory=dict)
    #: Team keys (tag values, sub-account names) that named no team and were left unallocated:
    #: key → ``UnmappedValue`` (rows and Σ BilledCost per currency).
    unmapped: dict[str, UnmappedValue] = field(default_factory=dict)
    #: Of those, the ones that resemble a team's name (same letters and digits, other case, spacing or
    #: punctuation): key → the team's name. They are never made a second team.
    unmapped_resembles: dict[str, str] = field(default_factory=dict)
    #: Σ BilledCost of the rows imported by this run, per currency.
    imported_cost: dict[str, Decimal] = field(default_factory=dict)
    #: The FOCUS version the columns say (``"1.0"`` … ``"1.4"``) and the format read (``csv``,
    #: ``csv.gz``, ``parquet``).
    focus_version: str = ""
    file_format: str = ""
    seconds: float = 0.0
    #: Wall seconds per phase: ``read`` (parse the file and stage its rows), ``teams``, ``insert``,
    #: ``commit``; for benchmarks.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def teams_created(self) -> int:
        return len(self.new_teams)

    @property
    def currencies(self) -> list[str]:
        return sorted({currency for _, currency in self.periods})

    @property
    def billed_cost(self) -> dict[dt.date, Decimal]:
        """Σ ``BilledCost`` of the file's good rows per ``BillingPeriodStart``, in its one currency.

        Raises:
            ValueError: the file bills in more than one currency (use ``periods``).
        """
        if len(self.currencies) > 1:
            raise ValueError(f"{self.file} bills in several currencies ({', '.join(self.currencies)}): "
                             "sums per billing period are in `periods`, per currency")
        return {start: total.billed_cost for (start, _), total in sorted(self.periods.items())}

    @property
    def duplicate_cost(self) -> dict[str, Decimal]:
        """Σ BilledCost of the rows left out as duplicates (imported before, or twice in the file),
        per currency; currencies without duplicates are left out."""
        totals: dict[str, Decimal] = {}
        for (_, currency), total in self.periods.items():
            totals[currency] = totals.get(currency, Decimal(0)) + total.billed_cost
        if not self.rows_duplicate:
            return {}
        return {currency: total - self.imported_cost.get(currency, Decimal(0))
                for currency, total in sorted(totals.items())}

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def _locate(file: str | None, row: int | None, line: int | None, column: str | None) -> str:
    parts = [file] if file else []
    if row is not None:
        parts.append(f"row {row}" + (f" (line {line})" if line is not None else ""))
    elif line is not None:
        parts.append(f"line {line}")
    if column:
        parts.append(f"column {column}")
    return ", ".join(parts) + ": " if parts else ""
