"""Forms of the team portal: the usage filters, the budget, a new API key."""

from __future__ import annotations

from django import forms

from chargeback.periods import BillingPeriod, PeriodError

#: The usage page's groupings: the query value, the ``usage_grouped`` field, the heading.
USAGE_GROUPS = {
    "day": ("day", "Day"),
    "feature": ("feature_key", "Feature"),
    "provider": ("provider", "Provider"),
    "resource_type": ("resource_type", "Resource type"),
    "user": ("user", "User"),
}


class UsageFilterForm(forms.Form):
    """The usage page's query: a month, a grouping, and filters that narrow the records."""

    period = forms.CharField(required=False, label="Month", widget=forms.TextInput(attrs={"type": "month"}))
    group = forms.ChoiceField(required=False, label="Group by",
                              choices=[(key, label) for key, (_, label) in USAGE_GROUPS.items()])
    feature = forms.CharField(required=False, max_length=100)
    provider = forms.CharField(required=False, max_length=100)
    resource_type = forms.CharField(required=False, max_length=50, label="Resource type")
    user = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    day = forms.DateField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, default_period: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_period = default_period

    def clean_period(self) -> BillingPeriod:
        value = self.cleaned_data["period"] or self.default_period
        try:
            return BillingPeriod.month(value)
        except PeriodError as exc:
            raise forms.ValidationError(f"Enter a month as YYYY-MM ({exc}).") from None

    def clean_group(self) -> str:
        return self.cleaned_data["group"] or "day"

    def record_filters(self) -> dict:
        """The ``UsageRecord`` lookups of the filled-in filters."""
        data = self.cleaned_data
        lookups = {"feature_key": data.get("feature"), "provider": data.get("provider"),
                   "resource_type": data.get("resource_type"), "user_id": data.get("user"),
                   "occurred_at__date": data.get("day")}
        return {key: value for key, value in lookups.items() if value not in (None, "")}


class BudgetForm(forms.Form):
    amount = forms.DecimalField(min_value=0, max_digits=30, decimal_places=4, label="Monthly budget")
    thresholds = forms.CharField(initial="80, 100", label="Alert at (percent of the budget)",
                                 help_text="Whole percents, separated by commas.")
    alert_on_forecast = forms.BooleanField(required=False, initial=True, label="Alert when the forecast exceeds it")

    def clean_thresholds(self) -> list[int]:
        parts = [part.strip().rstrip("%").strip() for part in self.cleaned_data["thresholds"].split(",")]
        try:
            return [int(part) for part in parts if part]
        except ValueError:
            raise forms.ValidationError("Enter whole percents separated by commas, e.g. 80, 100.") from None


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, label="What uses the key",
                           help_text="e.g. voice agent (production)")
