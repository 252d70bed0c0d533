"""``IdempotencyRecord`` joins the shared app, in the migration state only: its table and rows stay.

It was a wallets model; every app's API stores its idempotent responses in it. The state takes it
over on its old table (``db_table``); wallets 0008 drops it from wallets' state and
``0002_idempotencyrecord_table`` renames the table.
"""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("wallets", "0007_ledger_entry_wallet_index_covered_by_newest"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='IdempotencyRecord',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('scope', models.CharField(max_length=100)),
                        ('key', models.CharField(max_length=255)),
                        ('operation', models.CharField(max_length=50)),
                        ('fingerprint', models.CharField(max_length=64)),
                        ('result_type', models.CharField(blank=True, max_length=50)),
                        ('result_id', models.CharField(blank=True, max_length=100)),
                        ('response', models.JSONField(blank=True, default=dict)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ],
                    options={
                        'db_table': 'wallets_idempotencyrecord',
                        'indexes': [models.Index(fields=['created_at'], name='idempotency_created')],
                        'constraints': [models.UniqueConstraint(fields=('scope', 'key'), name='idempotency_unique_scope_key')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
