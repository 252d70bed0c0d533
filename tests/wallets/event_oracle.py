"""A usage-event charge step by step through the ORM: the oracle the SQL function ``wallets_usage_event_charge`` is tested against.

``event_charge_in_python`` takes the arguments of ``wallets.services.usage_events.usage_event_charge``
and runs the steps that service runs when the one-call path declines: claim the key, read the
settings, price from the catalog, open the wallet, lock it, record the event (charged or
rejected), its usage records, items and ledger entry. It is never called by the product.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from billing_site.errors import InvalidRequest
from chargeback.services.usage import usage_records_create
from teams.selectors import billing_settings_get
from wallets.errors import InsufficientFunds, WalletFrozen
from wallets.models import LedgerEntry, UsageEvent, UsageEventItem, Wallet
from wallets.services.posting import entry_debit, funds_shortfall, wallet_totals_save
from wallets.services.results import team_idempotent_run
from wallets.services.usage_events import _parse_items, _quote, _rejection_error
from wallets.services.wallets import wallet_lock, wallet_open


def event_charge_in_python(*, team, user, feature_key: str, external_reference_id: str, idempotency_key: str,
                           items, metadata: dict | None = None) -> UsageEvent:
    """``usage_event_charge`` through the ORM, in a savepoint inside the caller's transaction (or its own)."""
    parsed = _parse_items(items)
    params = {"team": team.pk, "user": getattr(user, "pk", None), "feature_key": feature_key,
              "external_reference_id": external_reference_id, "items": parsed, "metadata": metadata or {}}
    rejection: dict = {}

    def body() -> UsageEvent:
        billing = billing_settings_get(team=team)
        if billing.uses_user_wallets and user is None:
            raise InvalidRequest("a prepaid_user team charges its users' wallets: user is required", param="user")
        priced = _quote(team, billing, parsed, timezone.now())
        wallet = wallet_open(team=team, user=user if billing.uses_user_wallets else None)
        if wallet.currency != priced.currency:
            raise InvalidRequest(f"items are priced in {priced.currency}, the wallet holds {wallet.currency}",
                                 param="items")
        locked = wallet_lock(wallet.pk)
        event = UsageEvent.objects.create(
            team=team, user=user, wallet=locked, feature_key=feature_key, external_reference_id=external_reference_id,
            idempotency_key=idempotency_key, status=UsageEvent.Status.PENDING, total=priced.total,
            currency=priced.currency, metadata=metadata or {},
        )
        shortfall = funds_shortfall(locked, billing, priced.total) if priced.total > 0 else None
        if locked.status != Wallet.Status.ACTIVE:
            event.rejection_code = WalletFrozen.code
            event.rejection_reason = f"Wallet {locked.pk} is {locked.status}."
        elif shortfall is not None:
            event.rejection_code = InsufficientFunds.code
            event.rejection_reason = (f"Insufficient funds: {shortfall} {locked.currency} available, "
                                      f"{priced.total} {locked.currency} needed.")
            rejection["available"] = str(shortfall)
        records = [None] * len(priced.items)
        if event.rejection_code:
            event.status = UsageEvent.Status.REJECTED
        else:
            records = usage_records_create(team=team, source="charge", records=[
                {"user": user, "resource_type": item.category, "provider": item.provider, "model": item.model,
                 "unit": item.unit, "quantity": item.quantity, "occurred_at": event.created_at,
                 "idempotency_key": f"usage-event-{event.pk}-{position}", "cost": item.cost,
                 "currency": item.currency, "feature_key": feature_key, "external_reference": external_reference_id,
                 "metadata": {"usage_event_id": event.pk}}
                for position, item in enumerate(priced.items)
            ])
            if priced.total > 0:
                event.ledger_entry = entry_debit(
                    locked, billing, entry_type=LedgerEntry.EntryType.CHARGE, amount=priced.total,
                    idempotency_key=idempotency_key, reference_type="usage_event", reference_id=event.pk,
                    feature_key=feature_key,
                    description=f"Usage event {event.pk}" + (f" ({external_reference_id})" if external_reference_id else ""),
                    created_by=user,
                )
                wallet_totals_save(locked)
            event.status = UsageEvent.Status.CHARGED
        UsageEventItem.objects.bulk_create([
            UsageEventItem(event=event, position=position, category=item.category, provider=item.provider,
                           model=item.model, unit=item.unit, quantity=item.quantity, unit_price=item.unit_price,
                           cost=item.cost, currency=item.currency, price_id=item.price_id, usage_record=records[position])
            for position, item in enumerate(priced.items)
        ])
        event.save(update_fields=["status", "rejection_code", "rejection_reason", "ledger_entry"])
        return event

    with transaction.atomic(durable=True):
        event, record, _ = team_idempotent_run(team_id=team.pk, idempotency_key=idempotency_key,
                                               operation="usage_event_charge", params=params, body=body,
                                               extra_response=lambda: dict(rejection))
    if event.status == UsageEvent.Status.REJECTED:
        raise _rejection_error(event, record.response)
    return event
