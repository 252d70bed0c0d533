"""Prepaid credit wallets and their append-only ledger.

Money columns follow ``billing_site.money``: metered precision, ``DecimalField(30, 12)``
(``MeteredAmountField``), with the wallet's ``currency`` (ISO 4217) beside them.

The ledger is the source of truth; ``Wallet.balance``/``Wallet.reserved`` are running totals kept in
the same transaction as every entry, so reading a balance is O(1) and ``verify_ledger`` can prove
the two agree. Only ``wallets.services`` writes any of these rows.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Concat, Upper
from django.utils import timezone

from billing_site.fields import CurrencyField, MeteredAmountField
from billing_site.formatting import money_display, number_display
from billing_site.money import MONEY_CONTEXT
from teams.models import BillingSettings, Team

from .errors import LedgerImmutable

ZERO = Decimal(0)


class Wallet(models.Model):
    """A credit balance of one team (or one member of a team, for ``prepaid_user``) in one currency.

    ``balance`` is the sum of the ``amount`` of its ledger entries and ``reserved`` the sum of their
    ``reserved_delta`` (the open holds); both are updated only by ``wallets.services`` in the same
    transaction as the entry, under a row lock. ``granted_balance`` is the part of ``balance`` that
    came from promotional grants and is not yet consumed or expired (the sum of its grants'
    ``remaining``); it is spent first.

    ``available = balance − reserved`` (plus the credit limit for postpaid teams; unlimited teams
    are not checked), see :meth:`available`.

    Invariants: ``reserved >= 0``; ``granted_balance >= 0``; at most one live (not closed) wallet per
    (team, currency) without a user and per (team, user, currency) with one; a wallet with ledger
    entries is never deleted (``PROTECT``), it is closed.
    ``low_balance_warned`` is true after a low-balance e-mail was sent and until a credit lifts the
    balance back to the warning threshold (one e-mail per crossing).
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        FROZEN = "frozen", "Frozen"
        CLOSED = "closed", "Closed"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="wallets")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="wallets",
        help_text="Set for a member's wallet (billing model prepaid_user); empty for the team wallet.",
    )
    currency = CurrencyField()
    balance = MeteredAmountField(default=ZERO)
    reserved = MeteredAmountField(default=ZERO, help_text="Held by open holds.")
    granted_balance = MeteredAmountField(default=ZERO, help_text="Unspent, unexpired promotional credit.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    low_balance_warned = models.BooleanField(default=False)
    last_top_up_amount = MeteredAmountField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team", "user", "currency"]
        # Money-moving admin actions need these on top of view_wallet (the finance group has them).
        permissions = [
            ("top_up", "Can top up wallets"),
            ("grant", "Can grant promotional credit"),
            ("freeze", "Can freeze and unfreeze wallets"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "currency"], condition=Q(user__isnull=True) & ~Q(status="closed"),
                name="wallet_one_live_team_wallet_per_currency",
            ),
            models.UniqueConstraint(
                fields=["team", "user", "currency"], condition=Q(user__isnull=False) & ~Q(status="closed"),
                name="wallet_one_live_user_wallet_per_currency",
            ),
            models.CheckConstraint(condition=Q(status__in=["active", "frozen", "closed"]), name="wallet_status_valid"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="wallet_reserved_not_negative"),
            models.CheckConstraint(condition=Q(granted_balance__gte=0), name="wallet_granted_not_negative"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="wallet_currency_iso4217"),
        ]

    def __str__(self) -> str:
        owner = f"{self.team} / {self.user}" if self.user_id else str(self.team)
        return f"{owner}: {money_display(self.balance, self.currency)}"

    @property
    def purchased_balance(self) -> Decimal:
        with localcontext(MONEY_CONTEXT):
            return self.balance - self.granted_balance

    def available(self, billing_settings: BillingSettings | None = None) -> Decimal:
        """``balance − reserved``, plus the credit limit when ``billing_settings`` is postpaid (exact)."""
        with localcontext(MONEY_CONTEXT):
            available = self.balance - self.reserved
            if billing_settings is not None and billing_settings.billing_model == BillingSettings.BillingModel.POSTPAID:
                available += billing_settings.credit_limit
        return available


class LedgerEntryQuerySet(models.QuerySet):
    """Ledger querysets refuse bulk UPDATE and DELETE, on every database (PostgreSQL also has a trigger)."""

    def update(self, **kwargs):
        raise LedgerImmutable("Ledger entries are append-only: post a reversing entry instead of an update.")

    def delete(self):
        raise LedgerImmutable("Ledger entries are append-only: they are never deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise LedgerImmutable("Ledger entries are append-only: post a reversing entry instead of an update.")

    update.queryset_only = True
    delete.queryset_only = True


#: What the admin's search finds a fragment of (description, reference and idempotency key,
#: upper-cased), and the expression of the trigram index ``ledger_search_trgm`` that serves it
#: (``FragmentSearchMixin``). One index for the three: one index write per entry, not three, and
#: no branch of the search left to a sequential scan.
LEDGER_SEARCH_TEXT = Upper(Concat("description", Value(" "), "reference_id", Value(" "), "idempotency_key"))


class LedgerEntry(models.Model):
    """One immutable movement of a wallet: the ledger. Append-only.

    Two signed deltas describe every entry:

    * ``amount``: the change of the wallet's **balance** (0 for ``hold`` and ``hold_release``);
    * ``reserved_delta``: the change of the wallet's **reserved** amount (holds).

    and the wallet's figures before and after it: ``balance_after = balance_before + amount`` and
    ``reserved_after = reserved_before + reserved_delta`` (CHECKs on PostgreSQL, added by migration
    0002; ``save()`` checks them in Decimal everywhere). Signs by entry type
    (one CHECK): ``top_up``, ``grant``, ``refund``, ``invoice_settlement`` credit (amount > 0);
    ``charge``, ``expiry`` debit (amount < 0); ``adjustment`` either way; ``hold`` reserves
    (reserved_delta > 0), ``hold_release`` unreserves (reserved_delta < 0), ``hold_capture`` debits
    what it unreserves (amount = reserved_delta < 0). No entry is a no-op.

    Chain: ordered by pk, each entry's ``balance_before``/``reserved_before`` equal the previous
    entry's ``*_after`` (the first starts from 0), and the last ``*_after`` equal the wallet's stored
    figures. Entries of one wallet are inserted under that wallet's row lock, so pk order is the
    order in which they happened. ``python manage.py verify_ledger`` checks all of it.

    Immutability: ``save()`` of an existing row, ``delete()``, and queryset ``update()``/``delete()``
    raise :class:`wallets.errors.LedgerImmutable`; on PostgreSQL a trigger (migration 0002) rejects
    UPDATE and DELETE from any client. Corrections are new reversing entries (``adjustment``,
    ``refund``).

    ``(wallet, entry_type, idempotency_key)`` is unique for non-empty keys, a last line of defence
    behind ``IdempotencyRecord``: one request never posts the same kind of entry twice.
    """

    class EntryType(models.TextChoices):
        TOP_UP = "top_up", "Top-up"
        GRANT = "grant", "Grant"
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"
        HOLD = "hold", "Hold"
        HOLD_RELEASE = "hold_release", "Hold release"
        HOLD_CAPTURE = "hold_capture", "Hold capture"
        EXPIRY = "expiry", "Expiry"
        INVOICE_SETTLEMENT = "invoice_settlement", "Invoice settlement"

    # No index of its own: ledger_wallet_newest (wallet, -id) serves every lookup by wallet, and one
    # index fewer is one write fewer per entry.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries", db_index=False)
    entry_type = models.CharField(max_length=20, choices=EntryType.choices)
    amount = MeteredAmountField(help_text="Signed change of the balance.")
    reserved_delta = MeteredAmountField(default=ZERO, help_text="Signed change of the reserved amount.")
    balance_before = MeteredAmountField()
    balance_after = MeteredAmountField()
    reserved_before = MeteredAmountField(default=ZERO)
    reserved_after = MeteredAmountField(default=ZERO)
    currency = CurrencyField()
    idempotency_key = models.CharField(max_length=255, blank=True)
    reference_type = models.CharField(
        max_length=50, blank=True,
        help_text="usage_event, ledger_entry, hold, credit_grant, invoice, admin_action, external_payment…",
    )
    reference_id = models.CharField(max_length=100, blank=True)
    feature_key = models.CharField(max_length=100, blank=True)
    description = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    metadata = models.JSONField(default=dict, blank=True)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "ledger entries"
        ordering = ["-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(entry_type__in=[
                    "top_up", "grant", "charge", "refund", "adjustment", "hold", "hold_release", "hold_capture",
                    "expiry", "invoice_settlement",
                ]),
                name="ledger_entry_type_valid",
            ),
            # ledger_entry_balance_chain and ledger_entry_reserved_chain (after = before + delta) are
            # added by migration 0002 (its SQL); save() checks them in Decimal too.
            models.CheckConstraint(condition=Q(reserved_after__gte=0), name="ledger_entry_reserved_not_negative"),
            models.CheckConstraint(
                condition=(
                    Q(entry_type__in=["top_up", "grant", "refund", "invoice_settlement"], amount__gt=0, reserved_delta=0)
                    | Q(entry_type__in=["charge", "expiry"], amount__lt=0, reserved_delta=0)
                    | (Q(entry_type="adjustment", reserved_delta=0) & ~Q(amount=0))
                    | Q(entry_type="hold", amount=0, reserved_delta__gt=0)
                    | Q(entry_type="hold_release", amount=0, reserved_delta__lt=0)
                    | Q(entry_type="hold_capture", amount__lt=0, reserved_delta=F("amount"))
                ),
                name="ledger_entry_signs_by_type",
            ),
            models.UniqueConstraint(
                fields=["wallet", "entry_type", "idempotency_key"], condition=~Q(idempotency_key=""),
                name="ledger_entry_unique_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="ledger_entry_currency_iso4217"),
        ]
        indexes = [
            # "Newest first per wallet" (the transactions list) and the chain walk of verify_ledger.
            models.Index(fields=["wallet", "-id"], name="ledger_wallet_newest"),
            models.Index(fields=["reference_type", "reference_id"], name="ledger_reference"),
            # The admin's search by a fragment of the description or reference (ILIKE '%…%'): a
            # trigram index, so it reads the matching rows, not the whole ledger (bench/admin_search.py).
            GinIndex(OpClass(LEDGER_SEARCH_TEXT, name="gin_trgm_ops"), name="ledger_search_trgm"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_entry_type_display()} {money_display(self.amount, self.currency)}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerImmutable(
                f"Ledger entry {self.pk} is append-only: post a reversing entry instead of changing it."
            )
        self.check_chain()
        return super().save(*args, **kwargs)

    def check_chain(self) -> None:
        """Raise ``ValueError`` unless ``after = before + delta`` for the balance and the reserved amount.

        Exact in Decimal on every database (on PostgreSQL migration 0002 also CHECKs it). Called by
        ``save()`` and by the single-statement insert of ``wallets.services`` that bypasses it.
        """
        with localcontext(MONEY_CONTEXT):
            balance_ok = self.balance_after == self.balance_before + self.amount
            reserved_ok = self.reserved_after == self.reserved_before + self.reserved_delta
        if not balance_ok:
            raise ValueError(f"balance_after {self.balance_after} != balance_before {self.balance_before} + amount {self.amount}")
        if not reserved_ok:
            raise ValueError(
                f"reserved_after {self.reserved_after} != reserved_before {self.reserved_before} + {self.reserved_delta}"
            )

    def delete(self, *args, **kwargs):
        raise LedgerImmutable(f"Ledger entry {self.pk} is append-only: it is never deleted.")


class CreditGrant(models.Model):
    """A lot of promotional credit given to a wallet by a ``grant`` entry, spent before purchased credit.

    Debits (charges, captures, negative adjustments) consume the wallet's open lots first, soonest
    expiry first (lots without expiry last, then oldest first); what is left of a lot past
    ``expires_at`` is removed by ``python manage.py expire_grants`` with an ``expiry`` entry, except
    the part that backs open holds, which expires once those are settled.

    Invariants: ``0 <= remaining <= amount``; ``amount > 0``; the sum of ``remaining`` over a
    wallet's lots equals ``Wallet.granted_balance``. ``remaining`` is a running figure of the
    wallet, changed only under the wallet's lock; the ledger entries stay the record of truth.
    """

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="grants")
    entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="credit_grant")
    amount = MeteredAmountField()
    remaining = MeteredAmountField()
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When the remainder was expired.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["wallet", "expires_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=F("amount")), name="grant_remaining_in_range"
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="grant_expires", condition=Q(remaining__gt=0))]

    def __str__(self) -> str:
        currency = self.wallet.currency
        return (f"Grant {money_display(self.amount, currency)} ({money_display(self.remaining, currency)} left) "
                f"on wallet {self.wallet_id}")


class Hold(models.Model):
    """Credit reserved on a wallet for a later charge (an authorization, in card terms).

    Opening a hold posts a ``hold`` entry (reserved += amount). It ends once: captured (a
    ``hold_capture`` entry debits ``captured_amount`` ≤ ``amount``, and a ``hold_release`` entry
    returns the rest, as Stripe releases the uncaptured part of a partial capture) or released (a
    ``hold_release`` entry for the whole amount).

    Invariants: ``amount > 0``; open ⇒ nothing captured or released; captured ⇒ captured > 0 and
    captured + released = amount; released ⇒ nothing captured and released = amount.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CAPTURED = "captured", "Captured"
        RELEASED = "released", "Released"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds")
    amount = MeteredAmountField()
    captured_amount = MeteredAmountField(default=ZERO)
    released_amount = MeteredAmountField(default=ZERO)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    expires_at = models.DateTimeField(null=True, blank=True)
    feature_key = models.CharField(max_length=100, blank=True)
    description = models.CharField(max_length=500, blank=True)
    reference_type = models.CharField(max_length=50, blank=True)
    reference_id = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["open", "captured", "released"]), name="hold_status_valid"
            ),
            models.CheckConstraint(
                condition=(
                    Q(status="open", captured_amount=0, released_amount=0)
                    | Q(status="captured", captured_amount__gt=0, released_amount__gte=0)
                    | Q(status="released", captured_amount=0, released_amount=F("amount"))
                ),
                name="hold_amounts_match_status",
            ),
            # hold_captured_plus_released (captured: amount = captured + released) is added by
            # migration 0002 (its SQL).
        ]
        indexes = [models.Index(fields=["expires_at"], name="hold_open_expires", condition=Q(status="open"))]

    def __str__(self) -> str:
        return f"Hold {money_display(self.amount, self.wallet.currency)} on wallet {self.wallet_id} ({self.status})"


class UsageEvent(models.Model):
    """One charge request for a multi-item usage event (an AI call: STT + LLM + TTS + telephony).

    Status: ``pending`` (being priced, inside the charging transaction) → ``charged`` (one ``charge``
    ledger entry for ``total``, one ``UsageRecord`` with source ``charge`` per item) or
    ``rejected`` (no ledger entry and no usage record; ``rejection_code``/``rejection_reason`` say
    why, the items are kept so nothing is lost).

    Invariants: ``(team, idempotency_key)`` is unique; ``total`` = Σ item costs, ≥ 0, in
    ``currency``; a rejected event has a rejection code and no ledger entry; a charged event with a
    non-zero total has its ledger entry.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CHARGED = "charged", "Charged"
        REJECTED = "rejected", "Rejected"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="usage_events")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="usage_events"
    )
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="usage_events")
    feature_key = models.CharField(max_length=100, blank=True)
    external_reference_id = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rejection_code = models.CharField(max_length=50, blank=True)
    rejection_reason = models.CharField(max_length=500, blank=True)
    total = MeteredAmountField(default=ZERO)
    currency = CurrencyField()
    ledger_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="usage_event"
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["team", "idempotency_key"], name="usage_event_unique_idempotency_key"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "charged", "rejected"]), name="usage_event_status_valid"
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="usage_event_total_not_negative"),
            models.CheckConstraint(
                condition=~Q(status="rejected") | (~Q(rejection_code="") & Q(ledger_entry__isnull=True)),
                name="usage_event_rejected_has_code_no_entry",
            ),
            models.CheckConstraint(
                condition=~Q(status="charged") | Q(total=0) | Q(ledger_entry__isnull=False),
                name="usage_event_charged_has_entry",
            ),
        ]
        indexes = [
            models.Index(fields=["team", "created_at"], name="usage_event_team_created"),
            models.Index(fields=["team", "status", "created_at"], name="usage_event_team_status"),
        ]

    def __str__(self) -> str:
        return f"Usage event {self.pk} {money_display(self.total, self.currency)} ({self.status})"


class UsageEventItem(models.Model):
    """One priced line of a usage event: ``quantity`` × ``unit_price`` = ``cost`` (12 dp, half-up).

    ``usage_record`` is the chargeback ``UsageRecord`` (source ``charge``) written when the event was
    charged; empty for pending and rejected events. Invariants: quantity, unit price and cost are
    not negative; ``cost == quantize_metered(quantity × unit_price)``.
    """

    event = models.ForeignKey(UsageEvent, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    category = models.CharField(max_length=50)
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=100)
    unit = models.CharField(max_length=50)
    quantity = MeteredAmountField()
    unit_price = MeteredAmountField()
    cost = MeteredAmountField()
    currency = CurrencyField()
    price = models.ForeignKey(
        "chargeback.Price", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    usage_record = models.OneToOneField(
        "chargeback.UsageRecord", null=True, blank=True, on_delete=models.PROTECT, related_name="usage_event_item"
    )

    class Meta:
        ordering = ["event", "position"]
        constraints = [
            models.UniqueConstraint(fields=["event", "position"], name="usage_event_item_unique_position"),
            models.CheckConstraint(
                condition=Q(quantity__gte=0) & Q(unit_price__gte=0) & Q(cost__gte=0),
                name="usage_event_item_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return (f"{self.category}/{self.provider}/{self.model} {number_display(self.quantity)} {self.unit} = "
                f"{money_display(self.cost, self.currency)}")
