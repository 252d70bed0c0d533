"""App configurations of the project package: the admin site with the finance dashboard, and the shared models."""

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig

# Registers the project's system checks; the module needs no app loaded.
from billing_site import checks  # noqa: F401


class BillingAdminConfig(AdminConfig):
    """``django.contrib.admin`` whose default site is :class:`billing_site.admin.BillingAdminSite`.

    Every ``admin.register`` of the apps lands on that site (``admin.site`` is it), so the apps need
    no changes to appear under the dashboard.
    """

    default_site = "billing_site.admin.BillingAdminSite"


class BillingSiteConfig(AppConfig):
    """The project package as an app: the models every billing app shares (``billing_site.models``)."""

    name = "billing_site"
    verbose_name = "Billing (shared)"
