from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "invoices"
    verbose_name = "Invoices"

    def ready(self):
        # Webhook events carry the API's shapes; the webhooks app sits below this one and cannot
        # import them, so they are registered here (models and serializers load once apps are ready).
        from webhooks.payloads import payload_serializer_register

        from .api.serializers import BillingRunResultSerializer, CreditNoteSerializer, InvoiceSerializer
        from .models import CreditNote, Invoice
        from .services.billing_run import BillingRunResult

        payload_serializer_register(Invoice, InvoiceSerializer)
        payload_serializer_register(CreditNote, CreditNoteSerializer)
        payload_serializer_register(BillingRunResult, BillingRunResultSerializer)
