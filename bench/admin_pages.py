"""Benchmark: the finance admin's big pages with 1,000,000 usage records and 1,000,000 ledger entries.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_admin_pages .venv/bin/python bench/admin_pages.py [--keep]

Recreates the scratch database (``--keep`` reuses what an earlier run loaded), then loads with SQL
``generate_series``: 200 teams with a wallet each, 1,000,000 usage records over the last 12
months (5 % without a team), 1,000,000 ledger entries (top-ups of 0.01 in a consistent chain,
5,000 per wallet), 2,400 invoices (some overdue) and 12 committed allocation runs. It then serves
each page through Django's test client, logged in as a member of the ``finance`` group, and
prints the median and worst of ``REPEAT`` requests after ``WARM`` warm-up ones, and the number of
SQL queries of one request (the same whatever the number of rows: nothing is read per row).

Target: at most 500 ms per page. The machine is shared (two cores, four helpers): the load
average is printed with the figures.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, machine_facts  # noqa: E402

USAGE = 1_000_000
LEDGER = 1_000_000
TEAMS = 200
WARM = 2
REPEAT = 7
TARGET_MS = 500


def load() -> None:
    """Teams, wallets, usage, ledger, invoices and runs, inserted with SQL (minutes, not hours)."""
    from django.db import connection

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO teams_team (name, slug, cost_center, parent_id, currency, is_active, created_at)
            SELECT 'Team ' || lpad(g::text, 3, '0'), 'team-' || g, 'CC-' || (1000 + g), NULL, 'USD', true, now()
            FROM generate_series(1, %s) AS g
            """,
            [TEAMS],
        )
        cursor.execute(
            """
            INSERT INTO wallets_wallet (team_id, user_id, currency, balance, reserved, granted_balance, status,
                low_balance_warned, last_top_up_amount, created_at, updated_at)
            SELECT id, NULL, 'USD', 50, 0, 0, 'active', false, 0.01, now(), now() FROM teams_team ORDER BY id
            """
        )
        # Usage: 12 months ending this month; every 20th record has no team (the unallocated pool).
        cursor.execute(
            """
            INSERT INTO chargeback_usagerecord (team_id, user_id, agent_id, resource_type, provider, model, unit,
                quantity, cost, currency, occurred_at, billing_period_start, source, feature_key,
                external_reference, idempotency_key, metadata, effective_cost, charge_category, service_name,
                sub_account_name, resource_id, tags, created_at)
            SELECT CASE WHEN g %% 20 = 0 THEN NULL ELSE t.first_id + g %% %s END, NULL, '',
                (ARRAY['cloud', 'llm', 'storage', 'query'])[1 + g %% 4],
                (ARRAY['AWS', 'GCP', 'Azure', 'openai'])[1 + (g / 7) %% 4], '', 'Hours', 1,
                round((1 + g %% 997) / 1000.0, 12), 'USD', m.day + ((g %% 27) || ' days')::interval,
                m.day::date, 'api', '', '', 'bench-' || g, '{}'::jsonb, NULL, 'Usage',
                (ARRAY['Amazon EC2', 'BigQuery', 'Blob Storage', 'gpt-4o'])[1 + g %% 4], '', '', '{}'::jsonb, now()
            FROM generate_series(1, %s) AS g
            CROSS JOIN (SELECT min(id) AS first_id FROM teams_team) AS t
            CROSS JOIN LATERAL (
                SELECT date_trunc('month', now() AT TIME ZONE 'UTC') - ((g %% 12) || ' months')::interval AS day
            ) AS m
            """,
            [TEAMS, USAGE],
        )
        # Ledger: a consistent chain of 0.01 top-ups per wallet, newest ids newest in time.
        cursor.execute("SELECT min(id), count(*) FROM wallets_wallet")
        first_wallet, wallets = cursor.fetchone()
        per_wallet = LEDGER // wallets
        cursor.execute(
            """
            INSERT INTO wallets_ledgerentry (wallet_id, entry_type, amount, reserved_delta, balance_before,
                balance_after, reserved_before, reserved_after, currency, idempotency_key, reference_type,
                reference_id, feature_key, description, created_by_id, created_at, metadata)
            SELECT %s + (g - 1) %% %s, 'top_up', 0.01, 0, ((g - 1) / %s) * 0.01, ((g - 1) / %s + 1) * 0.01, 0, 0,
                'USD', 'bulk-' || g, 'external_payment', 'PO-' || g, '', 'bench top-up', NULL,
                now() - ((%s - g) || ' seconds')::interval, '{}'::jsonb
            FROM generate_series(1, %s) AS g
            """,
            [first_wallet, wallets, wallets, wallets, LEDGER, per_wallet * wallets],
        )
        cursor.execute("UPDATE wallets_wallet SET balance = %s * 0.01", [per_wallet])
        # Invoices: one per team and month for the last 12 months; those of 3 months ago are overdue.
        cursor.execute(
            """
            INSERT INTO invoices_invoice (team_id, user_id, kind, status, number, period_start, period_end, currency,
                subtotal, tax_rate, tax_amount, total, issue_date, due_date, allocation_run_id, team_name,
                cost_center, billing_address, pdf, pdf_sha256, created_at, updated_at, issued_at, payment_reference,
                credited_total)
            SELECT t.id, NULL, 'chargeback', CASE WHEN m.n = 3 THEN 'overdue' WHEN m.n > 3 THEN 'paid' ELSE 'draft' END,
                CASE WHEN m.n >= 3 THEN 'INV-' || to_char(m.day, 'YYYYMM') || '-' || t.id END,
                m.day::date, (m.day + interval '1 month')::date, 'USD', 100 + t.id, 0, 0, 100 + t.id,
                CASE WHEN m.n >= 3 THEN (m.day + interval '1 month')::date END,
                CASE WHEN m.n >= 3 THEN (m.day + interval '2 months')::date END,
                NULL, t.name, t.cost_center, '', '', '', now(), now(), CASE WHEN m.n >= 3 THEN now() END,
                CASE WHEN m.n > 3 THEN 'TRX-' || t.id ELSE '' END, 0
            FROM teams_team AS t
            CROSS JOIN LATERAL (
                SELECT n, date_trunc('month', now() AT TIME ZONE 'UTC') - (n || ' months')::interval AS day
                FROM generate_series(1, 12) AS n
            ) AS m
            """
        )
        cursor.execute(
            """
            INSERT INTO chargeback_allocationrun (period_start, period_end, status, dry_run, rule_id, team_id,
                currency, total_cost, allocated_cost, unallocated_cost, record_count, warnings, created_by_id,
                created_at, committed_at)
            SELECT m.day::date, (m.day + interval '1 month')::date, 'committed', false, NULL, NULL, 'USD',
                1000, 950, 50, 83333, '[]'::jsonb, NULL, now(), now()
            FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') - (n || ' months')::interval AS day
                  FROM generate_series(1, 12) AS n) AS m
            """
        )
        for table in ("chargeback_usagerecord", "wallets_ledgerentry", "invoices_invoice", "wallets_wallet",
                      "teams_team", "chargeback_allocationrun"):
            cursor.execute(f"ANALYZE {table}")
    print(f"loaded {USAGE:,} usage records, {per_wallet * wallets:,} ledger entries, {TEAMS} teams "
          f"in {time.perf_counter() - t0:.1f} s")


def main() -> None:
    keep = "--keep" in sys.argv
    bench_database("bench_admin_pages", keep=keep)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from chargeback.models import UsageRecord
    from teams.groups import billing_groups_sync
    from teams.models import Team

    setup_test_environment()  # the test client's "testserver" host, locmem e-mail
    print(f"admin pages benchmark on database bench_admin_pages: {machine_facts()}")
    if not keep or not UsageRecord.objects.exists():
        load()
    billing_groups_sync()
    user, _ = get_user_model().objects.get_or_create(username="bench-finance", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="finance"))
    client = Client()
    client.force_login(user)

    team = Team.objects.order_by("pk")[10]
    from django.utils import timezone

    this_month = timezone.now().strftime("%Y-%m")
    pages = [
        ("dashboard (admin index)", "/admin/"),
        ("ledger entries", "/admin/wallets/ledgerentry/"),
        ("ledger entries, one team", f"/admin/wallets/ledgerentry/?team={team.pk}"),
        ("ledger entries, search by key", "/admin/wallets/ledgerentry/?q=bulk-500000"),
        ("usage records", "/admin/chargeback/usagerecord/"),
        ("usage records, this month", f"/admin/chargeback/usagerecord/?period={this_month}"),
        ("usage records, one team", f"/admin/chargeback/usagerecord/?team={team.pk}"),
        ("invoices", "/admin/invoices/invoice/"),
        ("invoices, overdue", "/admin/invoices/invoice/?overdue=yes"),
    ]
    print(f"{'page':<34} {'median':>9} {'worst':>9} {'queries':>8}  target {TARGET_MS} ms")
    for label, url in pages:
        for _ in range(WARM):
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
        samples = []
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            client.get(url)
            samples.append((time.perf_counter() - t0) * 1000)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        median = statistics.median(samples)
        verdict = "met" if median <= TARGET_MS else "MISSED"
        print(f"{label:<34} {median:>7.0f} ms {max(samples):>6.0f} ms {len(queries):>8}  {verdict}")
    with open("/proc/loadavg") as f:
        print(f"load average after the run: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
