"""The admin's ledger search by a fragment of the description, reference or key: pg_trgm and a trigram index.

``pg_trgm`` ships with PostgreSQL (contrib) and is a trusted extension (PostgreSQL 13+): the
database's owner may create it without superuser rights. The index is built CONCURRENTLY, so a
large ledger keeps taking charges while it is built (hence a non-atomic migration).
"""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('wallets', '0011_usage_event_charge_function'),
    ]

    operations = [
        TrigramExtension(),
        AddIndexConcurrently(
            model_name='ledgerentry',
            index=django.contrib.postgres.indexes.GinIndex(django.contrib.postgres.indexes.OpClass(django.db.models.functions.text.Upper(django.db.models.functions.text.Concat('description', models.Value(' '), 'reference_id', models.Value(' '), 'idempotency_key')), name='gin_trgm_ops'), name='ledger_search_trgm'),
        ),
    ]
