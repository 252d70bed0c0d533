"""Admin for wallets and ledger entries (built in the wallets issue)."""
