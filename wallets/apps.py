from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "wallets"
    verbose_name = "Wallets"

    def ready(self):
        # Webhook events carry the API's shapes (see invoices.apps).
        from webhooks.payloads import payload_serializer_register

        from .api.serializers import LedgerEntrySerializer, WalletSerializer
        from .models import LedgerEntry, Wallet

        payload_serializer_register(Wallet, WalletSerializer)
        payload_serializer_register(LedgerEntry, LedgerEntrySerializer)
