"""Settings come from the environment, with safe development defaults and safe production ones."""

import os
import secrets
import subprocess
import sys

from django.conf import settings

PRINT_DB = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'], settings.DEBUG)"
PRINT_DB_LOCATION = (
    "from django.conf import settings; d = settings.DATABASES['default']; print(d['ENGINE'], d['HOST'], d['NAME'])"
)
#: Removed from the inherited environment first: every variable the tests below set, and the one
#: the browser tests set for their session (which check --deploy rightly refuses).
_SCRUBBED = {
    "DATABASE_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER", "DJANGO_ALLOW_ASYNC_UNSAFE",
}


def _in_subprocess(env_overrides: dict[str, str], args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(env_overrides, DJANGO_SETTINGS_MODULE="billing_site.settings")
    return subprocess.run(
        [sys.executable, *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def _settings_in_subprocess(env_overrides: dict[str, str], code: str) -> subprocess.CompletedProcess:
    return _in_subprocess(env_overrides, ["-c", f"import django; django.setup(); {code}"])


def _production_environment(**overrides: str) -> dict[str, str]:
    return {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "billing.example.com",
            **overrides}


def test_settings_default_to_the_embedded_postgresql_in_development():
    # given no DATABASE_URL
    pgdata = settings.BASE_DIR / ".pgdata"
    pid_file = pgdata / "postmaster.pid"
    # (the socket folder of a running embedded server, as PostgreSQL records it; .pgdata itself
    # unless the project's path is too long for a socket)
    socket_dir = pid_file.read_text().splitlines()[4] if pid_file.exists() else str(pgdata)
    # when the settings load
    result = _settings_in_subprocess({}, PRINT_DB_LOCATION + "; print(settings.DEBUG)")
    # then they name the billing database on the embedded server's socket, DEBUG on
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.postgresql", socket_dir, "billing", "True"]


def test_settings_take_postgres_from_database_url():
    result = _settings_in_subprocess({"DATABASE_URL": "postgres://u:p@db.internal:5432/billing"}, PRINT_DB)
    assert result.stdout.split()[0] == "django.db.backends.postgresql"


def test_settings_read_a_unix_socket_folder_from_libpq_host_parameter():
    # given libpq's URL form for a unix socket
    url = "postgresql://postgres@/billing?host=/run/postgresql"
    # when the settings load, then the folder is the database HOST
    result = _settings_in_subprocess({"DATABASE_URL": url}, PRINT_DB_LOCATION)
    assert result.stdout.split() == ["django.db.backends.postgresql", "/run/postgresql", "billing"], result.stderr


def test_settings_refuse_to_start_in_production_without_a_secret_key():
    result = _settings_in_subprocess({"DEBUG": "false"}, PRINT_DB)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_check_deploy_gives_no_warning_with_debug_off():
    # given a production environment: DEBUG off, a long random key, the site's host
    env = _production_environment()
    # when Django's deployment checklist runs
    result = _in_subprocess(env, ["manage.py", "check", "--deploy"])
    # then it finds nothing to warn about
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr
    assert "WARNINGS" not in result.stderr, result.stderr


def test_check_deploy_names_a_security_setting_turned_off_through_the_environment():
    # given a production environment that turns the HTTPS redirect off
    env = _production_environment(SECURE_SSL_REDIRECT="false")
    # when the checklist runs, then it warns about exactly that
    result = _in_subprocess(env, ["manage.py", "check", "--deploy"])
    assert "security.W008" in result.stderr and "SECURE_SSL_REDIRECT" in result.stderr, result.stderr


def test_production_security_settings_come_from_the_environment():
    # given DEBUG off, the site's origin trusted for forms and a TLS-terminating proxy's header
    env = _production_environment(CSRF_TRUSTED_ORIGINS="https://billing.example.com,https://admin.example.com",
                                  SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
                                  SECURE_HSTS_SECONDS="600")
    code = ("print(settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS,"
            " settings.SECURE_HSTS_PRELOAD, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE);"
            " print(settings.CSRF_TRUSTED_ORIGINS); print(settings.SECURE_PROXY_SSL_HEADER)")
    # when the settings load
    result = _settings_in_subprocess(env, "from django.conf import settings; " + code)
    # then every production setting is on, with the values given
    assert result.returncode == 0, result.stderr
    flags, origins, proxy = result.stdout.splitlines()
    assert flags.split() == ["True", "600", "True", "True", "True", "True"]
    assert origins == "['https://billing.example.com', 'https://admin.example.com']"
    assert proxy == "('HTTP_X_FORWARDED_PROTO', 'https')"


def test_development_settings_keep_plain_http():
    # given DEBUG on (the default), when the settings load, then nothing redirects to HTTPS or sets HSTS
    code = ("from django.conf import settings; print(settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS,"
            " settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SECURE_PROXY_SSL_HEADER)")
    result = _settings_in_subprocess({}, code)
    assert result.stdout.split() == ["False", "0", "False", "False", "None"], result.stderr
