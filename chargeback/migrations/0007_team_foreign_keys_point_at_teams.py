"""The foreign keys to ``Team`` point at ``teams.Team``, in the migration state only.

The database's foreign keys already reference the team table, which is the same table; nothing
is written. The models leave chargeback's state in 0008.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("chargeback", "0006_usage_user_index_only_where_a_user_is_set"),
        ("teams", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='allocationrun',
                    name='team',
                    field=models.ForeignKey(blank=True, help_text='Set when the run was asked for one team (the whole period is still allocated).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='teams.team'),
                ),
                migrations.AlterField(
                    model_name='usagerecord',
                    name='team',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='usage_records', to='teams.team'),
                ),
                migrations.AlterField(
                    model_name='allocationrule',
                    name='source_team',
                    field=models.ForeignKey(blank=True, help_text="With source 'team': whose costs the rule takes.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='source_of_allocation_rules', to='teams.team'),
                ),
                migrations.AlterField(
                    model_name='allocatedcost',
                    name='team',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='allocated_costs', to='teams.team'),
                ),
                migrations.AlterField(
                    model_name='price',
                    name='team',
                    field=models.ForeignKey(blank=True, help_text="Set for a team's override; empty for the global catalog price.", null=True, on_delete=django.db.models.deletion.CASCADE, related_name='price_overrides', to='teams.team'),
                ),
                migrations.AlterField(
                    model_name='allocationtarget',
                    name='team',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='teams.team'),
                ),
                migrations.AlterField(
                    model_name='allocationrule',
                    name='scope_team',
                    field=models.ForeignKey(blank=True, help_text='The team that owns the rule (its members may read it); empty for a finance-wide rule.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='owned_allocation_rules', to='teams.team'),
                ),
            ],
            database_operations=[],
        ),
    ]
