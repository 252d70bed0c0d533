"""Benchmark: a wallet's balance read stays O(1) in the number of its ledger entries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_wallets .venv/bin/python bench/wallet_balance_read.py

Recreates the database named in DATABASE_URL (PostgreSQL only), builds one wallet with 10 entries
through the services and one with 1,000,000 entries inserted by SQL ``generate_series`` (top-ups of
0.01 whose before/after chain is consistent, the wallet's stored balance set to match), checks the
big one with ``verify_ledger``, then prints the median and p99 time of
``wallets.selectors.wallet_balance_get`` (one primary-key read, never a SUM) for both, and of the
newest-50 page of the transactions list.
"""

from __future__ import annotations

import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, machine_facts  # noqa: E402
from wallet_charges import make_wallets  # noqa: E402

BIG = 1_000_000
READS = 2_000


def _time(fn, n: int = READS) -> tuple[float, float]:
    for _ in range(50):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(0.99 * n)] * 1000


def main() -> None:
    name = "bench_wallets"
    bench_database(name)
    from django.db import connection

    from wallets.models import LedgerEntry, Wallet
    from wallets.selectors import ledger_entry_list, ledger_verify, wallet_balance_get
    from wallets.services.charges import wallet_charge

    print(f"wallet balance read benchmark on database {name}: {machine_facts()}")
    small, big = make_wallets("read", 2, Decimal(1))
    small_wallet = Wallet.objects.get(pk=small)
    for i in range(9):
        wallet_charge(wallet=small_wallet, amount=Decimal("0.01"), idempotency_key=f"small-{i}")

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        # The funding top-up is entry 1 (balance 0 → 1); entry g continues the chain from there.
        cursor.execute(
            """
            INSERT INTO wallets_ledgerentry (wallet_id, entry_type, amount, reserved_delta, balance_before,
                balance_after, reserved_before, reserved_after, currency, idempotency_key, reference_type,
                reference_id, feature_key, description, created_by_id, created_at, metadata)
            SELECT %s, 'top_up', 0.01, 0, 1 + (g - 1) * 0.01, 1 + g * 0.01, 0, 0, 'USD', 'bulk-' || g, '',
                '', '', 'bench bulk top-up', NULL, now(), '{}'::jsonb
            FROM generate_series(1, %s) AS g
            """,
            [big, BIG - 1],
        )
        cursor.execute("UPDATE wallets_wallet SET balance = 1 + %s * 0.01 WHERE id = %s", [BIG - 1, big])
        cursor.execute("ANALYZE wallets_ledgerentry")
    print(f"inserted {BIG - 1:,} entries with generate_series in {time.perf_counter() - t0:.1f} s")
    counts = {w: LedgerEntry.objects.filter(wallet_id=w).count() for w in (small, big)}

    t0 = time.perf_counter()
    [check] = ledger_verify(wallet_ids=[big])
    print(f"verify_ledger on the {counts[big]:,}-entry wallet: {'OK' if check.ok else check.problems} "
          f"in {time.perf_counter() - t0:.1f} s")

    for wallet_id in (small, big):
        p50, p99 = _time(lambda: wallet_balance_get(wallet_id=wallet_id))
        balance = wallet_balance_get(wallet_id=wallet_id).balance
        print(f"balance read, {counts[wallet_id]:>9,} entries: p50 {p50:.3f} ms, p99 {p99:.3f} ms "
              f"(balance {balance.normalize():f} USD)")
    for wallet_id in (small, big):
        wallet = Wallet.objects.get(pk=wallet_id)
        p50, p99 = _time(lambda: list(ledger_entry_list(wallet=wallet)[:50]), n=500)
        print(f"newest 50 ledger entries, {counts[wallet_id]:>9,} entries: p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    main()
