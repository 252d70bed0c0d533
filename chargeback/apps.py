from django.apps import AppConfig


class ChargebackConfig(AppConfig):
    name = "chargeback"
    verbose_name = "Chargeback"

    def ready(self):
        # Webhook events carry the API's shapes (see invoices.apps); a FOCUS import has no API
        # object, so its event carries the counts the import command prints.
        from webhooks.payloads import payload_serializer_register

        from .focus.results import FocusImportResult
        from .focus.summary import focus_import_summary

        payload_serializer_register(FocusImportResult, focus_import_summary)
