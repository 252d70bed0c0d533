"""A team's billing settings list the currencies it may also be billed in, besides its own."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("teams", "0002_tables_and_content_types"),
    ]

    operations = [
        migrations.AddField(
            model_name="billingsettings",
            name="extra_currencies",
            field=models.JSONField(
                blank=True, default=list,
                help_text='ISO 4217 codes the team may also be billed in, besides its own currency, e.g. ["EUR"].',
            ),
        ),
    ]
