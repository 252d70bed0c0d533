"""Benchmark: wallet charges through the service layer on PostgreSQL, each beside its reference.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_wallets .venv/bin/python bench/wallet_charges.py \
        [--rounds 3] [--distinct-charges 8000] [--hot-charges 3000] [--pgbench-seconds 5]

Recreates the database named in DATABASE_URL (any scratch name) and migrates it. Then, in each of
``--rounds`` interleaved rounds, measures four things one after the other, so that a figure and its
reference see the same machine:

1. charges/s on 1,000 distinct wallets from 8 worker processes, beside
2. pgbench's TPC-B (``pgbench -i -s 10``, 8 clients, 2 threads, ``--pgbench-seconds``) in the same
   database: PostgreSQL's own figure for a short read-write transaction on distinct rows;
3. charges/s on one hot wallet from 8 workers, beside
4. a bare ``UPDATE … SET balance = balance - x WHERE id = … AND balance >= x`` loop on one wallet
   from 8 processes: the row's ceiling, every transaction holding the row lock until its commit.

Prints every pair, the ratios, the ratio of the sums and the load average; then a lost-update check
of the hot wallet (stored balance = ledger sum = start − charges). On one hot row the transactions
run one after the other, so wall time / charges is the mean time the row lock is held (commit
included); it is printed for the charge and for the bare loop.

Every charge is ``wallets.services.wallet_charge`` with its own idempotency key: one call of the
SQL function ``wallets_charge`` in autocommit. Workers are processes (fork), so Python runs on
every core; each opens its own connection.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, libpq_dsn, load_average, machine_facts, pgbench_path, ratio_line  # noqa: E402

WORKERS = 8
DISTINCT_WALLETS = 1000
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


def pgbench_env(dsn: dict) -> dict:
    import os

    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE", "password": "PGPASSWORD"}
    return {**os.environ, **{names[k]: str(v) for k, v in dsn.items()}}


def pgbench_tpcb(dsn: dict, seconds: int) -> float:
    """TPC-B transactions/s from pgbench (8 clients, 2 threads) on the tables ``pgbench -i -s 10`` made."""
    run = subprocess.run([pgbench_path(), "-c", str(WORKERS), "-j", "2", "-T", str(seconds), "-n"],
                         capture_output=True, text=True, env=pgbench_env(dsn), check=True)
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--distinct-charges", type=int, default=8000, help="charges per round on distinct wallets")
    parser.add_argument("--hot-charges", type=int, default=3000, help="charges per round on the hot wallet")
    parser.add_argument("--pgbench-seconds", type=int, default=5, help="seconds of pgbench TPC-B per round")
    args = parser.parse_args()
    url = bench_database(BENCH_DB)
    from wallets.models import Wallet
    from wallets.selectors import ledger_verify

    print(f"wallet charges benchmark on {url.rsplit('/', 1)[1]}: {machine_facts()}")
    dsn = libpq_dsn()
    subprocess.run([pgbench_path(), "-i", "-s", "10", "-q"], capture_output=True, env=pgbench_env(dsn), check=True)

    # 0. one charge at a time: statements and Python CPU per charge
    [probe] = make_wallets("probe", 1, Decimal(1000))
    print(f"sequential: {sequential_profile(probe)}")

    ids = make_wallets("distinct", DISTINCT_WALLETS, Decimal(1000))
    [hot] = make_wallets("hot", 1, Decimal(1_000_000))
    [bare] = make_wallets("bare", 1, Decimal(1_000_000))
    distinct, hot_pairs, hot_lat, bare_lat = [], [], [], []
    for r in range(args.rounds):
        n = args.distinct_charges
        seconds, lat = run_parallel(_charge_worker, lambda w: (w, ids, n, f"distinct-{r}"))
        rate = n / seconds
        tpcb = pgbench_tpcb(dsn, args.pgbench_seconds)
        distinct.append((rate, tpcb))
        print(f"round {r + 1}: distinct wallets {rate:,.0f} charges/s (p50 {_pct(lat, .5):.1f} ms, "
              f"p99 {_pct(lat, .99):.1f} ms) | pgbench TPC-B {tpcb:,.0f} tps | load {load_average()}")
        n = args.hot_charges
        seconds, lat = run_parallel(_charge_worker, lambda w: (w, [hot], n, f"hot-{r}"))
        hot_rate, hot_lat = n / seconds, hot_lat + lat
        seconds, lat = run_parallel(_sql_worker, lambda w: (w, bare, n, dsn))
        bare_rate, bare_lat = n / seconds, bare_lat + lat
        hot_pairs.append((hot_rate, bare_rate))
        print(f"round {r + 1}: hot wallet {hot_rate:,.0f} charges/s (row lock held {1000 / hot_rate:.2f} ms a "
              f"charge) | bare UPDATE loop {bare_rate:,.0f}/s ({1000 / bare_rate:.2f} ms) | load {load_average()}")
    print(ratio_line("distinct wallets / pgbench TPC-B (target >= 0.8)", distinct, "per s"))
    print(ratio_line("hot wallet / bare UPDATE loop (target >= 0.7)", hot_pairs, "per s"))
    print(f"hot wallet latency p50 {_pct(hot_lat, .5):.1f} ms, p99 {_pct(hot_lat, .99):.1f} ms; bare loop p50 "
          f"{_pct(bare_lat, .5):.1f} ms, p99 {_pct(bare_lat, .99):.1f} ms")

    wallet = Wallet.objects.get(pk=hot)
    [check] = ledger_verify(wallet_ids=[hot])
    expected = Decimal(1_000_000) - AMOUNT * args.hot_charges * args.rounds
    lost = (expected - wallet.balance) / AMOUNT
    print(f"hot wallet: balance {wallet.balance.normalize():f} (expected {expected.normalize():f}), "
          f"ledger sum {check.ledger_balance.normalize():f}, lost updates: {lost.normalize():f}, "
          f"verify_ledger {'OK' if check.ok else 'MISMATCH ' + '; '.join(check.problems)}")
    if not check.ok or lost != 0:
        sys.exit("lost updates or a ledger mismatch")


if __name__ == "__main__":
    main()
