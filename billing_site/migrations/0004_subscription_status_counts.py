"""Subscriptions per plan and status, kept by a trigger (``subscriptions_statuscount``), for the stats.

``GET admin/billing/stats`` reads these few rows instead of counting every subscription; the SQL is
in ``0004_subscription_status_counts.sql`` (and its ``.reverse.sql``), so ``sqlmigrate`` shows it.
"""

from pathlib import Path

from django.db import migrations

HERE = Path(__file__).resolve().parent


class Migration(migrations.Migration):
    dependencies = [
        ("billing_site", "0003_groups_get_subscription_permissions"),
        ("subscriptions", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(
            (HERE / "0004_subscription_status_counts.sql").read_text(),
            (HERE / "0004_subscription_status_counts.reverse.sql").read_text(),
        ),
    ]
