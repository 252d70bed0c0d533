"""Benchmark: what each index of the usage table costs a row of ``COPY``, at a given table size.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_indexes .venv/bin/python bench/usage_indexes.py \\
        [--loaded 1000000] [--rows 50000] [--rounds 2]

Recreates the database named in DATABASE_URL (any scratch name), migrates it, fills the usage table
with ``--loaded`` rows by ``generate_series`` (10 teams, 12 months, distinct keys), then in each of
``--rounds`` rounds copies ``--rows`` new rows (psycopg's ``COPY``, the rows the usage batch writes)
with every index in place, and again with each secondary index dropped in turn (recreated after).
Prints, per index: its size, and the time a row costs with it minus without it, in microseconds;
the table's heap alone (primary key only) and the load average. The ingestion path writes with
``COPY`` (``chargeback.services.usage._usage_records_write``), so this is each index's share of it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, libpq_dsn, load_average, machine_facts  # noqa: E402

BENCH_DB = "bench_indexes"
TABLE = "chargeback_usagerecord"
COLUMNS = ("team_id, user_id, agent_id, resource_type, provider, model, unit, quantity, cost, currency, occurred_at, "
           "billing_period_start, source, feature_key, external_reference, idempotency_key, metadata, "
           "charge_category, service_name, sub_account_name, resource_id, tags, created_at")


def copy_rows(dsn: dict, teams: list[int], rows: int, label: str) -> float:
    """Seconds to COPY ``rows`` usage rows (one transaction, committed)."""
    import psycopg

    occurred = dt.datetime(2026, 11, 15, 12, tzinfo=dt.timezone.utc)
    now = dt.datetime.now(dt.timezone.utc)
    data = [(teams[j % len(teams)], None, "agent-1", "llm", "openai", "gpt-4", "token", Decimal(1000),
             Decimal("0.030000000000"), "USD", occurred, dt.date(2026, 11, 1), "api", "feature-1", "",
             f"{label}-{j}", "{}", "", "", "", "", "{}", now) for j in range(rows)]
    with psycopg.connect(**dsn) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY {TABLE} ({COLUMNS}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loaded", type=int, default=1_000_000, help="rows in the table before measuring")
    parser.add_argument("--rows", type=int, default=50_000, help="rows copied per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    url = bench_database(BENCH_DB)
    from django.db import connection

    from teams.models import Team

    print(f"usage index benchmark on {url.rsplit('/', 1)[1]}: {machine_facts()}")
    Team.objects.bulk_create([Team(name=f"T{i}", slug=f"t-{i}", currency="USD") for i in range(10)])
    teams = list(Team.objects.values_list("pk", flat=True))
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {TABLE} ({COLUMNS})
            SELECT (%s::bigint[])[1 + g %% 10], NULL, 'agent-' || (g %% 50), 'llm', 'openai', 'gpt-4', 'token', 1000,
                0.03, 'USD', timestamptz '2025-12-01' + (g %% 31536000 || ' seconds')::interval,
                date_trunc('month', timestamptz '2025-12-01' + (g %% 31536000 || ' seconds')::interval)::date,
                'api', 'feature-' || (g %% 20), '', 'bulk-' || g, '{{}}'::jsonb, '', '', '', '', '{{}}'::jsonb, now()
            FROM generate_series(1, %s) AS g""",
            [teams, args.loaded],
        )
        cursor.execute(f"ANALYZE {TABLE}")
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), pg_relation_size(i.indexrelid), "
            "c.conname FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary ORDER BY 1", [TABLE])
        indexes = cursor.fetchall()
    connection.close()
    print(f"loaded {args.loaded:,} rows in {time.perf_counter() - t0:.1f} s; {len(indexes)} secondary indexes")
    dsn = libpq_dsn()
    import psycopg

    costs: dict[str, list[float]] = {name: [] for name, *_ in indexes}
    everything: list[float] = []
    for r in range(args.rounds):
        with_all = copy_rows(dsn, teams, args.rows, f"all-{r}")
        everything.append(with_all)
        for name, definition, _size, constraint in indexes:
            with psycopg.connect(**dsn, autocommit=True) as conn:
                conn.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {constraint}" if constraint
                             else f"DROP INDEX {name}")
            without = copy_rows(dsn, teams, args.rows, f"{name}-{r}")
            with psycopg.connect(**dsn, autocommit=True) as conn:
                conn.execute(definition)
                if constraint:
                    conn.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {constraint} UNIQUE USING INDEX {name}")
            costs[name].append((with_all - without) / args.rows * 1e6)
        print(f"round {r + 1}: COPY of {args.rows:,} rows with every index {with_all:.2f} s "
              f"({with_all / args.rows * 1e6:.1f} µs a row) | load {load_average()}")
    with psycopg.connect(**dsn, autocommit=True) as conn:
        names = [name for name, *_ in indexes]
        for name, definition, _size, constraint in indexes:
            conn.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {constraint}" if constraint else f"DROP INDEX {name}")
        bare = copy_rows(dsn, teams, args.rows, "bare")
    per_row = sum(everything) / len(everything) / args.rows * 1e6
    print(f"primary key and heap only: {bare / args.rows * 1e6:.1f} µs a row; every index: {per_row:.1f} µs a row")
    for name, _definition, size, _constraint in sorted(indexes, key=lambda i: -sum(costs[i[0]])):
        mean = sum(costs[name]) / len(costs[name])
        print(f"  {name}: {size / 2**20:,.0f} MiB at {args.loaded:,} rows; {mean:+.1f} µs a row "
              f"({', '.join(f'{c:+.1f}' for c in costs[name])})")
    print(f"indexes measured: {', '.join(names)} (load average {load_average()})")


if __name__ == "__main__":
    main()
