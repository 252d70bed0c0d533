"""Django settings for the chargeback and prepaid-credit billing app.

Every setting that differs between machines comes from the environment (12-factor, via
django-environ). The defaults are safe for a development machine: SQLite in the project folder,
DEBUG on, a throwaway SECRET_KEY that is refused when DEBUG is off.

Environment variables:
    DATABASE_URL    database URL; default ``sqlite:///db.sqlite3`` (the quick-start database).
                    Production and CI use PostgreSQL: ``postgres://user:pass@host:5432/name``.
    SECRET_KEY      required when DEBUG is off.
    DEBUG           ``true``/``false``; default true.
    ALLOWED_HOSTS   comma-separated; default ``localhost,127.0.0.1`` (plus ``testserver``).
    MEDIA_ROOT      where rendered PDFs are stored; default ``<project>/media``.
    BILLING_*       see the "Billing" block below.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)
_DEV_SECRET_KEY = "insecure-development-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else None)
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("Set the SECRET_KEY environment variable when DEBUG is off.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "testserver"])

INSTALLED_APPS = [
    "billing_site.apps.BillingAdminConfig",  # django.contrib.admin with the finance dashboard as its index
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "billing_site.apps.BillingSiteConfig",  # the shared models (idempotency records)
    "teams",
    "chargeback",
    "wallets",
    "invoices",
    "auditlog",
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

ROOT_URLCONF = "billing_site.urls"

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

WSGI_APPLICATION = "billing_site.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@localhost")

REST_FRAMEWORK = {
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}

# --- Billing ------------------------------------------------------------------------------
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

# --- Finance admin (issue 6) ----------------------------------------------------------------
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
)
# Not Wallet: its running totals change with every charge, and auditing them would cost each
# charge a read and a write; the ledger is its audit trail.
# Folder where browser tests leave their screenshots (gitignored).
TEST_ARTIFACTS_DIR = env.path("TEST_ARTIFACTS_DIR", default=BASE_DIR / "test-artifacts")

# --- REST API (issue 5) ---------------------------------------------------------------------
# Environment:
#   API_THROTTLE_RATE        requests per principal (user or team key) for reads and other calls;
#                            default "1200/min".
#   API_THROTTLE_RATE_MONEY  requests per principal for calls that move money or write usage;
#                            default "300/min".
#   CACHE_URL                the cache that holds throttle counters; default locmem (one per
#                            process: with several gunicorn workers each keeps its own counts, so
#                            production names a shared cache, e.g. redis://…).
#   API_MAX_BODY_BYTES       largest request body accepted (DATA_UPLOAD_MAX_MEMORY_SIZE); default
#                            5 MiB, enough for a batch of 1,000 usage records.
INSTALLED_APPS += [
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=5 * 1024 * 1024)

REST_FRAMEWORK.update({
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
})
API_THROTTLE_RATES = {
    "principal": env.str("API_THROTTLE_RATE", default="1200/min"),
    "money": env.str("API_THROTTLE_RATE_MONEY", default="300/min"),
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
    },
    # Swagger UI from the project's own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
