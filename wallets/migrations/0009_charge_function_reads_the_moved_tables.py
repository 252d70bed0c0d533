"""The charge function ``wallets_charge`` names the billing settings and idempotency tables by their new names.

``BillingSettings`` moved to ``teams`` (table ``teams_billingsettings``) and ``IdempotencyRecord`` to
``billing_site`` (table ``billing_site_idempotencyrecord``); the function's body is otherwise the
body of 0006. ``CREATE OR REPLACE`` keeps its signature, so callers and grants are untouched.
Reversed, it recreates 0006's body with the old names. The SQL is in the ``.sql`` files beside this
migration (``sqlmigrate wallets 0009`` shows it).
"""

from pathlib import Path

from django.db import migrations

HERE = Path(__file__).resolve().parent
FUNCTION = (HERE / "0009_wallets_charge_function.sql").read_text()
FUNCTION_BEFORE = (HERE / "0009_wallets_charge_function_reverse.sql").read_text()


class Migration(migrations.Migration):

    dependencies = [
        ("wallets", "0008_team_models_move_to_teams"),
        ("teams", "0002_tables_and_content_types"),
        ("billing_site", "0002_idempotencyrecord_table"),
    ]

    # One statement each (a list keeps Django from splitting the function's body at its semicolons).
    operations = [migrations.RunSQL([FUNCTION], [FUNCTION_BEFORE])]
