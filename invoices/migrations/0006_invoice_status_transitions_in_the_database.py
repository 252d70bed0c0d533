"""The database refuses invoice status moves that ``Invoice.TRANSITIONS`` does not allow.

A table ``invoices_invoice_transition (from_status, to_status, by_credit_note)`` holds the allowed
moves, written here as a literal (a migration imports no live code); a ``BEFORE UPDATE OF status``
trigger on ``invoices_invoice`` refuses any other move (SQLSTATE 23514, ``check_violation``), so
``QuerySet.update()`` and raw SQL cannot skip the lifecycle. The moves of
``Invoice.CREDIT_NOTE_ONLY`` (``by_credit_note``) pass only when the invoice has a credit note and
``credited_total = total``. ``tests/invoices/test_status_trigger.py`` proves the table equal to
the model's ``TRANSITIONS`` and ``CREDIT_NOTE_ONLY``.

The SQL is in ``0006_status_transitions.sql`` and its ``.reverse.sql``, beside this file.
"""

from pathlib import Path

from django.db import migrations


def _sql(name: str) -> list[str]:
    # A list of one item: RunSQL executes it as written (a plain string it would split with sqlparse).
    return [(Path(__file__).resolve().parent / name).read_text(encoding="utf-8")]


class Migration(migrations.Migration):

    dependencies = [("invoices", "0005_invoice_team_points_at_teams")]

    operations = [
        migrations.RunSQL(_sql("0006_status_transitions.sql"), _sql("0006_status_transitions.reverse.sql")),
    ]
