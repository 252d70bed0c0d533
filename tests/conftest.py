"""Shared fixtures. Tests run on the PostgreSQL server of ``DATABASE_URL`` (by default the embedded
one of ``scripts/embedded_db.py``, which ``make test`` starts); pytest-django creates ``test_<name>``
there. Nothing is skipped: when the server does not answer, the session stops at once and says why.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings

#: The real FOCUS 1.0 sample (1,000 rows, September 2024); see its README for the figures. It lives
#: outside the repository, in ``../shared/data/focus/`` beside the project folder (CI has it there).
FOCUS_SAMPLE = Path(settings.BASE_DIR).parent / "shared" / "data" / "focus" / "focus_sample.csv"


def pytest_configure(config):
    params = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=params["HOST"] or None, port=params["PORT"] or None, user=params["USER"],
            password=params["PASSWORD"] or None, dbname="postgres", connect_timeout=5,
        ).close()
    except psycopg.Error as exc:
        where = params["HOST"] or "localhost"
        pytest.exit(
            f"PostgreSQL on {where} does not answer: {exc}\nSet DATABASE_URL to a server, or start the embedded "
            "one (scripts/embedded_db.py start, or run `make test`).",
            returncode=3,
        )


def database_url(db: dict) -> str:
    """``DATABASE_URL`` for a subprocess (a gunicorn, a ``manage.py`` run) on the database ``db``
    (a ``connection.settings_dict``): a TCP server, or the embedded server's unix socket folder."""
    auth = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    host = db["HOST"] or "127.0.0.1"
    if host.startswith("/"):
        return f"postgresql://{auth}@/{db['NAME']}?host={quote(host)}"
    return f"postgresql://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A Redis of the test session's own: ``redis-server`` (Debian's package, installed by
    ``scripts/system-deps.sh``) on a free loopback port, keeping nothing on disk; stopped at the end.
    Fails, naming the binary, when it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: install Debian's redis-server (scripts/system-deps.sh does, as root)")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def focus_sample() -> Path:
    """Path of the real FOCUS sample; fails, naming the path, when the shared data is absent."""
    if not FOCUS_SAMPLE.exists():
        pytest.fail(f"the FOCUS sample is missing: expected {FOCUS_SAMPLE} (../shared/data/focus/ beside the project)")
    return FOCUS_SAMPLE


@pytest.fixture(autouse=True)
def _test_settings(tmp_path, settings):
    """Rendered PDFs go to a per-test folder, never into the project; passwords hash fast.

    PBKDF2 with Django's production iteration count costs ~0.3 s per factory user; tests are not
    about password strength (Django's own advice for test suites).
    """
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def catalog(db):
    """The catalog of the example call (``EXAMPLE_PRICES``, USD), valid since 2024-01-01."""
    from billing_site.management.commands.demo import EXAMPLE_PRICES
    from tests.factories import PriceFactory

    valid_from = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return [
        PriceFactory(category=c, provider=p, model=m, unit=u, unit_price=price, currency="USD", valid_from=valid_from)
        for c, p, m, u, price in EXAMPLE_PRICES
    ]

