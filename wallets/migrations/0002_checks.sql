
ALTER TABLE wallets_ledgerentry ADD CONSTRAINT ledger_entry_balance_chain
    CHECK (balance_after = balance_before + amount);
ALTER TABLE wallets_ledgerentry ADD CONSTRAINT ledger_entry_reserved_chain
    CHECK (reserved_after = reserved_before + reserved_delta);
ALTER TABLE wallets_hold ADD CONSTRAINT hold_captured_plus_released
    CHECK (status <> 'captured' OR amount = captured_amount + released_amount);
