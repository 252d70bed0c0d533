"""Chargeback domain: metered usage, the price catalog and cost allocation of the teams' costs.

Money columns follow ``billing_site.money``: metered amounts are ``DecimalField(30, 12)`` with a
``currency`` (ISO 4217) beside them. Billing periods are calendar months written as half-open
ranges ``[period_start, period_end)`` of dates; FOCUS ``BillingPeriodEnd`` is exclusive the same way.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Concat, Upper

from billing_site.fields import CurrencyField, MeteredAmountField
from billing_site.formatting import money_display, number_display
from teams.models import Team

#: What the admin's search finds a fragment of (what the usage was: service, model, feature; and its
#: references: external reference, idempotency key, resource id; upper-cased; ``FragmentSearchMixin``).
#: No index serves it: a trigram index on it made each inserted record 7.3 times as costly (323 µs
#: against 44, bench/admin_search.py), on the path of FOCUS imports and API batches; the search is
#: one sequential scan of the table instead (LargeTableAdminMixin reads it once).
USAGE_SEARCH_TEXT = Upper(Concat(
    "service_name", Value(" "), "model", Value(" "), "feature_key", Value(" "), "external_reference", Value(" "),
    "idempotency_key", Value(" "), "resource_id",
))


class UsageRecord(models.Model):
    """One metered consumption: a cloud cost row, an AI call item, a query, storage.

    ``team`` empty means the record sits in the *unallocated pool*, waiting for an allocation rule.
    ``cost`` is the amount charged back, in ``currency``, at metered precision; for FOCUS rows it is
    ``BilledCost`` and may be negative (credits, adjustments).

    ``billing_period_start`` is the first day of the calendar month the record is billed in: FOCUS
    ``BillingPeriodStart`` for imported rows (a row charged on 30 September can belong to the October
    billing period), else the month of ``occurred_at`` in UTC.

    ``source`` ``adjustment`` is finance's correction of a team's month
    (``chargeback.services.usage.usage_adjustment_record``): any sign, ``service_name``
    ``Adjustment``, the reason and who recorded it in ``metadata`` (``reason``, ``recorded_by``).
    The API's doors (usage and charges) never record a negative cost; credits come from FOCUS rows,
    credit notes and wallet refunds.

    ``status`` ``void``: finance voided the record (``usage_record_void``): it is kept, with
    ``void_reason``, ``voided_at`` and ``voided_by``, and no later allocation or summary counts it.

    Invariants: ``(source, idempotency_key)`` is unique, so recording the same usage twice is a no-op;
    ``quantity`` is never negative; a void record has a reason and a time; an adjustment has a
    reason.
    """

    class Source(models.TextChoices):
        API = "api", "API"
        CHARGE = "charge", "Wallet charge"
        FOCUS_IMPORT = "focus_import", "FOCUS import"
        ADJUSTMENT = "adjustment", "Adjustment (finance)"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        VOID = "void", "Void"

    # No single-column index on team: usage_team_occurred (team, occurred_at) serves every lookup by
    # team, and one index less makes a million-row FOCUS import ~8 % faster (docs/focus-import.md).
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="usage_records", db_index=False
    )
    # Indexed only where a user is set (usage_user below): imported cloud costs never name one, and a
    # full index would hold a NULL entry for each of them (16 % of the server's work per imported row,
    # docs/focus-import.md).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="usage_records",
        db_index=False,
    )
    agent_id = models.CharField(max_length=200, blank=True)
    resource_type = models.CharField(
        max_length=50, help_text="What was consumed: cloud, query, storage, compute, llm, stt, tts, telephony, gpu…"
    )
    provider = models.CharField(max_length=100, blank=True, help_text="FOCUS ProviderName for imported rows.")
    model = models.CharField(max_length=100, blank=True)
    unit = models.CharField(max_length=50, blank=True)
    quantity = MeteredAmountField(default=0, validators=[MinValueValidator(0)])
    cost = MeteredAmountField(help_text="Charged-back cost; FOCUS BilledCost for imported rows.")
    currency = CurrencyField()
    occurred_at = models.DateTimeField(help_text="When the usage happened; FOCUS ChargePeriodStart.")
    billing_period_start = models.DateField(help_text="First day of the billing month; FOCUS BillingPeriodStart.")
    source = models.CharField(max_length=20, choices=Source.choices)
    feature_key = models.CharField(max_length=100, blank=True)
    external_reference = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255)
    metadata = models.JSONField(default=dict, blank=True)
    # FOCUS 1.0 columns kept for imported cloud costs (empty for other sources).
    effective_cost = MeteredAmountField(null=True, blank=True, help_text="FOCUS EffectiveCost.")
    charge_category = models.CharField(max_length=20, blank=True, help_text="FOCUS ChargeCategory.")
    service_name = models.CharField(max_length=200, blank=True, help_text="FOCUS ServiceName.")
    sub_account_name = models.CharField(max_length=200, blank=True, help_text="FOCUS SubAccountName.")
    resource_id = models.CharField(max_length=1000, blank=True, help_text="FOCUS ResourceId.")
    tags = models.JSONField(default=dict, blank=True, help_text="FOCUS Tags.")
    created_at = models.DateTimeField(auto_now_add=True)
    # Database defaults too: the FOCUS import and the batch write rows with COPY.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_default=Status.ACTIVE)
    void_reason = models.TextField(blank=True, default="", db_default="", help_text="Why finance voided the record.")
    voided_at = models.DateTimeField(null=True, blank=True)
    # No index: almost every row is NULL here, and the import pays for each index entry.
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False,
    )

    class Meta:
        ordering = ["-occurred_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["source", "idempotency_key"], name="usage_unique_source_idempotency_key"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_quantity_not_negative"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="usage_currency_iso4217"),
            models.CheckConstraint(
                condition=Q(source__in=["api", "charge", "focus_import", "adjustment"]), name="usage_source_valid"
            ),
            models.CheckConstraint(condition=Q(status__in=["active", "void"]), name="usage_status_valid"),
            models.CheckConstraint(
                condition=Q(status="active") | (Q(voided_at__isnull=False) & ~Q(void_reason="")),
                name="usage_void_has_reason",
            ),
            models.CheckConstraint(
                condition=~Q(source="adjustment") | Q(metadata__has_key="reason"), name="usage_adjustment_has_reason"
            ),
        ]
        indexes = [
            models.Index(fields=["billing_period_start", "team"], name="usage_period_team"),
            models.Index(fields=["team", "occurred_at"], name="usage_team_occurred"),
            models.Index(fields=["user"], condition=Q(user__isnull=False), name="usage_user"),
            # The few void records of a period, for the run's "voided since the last run" line.
            models.Index(fields=["billing_period_start"], condition=Q(status="void"), name="usage_void_period"),
        ]

    def __str__(self) -> str:
        void = " (void)" if self.status == self.Status.VOID else ""
        return f"{self.resource_type} {number_display(self.quantity)} {self.unit} = {money_display(self.cost, self.currency)}{void}"


class Price(models.Model):
    """A catalog unit price: what one ``unit`` of ``category/provider/model`` costs.

    A row with ``team`` set is that team's override and wins over the global row (``team`` empty).
    Validity is the half-open range ``[valid_from, valid_to)``; ``valid_to`` empty means open-ended.
    Invariants: ``unit_price`` is not negative; ``valid_to`` is after ``valid_from``; the periods of
    one price (same team, category, provider, model, unit) do not overlap (checked in ``clean`` and in
    the catalog service).
    """

    category = models.CharField(max_length=50, help_text="Resource type priced: llm, stt, tts, telephony, gpu…")
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=100)
    unit = models.CharField(max_length=50, help_text="token, second, character, minute…")
    unit_price = MeteredAmountField(validators=[MinValueValidator(0)])
    currency = CurrencyField()
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="price_overrides",
        help_text="Set for a team's override; empty for the global catalog price.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["category", "provider", "model", "unit", "-valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="price_unit_price_not_negative"),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                name="price_valid_to_after_valid_from",
            ),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="price_currency_iso4217"),
        ]
        indexes = [models.Index(fields=["category", "provider", "model", "unit"], name="price_item")]

    def __str__(self) -> str:
        who = f" ({self.team})" if self.team_id else ""
        return (f"{self.category}/{self.provider}/{self.model}/{self.unit} "
                f"{money_display(self.unit_price, self.currency, exact=True)}{who}")

    def clean(self) -> None:
        if self.valid_from is None:
            return  # the field's own validation reports the missing or malformed date
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValidationError({"valid_to": "Valid to must be after valid from."})
        overlapping = Price.objects.filter(
            category=self.category, provider=self.provider, model=self.model, unit=self.unit, team=self.team,
        ).exclude(pk=self.pk)
        if self.valid_to is not None:
            overlapping = overlapping.filter(valid_from__lt=self.valid_to)
        overlapping = overlapping.filter(Q(valid_to__isnull=True) | Q(valid_to__gt=self.valid_from))
        if overlapping.exists():
            raise ValidationError({"valid_from": "This price's validity overlaps another period of the same price."})


class AllocationRule(models.Model):
    """A rule that moves costs from a source (the unallocated pool, or one team's costs) to targets.

    Rules run in ``priority`` order (lower first, then pk). Each usage record is taken by at most one
    rule: the first enabled, valid rule whose source and filters match it; allocations do not cascade
    (as AWS split-charge rules). Rule types and their sources of truth:

    * ``by_usage``: proportional to each target's own usage cost in the period (AWS split charge
      PROPORTIONAL, OpenCost ShareWeighted). No targets means every team with usage in the period.
    * ``equal_split``: evenly across the targets (AWS EVEN, OpenCost ShareEven).
    * ``fixed_split``: by the targets' percentages, which sum to exactly 100 (AWS FIXED).
    * ``by_team``: the source team's cost split equally among its members.
    * ``by_user``: attributed to users: equally to the listed target users, or, with no targets,
      each usage record's cost to its own user.

    Validity is the half-open date range ``[valid_from, valid_to)``; empty ends are open.
    """

    class RuleType(models.TextChoices):
        BY_USAGE = "by_usage", "By usage (proportional)"
        EQUAL_SPLIT = "equal_split", "Equal split"
        FIXED_SPLIT = "fixed_split", "Fixed split (percentages)"
        BY_TEAM = "by_team", "By team (among its members)"
        BY_USER = "by_user", "By user"

    class Source(models.TextChoices):
        UNALLOCATED = "unallocated", "The unallocated pool"
        TEAM = "team", "One team's costs"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    rule_type = models.CharField(max_length=20, choices=RuleType.choices)
    enabled = models.BooleanField(default=True)
    priority = models.PositiveIntegerField(default=100, help_text="Lower runs first.")
    scope_team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="owned_allocation_rules",
        help_text="The team that owns the rule (its members may read it); empty for a finance-wide rule.",
    )
    # Which costs the rule takes.
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.UNALLOCATED)
    source_team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="source_of_allocation_rules",
        help_text="With source 'team': whose costs the rule takes.",
    )
    match_resource_type = models.CharField(max_length=50, blank=True, help_text="Only records of this resource type.")
    match_provider = models.CharField(max_length=100, blank=True, help_text="Only records of this provider.")
    match_service_name = models.CharField(max_length=200, blank=True, help_text="Only this FOCUS ServiceName.")
    match_tag_key = models.CharField(max_length=100, blank=True, help_text="Only records whose Tags carry this key…")
    match_tag_value = models.CharField(max_length=200, blank=True, help_text="…with this value (empty: any value).")
    valid_from = models.DateField(null=True, blank=True)
    valid_to = models.DateField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(rule_type__in=["by_usage", "equal_split", "fixed_split", "by_team", "by_user"]),
                name="rule_type_valid",
            ),
            models.CheckConstraint(
                condition=(Q(source="unallocated", source_team__isnull=True) | Q(source="team", source_team__isnull=False)),
                name="rule_source_team_iff_team_source",
            ),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_from__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                name="rule_valid_to_after_valid_from",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.rule_type})"

    def clean(self) -> None:
        errors = {}
        if self.source == self.Source.TEAM and not self.source_team_id:
            errors["source_team"] = "Choose the team whose costs this rule takes."
        if self.source == self.Source.UNALLOCATED and self.source_team_id:
            errors["source_team"] = "Only rules whose source is one team's costs name a source team."
        if self.rule_type == self.RuleType.BY_TEAM and self.source != self.Source.TEAM:
            errors["source"] = "A by_team rule splits one team's costs among its members: choose source 'team'."
        if self.match_tag_value and not self.match_tag_key:
            errors["match_tag_key"] = "A tag value needs the tag key it belongs to."
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            errors["valid_to"] = "Valid to must be after valid from."
        if errors:
            raise ValidationError(errors)


class AllocationTarget(models.Model):
    """One receiver of a rule's cost: a team, or a user billed through a team, with an optional percentage.

    ``percentage`` is used by ``fixed_split`` rules only (then required; the rule's targets sum to
    exactly 100). ``user`` empty means the team itself.
    """

    rule = models.ForeignKey(AllocationRule, on_delete=models.CASCADE, related_name="targets")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    percentage = models.DecimalField(
        max_digits=7, decimal_places=4, null=True, blank=True, help_text="Fixed split only: share in percent."
    )

    class Meta:
        ordering = ["rule", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "team"], condition=Q(user__isnull=True), name="target_unique_rule_team"
            ),
            models.UniqueConstraint(
                fields=["rule", "team", "user"], condition=Q(user__isnull=False), name="target_unique_rule_team_user"
            ),
            models.CheckConstraint(
                condition=Q(percentage__isnull=True) | (Q(percentage__gt=0) & Q(percentage__lte=100)),
                name="target_percentage_in_range",
            ),
        ]

    def __str__(self) -> str:
        who = f"{self.user} via {self.team}" if self.user_id else str(self.team)
        return f"{who} ({self.percentage} %)" if self.percentage is not None else who


class AllocationRun(models.Model):
    """One allocation of a billing period's costs, and its tie-out.

    Status (``TRANSITIONS``): ``draft`` (computed, rows written, not yet the period's truth) →
    ``committed`` (the period's allocation) → ``superseded`` (replaced by a later committed run).
    At most one run per period is committed (a partial unique constraint). A dry run is never saved.

    Tie-out invariant, checked before commit: ``allocated_cost + unallocated_cost == total_cost``
    exactly, where ``total_cost`` is the period's total usage cost. A CHECK (``run_ties_out``,
    migration 0002) holds it in the database too.

    A run keeps one pool per currency: every currency of the period's usage has its own
    :class:`AllocationCurrencyTotal` (``run.currency_totals``), with its own tie-out, and nothing is
    summed across currencies. ``currency``, ``total_cost``, ``allocated_cost`` and
    ``unallocated_cost`` repeat the figures of the run's principal currency (the default billing
    currency when the period has usage in it, else the currency with the most records), so a
    one-currency run reads as before; ``record_count`` counts the records of every currency.
    ``refused`` lists the teams the billing run did not invoice, and why (a conversion into the
    team's currency without an exchange rate; ``[{"team_id", "team", "currencies", "records",
    "costs", "message"}]``); the allocation itself leaves no usage out.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        COMMITTED = "committed", "Committed"
        SUPERSEDED = "superseded", "Superseded"

    #: Allowed status moves, the one place they are written (django-oscar's ``Order.pipeline``).
    #: Checked by ``chargeback.services.allocation.allocation_run_check_transition``.
    TRANSITIONS: dict[str, tuple[str, ...]] = {
        "draft": ("committed",),
        "committed": ("superseded",),
        "superseded": (),
    }

    period_start = models.DateField(help_text="First day of the period (inclusive).")
    period_end = models.DateField(help_text="First day after the period (exclusive).")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    dry_run = models.BooleanField(default=False)
    rule = models.ForeignKey(
        AllocationRule, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Set when the run applied this one rule only.",
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Set when the run was asked for one team (the whole period is still allocated).",
    )
    currency = CurrencyField()
    total_cost = MeteredAmountField(default=0)
    allocated_cost = MeteredAmountField(default=0)
    unallocated_cost = MeteredAmountField(default=0)
    record_count = models.PositiveIntegerField(default=0, help_text="Usage records in the period.")
    warnings = models.JSONField(default=list, blank=True, help_text="Pools a rule could not split, and why.")
    refused = models.JSONField(
        default=list, blank=True, help_text="Teams whose usage the run left out (not billed), and why."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    committed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_start", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["period_start", "period_end"], condition=Q(status="committed"),
                name="run_one_committed_per_period",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "committed", "superseded"]), name="run_status_valid"
            ),
            models.CheckConstraint(condition=Q(period_end__gt=models.F("period_start")), name="run_period_not_empty"),
        ]

    def __str__(self) -> str:
        return f"Allocation {self.period_start:%Y-%m} #{self.pk} ({self.status})"


class AllocationCurrencyTotal(models.Model):
    """One currency's pool of an allocation run, and its tie-out.

    Invariants: one row per (run, currency); ``allocated_cost + unallocated_cost == total_cost``
    exactly (a CHECK), all metered (12 decimal places) in ``currency``; the run's ``AllocatedCost``
    rows in ``currency`` sum to ``allocated_cost`` (checked at commit). Figures of two currencies
    are never added together.
    """

    run = models.ForeignKey(AllocationRun, on_delete=models.CASCADE, related_name="currency_totals")
    currency = CurrencyField()
    total_cost = MeteredAmountField(default=0)
    allocated_cost = MeteredAmountField(default=0)
    unallocated_cost = MeteredAmountField(default=0)
    record_count = models.PositiveIntegerField(default=0, help_text="Usage records in this currency.")

    class Meta:
        ordering = ["run", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["run", "currency"], name="run_currency_unique"),
            models.CheckConstraint(
                condition=Q(allocated_cost=models.F("total_cost") - models.F("unallocated_cost")),
                name="run_currency_ties_out",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run} {self.currency}"


class AllocatedCost(models.Model):
    """The cost a run assigns to one team (or one user within a team), for one line of its invoice.

    ``rule`` empty means the team's direct costs (records that carried the team and that no rule
    took), one row per service:

    * records with a FOCUS ServiceName: ``service`` is the ServiceName; ``quantity`` is empty and
      ``unit`` blank (the units of one cloud service differ: hours, GB-months, requests…);
    * API / AI usage (no ServiceName): one row per priced item (resource type, provider, model,
      unit); ``service`` is a readable label (``LLM · openai gpt-4``), ``quantity`` the summed
      quantity in ``unit`` (metered, 12 decimal places), and ``details`` names the item
      (``resource_type``, ``provider``, ``model``) so the invoice can show its catalog price.

    For a rule, ``service`` is empty, ``quantity`` empty, and ``details`` records the driver: rule
    type, the target's share of the pool, the pool amount, the driver amount and the number of
    source usage records.
    """

    # The four references are enforced in the database by statement-level triggers
    # (migrations/0012_allocated_cost_references.sql), not by foreign-key constraints: a month writes
    # tens of thousands of rows in two statements, and a foreign key checks (and locks its parent)
    # one row at a time at commit, the largest part of the allocation's cost per row. The triggers
    # lock each parent once per statement and refuse a row naming no parent, or the deletion of a
    # parent still named (SQLSTATE 23503, an IntegrityError, as before); ``on_delete`` works as before.
    # ``run`` has no index of its own: ``allocated_run_team`` (run, team) serves every lookup by run.
    # ``rule`` and ``user`` are indexed only where set (``Meta.indexes``): every lookup by them names
    # one, and most rows (a team's direct costs) have no rule, many no user.
    run = models.ForeignKey(AllocationRun, on_delete=models.CASCADE, related_name="allocations", db_index=False,
                            db_constraint=False)
    rule = models.ForeignKey(AllocationRule, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                             db_index=False, db_constraint=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="allocated_costs", db_constraint=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="allocated_costs",
        db_index=False, db_constraint=False,
    )
    service = models.CharField(max_length=200, blank=True)
    quantity = MeteredAmountField(
        null=True, blank=True, help_text="Summed usage quantity in unit; empty for FOCUS services and rule shares."
    )
    unit = models.CharField(max_length=50, blank=True, help_text="Unit of quantity: token, second, character…")
    amount = MeteredAmountField()
    currency = CurrencyField()
    record_count = models.PositiveIntegerField(default=0, help_text="Source usage records behind this amount.")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["run", "team", "rule", "service", "user"]
        indexes = [
            models.Index(fields=["run", "team"], name="allocated_run_team"),
            models.Index(fields=["rule"], condition=Q(rule__isnull=False), name="allocated_rule_set"),
            models.Index(fields=["user"], condition=Q(user__isnull=False), name="allocated_user_set"),
        ]

    def __str__(self) -> str:
        return f"{self.team} {money_display(self.amount, self.currency)}"


class TeamMapping(models.Model):
    """Which team a FOCUS value belongs to: a tag (key and value), a sub-account (id or name) or a billing account.

    Finance maps a value once; every import after that charges the rows carrying it to the team,
    before any matching by team name. Several values (of any kind) may point at one team.

    History: a mapping is never edited or deleted. It applies to the billing periods from
    ``valid_from`` (a first of month, inclusive) to ``valid_to`` (exclusive; ``None``: still in force).
    Moving a value to another team ends the current row (sets its ``valid_to``) and adds a new one, in
    ``chargeback.services.team_mapping.team_mapping_set``. Invariants (database constraints): at most
    one row in force per value (``kind``, ``key``, ``value``); ``key`` is set exactly for tags;
    ``valid_to`` after ``valid_from``.
    """

    class Kind(models.TextChoices):
        TAG = "tag", "Tag (key and value)"
        SUB_ACCOUNT_ID = "sub_account_id", "Sub-account id (SubAccountId)"
        SUB_ACCOUNT_NAME = "sub_account_name", "Sub-account name (SubAccountName)"
        BILLING_ACCOUNT = "billing_account", "Billing account (BillingAccountId)"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    key = models.CharField(max_length=200, blank=True, help_text="The Tags key (tags only).")
    value = models.CharField(max_length=1000, help_text="The value as the FOCUS file writes it (exact match).")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="mappings")
    valid_from = models.DateField(help_text="First billing period (first of a month) the mapping applies to.")
    valid_to = models.DateField(null=True, blank=True,
                                help_text="First billing period it no longer applies to; empty: in force.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["kind", "key", "value", "-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key", "value"], condition=Q(valid_to__isnull=True),
                                    name="team_mapping_one_in_force"),
            models.CheckConstraint(condition=Q(kind="tag", key__gt="") | (~Q(kind="tag") & Q(key="")),
                                   name="team_mapping_key_for_tags_only"),
            models.CheckConstraint(condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                                   name="team_mapping_valid_range"),
            models.CheckConstraint(condition=Q(kind__in=["tag", "sub_account_id", "sub_account_name",
                                                         "billing_account"]),
                                   name="team_mapping_kind_allowed"),
        ]
        indexes = [models.Index(fields=["team"], name="team_mapping_team")]

    def __str__(self) -> str:
        what = f"{self.key}={self.value}" if self.kind == self.Kind.TAG else f"{self.get_kind_display()} {self.value}"
        return f"{what} → {self.team}"
