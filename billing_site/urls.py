"""URL configuration: the finance admin at /admin/, the REST API under /api/v1/, Stripe's webhooks at /webhooks/stripe/.

``/api/schema/`` is the OpenAPI 3 schema (drf-spectacular) and ``/api/docs/`` its Swagger UI,
served from the project's own static files (drf-spectacular-sidecar), never from a CDN.

Every 404 under ``/api/`` is JSON in the API's error shape (``billing_site.api.errors.not_found``).

Rendered PDFs are never served as public media files: they are downloaded through views that
check who may see the invoice.
"""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing_site.api.errors import not_found
from billing_site.api.router import api_urlpatterns
from payments.views import stripe_webhook

admin.site.site_header = "Billing — finance"
admin.site.site_title = "Billing"
admin.site.index_title = "Chargeback, wallets and invoices"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("portal/", include("portal.urls")),
    # Stripe's signed events (payments.views): outside /api/, no API key or CSRF token, the signature is the authentication.
    path("webhooks/stripe/", stripe_webhook, name="stripe-webhook"),
    path("api/v1/", include(api_urlpatterns())),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[], authentication_classes=[]),
        name="swagger-ui",
    ),
    # Last: any other path under /api/ ending in a slash answers the API's JSON 404 (paths without
    # the slash are first redirected to it by APPEND_SLASH, as every API route ends in one).
    re_path(r"^api/(?:.*/)?$", not_found, name="api-not-found"),
]

#: A 404 raised anywhere: the API's error shape under /api/, Django's page elsewhere (DEBUG off).
handler404 = not_found
