"""Forms of the finance admin's invoice actions: record a payment, cancel with a credit note."""

from __future__ import annotations

from django import forms

from .models import CreditNote


class MarkPaidForm(forms.Form):
    """The payment's bank or transfer reference (``invoice_mark_paid(payment_reference=…)``)."""

    payment_reference = forms.CharField(
        max_length=200, label="Payment reference",
        help_text="The bank transfer or remittance reference, as on the statement.",
    )


class CreditNoteForm(forms.Form):
    """Why an issued invoice is credited in full (a draft is simply cancelled)."""

    reason = forms.ChoiceField(choices=CreditNote.Reason.choices, initial=CreditNote.Reason.OTHER)
    description = forms.CharField(
        max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Printed on the credit note.",
    )
