"""Benchmark: the REST API served by gunicorn (2 workers) on PostgreSQL, each figure beside its reference.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_api .venv/bin/python bench/api_load.py \
        [--port 8765] [--only batch,charges,reads] [--rounds 3] [--charges 300] [--batches 10] \
        [--usage-rows 1000000] [--ledger-rows 1000000] [--compare-root /tmp/before]

Recreates the database named in DATABASE_URL (any scratch name) and loads, through the services:
the demo price catalog, 1,000 teams each with a funded wallet and an API key, a finance user and a
member of team 0 with their tokens. For the reads, by SQL ``generate_series`` (as
``wallet_balance_read.py`` does): ``--usage-rows`` usage records over 10 teams and
``--ledger-rows`` ledger entries on one wallet. Starts ``python -m gunicorn -w 2`` (sync workers)
on 127.0.0.1:``--port`` serving the product plus one reference endpoint (``bench/bench_site.py``:
the same authentication, permission and throttles, one ``INSERT``), and drives it from this
process with threads, each request on its own HTTP/1.1 connection (sync workers close the
connection after every response); Django keeps its database connections (``conn_max_age=600``).

In each of ``--rounds`` interleaved rounds it prints a figure and its reference, measured one after
the other, then the ratios, the ratio of the sums and the load average:

1. ``batch``: ``POST usage/batch/`` with 1,000 records per request and an ``Idempotency-Key`` (2 threads),
   records/s and the CPU time gunicorn's workers spent a request (read from ``/proc``), beside a
   ``COPY`` of the same rows into the same table (2 threads, each batch in its own transaction, the
   rows rendered by psycopg from Python values): target ≥ 0.5;
2. ``charges``: ``POST charges/`` (4 items, one per call) on distinct wallets, each with its
   team's key (4 threads), requests/s, beside ``POST bench/minimal/`` with the same keys and
   threads: target ≥ 0.5;
3. ``reads``: ``GET usage/`` (first page, 100 rows) as finance (all teams) and as a member (one
   team), and ``GET wallets/{id}/transactions/`` on the big wallet (1 thread each): p50/p99
   latency (target p99 ≤ 100 ms).

Throttling is set out of reach (the rates are configuration). The client runs on the same 2 cores
as gunicorn and PostgreSQL, so every figure includes the client's own Python time, and so does
its reference.
"""

from __future__ import annotations

import argparse
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

from _setup import ROOT, bench_database, libpq_dsn, load_average, machine_facts, ratio_line  # noqa: E402

BENCH_DB = "bench_api"
HOST, PORT = "127.0.0.1", 8765
TEAMS = 1000
USAGE_TEAMS = 10
BATCH_SIZE, BATCH_THREADS = 1000, 2
CHARGE_THREADS = 4
READS = 400


def load(usage_rows: int, ledger_rows: int) -> dict:
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
            [team_ids, USAGE_TEAMS, usage_rows],
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
            [big_wallet, ledger_rows - 1],
        )
        cursor.execute("UPDATE wallets_wallet SET balance = 1000 + %s * 0.01 WHERE id = %s", [ledger_rows - 1, big_wallet])
        cursor.execute("CREATE TABLE bench_minimal (id bigserial PRIMARY KEY, team_id bigint NOT NULL, "
                       "note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
        cursor.execute("ANALYZE")
    print(f"inserted {usage_rows:,} usage records and {ledger_rows - 1:,} ledger entries in "
          f"{time.perf_counter() - t0:.1f} s")
    return {
        "keys": keys, "wallets": wallets, "big_wallet": big_wallet, "teams": [t.pk for t in teams],
        "finance": Token.objects.create(user=finance).key, "member": Token.objects.create(user=member).key,
    }


def start_gunicorn(database_url: str, port: int, root: Path = ROOT) -> subprocess.Popen:
    # Persistent connections, as production runs: without them every request opens a new PostgreSQL
    # backend whose catalog caches start cold (~0.2 s for a charge's first queries).
    persistent = database_url + ("&" if "?" in database_url else "?") + "conn_max_age=600&conn_health_checks=true"
    env = {**os.environ, "DATABASE_URL": persistent, "DEBUG": "false",
           "API_THROTTLE_RATE": "100000000/min", "API_THROTTLE_RATE_MONEY": "100000000/min",
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_SETTINGS_MODULE": "bench_site"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "billing_site.wsgi", "--pythonpath", str(root / "bench"),
         "--workers", "2", "--bind", f"{HOST}:{port}", "--log-level", "warning"],
        cwd=root, env=env,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit("gunicorn did not start")


def workers_cpu(server: subprocess.Popen) -> float:
    """CPU seconds (user + system) used so far by gunicorn's workers (the children of its master), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    total = 0.0
    for pid in children.read_text().split() if children.exists() else []:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker restarted meanwhile
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def request(method: str, path: str, auth: str, body: dict | None = None, headers: dict | None = None,
            port: int | None = None):
    """One request on a fresh connection; returns (status, seconds, parsed body)."""
    payload = json.dumps(body).encode() if body is not None else None
    all_headers = {"Authorization": auth, "Content-Type": "application/json", **(headers or {})}
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port or PORT, timeout=120)  # PORT: set by main() from --port
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


def copy_batch(dsn: dict, team_id: int, label: str) -> tuple[int, float, bytes]:
    """COPY one batch of the same rows ``POST usage/batch/`` stores into the usage table, in its own transaction."""
    import datetime as dt

    import psycopg

    occurred = dt.datetime(2024, 10, 15, 12, tzinfo=dt.timezone.utc)
    t0 = time.perf_counter()
    with psycopg.connect(**dsn) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('chargeback_usagerecord', 'id')) "
                       "FROM generate_series(1, %s)", [BATCH_SIZE])
        ids = [row[0] for row in cursor.fetchall()]
        now = dt.datetime.now(dt.timezone.utc)
        with cursor.copy(COPY_SQL) as copy:
            for j, pk in enumerate(ids):
                copy.write_row([pk, team_id, None, "agent-1", "llm", "openai", "gpt-4", "token", Decimal(1000),
                                Decimal("0.030000000000"), "USD", occurred, dt.date(2024, 10, 1), "api", "", "",
                                f"{label}-{j}", "{}", "", "", "", "", "{}", now])
    return 201, time.perf_counter() - t0, b""


COPY_SQL = (
    "COPY chargeback_usagerecord (id, team_id, user_id, agent_id, resource_type, provider, model, unit, quantity, "
    "cost, currency, occurred_at, billing_period_start, source, feature_key, external_reference, idempotency_key, "
    "metadata, charge_category, service_name, sub_account_name, resource_id, tags, created_at) FROM STDIN"
)


def main() -> None:
    global PORT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=PORT, help=f"gunicorn's port on 127.0.0.1 (default {PORT})")
    parser.add_argument("--only", default="batch,charges,reads", help="sections to run, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of figure and reference")
    parser.add_argument("--charges", type=int, default=300, help="charge requests per round")
    parser.add_argument("--batches", type=int, default=10, help="batches of 1,000 records per round")
    parser.add_argument("--usage-rows", type=int, default=1_000_000, help="usage records loaded for the reads")
    parser.add_argument("--ledger-rows", type=int, default=1_000_000, help="ledger entries of the big wallet")
    parser.add_argument("--compare-root", help="another checkout of the product (e.g. a worktree of the code before a "
                                               "change): its gunicorn, on --port + 1 and the same database, is measured "
                                               "in every batch round too, beside its own COPY")
    args = parser.parse_args()
    PORT = args.port
    sections = set(args.only.split(","))
    url = bench_database(BENCH_DB)
    from billing_site.management.commands.demo import DEMO_CALL_ITEMS

    call_items = [{**item, "quantity": str(item["quantity"])} for item in DEMO_CALL_ITEMS]  # as JSON sends it
    print(f"API load benchmark on database {BENCH_DB}: {machine_facts()}")
    reads_wanted = "reads" in sections
    data = load(args.usage_rows if reads_wanted else 0, args.ledger_rows if reads_wanted else 1)
    dsn = libpq_dsn()
    from django.db import connections

    connections.close_all()
    server = start_gunicorn(url, args.port)
    # The other checkout's server (e.g. the branch point's code), on the same database: same schema required.
    other = start_gunicorn(url, args.port + 1, Path(args.compare_root).resolve()) if args.compare_root else None
    try:
        key0 = f"Api-Key {data['keys'][0]}"
        team0 = data["teams"][0]
        # warm both workers (imports, first queries, connection)
        for port in (args.port, args.port + 1) if other else (args.port,):
            for _ in range(6):
                request("GET", "/api/v1/teams/", f"Token {data['finance']}", port=port)

        # 1. usage batches beside COPY of the same rows
        def batch(label, port=None):
            records = [{"resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token",
                        "quantity": "1000", "occurred_at": "2024-10-15T12:00:00Z", "agent_id": "agent-1",
                        "idempotency_key": f"{label}-{j}"} for j in range(BATCH_SIZE)]
            return request("POST", "/api/v1/usage/batch/", key0, {"records": records}, {"Idempotency-Key": label},
                           port=port)

        servers = [("", server, args.port)] + ([(f"{args.compare_root}: ", other, args.port + 1)] if other else [])
        pairs: dict[str, list] = {name: [] for name, _s, _p in servers}
        for r in range(args.rounds if "batch" in sections else 0):
            # With --compare-root, each round measures both servers, each beside its own COPY, one after the other.
            for name, process, port in servers:
                cpu_before = workers_cpu(process)
                wall, lat, statuses = run_threads(BATCH_THREADS, [f"{name}batch-{r}-{i}" for i in range(args.batches)],
                                                  lambda label, port=port: batch(label, port))
                rate = args.batches * BATCH_SIZE / wall
                python_ms = (workers_cpu(process) - cpu_before) / args.batches * 1000
                cwall, clat, _ = run_threads(BATCH_THREADS, [f"{name}copy-{r}-{i}" for i in range(args.batches)],
                                             lambda label: copy_batch(dsn, team0, label))
                reference = args.batches * BATCH_SIZE / cwall
                pairs[name].append((rate, reference))
                print(f"round {r + 1}: {name}POST usage/batch/ ({BATCH_SIZE:,} records each, {BATCH_THREADS} threads) "
                      f"{rate:,.0f} records/s (p50 {pct(lat, 0.5):.0f} ms a request, gunicorn's CPU {python_ms:.0f} ms "
                      f"a request; {summary(statuses)}) | COPY of the same rows {reference:,.0f} rows/s "
                      f"(p50 {pct(clat, 0.5):.0f} ms a batch) | load {load_average()}")
        for name, measured in pairs.items():
            if measured:
                print(ratio_line(f"{name}POST usage/batch/ / COPY (target >= 0.5)", measured, "rows/s"))

        # 2. charges on distinct wallets beside the minimal endpoint with the same keys
        def charge(i):
            team = i % len(data["keys"])
            return request("POST", "/api/v1/charges/", f"Api-Key {data['keys'][team]}",
                           {"feature_key": "call", "items": call_items}, {"Idempotency-Key": f"charge-{i}"})

        def minimal(i):
            team = i % len(data["keys"])
            return request("POST", "/api/v1/bench/minimal/", f"Api-Key {data['keys'][team]}", {"note": f"m-{i}"},
                           {"Idempotency-Key": f"minimal-{i}"})

        pairs = []
        if "charges" in sections:
            # every key's first use stores its last_used_at: pay that for all keys before measuring
            run_threads(CHARGE_THREADS, list(range(min(TEAMS, args.rounds * args.charges))), minimal)
        for r in range(args.rounds if "charges" in sections else 0):
            jobs = list(range(r * args.charges, (r + 1) * args.charges))
            wall, lat, statuses = run_threads(CHARGE_THREADS, jobs, charge)
            mwall, mlat, mstatuses = run_threads(CHARGE_THREADS, jobs, minimal)
            pairs.append((args.charges / wall, args.charges / mwall))
            print(f"round {r + 1}: POST charges/ ({CHARGE_THREADS} threads, distinct wallets) "
                  f"{args.charges / wall:,.0f} requests/s (p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms; "
                  f"{summary(statuses)}) | POST bench/minimal/ {args.charges / mwall:,.0f} requests/s "
                  f"(p50 {pct(mlat, 0.5):.1f} ms; {summary(mstatuses)}) | load {load_average()}")
        if pairs:
            print(ratio_line("POST charges/ / minimal authenticated endpoint (target >= 0.5)", pairs, "requests/s"))

        # 3. reads on million-row tables
        reads = [
            (f"GET usage/ as finance ({args.usage_rows:,} rows visible)", "/api/v1/usage/", data["finance"]),
            (f"GET usage/ as a member ({args.usage_rows // USAGE_TEAMS:,} rows of one team)", "/api/v1/usage/",
             data["member"]),
            ("GET usage/?provider=openai&from=… as finance", "/api/v1/usage/?provider=openai&from=2024-09-05T00:00:00Z",
             data["finance"]),
            (f"GET wallets/{{id}}/transactions/ ({args.ledger_rows:,} entries)",
             f"/api/v1/wallets/{data['big_wallet']}/transactions/", data["finance"]),
        ]
        for label, path, token in reads if reads_wanted else []:
            for _ in range(10):
                request("GET", path, f"Token {token}")
            wall, lat, statuses = run_threads(1, list(range(READS)), lambda _i: request("GET", path, f"Token {token}"))
            print(f"{label}: p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms over {READS} requests "
                  f"({summary(statuses)}; target p99 ≤ 100 ms)")
        if reads_wanted:
            # the page deep in the table: follow the cursor 50 pages down, then time that page
            path = "/api/v1/usage/"
            for _ in range(50):
                _s, _e, body = request("GET", path, f"Token {data['finance']}")
                path = json.loads(body)["next"].split(f"{PORT}", 1)[1]
            wall, lat, statuses = run_threads(1, list(range(READS)),
                                              lambda _i: request("GET", path, f"Token {data['finance']}"))
            print(f"GET usage/ page 51 by cursor as finance: p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms "
                  f"({summary(statuses)})")
    finally:
        for process in (server, other):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
