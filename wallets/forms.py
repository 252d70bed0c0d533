"""Forms of the finance admin's wallet actions: top up and grant credit.

The amount is a ``Decimal`` of the wallet's currency at metered precision (at most 12 decimal
places, more than zero). Each form carries an idempotency key made when the form is rendered (a
hidden field): submitting the same form twice, by a double click or the browser's back button,
moves the money once (``wallets.services`` replays the first result for a known key).
"""

from __future__ import annotations

import uuid

from django import forms
from django.utils import timezone

from billing_site.money import METERED_DECIMAL_PLACES, METERED_MAX_DIGITS
from teams.errors import CurrencyNotAllowed
from teams.models import TeamMembership
from teams.selectors import team_currency_check

from .models import Wallet

#: Keys made by the admin forms start with this, so a ledger search finds admin top-ups.
ADMIN_KEY_PREFIX = "admin-"


def new_form_key() -> str:
    """A fresh idempotency key for one rendered form: ``admin-<32 hex digits>``."""
    return f"{ADMIN_KEY_PREFIX}{uuid.uuid4().hex}"


class _CreditForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=METERED_MAX_DIGITS, decimal_places=METERED_DECIMAL_PLACES, min_value=0,
        help_text="In the wallet's currency; up to 12 decimal places.",
    )
    description = forms.CharField(max_length=500, required=False)
    idempotency_key = forms.CharField(max_length=100, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", new_form_key())

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount <= 0:
            raise forms.ValidationError("Enter an amount greater than zero.")
        return amount

    def clean_idempotency_key(self):
        key = self.cleaned_data["idempotency_key"].strip()
        if not key.startswith(ADMIN_KEY_PREFIX):
            raise forms.ValidationError("This form is stale; open it again.")
        return key

    def key_for(self, wallet_id: int) -> str:
        """The idempotency key of this submission for one wallet (one form may credit several)."""
        return f"{self.cleaned_data['idempotency_key']}:{wallet_id}"


class TopUpForm(_CreditForm):
    """Purchased credit: a ``top_up`` ledger entry on each chosen wallet."""

    reference_id = forms.CharField(
        max_length=100, required=False, label="Payment reference",
        help_text="The purchase order or bank transfer the credit was paid with (searchable in the ledger).",
    )


class GrantForm(_CreditForm):
    """Promotional credit: a ``grant`` ledger entry and a credit lot, spent first, optionally expiring."""

    expires_at = forms.DateTimeField(
        required=False, label="Expires at",
        help_text="Optional. What is left of the grant then expires (YYYY-MM-DD HH:MM, UTC).",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def clean_expires_at(self):
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


class WalletOpenForm(forms.ModelForm):
    """Finance opens a wallet before any top-up or charge: a team (and a member, for ``prepaid_user``)
    and a currency the team is billed in (empty: the team's). Saved by ``wallets.services.wallets.wallet_open``."""

    currency = forms.CharField(max_length=3, required=False,
                               help_text="ISO 4217 code; empty: the team's currency.")

    class Meta:
        model = Wallet
        fields = ["team", "user", "currency"]

    def clean(self):
        data = super().clean()
        team, user = data.get("team"), data.get("user")
        if team is None:
            return data
        currency = (data.get("currency") or team.currency).upper()
        try:
            data["currency"] = team_currency_check(team=team, currency=currency)
        except CurrencyNotAllowed as exc:
            self.add_error("currency", exc.message)
        if user is not None and not TeamMembership.objects.filter(team=team, user=user).exists():
            self.add_error("user", f"{user} is not a member of {team}.")
        return data
