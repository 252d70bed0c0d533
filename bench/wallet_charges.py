"""Benchmark: wallet charges through the service layer on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_wallets .venv/bin/python bench/wallet_charges.py

Creates (drops first) the database named in DATABASE_URL through the server's maintenance database,
migrates it, then prints:

1. charges/s on 1,000 distinct wallets from 8 concurrent worker processes (target ≥ 1,000/s);
2. charges/s on one hot wallet from 8 workers (target ≥ 300/s), with a lost-update check
   (stored balance = ledger sum = start − charges) and the ratio to a bare SQL
   ``UPDATE … SET balance = balance - x WHERE id = … AND balance >= x`` loop from 8 workers on the
   same database in the same run.

Every charge is ``wallets.services.wallet_charge`` with its own idempotency key: one transaction
with the idempotency record, the row lock, the ledger entry and the balance update; on PostgreSQL
one call of the SQL function ``wallets_charge`` (wallets migration 0006) in autocommit.
Workers are processes (fork), so Python runs on every core; each opens its own connection.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, machine_facts  # noqa: E402

WORKERS = 8
DISTINCT_WALLETS = 1000
DISTINCT_CHARGES = 16_000
HOT_CHARGES = 4_000
AMOUNT = Decimal("0.01")


BENCH_DB = "bench_wallets"


def make_wallets(label: str, count: int, balance: Decimal) -> list[int]:
    """Teams and funded wallets, through the services."""
    from teams.models import Team
    from wallets.services.posting import wallet_top_up
    from wallets.services.wallets import wallet_open

    Team.objects.bulk_create(
        [Team(name=f"Bench {i}", slug=f"bench-{label}-{i}", currency="USD") for i in range(count)]
    )
    ids = []
    for team in Team.objects.filter(slug__startswith=f"bench-{label}-").order_by("pk"):
        wallet = wallet_open(team=team)
        wallet_top_up(wallet=wallet, amount=balance, idempotency_key=f"bench-fund-{wallet.pk}")
        ids.append(wallet.pk)
    return ids


def _charge_worker(worker: int, wallet_ids: list[int], charges: int, prefix: str, start_at: float, out) -> None:
    from django.db import connection

    from wallets.models import Wallet
    from wallets.services.charges import wallet_charge

    connection.close()  # never share the parent's connection
    wallets = {w.pk: w for w in Wallet.objects.filter(pk__in=wallet_ids)}
    mine = range(worker, charges, WORKERS)
    latencies = []
    while time.time() < start_at:
        time.sleep(0.001)
    for i in mine:
        wallet = wallets[wallet_ids[i % len(wallet_ids)]]
        t0 = time.perf_counter()
        wallet_charge(wallet=wallet, amount=AMOUNT, idempotency_key=f"{prefix}-{i}", feature_key="bench")
        latencies.append(time.perf_counter() - t0)
    connection.close()
    out.put((time.time(), latencies))


def _sql_worker(worker: int, wallet_id: int, updates: int, dsn: dict, start_at: float, out) -> None:
    import psycopg

    with psycopg.connect(**dsn, autocommit=True) as conn:
        while time.time() < start_at:
            time.sleep(0.001)
        latencies = []
        for _ in range(worker, updates, WORKERS):
            t0 = time.perf_counter()
            conn.execute(
                "UPDATE wallets_wallet SET balance = balance - %s WHERE id = %s AND balance >= %s",
                (AMOUNT, wallet_id, AMOUNT),
            )
            latencies.append(time.perf_counter() - t0)
    out.put((time.time(), latencies))


def sequential_profile(wallet_id: int, charges: int = 300) -> str:
    """Queries of one charge and the Python CPU (this process only, not the server's) per charge, one at a time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from wallets.models import Wallet
    from wallets.services.charges import wallet_charge

    wallet = Wallet.objects.get(pk=wallet_id)
    with CaptureQueriesContext(connection) as queries:
        wallet_charge(wallet=wallet, amount=AMOUNT, idempotency_key="seq-probe", feature_key="bench")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(charges):
        wallet_charge(wallet=wallet, amount=AMOUNT, idempotency_key=f"seq-{i}", feature_key="bench")
    cpu = (time.process_time() - cpu0) / charges * 1000
    wall = (time.perf_counter() - wall0) / charges * 1000
    return (f"one charge = {len(queries)} statement(s) sent, BEGIN/COMMIT included (autocommit); sequentially "
            f"{cpu:.2f} ms Python CPU and {wall:.2f} ms wall per charge ({charges} charges)")


def run_parallel(target, args_for) -> tuple[float, list[float]]:
    """Start WORKERS processes together; return wall seconds and all latencies."""
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start_at = time.time() + 1.0
    procs = [ctx.Process(target=target, args=(*args_for(w), start_at, out)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            sys.exit(f"a worker failed with exit code {p.exitcode}")
    end = max(r[0] for r in results)
    return end - start_at, [lat for r in results for lat in r[1]]


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    bench_database(BENCH_DB)
    from django.db import connection

    from wallets.models import Wallet
    from wallets.selectors import ledger_verify

    print(f"wallet charges benchmark on database {BENCH_DB}: {machine_facts()}")

    # 0. one charge at a time: statements and Python CPU per charge
    [probe] = make_wallets("probe", 1, Decimal(1000))
    print(f"sequential: {sequential_profile(probe)}")

    # 1. distinct wallets
    ids = make_wallets("distinct", DISTINCT_WALLETS, Decimal(1000))
    seconds, lat = run_parallel(_charge_worker, lambda w: (w, ids, DISTINCT_CHARGES, "distinct"))
    rate = DISTINCT_CHARGES / seconds
    print(f"distinct wallets: {DISTINCT_CHARGES} charges on {DISTINCT_WALLETS} wallets in {seconds:.2f} s = "
          f"{rate:,.0f} charges/s (target >= 1,000/s); latency p50 {_pct(lat, .5):.1f} ms, "
          f"p99 {_pct(lat, .99):.1f} ms")

    # 2. one hot wallet, service layer
    [hot] = make_wallets("hot", 1, Decimal(1_000_000))
    seconds, lat = run_parallel(_charge_worker, lambda w: (w, [hot], HOT_CHARGES, "hot"))
    hot_rate = HOT_CHARGES / seconds
    wallet = Wallet.objects.get(pk=hot)
    [check] = ledger_verify(wallet_ids=[hot])
    expected = Decimal(1_000_000) - AMOUNT * HOT_CHARGES
    lost = (expected - wallet.balance) / AMOUNT
    print(f"hot wallet: {HOT_CHARGES} charges in {seconds:.2f} s = {hot_rate:,.0f} charges/s (target >= 300/s); "
          f"latency p50 {_pct(lat, .5):.1f} ms, p99 {_pct(lat, .99):.1f} ms")
    print(f"hot wallet: balance {wallet.balance.normalize():f} (expected {expected.normalize():f}), "
          f"ledger sum {check.ledger_balance.normalize():f}, lost updates: {lost.normalize():f}, "
          f"verify_ledger {'OK' if check.ok else 'MISMATCH ' + '; '.join(check.problems)}")

    # 3. the same hot wallet, bare SQL
    [bare] = make_wallets("bare", 1, Decimal(1_000_000))
    params = connection.get_connection_params()
    dsn = {k: params[k] for k in ("host", "port", "user", "dbname") if params.get(k)}
    if params.get("password"):
        dsn["password"] = params["password"]
    seconds, lat = run_parallel(_sql_worker, lambda w: (w, bare, HOT_CHARGES, dsn))
    bare_rate = HOT_CHARGES / seconds
    print(f"bare SQL UPDATE loop on one wallet: {HOT_CHARGES} updates in {seconds:.2f} s = {bare_rate:,.0f}/s; "
          f"latency p50 {_pct(lat, .5):.1f} ms, p99 {_pct(lat, .99):.1f} ms; "
          f"service layer / bare SQL = {hot_rate / bare_rate:.2f}")
    with open("/proc/loadavg") as f:
        print(f"load average at the end: {' '.join(f.read().split()[:3])}")
    if not check.ok or lost != 0:
        sys.exit("lost updates or a ledger mismatch")


if __name__ == "__main__":
    main()
