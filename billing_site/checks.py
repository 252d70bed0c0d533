"""System checks of the project: throttle counters must be shared when several workers serve the site."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

#: Cache backends that keep their data in one process (each worker would count on its own).
PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)

#: The tag of the checks the WSGI application runs as it starts (``billing_site.wsgi``).
STARTUP_TAG = "billing_startup"


@checks.register(checks.Tags.caches, STARTUP_TAG)
def throttle_cache_is_shared(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """``billing_site.E001``: a per-process cache with ``WEB_WORKERS`` > 1.

    The API's throttles count in the default cache; with a per-process one, each of N workers lets
    the whole rate through, so N times the rate passes.
    """
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    workers = getattr(settings, "WEB_WORKERS", 1)
    if workers > 1 and backend in PER_PROCESS_CACHES:
        return [checks.Error(
            f"WEB_WORKERS is {workers} but the default cache ({backend}) lives in each process: every worker "
            f"would let the whole throttle rate through.",
            hint="Set CACHE_URL to a cache all workers share, e.g. redis://127.0.0.1:6379/0, or WEB_WORKERS=1.",
            id="billing_site.E001",
        )]
    return []
