"""Django settings for the chargeback and prepaid-credit billing app, grouped by concern.

Every setting that differs between machines comes from the environment (12-factor, via
django-environ; a ``.env`` file beside ``manage.py`` is read too, never committed). The defaults
suit a development machine: DEBUG on, a throwaway SECRET_KEY (refused when DEBUG is off), and the
embedded PostgreSQL of ``scripts/embedded_db.py``. With DEBUG off the production security
settings are on, so ``manage.py check --deploy`` passes; each can still be changed.

Environment variables:

Core
    DEBUG                  ``true``/``false``; default true.
    SECRET_KEY             required when DEBUG is off (50 or more random characters).
    ALLOWED_HOSTS          comma-separated; default ``localhost,127.0.0.1,testserver``.
Database
    DATABASE_URL           the PostgreSQL database, ``postgres://user:pass@host:5432/name`` (a unix
                           socket: ``postgresql://user@/name?host=/socket/folder``). Default: the
                           ``billing`` database of the embedded server in ``.pgdata/``, started by
                           ``scripts/embedded_db.py start`` (``make demo`` and ``make test`` start
                           and stop it themselves).
    DATABASE_CONN_MAX_AGE  seconds a process keeps its database connection for the next request or
                           job (Django's CONN_MAX_AGE; checked before reuse). Default: 300 in a
                           job worker (``manage.py procrastinate worker``), 0 elsewhere (a
                           connection per web request, Django's default).
Static files and media
    STATIC_ROOT            where ``collectstatic`` puts files; default ``<project>/staticfiles``.
    MEDIA_ROOT             where rendered PDFs are stored; default ``<project>/media``.
Internationalisation
    TIME_ZONE              default ``UTC``.
Mail
    EMAIL_BACKEND          default the console backend (mail is printed, not sent).
    DEFAULT_FROM_EMAIL     default ``billing@localhost``.
    EMAIL_FILE_PATH        the file backend's folder; default ``<project>/sent-mail``.
API
    API_MAX_BODY_BYTES     largest request body accepted (DATA_UPLOAD_MAX_MEMORY_SIZE); default
                           5 MiB, enough for a batch of 1,000 usage records.
Cache and throttles
    CACHE_URL              the cache that holds throttle counters. Default with DEBUG off: Redis on
                           ``redis://127.0.0.1:6379/0``, shared by every worker; with DEBUG on:
                           ``locmemcache://`` (one per process).
    WEB_WORKERS            how many worker processes serve the site; default ``WEB_CONCURRENCY``
                           (gunicorn's own variable), else 1. With more than one, a per-process
                           cache is refused at start (check ``billing_site.E001``).
    API_THROTTLE_RATE      requests per principal (user or team key) for reads and other calls;
                           default ``1200/min``.
    API_THROTTLE_RATE_MONEY  requests per principal for calls that move money or write usage;
                           default ``300/min``.
Security (each defaults to on when DEBUG is off, off when it is on)
    SECURE_SSL_REDIRECT    redirect plain HTTP to HTTPS.
    SECURE_HSTS_SECONDS    Strict-Transport-Security max-age; default one year (0 with DEBUG).
    SECURE_HSTS_INCLUDE_SUBDOMAINS, SECURE_HSTS_PRELOAD   the HSTS header's two flags.
    SESSION_COOKIE_SECURE, CSRF_COOKIE_SECURE   send the cookies over HTTPS only.
    CSRF_TRUSTED_ORIGINS   comma-separated origins (``https://billing.example.com``) allowed to
                           post forms besides the host itself; default none.
    SECURE_PROXY_SSL_HEADER  ``HEADER,value`` set by the TLS-terminating proxy, e.g.
                           ``HTTP_X_FORWARDED_PROTO,https``; default unset. Set it only behind a
                           proxy that always sets or strips that header.
Billing
    BILLING_DEFAULT_CURRENCY, BILLING_COMPANY_NAME, BILLING_COMPANY_ADDRESS,
    BILLING_PAYMENT_TERMS_DAYS, BILLING_INVOICE_NUMBER_FORMAT, BILLING_CREDIT_NOTE_NUMBER_FORMAT:
                           see the "Billing" block below.
Background jobs
    FOCUS_UPLOAD_MAX_BYTES  largest FOCUS file the admin accepts, in bytes; default 2 GiB.
    FOCUS_UPLOAD_ABANDONED_HOURS  uploads never imported are removed after this; default 24.
Webhooks
    WEBHOOKS_ALLOW_HTTP, WEBHOOKS_ALLOW_PRIVATE, WEBHOOKS_TIMEOUT_SECONDS, WEBHOOKS_RETRY_BASE_SECONDS,
    WEBHOOKS_MAX_ATTEMPTS, WEBHOOKS_DISABLE_AFTER_HOURS, WEBHOOKS_ALERT_EMAILS, WEBHOOKS_BATCH_SIZE,
    WEBHOOKS_SENDERS: see the "Webhooks"
                           block below and docs/webhooks.md.
Logging and tests
    LOG_LEVEL              the root logger's level; default ``WARNING``.
    TEST_ARTIFACTS_DIR     where browser tests leave screenshots; default ``<project>/test-artifacts``.
"""

import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Core ------------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=True)
_DEV_SECRET_KEY = "insecure-development-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else None)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("Set the SECRET_KEY environment variable when DEBUG is off.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "testserver"])

ROOT_URLCONF = "billing_site.urls"
WSGI_APPLICATION = "billing_site.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Database --------------------------------------------------------------------------------------
# PostgreSQL only: money is exact in its numeric, and the ledger's rules live in its triggers,
# CHECKs and functions (the migrations' .sql files).

#: The data folder of the quick start's embedded PostgreSQL (scripts/embedded_db.py, git-ignored).
EMBEDDED_PGDATA = BASE_DIR / ".pgdata"


def _embedded_database_url() -> str:
    """The ``billing`` database on the embedded server's unix socket.

    The socket lives in ``.pgdata/`` unless the project's path is too long for a socket path; the
    running server's ``postmaster.pid`` (PostgreSQL's own record) names the folder on its fifth line.
    """
    socket_dir = EMBEDDED_PGDATA
    try:
        lines = (EMBEDDED_PGDATA / "postmaster.pid").read_text().splitlines()
    except OSError:
        lines = []
    if len(lines) > 4 and lines[4].strip():
        socket_dir = Path(lines[4].strip())
    return f"postgresql://postgres@/billing?host={socket_dir}"


DATABASES = {"default": env.db("DATABASE_URL", default=_embedded_database_url())}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# libpq's URL form for a unix socket names the folder as ``?host=``; Django reads it from HOST.
if not DATABASES["default"]["HOST"] and "host" in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
# A job worker runs many short jobs one after another (PDFs 8 at a time, webhook batches); opening
# a PostgreSQL backend for each (a process, its catalog caches rebuilt) is pure overhead there, so
# a worker keeps its connection between jobs. Procrastinate's Django middleware closes it around
# each job only when it is broken or older than CONN_MAX_AGE, and CONN_HEALTH_CHECKS pings one
# that sat idle before a job reuses it.
_JOB_WORKER = sys.argv[1:2] == ["procrastinate"] and "worker" in sys.argv[2:]
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300 if _JOB_WORKER else 0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# --- Applications and middleware -------------------------------------------------------------------
INSTALLED_APPS = [
    "billing_site.apps.BillingAdminConfig",  # django.contrib.admin with the finance dashboard as its index
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # PostgreSQL's index types and operator classes in migrations (the admin search's trigram GIN
    # indexes need OpClass registered as an index wrapper, which this app's ready() does).
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "billing_site.apps.BillingSiteConfig",  # the shared models (idempotency records)
    "teams",
    "webhooks",  # outbound webhooks: endpoints, the event outbox, signed deliveries (docs/webhooks.md)
    "chargeback",
    "wallets",
    "invoices",
    "subscriptions",
    "payments",  # Stripe: customers, payment methods, collection, top-ups by card, refunds (docs/payments.md)
    "auditlog",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",  # the team portal at /portal/: server-rendered pages for team leads and members
    # Background jobs (docs/jobs.md): Procrastinate's Django integration (its tables, admin and the
    # ``procrastinate`` command), then the jobs app (queues, progress, the admin's Jobs page).
    "procrastinate.contrib.django",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Audit trail of admin changes (django-auditlog): who changed what, when, with the diff. Registered
# here rather than in models.py so no app needs a migration; auditlog keeps its own table.
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    "teams.Team",
    "teams.TeamMembership",
    "chargeback.Price",
    "chargeback.AllocationRule",
    # Targets carry their rule's id in serialized_data, so a rule's history can show them.
    {"model": "chargeback.AllocationTarget", "serialize_data": True},
    "teams.BillingSettings",
    # Team mappings keep their history as rows (valid_from / valid_to); the trail adds who and when.
    "chargeback.TeamMapping",
)
# Not Wallet: its running totals change with every charge, and auditing them would cost each
# charge a read and a write; the ledger is its audit trail.

# --- Templates -------------------------------------------------------------------------------------
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Static files and media ------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")

# --- Internationalisation --------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Mail ------------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@localhost")
# The file backend's folder (EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend).
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / "sent-mail"))

# --- REST API (Django REST framework, drf-spectacular) ---------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=5 * 1024 * 1024)

REST_FRAMEWORK = {
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "billing_site.api.auth.ApiKeyAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["billing_site.api.permissions.BillingAccess"],
    "DEFAULT_THROTTLE_CLASSES": ["billing_site.api.throttling.PrincipalThrottle", "billing_site.api.throttling.MoneyThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["billing_site.api.parsers.LimitedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "billing_site.api.pagination.PagePagination",
    "DEFAULT_SCHEMA_CLASS": "billing_site.api_schema.BillingAutoSchema",
    "EXCEPTION_HANDLER": "billing_site.api.errors.exception_handler",
    "DATETIME_FORMAT": "iso-8601",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Billing API",
    "DESCRIPTION": (
        "Chargeback and prepaid-credit billing. Money is a decimal string with its currency beside it; "
        "errors have one shape: {\"error\": {\"type\", \"code\", \"message\", \"param\"}}. See docs/api.md."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "InvoiceStatusEnum": "invoices.models.Invoice.Status",
        "WalletStatusEnum": "wallets.models.Wallet.Status",
        "UsageEventStatusEnum": "wallets.models.UsageEvent.Status",
        "AllocationRunStatusEnum": "chargeback.models.AllocationRun.Status",
        "WebhookDeliveryStatusEnum": "webhooks.models.Delivery.Status",
        # active/archived: plans' and coupons' status (the same two values).
        "ArchivableStatusEnum": "subscriptions.models.Coupon.Status",
        "PaymentStatusEnum": "payments.models.Payment.Status",
    },
    # Swagger UI from the project's own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Cache and throttles ---------------------------------------------------------------------------
# Throttle counters must be shared by every worker: a per-process cache would let each worker pass
# the whole rate. With DEBUG off the default is therefore a shared Redis (the ``redis`` package is a
# requirement); billing_site.checks refuses a per-process cache when WEB_WORKERS > 1.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://" if DEBUG else "redis://127.0.0.1:6379/0")}
WEB_WORKERS = env.int("WEB_WORKERS", default=env.int("WEB_CONCURRENCY", default=1))
API_THROTTLE_RATES = {
    "principal": env.str("API_THROTTLE_RATE", default="1200/min"),
    "money": env.str("API_THROTTLE_RATE_MONEY", default="300/min"),
}

# --- Security --------------------------------------------------------------------------------------
# On by default whenever DEBUG is off (``manage.py check --deploy`` gives no warning); a development
# server speaks plain HTTP, so they are off with DEBUG on. Each can be changed from the environment.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind a proxy that terminates TLS: the header it sets and the value meaning HTTPS.
SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER", default=[])) or None

# --- Billing ---------------------------------------------------------------------------------------
# The currency of teams and prices when none is given (ISO 4217).
BILLING_DEFAULT_CURRENCY = env.str("BILLING_DEFAULT_CURRENCY", default="USD")
# The issuer printed on invoices.
BILLING_COMPANY_NAME = env.str("BILLING_COMPANY_NAME", default="Example Corp, Finance")
BILLING_COMPANY_ADDRESS = env.str(
    "BILLING_COMPANY_ADDRESS", default="1 Ledger Lane\n10115 Berlin\nGermany"
)
# Payment terms in days, counted from the issue date.
BILLING_PAYMENT_TERMS_DAYS = env.int("BILLING_PAYMENT_TERMS_DAYS", default=30)
# Invoice and credit note numbers (invoices.numbering): str.format templates with {date} (the issue
# date), {year} and {seq} (gap-free per year, from 1).
BILLING_INVOICE_NUMBER_FORMAT = env.str("BILLING_INVOICE_NUMBER_FORMAT", default="INV-{date:%Y%m%d}-{seq:04d}")
BILLING_CREDIT_NOTE_NUMBER_FORMAT = env.str("BILLING_CREDIT_NOTE_NUMBER_FORMAT", default="CN-{date:%Y%m%d}-{seq:04d}")

# --- Background jobs (Procrastinate; docs/jobs.md) ----------------------------------------------------
# Jobs live in PostgreSQL, in the product's own database: a job deferred inside a transaction is
# committed or rolled back with the data it is about. Each app's ``tasks.py`` is found on its own.
PROCRASTINATE_AUTODISCOVER_MODULE_NAME = "tasks"
PROCRASTINATE_DATABASE_ALIAS = "default"
# Workers poll at most every 5 s besides LISTEN/NOTIFY; a killed worker's jobs are retried once
# its heartbeat is stale (Procrastinate's stalled-job recovery, see jobs.tasks).
PROCRASTINATE_WORKER_DEFAULTS = {"fetch_job_polling_interval": 5.0}
# The largest FOCUS file the admin accepts (bytes, after upload; a gzip'd file counts as sent).
FOCUS_UPLOAD_MAX_BYTES = env.int("FOCUS_UPLOAD_MAX_BYTES", default=2 * 1024 ** 3)
# Uploaded FOCUS files never imported are removed after this many hours.
FOCUS_UPLOAD_ABANDONED_HOURS = env.int("FOCUS_UPLOAD_ABANDONED_HOURS", default=24)

# --- Webhooks (docs/webhooks.md) ------------------------------------------------------------------
# The SSRF guard (webhooks.guard): endpoint URLs must be https, and resolve to public addresses only.
# Plain http and private, loopback or link-local receivers are for tests and on-premises use.
WEBHOOKS_ALLOW_HTTP = env.bool("WEBHOOKS_ALLOW_HTTP", default=False)
WEBHOOKS_ALLOW_PRIVATE = env.bool("WEBHOOKS_ALLOW_PRIVATE", default=False)
# Seconds to connect and, separately, to wait for the receiver's answer.
WEBHOOKS_TIMEOUT_SECONDS = env.float("WEBHOOKS_TIMEOUT_SECONDS", default=10.0)
# Retries: the first waits the base, each next one 3 times longer, at most a day; 12 attempts in all
# take about 3.1 days (webhooks.services.retry_delay).
WEBHOOKS_RETRY_BASE_SECONDS = env.float("WEBHOOKS_RETRY_BASE_SECONDS", default=10.0)
WEBHOOKS_MAX_ATTEMPTS = env.int("WEBHOOKS_MAX_ATTEMPTS", default=12)
# An endpoint whose every attempt has failed for this long is disabled and finance is e-mailed
# (the finance group and superusers with an address, plus these addresses, comma-separated).
WEBHOOKS_DISABLE_AFTER_HOURS = env.float("WEBHOOKS_DISABLE_AFTER_HOURS", default=72.0)
WEBHOOKS_ALERT_EMAILS = env.list("WEBHOOKS_ALERT_EMAILS", default=[])
# Throughput: a webhooks job claims up to this many due deliveries at once, and a worker process
# sends them over this many threads, each with its keep-alive connections (webhooks.services).
WEBHOOKS_BATCH_SIZE = env.int("WEBHOOKS_BATCH_SIZE", default=100)
WEBHOOKS_SENDERS = env.int("WEBHOOKS_SENDERS", default=16)

# --- Payments through Stripe (docs/payments.md) ------------------------------------------------------
# Without STRIPE_SECRET_KEY payments are recorded by hand and the payment endpoints answer 409
# ``payments_not_configured``. The key and the webhook secret come from the environment only: never in
# the repository, never logged, never shown. STRIPE_API_BASE points the SDK at another Stripe-compatible
# server (the tests' localstripe); empty means Stripe's own https://api.stripe.com.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# Seconds the SDK waits for Stripe (connect and read); network retries of the SDK (idempotent: every
# write carries an idempotency key).
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=30.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)

# --- Logging and tests -----------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
    # The stripe SDK logs whole request and response bodies at INFO and DEBUG (a PaymentIntent's
    # client_secret among them): never below WARNING, whatever LOG_LEVEL says.
    "loggers": {"stripe": {"level": "WARNING"}},
}

# Folder where browser tests leave their screenshots (gitignored).
TEST_ARTIFACTS_DIR = env.path("TEST_ARTIFACTS_DIR", default=BASE_DIR / "test-artifacts")
