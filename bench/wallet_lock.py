"""Benchmark: how long a charge holds one hot wallet's row lock, the SQL function alone, beside the bare row.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_lock .venv/bin/python bench/wallet_lock.py \\
        [--rounds 3] [--seconds 5] [--clients 8]

Recreates the database named in DATABASE_URL (any scratch name), migrates it, opens one funded
wallet and installs beside ``wallets_charge`` the body it had before (wallets migration 0010's,
as ``wallets_charge_0010``; 0009's before that). Then, in each of ``--rounds`` interleaved rounds, pgbench drives the
one wallet from ``--clients`` connections for ``--seconds`` with each of three scripts, no Python
in the way:

* ``bare``: ``UPDATE wallets_wallet SET balance = balance - 0.01 WHERE id = … AND balance >= 0.01``;
* ``0010``: ``SELECT * FROM wallets_charge_0010(…)``, the function before;
* ``now``: ``SELECT * FROM wallets_charge(…)``, the function the product calls.

Every transaction of each script locks the same row until its commit, so they run one at a time
and 1 / (transactions/s) is the time the row lock is held, commit included. Prints that time for
each, the ratio to the bare row and the load average.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import ROOT, bench_database, libpq_dsn, load_average, machine_facts, pgbench_path  # noqa: E402

BENCH_DB = "bench_lock"

CHARGE = ("SELECT * FROM {function}(:wallet, 'team:' || :team, 'lock-{label}-' || :client_id || '-' || :key, "
          "'fingerprint', 0.01, 'bench', '', '', '', NULL, '{{}}', now(), '2026-01-01T00:00:00+00:00', "
          "'prepaid_team', 0, 'percent_of_last_top_up', 0, true);")


def pgbench(dsn: dict, script: str, wallet: int, team: int, clients: int, seconds: int) -> float:
    """Transactions/s of ``script`` from pgbench (``clients`` connections, 2 threads)."""
    import os

    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE", "password": "PGPASSWORD"}
    env = {**os.environ, **{names[k]: str(v) for k, v in dsn.items()}}
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write("\\set key random(1, 9000000000000000000)\n" + script + "\n")
        f.flush()
        run = subprocess.run([pgbench_path(), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", f.name,
                              "-D", f"wallet={wallet}", "-D", f"team={team}"],
                             capture_output=True, text=True, env=env, check=True)
    return float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="seconds of each script per round")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    url = bench_database(BENCH_DB)
    from django.db import connection

    from teams.models import Team
    from wallets.services.posting import wallet_top_up
    from wallets.services.wallets import wallet_open

    print(f"wallet lock benchmark on {url.rsplit('/', 1)[1]}: {machine_facts()}")
    team = Team.objects.create(name="Hot", slug="hot", currency="USD")
    wallet = wallet_open(team=team)
    wallet_top_up(wallet=wallet, amount=Decimal(10_000_000), idempotency_key="fund")
    before = (ROOT / "wallets/migrations/0010_wallets_charge.sql").read_text(encoding="utf-8")
    with connection.cursor() as cursor:
        cursor.execute(before.replace("FUNCTION wallets_charge(", "FUNCTION wallets_charge_0010(", 1))
    connection.close()
    dsn = libpq_dsn()
    scripts = {
        "bare": "UPDATE wallets_wallet SET balance = balance - 0.01 WHERE id = :wallet AND balance >= 0.01;",
        "0010": CHARGE.format(function="wallets_charge_0010", label="0010"),
        "now": CHARGE.format(function="wallets_charge", label="now"),
    }
    totals = dict.fromkeys(scripts, 0.0)
    for r in range(args.rounds):
        rates = {name: pgbench(dsn, script, wallet.pk, team.pk, args.clients, args.seconds)
                 for name, script in scripts.items()}
        for name, rate in rates.items():
            totals[name] += rate
        print(f"round {r + 1}: " + " | ".join(f"{name} {rate:,.0f} tx/s, lock held {1000 / rate:.3f} ms"
                                              for name, rate in rates.items()) + f" | load {load_average()}")
    bare = totals["bare"]
    print(f"over {args.rounds} rounds: lock held {1000 * args.rounds / totals['0010']:.3f} ms (0010) → "
          f"{1000 * args.rounds / totals['now']:.3f} ms (now); bare row {1000 * args.rounds / bare:.3f} ms; "
          f"charge / bare row: {totals['0010'] / bare:.2f} (0010) → {totals['now'] / bare:.2f} (now) "
          f"(load average {load_average()})")


if __name__ == "__main__":
    main()
