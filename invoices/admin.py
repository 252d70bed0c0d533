"""Finance admin for invoices and credit notes: the lifecycle actions, PDFs, and read-only documents.

Invoices are written by ``invoices.services`` only: the billing run writes drafts, and the actions
here call the lifecycle services (issue, mark sent, mark paid, cancel a draft or credit an issued
invoice in full). A refused move (``invoices.errors.InvoiceError``) becomes a message naming the
invoice and why, never an error page. No field of an invoice or a credit note is edited in a form.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing_site.admin_mixins import (
    BillingAdminMixin,
    DateRangeFilter,
    ExportAdminMixin,
    ReadOnlyAdminMixin,
    money_html,
    money_metered_html,
    number_column,
    number_html,
    period_column,
)
from billing_site.formatting import money_display
from billing_site.money import format_percent
from teams.selectors import user_is_finance

from .errors import InvoiceError
from .forms import CreditNoteForm, MarkPaidForm
from .models import CreditNote, CreditNoteLine, ExchangeRate, Invoice, InvoiceLine
from .resources import CreditNoteResource, InvoiceResource
from .selectors import invoices_overdue
from .services.credit_notes import credit_note_issue
from .services.jobs import invoice_pdfs_zip_request, invoices_issue_request
from .services.lifecycle import invoice_cancel, invoice_issue, invoice_mark_paid, invoice_mark_sent


class DocumentAmountsMixin:
    """Subtotal, tax and total of an invoice or credit note in the currency's minor units.

    The amounts are stored with 4 places for every ISO 4217 exponent; people read minor units.
    """

    @admin.display(description="Subtotal", ordering="subtotal")
    def subtotal_display(self, obj):
        return money_html(obj.subtotal, obj.currency)

    @admin.display(description="Tax", ordering="tax_amount")
    def tax_display(self, obj):
        return money_html(obj.tax_amount, obj.currency)

    @admin.display(description="Total", ordering="total")
    def total_display(self, obj):
        return money_html(obj.total, obj.currency)


def _pdf_response(document, filename: str):
    return FileResponse(document.pdf.open("rb"), as_attachment=True, filename=filename,
                        content_type="application/pdf")


class DocumentPdfMixin:
    """The stored PDF of an invoice or a credit note: its link in lists and forms, and its download.

    The download view is routed by the admin as ``admin:invoices_<model>_pdf``.
    """

    #: The 404's message for a document whose PDF is not rendered yet.
    pdf_missing_message = "This document has no PDF yet."

    @admin.display(description="PDF")
    def pdf_link(self, obj):
        if not obj.pdf:
            return "—"
        url = reverse(f"admin:invoices_{obj._meta.model_name}_pdf", args=[obj.pk])
        return format_html('<a href="{}" class="pdf-download">PDF</a>', url)

    def pdf_view(self, request, pk):
        """The stored PDF as a download, for staff who may view the document."""
        document = get_object_or_404(self.model, pk=pk)
        if not self.has_view_permission(request, document):
            raise Http404
        if not document.pdf:
            raise Http404(self.pdf_missing_message)
        return _pdf_response(document, f"{document.display_number}.pdf")


class InvoiceLineInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    """The lines, read-only: drafts are rewritten by the billing run, issued invoices never change."""

    model = InvoiceLine
    fields = ["position", "description", "rule_name", "quantity_display", "unit", "unit_price_display",
              "amount_precise_display", "amount_display", "record_count_display"]
    readonly_fields = fields
    extra = 0
    record_count_display = number_column("record_count", "Records")

    @admin.display(description="Quantity")
    def quantity_display(self, obj):
        return number_html(obj.quantity)

    @admin.display(description="Unit price")
    def unit_price_display(self, obj):
        return money_metered_html(obj.unit_price, obj.invoice.currency)

    @admin.display(description="Metered amount")
    def amount_precise_display(self, obj):
        return money_metered_html(obj.amount_precise, obj.invoice.currency)

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return money_html(obj.amount, obj.invoice.currency)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice")


class CreditNoteInline(DocumentPdfMixin, DocumentAmountsMixin, BillingAdminMixin, ReadOnlyAdminMixin,
                       admin.TabularInline):
    model = CreditNote
    fields = ["number_link", "issue_date", "reason", "total_display", "pdf_link"]
    readonly_fields = fields
    extra = 0

    @admin.display(description="Credit note")
    def number_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:invoices_creditnote_change", args=[obj.pk]),
                           obj.display_number)



class OverdueFilter(admin.SimpleListFilter):
    """Invoices marked overdue, and issued ones past their due date (the dashboard's list)."""

    title = "payment"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "Overdue")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(pk__in=invoices_overdue(today=timezone.now().date()).values("pk"))
        return queryset


class DisputedFilter(admin.SimpleListFilter):
    """Invoices one of whose payments was disputed at the payment provider."""

    title = "dispute"
    parameter_name = "disputed"

    def lookups(self, request, model_admin):
        return [("yes", "Disputed")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(disputed_at__isnull=False)
        return queryset


#: The lifecycle moves offered as actions: (action name, label, permission codename, needs a form).
LIFECYCLE = {
    "issue": ("Issue", "issue", None),
    "mark_sent": ("Mark sent", "issue", None),
    "mark_paid": ("Mark paid", "mark_paid", MarkPaidForm),
    "cancel": ("Cancel (credit note for issued invoices)", "issue_credit_note", CreditNoteForm),
}


@admin.register(Invoice)
class InvoiceAdmin(DocumentPdfMixin, DocumentAmountsMixin, BillingAdminMixin, ExportAdminMixin, admin.ModelAdmin):
    resource_classes = [InvoiceResource]  # Export CSV / XLSX (ExportAdminMixin)
    pdf_missing_message = "This invoice has no PDF yet; run the billing run."
    list_display = ["__str__", "team", "period_display", "status", "total_display", "amount_due_display", "due_date",
                    "pdf_link"]
    list_filter = ["status", OverdueFilter, DisputedFilter, "team", ("period_start", DateRangeFilter),
                   ("due_date", DateRangeFilter), "kind", "currency"]
    period_display = period_column("period_start", "period_end", "Period")
    search_fields = ["number", "team__name", "team__slug", "team_name", "payment_reference"]
    list_select_related = ["team", "user"]
    date_hierarchy = "period_start"
    fieldsets = [
        (None, {"fields": ["number", "status", "kind", "team", "user", "team_name", "cost_center", "billing_address"]}),
        ("Period and dates", {"fields": ["period_display", "issue_date", "due_date", "issued_at",
                                         "issued_by", "sent_at", "paid_at", "payment_reference"]}),
        ("Dispute", {"fields": ["disputed_at", "dispute_reference"]}),
        ("Amounts", {"fields": ["currency", "subtotal_display", "tax_rate_display", "tax_display", "total_display",
                                "credited_display", "amount_due_display"]}),
        ("Source and document", {"fields": ["allocation_run", "pdf_link", "pdf_sha256", "created_at", "updated_at"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]
    inlines = [InvoiceLineInline, CreditNoteInline]
    actions = ["issue_action", "mark_sent_action", "mark_paid_action", "cancel_action", "download_pdfs_action"]
    change_form_template = "admin/invoices/invoice/change_form.html"

    class Media:
        css = {"all": ["admin_dashboard/invoice.css"]}

    def has_add_permission(self, request):
        # Invoices are generated by the billing run, never typed in.
        return False

    def has_change_permission(self, request, obj=None):
        # No field of an invoice is edited in a form: the billing run rewrites drafts, the lifecycle
        # actions move an invoice on. The change page is a read-only view with those actions.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    # --- permissions of the lifecycle actions -------------------------------------------------
    def _has(self, request, codename: str) -> bool:
        return user_is_finance(request.user) and request.user.has_perm(f"invoices.{codename}")

    def has_issue_permission(self, request):
        return self._has(request, "issue")

    def has_mark_paid_permission(self, request):
        return self._has(request, "mark_paid")

    def has_issue_credit_note_permission(self, request):
        return self._has(request, "issue_credit_note")

    # --- actions -------------------------------------------------------------------------------
    def _to_confirm(self, queryset, move: str):
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return HttpResponseRedirect(reverse("admin:invoices_invoice_lifecycle", args=[move]) + f"?ids={ids}")

    @admin.action(description="Issue selected draft invoices…", permissions=["issue"])
    def issue_action(self, request, queryset):
        return self._to_confirm(queryset, "issue")

    @admin.action(description="Mark selected invoices sent…", permissions=["issue"])
    def mark_sent_action(self, request, queryset):
        return self._to_confirm(queryset, "mark_sent")

    @admin.action(description="Mark selected invoices paid…", permissions=["mark_paid"])
    def mark_paid_action(self, request, queryset):
        return self._to_confirm(queryset, "mark_paid")

    @admin.action(description="Cancel selected invoices (credit note for issued ones)…",
                  permissions=["issue_credit_note"])
    def cancel_action(self, request, queryset):
        return self._to_confirm(queryset, "cancel")

    @admin.action(description="Download the selected invoices' PDFs (zip)", permissions=["view"])
    def download_pdfs_action(self, request, queryset):
        """Queue a ``pdf`` job that writes the zip to storage; its page offers the download."""
        invoices = list(queryset.order_by("pk"))
        if not any(i.pdf for i in invoices):
            self.message_user(request, "None of the selected invoices has a PDF yet.", messages.WARNING)
            return None
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        record = invoice_pdfs_zip_request(invoices=invoices, name=f"invoices-{stamp}-{request.user.pk}",
                                          created_by=request.user)
        return HttpResponseRedirect(reverse("admin:jobs_jobprogress_change", args=[record.pk]))

    # --- views ---------------------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/pdf/", view(self.pdf_view), name="invoices_invoice_pdf"),
            path("lifecycle/<str:move>/", view(self.lifecycle_view), name="invoices_invoice_lifecycle"),
        ] + super().get_urls()

    def lifecycle_view(self, request, move):
        """Confirm a lifecycle move for the chosen invoices (with its form), then apply it to each.

        Each invoice moves on its own (one service call, one transaction): a refusal names the
        invoice and the reason and leaves the others moved.
        """
        if move not in LIFECYCLE:
            raise Http404
        label, codename, form_class = LIFECYCLE[move]
        if not self._has(request, codename):
            raise PermissionDenied
        source = request.POST if request.method == "POST" else request.GET
        try:
            ids = [int(part) for part in source.get("ids", "").split(",") if part]
        except ValueError:
            return HttpResponseBadRequest("ids must be invoice numbers separated by commas")
        invoices = list(self.get_queryset(request).filter(pk__in=ids).order_by("pk"))
        if not invoices:
            self.message_user(request, "Choose at least one invoice first.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:invoices_invoice_changelist"))
        form = None
        if form_class is not None:
            form = form_class(request.POST) if request.method == "POST" else form_class()
        if request.method == "POST" and move == "issue":
            # Issuing renders each invoice's final PDF: a background job, followed on its page.
            record = invoices_issue_request(invoices=invoices, issued_by=request.user)
            return HttpResponseRedirect(reverse("admin:jobs_jobprogress_change", args=[record.pk]))
        if request.method == "POST" and (form is None or form.is_valid()):
            data = form.cleaned_data if form is not None else {}
            done = 0
            for invoice in invoices:
                try:
                    self._apply(request, move, invoice, data)
                    done += 1
                except InvoiceError as exc:
                    self.message_user(request, f"{invoice.display_number} ({invoice.team_name}): {exc.message}",
                                      messages.ERROR)
            if done:
                self.message_user(request, f"{label}: {done} invoice(s) done.", messages.SUCCESS)
            if len(invoices) == 1:
                return HttpResponseRedirect(reverse("admin:invoices_invoice_change", args=[invoices[0].pk]))
            return HttpResponseRedirect(reverse("admin:invoices_invoice_changelist"))
        for invoice in invoices:
            invoice.total_text = money_display(invoice.total, invoice.currency)
            invoice.due_text = money_display(invoice.amount_due, invoice.currency)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{label}: {len(invoices)} invoice(s)",
            "opts": self.model._meta,
            "invoices": invoices,
            "ids": ",".join(str(i.pk) for i in invoices),
            "form": form,
            "submit_label": label,
        }
        return TemplateResponse(request, "admin/invoices/invoice/lifecycle.html", context)

    @staticmethod
    def _apply(request, move, invoice, data):
        user = request.user
        if move == "issue":
            return invoice_issue(invoice=invoice, issued_by=user)
        if move == "mark_sent":
            return invoice_mark_sent(invoice=invoice, by=user)
        if move == "mark_paid":
            return invoice_mark_paid(invoice=invoice, payment_reference=data["payment_reference"], by=user)
        # cancel: a draft is cancelled; an issued invoice is credited in full, which cancels it.
        if invoice.status == Invoice.Status.DRAFT:
            return invoice_cancel(invoice=invoice, by=user)
        return credit_note_issue(invoice=invoice, reason=data["reason"], description=data["description"],
                                          issued_by=user)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, object_id)
        moves = []
        if invoice is not None:
            allowed = set(Invoice.TRANSITIONS.get(invoice.status, ()))
            wanted = [("issue", "pending"), ("mark_sent", "sent"), ("mark_paid", "paid"), ("cancel", "cancelled")]
            for move, status in wanted:
                if status in allowed and self._has(request, LIFECYCLE[move][1]):
                    moves.append((move, LIFECYCLE[move][0].split(" (")[0] + ("…" if move != "issue" else "")))
        extra_context = {**(extra_context or {}), "lifecycle_moves": moves}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Tax rate")
    def tax_rate_display(self, obj):
        return format_percent(obj.tax_rate)

    @admin.display(description="Credited")
    def credited_display(self, obj):
        return money_html(obj.credited_total, obj.currency)

    @admin.display(description="Amount due")
    def amount_due_display(self, obj):
        return money_html(obj.amount_due, obj.currency)



class CreditNoteLineInline(BillingAdminMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = CreditNoteLine
    fields = ["position", "description", "invoice_line", "amount_display"]
    readonly_fields = fields
    extra = 0

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return money_html(obj.amount, obj.credit_note.currency)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("credit_note", "invoice_line")


@admin.register(CreditNote)
class CreditNoteAdmin(DocumentPdfMixin, DocumentAmountsMixin, BillingAdminMixin, ExportAdminMixin, admin.ModelAdmin):
    resource_classes = [CreditNoteResource]  # Export CSV / XLSX (ExportAdminMixin)
    """Credit notes are issued from their invoice ("Cancel…" or the API) and never change."""

    pdf_missing_message = "This credit note has no PDF yet."

    list_display = ["__str__", "invoice", "issue_date", "reason", "total_display", "pdf_link"]
    list_filter = ["reason", ("issue_date", DateRangeFilter), "currency"]
    search_fields = ["number", "invoice__number", "invoice__team_name"]
    list_select_related = ["invoice"]
    fields = ["number", "invoice", "reason", "description", "currency", "subtotal_display", "tax_display",
              "total_display", "issue_date", "issued_by", "pdf_link", "pdf_sha256", "created_at"]
    readonly_fields = fields
    inlines = [CreditNoteLineInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path("<int:pk>/pdf/", self.admin_site.admin_view(self.pdf_view), name="invoices_creditnote_pdf"),
        ] + super().get_urls()



@admin.register(ExchangeRate)
class ExchangeRateAdmin(BillingAdminMixin, admin.ModelAdmin):
    """The rates table: finance adds or corrects a rate by hand (source ``manual``, which wins over
    the ECB's of the same date and pair); ``manage.py load_ecb_rates FILE`` loads the ECB's."""

    list_display = ["date", "from_currency", "to_currency", "rate_display", "source"]
    list_filter = ["source", "from_currency", "to_currency"]
    rate_display = number_column("rate", "Rate")
    search_fields = ["from_currency", "to_currency", "source"]
    date_hierarchy = "date"
    ordering = ["-date", "from_currency", "to_currency"]
    show_full_result_count = False
    fields = ["date", "from_currency", "to_currency", "rate", "source"]
