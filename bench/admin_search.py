"""Benchmark: the admin's search of the ledger and of usage by a fragment or a team name, with 1,000,000 rows each.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_admin_search .venv/bin/python bench/admin_search.py \
        [--rows 1000000] [--keep]

Recreates the scratch database (``--keep`` reuses what an earlier run loaded), loads with SQL
``generate_series`` 200 teams with a wallet each, ``--rows`` ledger entries and ``--rows`` usage
records (descriptions, references, services and features that vary), then builds the two trigram
indexes (``ledger_search_trgm``, the schema's; ``usage_search_trgm``, measured here only: its write
cost kept it out of the schema) and prints their build time and size.

Then each search is served through the admin (Django's test client, logged in as finance) with
the index and, as the reference in the same run, with the index dropped (what the search costs
without it: a sequential scan): the median of ``REPEAT`` requests after ``WARM``, and the ratio.
Last, what the index costs a write: ``INSERT … SELECT`` of ``--write`` (100,000) rows with the index
and without it, in the same run, and the ratio.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, load_average, machine_facts  # noqa: E402

TEAMS = 200
WARM = 1
REPEAT = 5

LEDGER_ROWS_SQL = """
    INSERT INTO wallets_ledgerentry (wallet_id, entry_type, amount, reserved_delta, balance_before, balance_after,
        reserved_before, reserved_after, currency, idempotency_key, reference_type, reference_id, feature_key,
        description, created_by_id, created_at, metadata)
    SELECT w.first_id + (g - 1) %% %(wallets)s, 'adjustment', 0.01, 0, 0, 0.01, 0, 0, 'USD',
        %(prefix)s || g, 'external_payment', 'INV-' || lpad(g::text, 9, '0'), '',
        (ARRAY['Voice agent call', 'Top-up by card', 'Monthly invoice settlement', 'Refund of order',
               'Credit grant'])[1 + g %% 5] || ', ' ||
        (ARRAY['Berlin', 'Lisbon', 'Osaka', 'Austin', 'Lagos', 'Quito', 'Perth'])[1 + (g / 5) %% 7] || ' #' || g,
        NULL, now() - ((%(rows)s - g) || ' seconds')::interval, '{}'::jsonb
    FROM generate_series(1, %(rows)s) AS g CROSS JOIN (SELECT min(id) AS first_id FROM wallets_wallet) AS w
"""

USAGE_ROWS_SQL = """
    INSERT INTO chargeback_usagerecord (team_id, user_id, agent_id, resource_type, provider, model, unit, quantity,
        cost, currency, occurred_at, billing_period_start, source, feature_key, external_reference,
        idempotency_key, metadata, effective_cost, charge_category, service_name, sub_account_name, resource_id,
        tags, created_at)
    SELECT t.first_id + g %% %(teams)s, NULL, '', (ARRAY['cloud', 'llm', 'storage', 'query'])[1 + g %% 4], 'AWS',
        (ARRAY['gpt-4o', 'claude', 'whisper', 'm7i.large'])[1 + g %% 4], 'Hours', 1,
        round((1 + g %% 997) / 1000.0, 12), 'USD', now() - ((g %% 27) || ' days')::interval,
        date_trunc('month', now())::date, 'focus_import', 'feature-' || g %% 500, 'focus-row-' || g,
        %(prefix)s || g, '{}'::jsonb, NULL, 'Usage',
        (ARRAY['Amazon EC2', 'BigQuery', 'Blob Storage', 'Amazon Transcribe', 'Compute Engine'])[1 + g %% 5], '',
        'arn:aws:ec2:eu-west-1:123456789012:instance/i-' || md5(g::text), '{}'::jsonb, now()
    FROM generate_series(1, %(rows)s) AS g CROSS JOIN (SELECT min(id) AS first_id FROM teams_team) AS t
"""

INDEXES = {
    # name: (table, model); the index is the model's (its migration), else BENCH_ONLY's
    "ledger_search_trgm": ("wallets_ledgerentry", "wallets.LedgerEntry"),
    "usage_search_trgm": ("chargeback_usagerecord", "chargeback.UsageRecord"),
}


def bench_only_index(name: str):
    """The usage table's trigram index is not in the schema (its write cost, printed below): measured here only."""
    from django.contrib.postgres.indexes import GinIndex, OpClass

    from chargeback.models import USAGE_SEARCH_TEXT

    return GinIndex(OpClass(USAGE_SEARCH_TEXT, name="gin_trgm_ops"), name=name)


def create_index(name: str) -> float:
    """Build the index as the model declares it (its migration's SQL); seconds."""
    from django.apps import apps
    from django.db import connection

    table, label = INDEXES[name]
    model = apps.get_model(label)
    index = next((i for i in model._meta.indexes if i.name == name), None) or bench_only_index(name)
    t0 = time.perf_counter()
    with connection.schema_editor(atomic=False) as editor:
        editor.add_index(model, index)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - t0


def drop_index(name: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {name}")


def load(rows: int) -> None:
    from django.db import connection

    t0 = time.perf_counter()
    for name in INDEXES:
        drop_index(name)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO teams_team (name, slug, cost_center, parent_id, currency, is_active, created_at)
            SELECT (ARRAY['Search', 'Maps', 'Voice', 'Ads', 'Mail'])[1 + g %% 5] || ' ' ||
                   (ARRAY['Europe', 'Americas', 'Asia', 'Africa'])[1 + (g / 5) %% 4] || ' ' || g,
                   'team-' || g, 'CC-' || (1000 + g), NULL, 'USD', true, now()
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
        cursor.execute(LEDGER_ROWS_SQL, {"wallets": TEAMS, "rows": rows, "prefix": "bulk-"})
        cursor.execute(USAGE_ROWS_SQL, {"teams": TEAMS, "rows": rows, "prefix": "usage-"})
        for table in ("chargeback_usagerecord", "wallets_ledgerentry", "wallets_wallet", "teams_team"):
            cursor.execute(f"ANALYZE {table}")
    print(f"loaded {rows:,} ledger entries and {rows:,} usage records in {time.perf_counter() - t0:.1f} s")


def timed_get(client, url: str) -> tuple[float, int]:
    for _ in range(WARM):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    samples = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), len(response.context["cl"].result_list)


def main() -> None:
    keep = "--keep" in sys.argv
    rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else 1_000_000
    write = int(sys.argv[sys.argv.index("--write") + 1]) if "--write" in sys.argv else 100_000
    bench_database("bench_admin_search", keep=keep)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from teams.groups import billing_groups_sync
    from wallets.models import LedgerEntry

    setup_test_environment()
    print(f"admin search benchmark: {machine_facts()}")
    if not keep or not LedgerEntry.objects.exists():
        load(rows)
    billing_groups_sync()
    user, _ = get_user_model().objects.get_or_create(username="bench-finance", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="finance"))
    client = Client()
    client.force_login(user)

    for name in INDEXES:
        drop_index(name)
        seconds = create_index(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_size_pretty(pg_relation_size(%s::regclass))", [name])
            size = cursor.fetchone()[0]
        print(f"index {name}: built in {seconds:.1f} s, {size}")

    ledger, usage = "/admin/wallets/ledgerentry/", "/admin/chargeback/usagerecord/"
    searches = [
        ("ledger, description fragment", ledger, "lisbon #77777", "ledger_search_trgm"),
        ("ledger, reference fragment", ledger, "000123456", "ledger_search_trgm"),
        ("ledger, idempotency key", ledger, "bulk-500000", "ledger_search_trgm"),
        ("ledger, team name", ledger, "Maps Asia 17", "ledger_search_trgm"),
        ("usage, service fragment + id", usage, "transcribe", "usage_search_trgm"),
        ("usage, reference fragment", usage, "focus-row-777777", "usage_search_trgm"),
        ("usage, team name", usage, "Voice Africa 132", "usage_search_trgm"),
    ]
    results = {}
    for phase in ("with", "without"):
        if phase == "without":
            for name in INDEXES:
                drop_index(name)
        for label, url, term, _index in searches:
            results[(label, phase)] = timed_get(client, f"{url}?q={term.replace(' ', '+').replace('#', '%23')}")
    print(f"{'search (median of ' + str(REPEAT) + ')':<32} {'rows shown':>10} {'with index':>11} "
          f"{'reference: no index':>20} {'ratio':>7}")
    for label, _url, _term, _index in searches:
        (fast, shown), (slow, _) = results[(label, "with")], results[(label, "without")]
        print(f"{label:<32} {shown:>10} {fast:>8.0f} ms {slow:>17.0f} ms {fast / slow:>7.2f}")

    # What the index costs a write: the same INSERT … SELECT with the index and without it.
    print(f"write cost: INSERT … SELECT of {write:,} rows")
    for name, sql, params in (
        ("ledger_search_trgm", LEDGER_ROWS_SQL, {"wallets": TEAMS, "rows": write}),
        ("usage_search_trgm", USAGE_ROWS_SQL, {"teams": TEAMS, "rows": write}),
    ):
        timings = {}
        for phase in ("without", "with", "without ", "with "):  # alternated, the sums compared
            if phase.strip() == "with":
                create_index(name)
            else:
                drop_index(name)
            with connection.cursor() as cursor:
                t0 = time.perf_counter()
                cursor.execute(sql, {**params, "prefix": f"w{phase.strip()}{len(timings)}-"})
                timings[phase] = time.perf_counter() - t0
        plain = timings["without"] + timings["without "]
        indexed = timings["with"] + timings["with "]
        print(f"  {name:<20} with the index {indexed / 2:6.1f} s, without {plain / 2:6.1f} s (reference), "
              f"ratio {indexed / plain:.2f}; {indexed / 2 / write * 1e6:.0f} µs a row with, "
              f"{plain / 2 / write * 1e6:.0f} µs without")
    drop_index("usage_search_trgm")  # not part of the schema
    print(f"load average after the run: {load_average()}")


if __name__ == "__main__":
    main()
