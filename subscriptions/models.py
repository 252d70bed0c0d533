"""Plans and subscriptions: a recurring fee per period, included units per meter, and overage.

A :class:`Plan` is what finance sells: a fee per interval (a month or a year, times
``interval_count``) in one currency, an optional trial, an optional minimum commitment per period,
and one :class:`PlanCharge` per meter: the units included each period and the charge model (Lago's
and Stripe's standard, package, graduated, volume) that prices the units beyond them.

A :class:`Subscription` puts a team, or one member of a team, on a plan. Its periods are half-open
ranges of instants ``[current_period_start, current_period_end)`` computed from the billing anchor
(``subscriptions.calendar``); each billed period is one :class:`SubscriptionPeriod` row, unique per
subscription and period start, which is what makes renewal idempotent. A mid-period change leaves
:class:`SubscriptionProration` rows that the next renewal invoice carries (Stripe's pending
proration invoice items).

Money columns follow ``billing_site.money``: prices and fees are metered amounts
(``DecimalField(30, 12)``) with a ``currency`` beside them; they become invoice amounts (minor units)
only on the invoice, through ``money.round_preserving_sum``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from billing_site.fields import CurrencyField, MeteredAmountField
from billing_site.formatting import money_display, number_display
from teams.models import Team


class Plan(models.Model):
    """What a subscriber pays each period, and what it gets for it.

    ``fee`` is charged per ``interval_count`` × ``interval`` (e.g. 1 × month, 1 × year, 3 × month),
    in ``currency``, in advance. ``trial_days`` > 0 starts new subscriptions in ``trialing``.
    ``minimum_commitment`` (optional, per period, in ``currency``): when the period's fee plus its
    overage falls short of it, the renewal invoice adds the difference as a true-up line (Lago's
    minimum commitment).

    Invariants: ``code`` is unique; ``fee >= 0``; ``interval_count >= 1``; ``trial_days >= 0``; a
    plan with subscribers (any status, ever) keeps its prices: ``fee``, ``currency``, ``interval``,
    ``interval_count``, ``minimum_commitment`` and its charges and tiers never change again
    (``subscriptions.services.plans`` refuses with ``PlanImmutable``). Finance makes a new plan
    (``version`` + 1, ``replaces`` the old one) and moves the subscriptions to it. An archived plan
    takes no new subscribers.
    """

    class Interval(models.TextChoices):
        MONTH = "month", "Month"
        YEAR = "year", "Year"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    code = models.SlugField(max_length=100, unique=True, help_text="Stable identifier, e.g. 'pro-monthly-v2'.")
    name = models.CharField(max_length=200)
    tier = models.CharField(
        max_length=50, help_text="trial, starter, professional, enterprise, or any tier finance defines.",
    )
    description = models.TextField(blank=True)
    currency = CurrencyField()
    fee = MeteredAmountField(validators=[MinValueValidator(0)], help_text="Fixed fee per period, in advance.")
    interval = models.CharField(max_length=5, choices=Interval.choices, default=Interval.MONTH)
    interval_count = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    trial_days = models.PositiveIntegerField(default=0)
    minimum_commitment = MeteredAmountField(
        null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="Optional minimum of fee + overage per period; the shortfall is billed as a true-up.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    version = models.PositiveIntegerField(default=1)
    replaces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by",
        help_text="The plan this one is a new version of.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tier", "code"]
        constraints = [
            models.CheckConstraint(condition=Q(fee__gte=0), name="plan_fee_not_negative"),
            models.CheckConstraint(condition=Q(interval__in=["month", "year"]), name="plan_interval_valid"),
            models.CheckConstraint(condition=Q(interval_count__gte=1), name="plan_interval_count_positive"),
            models.CheckConstraint(condition=Q(status__in=["active", "archived"]), name="plan_status_valid"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="plan_currency_iso4217"),
            models.CheckConstraint(
                condition=Q(minimum_commitment__isnull=True) | Q(minimum_commitment__gte=0),
                name="plan_minimum_commitment_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def months_per_period(self) -> int:
        """Calendar months in one period: ``interval_count`` (× 12 for yearly plans)."""
        return self.interval_count * (12 if self.interval == self.Interval.YEAR else 1)


class PlanCharge(models.Model):
    """How one meter is billed on a plan: the units included per period, and the price beyond them.

    The meter is a usage dimension the catalog knows, matched against ``chargeback.UsageRecord``:
    ``resource_type`` (the catalog's category: ``llm``, ``stt``…), and optionally ``feature_key``,
    ``provider`` and ``unit`` (blank matches any). ``meter`` is its short name on invoices and in
    the API (``inference``). Usage of the subscriber in the period counts toward
    ``included_units``; the overage (units beyond them) is priced by ``charge_model``:

    * ``standard``: ``price`` per ``price_per_units`` units (1 for per unit, 1000 for per 1,000),
      exact: 85 units at 2.00 per 1,000 cost 0.17.
    * ``package``: ``price`` per started block of ``package_size`` units (Stripe's
      ``transform_quantity`` with ``round=up``, Lago's package charge without free units).
    * ``graduated``: each tier prices the units that fall in it (:class:`PlanChargeTier`).
    * ``volume``: the tier the total falls in prices every unit.

    Invariants: one charge per plan and meter; ``included_units >= 0``; ``price >= 0``;
    ``price_per_units > 0``; ``package_size >= 1`` for package charges; graduated and volume
    charges have tiers, the last one open (``up_to`` empty).
    """

    class ChargeModel(models.TextChoices):
        STANDARD = "standard", "Standard (per unit or per N units)"
        PACKAGE = "package", "Package (per started block of N)"
        GRADUATED = "graduated", "Graduated tiers"
        VOLUME = "volume", "Volume tiers"

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="charges")
    meter = models.SlugField(max_length=100, help_text="Short name of the meter, e.g. 'inference'.")
    resource_type = models.CharField(max_length=50, help_text="The usage records' resource type (catalog category).")
    feature_key = models.CharField(max_length=100, blank=True, help_text="Only usage of this feature (blank: any).")
    provider = models.CharField(max_length=100, blank=True, help_text="Only usage of this provider (blank: any).")
    unit = models.CharField(max_length=50, blank=True, help_text="Only usage in this unit (blank: any).")
    included_units = MeteredAmountField(default=0, validators=[MinValueValidator(0)])
    charge_model = models.CharField(max_length=10, choices=ChargeModel.choices, default=ChargeModel.STANDARD)
    price = MeteredAmountField(
        default=0, validators=[MinValueValidator(0)],
        help_text="Standard: the price of price_per_units units. Package: the price of one package.",
    )
    price_per_units = MeteredAmountField(
        default=1, validators=[MinValueValidator(0)], help_text="Standard: 1 (per unit) or 1000 (per 1,000 units).",
    )
    package_size = MeteredAmountField(null=True, blank=True, help_text="Package: units per package (N).")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["plan", "position", "meter"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "meter"], name="plan_charge_unique_meter"),
            models.CheckConstraint(
                condition=Q(charge_model__in=["standard", "package", "graduated", "volume"]),
                name="plan_charge_model_valid",
            ),
            models.CheckConstraint(condition=Q(included_units__gte=0), name="plan_charge_included_not_negative"),
            models.CheckConstraint(condition=Q(price__gte=0), name="plan_charge_price_not_negative"),
            models.CheckConstraint(condition=Q(price_per_units__gt=0), name="plan_charge_per_units_positive"),
            models.CheckConstraint(
                condition=~Q(charge_model="package") | Q(package_size__gte=1), name="plan_charge_package_size",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan.code}/{self.meter} ({self.charge_model})"

    def clean(self) -> None:
        if self.charge_model == self.ChargeModel.PACKAGE and not self.package_size:
            raise ValidationError({"package_size": "A package charge needs its package size (units per package)."})


class PlanChargeTier(models.Model):
    """One tier of a graduated or volume charge: the units up to ``up_to`` (inclusive), at ``unit_price`` each.

    Tiers of a charge are ordered by ``position``; ``up_to`` rises strictly and only the last tier is
    open (``up_to`` empty), as Stripe's ``tiers[].up_to`` and Lago's ``graduated_ranges``.
    ``flat_fee`` is added once when a quantity reaches the tier (graduated: every tier reached;
    volume: the tier the total falls in), Stripe's ``flat_amount``. Prices in the plan's currency.
    """

    charge = models.ForeignKey(PlanCharge, on_delete=models.CASCADE, related_name="tiers")
    position = models.PositiveSmallIntegerField()
    up_to = MeteredAmountField(null=True, blank=True, help_text="Last unit of the tier (inclusive); empty: no end.")
    unit_price = MeteredAmountField(default=0, validators=[MinValueValidator(0)])
    flat_fee = MeteredAmountField(default=0, validators=[MinValueValidator(0)])

    class Meta:
        ordering = ["charge", "position"]
        constraints = [
            models.UniqueConstraint(fields=["charge", "position"], name="plan_charge_tier_unique_position"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="plan_charge_tier_price_not_negative"),
            models.CheckConstraint(condition=Q(flat_fee__gte=0), name="plan_charge_tier_flat_not_negative"),
            models.CheckConstraint(condition=Q(up_to__isnull=True) | Q(up_to__gt=0), name="plan_charge_tier_up_to_positive"),
        ]

    def __str__(self) -> str:
        return (f"tier {self.position}: up to {number_display(self.up_to) if self.up_to else '∞'} at "
                f"{number_display(self.unit_price)}")


class Subscription(models.Model):
    """A team (``user`` empty) or one member of a team (``user`` set) on a plan.

    Periods are half-open ranges of instants ``[current_period_start, current_period_end)``: the end
    is exclusive. They follow ``billing_anchor`` in ``time_zone`` (default UTC): a monthly
    subscription anchored on 31 January 10:00 renews on 28 (29) February, 31 March, 30 April…
    (Stripe's anchor rule, ``subscriptions.calendar``).

    Status (``TRANSITIONS``, checked by ``subscriptions.services.subscription_check_transition``):
    ``trialing`` → ``active`` (trial end) | ``past_due`` | ``canceled``; ``active`` → ``past_due`` |
    ``canceled``; ``past_due`` → ``active`` | ``unpaid`` | ``canceled``; ``unpaid`` → ``active`` |
    ``canceled``; ``canceled`` is final.

    ``cancel_at_period_end``: the renewal at ``current_period_end`` cancels instead of renewing.
    ``pending_plan``: a downgrade waiting for the period end (the renewal moves to it).
    ``canceled_at``: when the cancellation was asked; ``ended_at``: when the subscription stopped.
    ``discount_coupon``: the coupon of the ``SubscriptionDiscount`` that covers the current period
    (set where the period or the discounts change: creation, renewal, applying or removing a coupon),
    so MRR after discounts is read from counts a trigger keeps (``subscriptions_discountcount``).

    Invariants: at most one live (not canceled) subscription per subscriber (partial unique
    constraints); ``current_period_end > current_period_start``; a trialing subscription has a
    ``trial_end``; a canceled one has ``canceled_at`` and ``ended_at``.
    """

    class Status(models.TextChoices):
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELED = "canceled", "Canceled"
        UNPAID = "unpaid", "Unpaid"

    #: Allowed status moves, the one place they are written (django-oscar's ``Order.pipeline``).
    TRANSITIONS: dict[str, tuple[str, ...]] = {
        "trialing": ("active", "past_due", "canceled"),
        "active": ("past_due", "canceled"),
        "past_due": ("active", "unpaid", "canceled"),
        "unpaid": ("active", "canceled"),
        "canceled": (),
    }
    #: Statuses that renew and count toward MRR-like figures (a trial renews into its first paid period).
    LIVE_STATUSES = ("trialing", "active", "past_due", "unpaid")

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="subscriptions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="subscriptions",
        help_text="Set when the subscriber is one member of the team; empty for the team itself.",
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    pending_plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="A plan change (downgrade) that takes effect at the period end.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField()
    billing_anchor = models.DateTimeField(help_text="The instant periods are counted from (its day of month is kept).")
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA zone the anchor's calendar is kept in.")
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField(help_text="Exclusive.")
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    discount_coupon = models.ForeignKey(
        "Coupon", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The coupon whose discount covers the current period (kept by the services; the stats count it).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["team"], condition=Q(user__isnull=True) & ~Q(status="canceled"),
                name="subscription_one_live_per_team",
            ),
            models.UniqueConstraint(
                fields=["team", "user"], condition=Q(user__isnull=False) & ~Q(status="canceled"),
                name="subscription_one_live_per_user",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["trialing", "active", "past_due", "canceled", "unpaid"]),
                name="subscription_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_not_empty",
            ),
            models.CheckConstraint(
                condition=~Q(status="trialing") | Q(trial_end__isnull=False), name="subscription_trialing_has_end",
            ),
            models.CheckConstraint(
                condition=~Q(status="canceled") | Q(canceled_at__isnull=False, ended_at__isnull=False),
                name="subscription_canceled_has_dates",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "current_period_end"], name="subscription_due"),
            models.Index(fields=["plan", "status"], name="subscription_plan_status"),
        ]

    def __str__(self) -> str:
        who = f"{self.user} in {self.team}" if self.user_id else str(self.team)
        return f"{who} on {self.plan.code} ({self.status})"


class SubscriptionPeriod(models.Model):
    """One billed period of a subscription: its fee invoiced in advance, its usage later in arrears.

    Written once per subscription and ``period_start`` (a unique constraint): the renewal that
    would bill the same period twice finds the row and writes nothing (idempotent renewal).
    ``fee`` is what the period's fee line carries (metered precision, ``currency``; 0 for a trial).
    ``invoice`` is the invoice that carries the fee; ``usage_invoice`` the one that later carries
    its overage (set when the next renewal, or a final cancellation, bills it).
    ``usage`` keeps what was billed per meter: ``{meter: {"included", "used", "overage",
    "overage_cost", "price"}}`` as decimal strings (the invoice's "Included usage" section).
    """

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="periods")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(help_text="Exclusive.")
    is_trial = models.BooleanField(default=False)
    fee = MeteredAmountField(default=0)
    currency = CurrencyField()
    invoice = models.ForeignKey(
        "invoices.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="subscription_periods",
    )
    usage_invoice = models.ForeignKey(
        "invoices.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
    )
    usage = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "period_start"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "period_start"], name="subscription_period_unique_start"),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="subscription_period_not_empty_range"),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} [{self.period_start:%Y-%m-%d}, {self.period_end:%Y-%m-%d})"


class SubscriptionProration(models.Model):
    """A proration left by a mid-period change, carried by the next invoice (Stripe's proration items).

    A change at instant *t* of a period ``[start, end)`` leaves a credit for the unused time of the
    old plan (``amount`` < 0) and a charge for the remaining time of the new one (``amount`` > 0),
    each ``fee × (end − t) / (end − start)`` by the second, in metered precision; the pair is split
    with the largest-remainder rule so the two rounded lines sum to the rounded difference.
    ``invoice`` is set when an invoice carries it. ``key`` makes a change idempotent.
    """

    class Kind(models.TextChoices):
        CREDIT = "credit", "Unused time (credit)"
        CHARGE = "charge", "Remaining time (charge)"

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="prorations")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=6, choices=Kind.choices)
    description = models.CharField(max_length=500)
    period_start = models.DateTimeField(help_text="Start of the prorated time (the change).")
    period_end = models.DateTimeField(help_text="End of the prorated time (exclusive; the period end).")
    amount_precise = MeteredAmountField()
    amount = MeteredAmountField(help_text="In the currency's minor units (largest remainder).")
    currency = CurrencyField()
    key = models.CharField(max_length=200, unique=True)
    invoice = models.ForeignKey(
        "invoices.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "period_start", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["credit", "charge"]), name="subscription_proration_kind_valid"),
            models.CheckConstraint(
                condition=(Q(kind="credit") & Q(amount_precise__lte=0)) | (Q(kind="charge") & Q(amount_precise__gte=0)),
                name="subscription_proration_sign",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.description}: {money_display(self.amount, self.currency)}"


class SubscriptionStatusChange(models.Model):
    """One move of a subscription's status, at the instant it took effect: the status history.

    Written by ``subscriptions.services.status`` (``subscription_status_set`` and the renewal's bulk
    ``status_changes_record``), next to the one check of ``Subscription.TRANSITIONS``; the first row
    of a subscription has an empty ``from_status`` (its creation). ``at`` is when the status took
    effect (a trial that ends at its boundary: the boundary, not the instant the renewal ran). The
    status of a subscription at an instant *t* is the ``to_status`` of its latest row with
    ``at <= t`` (``subscriptions.selectors_mrr.mrr_history`` reads it so): past MRR points leave
    out what was trialing, unpaid or canceled then. Rows before this history existed were filled
    from what the subscriptions and their periods say (migration ``0002``).
    """

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10)
    at = models.DateTimeField(help_text="When the status took effect.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "at", "pk"]
        indexes = [models.Index(fields=["subscription", "at"], name="subscription_status_at")]

    def __str__(self) -> str:
        return f"{self.subscription_id}: {self.from_status or '∅'} → {self.to_status} at {self.at:%Y-%m-%d %H:%M}"


class Coupon(models.Model):
    """A discount finance offers, in Stripe's shape: ``percent_off`` or ``amount_off`` (in ``currency``), for a duration.

    ``duration``: ``once`` (the fee of one period: the first that starts once it is applied),
    ``repeating`` (the fees of the periods that start within ``duration_in_months`` calendar months
    of its application) or ``forever``. It discounts a period's **fee** (the recurring part, what
    MRR counts), not its usage, prorations or minimum-commitment true-up, and never by more than
    the fee: ``amount_off`` is capped at the fee, ``percent_off`` is at most 100.

    Invariants: exactly one of ``percent_off`` (0 < p ≤ 100) and ``amount_off`` (> 0, with its
    ``currency``); ``duration_in_months`` ≥ 1 for ``repeating`` and empty otherwise. A coupon's
    terms never change (as Stripe's): finance archives it and makes another; an archived coupon is
    applied to no new subscription, and the discounts it made keep running.
    """

    class Duration(models.TextChoices):
        ONCE = "once", "Once"
        REPEATING = "repeating", "Repeating (N months)"
        FOREVER = "forever", "Forever"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    code = models.SlugField(max_length=100, unique=True, help_text="Stable identifier, e.g. 'launch-20'.")
    name = models.CharField(max_length=200)
    percent_off = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True,
                                      help_text="Percent of the fee taken off (0 < p ≤ 100).")
    amount_off = MeteredAmountField(null=True, blank=True, help_text="Amount taken off the fee, in currency.")
    currency = models.CharField(max_length=3, blank=True, help_text="The currency of amount_off (ISO 4217).")
    duration = models.CharField(max_length=9, choices=Duration.choices, default=Duration.ONCE)
    duration_in_months = models.PositiveSmallIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(percent_off__isnull=False) & Q(amount_off__isnull=True) & Q(currency=""))
                | (Q(percent_off__isnull=True) & Q(amount_off__isnull=False) & Q(currency__regex=r"^[A-Z]{3}$")),
                name="coupon_percent_or_amount",
                violation_error_message="A coupon has either percent_off or amount_off (with its currency), not both.",
            ),
            models.CheckConstraint(condition=Q(percent_off__isnull=True) | (Q(percent_off__gt=0) & Q(percent_off__lte=100)),
                                   name="coupon_percent_range",
                                   violation_error_message="percent_off is above 0 and at most 100."),
            models.CheckConstraint(condition=Q(amount_off__isnull=True) | Q(amount_off__gt=0), name="coupon_amount_positive"),
            models.CheckConstraint(
                condition=(Q(duration="repeating") & Q(duration_in_months__gte=1))
                | (Q(duration__in=["once", "forever"]) & Q(duration_in_months__isnull=True)),
                name="coupon_duration_months",
                violation_error_message="A repeating coupon needs duration_in_months; the others have none.",
            ),
            models.CheckConstraint(condition=Q(status__in=["active", "archived"]), name="coupon_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class SubscriptionDiscount(models.Model):
    """A coupon applied to a subscription: it discounts the fee of each period that starts in ``[start, end)``.

    ``start`` is when it was applied; ``end`` (exclusive) follows the coupon's duration: the end of
    the first period it discounts (``once``), ``start`` + N calendar months (``repeating``), or
    empty (``forever``). Applying another coupon, or removing the discount, moves ``end`` to that
    instant: a subscription has at most one discount for a period (the newest). The renewal invoice
    carries a ``discount`` line beside the fee; MRR counts the discounted fee of the periods it
    covers (``subscriptions.selectors_mrr``).
    """

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="discounts")
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="discounts")
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True, help_text="Exclusive; empty: forever.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["subscription", "start", "pk"]
        indexes = [models.Index(fields=["subscription", "start"], name="subscription_discount_start")]
        constraints = [
            models.CheckConstraint(condition=Q(end__isnull=True) | Q(end__gte=models.F("start")),
                                   name="subscription_discount_range"),
        ]

    def __str__(self) -> str:
        return f"{self.coupon.code} on {self.subscription_id} from {self.start:%Y-%m-%d}"

    def applies_to(self, period_start) -> bool:
        """Whether it discounts the fee of the period that starts at ``period_start``."""
        return self.start <= period_start and (self.end is None or period_start < self.end)
