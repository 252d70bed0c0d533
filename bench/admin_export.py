"""Benchmark: the admin's CSV and XLSX exports of the ledger and of usage, at 100,000 and 1,000,000 rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_admin_export .venv/bin/python bench/admin_export.py \
        [--rows 100000,1000000] [--keep] [--only csv|xlsx] [--tables ledger,usage]

Recreates the scratch database (``--keep`` reuses what an earlier run loaded), then loads with SQL
``generate_series`` two teams with a wallet each: "Small" with the smallest ``--rows`` figure of
ledger entries and usage records, "Large" with the rest up to the largest. Each size is exported
through the admin's own views (Django's test client, logged in as finance), filtered by team for
the smaller size and unfiltered for the largest, the response read to its end; every hundredth
description (ledger) or feature key (usage) starts with ``=``, so the neutraliser has work.

Printed per export: rows/s, and the process's peak resident memory during the export above what
it held before it (sampled every 10 ms from /proc/self/status); memory is flat when that figure is
about the same at 100,000 and 1,000,000 rows. The reference, measured in the same run, is
PostgreSQL's ``COPY (SELECT …) TO STDOUT WITH CSV`` of the same rows and columns (the same joins
for team names), read to its end by psycopg in this process: the ratio is export time / COPY time.

The trigram search indexes are dropped before the load (they cost the load minutes and play no
part in an export).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, load_average, machine_facts  # noqa: E402


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """The peak RSS above the starting one while the ``with`` block runs (KiB), sampled every 10 ms."""

    def __enter__(self):
        self.start = self.peak = rss_kib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_kib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 1024


def load(small: int, large: int) -> None:
    """Two teams and wallets; ``small`` then ``large - small`` ledger entries and usage records each."""
    from django.db import connection

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS ledger_search_trgm")
        cursor.execute("DROP INDEX IF EXISTS usage_search_trgm")
        cursor.execute(
            """
            INSERT INTO teams_team (name, slug, cost_center, parent_id, currency, is_active, created_at)
            VALUES ('Small', 'small', 'CC-1', NULL, 'USD', true, now()), ('Large', 'large', 'CC-2', NULL, 'USD', true, now())
            """
        )
        cursor.execute(
            """
            INSERT INTO wallets_wallet (team_id, user_id, currency, balance, reserved, granted_balance, status,
                low_balance_warned, last_top_up_amount, created_at, updated_at)
            SELECT id, NULL, 'USD', 0, 0, 0, 'active', false, 0.01, now(), now() FROM teams_team ORDER BY id
            """
        )
        cursor.execute("SELECT id, team_id FROM wallets_wallet ORDER BY id")
        wallets = cursor.fetchall()
        for (wallet, team), count in zip(wallets, (small, large - small), strict=True):
            # A consistent chain of 0.01 top-ups (the balance CHECKs hold).
            cursor.execute(
                """
                INSERT INTO wallets_ledgerentry (wallet_id, entry_type, amount, reserved_delta, balance_before,
                    balance_after, reserved_before, reserved_after, currency, idempotency_key, reference_type,
                    reference_id, feature_key, description, created_by_id, created_at, metadata)
                SELECT %s, 'top_up', 0.01, 0, (g - 1) * 0.01, g * 0.01, 0, 0, 'USD', 'bulk-' || %s || '-' || g,
                    'external_payment', 'PO-' || g, '',
                    CASE WHEN g %% 100 = 0 THEN '=HYPERLINK("x")' ELSE 'bench top-up ' || g END,
                    NULL, now() - ((%s - g) || ' seconds')::interval, '{}'::jsonb
                FROM generate_series(1, %s) AS g
                """,
                [wallet, wallet, count, count],
            )
            cursor.execute("UPDATE wallets_wallet SET balance = %s * 0.01 WHERE id = %s", [count, wallet])
            cursor.execute(
                """
                INSERT INTO chargeback_usagerecord (team_id, user_id, agent_id, resource_type, provider, model, unit,
                    quantity, cost, currency, occurred_at, billing_period_start, source, feature_key,
                    external_reference, idempotency_key, metadata, effective_cost, charge_category, service_name,
                    sub_account_name, resource_id, tags, created_at)
                SELECT %s, NULL, '', (ARRAY['cloud', 'llm', 'storage', 'query'])[1 + g %% 4], 'AWS', 'm', 'Hours',
                    1, round((1 + g %% 997) / 1000.0, 12), 'USD', now() - ((g %% 27) || ' days')::interval,
                    date_trunc('month', now())::date, 'api',
                    CASE WHEN g %% 100 = 0 THEN '=1+2' ELSE 'feature-' || g %% 50 END, '', 'bench-' || %s || '-' || g,
                    '{}'::jsonb, NULL, 'Usage', 'Amazon EC2', '', '', '{}'::jsonb, now()
                FROM generate_series(1, %s) AS g
                """,
                [team, team, count],
            )
        for table in ("chargeback_usagerecord", "wallets_ledgerentry", "wallets_wallet", "teams_team"):
            cursor.execute(f"ANALYZE {table}")
    print(f"loaded {large:,} ledger entries and {large:,} usage records in {time.perf_counter() - t0:.1f} s")


#: The same rows and columns as the exports (billing_site.exports / the apps' resources.py), for COPY.
COPY_SQL = {
    "ledger": """
        SELECT e.id, e.created_at, t.slug, t.name, e.wallet_id, e.entry_type, e.amount, e.reserved_delta,
               e.balance_after, e.currency, e.reference_type, e.reference_id, e.idempotency_key, e.feature_key,
               e.description
        FROM wallets_ledgerentry e JOIN wallets_wallet w ON w.id = e.wallet_id JOIN teams_team t ON t.id = w.team_id
        {where} ORDER BY e.id""",
    "usage": """
        SELECT u.id, u.occurred_at, u.billing_period_start, t.slug, t.name, NULL, u.resource_type, u.provider,
               u.model, u.service_name, u.feature_key, u.agent_id, u.quantity, u.unit, u.cost, u.currency, u.source,
               u.status, u.external_reference, u.idempotency_key, u.resource_id
        FROM chargeback_usagerecord u LEFT JOIN teams_team t ON t.id = u.team_id
        {where} ORDER BY u.id DESC""",
}


def copy_reference(what: str, team_id: int | None) -> tuple[float, int, float]:
    """Seconds, bytes and peak RSS growth (MiB) of ``COPY (…) TO STDOUT WITH CSV`` read to its end."""
    from django.db import connection

    alias = "w.team_id" if what == "ledger" else "u.team_id"
    sql = COPY_SQL[what].format(where=f"WHERE {alias} = {int(team_id)}" if team_id else "")
    connection.ensure_connection()
    size = 0
    with PeakRss() as memory:
        t0 = time.perf_counter()
        with connection.connection.cursor() as cursor:
            with cursor.copy(f"COPY ({sql}) TO STDOUT WITH CSV HEADER") as copy:
                for block in copy:
                    size += len(block)
        seconds = time.perf_counter() - t0
    return seconds, size, memory.growth_mib


def export(client, what: str, fmt: str, team_id: int | None) -> tuple[float, int, float]:
    """Seconds, bytes and peak RSS growth (MiB) of the admin's export, the response read to its end."""
    from django.urls import reverse

    model = "wallets_ledgerentry" if what == "ledger" else "chargeback_usagerecord"
    url = reverse(f"admin:{model}_export" + ("_xlsx" if fmt == "xlsx" else ""))
    size = 0
    with PeakRss() as memory:
        t0 = time.perf_counter()
        response = client.get(url, {"team": team_id} if team_id else {})
        assert response.status_code == 200, response.status_code
        for chunk in response.streaming_content:
            size += len(chunk)
        response.close()
        seconds = time.perf_counter() - t0
    return seconds, size, memory.growth_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000", help="the two sizes, comma-separated")
    parser.add_argument("--keep", action="store_true", help="reuse the rows an earlier run loaded")
    parser.add_argument("--only", choices=["csv", "xlsx"], help="one format only")
    parser.add_argument("--tables", default="ledger,usage", help="ledger, usage or both, comma-separated")
    args = parser.parse_args()
    keep = args.keep
    sizes = sorted(int(n) for n in args.rows.split(","))
    formats = [args.only] if args.only else ["csv", "xlsx"]
    tables = args.tables.split(",")
    small, large = sizes[0], sizes[-1]
    bench_database("bench_admin_export", keep=keep)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client
    from django.test.utils import setup_test_environment

    from teams.groups import billing_groups_sync
    from teams.models import Team
    from wallets.models import LedgerEntry

    setup_test_environment()
    print(f"admin export benchmark: {machine_facts()}")
    if not keep or not LedgerEntry.objects.exists():
        load(small, large)
    billing_groups_sync()
    user, _ = get_user_model().objects.get_or_create(username="bench-finance", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="finance"))
    client = Client()
    client.force_login(user)
    small_team = Team.objects.get(slug="small").pk

    print(f"{'export':<22} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'MiB out':>8} {'peak RSS +MiB':>14}"
          f"   reference COPY: {'seconds':>7} {'rows/s':>9} {'RSS +MiB':>9}   ratio")
    for what in tables:
        for rows in (small, large) if small != large else (large,):
            team = small_team if rows == small and small != large else None
            ref_s, _ref_bytes, ref_mem = copy_reference(what, team)
            for fmt in formats:
                seconds, size, growth = export(client, what, fmt, team)
                print(f"{what + ' ' + fmt.upper():<22} {rows:>10,} {seconds:>8.1f} {rows / seconds:>9,.0f} "
                      f"{size / 2**20:>8.1f} {growth:>14.1f}   {'':>16}{ref_s:>7.2f} {rows / ref_s:>9,.0f} "
                      f"{ref_mem:>9.1f}   {seconds / ref_s:5.1f}x")
    print(f"load average after the run: {load_average()}")


if __name__ == "__main__":
    main()
