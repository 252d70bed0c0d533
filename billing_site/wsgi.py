"""The WSGI application (``gunicorn billing_site.wsgi``).

Before it serves, it runs the startup checks (``billing_site.checks``, e.g. a per-process cache
with several workers): an error stops the worker, so a misconfigured site never serves.
"""

import os

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'billing_site.settings')

application = get_wsgi_application()

_errors = [m for m in checks.run_checks(tags=["billing_startup"]) if m.is_serious()]
if _errors:
    raise ImproperlyConfigured("; ".join(f"{m.id}: {m.msg} HINT: {m.hint}" for m in _errors))
