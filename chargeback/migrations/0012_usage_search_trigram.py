"""The admin's usage search by a fragment of the service, model, feature or references: a trigram index.

pg_trgm is created by wallets 0012 (one place, so no migration drops it under the other's index).
Built CONCURRENTLY, so usage keeps flowing in while it is built (hence a non-atomic migration).
"""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('chargeback', '0011_allocation_pool_per_currency'),
        ('wallets', '0012_ledger_search_trigram'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='usagerecord',
            index=django.contrib.postgres.indexes.GinIndex(django.contrib.postgres.indexes.OpClass(django.db.models.functions.text.Upper(django.db.models.functions.text.Concat('service_name', models.Value(' '), 'model', models.Value(' '), 'feature_key', models.Value(' '), 'external_reference', models.Value(' '), 'idempotency_key', models.Value(' '), 'resource_id')), name='gin_trgm_ops'), name='usage_search_trgm'),
        ),
    ]
