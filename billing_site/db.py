"""Database helpers that keep money exact.

``MeteredSum`` is the aggregate for metered ``DecimalField``s (12 decimal places). PostgreSQL sums
``numeric`` exactly; the result is read back as a ``Decimal`` quantized to the metered 12 places,
whatever scale the database gives the sum.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from billing_site.money import METERED_DECIMAL_PLACES, METERED_MAX_DIGITS, METERED_QUANTUM, MONEY_CONTEXT


class _MeteredSumField(models.DecimalField):
    """The output of :class:`MeteredSum`: a metered Decimal with 12 places. The field is never a column."""

    def __init__(self):
        super().__init__(max_digits=METERED_MAX_DIGITS, decimal_places=METERED_DECIMAL_PLACES)

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        # A sum of many rows may pass the 18 digits a column holds; the wide context reads it
        # exactly, and the caller that stores it checks the bound (money.check_within_bound).
        return Decimal(value).quantize(METERED_QUANTUM, context=MONEY_CONTEXT)


class MeteredSum(models.Sum):
    """``SUM`` of a metered amount (``Decimal``, 12 places), exact in PostgreSQL's ``numeric``.

    Use it wherever usage cost, allocated cost or ledger amounts are added up in the database.
    Returns ``None`` for no rows, like ``Sum`` (wrap in ``Coalesce`` for a zero).
    """

    def __init__(self, expression, **extra):
        if extra.get("filter") is not None or extra.get("distinct"):
            raise TypeError("MeteredSum takes no filter or distinct: filter the queryset instead")
        super().__init__(expression, output_field=_MeteredSumField(), **extra)
