"""A charge is one call of the SQL function ``wallets_charge``.

``wallets.services.wallet_charge`` calls it: one statement, one round trip, and no BEGIN/COMMIT of
its own in autocommit mode (a savepoint inside a caller's transaction). It runs these steps in
this order, as the ORM reference of the equivalence test does:

1. claim the idempotency key: ``INSERT … ON CONFLICT (scope, key) DO NOTHING``; a concurrent
   request with the same key waits here for the first to end; nothing claimed = a replay, which
   the caller resolves (same parameters: the first result; other parameters: ``IdempotencyError``);
2. lock the wallet row (``FOR UPDATE``; READ COMMITTED returns its newest committed version) and
   read the team's billing settings, or the model's defaults passed by the caller when the team
   has no row (``BillingSettings`` stays the one place the defaults are written);
3. refuse a wallet that is not active (SQLSTATE ``WL409``) and a debit that takes
   ``balance − reserved`` below the floor (``WL402``, the available credit in DETAIL): 0 for
   prepaid teams that block on zero balance, −credit limit for postpaid, none otherwise. RAISE
   rolls the whole statement back, the claimed key included, as the Python path does;
4. spend granted lots first (soonest expiry first, no expiry last), post the ``charge`` entry with
   the balance before and after, store the wallet's totals and the key's result;
5. return the threshold crossed, if any, and whether the team has addresses to notify, so that the
   caller sends the one low-balance e-mail (and reads nothing more when nobody is to be told).

Why SQL: on the 2-core machine of ``bench/wallet_charges.py`` the Python path costs ~3.7 ms of
CPU per charge (Python and server), half of it in four round trips and per-statement parsing and
planning; PL/pgSQL caches the plans of its statements per connection. The function is tested
against the Python path for the same inputs (``tests/wallets/test_charge_function.py``).

The function is in ``0006_wallets_charge.sql`` beside this migration (its reverse in
``0006_wallets_charge.reverse.sql``).
"""

from pathlib import Path

from django.db import migrations


def _sql(name: str) -> list[str]:
    # A list of one item: RunSQL executes it as written (a plain string it would split with sqlparse).
    return [(Path(__file__).resolve().parent / name).read_text(encoding="utf-8")]


class Migration(migrations.Migration):

    dependencies = [("wallets", "0005_groups_get_invoice_lifecycle_permissions")]

    operations = [migrations.RunSQL(_sql("0006_wallets_charge.sql"), _sql("0006_wallets_charge.reverse.sql"))]
