"""Starting worker processes from Python (``render_invoices``, the benchmarks, the test fixtures).

A worker is ``manage.py procrastinate worker``; started from a process whose settings differ from
the environment's (a test database, a temporary MEDIA_ROOT), it is given the same database and
storage through its environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connections


def database_url(db: dict) -> str:
    """``DATABASE_URL`` of the database ``db`` (a ``connection.settings_dict``): a TCP server, or a
    unix socket folder."""
    auth = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    host = db["HOST"] or "127.0.0.1"
    if host.startswith("/"):
        return f"postgresql://{auth}@/{db['NAME']}?host={quote(host)}"
    return f"postgresql://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    """This process's environment, with its database and MEDIA_ROOT, for a worker process."""
    return {**os.environ, "DATABASE_URL": database_url(connections["default"].settings_dict),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT), "PYTHONUNBUFFERED": "1", **extra}


def worker_start(*, queues: list[str] | None = None, concurrency: int = 1, one_shot: bool = False,
                 env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """Start ``manage.py procrastinate worker`` (all queues unless ``queues``); ``one_shot``: it exits
    when its queues are empty."""
    command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "procrastinate", "worker",
               f"--concurrency={concurrency}", "--fetch-job-polling-interval=0.2"]
    if queues:
        command.append(f"--queues={','.join(queues)}")
    if one_shot:
        command.append("--one-shot")
    return subprocess.Popen(command, cwd=settings.BASE_DIR, env=env or worker_env(), **popen)
