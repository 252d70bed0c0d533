"""``Invoice.team`` points at ``teams.Team``, in the migration state only (the same table and rows)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("invoices", "0004_issued_invoices_immutable_on_postgresql"),
        ("teams", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='invoice',
                    name='team',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='invoices', to='teams.team'),
                ),
            ],
            database_operations=[],
        ),
    ]
