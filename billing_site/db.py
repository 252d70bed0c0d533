"""Database helpers that keep money exact on every supported database.

``MeteredSum`` is the aggregate for metered ``DecimalField``s (12 decimal places). PostgreSQL sums
``numeric`` exactly. SQLite stores decimals as REAL and ``SUM()`` adds floats, so a month of usage
comes back with float noise past the 12th decimal (``186.037925319540004``); and Django quantizes
plain columns on SQLite but not aggregates. On SQLite ``MeteredSum`` therefore adds whole quanta:
``SUM(CAST(ROUND(x * 10^12) AS INTEGER))`` is integer arithmetic (exact; an overflow is an error,
never a wrong answer), and the result is turned back into a ``Decimal`` with 12 places here.

Each stored value is exact on SQLite while it has at most 15 significant digits (under 1,000 with
all 12 decimals, under 10^15 in whole units); that is SQLite's storage limit, documented in the
README, and the reason production runs on PostgreSQL.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from billing_site.money import METERED_DECIMAL_PLACES, METERED_MAX_DIGITS, METERED_QUANTUM

_QUANTA_PER_UNIT = 10**METERED_DECIMAL_PLACES


class _MeteredSumField(models.DecimalField):
    """The output of :class:`MeteredSum`: a metered Decimal with 12 places, read by one converter.

    Django picks converters by ``get_internal_type()``: for ``DecimalField`` SQLite reads every
    aggregate through a 15-significant-digit float (which would round the integer of quanta), and
    for ``*IntegerField`` every backend truncates to ``int``. Under a name no backend knows, neither
    runs, and :meth:`from_db_value` reads the value on every database. The field is never a column.
    """

    def __init__(self):
        super().__init__(max_digits=METERED_MAX_DIGITS, decimal_places=METERED_DECIMAL_PLACES)

    def get_internal_type(self) -> str:
        return "MeteredSumField"

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        if connection.vendor == "sqlite":
            # The SQL summed whole quanta (an int; a str when COALESCE met a Decimal parameter).
            return Decimal(int(value)).scaleb(-METERED_DECIMAL_PLACES)
        return Decimal(value).quantize(METERED_QUANTUM)


class MeteredSum(models.Sum):
    """``SUM`` of a metered amount (``Decimal``, 12 places), exact on PostgreSQL and on SQLite.

    Use it wherever usage cost, allocated cost or ledger amounts are added up in the database.
    Returns ``None`` for no rows, like ``Sum`` (wrap in ``Coalesce`` for a zero).
    """

    def __init__(self, expression, **extra):
        super().__init__(expression, output_field=_MeteredSumField(), **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        template = f"%(function)s(CAST(ROUND(%(expressions)s * {_QUANTA_PER_UNIT}) AS INTEGER))"
        return self.as_sql(compiler, connection, template=template, **extra_context)
