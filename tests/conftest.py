"""Shared fixtures. Tests run on PostgreSQL when DATABASE_URL names one, else on SQLite.

Tests marked ``postgres`` (triggers, row locks, concurrency) are skipped on SQLite with a reason.
With ``REQUIRE_POSTGRES=1`` (set by ``.ci/run``) the session stops at once unless the database is
a PostgreSQL server that answers: in CI nothing is skipped for want of PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

#: The real FOCUS 1.0 sample (1,000 rows, September 2024); see its README for the figures.
FOCUS_SAMPLE = Path(settings.BASE_DIR).parent / "shared" / "data" / "focus" / "focus_sample.csv"

IS_POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def pytest_configure(config):
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        if not IS_POSTGRES:
            pytest.exit("REQUIRE_POSTGRES=1 but DATABASE_URL does not name a PostgreSQL database", returncode=3)
        try:
            import psycopg

            params = settings.DATABASES["default"]
            psycopg.connect(
                host=params["HOST"] or None, port=params["PORT"] or None, user=params["USER"],
                password=params["PASSWORD"] or None, dbname="postgres", connect_timeout=5,
            ).close()
        except Exception as exc:  # noqa: BLE001 - any failure to connect is fatal here
            pytest.exit(f"REQUIRE_POSTGRES=1 but PostgreSQL does not answer: {exc}", returncode=3)


def pytest_collection_modifyitems(config, items):
    if IS_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://…); SQLite has no row locks or triggers")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def focus_sample() -> Path:
    """Path of the real FOCUS sample; skips (never in CI) when the shared data is absent."""
    if not FOCUS_SAMPLE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{FOCUS_SAMPLE} is missing in CI")
        pytest.skip(f"{FOCUS_SAMPLE} is absent on this machine")
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
    """The catalog of issue 3's example (``ISSUE_PRICES``, USD), valid since 2024-01-01."""
    from chargeback.management.commands.demo import ISSUE_PRICES
    from tests.factories import PriceFactory

    valid_from = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return [
        PriceFactory(category=c, provider=p, model=m, unit=u, unit_price=price, currency="USD", valid_from=valid_from)
        for c, p, m, u, price in ISSUE_PRICES
    ]


@pytest.fixture
def db_vendor() -> str:
    return connection.vendor
