"""Dunning's retries: on each of the policy's days, the invoice is charged again off-session.

``manage.py run_dunning`` (hourly as the periodic job ``jobs.tasks.command_run_dunning``) calls
:func:`dunnings_run_due`; each due dunning gets one retry (:func:`dunning_retry`), which is one
``payments.services.collection.invoice_payment_attempt``: a new ``Payment`` and a PaymentIntent
confirmed off-session with its own idempotency key (``invoice-<id>-attempt-<n>``), the outcome
applied once by ``payment_intent_apply`` whoever reports it (this answer or the webhook).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from billing_site.errors import BillingError
from invoices.errors import InvalidTransition
from invoices.models import Invoice

from ..errors import PaymentError
from ..models import Dunning, DunningAttempt, Payment
from .collection import invoice_payment_attempt
from .dunning import dunning_final_action, dunning_remind, dunning_settle, dunning_settle_if_done

logger = logging.getLogger(__name__)

#: How long a retry under way keeps its dunning from other runs (Stripe answers within its timeout).
RETRY_LEASE = dt.timedelta(minutes=15)


def _attempt_claim(dunning_id: int, *, at: dt.datetime) -> DunningAttempt | None:
    """Step 1: under the dunning's lock (``SKIP LOCKED``: another run has it), the attempt due now,
    written ``pending``; ``None`` when nothing is due (the dunning ended if its invoice needs nothing)."""
    with transaction.atomic(durable=True):
        dunning = Dunning.objects.select_for_update(of=("self",), skip_locked=True).filter(pk=dunning_id).first()
        if dunning is None or dunning.status != Dunning.Status.ACTIVE or dunning.next_attempt_at > at:
            return None
        invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=dunning.invoice_id)
        if dunning_settle_if_done(invoice, at=at) is not None:
            return None
        attempt, _ = DunningAttempt.objects.get_or_create(
            dunning=dunning, number=dunning.attempts + 1,
            defaults={"scheduled_for": dunning.next_attempt_at, "attempted_at": at},
        )
        # A lease: another run arriving while Stripe answers finds nothing due; a run that died
        # half-way is resumed (same attempt, same payment and key) once the lease is over.
        dunning.next_attempt_at = at + RETRY_LEASE
        dunning.save(update_fields=["next_attempt_at", "updated_at"])
        return attempt


def dunning_retry(*, dunning: Dunning, at: dt.datetime | None = None) -> DunningAttempt | None:
    """Make the dunning's due retry now: the invoice's amount due, charged off-session again.

    Three steps, so that no row stays locked while Stripe answers: (1) under the dunning's lock the
    attempt is written ``pending`` and the dunning leased for :data:`RETRY_LEASE` (a concurrent run
    finds nothing due); (2) ``invoice_payment_attempt`` asks Stripe (a new ``Payment``
    with its idempotency key; a success pays the invoice and, through ``payment_succeeded_hook``,
    ends the dunning as recovered, reversing the final action); (3) under the lock again the
    outcome: declined → the next retry is scheduled (``started_at + retry_days[n]``) and the
    reminder queued, or after the last retry the final action; a payment still processing (a bank
    debit) waits a day without counting as a retry.

    Args:
        at: the instant of the run (aware; default now): the attempt is made if
            ``next_attempt_at <= at``.

    Returns:
        The attempt, or ``None`` when nothing was due (not active, not yet due, held by another
        run, or the invoice was paid or cancelled meanwhile: then the dunning ended).

    Raises:
        StripeUnavailable, PaymentsNotConfigured: Stripe could not be asked; the attempt stays
            ``pending`` and the next run makes it (the payment resumes with its idempotency key).
    """
    at = at or timezone.now()
    attempt = _attempt_claim(dunning.pk, at=at)
    if attempt is None:
        return None
    invoice = Invoice.objects.select_related("team").get(pk=attempt.dunning.invoice_id)
    try:
        payment = invoice_payment_attempt(invoice=invoice)
    except PaymentError as no_card:  # no customer or no card: a failed retry, the team is told
        return _attempt_record(attempt.pk, payment=None, failure=(no_card.failure_code, no_card.message), at=at)
    except InvalidTransition:  # paid or cancelled since step 1: the dunning ends
        return _attempt_record(attempt.pk, payment=None, failure=None, at=at)
    return _attempt_record(attempt.pk, payment=payment, failure=None, at=at)


def _attempt_record(attempt_id: int, *, payment: Payment | None, failure: tuple[str, str] | None,
                    at: dt.datetime) -> DunningAttempt:
    """Step 3: the attempt's outcome under the dunning's lock; once (a recorded attempt is kept)."""
    with transaction.atomic(durable=True):
        dunning = (Dunning.objects.select_for_update(of=("self",)).select_related("subscription", "team")
                   .get(retries__pk=attempt_id))
        attempt = DunningAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.status != DunningAttempt.Status.PENDING:
            return attempt
        invoice = Invoice.objects.select_for_update(of=("self",)).select_related("team").get(pk=dunning.invoice_id)
        if payment is not None:
            payment.refresh_from_db()
            attempt.payment = payment
            attempt.payment_intent_id = payment.stripe_payment_intent_id
            failure = (payment.failure_code, payment.failure_message) if payment.status in (
                Payment.Status.FAILED, Payment.Status.CANCELED) else None
        if dunning.status != Dunning.Status.ACTIVE or dunning_settle_if_done(invoice, at=at) is not None:
            # Paid (by this retry: the success hook ended the dunning; or by another door), or cancelled.
            attempt.status = (DunningAttempt.Status.SUCCEEDED if payment is not None
                              and payment.status == Payment.Status.SUCCEEDED else DunningAttempt.Status.SKIPPED)
            attempt.save()
            return attempt
        if failure is None:  # processing or waiting for the cardholder: look again tomorrow
            attempt.status = DunningAttempt.Status.SKIPPED
            attempt.failure_code = payment.status if payment is not None else ""
            attempt.save()
            dunning.next_attempt_at = at + dt.timedelta(days=1)
            dunning.save(update_fields=["next_attempt_at", "updated_at"])
            return attempt
        code, message = failure
        attempt.status = DunningAttempt.Status.FAILED
        attempt.failure_code, attempt.failure_message = (code or "")[:100], (message or "")[:500]
        dunning.attempts += 1
        if dunning.attempts >= len(dunning.retry_days):
            dunning.save(update_fields=["attempts", "updated_at"])
            dunning_final_action(dunning, invoice, at=at, failure=message or code)
        else:
            dunning.next_attempt_at = dunning.started_at + dt.timedelta(days=dunning.retry_days[dunning.attempts])
            dunning.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
            dunning_remind(dunning, invoice, failure=message or code, next_at=dunning.next_attempt_at)
        attempt.mailed = True
        attempt.save()
        return attempt


@dataclasses.dataclass
class DunningRun:
    """What one ``run_dunning`` did: retries made (paid, declined), final actions taken, dunnings
    ended by a payment that came through another door, retries Stripe could not be asked for."""

    retried: int = 0
    recovered: int = 0
    declined: int = 0
    exhausted: int = 0
    settled: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)


def dunnings_run_due(*, at: dt.datetime | None = None) -> DunningRun:
    """Run the due dunning retries (``manage.py run_dunning``; hourly as a periodic job).

    First ends the dunnings whose invoice was paid or cancelled through another door and whose
    ``dunning_end`` job has not run (or an invoice credited in full), reversing what they did; then makes each
    active dunning's retry whose time has come (``next_attempt_at <= at``; at most one per dunning
    per run; one another run holds is skipped). Safe to run concurrently and repeatedly. A retry
    Stripe could not take is listed in ``errors`` and made by the next run.
    """
    at = at or timezone.now()
    run = DunningRun()
    settled = (Dunning.objects.filter(status__in=[Dunning.Status.ACTIVE, Dunning.Status.EXHAUSTED])
               .exclude(invoice__status__in=Invoice.OPEN_STATUSES).values_list("invoice_id", flat=True))
    for invoice_id in list(settled):
        if dunning_settle(invoice_id=invoice_id, at=at) is not None:
            run.settled += 1
    due = (Dunning.objects.filter(status=Dunning.Status.ACTIVE, next_attempt_at__lte=at)
           .order_by("next_attempt_at", "pk").values_list("pk", flat=True))
    for pk in list(due):
        try:
            attempt = dunning_retry(dunning=Dunning(pk=pk), at=at)
        except BillingError as exc:
            logger.warning("dunning %s: the retry could not be made (%s)", pk, exc.code)
            run.errors.append(f"dunning {pk}: {exc.message}")
            continue
        if attempt is None:
            continue
        run.retried += 1
        if attempt.status == DunningAttempt.Status.SUCCEEDED:
            run.recovered += 1
        elif attempt.status == DunningAttempt.Status.FAILED:
            run.declined += 1
            if Dunning.objects.filter(pk=pk, status=Dunning.Status.EXHAUSTED).exists():
                run.exhausted += 1
    return run
