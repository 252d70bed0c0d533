"""The finance admin: every screen opens, immutable records cannot be edited, PDFs download."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.urls import reverse

from teams.models import BillingSettings
from tests.factories import InvoiceFactory, TeamFactory, UsageRecordFactory, UserFactory

pytestmark = pytest.mark.django_db

REGISTERED = sorted(
    (model._meta.app_label, model._meta.model_name)
    for model in admin.site._registry
    if model._meta.app_label in {"teams", "chargeback", "wallets", "invoices", "billing_site"}
)


@pytest.fixture
def superuser_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize(("app_label", "model_name"), REGISTERED)
def test_admin_changelist_opens_for_finance(superuser_client, app_label, model_name):
    UsageRecordFactory()
    response = superuser_client.get(reverse(f"admin:{app_label}_{model_name}_changelist"))
    assert response.status_code == 200


def test_admin_usage_records_cannot_be_added_or_deleted(superuser_client):
    record = UsageRecordFactory()
    assert superuser_client.get(reverse("admin:chargeback_usagerecord_add")).status_code == 403
    assert superuser_client.post(reverse("admin:chargeback_usagerecord_delete", args=[record.pk])).status_code == 403
    changelist = superuser_client.get(reverse("admin:chargeback_usagerecord_changelist"))
    assert "delete_selected" not in changelist.content.decode()


def test_admin_invoice_pdf_downloads_with_its_number_as_file_name(superuser_client):
    invoice = InvoiceFactory(team=TeamFactory(name="Search"))
    invoice.pdf.save("search.pdf", ContentFile(b"%PDF-1.7 test"), save=True)
    response = superuser_client.get(reverse("admin:invoices_invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="{invoice.display_number}.pdf"' in response["Content-Disposition"]


def test_admin_invoice_pdf_is_refused_to_staff_without_invoice_permission(client):
    invoice = InvoiceFactory()
    invoice.pdf.save("x.pdf", ContentFile(b"%PDF-1.7 test"), save=True)
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_team"))
    client.force_login(clerk)
    assert client.get(reverse("admin:invoices_invoice_pdf", args=[invoice.pk])).status_code == 404


def test_admin_invoice_list_shows_amounts_in_the_currencys_minor_units(superuser_client):
    InvoiceFactory(subtotal="1234.5", total="1234.5")
    page = superuser_client.get(reverse("admin:invoices_invoice_changelist")).content.decode()
    assert "1,234.50\u00a0USD" in page
    assert "1234.5000" not in page


@pytest.mark.django_db
def test_admin_billing_settings_refuse_a_nul_in_allowed_providers_naming_it():
    # Given a team's billing settings, edited with a provider name holding a NUL (the admin's JSON box)
    settings_row = BillingSettings.objects.get_or_create(team=TeamFactory())[0]
    settings_row.allowed_providers = ["AWS\x00"]
    # When the form validates it, Then the field is named, before PostgreSQL's jsonb could fail the write
    with pytest.raises(ValidationError) as refused:
        settings_row.full_clean()
    assert "allowed_providers" in refused.value.message_dict
    assert "NUL" in refused.value.message_dict["allowed_providers"][0]
