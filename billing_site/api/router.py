"""The URL patterns of ``/api/v1/``: the one module that imports the apps' API views.

It sits above every app (``billing_site.urls`` includes it); no app imports it.
"""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from chargeback.api import views as chargeback_views
from chargeback.api.focus_export import FocusExportView
from invoices.api import views as invoice_views
from payments.api import views as payment_views
from subscriptions.api import views as subscription_views
from teams.api import views as team_views
from wallets.api import views as wallet_views
from webhooks.api import views as webhook_views

#: An id in a URL: a whole number. Anything else (``1.5``, ``abc``, ``-1``) matches no route and
#: answers the API's JSON 404 (``billing_site.api.errors.not_found``).
ID_PATTERN = "[0-9]+"


class IdRouter(SimpleRouter):
    """DRF's ``SimpleRouter`` whose detail routes take whole-number ids only (its default takes any text)."""

    def get_lookup_regex(self, viewset, lookup_prefix: str = "") -> str:
        lookup_url_kwarg = getattr(viewset, "lookup_url_kwarg", None) or getattr(viewset, "lookup_field", "pk")
        value = getattr(viewset, "lookup_value_regex", ID_PATTERN)
        return f"(?P<{lookup_prefix}{lookup_url_kwarg}>{value})"


def api_urlpatterns() -> list:
    """The URL patterns of ``/api/v1/``: the routed viewsets and the plain views, by resource."""
    router = IdRouter(trailing_slash=True)
    router.register("teams", team_views.TeamViewSet, basename="team")
    router.register("usage", chargeback_views.UsageViewSet, basename="usage")
    router.register("allocation-rules", chargeback_views.AllocationRuleViewSet, basename="allocation-rule")
    router.register("allocations", chargeback_views.AllocationViewSet, basename="allocation")
    router.register("wallets", wallet_views.WalletViewSet, basename="wallet")
    router.register("ledger-entries", wallet_views.LedgerEntryViewSet, basename="ledger-entry")
    router.register("webhook-endpoints", webhook_views.EndpointViewSet, basename="webhook-endpoint")
    router.register("webhook-deliveries", webhook_views.DeliveryViewSet, basename="webhook-delivery")
    patterns = [
        path("prices/", chargeback_views.PriceView.as_view(), name="price-resolve"),
        path("providers/", chargeback_views.ProviderView.as_view(), name="provider-list"),
        path("quotes/", wallet_views.QuoteView.as_view(), name="quote-create"),
        path("charges/", wallet_views.ChargeView.as_view(), name="charge-create"),
        path("statistics/day/", wallet_views.DayStatisticsView.as_view(), name="statistics-day"),
        path("statistics/month/", wallet_views.MonthStatisticsView.as_view(), name="statistics-month"),
        path("statistics/year/", wallet_views.StatisticsView.as_view(), name="statistics-year"),
    ]
    # FOCUS out: the allocated costs of a month as a FOCUS file.
    patterns.append(path("focus-export/", FocusExportView.as_view(), name="focus-export"))
    patterns += invoice_views.urlpatterns(router)
    patterns += subscription_views.urlpatterns()
    patterns += payment_views.urlpatterns()
    return patterns + router.urls
