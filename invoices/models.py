"""Invoices: what a team (or a user) is billed for one billing period, and its lines.

Amounts: each line keeps ``amount_precise`` (metered precision, 12 decimal places) and ``amount``
in the currency's minor units; the rounded lines sum exactly to ``subtotal`` (largest remainder,
``billing_site.money.round_preserving_sum``). ``total = subtotal + tax_amount``. Periods are the
half-open date range ``[period_start, period_end)``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from billing_site.fields import CurrencyField, MeteredAmountField
from billing_site.formatting import number_display
from billing_site.money import INVOICE_DECIMAL_PLACES, INVOICE_MAX_DIGITS

from .errors import InvoiceImmutable


def InvoiceAmountField(**kwargs) -> models.DecimalField:  # noqa: N802 - reads as a field class
    """An invoice amount: stored with 4 decimals, always quantized to the currency's minor units."""
    return models.DecimalField(max_digits=INVOICE_MAX_DIGITS, decimal_places=INVOICE_DECIMAL_PLACES, **kwargs)


#: The fields of an invoice that are frozen once it is issued (``issued_at`` set): its amounts, its
#: number and dates, and the snapshots printed on it. Status, payment and credit fields still move.
INVOICE_FROZEN_FIELDS = (
    "team", "user", "kind", "number", "period_start", "period_end", "currency", "subtotal", "tax_rate",
    "tax_amount", "total", "issue_date", "due_date", "allocation_run", "team_name", "cost_center",
    "billing_address", "issued_at", "issued_by",
)


class InvoiceQuerySet(models.QuerySet):
    """Bulk ``update()`` may not touch the frozen fields of issued invoices; ``delete()`` spares them."""

    def update(self, **kwargs):
        frozen = sorted(name for name in kwargs if name.removesuffix("_id") in INVOICE_FROZEN_FIELDS)
        if frozen and self.filter(issued_at__isnull=False).exists():
            raise InvoiceImmutable(f"issued invoices never change: update of {', '.join(frozen)} refused")
        return super().update(**kwargs)

    def delete(self):
        if self.filter(issued_at__isnull=False).exists():
            raise InvoiceImmutable("issued invoices are never deleted: cancel them with a credit note")
        return super().delete()

    update.queryset_only = True
    delete.queryset_only = True


class Invoice(models.Model):
    """A bill to one team (``user`` empty) or one user within a team, for one billing period.

    Invariants: at most one live (not cancelled) invoice per team, user, period, kind and currency
    (partial unique constraints) for chargeback and statement invoices (subscription invoices follow
    the subscription's periods and are unique per subscription and period in ``subscriptions``);
    ``total = subtotal + tax_amount`` (a CHECK, migration 0002); ``number`` is unique once assigned (at issue).
    Drafts are refreshed in place by the billing run; issued invoices never change.

    Lifecycle (``TRANSITIONS``): ``draft`` → ``pending`` (issued: numbered, frozen, PDF
    stored) → ``sent`` → ``paid``; ``pending``/``sent`` → ``overdue`` → ``paid``; ``draft`` →
    ``cancelled``; an issued invoice becomes ``cancelled`` only through a full credit note.
    Issued means ``issued_at`` is set: from then on the fields in ``INVOICE_FROZEN_FIELDS`` and the
    lines never change (``save()`` and the queryset refuse; on PostgreSQL a trigger, migration
    0004). ``credited_total`` (invoice amount, minor units) is the sum of its credit notes' totals,
    ``0 <= credited_total <= total`` for issued invoices; ``amount_due = total − credited_total``.
    """

    #: Allowed status moves, the one place they are written (django-oscar's ``Order.pipeline``).
    #: Checked by ``invoices.services.lifecycle.invoice_check_transition``; the database holds a copy
    #: (table ``invoices_invoice_transition``, migration 0006) whose trigger refuses any other move,
    #: from ``QuerySet.update()`` or raw SQL too. Change both together: a test compares them.
    TRANSITIONS: dict[str, tuple[str, ...]] = {
        "draft": ("pending", "cancelled"),
        "pending": ("sent", "overdue", "paid", "cancelled"),
        "sent": ("paid", "overdue", "cancelled"),
        "overdue": ("paid", "cancelled"),
        "paid": (),
        "cancelled": (),
    }
    #: Moves in ``TRANSITIONS`` that only a full credit note makes (an issued invoice is never
    #: simply cancelled: the credit note is the document that cancels it).
    CREDIT_NOTE_ONLY: frozenset[tuple[str, str]] = frozenset(
        {("pending", "cancelled"), ("sent", "cancelled"), ("overdue", "cancelled")}
    )
    #: Statuses of an issued invoice that still awaits payment (may be credited, become overdue).
    OPEN_STATUSES = ("pending", "sent", "overdue")

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
        SUBSCRIPTION = "subscription", "Subscription"

    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="invoices")
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
    issued_at = models.DateTimeField(null=True, blank=True, help_text="When the invoice was issued (frozen).")
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    payment_reference = models.CharField(max_length=200, blank=True)
    # A payment of this invoice was disputed by the cardholder's bank (Stripe's ``charge.dispute.created``).
    # Not frozen: a dispute happens to an issued invoice and is recorded on it.
    disputed_at = models.DateTimeField(null=True, blank=True, help_text="When a payment of it was disputed.")
    dispute_reference = models.CharField(
        max_length=200, blank=True, help_text="The dispute's id and reason at the payment provider (dp_…).",
    )
    credited_total = InvoiceAmountField(
        default=0, help_text="Σ of the totals of its credit notes, in the currency's minor units."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-period_start", "team_name", "pk"]
        permissions = [
            ("issue", "Can issue invoices"),
            ("mark_paid", "Can record invoice payments"),
            ("issue_credit_note", "Can issue credit notes"),
        ]
        constraints = [
            # One live invoice per team, period, kind and currency: a team with costs in several
            # currencies gets one invoice per currency (as Stripe invoices one currency at a time).
            models.UniqueConstraint(
                fields=["team", "period_start", "period_end", "kind", "currency"],
                condition=Q(user__isnull=True) & ~Q(status="cancelled") & ~Q(kind="subscription"),
                name="invoice_one_live_per_team_period_currency",
            ),
            models.UniqueConstraint(
                fields=["team", "user", "period_start", "period_end", "kind", "currency"],
                condition=Q(user__isnull=False) & ~Q(status="cancelled") & ~Q(kind="subscription"),
                name="invoice_one_live_per_user_period_currency",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "pending", "sent", "paid", "overdue", "cancelled"]),
                name="invoice_status_valid",
            ),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="invoice_period_not_empty"),
            # Every invoice past draft was issued (numbered, dated), except drafts cancelled unissued.
            models.CheckConstraint(
                condition=Q(status__in=["draft", "cancelled"])
                | Q(number__isnull=False, issued_at__isnull=False, issue_date__isnull=False, due_date__isnull=False),
                name="invoice_issued_has_number_and_dates",
            ),
            models.CheckConstraint(condition=Q(credited_total__gte=0), name="invoice_credited_not_negative"),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft {self.team_name} {self.period_start:%Y-%m}"

    @property
    def display_number(self) -> str:
        """The invoice number, or a draft reference for invoices not yet issued."""
        return self.number if self.number and self.is_issued else f"DRAFT-{self.pk}"

    @property
    def is_issued(self) -> bool:
        """Issued invoices (``issued_at`` set) are frozen: amounts, number, dates and lines."""
        return self.issued_at is not None

    @property
    def amount_due(self) -> Decimal:
        """What is left to pay, in the currency's minor units: ``total − credited_total``; 0 once paid or cancelled."""
        if self.status in (self.Status.PAID, self.Status.CANCELLED):
            return Decimal(0)
        return self.total - self.credited_total

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        # What the database holds, to refuse changes of frozen fields in save() (issued invoices).
        instance._loaded_frozen = {
            name: value for name, value in zip(field_names, values)
            if name in _FROZEN_ATTNAMES and value is not models.DEFERRED
        }
        return instance

    def save(self, *args, **kwargs):
        loaded = getattr(self, "_loaded_frozen", None)
        if not self._state.adding and loaded and loaded.get("issued_at") is not None:
            update_fields = kwargs.get("update_fields")
            changed = [
                name for name in _FROZEN_ATTNAMES
                if name in loaded and (update_fields is None or name in update_fields or name.removesuffix("_id") in update_fields)
                and getattr(self, name) != loaded[name]
            ]
            if changed:
                raise InvoiceImmutable(
                    f"invoice {self.number} is issued; its {', '.join(changed)} never change (issue a credit note)"
                )
        super().save(*args, **kwargs)
        self._remember_frozen()

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self._remember_frozen()

    def _remember_frozen(self) -> None:
        # Loaded (not deferred) values only: reading a deferred field here would cost a query.
        self._loaded_frozen = {name: self.__dict__[name] for name in _FROZEN_ATTNAMES if name in self.__dict__}

    def delete(self, *args, **kwargs):
        if self.issued_at is not None:
            raise InvoiceImmutable(f"invoice {self.number} is issued; it is never deleted (issue a credit note)")
        return super().delete(*args, **kwargs)


#: Attribute names (``team_id`` for ``team``) of the frozen fields, as ``from_db`` sees them.
_FROZEN_ATTNAMES = tuple(
    f"{name}_id" if name in ("team", "user", "allocation_run", "issued_by") else name for name in INVOICE_FROZEN_FIELDS
)


def _issued_invoice_ids(invoice_ids) -> list[int]:
    return list(Invoice.objects.filter(pk__in=set(invoice_ids), issued_at__isnull=False).values_list("pk", flat=True))


class InvoiceLineQuerySet(models.QuerySet):
    """Lines of issued invoices are never added, changed or deleted, in bulk either."""

    def update(self, **kwargs):
        if self.filter(invoice__issued_at__isnull=False).exists():
            raise InvoiceImmutable("lines of issued invoices never change: update refused")
        return super().update(**kwargs)

    def delete(self):
        if self.filter(invoice__issued_at__isnull=False).exists():
            raise InvoiceImmutable("lines of issued invoices are never deleted")
        return super().delete()

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        if _issued_invoice_ids(o.invoice_id for o in objs):
            raise InvoiceImmutable("issued invoices get no new lines")
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs, fields, *args, **kwargs):
        objs = list(objs)
        if _issued_invoice_ids(o.invoice_id for o in objs):
            raise InvoiceImmutable("lines of issued invoices never change: update refused")
        return super().bulk_update(objs, fields, *args, **kwargs)

    update.queryset_only = True
    delete.queryset_only = True


class InvoiceLine(models.Model):
    """One line of an invoice: a service's direct cost, or the share of a pool an allocation rule gave.

    Every descriptive field is a snapshot taken at generation time. ``amount`` is ``amount_precise``
    rounded so the invoice's lines sum exactly to its subtotal. Lines of an issued invoice are
    frozen: ``save()``/``delete()`` and the queryset refuse (``InvoiceImmutable``), and on
    PostgreSQL a trigger rejects INSERT, UPDATE and DELETE (migration 0004).
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

    objects = InvoiceLineQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.description}: {number_display(self.amount)}"

    def save(self, *args, **kwargs):
        if _issued_invoice_ids([self.invoice_id]):
            raise InvoiceImmutable(f"invoice {self.invoice_id} is issued; its lines never change")
        return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if _issued_invoice_ids([self.invoice_id]):
            raise InvoiceImmutable(f"invoice {self.invoice_id} is issued; its lines are never deleted")
        return super().delete(*args, **kwargs)


class DocumentSequence(models.Model):
    """The last number handed out for one kind of document in one year: gap-free numbering.

    ``invoices.numbering`` locks the row (``SELECT … FOR UPDATE``) in the transaction that issues the
    document, so the number is taken and the document saved together: a rolled-back issue gives
    its number back, two concurrent issues wait for each other and never share or skip one.
    """

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    year = models.PositiveIntegerField()
    last_value = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "year"], name="document_sequence_unique_kind_year"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.year}: {self.last_value}"


class CreditNote(models.Model):
    """A document that credits (part of) an issued invoice; issued once, never changed.

    Amounts are invoice amounts (the currency's minor units), positive:
    ``total = subtotal + tax_amount`` (a CHECK on PostgreSQL), and its lines sum to ``subtotal``.
    The credit notes of an invoice never total more than the invoice (``credited_total <= total``,
    checked under the invoice's row lock by ``invoices.services.credit_notes.credit_note_issue``). A credit
    note that brings the invoice's ``credited_total`` to its ``total`` cancels the invoice.
    ``number`` is gap-free per year (``CN-YYYYMMDD-NNNN`` by default).

    A credit note on a paid invoice is a refund: ``refund_reference`` names it (the Stripe refund made
    by ``payments.services.refunds.invoice_refund``, or the bank reference of a manual refund); the
    paid invoice stays paid, its ``credited_total`` grows.
    """

    class Reason(models.TextChoices):
        DUPLICATED_CHARGE = "duplicated_charge", "Duplicated charge"
        ORDER_CHANGE = "order_change", "Order change"
        ALLOCATION_CORRECTION = "allocation_correction", "Allocation correction"
        OTHER = "other", "Other"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=30, choices=Reason.choices)
    description = models.TextField(blank=True)
    currency = CurrencyField()
    subtotal = InvoiceAmountField()
    tax_amount = InvoiceAmountField(default=0)
    total = InvoiceAmountField()
    issue_date = models.DateField()
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    pdf = models.FileField(upload_to="credit_notes/%Y/%m/", blank=True)
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    refund_reference = models.CharField(
        max_length=255, blank=True, default="",
        help_text="On a paid invoice: the refund that paid the credit back (a Stripe refund re_…, or a "
                  "bank reference for a manual refund).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-issue_date", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(reason__in=["duplicated_charge", "order_change", "allocation_correction", "other"]),
                name="credit_note_reason_valid",
            ),
            models.CheckConstraint(condition=Q(total__gt=0), name="credit_note_total_positive"),
            models.CheckConstraint(condition=Q(tax_amount__gte=0), name="credit_note_tax_not_negative"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def display_number(self) -> str:
        return self.number

    def save(self, *args, **kwargs):
        # Only the PDF (rendered after the issue commits) may be stored on an existing credit note.
        update_fields = kwargs.get("update_fields")
        if not self._state.adding and (update_fields is None or set(update_fields) - {"pdf", "pdf_sha256"}):
            raise InvoiceImmutable(f"credit note {self.number} is issued; it never changes")
        return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise InvoiceImmutable(f"credit note {self.number} is issued; it is never deleted")


class CreditNoteLine(models.Model):
    """One line of a credit note: an amount (minor units, positive, before tax) credited on an invoice line.

    ``invoice_line`` is empty for a credit of an amount not tied to a line. The credited amounts of
    one invoice line never exceed its amount.
    """

    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveIntegerField()
    description = models.CharField(max_length=500)
    invoice_line = models.ForeignKey(
        InvoiceLine, null=True, blank=True, on_delete=models.PROTECT, related_name="credit_note_lines"
    )
    amount = InvoiceAmountField()

    class Meta:
        ordering = ["credit_note", "position"]
        constraints = [
            models.UniqueConstraint(fields=["credit_note", "position"], name="credit_note_line_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.description}: {number_display(self.amount)}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise InvoiceImmutable("credit note lines never change")
        return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise InvoiceImmutable("credit note lines are never deleted")


class ExchangeRate(models.Model):
    """One exchange rate: ``1 from_currency = rate × to_currency`` on ``date``, and where it came from.

    Kept by finance in the admin and loaded from the ECB's euro reference rates
    (``manage.py load_ecb_rates eurofxref-hist.csv``, ``source = "ECB"``: EUR → each currency).
    A rate is used to invoice a team's costs of another currency in the team's own currency
    (``BillingSettings.invoice_currency``); ``invoices.selectors.exchange_rate_find`` picks it and
    derives the inverse and the cross rates via EUR (``docs/billing-run.md``).

    Invariants: ``rate > 0``; ``from_currency != to_currency``; one rate per (date, from, to,
    source). ``rate`` keeps ``money.RATE_DECIMAL_PLACES`` (10) decimal places.
    """

    date = models.DateField(help_text="The day the rate applies to (the ECB's reference date).")
    from_currency = CurrencyField(help_text="ISO 4217 code of the currency converted from (1 unit).")
    to_currency = CurrencyField(help_text="ISO 4217 code of the currency converted to.")
    rate = models.DecimalField(max_digits=24, decimal_places=10, help_text="Units of to_currency per 1 from_currency.")
    source = models.CharField(max_length=40, default="manual", help_text="Where the rate comes from: ECB, manual, …")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date", "from_currency", "to_currency"]
        constraints = [
            models.UniqueConstraint(fields=["date", "from_currency", "to_currency", "source"],
                                    name="exchange_rate_unique_per_source"),
            models.CheckConstraint(condition=Q(rate__gt=0), name="exchange_rate_positive"),
            models.CheckConstraint(condition=~Q(from_currency=models.F("to_currency")),
                                   name="exchange_rate_two_currencies"),
        ]
        indexes = [models.Index(fields=["from_currency", "to_currency", "-date"], name="exchange_rate_pair_date")]

    def __str__(self) -> str:
        return f"1 {self.from_currency} = {self.rate.normalize():f} {self.to_currency} on {self.date} ({self.source})"
