"""A wallet top-up paid by card: the wallet is credited only once the payment succeeded, exactly once."""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction

from billing_site.errors import IdempotencyError
from billing_site.money import METERED_BOUND, MoneyError, parse_amount
from wallets.models import Wallet

from ..errors import InvalidPaymentRequest, PaymentError
from ..models import Payment
from ..stripe_client import payments_require
from .collection import payment_intent_create, payment_intent_refresh, payment_success_record
from .customers import customer_ensure
from .payment_methods import default_payment_method_id, team_payment_method


def top_up_idempotency_key(*, team_id: int, idempotency_key: str) -> str:
    """The payment's key (and Stripe's ``Idempotency-Key``) of a caller's top-up key: ``top-up-<team>-<key>``."""
    return f"top-up-{team_id}-{idempotency_key}"


def wallet_top_up_by_card(*, wallet: Wallet, amount: Decimal, idempotency_key: str, payment_method_id: str = "",
                          created_by=None) -> Payment:
    """Top up ``wallet`` by charging the team's card: a PaymentIntent confirmed off-session for
    ``amount``; the wallet gets its ``top_up`` entry only once the payment succeeded.

    Args:
        wallet: the wallet to credit (its currency is the payment's).
        amount: a positive Decimal (or decimal string) in whole minor units of the wallet's currency.
        idempotency_key: the caller's key: the same key with the same amount and card returns the same
            payment (re-read from Stripe), never a second charge.
        payment_method_id: one of the team's cards (default: the team's default card).

    Returns:
        The ``Payment`` (kind ``top_up``): ``succeeded`` with ``ledger_entry`` set, or ``failed``
        (declined: ``failure_code``, ``failure_message``; nothing credited), ``processing`` or
        ``requires_action`` (credited later, when the webhook reports success). Whether success is
        reported by this confirmation, the webhook or both, the wallet is credited once
        (``payments.services.collection.top_up_credit``).

    Raises:
        InvalidPaymentRequest: a malformed amount (``param`` ``amount``).
        IdempotencyError: the key was used with another amount, wallet or card.
        PaymentMethodNotFound: ``payment_method_id`` is not one of the team's cards.
        PaymentError: (402) the team has no card (``failure_code`` ``payment_method_missing``).
        PaymentsNotConfigured, StripeUnavailable.
    """
    payments_require()
    try:
        amount = parse_amount(amount, param="amount", positive=True, currency=wallet.currency, text=True,
                              below=METERED_BOUND)
    except MoneyError as exc:
        raise InvalidPaymentRequest(exc.message, param="amount") from None
    key = top_up_idempotency_key(team_id=wallet.team_id, idempotency_key=idempotency_key)
    existing = Payment.objects.filter(idempotency_key=key).first()
    if existing is None:
        customer_id = customer_ensure(team=wallet.team)
        if payment_method_id:
            _, pm = team_payment_method(wallet.team, payment_method_id)
            pm_id = pm.id
        else:
            pm_id = default_payment_method_id(customer_id=customer_id)
        if not pm_id:
            raise PaymentError(f"Team {wallet.team} has no card to charge: add a payment method first.",
                               failure_code="payment_method_missing")
        try:
            with transaction.atomic(durable=True):
                payment = Payment.objects.create(
                    team_id=wallet.team_id, kind=Payment.Kind.TOP_UP, wallet=wallet, amount=amount,
                    currency=wallet.currency, idempotency_key=key, stripe_customer_id=customer_id,
                    stripe_payment_method_id=pm_id, description=f"Top-up of wallet {wallet.pk}", created_by=created_by,
                )
        except IntegrityError:  # the same key, at the same moment
            existing = Payment.objects.get(idempotency_key=key)
        else:
            return payment_intent_create(payment=payment)
    if existing.wallet_id != wallet.pk or existing.amount != amount or (
            payment_method_id and existing.stripe_payment_method_id != payment_method_id):
        raise IdempotencyError("this idempotency key was used for another top-up (amount, wallet or card)",
                               param="idempotency_key")
    if existing.status == Payment.Status.PENDING:
        return payment_intent_create(payment=existing)
    if existing.status == Payment.Status.SUCCEEDED:
        return payment_success_record(payment=existing, payment_intent_id=existing.stripe_payment_intent_id)
    if existing.stripe_payment_intent_id and existing.status not in Payment.FINAL_STATUSES:
        return payment_intent_refresh(payment=existing)
    return existing
