"""Finance gets every permission of the webhooks models; auditors view them.

Self-contained (imports only Django), as migrations must be; the live definition of the groups is
``teams.groups`` (``BILLING_APPS`` includes ``webhooks``). Only adds, so it is safe to run again.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant(apps, schema_editor):
    using = schema_editor.connection.alias
    create_permissions(global_apps.get_app_config("webhooks"), verbosity=0, using=using, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    webhooks = Permission.objects.using(using).filter(content_type__app_label="webhooks")
    finance, _ = Group.objects.using(using).get_or_create(name="finance")
    finance.permissions.add(*webhooks)
    auditor, _ = Group.objects.using(using).get_or_create(name="auditor")
    auditor.permissions.add(*webhooks.filter(codename__startswith="view_"))


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
