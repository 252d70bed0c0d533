"""Prepaid credit wallets and their append-only ledger (built in the wallets issue)."""
