
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
