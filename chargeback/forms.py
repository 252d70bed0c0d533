"""Forms of the finance admin for the chargeback core: prices, allocation rules, the billing run, FOCUS import.

Validation lives here so that a refusal reaches the person as a form error naming the field, never
as an error page from ``save_model`` (HOUSE_STYLE, "Admin"). Rules of one row stay in the models'
``clean()``; rules across rows (a price's periods, a rule's targets) are checked here with the same
sources of truth the services use (``chargeback.rules.rule_problems``).
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q

from chargeback import rules as strategies
from chargeback.models import AllocationRule, Price
from chargeback.periods import BillingPeriod, PeriodError, month_start
from teams.models import Team


class PriceAdminForm(forms.ModelForm):
    """A catalog price; its validity ``[valid_from, valid_to)`` must not overlap another period of the same price.

    "The same price" is the same team (or global), category, provider, model and unit
    (``Price`` docstring); ``valid_to`` empty means open-ended.
    """

    class Meta:
        model = Price
        fields = ["category", "provider", "model", "unit", "unit_price", "currency", "team", "valid_from", "valid_to"]

    def _post_clean(self):
        # Price.clean() (run by the model validation below) filters on valid_from and raises
        # ValueError when it is missing; with valid_from refused here, the form is invalid anyway.
        if "valid_from" in self._errors:
            return
        super()._post_clean()

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("valid_from"), cleaned.get("valid_to")
        keys = ("category", "provider", "model", "unit")
        if start is None or any(not cleaned.get(k) for k in keys) or (end is not None and end <= start):
            return cleaned
        same = Price.objects.filter(team=cleaned.get("team"), **{k: cleaned[k] for k in keys})
        if self.instance.pk:
            same = same.exclude(pk=self.instance.pk)
        overlapping = same.filter(Q(valid_to__isnull=True) | Q(valid_to__gt=start))
        if end is not None:
            overlapping = overlapping.filter(valid_from__lt=end)
        clash = overlapping.order_by("valid_from").first()
        if clash is not None:
            until = f"{clash.valid_to:%Y-%m-%d %H:%M}" if clash.valid_to else "open-ended"
            raise ValidationError(
                {"valid_from": f"This period overlaps price #{clash.pk} ({clash.unit_price.normalize():f} "
                               f"{clash.currency}, valid {clash.valid_from:%Y-%m-%d %H:%M} → {until}); "
                               "end that price first or choose another period."}
            )
        return cleaned


#: Rule types whose pool needs listed targets (the others find their receivers themselves).
TARGETS_REQUIRED = {AllocationRule.RuleType.FIXED_SPLIT, AllocationRule.RuleType.EQUAL_SPLIT}


class AllocationTargetFormSet(forms.BaseInlineFormSet):
    """The targets of one rule, checked together with the rule they belong to.

    Refuses what ``chargeback.rules.rule_problems`` refuses at allocation time (fixed splits
    summing to exactly 100 %, every by_user target naming a user…) plus rule types that need
    targets but have none, so a rule that would fail the month-end run cannot be saved.
    """

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        rule = self.instance
        targets = []
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            team, user = form.cleaned_data.get("team"), form.cleaned_data.get("user")
            if team is None:
                continue
            targets.append(strategies.Target(
                team_id=team.pk, user_id=user.pk if user else None, percentage=form.cleaned_data.get("percentage"),
            ))
        if rule.rule_type in TARGETS_REQUIRED and not targets:
            label = AllocationRule.RuleType(rule.rule_type).label.lower()
            raise ValidationError(f"A rule of type “{label}” needs at least one target: add the teams it charges.")
        problems = strategies.rule_problems(
            rule_type=rule.rule_type, source=rule.source, source_team_id=rule.source_team_id, targets=targets,
            match_tag_key=rule.match_tag_key, match_tag_value=rule.match_tag_value,
        )
        if problems:
            raise ValidationError([p[0].upper() + p[1:] + "." for p in problems])
        if rule.rule_type != AllocationRule.RuleType.FIXED_SPLIT and any(t.percentage is not None for t in targets):
            raise ValidationError("Percentages are used by fixed splits only: clear them or choose a fixed split.")


def _last_month() -> str:
    today = dt.date.today()
    return f"{month_start(month_start(today) - dt.timedelta(days=1)):%Y-%m}"


class BillingRunForm(forms.Form):
    """Which month to bill, and which teams' invoices to write (all when none is chosen).

    The whole month is always allocated: shares (by usage…) and the rounding of one team depend
    on every team; the team choice limits the preview and the invoices written.
    """

    period = forms.CharField(
        max_length=20, label="Billing period", help_text="A calendar month, YYYY-MM.", initial=_last_month,
        widget=forms.TextInput(attrs={"placeholder": "YYYY-MM", "size": 8}),
    )
    teams = forms.ModelMultipleChoiceField(
        queryset=Team.objects.filter(is_active=True).order_by("name"), required=False,
        help_text="Leave empty to invoice every team.", widget=forms.SelectMultiple(attrs={"size": 8}),
    )
    render_pdfs = forms.BooleanField(required=False, initial=True, label="Render the invoices' PDFs")

    def clean_period(self) -> BillingPeriod:
        try:
            return BillingPeriod.month(self.cleaned_data["period"].strip())
        except PeriodError as exc:
            raise ValidationError(f"Enter a month as YYYY-MM ({exc}).") from None


class BillingRunCommitForm(BillingRunForm):
    """The preview's figures, sent back with "Commit": the run commits only if the usage is unchanged."""

    previewed_records = forms.IntegerField(widget=forms.HiddenInput, min_value=0)
    previewed_total = forms.DecimalField(widget=forms.HiddenInput, max_digits=30, decimal_places=12)
    previewed_currency = forms.CharField(widget=forms.HiddenInput, max_length=3)
    #: Every currency's total and record count as previewed (the figures above are the principal one's).
    previewed_pools = forms.CharField(widget=forms.HiddenInput, required=False, max_length=2000)


class FocusUploadForm(forms.Form):
    """A FOCUS 1.0–1.4 file (CSV, gzip'd CSV, Parquet) and how its rows find their team
    (``chargeback.services.focus_import.focus_import``)."""

    file = forms.FileField(label="FOCUS file", help_text="FOCUS 1.0–1.4 cost and usage: CSV, gzip'd CSV or Parquet.")
    team_tag = forms.CharField(
        max_length=100, initial="business_unit",
        help_text="The Tags key whose value names the team a row is charged to.",
    )
    subaccount_fallback = forms.BooleanField(
        required=False, help_text="Charge rows without that tag to a team named after their SubAccountName.",
    )
    skip_bad_rows = forms.BooleanField(
        required=False, initial=True,
        help_text="Import the good rows and report the bad ones; unchecked, one bad row refuses the whole file.",
    )


class UsageVoidForm(forms.Form):
    """Why the chosen usage records are voided (``chargeback.services.usage.usage_record_void``)."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=1000,
        help_text="Required: it is kept on each record and in the audit trail.",
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why the records are voided.")
        return reason


class UsageAdjustmentForm(forms.Form):
    """Finance's adjustment of one team's month (``chargeback.services.usage.usage_adjustment_record``).

    ``idempotency_key`` is drawn when the form is shown, so sending it twice records one adjustment.
    """

    team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"))
    period = forms.CharField(
        max_length=20, label="Billing period", help_text="The calendar month corrected, YYYY-MM.",
        initial=_last_month, widget=forms.TextInput(attrs={"placeholder": "YYYY-MM", "size": 8}),
    )
    amount = forms.DecimalField(
        max_digits=30, decimal_places=12,
        help_text="In the currency below; negative to credit the team (e.g. -12.34).",
    )
    currency = forms.CharField(
        max_length=3, required=False, help_text="ISO 4217; empty: the team's own currency.",
        widget=forms.TextInput(attrs={"size": 4}),
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=1000,
        help_text="Required: it is shown with the record and kept in the audit trail.",
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=100)

    def clean_period(self) -> BillingPeriod:
        try:
            return BillingPeriod.month(self.cleaned_data["period"].strip())
        except PeriodError as exc:
            raise ValidationError(f"Enter a month as YYYY-MM ({exc}).") from None

    def clean_currency(self) -> str:
        return self.cleaned_data["currency"].strip().upper()
