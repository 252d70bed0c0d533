"""The ``finance`` group gets every permission of the ``subscriptions`` app (plans, subscriptions,
billed periods, prorations); ``auditor`` their ``view_*`` permissions.

Django only (a migration imports no live code): the permissions are created first, as Django makes
them only after ``migrate`` ends. Only ever adds to the groups; the reverse leaves them.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations


def grant(apps, schema_editor):
    using = schema_editor.connection.alias
    create_permissions(global_apps.get_app_config("subscriptions"), verbosity=0, using=using, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    own = Permission.objects.using(using).filter(content_type__app_label="subscriptions")
    finance, _ = Group.objects.using(using).get_or_create(name="finance")
    finance.permissions.add(*own)
    auditor, _ = Group.objects.using(using).get_or_create(name="auditor")
    auditor.permissions.add(*own.filter(codename__startswith="view_"))


class Migration(migrations.Migration):
    dependencies = [
        ("billing_site", "0002_idempotencyrecord_table"),
        ("subscriptions", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
