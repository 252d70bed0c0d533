"""Subscription invoices on the ``invoices`` app: fee in advance, overage in arrears, prorations, one invoice.

At each renewal (Stripe's convention) one invoice of kind ``subscription`` carries

1. the fee of the coming period ``[B, C)`` (section ``fee``);
   and, when a coupon's discount covers that period, its ``discount`` line (negative, at most
   the fee: ``subscriptions.discounts``);
2. the prorations left by mid-period changes that no invoice carried yet (section ``proration``);
3. one overage line per meter of the period just ended ``[A, B)``: its included, used and overage
   units and the price applied (section ``overage``; amount 0 when the usage stayed within the
   included units). The PDF prints them as its "Included usage" section;
4. a minimum-commitment true-up when the ended period's fee plus overage fell short of the plan's
   minimum (section ``minimum_commitment``).

Invoices are the existing ones: the lines' metered amounts are rounded once to the currency's
minor units by the largest-remainder rule (``money.round_preserving_sum``; proration lines keep
the amounts their pair was split into), the team's tax rate applies (``total = subtotal + tax``),
the number is the next gap-free invoice number (a block taken for the batch) and the invoice is
written issued (``pending``) at once,
its PDF rendered separately (``invoices.services.pdf_storage.invoice_pdf_store``). The invoice's
``period_start``/``period_end`` are the dates of the fee period in the subscription's time zone
(the ended period's for a final invoice that carries usage only).

Prepaid teams (billing model ``prepaid_team``, or ``prepaid_user`` for a member's subscription) pay
the invoice from their wallet: one ``wallet_charge`` keyed ``subscription-<id>-<period start>``
(idempotent by subscription and period), and the invoice is marked paid. A refusal (not enough
credit, a frozen wallet) leaves the invoice open and moves the subscription to ``past_due``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone

from billing_site.money import (
    format_metered,
    format_period,
    format_quantity,
    format_unit,
    minor_unit,
    round_preserving_sum,
    to_minor_units,
)
from invoices.models import DocumentSequence, Invoice, InvoiceLine
from invoices.numbering import document_numbers_next
from invoices.services.generation import invoice_tax_amount
from invoices.services.lifecycle import invoice_mark_paid
from invoices.signals import invoices_issued
from teams.models import BillingSettings
from wallets.errors import InsufficientFunds, WalletFrozen
from wallets.services.charges import wallet_charge
from wallets.services.wallets import wallet_open

from ..bulk import ids_take, rows_copy
from ..calendar import zone
from ..discounts import discount_amount
from ..models import Plan, Subscription, SubscriptionDiscount, SubscriptionProration
from ..selectors import MeterUsage

ZERO = Decimal(0)


@dataclass
class LineDraft:
    """An invoice line before it is written: metered ``amount_precise``, or a fixed ``amount`` (prorations)."""

    description: str
    amount_precise: Decimal
    details: dict
    quantity: Decimal = Decimal(1)
    unit: str = ""
    unit_price: Decimal | None = None
    amount: Decimal | None = None
    proration_id: int | None = None


@dataclass
class InvoiceDraft:
    """One subscription invoice before it is written; ``amounts``/``subtotal`` in minor units once rounded."""

    subscription: Subscription
    period_start: dt.date
    period_end: dt.date
    currency: str
    lines: list[LineDraft] = field(default_factory=list)
    amounts: list[Decimal] = field(default_factory=list)
    subtotal: Decimal = ZERO
    #: The start of the fee period, for the prepaid wallet charge's key.
    key_instant: dt.datetime | None = None

    def round(self) -> InvoiceDraft:
        """Round the lines to minor units: prorations keep their amounts, the rest by largest remainder;
        a discount line is then held to at most the fee lines' rounded amount."""
        quantum = minor_unit(self.currency)
        free = [line.amount_precise for line in self.lines if line.amount is None]
        rounded = iter(round_preserving_sum(free, quantum) if free else [])
        self.amounts = [line.amount if line.amount is not None else next(rounded) for line in self.lines]
        # A discount never takes off more than the fee it discounts, even a cent that rounding moved.
        fees = sum((a for line, a in zip(self.lines, self.amounts) if line.details.get("section") == "fee"), ZERO)
        self.amounts = [max(a, -fees) if line.details.get("section") == "discount" else a
                        for line, a in zip(self.lines, self.amounts)]
        self.subtotal = sum(self.amounts, ZERO)
        return self

    @property
    def is_empty(self) -> bool:
        """Nothing to bill: no line, or every line zero (a free plan with no usage beyond its units)."""
        return not self.lines or all(line.amount_precise == 0 and not line.amount for line in self.lines)


def local_date(instant: dt.datetime, time_zone: str) -> dt.date:
    """The date of ``instant`` in ``time_zone``."""
    return instant.astimezone(zone(time_zone)).date()


def _period_text(start: dt.datetime, end: dt.datetime, time_zone: str) -> str:
    s, e = local_date(start, time_zone), local_date(end, time_zone)
    return format_period(s, e if e > s else s + dt.timedelta(days=1))


def fee_line(*, plan: Plan, start: dt.datetime, end: dt.datetime, time_zone: str) -> LineDraft:
    """The fee of ``plan`` for the period ``[start, end)``, billed in advance."""
    every = f"{plan.interval_count} {plan.interval}s" if plan.interval_count > 1 else plan.interval
    return LineDraft(
        description=f"{plan.name}: fee per {every}, {_period_text(start, end, time_zone)}",
        amount_precise=plan.fee, unit_price=plan.fee,
        details={"kind": "subscription", "section": "fee", "plan": plan.code, "tier": plan.tier,
                 "period_start": start.isoformat(), "period_end": end.isoformat()},
    )


def discount_line(*, discount: SubscriptionDiscount, plan: Plan, start: dt.datetime, end: dt.datetime,
                  time_zone: str) -> LineDraft | None:
    """The discount of ``plan``'s fee for ``[start, end)`` by ``discount``'s coupon (a negative line), or ``None`` when 0."""
    coupon = discount.coupon
    amount = discount_amount(fee=plan.fee, percent_off=coupon.percent_off,
                             amount_off=coupon.amount_off if coupon.currency == plan.currency else None)
    if not amount:
        return None
    off = f"{coupon.percent_off.normalize():f}% off" if coupon.percent_off is not None else \
        f"{format_metered(coupon.amount_off, coupon.currency)} off"
    return LineDraft(
        description=f"Discount {coupon.name} ({off}): {plan.name}, {_period_text(start, end, time_zone)}",
        amount_precise=-amount, unit_price=-amount,
        details={"kind": "subscription", "section": "discount", "coupon": coupon.code, "discount": discount.pk,
                 "percent_off": None if coupon.percent_off is None else str(coupon.percent_off),
                 "amount_off": None if coupon.amount_off is None else str(coupon.amount_off),
                 "period_start": start.isoformat(), "period_end": end.isoformat()},
    )


def overage_lines(usage: Sequence[MeterUsage], *, time_zone: str) -> list[LineDraft]:
    """One line per meter of the ended period: included, used, overage and the price applied."""
    lines = []
    for meter in usage:
        unit = format_unit(meter.overage, meter.unit) if meter.unit else "units"
        lines.append(LineDraft(
            description=(f"Overage {meter.meter}: {format_quantity(meter.overage)} {unit} beyond "
                         f"{format_quantity(meter.included)} included, {_period_text(meter.period_start, meter.period_end, time_zone)}"),
            amount_precise=meter.overage_cost, quantity=meter.overage, unit=meter.unit,
            unit_price=(meter.overage_cost / meter.overage) if meter.overage else ZERO,
            details={"kind": "subscription", "section": "overage", "meter": meter.meter,
                     "charge_model": meter.charge_model, "included": str(meter.included), "used": str(meter.used),
                     "overage": str(meter.overage), "overage_cost": str(meter.overage_cost), "price": meter.price,
                     "period": _period_text(meter.period_start, meter.period_end, time_zone),
                     "period_start": meter.period_start.isoformat(), "period_end": meter.period_end.isoformat()},
        ))
    return lines


def minimum_commitment_line(*, plan: Plan, fee: Decimal, usage: Sequence[MeterUsage], start: dt.datetime,
                            end: dt.datetime, time_zone: str) -> LineDraft | None:
    """The true-up of a period whose fee + overage fell short of the plan's minimum commitment, or ``None``."""
    if plan.minimum_commitment is None:
        return None
    billed = fee + sum((m.overage_cost for m in usage), ZERO)
    short = plan.minimum_commitment - billed
    if short <= 0:
        return None
    return LineDraft(
        description=(f"Minimum commitment {format_metered(plan.minimum_commitment, plan.currency)}: true-up, "
                     f"{_period_text(start, end, time_zone)}"),
        amount_precise=short, unit_price=short,
        details={"kind": "subscription", "section": "minimum_commitment", "minimum": str(plan.minimum_commitment),
                 "billed": str(billed)},
    )


def proration_line(proration: SubscriptionProration) -> LineDraft:
    """A proration row as an invoice line, keeping its rounded amount."""
    return LineDraft(
        description=proration.description, amount_precise=proration.amount_precise,
        unit_price=proration.amount_precise, amount=proration.amount, proration_id=proration.pk,
        details={"kind": "subscription", "section": "proration", "proration": proration.kind,
                 "period_start": proration.period_start.isoformat(), "period_end": proration.period_end.isoformat()},
    )


@dataclass(frozen=True)
class TeamBilling:
    """The few billing settings an invoice needs (``teams.BillingSettings``), read in one query per batch."""

    billing_model: str
    tax_rate: Decimal
    payment_terms_days: int
    billing_address: str


def _billing_settings(team_ids: set[int]) -> dict[int, TeamBilling]:
    """The teams' billing settings (1 query; the ids as one array parameter, not one parameter each)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT team_id, billing_model, tax_rate, payment_terms_days, billing_address "
                       f"FROM {BillingSettings._meta.db_table} WHERE team_id = ANY(%s::bigint[])", [list(team_ids)])
        return {row[0]: TeamBilling(*row[1:]) for row in cursor.fetchall()}


@dataclass(frozen=True)
class WrittenInvoice:
    """An invoice :func:`invoices_write` wrote and issued: what its callers need, without loading the row."""

    pk: int
    number: str
    team_id: int
    currency: str
    total: Decimal


def invoices_write(drafts: Sequence[InvoiceDraft], *, at: dt.datetime,
                   billing: dict[int, TeamBilling] | None = None) -> list[WrittenInvoice]:
    """Write the invoices of ``drafts`` issued, in bulk: lines, rows, gap-free numbers; inside the caller's transaction.

    Each draft is rounded and taxed at its team's rate (``BillingSettings.tax_rate``, rounded once);
    all are numbered in one take of the invoice sequence (a block of consecutive numbers, one lock
    and one write of the sequence row), then their lines and the invoices are written with one
    ``COPY`` each (``subscriptions.bulk``): the lines first (their foreign key is checked at commit,
    and the lines' trigger refuses a line on an invoice already issued), then the invoices as
    issued (``pending``, numbered, issue date = ``at``'s local date, due after the team's payment
    terms). Proration rows carried get their ``invoice``. ``billing``: the teams' settings when the
    caller has read them (:func:`billing_settings_of`). ``invoices.signals.invoices_issued`` is sent
    with their ids. Returns the invoices in the order of ``drafts``.
    """
    drafts = [d.round() for d in drafts]
    if not drafts:
        return []
    if billing is None:
        billing = billing_settings_of(drafts)
    default_terms = settings.BILLING_PAYMENT_TERMS_DAYS
    issue_date = timezone.localdate(at)
    now = timezone.now()
    numbers = document_numbers_next(kind=DocumentSequence.Kind.INVOICE, date=issue_date, count=len(drafts))
    ids = ids_take(Invoice, len(drafts))
    rows, totals = [], []
    for pk, number, d in zip(ids, numbers, drafts):
        team = d.subscription.team
        b = billing.get(team.pk)
        rate = b.tax_rate if b else ZERO
        tax = invoice_tax_amount(subtotal=d.subtotal, rate=rate, currency=d.currency) if rate else ZERO
        totals.append(d.subtotal + tax)
        rows.append({
            "id": pk, "team_id": team.pk, "user_id": d.subscription.user_id, "kind": Invoice.Kind.SUBSCRIPTION,
            "status": Invoice.Status.PENDING, "number": number, "issue_date": issue_date,
            "due_date": issue_date + dt.timedelta(days=b.payment_terms_days if b else default_terms),
            "issued_at": now, "created_at": now, "updated_at": now,
            "period_start": d.period_start, "period_end": d.period_end,
            "currency": d.currency, "subtotal": d.subtotal, "tax_rate": rate, "tax_amount": tax,
            "total": d.subtotal + tax, "team_name": team.name, "cost_center": team.cost_center,
            "billing_address": b.billing_address if b else "",
        })
    line_rows, carried = [], []
    line_ids = ids_take(InvoiceLine, sum(len(d.lines) for d in drafts))
    next_id = iter(line_ids)
    for d, pk in zip(drafts, ids):
        for position, (line, amount) in enumerate(zip(d.lines, d.amounts), start=1):
            line_rows.append({
                "id": next(next_id), "invoice_id": pk, "position": position, "description": line.description[:500],
                "service": line.details.get("section", ""), "quantity": line.quantity, "unit": line.unit,
                "unit_price": line.unit_price if line.unit_price is not None else line.amount_precise,
                "amount_precise": line.amount_precise, "amount": amount, "details": line.details,
                "record_count": 0, "rule_id": None, "rule_name": "", "rule_type": "",
            })
            if line.proration_id is not None:
                carried.append((line.proration_id, pk))
    rows_copy(InvoiceLine, line_rows)
    rows_copy(Invoice, rows)
    if carried:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE subscriptions_subscriptionproration AS p SET invoice_id = v.inv "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, inv) WHERE p.id = v.id",
                [[c[0] for c in carried], [c[1] for c in carried]],
            )
    # Apps after subscriptions (payments: automatic collection) defer their work in this transaction.
    invoices_issued.send(sender=Invoice, invoice_ids=list(ids))
    return [WrittenInvoice(pk=pk, number=number, team_id=d.subscription.team_id, currency=d.currency, total=total)
            for pk, number, d, total in zip(ids, numbers, drafts, totals)]


def prepaid_payer(subscription: Subscription, billing: TeamBilling | None) -> tuple[bool, object]:
    """Whether the subscriber pays from a wallet, and whose: ``(True, user or None)`` for prepaid teams."""
    model = billing.billing_model if billing else BillingSettings.BillingModel.PREPAID_TEAM
    if model == BillingSettings.BillingModel.PREPAID_TEAM:
        return True, None
    if model == BillingSettings.BillingModel.PREPAID_USER:
        return True, subscription.user
    return False, None


def wallet_key(subscription: Subscription, period_start: dt.datetime) -> str:
    """The idempotency key of a period's wallet payment: ``subscription-<id>-<period start, UTC>``."""
    return f"subscription-{subscription.pk}-{period_start.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"


def billing_settings_of(drafts: Sequence[InvoiceDraft]) -> dict[int, TeamBilling]:
    """The billing settings of the drafts' teams, by team id (1 query), to pass to the writes and the payments."""
    return _billing_settings({d.subscription.team_id for d in drafts})


def invoices_pay_from_wallets(pairs: Sequence[tuple[InvoiceDraft, WrittenInvoice]],
                              billing: dict[int, TeamBilling] | None = None) -> list[Subscription]:
    """Charge prepaid subscribers' wallets for their invoices; returns the subscriptions that could not pay.

    Runs inside the caller's transaction: ``wallet_charge`` runs in a savepoint, so a refusal keeps
    the transaction usable. Keyed by subscription and period (:func:`wallet_key`): a replay posts
    nothing twice.
    """
    unpaid = []
    if billing is None:
        billing = _billing_settings({d.subscription.team_id for d, _ in pairs})
    for draft, invoice in pairs:
        if invoice.total <= 0:
            continue
        prepaid, user = prepaid_payer(draft.subscription, billing.get(invoice.team_id))
        if not prepaid:
            continue
        sub = draft.subscription
        wallet = wallet_open(team=sub.team, user=user, currency=invoice.currency)
        try:
            entry = wallet_charge(
                wallet=wallet, amount=invoice.total, idempotency_key=wallet_key(sub, draft.key_instant),
                feature_key="subscription", description=f"Subscription {sub.plan.code}: invoice {invoice.number}",
                reference_type="invoice", reference_id=str(invoice.pk),
                metadata={"subscription": sub.pk, "period_start": draft.key_instant.isoformat()},
            )
        except (InsufficientFunds, WalletFrozen):
            unpaid.append(sub)
            continue
        invoice_mark_paid(invoice=Invoice(pk=invoice.pk), payment_reference=f"wallet ledger entry {entry.pk}")
    return unpaid


def minor(amount: Decimal, currency: str) -> Decimal:
    """One figure in minor units (half-up), for previews."""
    return to_minor_units(amount, currency)
