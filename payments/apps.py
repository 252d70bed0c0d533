from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        # Automatic collection: an issued invoice queues its collection job (payments.receivers).
        from . import receivers  # noqa: F401
