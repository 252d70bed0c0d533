"""Benchmark: allocate 1,000,000 usage records over 200 teams with 5 rules (target: at most 10 s).

Run on PostgreSQL only (the production database)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_allocate .venv/bin/python bench/allocate.py

The script (re)creates the database ``bench_allocate`` on the server of ``DATABASE_URL`` (dropping
it first; whatever database name the URL carries, only ``bench_allocate`` is touched), migrates it,
loads the usage with ``INSERT … SELECT generate_series`` in SQL, then times
``allocation_run_execute`` for September 2024 (create + commit, one transaction) and prints the
seconds, the rows written, the number of database groups and the tie-out line.

Data: 200 teams of 5 members; 1,000,000 records of September 2024, about 80 % carrying a team and
20 % in the unallocated pool; 7 resource types, 5 providers, 10 services, a ``business_unit`` tag
on a quarter of the records, a user on a third of them, a credit (negative cost) every 97th record.
Rules: equal_split of the untagged Azure cost over 5 teams; fixed_split of the untagged "Amazon S3"
cost (50/30/20); by_team on one team's cost among its members; by_user on another team's cost to
each record's user; by_usage of the rest of the unallocated pool over every team with usage.

Options: ``--records N`` (default 1,000,000), ``--teams N`` (default 200), ``--keep`` to reuse an
already loaded database (skips drop, migrate and load).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_allocate"
USERS_PER_TEAM = 5


LOAD_SQL = [
    # Teams and their members.
    """
    INSERT INTO teams_team (name, slug, cost_center, currency, is_active, created_at)
    SELECT 'Team ' || t, 'team-' || t, 'CC-' || (1000 + t), 'USD', true, now()
    FROM generate_series(1, %(teams)s) AS t
    """,
    """
    INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                           date_joined)
    SELECT '!', false, 'user' || u, '', '', 'user' || u || '@example.com', false, true, now()
    FROM generate_series(1, %(teams)s * %(per_team)s) AS u
    """,
    """
    INSERT INTO teams_teammembership (user_id, team_id, role, created_at)
    SELECT u.id, t.id, 'member', now()
    FROM auth_user u JOIN teams_team t ON t.slug = 'team-' || ((substr(u.username, 5)::int - 1) / %(per_team)s + 1)
    """,
    # Usage: a multiplicative hash h of g drives every column (different bits for different columns),
    # so the load is deterministic but the columns are not correlated with each other.
    """
    WITH teams AS (SELECT array_agg(id ORDER BY id) AS ids FROM teams_team),
         users AS (SELECT array_agg(id ORDER BY id) AS ids FROM auth_user),
         hashed AS (
           SELECT g, (g * 2654435761) %% 4294967296 AS h
           FROM generate_series(1::bigint, %(records)s::bigint) AS g
         ),
         rows AS (
           SELECT g, h,
                  ((h >> 8) %% %(teams)s)::int AS team_index,
                  ((h >> 3) %% 5)::int AS pool_draw,
                  ((h >> 16) %% %(per_team)s)::int AS member,
                  ((h >> 20) %% 12)::int AS user_draw,
                  (array['compute','storage','llm','query','stt','tts','telephony'])[1 + ((h >> 5) %% 7)::int]
                      AS resource_type,
                  (array['AWS','AWS','Azure','Google Cloud','openai','twilio'])[1 + ((h >> 11) %% 6)::int] AS provider,
                  (array['Amazon Elastic Compute Cloud','Amazon S3','Amazon RDS','Virtual Machines',
                         'Azure Blob Storage','Compute Engine','BigQuery','','Amazon CloudFront',
                         'Azure SQL Database'])[1 + ((h >> 24) %% 10)::int] AS service_name,
                  ((h >> 1) %% 4)::int AS tag_draw
           FROM hashed
         )
    INSERT INTO chargeback_usagerecord (
        team_id, user_id, agent_id, resource_type, provider, model, unit, quantity, cost, currency,
        occurred_at, billing_period_start, source, feature_key, external_reference, idempotency_key, metadata,
        effective_cost, charge_category, service_name, sub_account_name, resource_id, tags, created_at)
    SELECT
        CASE WHEN pool_draw = 0 THEN NULL ELSE teams.ids[1 + team_index] END,
        CASE WHEN user_draw < 4 THEN users.ids[1 + team_index * %(per_team)s + member] END,
        '', resource_type, provider, '', 'Hours', 1,
        (CASE WHEN g %% 97 = 0 THEN -1 ELSE 1 END) * (h %% 1000003)::numeric / 100000
          + 0.000000000001 * (g %% 1000),
        'USD',
        timestamptz '2024-09-01 00:00:00+00' + (g %% 720) * interval '1 hour',
        date '2024-09-01', 'focus_import', '', '', 'bench-' || g, '{}'::jsonb,
        NULL, 'Usage', service_name, '', '',
        CASE WHEN tag_draw = 0
             THEN jsonb_build_object('business_unit', (array['research','sales','support'])[1 + (g %% 3)::int])
             ELSE '{}'::jsonb END,
        now()
    FROM rows, teams, users
    """,
    "ANALYZE",
]


def _load(records: int, teams: int) -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for sql in LOAD_SQL:
            cursor.execute(sql, {"records": records, "teams": teams, "per_team": USERS_PER_TEAM})
    return time.perf_counter() - started


def _make_rules() -> None:
    from chargeback.models import AllocationRule, AllocationTarget
    from teams.models import Team

    teams = list(Team.objects.order_by("pk"))
    shared = AllocationRule.objects.create(
        name="Untagged Azure, evenly", rule_type="equal_split", priority=10, match_provider="Azure",
    )
    AllocationTarget.objects.bulk_create([AllocationTarget(rule=shared, team=t) for t in teams[:5]])
    storage = AllocationRule.objects.create(
        name="Untagged S3, fixed", rule_type="fixed_split", priority=20, match_service_name="Amazon S3",
    )
    AllocationTarget.objects.bulk_create([
        AllocationTarget(rule=storage, team=teams[5], percentage=50),
        AllocationTarget(rule=storage, team=teams[6], percentage=30),
        AllocationTarget(rule=storage, team=teams[7], percentage=20),
    ])
    AllocationRule.objects.create(
        name="Platform among its members", rule_type="by_team", priority=30, source="team", source_team=teams[0],
    )
    AllocationRule.objects.create(
        name="Data team by user", rule_type="by_user", priority=40, source="team", source_team=teams[1],
    )
    AllocationRule.objects.create(name="Rest of the untagged pool by usage", rule_type="by_usage", priority=1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="reuse the loaded database")
    args = parser.parse_args()

    bench_database(BENCH_DB, keep=args.keep)
    print(machine_facts())
    from chargeback.models import AllocatedCost, AllocationRun, UsageRecord
    from chargeback.periods import BillingPeriod
    from chargeback.services.allocation import allocation_run_execute

    if not args.keep:
        seconds = _load(args.records, args.teams)
        _make_rules()
        print(f"loaded {args.records:,} usage records over {args.teams} teams in {seconds:.1f} s")
    period = BillingPeriod.month("2024-09")
    records = UsageRecord.objects.filter(billing_period_start=period.start).count()

    started = time.perf_counter()
    run = allocation_run_execute(period=period)
    seconds = time.perf_counter() - started

    rows = AllocatedCost.objects.filter(run=run).count()
    print(f"allocate {records:,} records, 5 rules: {seconds:.2f} s (target at most 10 s)")
    print(f"rows written: {rows:,}; database groups: {run.group_count:,}; warnings: {len(run.warnings)}")
    print(f"runs committed for the period: "
          f"{AllocationRun.objects.filter(period_start=period.start, status='committed').count()}")
    exact = run.allocated_cost + run.unallocated_cost == run.total_cost
    print(f"tie-out: allocated {run.allocated_cost:f} of {run.total_cost:f}, unallocated {run.unallocated_cost:f} "
          f"{run.currency} ({'exact' if exact else 'BROKEN'})")


if __name__ == "__main__":
    main()
