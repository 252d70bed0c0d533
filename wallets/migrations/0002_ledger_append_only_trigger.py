"""The ledger's rules that only PostgreSQL can hold exactly.

1. Append-only: a trigger rejects UPDATE and DELETE of ledger rows from any client (raw SQL, psql,
   another service). The model and its queryset already refuse edits, covering SQLite and the
   admin. The trigger does not fire on TRUNCATE, which Django's test-database flush uses; TRUNCATE
   needs the table owner's rights, which the application role should not have in production.
2. Exact CHECKs on sums: ``balance_after = balance_before + amount`` and
   ``reserved_after = reserved_before + reserved_delta`` on every entry, and ``amount =
   captured_amount + released_amount`` on captured holds. PostgreSQL's ``numeric`` is exact;
   SQLite stores decimals as floats, where such equalities fail on honest data, so there the
   model's ``save()`` checks them in Decimal instead.

On databases other than PostgreSQL both operations are no-ops.
"""

from django.db import migrations

from billing_site.migration_ops import RunSQLOnPostgreSQL

TRIGGER = """
CREATE OR REPLACE FUNCTION wallets_ledgerentry_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallets_ledgerentry is append-only: % of ledger entry % refused; post a reversing entry',
        TG_OP, OLD.id
        USING HINT = 'Corrections are new entries (adjustment, refund), never edits.';
END;
$$;

CREATE TRIGGER wallets_ledgerentry_append_only
    BEFORE UPDATE OR DELETE ON wallets_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION wallets_ledgerentry_append_only();
"""

TRIGGER_REVERSE = """
DROP TRIGGER IF EXISTS wallets_ledgerentry_append_only ON wallets_ledgerentry;
DROP FUNCTION IF EXISTS wallets_ledgerentry_append_only();
"""

CHECKS = """
ALTER TABLE wallets_ledgerentry ADD CONSTRAINT ledger_entry_balance_chain
    CHECK (balance_after = balance_before + amount);
ALTER TABLE wallets_ledgerentry ADD CONSTRAINT ledger_entry_reserved_chain
    CHECK (reserved_after = reserved_before + reserved_delta);
ALTER TABLE wallets_hold ADD CONSTRAINT hold_captured_plus_released
    CHECK (status <> 'captured' OR amount = captured_amount + released_amount);
"""

CHECKS_REVERSE = """
ALTER TABLE wallets_ledgerentry DROP CONSTRAINT IF EXISTS ledger_entry_balance_chain;
ALTER TABLE wallets_ledgerentry DROP CONSTRAINT IF EXISTS ledger_entry_reserved_chain;
ALTER TABLE wallets_hold DROP CONSTRAINT IF EXISTS hold_captured_plus_released;
"""


class Migration(migrations.Migration):

    dependencies = [("wallets", "0001_initial")]

    operations = [
        RunSQLOnPostgreSQL(CHECKS, CHECKS_REVERSE),
        RunSQLOnPostgreSQL(TRIGGER, TRIGGER_REVERSE),
    ]
