"""Bulk writes by ``COPY``: the renewal writes thousands of periods, invoices and lines per batch.

Django's ``bulk_create`` prepares every value of every row through the fields (and, on PostgreSQL,
dumps each column as a text array for ``UNNEST``); for the renewal that was most of the time.
:func:`rows_copy` sends the rows with one ``COPY … FROM STDIN`` instead, after taking their ids
from the table's sequence, so the caller knows each row's primary key without ``RETURNING``.

Every concrete column of the model is written: a column the caller leaves out gets the field's
default (or ``now`` for ``auto_now``/``auto_now_add``), prepared once per call, so a column added
to the model later with a default keeps working. Values given are sent as they are: Decimals,
dates, aware datetimes, text, ids; ``JSONField`` values are dumped to JSON text. The model's
``save()`` and its queryset guards do not run (the database's constraints and triggers do): callers
write rows that are new, such as draft invoices and their lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from django.db import connection, models
from django.utils import timezone


def ids_take(model: type[models.Model], count: int) -> list[int]:
    """``count`` fresh primary keys from ``model``'s identity sequence."""
    if count <= 0:
        return []
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, %s)", [count])
        return [row[0] for row in cursor.fetchall()]


def rows_copy(model: type[models.Model], rows: Sequence[Mapping]) -> None:
    """Write ``rows`` (``{attname: value}``, each with its ``id``) into ``model``'s table with one COPY."""
    if not rows:
        return
    now = timezone.now()
    fields = [f for f in model._meta.concrete_fields]
    defaults = {}
    for f in fields:
        if f.attname == "id":
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            defaults[f.attname] = now
        elif f.has_default():
            value = f.get_default()
            defaults[f.attname] = json.dumps(value) if isinstance(f, models.JSONField) else value
        elif f.null:
            defaults[f.attname] = None
        elif f.empty_strings_allowed and f.blank:
            defaults[f.attname] = ""
    json_columns = {f.attname for f in fields if isinstance(f, models.JSONField)}
    columns = [f.attname if not f.column else f.column for f in fields]
    attnames = [f.attname for f in fields]
    table = model._meta.db_table
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f'COPY {table} ({", ".join(columns)}) FROM STDIN') as copy:
            for row in rows:
                values = []
                for name in attnames:
                    if name in row:
                        value = row[name]
                        if name in json_columns and value is not None:
                            value = json.dumps(value)
                    else:
                        value = defaults[name]
                    values.append(value)
                copy.write_row(values)
