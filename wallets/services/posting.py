"""Posting ledger entries under the wallet's lock: top-up, grant, refund, adjustment, settlement, expiry.

Each service claims its idempotency key, locks the wallet (:func:`wallets.services.wallets.wallet_lock`),
re-reads and validates it, inserts the ledger entry continuing the wallet's chain
(``balance_after = balance_before + amount``) and stores the wallet's new running totals, all in
one transaction. The posting helpers here (:func:`entry_post`, :func:`entry_debit`,
:func:`entry_credit`, the checks) are shared with holds and usage-event charges.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing_site.db import MeteredSum
from billing_site.errors import InvalidRequest
from billing_site.money import MONEY_CONTEXT, check_within_bound
from teams.models import BillingSettings
from teams.selectors import billing_settings_get
from wallets.errors import InsufficientFunds, InvalidAmount, WalletFrozen
from wallets.models import CreditGrant, LedgerEntry, Wallet
from webhooks.services import event_record

from .amounts import ZERO, amount_parse, amount_positive
from .notifications import low_balance_after_credit, low_balance_after_debit, wallet_depleted_check
from .results import team_idempotent_run
from .wallets import wallet_lock, wallet_open

Entry = LedgerEntry.EntryType

#: The wallet columns a money movement changes (the running totals and what goes with them).
WALLET_TOTALS = ("balance", "reserved", "granted_balance", "low_balance_warned", "last_top_up_amount", "updated_at")


# --- checks -------------------------------------------------------------------------------------


def wallet_frozen_error(wallet_id: int, status: str) -> WalletFrozen:
    """The error of a debit or hold on a wallet that is not active."""
    return WalletFrozen(f"Wallet {wallet_id} is {status}: it accepts no charges, holds or captures.")


def insufficient_funds_error(wallet_id: int, available: Decimal, amount: Decimal, currency: str) -> InsufficientFunds:
    """The error of a debit of ``amount`` beyond the ``available`` credit."""
    return InsufficientFunds(
        f"Insufficient funds: wallet {wallet_id} has {available} {currency} available, {amount} {currency} needed.",
        requested=amount, available=available, currency=currency,
    )


def check_not_frozen(wallet: Wallet) -> None:
    """``WalletFrozen`` unless the wallet is active (charges, holds and captures need that)."""
    if wallet.status != Wallet.Status.ACTIVE:
        raise wallet_frozen_error(wallet.pk, wallet.status)


def check_not_closed(wallet: Wallet) -> None:
    """``WalletFrozen`` for a closed wallet (credits are allowed on frozen ones)."""
    if wallet.status == Wallet.Status.CLOSED:
        raise WalletFrozen(f"Wallet {wallet.pk} is closed.")


def funds_shortfall(wallet: Wallet, billing: BillingSettings, amount: Decimal) -> Decimal | None:
    """``None`` when ``amount`` may be spent, else the available credit that falls short.

    The floor is the team's (``BillingSettings.spending_floor``: 0 with block on zero balance,
    −credit limit for postpaid, none for unlimited or without block).
    """
    floor = billing.spending_floor()
    if floor is None:
        return None
    with localcontext(MONEY_CONTEXT):
        if wallet.balance - wallet.reserved - amount < floor:
            return wallet.available(billing)
    return None


def check_funds(wallet: Wallet, billing: BillingSettings, amount: Decimal) -> None:
    """``InsufficientFunds`` unless ``amount`` may be spent from the locked wallet."""
    available = funds_shortfall(wallet, billing, amount)
    if available is not None:
        raise insufficient_funds_error(wallet.pk, available, amount, wallet.currency)


# --- posting ------------------------------------------------------------------------------------


def entry_post(wallet: Wallet, *, entry_type: str, amount: Decimal = ZERO, reserved_delta: Decimal = ZERO,
               idempotency_key: str = "", reference_type: str = "", reference_id: object = "", feature_key: str = "",
               description: str = "", created_by=None, metadata: dict | None = None,
               param: str = "amount") -> LedgerEntry:
    """Insert one ledger entry continuing the locked wallet's chain, and advance the wallet in memory.

    ``amount`` changes the balance, ``reserved_delta`` the reserved amount (both signed, wallet
    currency). The wallet's totals are stored by :func:`wallet_totals_save`. The new balance and
    reserved amount are computed exactly (``money.MONEY_CONTEXT``: Python's default 28 digits
    would round a balance past 10^16 with 12 decimal places, and the chain's CHECK would refuse
    the entry). Raises ``AmountOutOfRange`` (422, naming ``param``) when either would reach
    ``money.METERED_BOUND`` (10^18, what the columns hold); nothing is written then.
    """
    with localcontext(MONEY_CONTEXT):
        balance_after = wallet.balance + amount
        reserved_after = wallet.reserved + reserved_delta
    check_within_bound(balance_after, param=param, what=f"the balance of wallet {wallet.pk}")
    check_within_bound(reserved_after, param=param, what=f"the reserved credit of wallet {wallet.pk}")
    entry = LedgerEntry(
        wallet=wallet, entry_type=entry_type, amount=amount, reserved_delta=reserved_delta,
        balance_before=wallet.balance, balance_after=balance_after,
        reserved_before=wallet.reserved, reserved_after=reserved_after,
        currency=wallet.currency, idempotency_key=idempotency_key, reference_type=reference_type,
        reference_id=str(reference_id), feature_key=feature_key, description=description[:500],
        created_by=created_by, metadata=metadata or {},
    )
    entry.save(force_insert=True)
    wallet.balance = entry.balance_after
    wallet.reserved = entry.reserved_after
    return entry


def wallet_totals_save(wallet: Wallet) -> None:
    """Store the locked wallet's running totals (:data:`WALLET_TOTALS`)."""
    wallet.save(update_fields=WALLET_TOTALS)


def _grants_consume(wallet: Wallet, amount: Decimal) -> None:
    """Spend up to ``amount`` of the wallet's granted lots: soonest expiry first, no expiry last."""
    to_take = min(amount, wallet.granted_balance)
    if to_take <= 0:
        return
    lots = (
        CreditGrant.objects.filter(wallet=wallet, remaining__gt=0)
        .order_by(F("expires_at").asc(nulls_last=True), "pk")
    )
    for lot in lots:
        take = min(lot.remaining, to_take)
        with localcontext(MONEY_CONTEXT):
            lot.remaining -= take
            wallet.granted_balance -= take
            to_take -= take
        lot.save(update_fields=["remaining"])
        if to_take <= 0:
            break


def entry_debit(wallet: Wallet, billing: BillingSettings, *, entry_type: str, amount: Decimal,
                reserved_delta: Decimal = ZERO, **fields) -> LedgerEntry:
    """Post a debit of ``amount`` (> 0), spending granted credit first, and watch the warning threshold."""
    balance_before = wallet.balance
    _grants_consume(wallet, amount)
    entry = entry_post(wallet, entry_type=entry_type, amount=-amount, reserved_delta=reserved_delta, **fields)
    low_balance_after_debit(wallet, billing, balance_before)
    wallet_depleted_check(wallet, balance_before)
    return entry


def entry_credit(wallet: Wallet, billing: BillingSettings, *, entry_type: str, amount: Decimal,
                 **fields) -> LedgerEntry:
    """Post a credit of ``amount`` (> 0) and re-arm the low-balance warning if it lifts the balance enough."""
    entry = entry_post(wallet, entry_type=entry_type, amount=amount, **fields)
    low_balance_after_credit(wallet, billing)
    return entry


# --- services -----------------------------------------------------------------------------------


def wallet_top_up(*, wallet: Wallet, amount: Decimal, idempotency_key: str, description: str = "",
                  reference_type: str = "external_payment", reference_id: str = "", created_by=None,
                  metadata: dict | None = None) -> LedgerEntry:
    """Credit purchased credit to ``wallet``: a ``top_up`` entry of ``amount`` (> 0, 12 dp, wallet currency).

    Sets the wallet's last top-up (the base of a percent warning threshold) and re-arms the
    low-balance warning. Allowed on frozen wallets, refused on closed ones.
    Raises ``InvalidAmount``, ``WalletFrozen`` (closed), ``IdempotencyError``.
    """
    amount = amount_positive(amount, "amount")
    params = {"wallet": wallet.pk, "amount": amount, "description": description, "reference_type": reference_type,
              "reference_id": reference_id, "metadata": metadata or {}}

    def body() -> LedgerEntry:
        locked = wallet_lock(wallet.pk)
        check_not_closed(locked)
        billing = billing_settings_get(team=locked.team)
        locked.last_top_up_amount = amount
        entry = entry_credit(locked, billing, entry_type=Entry.TOP_UP, amount=amount, idempotency_key=idempotency_key,
                             reference_type=reference_type, reference_id=reference_id, description=description,
                             created_by=created_by, metadata=metadata)
        wallet_totals_save(locked)
        event_record("wallet.topped_up", {"wallet": locked, "ledger_entry": entry}, team=locked.team_id)
        return entry

    with transaction.atomic(durable=True):
        return team_idempotent_run(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_top_up",
                                   params=params, body=body)[0]


def wallet_grant(*, wallet: Wallet, amount: Decimal, idempotency_key: str, expires_at: dt.datetime | None = None,
                 description: str = "", created_by=None, metadata: dict | None = None) -> LedgerEntry:
    """Give promotional credit: a ``grant`` entry and a :class:`CreditGrant` lot of ``amount`` (> 0).

    Granted credit is spent before purchased credit; ``expires_at`` (aware, in the future, optional)
    is when ``expire_grants`` removes what is left of it. Raises ``InvalidAmount``,
    ``InvalidRequest`` (expiry in the past), ``WalletFrozen`` (closed), ``IdempotencyError``.
    """
    amount = amount_positive(amount, "amount")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("expires_at must be in the future", param="expires_at")
    params = {"wallet": wallet.pk, "amount": amount, "expires_at": expires_at, "description": description,
              "metadata": metadata or {}}

    def body() -> LedgerEntry:
        locked = wallet_lock(wallet.pk)
        check_not_closed(locked)
        billing = billing_settings_get(team=locked.team)
        entry = entry_credit(locked, billing, entry_type=Entry.GRANT, amount=amount, idempotency_key=idempotency_key,
                             reference_type="credit_grant", description=description, created_by=created_by,
                             metadata=metadata)
        CreditGrant.objects.create(wallet=locked, entry=entry, amount=amount, remaining=amount, expires_at=expires_at)
        with localcontext(MONEY_CONTEXT):
            locked.granted_balance += amount
        wallet_totals_save(locked)
        return entry

    with transaction.atomic(durable=True):
        return team_idempotent_run(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_grant",
                                   params=params, body=body)[0]


def wallet_refund(*, entry: LedgerEntry, amount: Decimal, idempotency_key: str, description: str = "",
                  created_by=None, metadata: dict | None = None) -> LedgerEntry:
    """Give back up to what is left of a debit (a ``charge`` or ``hold_capture`` entry) as a ``refund`` entry.

    The refund is purchased credit (granted credit spent by the charge is not restored). The total
    of the refunds of one entry never exceeds its amount. Raises ``InvalidAmount`` (beyond what is
    left), ``InvalidRequest`` (not a debit), ``WalletFrozen`` (closed), ``IdempotencyError``.
    """
    amount = amount_positive(amount, "amount")
    if entry.entry_type not in (Entry.CHARGE, Entry.HOLD_CAPTURE):
        raise InvalidRequest(f"only charges and captures are refunded, entry {entry.pk} is a {entry.entry_type}",
                             param="entry")
    params = {"entry": entry.pk, "amount": amount, "description": description, "metadata": metadata or {}}

    def body() -> LedgerEntry:
        locked = wallet_lock(entry.wallet_id)
        check_not_closed(locked)
        # Under the wallet lock no other refund of this entry can be posted concurrently.
        refunded = LedgerEntry.objects.filter(
            wallet=locked, entry_type=Entry.REFUND, reference_type="ledger_entry", reference_id=str(entry.pk)
        ).aggregate(total=MeteredSum("amount"))["total"] or ZERO
        with localcontext(MONEY_CONTEXT):
            left = -entry.amount - refunded
        if amount > left:
            raise InvalidAmount(f"amount {amount} exceeds what is left to refund of entry {entry.pk}: {left}",
                                param="amount")
        billing = billing_settings_get(team=locked.team)
        refund = entry_credit(locked, billing, entry_type=Entry.REFUND, amount=amount, idempotency_key=idempotency_key,
                              reference_type="ledger_entry", reference_id=entry.pk, feature_key=entry.feature_key,
                              description=description, created_by=created_by, metadata=metadata)
        wallet_totals_save(locked)
        return refund

    with transaction.atomic(durable=True):
        return team_idempotent_run(team_id=entry.wallet.team_id, idempotency_key=idempotency_key,
                                   operation="wallet_refund", params=params, body=body)[0]


def wallet_adjust(*, wallet: Wallet, amount: Decimal, idempotency_key: str, description: str, created_by=None,
                  reference_type: str = "admin_action", reference_id: str = "",
                  metadata: dict | None = None) -> LedgerEntry:
    """A finance correction: an ``adjustment`` entry of signed, non-zero ``amount`` with a reason.

    Not checked against available credit (a correction must always be possible); a negative
    adjustment spends granted credit first like any debit. Raises ``InvalidAmount`` (zero),
    ``InvalidRequest`` (no description), ``WalletFrozen`` (closed), ``IdempotencyError``.
    """
    amount = amount_parse(amount, "amount")
    if amount == 0:
        raise InvalidAmount("amount of an adjustment must not be zero", param="amount")
    if not description.strip():
        raise InvalidRequest("an adjustment needs a description (its reason)", param="description")
    params = {"wallet": wallet.pk, "amount": amount, "description": description, "reference_type": reference_type,
              "reference_id": reference_id, "metadata": metadata or {}}

    def body() -> LedgerEntry:
        locked = wallet_lock(wallet.pk)
        check_not_closed(locked)
        billing = billing_settings_get(team=locked.team)
        fields = {"idempotency_key": idempotency_key, "reference_type": reference_type, "reference_id": reference_id,
                  "description": description, "created_by": created_by, "metadata": metadata}
        if amount > 0:
            entry = entry_credit(locked, billing, entry_type=Entry.ADJUSTMENT, amount=amount, **fields)
        else:
            entry = entry_debit(locked, billing, entry_type=Entry.ADJUSTMENT, amount=-amount, **fields)
        wallet_totals_save(locked)
        return entry

    with transaction.atomic(durable=True):
        return team_idempotent_run(team_id=wallet.team_id, idempotency_key=idempotency_key, operation="wallet_adjust",
                                   params=params, body=body)[0]


def wallet_settle_invoice(*, invoice, amount: Decimal, payment_reference: str = "", created_by=None) -> LedgerEntry:
    """Settle a postpaid team's wallet with a paid invoice: one ``invoice_settlement`` entry crediting ``amount``.

    Args:
        invoice: the ``invoices.models.Invoice`` being paid (its team's wallet in its currency is
            credited; the wallet is opened if the team has none).
        amount: what was paid, a positive Decimal in the invoice's currency (the invoice's
            ``amount_due``, minor units).
        payment_reference: the bank or transfer reference, kept in the entry's metadata.
        created_by: the user recording the payment.

    Idempotent by invoice: the key ``invoice-settlement-<pk>`` is claimed like any idempotency key,
    and the ledger's unique ``(wallet, entry_type, idempotency_key)`` stops a second entry even after
    the key's record is purged; a replay returns the first entry. Allowed on frozen wallets (a
    payment must always be recordable), refused on closed ones. A postpaid team's debt is settled
    by invoice; the caller (``invoices.services.invoice_mark_paid``) holds the invoice lock, and
    this runs inside its transaction.

    Raises ``InvalidAmount``, ``WalletFrozen`` (closed), ``IdempotencyError`` (a second settlement
    of the invoice with another amount).
    """
    amount = amount_positive(amount, "amount")
    wallet = wallet_open(team=invoice.team, currency=invoice.currency)
    key = f"invoice-settlement-{invoice.pk}"
    params = {"invoice": invoice.pk, "amount": amount}

    def body() -> LedgerEntry:
        locked = wallet_lock(wallet.pk)
        check_not_closed(locked)
        billing = billing_settings_get(team=locked.team)
        entry = entry_credit(locked, billing, entry_type=Entry.INVOICE_SETTLEMENT, amount=amount, idempotency_key=key,
                             reference_type="invoice", reference_id=invoice.pk,
                             description=f"Settlement of invoice {invoice.number}", created_by=created_by,
                             metadata={"invoice_number": invoice.number, "payment_reference": payment_reference})
        wallet_totals_save(locked)
        return entry

    with transaction.atomic():
        return team_idempotent_run(team_id=invoice.team_id, idempotency_key=key, operation="wallet_settle_invoice",
                                   params=params, body=body)[0]


def grants_expire(*, now: dt.datetime | None = None) -> list[LedgerEntry]:
    """Expire what is left of grants whose ``expires_at`` ≤ ``now``: one ``expiry`` entry per lot.

    Per wallet, in pk order, one transaction each. Only credit not backing open holds expires
    (at most ``balance − reserved``), so expiry never pushes available credit below zero; the
    rest of such a lot expires on a later run, once its holds are settled (captures spend the
    soonest-expiring credit first, so usually nothing is left). Running it twice expires nothing
    twice: a lot's ``remaining`` is 0 afterwards and the entry's idempotency key names the lot and
    the amount left. Returns the entries written.
    """
    now = now or timezone.now()
    wallet_ids = sorted(set(
        CreditGrant.objects.filter(expires_at__lte=now, remaining__gt=0).values_list("wallet_id", flat=True)
    ))
    written: list[LedgerEntry] = []
    for wallet_id in wallet_ids:
        with transaction.atomic(durable=True), localcontext(MONEY_CONTEXT):
            locked = wallet_lock(wallet_id)
            billing = billing_settings_get(team=locked.team)
            lots = CreditGrant.objects.filter(wallet=locked, expires_at__lte=now, remaining__gt=0).order_by("expires_at", "pk")
            for lot in lots:
                expirable = min(lot.remaining, max(locked.balance - locked.reserved, ZERO), locked.granted_balance)
                if expirable <= 0:
                    continue
                key = f"expire-grant-{lot.pk}-{lot.remaining}"
                balance_before = locked.balance
                entry = entry_post(locked, entry_type=Entry.EXPIRY, amount=-expirable, idempotency_key=key,
                                   reference_type="credit_grant", reference_id=lot.pk,
                                   description=f"Expiry of granted credit (grant {lot.pk})")
                lot.remaining -= expirable
                locked.granted_balance -= expirable
                if lot.remaining == 0:
                    lot.expired_at = now
                lot.save(update_fields=["remaining", "expired_at"])
                low_balance_after_debit(locked, billing, balance_before)
                written.append(entry)
            wallet_totals_save(locked)
    return written
