"""Data migration: the finance group may see and retry jobs (and read Procrastinate's own job
admin); the auditor group may see them. A frozen copy of the grant, as migrations import no live
code (``teams.groups`` is the live definition); it only adds, so it is safe to run again."""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

FINANCE_EXTRA = (("procrastinate", "view_procrastinatejob"), ("procrastinate", "view_procrastinateevent"))


def grant(apps, schema_editor):
    using = schema_editor.connection.alias
    for label in ("jobs", "procrastinate"):
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=using, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    jobs = Permission.objects.using(using).filter(content_type__app_label="jobs")
    extra = Permission.objects.using(using).none()
    for app_label, codename in FINANCE_EXTRA:
        extra = extra | Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename)
    finance, _ = Group.objects.using(using).get_or_create(name="finance")
    finance.permissions.add(*jobs, *extra)
    auditor, _ = Group.objects.using(using).get_or_create(name="auditor")
    auditor.permissions.add(*jobs.filter(codename__startswith="view_"))


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_job_parent"),
        ("wallets", "0005_groups_get_invoice_lifecycle_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
