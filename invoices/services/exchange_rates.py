"""Exchange rates: loading the ECB's euro reference rates into ``ExchangeRate``.

The European Central Bank publishes, each TARGET business day, how many units of some 30
currencies one euro buys. Its files (https://www.ecb.europa.eu/stats/eurofxref/):

* ``eurofxref-hist.csv`` (every day since 1999): a header ``Date,USD,JPY,BGN,…`` (often with a
  trailing comma), then one line per day, newest first: ``2024-09-30,1.1196,160.95,…``; a
  currency not quoted that day is ``N/A`` (or empty);
* ``eurofxref.csv`` (the day's rates): the same columns, with spaces after the commas and the date
  written ``30 September 2024``;
* either one zipped (``eurofxref-hist.zip``), the CSV inside.

Each quote becomes a rate ``EUR → currency`` (``source = "ECB"``); the inverse and the cross rates
between two other currencies are derived when a rate is used (``invoices.selectors.exchange_rate_find``),
never stored. No network is used: the file is given by path.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.db import transaction

from billing_site.money import MoneyError, currency_exponent

from ..errors import InvalidRatesFile
from ..models import ExchangeRate

#: The ``source`` of the rates this loader writes.
ECB_SOURCE = "ECB"
#: Values the ECB writes for a currency it did not quote that day.
_NOT_QUOTED = {"", "N/A", "NA", "-"}


@dataclass(frozen=True)
class RatesLoaded:
    """What :func:`exchange_rates_load_ecb` did: ``rates`` written (new or changed), ``days`` and
    ``currencies`` read, the first and last date of the file."""

    rates: int
    days: int
    currencies: tuple[str, ...]
    first: dt.date | None
    last: dt.date | None


def _text_of(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidRatesFile(f"cannot read {path}: {exc.strerror or exc}", param="file") from None
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise InvalidRatesFile(f"{path.name}: the zip holds {len(names)} CSV files, not one", param="file")
            raw = archive.read(names[0])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRatesFile(f"{path.name} is not UTF-8 text (the ECB's CSV is)", param="file") from None


def _date(text: str, line: int) -> dt.date:
    for fmt in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise InvalidRatesFile(f"line {line}, column Date: {text!r} is not a date (YYYY-MM-DD)", param="file")


def ecb_rates_parse(text: str, *, name: str = "the file") -> list[tuple[dt.date, str, Decimal]]:
    """The quotes of an ECB reference-rate CSV: ``[(date, currency, units per EUR)]`` in file order.

    Raises:
        InvalidRatesFile: no ``Date`` first column, a column that is not an ISO 4217 code, a bad
            date, a rate that is not a positive decimal (line and column named), a date twice.
    """
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    if not rows or not rows[0] or rows[0][0].strip() != "Date":
        raise InvalidRatesFile(f"{name}: the first line must be the ECB header 'Date,USD,JPY,…'", param="file")
    header = [cell.strip() for cell in rows[0]]
    for code in header[1:]:
        if code:
            try:
                currency_exponent(code)
            except MoneyError:
                raise InvalidRatesFile(f"{name}: column {code!r} of the header is not a currency code",
                                       param="file") from None
    quotes: list[tuple[dt.date, str, Decimal]] = []
    seen: set[dt.date] = set()
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        day = _date(row[0].strip(), number)
        if day in seen:
            raise InvalidRatesFile(f"{name}: line {number}: {day} appears twice", param="file")
        seen.add(day)
        for column, cell in zip(header[1:], row[1:]):
            value = cell.strip()
            if not column:
                if value:
                    raise InvalidRatesFile(f"{name}: line {number} has a value under no currency: {value!r}",
                                           param="file")
                continue
            if value in _NOT_QUOTED:
                continue
            try:
                rate = Decimal(value)
            except InvalidOperation:
                rate = None
            if rate is None or not rate.is_finite() or rate <= 0:
                raise InvalidRatesFile(f"{name}: line {number}, column {column}: {value!r} is not a positive rate",
                                       param="file")
            quotes.append((day, column, rate))
    return quotes


def exchange_rates_load_ecb(*, path: str | Path) -> RatesLoaded:
    """Load an ECB reference-rate file (``eurofxref-hist.csv``, ``eurofxref.csv`` or either zipped).

    Args:
        path: the file on disk (no network is used).

    Returns:
        :class:`RatesLoaded`. Every quote becomes ``ExchangeRate(date, "EUR", currency, rate,
        source="ECB")``; a rate already stored for that date and pair is replaced when the file
        says otherwise (the ECB corrects rarely, but a reload must agree with the file), and
        loading the same file twice writes nothing new.

    Raises:
        InvalidRatesFile: the file cannot be read; nothing is loaded (one transaction).
    """
    path = Path(path)
    quotes = ecb_rates_parse(_text_of(path), name=path.name)
    stored = {}
    if quotes:
        days = {day for day, _code, _rate in quotes}
        stored = {
            (day, code): rate for day, code, rate in ExchangeRate.objects.filter(
                source=ECB_SOURCE, from_currency="EUR", date__gte=min(days), date__lte=max(days),
            ).values_list("date", "to_currency", "rate")
        }
    changed = [
        ExchangeRate(date=day, from_currency="EUR", to_currency=code, rate=rate, source=ECB_SOURCE)
        for day, code, rate in quotes if stored.get((day, code)) != rate and code != "EUR"
    ]
    with transaction.atomic(durable=True):
        ExchangeRate.objects.bulk_create(
            changed, batch_size=5000, update_conflicts=True,
            unique_fields=["date", "from_currency", "to_currency", "source"], update_fields=["rate"],
        )
    days = sorted({day for day, _code, _rate in quotes})
    return RatesLoaded(
        rates=len(changed), days=len(days), currencies=tuple(sorted({code for _d, code, _r in quotes})),
        first=days[0] if days else None, last=days[-1] if days else None,
    )
