"""``ApiKey``, ``TeamMembership`` and ``Team`` leave chargeback's migration state (they live in teams).

State only: the tables and rows stay, now owned by ``teams`` (teams 0001, which renames them in 0002).
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("chargeback", "0007_team_foreign_keys_point_at_teams"),
        # Nothing may still point at chargeback.Team when it leaves the state.
        ("wallets", "0008_team_models_move_to_teams"),
        ("invoices", "0005_invoice_team_points_at_teams"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="ApiKey"),
                migrations.DeleteModel(name="TeamMembership"),
                migrations.DeleteModel(name="Team"),
            ],
            database_operations=[],
        ),
    ]
