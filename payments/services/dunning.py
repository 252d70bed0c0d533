"""Dunning: a failed invoice payment, what it starts, what follows the last retry, what a payment undoes.

A payment of an invoice that fails (the automatic collection at issue, a retry, a
``payment_intent.payment_failed`` webhook: ``payments.services.collection.payment_failed_hook``)
starts one :class:`~payments.models.Dunning` for the invoice (:func:`dunning_start`): the
subscription becomes ``past_due`` and the team's billing addresses get a reminder. The retries on
the policy's days are :mod:`payments.services.dunning_retries`; after the last failed one the final
action is taken here (the subscription ``unpaid`` or canceled, the team's wallets frozen). A payment
that arrives later, by a retry, a webhook or by hand, reverses what it can (:func:`dunning_recover`,
called by ``payment_succeeded_hook`` and by the ``run_dunning`` command for invoices paid by hand):
the subscription is active again (unless canceled) and the wallets the dunning froze are unfrozen.

The rules follow Stripe's own dunning (Billing → Revenue recovery: a custom retry schedule, then
"mark the subscription unpaid" or "cancel the subscription").
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing_site.money import format_amount
from invoices.models import Invoice
from jobs.tasks import mail_queue
from subscriptions.models import Subscription, SubscriptionPeriod
from subscriptions.services.lifecycle import subscription_cancel
from subscriptions.services.status import subscription_transition, subscriptions_mark_past_due
from teams.selectors import billing_settings_get
from wallets.models import Wallet
from wallets.services.wallets import wallet_freeze, wallet_unfreeze

from ..errors import DunningError, DunningTransitionError
from ..models import Dunning, DunningPolicy

logger = logging.getLogger(__name__)


# --- the policy ----------------------------------------------------------------------------------


def dunning_policy_get() -> DunningPolicy:
    """The one :class:`DunningPolicy` row, created with the defaults (days 1, 3, 5, 7; unpaid; freeze)."""
    policy, _ = DunningPolicy.objects.get_or_create(pk=1)
    return policy


def dunning_check_transition(*, dunning: Dunning, to_status: str) -> None:
    """Refuse a status move that ``Dunning.TRANSITIONS`` does not allow (the one check)."""
    if to_status not in Dunning.TRANSITIONS.get(dunning.status, ()):
        raise DunningTransitionError(
            f"dunning {dunning.pk} is {dunning.status}; it cannot become {to_status}", param="status",
        )


# --- reads ---------------------------------------------------------------------------------------


def invoice_subscription(invoice: Invoice) -> Subscription | None:
    """The subscription whose period fee (or overage) ``invoice`` carries, if any."""
    period = (SubscriptionPeriod.objects.select_related("subscription")
              .filter(invoice=invoice).order_by("-period_start").first())
    if period is None:
        period = (SubscriptionPeriod.objects.select_related("subscription")
                  .filter(usage_invoice=invoice).order_by("-period_start").first())
    return period.subscription if period else None


def _when(instant: dt.datetime) -> str:
    return timezone.localtime(instant, dt.UTC).strftime("%d %B %Y")


def _how_to_pay(invoice: Invoice) -> str:
    return (
        f"How to pay: replace the card on file (we retry it automatically on the days above), or pay "
        f"by bank transfer quoting the invoice number {invoice.number}. "
        f"Questions: reply to this e-mail ({settings.DEFAULT_FROM_EMAIL})."
    )


def dunning_remind(dunning: Dunning, invoice: Invoice, *, failure: str, next_at: dt.datetime | None) -> None:
    """Queue the reminder to the team's billing addresses (``BillingSettings.notify_emails``), sent by
    the ``mail`` queue once the caller's transaction commits: the amount due, the invoice number and
    due date, Stripe's reason, the next retry's date (or, after the last, the final action) and how
    to pay."""
    to = billing_settings_get(team=invoice.team).notify_email_list
    amount = format_amount(invoice.amount_due, invoice.currency)
    subject = f"Payment failed: invoice {invoice.number}, {amount}"
    after = (f"We will try your card again on {_when(next_at)}." if next_at else
             "This was our last attempt: " + _final_words(dunning))
    body = "\n\n".join([
        f"Hello {invoice.team_name or invoice.team},",
        f"We could not collect {amount} for invoice {invoice.number} (due {invoice.due_date:%d %B %Y})"
        + (f": {failure}" if failure else "."),
        after,
        _how_to_pay(invoice),
        settings.BILLING_COMPANY_NAME,
    ])
    mail_queue(subject=subject, body=body, to=to)


def _final_words(dunning: Dunning) -> str:
    """What the final action did, for the team: the subscription's new status, the wallet frozen."""
    done = []
    if dunning.subscription_id is not None:
        done.append("your subscription is now unpaid" if dunning.final_action == DunningPolicy.FinalAction.UNPAID
                    else "your subscription is canceled")
    if dunning.frozen_wallet_ids:
        done.append("your wallet is frozen (no new charges) until the invoice is paid")
    return (" and ".join(done) or "the invoice remains due") + "."


# --- start, final action, end -------------------------------------------------------------------


def dunning_start(*, invoice: Invoice, failure_code: str = "", failure_message: str = "",
                  at: dt.datetime | None = None) -> Dunning:
    """Start dunning ``invoice`` after a payment of it failed; return the dunning (new or existing).

    Copies the policy (:func:`dunning_policy_get`); the first retry is due ``retry_days[0]`` days
    after ``at`` (aware datetime, default now). Moves the invoice's subscription to ``past_due``
    (when it may), and queues the reminder to the team's billing addresses: the amount, the invoice
    number, Stripe's reason (``failure_message``, else ``failure_code``), the next retry's date and
    how to pay. With no retry days the final action is taken at once.

    Idempotent per invoice: a second report of a failure (the webhook after the synchronous answer,
    a failed retry) finds the dunning and changes nothing. Runs inside the caller's transaction
    when there is one (the collection, the webhook).

    Raises:
        DunningError: (409 ``dunning_not_open``) the invoice awaits no payment (a draft, paid,
            cancelled, or nothing left due).
    """
    at = at or timezone.now()
    with transaction.atomic():
        locked = Invoice.objects.select_for_update(of=("self",)).select_related("team").get(pk=invoice.pk)
        existing = Dunning.objects.filter(invoice=locked).first()
        if existing is not None:
            return existing
        if locked.status not in Invoice.OPEN_STATUSES or locked.amount_due <= 0:
            raise DunningError(f"invoice {locked.display_number} is {locked.status} with {locked.amount_due} "
                               f"{locked.currency} due: there is nothing to collect", param="invoice")
        policy = dunning_policy_get()
        days = list(policy.retry_days)
        subscription = invoice_subscription(locked)
        dunning = Dunning.objects.create(
            invoice=locked, team=locked.team, subscription=subscription, amount=locked.amount_due,
            currency=locked.currency, retry_days=days, final_action=policy.final_action,
            freeze_wallet=policy.freeze_wallet, started_at=at,
            next_attempt_at=at + dt.timedelta(days=days[0]) if days else at,
        )
        if subscription is not None:
            subscriptions_mark_past_due(subscriptions=[subscription])
        failure = failure_message or failure_code
        if days:
            dunning_remind(dunning, locked, failure=failure, next_at=dunning.next_attempt_at)
        else:
            dunning_final_action(dunning, locked, at=at, failure=failure)
    return dunning


def dunning_final_action(dunning: Dunning, invoice: Invoice, *, at: dt.datetime, failure: str) -> None:
    """After the last failed retry, under the dunning's lock (caller's transaction): the subscription
    becomes ``unpaid`` or is canceled now without credit (the period was never paid), the team's
    active wallets are frozen when the dunning says so (their ids kept, to unfreeze only those), the
    dunning is ``exhausted``, and a last e-mail says what happened."""
    dunning_check_transition(dunning=dunning, to_status=Dunning.Status.EXHAUSTED)
    taken = []
    sub = dunning.subscription
    if sub is not None:
        sub.refresh_from_db()
        if dunning.final_action == DunningPolicy.FinalAction.CANCELED:
            if sub.status != Subscription.Status.CANCELED:
                # No credit for the unused time: the period was never paid.
                subscription_cancel(subscription=sub, at_period_end=False, at=at, prorate_unused=False)
                taken.append("subscription canceled")
        elif Subscription.Status.UNPAID in Subscription.TRANSITIONS[sub.status]:
            subscription_transition(subscription=sub, to_status=Subscription.Status.UNPAID)
            taken.append("subscription unpaid")
    frozen = []
    if dunning.freeze_wallet:
        for wallet in Wallet.objects.filter(team=dunning.team, status=Wallet.Status.ACTIVE).order_by("pk"):
            wallet_freeze(wallet=wallet)
            frozen.append(wallet.pk)
        if frozen:
            taken.append(f"{len(frozen)} wallet(s) frozen")
    dunning.status = Dunning.Status.EXHAUSTED
    dunning.next_attempt_at = None
    dunning.ended_at = at
    dunning.frozen_wallet_ids = frozen
    dunning.final_action_taken = ", ".join(taken) or "nothing to do"
    dunning.save(update_fields=["status", "next_attempt_at", "ended_at", "frozen_wallet_ids",
                                "final_action_taken", "updated_at"])
    dunning_remind(dunning, invoice, failure=failure, next_at=None)


def _end_locked(dunning: Dunning, *, status: str, by: str, at: dt.datetime) -> Dunning:
    """End a dunning (``recovered`` or ``closed``), reversing what it did, under its lock."""
    dunning_check_transition(dunning=dunning, to_status=status)
    sub = dunning.subscription
    if sub is not None:
        sub.refresh_from_db()
        if sub.status in (Subscription.Status.PAST_DUE, Subscription.Status.UNPAID):
            subscription_transition(subscription=sub, to_status=Subscription.Status.ACTIVE)
    for wallet in Wallet.objects.filter(pk__in=dunning.frozen_wallet_ids, status=Wallet.Status.FROZEN).order_by("pk"):
        wallet_unfreeze(wallet=wallet)
    dunning.status = status
    dunning.next_attempt_at = None
    dunning.ended_at = dunning.ended_at or at
    dunning.recovered_by = (by or "")[:200]
    dunning.save(update_fields=["status", "next_attempt_at", "ended_at", "recovered_by", "updated_at"])
    return dunning


def _open_dunning_locked(invoice_id: int) -> Dunning | None:
    return (Dunning.objects.select_for_update(of=("self",)).select_related("subscription")
            .filter(invoice_id=invoice_id, status__in=[Dunning.Status.ACTIVE, Dunning.Status.EXHAUSTED]).first())


def dunning_recover(*, invoice: Invoice, recovered_by: str, at: dt.datetime | None = None) -> Dunning | None:
    """End the invoice's dunning once the invoice is paid, reversing what can be reversed.

    The subscription becomes ``active`` again if it is ``past_due`` or ``unpaid`` (a canceled one
    stays canceled: cancellation is final); the wallets this dunning froze are unfrozen (a wallet
    finance froze for another reason is left alone). ``recovered_by``: the payment's reference
    (``pi_…``, ``ch_…``, a bank reference). Returns ``None`` when the invoice has no open dunning.
    Idempotent; runs inside the caller's transaction when there is one (the webhook, the retry).
    """
    at = at or timezone.now()
    with transaction.atomic():
        dunning = _open_dunning_locked(invoice.pk)
        if dunning is None:
            return None
        return _end_locked(dunning, status=Dunning.Status.RECOVERED, by=recovered_by or "paid", at=at)


def dunning_settle_if_done(invoice: Invoice, *, at: dt.datetime) -> Dunning | None:
    """End the dunning of an invoice that needs no more collecting (paid: recovered; cancelled or
    nothing due: closed), inside the caller's transaction; ``None`` if it still needs collecting."""
    if invoice.status == Invoice.Status.PAID:
        return dunning_recover(invoice=invoice, recovered_by=invoice.payment_reference or "marked paid", at=at)
    if invoice.status not in Invoice.OPEN_STATUSES or invoice.amount_due <= 0:
        dunning = _open_dunning_locked(invoice.pk)
        if dunning is not None:
            return _end_locked(dunning, status=Dunning.Status.CLOSED, by=f"invoice {invoice.status}", at=at)
    return None


def dunning_settle(*, invoice_id: int, at: dt.datetime | None = None) -> Dunning | None:
    """End the dunning of an invoice that needs no more collecting, by whatever door it was paid or
    cancelled (:func:`dunning_settle_if_done` under the invoice's lock); ``None`` when there is
    nothing to end. For the ``dunning_end`` job and ``run_dunning``."""
    at = at or timezone.now()
    with transaction.atomic(durable=True):
        invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=invoice_id)
        return dunning_settle_if_done(invoice, at=at)
