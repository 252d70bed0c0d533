"""The charge's rules step by step through the ORM: the oracle the SQL function ``wallets_charge`` is tested against.

``charge_in_python`` takes the arguments of ``wallets.services.charges.wallet_charge`` and does
what the function does, with the posting helpers every other money movement uses: claim the key,
lock the wallet and re-read it, refuse a wallet that is not active or a charge beyond the team's
floor, spend granted credit first, post the ``charge`` entry, store the wallet's totals and the
key's result, and warn once below the threshold. It is never called by the product.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from billing_site.idempotency import idempotency_key_check
from teams.selectors import billing_settings_get
from wallets.models import LedgerEntry, Wallet
from wallets.services.amounts import amount_positive
from wallets.services.charges import charge_params
from wallets.services.posting import check_funds, check_not_frozen, entry_debit, wallet_totals_save
from wallets.services.results import team_idempotent_run
from wallets.services.wallets import wallet_lock


def charge_in_python(*, wallet: Wallet, amount: Decimal, idempotency_key: str, feature_key: str = "",
                     description: str = "", reference_type: str = "", reference_id: object = "", created_by=None,
                     metadata: dict | None = None) -> LedgerEntry:
    """``wallet_charge`` through the ORM, in a savepoint inside the caller's transaction (or its own)."""
    amount = amount_positive(amount, "amount")
    idempotency_key = idempotency_key_check(idempotency_key)
    metadata = metadata or {}
    params = charge_params(wallet=wallet, amount=amount, feature_key=feature_key, description=description,
                           reference_type=reference_type, reference_id=reference_id, metadata=metadata)

    def body() -> LedgerEntry:
        locked = wallet_lock(wallet.pk)
        check_not_frozen(locked)
        billing = billing_settings_get(team=locked.team)
        check_funds(locked, billing, amount)
        entry = entry_debit(locked, billing, entry_type=LedgerEntry.EntryType.CHARGE, amount=amount,
                            idempotency_key=idempotency_key, feature_key=feature_key, reference_type=reference_type,
                            reference_id=reference_id, description=description, created_by=created_by,
                            metadata=metadata)
        wallet_totals_save(locked)
        return entry

    with transaction.atomic():
        return team_idempotent_run(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_charge",
                                   params=params, body=body)[0]
