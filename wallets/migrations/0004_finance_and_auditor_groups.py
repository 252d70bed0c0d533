"""Data migration: the ``finance`` and ``auditor`` groups with their billing permissions.

The groups as they were then are frozen in ``_billing_groups.py`` beside this migration (Django only);
the live definition is ``teams.groups``.
Reversing leaves the groups in place: they may have members and hand-granted permissions.
"""

from django.db import migrations

from wallets.migrations._billing_groups import billing_groups_sync


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0003_wallet_admin_permissions"),
        ("chargeback", "0004_usage_team_index_covered_by_team_occurred"),
        ("invoices", "0002_exact_checks_on_postgresql"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunPython(billing_groups_sync, migrations.RunPython.noop)]
