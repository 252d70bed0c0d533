"""Payments: every attempt to take money through Stripe is a :class:`Payment` row, and every refund a
:class:`Refund` row.

Amounts are ``Decimal`` in the currency's major unit (``12.34`` USD), whole minor units (an invoice's
amount due, a top-up by card); Stripe's integer minor units are converted at the door by
``billing_site.money.to_stripe_amount`` / ``from_stripe_amount``. Never summed across currencies.

The team's Stripe customer id lives on ``teams.BillingSettings.stripe_customer_id`` (one per team).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing_site.fields import CurrencyField, MeteredAmountField
from invoices.models import InvoiceAmountField


class Payment(models.Model):
    """One attempt to take money through Stripe: a PaymentIntent of an invoice or of a top-up by card.

    Lifecycle: ``pending`` (the row exists, Stripe not yet asked) → ``processing`` (Stripe accepted the
    PaymentIntent, the money is not settled yet) | ``requires_action`` (the card needs its holder:
    3-D Secure) | ``succeeded`` | ``failed`` (declined; ``failure_code`` / ``failure_message`` say
    why) | ``canceled``. ``succeeded`` is final except for refunds (``amount_refunded``).

    Invariants: ``amount > 0``; ``0 <= amount_refunded <= amount``; an invoice payment has an
    ``invoice``, a top-up a ``wallet``; ``stripe_payment_intent_id`` is unique when set;
    ``idempotency_key`` (sent to Stripe as its ``Idempotency-Key``) is unique: ``invoice-<pk>-<attempt>``
    for an invoice, ``top-up-<team>-<caller's key>`` for a top-up. A top-up credits its wallet once,
    ``ledger_entry`` being that credit (``wallets.services.posting.wallet_top_up``, key ``stripe-<pi id>``).

    Dunning (the ``dun`` work) reads failed invoice payments: ``status=failed, kind=invoice``.
    """

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        TOP_UP = "top_up", "Top-up"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        REQUIRES_ACTION = "requires_action", "Requires action"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    #: Statuses after which Stripe will not change the payment any more (but for refunds).
    FINAL_STATUSES = ("succeeded", "failed", "canceled")

    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="payments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    amount = MeteredAmountField(help_text="In the currency's major unit, whole minor units (12.34).")
    currency = CurrencyField()
    amount_refunded = MeteredAmountField(default=0)
    description = models.CharField(max_length=500, blank=True)
    invoice = models.ForeignKey(
        "invoices.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="payments",
    )
    wallet = models.ForeignKey(
        "wallets.Wallet", null=True, blank=True, on_delete=models.PROTECT, related_name="card_payments",
        help_text="The wallet a top-up by card credits.",
    )
    ledger_entry = models.ForeignKey(
        "wallets.LedgerEntry", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The top-up entry, once the payment succeeded.",
    )
    attempt = models.PositiveIntegerField(default=1, help_text="1 for the first attempt on an invoice, then 2, 3…")
    idempotency_key = models.CharField(max_length=255, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    stripe_charge_id = models.CharField(max_length=255, blank=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="payment_team_created"),
            models.Index(fields=["status", "kind"], name="payment_status_kind"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["invoice", "top_up"]), name="payment_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "processing", "requires_action", "succeeded", "failed", "canceled"]),
                name="payment_status_valid",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=models.F("amount")),
                name="payment_refunded_within_amount",
            ),
            models.CheckConstraint(
                condition=(Q(kind="invoice") & Q(invoice__isnull=False)) | (Q(kind="top_up") & Q(wallet__isnull=False)),
                name="payment_kind_has_target",
            ),
            models.UniqueConstraint(
                fields=["stripe_payment_intent_id"], condition=~Q(stripe_payment_intent_id=""),
                name="payment_intent_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} payment {self.pk} ({self.status})"

    @property
    def reference(self) -> str:
        """What the invoice records as its payment reference: the charge, else the PaymentIntent."""
        return self.stripe_charge_id or self.stripe_payment_intent_id


class Refund(models.Model):
    """A refund through Stripe of (part of) a succeeded payment, made by a credit note on a paid invoice.

    ``status``: ``pending`` (Stripe not yet asked or not answered) → ``succeeded`` | ``failed``.
    ``idempotency_key`` is derived from the invoice and what was credited before (``refund-<invoice>-<n>``),
    so a retry after a lost answer refunds once. The credit note records the refund id in its
    ``refund_reference``.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    credit_note = models.OneToOneField(
        "invoices.CreditNote", null=True, blank=True, on_delete=models.PROTECT, related_name="refund",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    amount = MeteredAmountField()
    currency = CurrencyField()
    idempotency_key = models.CharField(max_length=255, unique=True)
    stripe_refund_id = models.CharField(max_length=255, blank=True)
    failure_message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.CheckConstraint(condition=Q(status__in=["pending", "succeeded", "failed"]), name="refund_status_valid"),
            models.UniqueConstraint(
                fields=["stripe_refund_id"], condition=~Q(stripe_refund_id=""), name="refund_stripe_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"Refund {self.stripe_refund_id or self.pk} ({self.status})"


# --- Webhooks in and dunning ---------------------------------------------------------------------


def default_retry_days() -> list[int]:
    """Stripe's suggested custom schedule: days 1, 3, 5 and 7 after the failed payment."""
    return [1, 3, 5, 7]


class StripeEvent(models.Model):
    """One Stripe event received at ``POST /webhooks/stripe/``, recorded once (its id is unique).

    The row is inserted in the same transaction as the event's effect: a second delivery of the
    same event (a replay, or one of many concurrent deliveries) waits on the unique index for the
    first transaction, then finds the row and does nothing. If the effect fails, the row goes with
    it and Stripe's next delivery tries again.

    ``payload`` is the event as received, with any ``client_secret`` removed (a PaymentIntent's or
    SetupIntent's secret is never stored). ``outcome`` says what the event did: ``processed``,
    ``ignored`` (a type the product does not handle, or nothing to do), ``unmatched`` (no payment,
    invoice or team of ours), ``refused`` (a service refused the effect: the ``result`` says why;
    finance acts on it, redelivering would not change it).
    """

    class Outcome(models.TextChoices):
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        UNMATCHED = "unmatched", "Unmatched"
        REFUSED = "refused", "Refused"

    event_id = models.CharField(max_length=255, unique=True, help_text="Stripe's event id (evt_…).")
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    object_id = models.CharField(max_length=255, blank=True, help_text="The id of the event's object (pi_…, ch_…).")
    created = models.DateTimeField(null=True, blank=True, help_text="When Stripe created the event.")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PROCESSED)
    result = models.CharField(max_length=500, blank=True, help_text="What the event did, for people.")
    team = models.ForeignKey("teams.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["processed", "ignored", "unmatched", "refused"]), name="stripe_event_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class DunningPolicy(models.Model):
    """What happens after a payment fails: when it is retried, and what follows the last retry.

    One row (``id`` = 1, a CHECK), edited by finance in the admin; read by
    ``payments.dunning.dunning_policy_get`` (created with the defaults on first use). A dunning
    keeps a copy of the policy as it was when the dunning started, so a change applies to payments
    that fail afterwards.

    ``retry_days``: days after the failed payment on which it is retried, strictly increasing,
    each 1–365 (Stripe's custom retry schedule; default 1, 3, 5, 7). ``final_action``: what the
    team's subscription becomes after the last retry failed (``unpaid``: kept, not renewed as paid;
    ``canceled``: ended). ``freeze_wallet``: also freeze the team's wallets (charges refused
    until a payment arrives).
    """

    class FinalAction(models.TextChoices):
        UNPAID = "unpaid", "Subscription becomes unpaid"
        CANCELED = "canceled", "Subscription is canceled"

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    retry_days = ArrayField(
        models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(365)]),
        default=default_retry_days, size=20,
        help_text="Days after the failed payment on which it is retried, e.g. 1,3,5,7.",
    )
    final_action = models.CharField(max_length=10, choices=FinalAction.choices, default=FinalAction.UNPAID)
    freeze_wallet = models.BooleanField(default=True, help_text="Freeze the team's wallets after the last retry.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "dunning policy"
        verbose_name_plural = "dunning policy"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="dunning_policy_single_row"),
            models.CheckConstraint(condition=Q(final_action__in=["unpaid", "canceled"]),
                                   name="dunning_policy_final_action_valid"),
        ]

    def __str__(self) -> str:
        days = ", ".join(str(d) for d in self.retry_days) or "no retries"
        return f"Retry on days {days}; then {self.get_final_action_display().lower()}"

    def clean(self) -> None:
        days = list(self.retry_days or [])
        if any(b <= a for a, b in zip(days, days[1:])):
            raise ValidationError({"retry_days": "The retry days must increase strictly, e.g. 1,3,5,7."})


class Dunning(models.Model):
    """The collection of one invoice whose automatic payment failed: its retries and its outcome.

    Status: ``active`` (retries due at ``next_attempt_at``) → ``recovered`` (a payment arrived:
    by a retry, a webhook or by hand) | ``exhausted`` (the last retry failed; the final action was
    taken) | ``closed`` (the invoice was cancelled, or nothing is left to collect).
    ``exhausted`` → ``recovered`` when a payment arrives later: the final action is reversed where
    it can be (the subscription active again unless canceled, the wallets frozen by the dunning
    unfrozen).

    The schedule (``retry_days``), ``final_action`` and ``freeze_wallet`` are copied from the
    :class:`DunningPolicy` when the dunning starts. ``frozen_wallet_ids``: the wallets this
    dunning froze (only those are unfrozen again).

    Invariants: one dunning per invoice; an active dunning has ``next_attempt_at``; an ended one
    has ``ended_at``.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active (retrying)"
        RECOVERED = "recovered", "Recovered (paid)"
        EXHAUSTED = "exhausted", "Exhausted (final action taken)"
        CLOSED = "closed", "Closed (nothing to collect)"

    #: Allowed status moves, the one place they are written; checked by ``dunning_check_transition``.
    TRANSITIONS: dict[str, tuple[str, ...]] = {
        "active": ("recovered", "exhausted", "closed"),
        "exhausted": ("recovered", "closed"),
        "recovered": (),
        "closed": (),
    }

    invoice = models.OneToOneField("invoices.Invoice", on_delete=models.PROTECT, related_name="dunning")
    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="dunnings")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="dunnings",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    amount = InvoiceAmountField(help_text="What was due when the payment failed, in minor units.")
    currency = CurrencyField()
    retry_days = ArrayField(models.PositiveSmallIntegerField(), default=list)
    final_action = models.CharField(max_length=10, choices=DunningPolicy.FinalAction.choices)
    freeze_wallet = models.BooleanField(default=True)
    started_at = models.DateTimeField(help_text="When the first payment failed: the retry days count from here.")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Retries made so far.")
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    final_action_taken = models.CharField(max_length=200, blank=True)
    frozen_wallet_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    recovered_by = models.CharField(max_length=200, blank=True, help_text="The payment that ended it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["active", "recovered", "exhausted", "closed"]),
                                   name="dunning_status_valid"),
            models.CheckConstraint(condition=~Q(status="active") | Q(next_attempt_at__isnull=False),
                                   name="dunning_active_has_next_attempt"),
            models.CheckConstraint(condition=Q(status="active") | Q(ended_at__isnull=False),
                                   name="dunning_ended_has_date"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="dunning_due", condition=Q(status="active")),
        ]

    def __str__(self) -> str:
        return f"Dunning of invoice {self.invoice_id} ({self.status})"


class DunningAttempt(models.Model):
    """One retry of a dunning's payment: the invoice charged again off-session, on a retry day.

    Written ``pending`` under the dunning's lock before Stripe is asked, then ``succeeded``,
    ``failed`` (Stripe's failure code and message; the reminder was queued: ``mailed``) or
    ``skipped`` (the invoice was settled meanwhile, or the payment is still processing: not counted
    as a retry). ``payment`` is the attempt's ``Payment`` row (its own idempotency key,
    ``invoice-<id>-attempt-<n>``, sent to Stripe).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    dunning = models.ForeignKey(Dunning, on_delete=models.PROTECT, related_name="retries")
    number = models.PositiveSmallIntegerField(help_text="1 for the first retry.")
    scheduled_for = models.DateTimeField()
    attempted_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    payment_intent_id = models.CharField(max_length=255, blank=True)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    mailed = models.BooleanField(default=False, help_text="The reminder e-mail was queued.")

    class Meta:
        ordering = ["dunning", "number"]
        constraints = [
            models.UniqueConstraint(fields=["dunning", "number"], name="dunning_attempt_unique_number"),
            models.CheckConstraint(condition=Q(status__in=["pending", "succeeded", "failed", "skipped"]),
                                   name="dunning_attempt_status_valid"),
        ]

    def __str__(self) -> str:
        return f"Retry {self.number} of dunning {self.dunning_id} ({self.status})"
