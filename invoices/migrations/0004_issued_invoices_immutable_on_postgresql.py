"""Issued invoices and credit notes never change: triggers and exact CHECKs in PostgreSQL.

1. ``invoices_invoice``: once issued (``issued_at`` set in the stored row) an UPDATE may not change
   the amounts, number, dates, parties or snapshots, nor move the invoice back to ``draft``; an issued
   invoice is never deleted. Status, payment, credit and PDF columns still move (the services
   check those moves).
2. ``invoices_invoiceline``: INSERT, UPDATE and DELETE of a line of an issued invoice are rejected.
3. ``invoices_creditnote`` / ``invoices_creditnoteline``: only the credit note's PDF columns may be
   updated; nothing is deleted.
4. Exact CHECKs: a credit note's ``total = subtotal + tax_amount``; an invoice's
   ``credited_total <= total`` once it has been credited.

The model and its querysets refuse the same changes; the triggers hold against any client (raw
SQL, psql, another service). They do not fire on TRUNCATE, which Django's test-database flush uses.

The SQL is in the ``.sql`` files beside this migration: ``0004_checks.sql`` (4.) and
``0004_triggers.sql`` (1.-3.), each with its ``.reverse.sql``.
"""

from pathlib import Path

from django.db import migrations


def _sql(name: str) -> list[str]:
    # A list of one item: RunSQL executes it as written (a plain string it would split with sqlparse).
    return [(Path(__file__).resolve().parent / name).read_text(encoding="utf-8")]


class Migration(migrations.Migration):

    dependencies = [("invoices", "0003_lifecycle_credit_notes_numbering")]

    operations = [
        migrations.RunSQL(_sql("0004_checks.sql"), _sql("0004_checks.reverse.sql")),
        migrations.RunSQL(_sql("0004_triggers.sql"), _sql("0004_triggers.reverse.sql")),
    ]
