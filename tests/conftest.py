"""Shared fixtures. Tests run on the PostgreSQL server of ``DATABASE_URL`` (by default the embedded
one of ``scripts/embedded_db.py``, which ``make test`` starts); pytest-django creates ``test_<name>``
there. Nothing is skipped: when the server does not answer, the session stops at once and says why.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

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

