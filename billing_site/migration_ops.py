"""Migration operations for rules only PostgreSQL can hold exactly.

PostgreSQL's ``numeric`` is exact, so CHECKs on sums of money (``total = subtotal + tax``) and
triggers (append-only ledgers) belong there. SQLite stores decimals as floats, where such equalities
fail on honest data (0.1 + 0.2 ≠ 0.3); there the services check the same rules in ``Decimal``.
"""

from __future__ import annotations

from django.db import migrations


def _on_postgresql(sql: str):
    def operation(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            # params=None: the SQL may hold literal % signs that are not placeholders.
            schema_editor.execute(sql, params=None)

    return operation


def RunSQLOnPostgreSQL(sql: str, reverse_sql: str) -> migrations.RunPython:  # noqa: N802 - an operation
    """A ``RunSQL`` that runs on PostgreSQL and is a no-op on every other database, both ways."""
    return migrations.RunPython(_on_postgresql(sql), _on_postgresql(reverse_sql), elidable=False)
