"""The idempotency records' table takes the shared app's name, and its content type follows.

``wallets_idempotencyrecord`` → ``billing_site_idempotencyrecord`` by ``ALTER TABLE … RENAME``:
rows, the unique constraint and the index stay. The wallets' charge function names the table, so
wallets 0009 recreates it with the new name. The content type moves with the same id, so its
permissions and the groups' grants of them stay as they were.
"""

from django.db import migrations


def _move_content_type(apps, schema_editor, *, source: str, target: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    types = ContentType.objects.using(schema_editor.connection.alias)
    moving = types.filter(app_label=source, model="idempotencyrecord").first()
    if moving is None:
        return
    types.filter(app_label=target, model="idempotencyrecord").delete()  # an empty one made in between
    moving.app_label = target
    moving.save(update_fields=["app_label"])


def forwards(apps, schema_editor):
    _move_content_type(apps, schema_editor, source="wallets", target="billing_site")


def backwards(apps, schema_editor):
    _move_content_type(apps, schema_editor, source="billing_site", target="wallets")


class Migration(migrations.Migration):

    dependencies = [
        ("billing_site", "0001_initial"),
        ("wallets", "0008_team_models_move_to_teams"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelTable(name="idempotencyrecord", table=None),
        migrations.RunPython(forwards, backwards),
    ]
