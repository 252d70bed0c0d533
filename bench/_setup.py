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
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")


def bench_url(name: str) -> str:
    """The URL of the scratch database ``name`` on ``DATABASE_URL``'s server.

    Exits with a message unless ``DATABASE_URL`` names a PostgreSQL server. The database is ``name``, whatever the URL names, except a
    URL naming ``<name>_<suffix>`` (two checkouts side by side): still a scratch database, so nothing
    but a benchmark database is ever dropped.
    """
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    if parts.scheme not in _POSTGRES_SCHEMES:
        sys.exit(f"{Path(sys.argv[0]).name} runs on PostgreSQL only: set "
                 f"DATABASE_URL=postgres://user@host:5432/{name} (got {url or 'nothing'!r})")
    asked = parts.path.lstrip("/")
    database = asked if re.fullmatch(rf"{re.escape(name)}_[a-z0-9_]+", asked) else name
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
