
ALTER TABLE wallets_ledgerentry DROP CONSTRAINT IF EXISTS ledger_entry_balance_chain;
ALTER TABLE wallets_ledgerentry DROP CONSTRAINT IF EXISTS ledger_entry_reserved_chain;
ALTER TABLE wallets_hold DROP CONSTRAINT IF EXISTS hold_captured_plus_released;
