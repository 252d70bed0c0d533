"""Throttles hold across gunicorn workers: the counters live in a shared Redis, and a per-process cache
with several workers is refused at start.

Real processes: ``python -m gunicorn`` with 3 workers on a free loopback port, serving the test
database, and a Redis of the session's own (the ``redis_url`` fixture).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings
from django.core.checks import run_checks
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.conftest import database_url, free_port
from tests.factories import UserFactory


def server_env(**overrides: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "WEB_WORKERS", "CACHE_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="billing_site.settings",
        DATABASE_URL=database_url(db),
        **overrides,
    )
    return env


def gunicorn(port: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "billing_site.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "3",
         "--log-level", "warning"],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_rate_holds_across_three_gunicorn_workers(redis_url):
    # Given a user, a rate of 60 a minute, and 3 workers sharing a Redis
    token = Token.objects.create(user=UserFactory()).key
    redis.Redis.from_url(redis_url).flushdb()
    port = free_port()
    server = gunicorn(port, server_env(CACHE_URL=redis_url, WEB_WORKERS="3", API_THROTTLE_RATE="60/min"))
    url = f"http://127.0.0.1:{port}/api/v1/teams/"
    try:
        deadline = time.monotonic() + 60
        while True:  # until every worker has started (each answers on the shared socket)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)

        # When 120 requests arrive, 8 at a time, spread over the workers
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = Counter(pool.map(lambda _: get(url, token), range(120)))
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]

    # Then the configured rate holds (60 ± 5 %), and the rest are told to slow down
    assert set(codes) <= {200, 429}, (codes, output)
    assert 57 <= codes[200] <= 63, codes
    assert codes[200] + codes[429] == 120


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_per_process_cache_with_several_workers_is_refused_at_start():
    # Given 3 workers (gunicorn's WEB_CONCURRENCY) and the local-memory cache
    port = free_port()
    server = gunicorn(port, server_env(CACHE_URL="locmemcache://", WEB_CONCURRENCY="3"))

    # When it starts / then it stops, naming the setting and the check
    try:
        output = server.communicate(timeout=60)[0]
    finally:
        server.kill()
    assert server.returncode != 0
    assert "billing_site.E001" in output and "WEB_WORKERS is 3" in output


def test_check_names_the_setting_with_a_per_process_cache(settings, redis_url):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.WEB_WORKERS = 4
    errors = [m for m in run_checks() if m.id == "billing_site.E001"]
    assert len(errors) == 1 and "WEB_WORKERS is 4" in errors[0].msg

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": redis_url}}
    assert not [m for m in run_checks() if m.id == "billing_site.E001"]


def test_redis_cache_url_serves_the_api(settings, db, redis_url):
    # Given the documented shared cache
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    # When a throttled API call is made / then it answers (no "No module named 'redis'")
    client = Client()
    user = UserFactory()
    response = client.get("/api/v1/teams/", HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert response.status_code == 200
