"""Wallets' team foreign keys point at ``teams.Team``; ``BillingSettings`` and ``IdempotencyRecord`` leave.

State only: ``BillingSettings`` now lives in ``teams`` and ``IdempotencyRecord`` in ``billing_site``,
on the same tables with the same rows (renamed by teams 0002 and billing_site 0002).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("wallets", "0007_ledger_entry_wallet_index_covered_by_newest"),
        ("teams", "0001_initial"),
        ("billing_site", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='usageevent',
                    name='team',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='usage_events', to='teams.team'),
                ),
                migrations.AlterField(
                    model_name='wallet',
                    name='team',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='wallets', to='teams.team'),
                ),
                migrations.DeleteModel(name="BillingSettings"),
                migrations.DeleteModel(name="IdempotencyRecord"),
            ],
            database_operations=[],
        ),
    ]
