"""Shared fixtures. Tests run on the PostgreSQL server of ``DATABASE_URL`` (by default the embedded
one of ``scripts/embedded_db.py``, which ``make test`` starts); pytest-django creates ``test_<name>``
there. Nothing is skipped: when the server does not answer, the session stops at once and says why.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
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


def port_wait(server: subprocess.Popen, port: int, *, name: str, seconds: float) -> None:
    """Wait until ``server`` accepts connections on loopback ``port``; fail the test, naming it, if
    it exits or is not up within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"{name} did not start on port {port}")
            time.sleep(0.05)


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
    port_wait(server, port, name="redis-server", seconds=15)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


# --- Stripe (docs/payments.md): a real Stripe-compatible server, localstripe ----------------------


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory) -> str:
    """A ``localstripe`` server of the test session's own (an aiohttp server keeping its objects in
    memory, started by ``scripts/localstripe_server.py``) on a free port; stopped at the end.

    The SDK talks real HTTP to it (``STRIPE_API_BASE``). Its objects live as long as the session:
    tests create their own customers and never count objects they did not create.
    """
    try:
        import localstripe  # noqa: F401 - only its presence is checked here
    except ImportError:
        pytest.fail("localstripe is missing: pip install -r requirements-dev.txt")
    port = free_port()
    log = (tmp_path_factory.mktemp("localstripe") / "localstripe.log").open("wb")
    # In memory only (scripts/localstripe_server.py): localstripe would otherwise share one pickle
    # file in /tmp with every other server on the machine.
    launcher = Path(settings.BASE_DIR) / "scripts" / "localstripe_server.py"
    server = subprocess.Popen([sys.executable, str(launcher), "--port", str(port), "--from-scratch"], stdout=log,
                              stderr=subprocess.STDOUT, cwd=tmp_path_factory.getbasetemp())
    port_wait(server, port, name="localstripe", seconds=20)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()


#: Fake credentials of the tests: localstripe accepts any ``sk_test_…`` key. Nothing real, ever.
TEST_STRIPE_SECRET_KEY = "sk_test_" + "localstripe0000000000000000"
TEST_STRIPE_WEBHOOK_SECRET = "whsec_" + "localstripetestsecret000000"


@pytest.fixture
def stripe_settings(settings, localstripe_url):
    """Payments configured against the session's localstripe: ``STRIPE_SECRET_KEY`` (a fake
    ``sk_test_…``), ``STRIPE_WEBHOOK_SECRET`` (a fake ``whsec_…``), ``STRIPE_API_BASE``; no retries.
    Returns ``settings``."""
    settings.STRIPE_SECRET_KEY = TEST_STRIPE_SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = TEST_STRIPE_WEBHOOK_SECRET
    settings.STRIPE_API_BASE = localstripe_url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 10.0
    return settings


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
    # Payments are not configured unless a test asks for Stripe (the ``stripe_settings`` fixture),
    # whatever the environment of the machine running the tests holds.
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.STRIPE_API_BASE = ""


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



# --- Background jobs (Procrastinate, docs/jobs.md) --------------------------------------------------


@pytest.fixture
def run_jobs(transactional_db):
    """Run the queued jobs through a real Procrastinate worker, in this process, until none is left.

    ``run_jobs(queues=["pdf"])`` returns when the queues are empty (Procrastinate's ``wait=False``
    worker). Jobs are rows of the test database, so the test must commit them: this fixture
    brings ``transactional_db``. In-process, the test's settings (locmem mail, MEDIA_ROOT) hold.
    """
    from tests.jobs.helpers import run_queued_jobs

    return run_queued_jobs


@pytest.fixture(autouse=True)
def _procrastinate_tables_emptied(request, django_db_blocker):
    """Empty Procrastinate's tables after a test that commits: they are not Django-managed, so the
    flush between transactional tests leaves them, and a job of one test would run in the next."""
    yield
    marker = request.node.get_closest_marker("django_db")
    committed = {"transactional_db", "live_server"} & set(request.fixturenames) or (
        marker is not None and marker.kwargs.get("transaction"))
    if committed:
        from django.db import connection

        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, "
                           "procrastinate_workers CASCADE")


class WorkerProcesses:
    """Real ``manage.py procrastinate worker`` processes on the test database (see ``worker_process``)."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env, self.log_dir, self.processes = env, log_dir, []

    def start(self, *, queues: list[str] | None = None, concurrency: int = 1, **env: str) -> subprocess.Popen:
        """Start a worker (all queues unless ``queues``) and return its process."""
        command = [sys.executable, "manage.py", "procrastinate", "worker", f"--concurrency={concurrency}",
                   "--fetch-job-polling-interval=0.2"]
        if queues:
            command.append(f"--queues={','.join(queues)}")
        log = open(self.log_dir / f"worker-{len(self.processes)}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env={**self.env, **env}, stdout=log,
                                   stderr=subprocess.STDOUT)
        process.log = log
        self.processes.append(process)
        return process

    def wait_for(self, job_id: int, *, status: str = "succeeded", timeout: float = 60) -> str:
        """Wait until job ``job_id`` has ``status`` (fails with the workers' logs when it ends otherwise)."""
        from procrastinate.contrib.django.models import ProcrastinateJob

        deadline = time.monotonic() + timeout
        current = None
        while time.monotonic() < deadline:
            current = ProcrastinateJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
            if current == status:
                return current
            if current in {"failed", "succeeded", "cancelled", "aborted"} and current != status:
                break
            time.sleep(0.1)
        pytest.fail(f"job {job_id} is {current}, not {status}\n{self.logs()}")

    def retry_stalled(self, *, seconds_since_heartbeat: float = 2) -> list[int]:
        """Put back to ``todo`` the jobs of workers silent for ``seconds_since_heartbeat`` (the
        periodic ``jobs.tasks.retry_stalled_jobs``' work, without waiting for its minute)."""
        import asyncio

        from procrastinate.contrib.django import app

        from jobs.tasks import stalled_jobs_retry

        async def retry(worker_app):
            async with worker_app.open_async():
                return await stalled_jobs_retry(worker_app.job_manager, seconds_since_heartbeat=seconds_since_heartbeat)

        # In a thread of its own: after the browser tests an event loop stays running in the main
        # thread, and asyncio.run() refuses to nest.
        import threading

        outcome: dict = {}

        def work():
            try:
                with app.replace_connector(app.connector.get_worker_connector()) as worker_app:
                    outcome["jobs"] = asyncio.run(retry(worker_app))
            except BaseException as exc:  # noqa: BLE001 - handed to the test below
                outcome["error"] = exc

        thread = threading.Thread(target=work, name="retry-stalled")
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["jobs"]

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}" for path in sorted(self.log_dir.glob("*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.log.close()


@pytest.fixture
def worker_process(transactional_db, tmp_path, settings):
    """Start real worker processes on the test database: ``worker_process.start(queues=[...])``.

    The workers share the test's MEDIA_ROOT; their mail goes to files in ``tmp_path / "mail"``
    (the file backend). ``wait_for(job_id)`` waits for a job's status; the workers are stopped at
    the end (``os.kill`` one yourself to test a crash). Jobs must be committed: this fixture brings
    ``transactional_db``.
    """
    from django.db import connection

    (tmp_path / "mail").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        "PYTHONUNBUFFERED": "1",
    }
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir(exist_ok=True)
    workers = WorkerProcesses(env, log_dir)
    yield workers
    workers.stop()
