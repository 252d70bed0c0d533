"""The ground floor: teams, their members, their API keys and how each team pays.

Every billing app hangs its rows on a :class:`Team`; who may see which team's money is decided in
``teams.selectors`` once, for the API and the admin alike. Money columns follow
``billing_site.money`` (``billing_site.fields``): metered amounts are ``DecimalField(30, 12)`` with
an ISO 4217 ``currency`` beside them.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from billing_site.fields import (
    CurrencyField,
    MeteredAmountField,
    default_payment_terms_days,
    split_email_list,
    validate_email_list,
    validate_storable_json,
)
from billing_site.money import MoneyError, currency_exponent, percent_of

ZERO = Decimal(0)


class Team(models.Model):
    """A cost owner: an internal team that is charged back for what it consumes.

    Invariants: ``slug`` is unique; a team is never deleted once it has usage or invoices
    (``PROTECT`` on those foreign keys), it is deactivated instead.
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    cost_center = models.CharField(max_length=50, blank=True, help_text="Cost-center code in the general ledger.")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    currency = CurrencyField(help_text="ISO 4217 code of the team's invoices.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="team_currency_iso4217"),
        ]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    """A user's membership of a team; a manager may also see the members' wallets."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MANAGER = "manager", "Manager"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="membership_unique_user_team"),
            models.CheckConstraint(condition=Q(role__in=["member", "manager"]), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class ApiKey(models.Model):
    """A team's API key for services: ``Authorization: Api-Key <prefix>.<secret>``.

    Created by finance in the admin (``teams.services.api_key_create``), which shows the full
    key once; only its SHA-256 is stored (the secret is 256 random bits, so a fast hash is as safe
    as a slow one and keeps authentication at one indexed read). ``prefix`` is shown to tell keys
    apart. A key acts only for its team and is revoked, never deleted (``revoked_at`` set).
    """

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What uses the key, e.g. 'voice agent (production)'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False, help_text="SHA-256 (hex) of the key.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["team", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        state = " (revoked)" if self.revoked_at else ""
        return f"{self.prefix}… {self.name} [{self.team}]{state}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class BillingSettings(models.Model):
    """How one team pays for what it uses in real time.

    A team without a row behaves as ``BillingSettings(team=team)`` with the defaults below
    (``teams.selectors.billing_settings_get``): ``prepaid_team`` with block on zero balance, a
    warning at 10 % of the last top-up, no notify addresses, every provider allowed, tax 0 %, net 30.
    Prepaid is the safe default: no team can spend credit it was never given.

    Billing models:

    * ``prepaid_team``: one wallet for the team; charges need available credit (with block on zero).
    * ``prepaid_user``: one wallet per member of the team; a charge debits the acting user's wallet.
    * ``postpaid``: one team wallet that may go negative down to ``-credit_limit`` (always enforced);
      the debt is settled by invoice (``invoice_settlement`` entries).
    * ``unlimited``: one team wallet, no balance check at all; usage is recorded and may go negative.

    Invariants: ``credit_limit >= 0``; a percent threshold lies in [0, 100]; ``tax_rate`` in [0, 100];
    ``notify_emails`` is a comma-separated list of valid addresses; ``allowed_providers`` is a JSON
    list of provider names (empty: all providers); ``extra_currencies`` is a JSON list of ISO 4217
    codes (upper case, ``billing_site.money.currency_exponent``) the team may also be billed in,
    besides ``team.currency``: usage and charges in any other currency are refused
    (``teams.selectors.team_currency_check``). ``invoice_currency`` says how costs in several
    currencies are invoiced: ``per_currency`` (default), one invoice per currency; ``team_currency``,
    one invoice in ``team.currency``, the others converted at an exchange rate
    (``invoices.services.generation``).

    Payments (``payments`` app, docs/payments.md): ``stripe_customer_id`` is the team's one Stripe
    customer (empty until first needed; unique when set); ``automatic_collection`` charges the
    customer's default payment method when an invoice is issued.
    """

    class BillingModel(models.TextChoices):
        PREPAID_TEAM = "prepaid_team", "Prepaid (team wallet)"
        PREPAID_USER = "prepaid_user", "Prepaid (a wallet per user)"
        POSTPAID = "postpaid", "Postpaid (credit limit, invoiced)"
        UNLIMITED = "unlimited", "Unlimited (recorded only)"

    class InvoiceCurrency(models.TextChoices):
        PER_CURRENCY = "per_currency", "One invoice per currency"
        TEAM_CURRENCY = "team_currency", "One invoice in the team's currency (converted)"

    class ThresholdType(models.TextChoices):
        PERCENT_OF_LAST_TOP_UP = "percent_of_last_top_up", "Percent of the last top-up"
        ABSOLUTE = "absolute", "Absolute amount"

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="billing_settings")
    billing_model = models.CharField(max_length=20, choices=BillingModel.choices, default=BillingModel.PREPAID_TEAM)
    credit_limit = MeteredAmountField(
        default=ZERO, validators=[MinValueValidator(0)],
        help_text="Postpaid only: how far below zero the team wallet may go, in the team's currency.",
    )
    warning_threshold_type = models.CharField(
        max_length=30, choices=ThresholdType.choices, default=ThresholdType.PERCENT_OF_LAST_TOP_UP
    )
    warning_threshold_value = MeteredAmountField(
        default=Decimal(10), validators=[MinValueValidator(0)],
        help_text="Percent (0–100) of the last top-up, or an amount in the wallet's currency.",
    )
    block_on_zero_balance = models.BooleanField(
        default=True, help_text="Prepaid: refuse charges that available credit does not cover."
    )
    notify_on_warning = models.BooleanField(default=True)
    notify_emails = models.TextField(
        blank=True, validators=[validate_email_list], help_text="Comma-separated e-mail addresses."
    )
    billing_address = models.TextField(blank=True)
    allowed_providers = models.JSONField(default=list, blank=True, help_text="Provider names; empty allows all.")
    extra_currencies = models.JSONField(
        default=list, blank=True,
        help_text="ISO 4217 codes the team may also be billed in, besides its own currency, e.g. [\"EUR\"].",
    )
    tax_rate = models.DecimalField(
        max_digits=7, decimal_places=4, default=ZERO, help_text="Percent applied to invoice subtotals."
    )
    invoice_currency = models.CharField(
        max_length=20, choices=InvoiceCurrency.choices, default=InvoiceCurrency.PER_CURRENCY,
        help_text="Costs in several currencies: one invoice per currency (default), or one invoice in the "
                  "team's own currency, the other currencies converted at the exchange rate of the period's last day.",
    )
    payment_terms_days = models.PositiveIntegerField(default=default_payment_terms_days)
    stripe_customer_id = models.CharField(
        max_length=255, blank=True, default="", editable=False,
        help_text="The team's Stripe customer (cus_…), created on first need by the payments app.",
    )
    automatic_collection = models.BooleanField(
        default=False,
        help_text="Charge the default card when an invoice is issued (needs Stripe and a default payment method).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "billing settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(billing_model__in=["prepaid_team", "prepaid_user", "postpaid", "unlimited"]),
                name="billing_settings_model_valid",
            ),
            models.CheckConstraint(
                condition=Q(warning_threshold_type__in=["percent_of_last_top_up", "absolute"]),
                name="billing_settings_threshold_type_valid",
            ),
            models.CheckConstraint(condition=Q(credit_limit__gte=0), name="billing_settings_credit_limit_not_negative"),
            models.CheckConstraint(
                condition=Q(warning_threshold_value__gte=0)
                & (Q(warning_threshold_type="absolute") | Q(warning_threshold_value__lte=100)),
                name="billing_settings_threshold_in_range",
            ),
            models.CheckConstraint(
                condition=Q(tax_rate__gte=0) & Q(tax_rate__lte=100), name="billing_settings_tax_rate_in_range"
            ),
            models.CheckConstraint(
                condition=Q(invoice_currency__in=["per_currency", "team_currency"]),
                name="billing_settings_invoice_currency_valid",
            ),
            models.UniqueConstraint(
                fields=["stripe_customer_id"], condition=~Q(stripe_customer_id=""),
                name="billing_settings_stripe_customer_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.team} ({self.billing_model})"

    def clean(self) -> None:
        errors = {}
        if not isinstance(self.allowed_providers, list) or not all(
            isinstance(p, str) and p.strip() for p in self.allowed_providers
        ):
            errors["allowed_providers"] = "Allowed providers must be a list of provider names."
        else:
            try:
                validate_storable_json(self.allowed_providers)
            except ValidationError as exc:
                errors["allowed_providers"] = exc.messages[0]
        if self.extra_currencies is None:  # an empty form field: no extra currency
            self.extra_currencies = []
        problem = _currency_list_problem(self.extra_currencies)
        if problem:
            errors["extra_currencies"] = problem
        if (
            self.warning_threshold_type == self.ThresholdType.PERCENT_OF_LAST_TOP_UP
            and self.warning_threshold_value is not None
            and self.warning_threshold_value > 100
        ):
            errors["warning_threshold_value"] = "A percentage threshold lies between 0 and 100."
        if errors:
            raise ValidationError(errors)

    def billing_currencies(self) -> tuple[str, ...]:
        """The currencies the team may be billed in: ``team.currency`` first, then ``extra_currencies``."""
        extra = [c for c in self.extra_currencies or () if c != self.team.currency]
        return (self.team.currency, *dict.fromkeys(extra))

    @property
    def notify_email_list(self) -> list[str]:
        return split_email_list(self.notify_emails)

    @property
    def uses_user_wallets(self) -> bool:
        return self.billing_model == self.BillingModel.PREPAID_USER

    def provider_allowed(self, provider: str) -> bool:
        """Empty ``allowed_providers`` allows every provider; names compare case-insensitively."""
        if not self.allowed_providers:
            return True
        return provider.casefold() in {p.casefold() for p in self.allowed_providers}

    def spending_floor(self) -> Decimal | None:
        """The lowest ``balance − reserved`` a debit may leave, or ``None`` when nothing is checked.

        Postpaid: ``−credit_limit`` (always enforced). Prepaid with block on zero balance: 0.
        Prepaid without it, and unlimited: no floor (the balance may go negative).
        """
        if self.billing_model == self.BillingModel.UNLIMITED:
            return None
        if self.billing_model == self.BillingModel.POSTPAID:
            return -self.credit_limit
        return ZERO if self.block_on_zero_balance else None

    def warning_threshold(self, last_top_up_amount: Decimal | None) -> Decimal | None:
        """The balance below which the team is warned, in the wallet's currency, or ``None``."""
        if self.warning_threshold_type == self.ThresholdType.ABSOLUTE:
            return self.warning_threshold_value
        if not last_top_up_amount:
            return None
        return percent_of(last_top_up_amount, self.warning_threshold_value)


def _currency_list_problem(value: object) -> str | None:
    """Why ``value`` is not a list of upper-case ISO 4217 codes, or ``None`` when it is one."""
    if not isinstance(value, list):
        return "Extra currencies must be a list of ISO 4217 codes, e.g. [\"EUR\"]."
    for code in value:
        if not isinstance(code, str) or code != code.upper():
            return f"Extra currencies must be upper-case ISO 4217 codes, got {code!r}."
        try:
            currency_exponent(code)
        except MoneyError as exc:
            return f"Extra currencies: {exc}."
    return None
