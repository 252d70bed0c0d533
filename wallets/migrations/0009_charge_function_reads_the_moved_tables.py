"""The charge function ``wallets_charge`` names the billing settings and idempotency tables by their new names.

``BillingSettings`` moved to ``teams`` (table ``teams_billingsettings``) and ``IdempotencyRecord`` to
``billing_site`` (table ``billing_site_idempotencyrecord``); the function's body is otherwise the
body of 0006. ``CREATE OR REPLACE`` keeps its signature, so callers and grants are untouched.
Reversed, it recreates 0006's body with the old names, from 0006's own file. The SQL is in
``0009_wallets_charge.sql`` beside this migration (``sqlmigrate wallets 0009`` shows it).
"""

from pathlib import Path

from django.db import migrations

HERE = Path(__file__).resolve().parent
FUNCTION = (HERE / "0009_wallets_charge.sql").read_text(encoding="utf-8")
# 0006's file, as 0006 runs it (its leading newline included): the function as it was before.
FUNCTION_BEFORE = (HERE / "0006_wallets_charge.sql").read_text(encoding="utf-8")


class Migration(migrations.Migration):

    dependencies = [
        ("wallets", "0008_team_models_move_to_teams"),
        ("teams", "0002_tables_and_content_types"),
        ("billing_site", "0002_idempotencyrecord_table"),
    ]

    # One statement each (a list keeps Django from splitting the function's body at its semicolons).
    operations = [migrations.RunSQL([FUNCTION], [FUNCTION_BEFORE])]
