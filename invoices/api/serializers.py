"""Serializers of the invoices API. Invoice amounts are decimal strings in the currency's minor
units (``"12.34"`` for USD, ``"1234"`` for JPY) with ``currency`` beside them; metered figures
(``amount_precise``, ``unit_price``, ``quantity``) keep 12 decimal places."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.validators import RegexValidator
from rest_framework import serializers

from billing_site.api.fields import (
    MoneyField,
    MonthStartField,
    StrictPrimaryKeyRelatedField,
    StrictSerializerMixin,
    date_range,
    month_range,
)
from billing_site.money import to_minor_units
from chargeback.api.serializers import _ByAgent, _ByFeature, _ByProvider, _ByResourceType, _ByUnit, _SummaryRow
from chargeback.periods import MONTH_PATTERN, BillingPeriod, PeriodError
from invoices.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine
from teams.models import Team

User = get_user_model()


def InvoiceAmountField(**kwargs) -> serializers.DecimalField:  # noqa: N802 - reads as a field class
    """An invoice amount; serializers below print it in the currency's minor units."""
    return serializers.DecimalField(max_digits=20, decimal_places=4, read_only=True, **kwargs)


class _MinorUnitsMixin:
    """Re-print the ``minor_unit_fields`` in the instance's currency's minor units (``12.3400`` → ``12.34``)."""

    minor_unit_fields: tuple[str, ...] = ()

    def to_representation(self, instance):
        data = super().to_representation(instance)
        currency = getattr(instance, "currency", None) or getattr(getattr(instance, "invoice", None), "currency", None)
        if currency is None and hasattr(instance, "credit_note"):
            currency = instance.credit_note.currency
        for name in self.minor_unit_fields:
            value = getattr(instance, name, None)
            if value is not None and currency:
                data[name] = str(to_minor_units(value, currency))
        return data


class InvoiceLineSerializer(_MinorUnitsMixin, serializers.ModelSerializer):
    minor_unit_fields = ("amount",)
    quantity = MoneyField(read_only=True)
    unit_price = MoneyField(read_only=True)
    amount_precise = MoneyField(read_only=True)
    amount = InvoiceAmountField()
    currency = serializers.CharField(source="invoice.currency", read_only=True)

    class Meta:
        model = InvoiceLine
        fields = ["id", "position", "description", "service", "rule", "rule_name", "rule_type", "quantity", "unit",
                  "unit_price", "amount_precise", "amount", "currency", "record_count"]
        read_only_fields = fields


class InvoiceSerializer(_MinorUnitsMixin, serializers.ModelSerializer):
    """An invoice; ``amount_due`` = total − credited_total (0 once paid or cancelled)."""

    minor_unit_fields = ("subtotal", "tax_amount", "total", "credited_total", "amount_due")
    subtotal = InvoiceAmountField()
    tax_amount = InvoiceAmountField()
    total = InvoiceAmountField()
    credited_total = InvoiceAmountField()
    amount_due = InvoiceAmountField()
    number = serializers.CharField(read_only=True, allow_null=True)
    display_number = serializers.CharField(read_only=True)
    has_pdf = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = ["id", "number", "display_number", "kind", "status", "team", "user", "team_name", "cost_center",
                  "period_start", "period_end", "currency", "subtotal", "tax_rate", "tax_amount", "total",
                  "credited_total", "amount_due", "issue_date", "due_date", "issued_at", "sent_at", "paid_at",
                  "payment_reference", "allocation_run", "has_pdf", "pdf_sha256", "created_at", "updated_at"]
        read_only_fields = fields

    def get_has_pdf(self, invoice) -> bool:
        return bool(invoice.pdf)


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "lines"]
        read_only_fields = fields


class InvoiceGenerateSerializer(StrictSerializerMixin, serializers.Serializer):
    """Generate (or refresh) the draft invoice of a team, or of one user of it, for whole months."""

    team = StrictPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False,
                                              help_text="Required unless user is given with exactly one team.")
    user = StrictPrimaryKeyRelatedField(queryset=User.objects.all(), required=False, allow_null=True)
    period_start = MonthStartField(help_text="First day of a month (inclusive).")
    period_end = MonthStartField(help_text="First day of a later month (exclusive).")
    invoice_number = serializers.CharField(max_length=64, required=False, allow_null=True,
                                           help_text="Your own number, used when the invoice is issued.")
    kind = serializers.ChoiceField(choices=Invoice.Kind.choices, required=False, allow_null=True)

    def validate(self, data):
        month_range(data)
        return data


class InvoiceStatusSerializer(StrictSerializerMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=Invoice.Status.choices)
    payment_reference = serializers.CharField(max_length=200, required=False, allow_blank=True, default="",
                                              help_text="Required to mark an invoice paid.")


class CreditNoteLineInputSerializer(StrictSerializerMixin, serializers.Serializer):
    invoice_line = serializers.IntegerField(min_value=1)
    amount = serializers.DecimalField(max_digits=20, decimal_places=4, help_text="Before tax, in minor units.")


class CreditNoteCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    """Neither ``amount`` nor ``lines``: a full credit that cancels the invoice."""

    reason = serializers.ChoiceField(
        choices=CreditNote.Reason.choices,
        help_text="Why the invoice is credited: " + ", ".join(CreditNote.Reason.values) + ".",
        error_messages={"invalid_choice": '"{input}" is not a credit note reason: use one of '
                                          + ", ".join(CreditNote.Reason.values) + "."},
    )
    amount = serializers.DecimalField(max_digits=20, decimal_places=4, required=False, allow_null=True,
                                      help_text="A partial credit, tax-inclusive, in the invoice's minor units.")
    # A ListSerializer built by hand: ``many=True`` would hand ``allow_null`` to each line too, and
    # ``[null]`` would reach the view as a line. Each line is checked on its own: ``lines[0].amount``.
    lines = serializers.ListSerializer(child=CreditNoteLineInputSerializer(), required=False, allow_null=True,
                                       help_text="Lines of the invoice to credit, each before tax.")
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class CreditNoteLineSerializer(_MinorUnitsMixin, serializers.ModelSerializer):
    minor_unit_fields = ("amount",)
    amount = InvoiceAmountField()
    currency = serializers.CharField(source="credit_note.currency", read_only=True)

    class Meta:
        model = CreditNoteLine
        fields = ["position", "description", "invoice_line", "amount", "currency"]
        read_only_fields = fields


class CreditNoteSerializer(_MinorUnitsMixin, serializers.ModelSerializer):
    minor_unit_fields = ("subtotal", "tax_amount", "total")
    subtotal = InvoiceAmountField()
    tax_amount = InvoiceAmountField()
    total = InvoiceAmountField()
    lines = CreditNoteLineSerializer(many=True, read_only=True)

    class Meta:
        model = CreditNote
        fields = ["id", "number", "invoice", "reason", "description", "currency", "subtotal", "tax_amount", "total",
                  "issue_date", "issued_by", "lines", "created_at"]
        read_only_fields = fields


# --- reports ----------------------------------------------------------------------------------


class ReportQuerySerializer(StrictSerializerMixin, serializers.Serializer):
    period_start = serializers.DateField(help_text="First day (inclusive).")
    period_end = serializers.DateField(help_text="Day after the last (exclusive).")

    def validate(self, data):
        date_range(data)
        return data


class _AllocationLine(serializers.Serializer):
    rule = serializers.IntegerField(allow_null=True)
    service = serializers.CharField()
    currency = serializers.CharField()
    amount = MoneyField()


class _Total(serializers.Serializer):
    currency = serializers.CharField()
    amount = MoneyField()


class _UsageBlock(serializers.Serializer):
    totals = _SummaryRow(many=True)
    by_resource_type = _ByResourceType(many=True)
    by_agent = _ByAgent(many=True)
    by_provider = _ByProvider(many=True)
    by_feature = _ByFeature(many=True)
    by_unit = _ByUnit(many=True)


class ReportSerializer(serializers.Serializer):
    """Usage, allocated cost and invoices of a team (or a user) in ``[period_start, period_end)``."""

    team = serializers.IntegerField(allow_null=True)
    user = serializers.IntegerField(allow_null=True)
    period_start = serializers.DateField()
    period_end = serializers.DateField()
    usage = _UsageBlock(help_text="As GET usage/summary/ (cost and quantity per currency).")
    allocations = _AllocationLine(many=True, help_text="Allocated cost of committed runs within the period.")
    invoices = InvoiceSerializer(many=True)
    total_cost = _Total(many=True, help_text="Usage cost in the period, per currency (12 dp).")


# --- billing runs -------------------------------------------------------------------------------------


class BillingRunCreateSerializer(StrictSerializerMixin, serializers.Serializer):
    period = serializers.CharField(
        max_length=20, help_text="The calendar month billed, YYYY-MM (1900-01 to 2999-12).",
        validators=[RegexValidator(MONTH_PATTERN, message="Enter a month as YYYY-MM, from 1900-01 to 2999-12.")],
    )
    teams = StrictPrimaryKeyRelatedField(
        queryset=Team.objects.all(), many=True, required=False,
        help_text="Write only these teams' invoices (the whole month is still allocated); empty: every team.",
    )
    dry_run = serializers.BooleanField(required=False, default=False)
    render_pdfs = serializers.BooleanField(required=False, default=True)

    def validate_period(self, value: str) -> BillingPeriod:
        try:
            return BillingPeriod.month(value.strip())
        except PeriodError as exc:
            raise serializers.ValidationError(f"Enter a month as YYYY-MM ({exc}).") from None


class BillingRunTeamSerializer(serializers.Serializer):
    """One team's line of a billing run: its invoice amount (minor units) and, for a dry run, its metered cost."""

    team = serializers.IntegerField(source="team_id")
    team_name = serializers.CharField()
    currency = serializers.CharField()
    amount = serializers.SerializerMethodField(help_text="Invoice total (dry run: to invoice), minor units.")
    precise = MoneyField(allow_null=True, help_text="Metered cost, 12 dp (dry run only).")
    invoice = serializers.SerializerMethodField()
    invoice_number = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    state = serializers.CharField(help_text="new, refreshed, issued: not changed, cancelled; dry run: "
                                            "would be invoiced, rounds to zero.")

    def get_amount(self, row) -> str | None:
        return None if row.amount is None else str(to_minor_units(row.amount, row.currency))

    def get_invoice(self, row) -> int | None:
        return row.invoice.pk if row.invoice is not None else None

    def get_invoice_number(self, row) -> str | None:
        return row.invoice.display_number if row.invoice is not None else None

    def get_status(self, row) -> str | None:
        return row.invoice.status if row.invoice is not None else None


class BillingRunRefusedSerializer(serializers.Serializer):
    """A team the run did not bill, for the reason in ``message`` (a conversion into the team's
    currency without an exchange rate: ``currencies`` is ``[from, to]``, the message names the date)."""

    team = serializers.IntegerField(source="team_id", allow_null=True, help_text="Empty: usage without a team.")
    team_name = serializers.CharField(source="team")
    currencies = serializers.ListField(child=serializers.CharField())
    records = serializers.IntegerField(help_text="Usage records left out.")
    message = serializers.CharField()


class BillingRunPoolSerializer(serializers.Serializer):
    """One currency's pool of the run and its tie-out (metered, exact), with what its invoices bill."""

    currency = serializers.CharField()
    record_count = serializers.IntegerField()
    total_cost = MoneyField()
    allocated_cost = MoneyField()
    unallocated_cost = MoneyField()


class BillingRunConvertedSerializer(serializers.Serializer):
    """An amount a team's invoice converted into its currency: minor units of ``from`` and ``to``."""

    team = serializers.CharField()
    from_currency = serializers.CharField(source="from")
    to_currency = serializers.CharField(source="to")
    amount = serializers.CharField()
    converted = serializers.CharField()
    rate = serializers.CharField(help_text="Units of to_currency per 1 from_currency.")
    rate_date = serializers.CharField()
    source = serializers.CharField()
    derivation = serializers.CharField(help_text="direct, inverse or cross via EUR")


class BillingRunResultSerializer(serializers.Serializer):
    """The summary of ``invoices.services.billing_run.billing_run_execute``'s ``BillingRunResult``."""

    period = serializers.CharField(source="period.label")
    period_start = serializers.DateField(source="period.start")
    period_end = serializers.DateField(source="period.end")
    dry_run = serializers.BooleanField()
    allocation_run = serializers.IntegerField(source="run.pk", allow_null=True)
    currency = serializers.CharField(source="run.currency")
    record_count = serializers.IntegerField(source="run.record_count")
    total_cost = MoneyField(source="run.total_cost")
    allocated_cost = MoneyField(source="run.allocated_cost")
    unallocated_cost = MoneyField(source="run.unallocated_cost")
    tie_out = serializers.CharField(help_text="allocated X of Y, unallocated Z (metered, exact), one line per currency")
    pools = BillingRunPoolSerializer(many=True, help_text="One pool per currency; currency, total, allocated, "
                                                          "unallocated. currency/total_cost/… above repeat the "
                                                          "principal currency's.")
    converted = serializers.SerializerMethodField()
    teams = serializers.SerializerMethodField()
    totals = serializers.SerializerMethodField()
    invoices = serializers.IntegerField(source="billed", help_text="Invoices written (dry run: that would be).")
    nothing_to_bill = serializers.BooleanField()
    warnings = serializers.ListField(child=serializers.CharField())
    outcome = serializers.ChoiceField(
        choices=["billed", "partly_billed"],
        help_text="partly_billed: the teams in refused were not billed (no exchange rate for their conversion).",
    )
    refused = BillingRunRefusedSerializer(many=True, help_text="Teams not billed, and why.")

    def get_converted(self, result) -> list[dict]:
        return BillingRunConvertedSerializer(
            [{**entry, "amount": str(entry["amount"]), "converted": str(entry["converted"])}
             for entry in result.converted()], many=True,
        ).data

    def get_teams(self, result) -> list[dict]:
        return BillingRunTeamSerializer(result.rows(), many=True).data

    def get_totals(self, result) -> list[dict]:
        return [{"currency": c, "amount": str(to_minor_units(t, c))} for c, t in result.totals().items()]
