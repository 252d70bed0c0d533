"""The ledger's rules, held by PostgreSQL against any client.

1. Append-only: a trigger rejects UPDATE and DELETE of ledger rows from any client (raw SQL, psql,
   another service). The model and its queryset already refuse edits, covering the admin. The
   trigger does not fire on TRUNCATE, which Django's test-database flush uses; TRUNCATE needs the
   table owner's rights, which the application role should not have in production.
2. Exact CHECKs on sums: ``balance_after = balance_before + amount`` and
   ``reserved_after = reserved_before + reserved_delta`` on every entry, and ``amount =
   captured_amount + released_amount`` on captured holds. PostgreSQL's ``numeric`` is exact.

The SQL is in the ``.sql`` files beside this migration: ``0002_checks.sql`` (2.) and
``0002_trigger.sql`` (1.), each with its ``.reverse.sql``.
"""

from pathlib import Path

from django.db import migrations


def _sql(name: str) -> list[str]:
    # A list of one item: RunSQL executes it as written (a plain string it would split with sqlparse).
    return [(Path(__file__).resolve().parent / name).read_text(encoding="utf-8")]


class Migration(migrations.Migration):

    dependencies = [("wallets", "0001_initial")]

    operations = [
        migrations.RunSQL(_sql("0002_checks.sql"), _sql("0002_checks.reverse.sql")),
        migrations.RunSQL(_sql("0002_trigger.sql"), _sql("0002_trigger.reverse.sql")),
    ]
