"""URL configuration: the finance admin at /admin/ (the API arrives under /api/v1/).

Rendered PDFs are never served as public media files: they are downloaded through views that
check who may see the invoice.
"""

from django.contrib import admin
from django.urls import path

admin.site.site_header = "Billing — finance"
admin.site.site_title = "Billing"
admin.site.index_title = "Chargeback, wallets and invoices"

urlpatterns = [
    path("admin/", admin.site.urls),
]
