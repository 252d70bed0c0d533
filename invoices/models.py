"""Invoices: what a team (or a user) is billed for one billing period, and its lines.

Amounts: each line keeps ``amount_precise`` (metered precision, 12 decimal places) and ``amount``
in the currency's minor units; the rounded lines sum exactly to ``subtotal`` (largest remainder,
``billing_site.money.round_preserving_sum``). ``total = subtotal + tax_amount``. Periods are the
half-open date range ``[period_start, period_end)``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from billing_site.money import INVOICE_DECIMAL_PLACES, INVOICE_MAX_DIGITS
from chargeback.models import CurrencyField, MeteredAmountField


def InvoiceAmountField(**kwargs) -> models.DecimalField:  # noqa: N802 - reads as a field class
    """An invoice amount: stored with 4 decimals, always quantized to the currency's minor units."""
    return models.DecimalField(max_digits=INVOICE_MAX_DIGITS, decimal_places=INVOICE_DECIMAL_PLACES, **kwargs)


class Invoice(models.Model):
    """A bill to one team (``user`` empty) or one user within a team, for one billing period.

    Invariants: at most one live (not cancelled) invoice per team, user and period (partial unique
    constraints); ``total = subtotal + tax_amount`` (a CHECK on PostgreSQL, migration 0002); ``number`` is unique once assigned (at issue).
    Drafts are refreshed in place by the billing run; issued invoices never change (issue 4).
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        PAID = "paid", "Paid"
        OVERDUE = "overdue", "Overdue"
        CANCELLED = "cancelled", "Cancelled"

    class Kind(models.TextChoices):
        CHARGEBACK = "chargeback", "Chargeback"
        PREPAID_STATEMENT = "prepaid_statement", "Prepaid statement"

    team = models.ForeignKey("chargeback.Team", on_delete=models.PROTECT, related_name="invoices")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.CHARGEBACK)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    number = models.CharField(max_length=64, null=True, blank=True, unique=True)
    period_start = models.DateField(help_text="First day of the billing period (inclusive).")
    period_end = models.DateField(help_text="First day after the billing period (exclusive).")
    currency = CurrencyField()
    subtotal = InvoiceAmountField(default=0)
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=0, help_text="Percent, e.g. 19.0000.")
    tax_amount = InvoiceAmountField(default=0)
    total = InvoiceAmountField(default=0)
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    allocation_run = models.ForeignKey(
        "chargeback.AllocationRun", null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    # Snapshots taken when the invoice is generated, so it stays readable when the team changes.
    team_name = models.CharField(max_length=200, blank=True)
    cost_center = models.CharField(max_length=50, blank=True)
    billing_address = models.TextField(blank=True)
    pdf = models.FileField(upload_to="invoices/%Y/%m/", blank=True)
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "team_name", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "period_start", "period_end", "kind"],
                condition=Q(user__isnull=True) & ~Q(status="cancelled"),
                name="invoice_one_live_per_team_period",
            ),
            models.UniqueConstraint(
                fields=["team", "user", "period_start", "period_end", "kind"],
                condition=Q(user__isnull=False) & ~Q(status="cancelled"),
                name="invoice_one_live_per_user_period",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "pending", "sent", "paid", "overdue", "cancelled"]),
                name="invoice_status_valid",
            ),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="invoice_period_not_empty"),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft {self.team_name} {self.period_start:%Y-%m}"

    @property
    def display_number(self) -> str:
        """The invoice number, or a draft reference for invoices not yet issued."""
        return self.number or f"DRAFT-{self.pk}"


class InvoiceLine(models.Model):
    """One line of an invoice: a service's direct cost, or the share of a pool an allocation rule gave.

    Every descriptive field is a snapshot taken at generation time. ``amount`` is ``amount_precise``
    rounded so the invoice's lines sum exactly to its subtotal.
    """

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    description = models.CharField(max_length=500)
    service = models.CharField(max_length=200, blank=True)
    rule = models.ForeignKey("chargeback.AllocationRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rule_name = models.CharField(max_length=200, blank=True)
    rule_type = models.CharField(max_length=20, blank=True)
    quantity = MeteredAmountField(default=1)
    unit = models.CharField(max_length=50, blank=True)
    unit_price = MeteredAmountField(default=0)
    amount_precise = MeteredAmountField()
    amount = InvoiceAmountField()
    record_count = models.PositiveIntegerField(default=0)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"
