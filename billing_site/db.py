"""Database helpers that keep money exact on every supported database.

``MeteredSum`` is the aggregate for metered ``DecimalField``s (12 decimal places). PostgreSQL sums
``numeric`` exactly. SQLite stores decimals as REAL and ``SUM()`` adds floats, so a month of usage
comes back with float noise past the 12th decimal (``186.037925319540004``); and Django quantizes
plain columns on SQLite but not aggregates. On SQLite ``MeteredSum`` therefore adds integers, in
two parts so that neither can overflow in practice: the whole units (``CAST(x AS INTEGER)``, up to
9.2 × 10^18 in a group) and the fractions in quanta of 10^-12 (each below 10^12 in magnitude, so
a group may hold 9 million rows). Integer sums are exact, and an overflow is an error, never a
wrong answer. The two sums are put back together into a ``Decimal`` with 12 places here.

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
            # "<whole units>:<quanta>" from MeteredSum.as_sqlite; a plain number when a COALESCE
            # fell back to its Decimal parameter.
            whole, _, quanta = str(value).partition(":")
            if not quanta:
                return Decimal(whole).quantize(METERED_QUANTUM)
            return Decimal(int(whole)) + Decimal(int(quanta)).scaleb(-METERED_DECIMAL_PLACES)
        return Decimal(value).quantize(METERED_QUANTUM)


class MeteredSum(models.Sum):
    """``SUM`` of a metered amount (``Decimal``, 12 places), exact on PostgreSQL and on SQLite.

    Use it wherever usage cost, allocated cost or ledger amounts are added up in the database.
    Returns ``None`` for no rows, like ``Sum`` (wrap in ``Coalesce`` for a zero).
    """

    def __init__(self, expression, **extra):
        if extra.get("filter") is not None or extra.get("distinct"):
            raise TypeError("MeteredSum takes no filter or distinct: filter the queryset instead")
        super().__init__(expression, output_field=_MeteredSumField(), **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        value_sql, value_params = compiler.compile(self.get_source_expressions()[0])
        uses = 0

        def value() -> str:
            nonlocal uses
            uses += 1
            return f"({value_sql})"

        def whole() -> str:  # truncates toward zero: -1.25 → -1, leaving the fraction -0.25
            return f"CAST({value()} AS INTEGER)"

        # SQLite keeps 15 significant digits; the float under 10000000.123456 is 10000000.1234559994…,
        # so the fraction is rounded to the places actually stored (as Django's column converter
        # reads values through 15 digits), then counted in quanta of 10^-12.
        places = f"MIN({METERED_DECIMAL_PLACES}, MAX(0, 15 - LENGTH(CAST(ABS({whole()}) AS TEXT))))"
        fraction = f"ROUND({value()} - {whole()}, {places})"
        quanta = f"CAST(ROUND({fraction} * {_QUANTA_PER_UNIT}) AS INTEGER)"
        sql = f"(SUM({whole()}) || ':' || SUM({quanta}))"
        return sql, tuple(value_params) * uses
