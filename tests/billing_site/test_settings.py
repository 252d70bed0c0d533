"""Settings come from the environment, with safe development defaults."""

import os
import subprocess
import sys

from django.conf import settings

PRINT_DB = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'], settings.DEBUG)"


def _settings_in_subprocess(env_overrides: dict[str, str], code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY", "DEBUG"}}
    env.update(env_overrides, DJANGO_SETTINGS_MODULE="billing_site.settings")
    script = f"import django; django.setup(); {code}"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )


def test_settings_default_to_sqlite_in_development():
    result = _settings_in_subprocess({}, PRINT_DB)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True"]


def test_settings_take_postgres_from_database_url():
    result = _settings_in_subprocess({"DATABASE_URL": "postgres://u:p@db.internal:5432/billing"}, PRINT_DB)
    assert result.stdout.split()[0] == "django.db.backends.postgresql"


def test_settings_refuse_to_start_in_production_without_a_secret_key():
    result = _settings_in_subprocess({"DEBUG": "false"}, PRINT_DB)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
