"""Data migration: give the finance and auditor groups the permissions of the invoice lifecycle.

Invoices migration 0003 added ``invoices.issue``, ``invoices.mark_paid``,
``invoices.issue_credit_note`` and the credit note models after the groups were made (0004 here);
``billing_groups_sync`` creates those permissions and grants them, as it grants any later one.
"""

from django.db import migrations

from wallets.migrations._billing_groups import billing_groups_sync


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0004_finance_and_auditor_groups"),
        ("invoices", "0004_issued_invoices_immutable_on_postgresql"),
    ]

    operations = [migrations.RunPython(billing_groups_sync, migrations.RunPython.noop)]
