"""Usage records can be voided (kept, with a reason) and finance can record adjustments; a run lists the
teams whose usage it left out.

The new usage columns carry database defaults, so the FOCUS import's and the batch's ``COPY`` need
not name them; PostgreSQL adds a column with a constant default without rewriting the table.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("chargeback", "0008_team_models_leave_chargeback"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("void", "Void")], db_default="active", default="active", max_length=10
            ),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="void_reason",
            field=models.TextField(blank=True, db_default="", default="", help_text="Why finance voided the record."),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="voided_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="voided_by",
            field=models.ForeignKey(
                blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT,
                related_name="+", to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="usagerecord",
            name="source",
            field=models.CharField(
                choices=[("api", "API"), ("charge", "Wallet charge"), ("focus_import", "FOCUS import"),
                         ("adjustment", "Adjustment (finance)")],
                max_length=20,
            ),
        ),
        migrations.RemoveConstraint(model_name="usagerecord", name="usage_source_valid"),
        migrations.AddConstraint(
            model_name="usagerecord",
            constraint=models.CheckConstraint(
                condition=models.Q(("source__in", ["api", "charge", "focus_import", "adjustment"])),
                name="usage_source_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="usagerecord",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["active", "void"])), name="usage_status_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="usagerecord",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("status", "active"),
                    models.Q(("voided_at__isnull", False), models.Q(("void_reason", ""), _negated=True)),
                    _connector="OR",
                ),
                name="usage_void_has_reason",
            ),
        ),
        migrations.AddConstraint(
            model_name="usagerecord",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("source", "adjustment"), _negated=True), ("metadata__has_key", "reason"),
                    _connector="OR",
                ),
                name="usage_adjustment_has_reason",
            ),
        ),
        migrations.AddIndex(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(("status", "void")), fields=["billing_period_start"], name="usage_void_period"
            ),
        ),
        migrations.AddField(
            model_name="allocationrun",
            name="refused",
            field=models.JSONField(
                blank=True, default=list, help_text="Teams whose usage the run left out (not billed), and why."
            ),
        ),
    ]
