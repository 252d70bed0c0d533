"""The team tables take the teams app's names, and the models' content types follow them.

``chargeback_team`` → ``teams_team`` and so on: ``ALTER TABLE … RENAME`` keeps every row, index,
constraint and foreign key (PostgreSQL references tables by oid; constraint and index names are
unchanged). The wallets' charge function names the billing settings table, so wallets 0009
recreates it with the new name.

The content types of the four models move from ``chargeback``/``wallets`` to ``teams`` with the
same ids, so their permissions (and the finance and auditor groups' grants of them), the admin log
and the audit trail keep pointing at the same rows: the groups keep exactly the rights they had.
"""

from django.db import migrations

#: (model, its app label before the move).
MOVED = (("team", "chargeback"), ("teammembership", "chargeback"), ("apikey", "chargeback"),
         ("billingsettings", "wallets"))


def _move_content_types(apps, schema_editor, *, forwards: bool) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    types = ContentType.objects.using(schema_editor.connection.alias)
    for model, old_label in MOVED:
        source, target = (old_label, "teams") if forwards else ("teams", old_label)
        moving = types.filter(app_label=source, model=model).first()
        if moving is None:
            continue  # never created (a database migrated without the contenttypes signals)
        stale = types.filter(app_label=target, model=model).first()
        if stale is not None:
            # Made by a migrate that ran between the two steps: hand its grants to the moving
            # type's permissions of the same codename, then drop it.
            for permission in Permission.objects.filter(content_type=stale):
                kept = Permission.objects.filter(content_type=moving, codename=permission.codename).first()
                if kept is not None:
                    kept.group_set.add(*permission.group_set.all())
                    kept.user_set.add(*permission.user_set.all())
            stale.delete()
        moving.app_label = target
        moving.save(update_fields=["app_label"])


def forwards(apps, schema_editor):
    _move_content_types(apps, schema_editor, forwards=True)


def backwards(apps, schema_editor):
    _move_content_types(apps, schema_editor, forwards=False)


class Migration(migrations.Migration):

    dependencies = [
        ("teams", "0001_initial"),
        ("chargeback", "0008_team_models_leave_chargeback"),
        ("wallets", "0008_team_models_move_to_teams"),
        ("invoices", "0005_invoice_team_points_at_teams"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AlterModelTable(name="team", table=None),
        migrations.AlterModelTable(name="teammembership", table=None),
        migrations.AlterModelTable(name="apikey", table=None),
        migrations.AlterModelTable(name="billingsettings", table=None),
        migrations.RunPython(forwards, backwards),
    ]
