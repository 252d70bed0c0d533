"""Benchmark: the REST API served by gunicorn (2 workers) on PostgreSQL, driven over loopback.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_api .venv/bin/python bench/api_load.py

Recreates the database ``bench_api`` (PostgreSQL only) and loads, through the services: the demo
price catalog, 1,000 teams each with a funded wallet and an API key, a finance user and a member of
team 0 with their tokens. Then, by SQL ``generate_series`` (as ``wallet_balance_read.py`` does):
1,000,000 usage records over 10 teams and 1,000,000 ledger entries on one wallet (a consistent
before/after chain). Starts ``gunicorn -w 2`` (sync workers) on 127.0.0.1 and drives it from this
process (a second process) with threads, each request on its own HTTP/1.1 connection (sync workers
close the connection after every response); Django keeps its database connections
(``conn_max_age=600`` in the URL, as a production deployment should), then prints:

1. ``POST usage/batch/`` with 1,000 records per request (2 threads): records/s (target ≥ 5,000/s);
2. ``POST charges/`` (4 items, one per call) on distinct wallets, each with its team's key
   (4 threads): requests/s, p50/p99 latency;
3. ``GET usage/`` (first page, 100 rows) with 1,000,000 rows in the table, as finance (all teams) and
   as a member (one team of 100,000 rows), and ``GET wallets/{id}/transactions/`` on the
   1,000,000-entry wallet (1 thread each): p50/p99 latency (target p99 ≤ 100 ms).

Throttling is set out of reach (the rates are configuration). The client runs on the same 2 cores
as gunicorn and PostgreSQL, so every figure includes the client's own Python time; the machine's
load average is printed with the figures.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import ROOT, bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_api"
HOST, PORT = "127.0.0.1", 8765
TEAMS = 1000
USAGE_ROWS = 1_000_000
USAGE_TEAMS = 10
LEDGER_ROWS = 1_000_000
BATCHES, BATCH_SIZE, BATCH_THREADS = 30, 1000, 2
CHARGES, CHARGE_THREADS = 1000, 4
READS = 400



def load() -> dict:
    """Teams, wallets, keys and users through the services; the big tables by generate_series."""
    import datetime as dt

    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from billing_site.management.commands.demo import EXAMPLE_PRICES
    from chargeback.models import Price
    from teams.models import Team, TeamMembership
    from teams.services import api_key_create
    from wallets.services.posting import wallet_top_up
    from wallets.services.wallets import wallet_open

    t0 = time.perf_counter()
    valid_from = timezone.make_aware(dt.datetime(2024, 1, 1))
    Price.objects.bulk_create([Price(category=c, provider=p, model=m, unit=u, unit_price=price, currency="USD",
                                     valid_from=valid_from) for c, p, m, u, price in EXAMPLE_PRICES])
    Team.objects.bulk_create([Team(name=f"Team {i}", slug=f"team-{i}", currency="USD") for i in range(TEAMS)])
    teams = list(Team.objects.order_by("pk"))
    keys, wallets = [], []
    for team in teams:
        wallet = wallet_open(team=team)
        wallet_top_up(wallet=wallet, amount=Decimal(1000), idempotency_key=f"fund-{wallet.pk}")
        wallets.append(wallet.pk)
        keys.append(api_key_create(team=team, name="bench").raw_key)
    finance = User.objects.create_user("finance")
    finance.groups.add(Group.objects.get_or_create(name="finance")[0])
    member = User.objects.create_user("member")
    TeamMembership.objects.create(team=teams[0], user=member)
    print(f"loaded {TEAMS:,} teams with wallets and keys through the services in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    team_ids = [t.pk for t in teams[:USAGE_TEAMS]]
    big_wallet = wallets[-1]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO chargeback_usagerecord (team_id, user_id, agent_id, resource_type, provider, model, unit,
                quantity, cost, currency, occurred_at, billing_period_start, source, feature_key,
                external_reference, idempotency_key, metadata, charge_category, service_name, sub_account_name,
                resource_id, tags, created_at)
            SELECT (%s::bigint[])[1 + g %% %s], NULL, 'agent-' || (g %% 50), 'llm', 'openai', 'gpt-4', 'token',
                1000, 0.03, 'USD', timestamptz '2024-09-01' + (g || ' seconds')::interval, date '2024-09-01', 'api',
                'feature-' || (g %% 20), '', 'bulk-' || g, '{}'::jsonb, '', '', '', '', '{}'::jsonb, now()
            FROM generate_series(1, %s) AS g
            """,
            [team_ids, USAGE_TEAMS, USAGE_ROWS],
        )
        # The funding top-up is the wallet's entry 1 (balance 0 → 1000); entry g continues the chain.
        cursor.execute(
            """
            INSERT INTO wallets_ledgerentry (wallet_id, entry_type, amount, reserved_delta, balance_before,
                balance_after, reserved_before, reserved_after, currency, idempotency_key, reference_type,
                reference_id, feature_key, description, created_by_id, created_at, metadata)
            SELECT %s, 'top_up', 0.01, 0, 1000 + (g - 1) * 0.01, 1000 + g * 0.01, 0, 0, 'USD', 'bulk-' || g, '',
                '', '', 'bench bulk top-up', NULL, now(), '{}'::jsonb
            FROM generate_series(1, %s) AS g
            """,
            [big_wallet, LEDGER_ROWS - 1],
        )
        cursor.execute("UPDATE wallets_wallet SET balance = 1000 + %s * 0.01 WHERE id = %s", [LEDGER_ROWS - 1, big_wallet])
        cursor.execute("ANALYZE")
    print(f"inserted {USAGE_ROWS:,} usage records and {LEDGER_ROWS - 1:,} ledger entries in "
          f"{time.perf_counter() - t0:.1f} s")
    return {
        "keys": keys, "wallets": wallets, "big_wallet": big_wallet,
        "finance": Token.objects.create(user=finance).key, "member": Token.objects.create(user=member).key,
    }


def start_gunicorn(database_url: str) -> subprocess.Popen:
    # Persistent connections, as production runs: without them every request opens a new PostgreSQL
    # backend whose catalog caches start cold (~0.2 s for a charge's first queries).
    persistent = database_url + ("&" if "?" in database_url else "?") + "conn_max_age=600&conn_health_checks=true"
    env = {**os.environ, "DATABASE_URL": persistent, "DEBUG": "false",
           "API_THROTTLE_RATE": "100000000/min", "API_THROTTLE_RATE_MONEY": "100000000/min",
           "ALLOWED_HOSTS": "127.0.0.1,localhost"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "billing_site.wsgi", "--workers", "2", "--bind", f"{HOST}:{PORT}", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection((HOST, PORT), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit("gunicorn did not start")


def request(method: str, path: str, auth: str, body: dict | None = None, headers: dict | None = None):
    """One request on a fresh connection; returns (status, seconds, parsed body)."""
    payload = json.dumps(body).encode() if body is not None else None
    all_headers = {"Authorization": auth, "Content-Type": "application/json", **(headers or {})}
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, PORT, timeout=120)
    conn.request(method, path, body=payload, headers=all_headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return response.status, elapsed, data


def run_threads(threads: int, jobs: list, work) -> tuple[float, list[float], list[int]]:
    """Run ``work(job)`` for every job from ``threads`` threads; returns wall time, latencies, statuses."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    queue = list(reversed(jobs))

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            status, elapsed, _ = work(job)
            with lock:
                latencies.append(elapsed)
                statuses.append(status)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - t0, latencies, statuses


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(statuses: list[int]) -> str:
    counts: dict[int, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{n}× {s}" for s, n in sorted(counts.items()))


def main() -> None:
    url = bench_database(BENCH_DB)
    from billing_site.management.commands.demo import DEMO_CALL_ITEMS

    call_items = [{**item, "quantity": str(item["quantity"])} for item in DEMO_CALL_ITEMS]  # as JSON sends it
    print(f"API load benchmark on database {BENCH_DB}: {machine_facts()}")
    data = load()
    from django.db import connections

    connections.close_all()
    server = start_gunicorn(url)
    try:
        key0 = f"Api-Key {data['keys'][0]}"
        # warm both workers (imports, first queries, connection)
        for _ in range(6):
            request("GET", "/api/v1/teams/", f"Token {data['finance']}")

        # 1. usage batches
        def batch(i):
            records = [{"resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token",
                        "quantity": "1000", "occurred_at": "2024-10-15T12:00:00Z", "agent_id": "agent-1",
                        "idempotency_key": f"batch-{i}-{j}"} for j in range(BATCH_SIZE)]
            return request("POST", "/api/v1/usage/batch/", key0, {"records": records})

        wall, lat, statuses = run_threads(BATCH_THREADS, list(range(BATCHES)), batch)
        print(f"POST usage/batch/ ({BATCH_SIZE:,} records each, {BATCH_THREADS} threads): "
              f"{BATCHES * BATCH_SIZE / wall:,.0f} records/s ({BATCHES} requests in {wall:.1f} s; "
              f"p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms per request; {summary(statuses)}; "
              f"target ≥ 5,000 records/s)")

        # 2. charges on distinct wallets
        def charge(i):
            team = i % len(data["keys"])
            return request("POST", "/api/v1/charges/", f"Api-Key {data['keys'][team]}",
                           {"feature_key": "call", "items": call_items}, {"Idempotency-Key": f"charge-{i}"})

        wall, lat, statuses = run_threads(CHARGE_THREADS, list(range(CHARGES)), charge)
        print(f"POST charges/ (distinct wallets, {CHARGE_THREADS} threads): {CHARGES / wall:,.0f} requests/s, "
              f"p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms ({summary(statuses)})")

        # 3. reads on million-row tables
        reads = [
            ("GET usage/ as finance (1,000,000 rows visible)", "/api/v1/usage/", data["finance"]),
            ("GET usage/ as a member (100,000 rows of one team)", "/api/v1/usage/", data["member"]),
            ("GET usage/?provider=openai&from=… as finance", "/api/v1/usage/?provider=openai&from=2024-09-05T00:00:00Z",
             data["finance"]),
            (f"GET wallets/{{id}}/transactions/ ({LEDGER_ROWS:,} entries)",
             f"/api/v1/wallets/{data['big_wallet']}/transactions/", data["finance"]),
        ]
        for label, path, token in reads:
            for _ in range(10):
                request("GET", path, f"Token {token}")
            wall, lat, statuses = run_threads(1, list(range(READS)), lambda _i: request("GET", path, f"Token {token}"))
            print(f"{label}: p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms over {READS} requests "
                  f"({summary(statuses)}; target p99 ≤ 100 ms)")
        # the page deep in the table: follow the cursor 50 pages down, then time that page
        path = "/api/v1/usage/"
        for _ in range(50):
            _s, _e, body = request("GET", path, f"Token {data['finance']}")
            path = json.loads(body)["next"].split(f"{PORT}", 1)[1]
        wall, lat, statuses = run_threads(1, list(range(READS)), lambda _i: request("GET", path, f"Token {data['finance']}"))
        print(f"GET usage/ page 51 by cursor as finance: p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms "
              f"({summary(statuses)})")
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
