"""A usage-event charge in one call: the SQL function ``wallets_usage_event_charge``.

``wallets.services.usage_events.usage_event_charge`` parses the items, renders the usage records'
columns from the model, and makes one call of the function, which:

1. claims the idempotency key (``INSERT … ON CONFLICT DO NOTHING``) before any lock;
2. reads the team's billing settings and prices every item with the catalog's rule: the team's
   override valid now, else the global price, the latest ``valid_from`` then the highest id
   (``chargeback.selectors.price_pick``); cost = quantity × unit price rounded half-up to 12
   places (``money.metered_cost``). The catalog is read in the call, so a price change is seen at
   once and no process keeps a copy;
3. finds the wallet the step-by-step path would open (the team's, or the member's own for a
   ``prepaid_user`` team);
4. writes the event (``charged``), one usage record per item and the items, before the wallet is
   locked;
5. in one statement under the row lock, as ``wallets_charge`` does: the debit, the ledger entry
   (its id drawn in step 4; Django's foreign keys are checked at commit) and the key's result.

Anything but the common case raises SQLSTATE ``WLSTP``, which rolls back everything the call
wrote, the claim included: a replayed key, an item without a price, a provider not listed, a
currency other than the team's, a missing or frozen wallet, a debit beyond the floor (a recorded
refusal), granted credit to spend, a warning to send. The caller then runs the step-by-step path,
which gives every error, refusal and message. ``tests/wallets/test_event_function.py`` checks
the two paths agree. The SQL is in ``0011_usage_event_charge.sql`` (its reverse beside it).
"""

from pathlib import Path

from django.db import migrations

HERE = Path(__file__).resolve().parent


class Migration(migrations.Migration):

    dependencies = [
        ("wallets", "0010_charge_under_a_shorter_lock"),
        ("chargeback", "0009_usage_status_void_and_adjustments"),
        ("teams", "0003_billing_settings_extra_currencies"),
    ]

    # One statement each (a list keeps Django from splitting the function's body at its semicolons).
    operations = [migrations.RunSQL(
        [(HERE / "0011_usage_event_charge.sql").read_text(encoding="utf-8")],
        [(HERE / "0011_usage_event_charge.reverse.sql").read_text(encoding="utf-8")],
    )]
