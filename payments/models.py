"""Payments: every attempt to take money through Stripe is a :class:`Payment` row, and every refund a
:class:`Refund` row.

Amounts are ``Decimal`` in the currency's major unit (``12.34`` USD), whole minor units (an invoice's
amount due, a top-up by card); Stripe's integer minor units are converted at the door by
``billing_site.money.to_stripe_amount`` / ``from_stripe_amount``. Never summed across currencies.

The team's Stripe customer id lives on ``teams.BillingSettings.stripe_customer_id`` (one per team).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from billing_site.fields import CurrencyField, MeteredAmountField


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
