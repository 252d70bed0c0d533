"""Invoice writes: draft chargeback invoices generated from a committed allocation run.

The billing run (``python manage.py billing_run``) allocates a period, then calls
:func:`invoice_generate_for_run` to write one draft invoice per team, then renders
each draft's PDF with :func:`invoices.pdf.invoice_store_pdf`. The lifecycle (issue, send, pay,
overdue, cancel; ``Invoice.TRANSITIONS``) and credit notes follow below; numbers come from
:mod:`invoices.numbering`.

Rounding is the one boundary from metered to invoice amounts (``billing_site.money``):

1. each team's precise total (Σ ``AllocatedCost.amount`` of the run, 12 decimal places) is rounded
   to the currency's minor units *together with every other team of the run* by
   ``round_preserving_sum`` (largest remainder), so the invoices of a period sum exactly to the
   period's allocated cost rounded half-up to cents;
2. within each invoice the lines are rounded the same way to that invoice's subtotal.

A direct line of API / AI usage (an ``AllocatedCost`` with a quantity) shows its summed quantity,
unit and unit price: the catalog price when the line's amount is exactly what that price gives
(every record was priced at it), else the average ``amount / quantity`` (the price changed in the
period, or some records carried their own cost). Other lines are quantity 1 at their amount.

Because step 1 always looks at all teams of the run, generating for one team gives that team
exactly the amount a full generation would.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_site.money import (
    METERED_QUANTUM,
    format_amount,
    minor_unit,
    quantize_metered,
    round_preserving_sum,
    split,
    to_minor_units,
    unit_price_of,
)
from chargeback.models import AllocatedCost, AllocationRun
from chargeback.periods import BillingPeriod
from chargeback.selectors import allocation_committed_run, prices_of_period
from teams.models import BillingSettings, Team, TeamMembership
from teams.selectors import billing_settings_get
from wallets.models import LedgerEntry, Wallet
from wallets.services import wallet_settle_invoice

from .errors import (
    CreditNoteLimitExceeded,
    DuplicateInvoiceNumber,
    InvalidInvoiceRequest,
    InvalidTransition,
    InvoiceGenerationError,
    InvoiceImmutable,
)
from .models import CreditNote, CreditNoteLine, DocumentSequence, Invoice, InvoiceLine
from .numbering import document_number_next
from . import pdf as invoice_pdf
from .pdf import invoice_store_pdf

logger = logging.getLogger(__name__)

#: Description of a line when a direct cost carries neither a FOCUS ServiceName nor a resource type.
OTHER_USAGE = "Other usage"


@dataclass(frozen=True)
class TeamAmount:
    """One team's bill in one currency, as a billing run sees it.

    ``precise`` is Σ ``AllocatedCost.amount`` (metered, 12 decimal places); ``amount`` is its share
    of the run's rounded total in the currency's minor units (largest remainder over all teams).
    """

    team_id: int
    currency: str
    precise: Decimal
    amount: Decimal
    record_count: int


class InvoiceGenerationResult(list):
    """The drafts written by :func:`invoice_generate_for_run` (a ``list[Invoice]``), with a report.

    Attributes:
        created: pks of the drafts created by this generation (the others in the list were refreshed).
        cancelled: stale drafts set to ``cancelled`` because their team has nothing left to bill.
        skipped: issued (not draft) invoices of the period that were left untouched, although the
            run now gives their team another amount or none; they need a credit note (issue 4).
    """

    def __init__(self) -> None:
        super().__init__()
        self.created: set[int] = set()
        self.cancelled: list[Invoice] = []
        self.skipped: list[Invoice] = []


def team_amounts(allocations: Iterable[AllocatedCost]) -> list[TeamAmount]:
    """Round every team's precise total of a run to minor units, together, per currency.

    Args:
        allocations: all ``AllocatedCost`` rows of one run (saved, or a dry run's unsaved
            ``run.preview``); amounts metered (12 decimal places) with their ``currency``.

    Returns:
        One ``TeamAmount`` per (team, currency), ordered by currency then team pk (the order that
        breaks ties of the largest-remainder rounding). Per currency the ``amount``s sum exactly to
        Σ ``precise`` rounded half-up to the currency's minor units. Teams whose amount rounds to
        zero are included (with ``amount == 0``).
    """
    totals: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    records: dict[tuple[str, int], int] = defaultdict(int)
    for allocation in allocations:
        key = (allocation.currency, allocation.team_id)
        totals[key] += allocation.amount
        records[key] += allocation.record_count
    by_currency: dict[str, list[int]] = defaultdict(list)
    for currency, team_id in sorted(totals):
        by_currency[currency].append(team_id)
    result = []
    for currency, team_ids in by_currency.items():
        precise = [totals[(currency, team_id)] for team_id in team_ids]
        rounded = round_preserving_sum(precise, minor_unit(currency))
        result.extend(
            TeamAmount(team_id, currency, p, r, records[(currency, team_id)])
            for team_id, p, r in zip(team_ids, precise, rounded)
        )
    return result


def invoice_tax_rate(*, team: Team) -> Decimal:
    """The tax rate of ``team``'s invoices in percent (``Decimal("19")`` for 19 %).

    From the team's billing settings (``BillingSettings.tax_rate``, 0 to 100, default 0; issue 4:
    "a rate per team, from billing settings, default 0").
    """
    return billing_settings_get(team=team).tax_rate


def invoice_tax_amount(*, subtotal: Decimal, rate: Decimal, currency: str) -> Decimal:
    """The tax on ``subtotal`` (minor units) at ``rate`` percent, rounded once, half-up, to minor units."""
    return to_minor_units(subtotal * rate / Decimal(100), currency)


@dataclass
class _Line:
    """An invoice line before it is saved: a (rule, service) group of one team's allocated costs."""

    rule_id: int | None
    service: str
    unit: str = ""
    rule_name: str = ""
    rule_type: str = ""
    rule_sort: tuple = ()
    amount_precise: Decimal = Decimal(0)
    record_count: int = 0
    rows: int = 0
    users: set = field(default_factory=set)
    # The engine's driver record (``AllocatedCost.details``, chargeback.rules): the rule's whole
    # pool (metered text), the records it came from, and the summed driver amounts / percentages.
    pool_amount: str | None = None
    pool_records: int | None = None
    driver_amount: Decimal | None = None
    percentage: Decimal | None = None
    # API / AI usage: the summed quantity of ``unit`` (None as soon as one row has none) and the
    # priced item (``AllocatedCost.details``: resource_type, provider, model).
    quantity: Decimal | None = None
    item: dict | None = None


def _pool_totals(allocations: list[AllocatedCost]) -> dict[tuple[int, str], Decimal]:
    """What each rule handed out in the run, per currency: Σ of its rows over every team (its split pool)."""
    pools: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for allocation in allocations:
        if allocation.rule_id is not None:
            pools[(allocation.rule_id, allocation.currency)] += allocation.amount
    return pools


def _group_lines(rows: list[AllocatedCost]) -> list[_Line]:
    """Group one team's rows by (rule, service, unit): direct costs first, then rules by priority."""
    groups: dict[tuple[int | None, str, str], _Line] = {}
    for row in rows:
        service = row.service if row.rule_id is None else ""
        unit = row.unit if row.rule_id is None else ""
        key = (row.rule_id, service, unit)
        line = groups.get(key)
        if line is None:
            line = groups[key] = _Line(rule_id=row.rule_id, service=service, unit=unit)
            if row.rule_id is not None:
                line.rule_name = row.rule.name
                line.rule_type = row.rule.rule_type
                line.rule_sort = (row.rule.priority, row.rule_id)
            elif row.quantity is not None:
                line.quantity = Decimal(0)
                line.item = {k: (row.details or {}).get(k, "") for k in ("resource_type", "provider", "model")}
        if line.quantity is not None:
            line.quantity = None if row.quantity is None else line.quantity + row.quantity
        line.amount_precise += row.amount
        line.rows += 1
        if row.user_id is not None:
            line.users.add(row.user_id)
        line.record_count += row.record_count
        details = row.details or {}
        if row.rule_id is not None:
            line.pool_amount = details.get("pool_amount", line.pool_amount)
            if details.get("source_records") is not None:
                line.pool_records = int(details["source_records"])
            if details.get("driver_amount") is not None:
                line.driver_amount = (line.driver_amount or Decimal(0)) + Decimal(details["driver_amount"])
            if details.get("percentage") is not None:
                line.percentage = (line.percentage or Decimal(0)) + Decimal(details["percentage"])
    for line in groups.values():
        # The rows a split gives one team (one per member for by_team, per user for by_user) each
        # name every source record of the pool; a line counts them once. Attributed rows (by_user
        # without targets) carry their own records, whose sum stays within the pool's.
        if line.pool_records is not None:
            line.record_count = min(line.record_count, line.pool_records)
    # Cloud services (FOCUS) first, then metered API / AI usage, each by name.
    direct = sorted(
        (g for g in groups.values() if g.rule_id is None),
        key=lambda g: (g.quantity is not None, (g.service or OTHER_USAGE).lower(), g.unit),
    )
    shared = sorted((g for g in groups.values() if g.rule_id is not None), key=lambda g: g.rule_sort)
    return direct + shared


#: A price → its candidates: ``(category, provider, model, unit, currency) → [(team id or None, unit price)]``.
Prices = dict[tuple[str, str, str, str, str], list[tuple[int | None, Decimal]]]


def _unit_price(line: _Line, team_id: int, currency: str, prices: Prices) -> tuple[Decimal, str]:
    """The unit price of a line with a quantity, and its basis: ``"catalog"`` or ``"average"``.

    Each usage record's cost is ``quantize_metered(quantity × unit price)``, within half a quantum
    of the exact product. So when every record of the line was priced at one catalog price ``p``
    (the team's override or the global price), ``|amount − quantity × p|`` is at most half a
    quantum per record, and that is the test. Otherwise the price changed in the period or some
    records carried their own cost: the line shows the average, ``amount / quantity``.
    """
    item = line.item or {}
    key = (item.get("resource_type", ""), item.get("provider", ""), item.get("model", ""), line.unit, currency)
    candidates = prices.get(key, [])
    # The team's overrides first: they win over the global price when both are valid.
    candidates = [p for t, p in candidates if t == team_id] + [p for t, p in candidates if t is None]
    tolerance = METERED_QUANTUM * max(line.record_count, 1) / 2
    for price in candidates:
        if abs(line.amount_precise - line.quantity * price) <= tolerance:
            return quantize_metered(price), "catalog"
    return unit_price_of(line.amount_precise, line.quantity), "average"


def _line_rows(
    invoice: Invoice, lines: list[_Line], subtotal: Decimal, pools: dict[tuple[int, str], Decimal], prices: Prices,
) -> list[InvoiceLine]:
    """The unsaved ``InvoiceLine``s of ``invoice``: amounts rounded to sum exactly to ``subtotal``."""
    currency = invoice.currency
    rounded = round_preserving_sum([line.amount_precise for line in lines], minor_unit(currency), total=subtotal)
    result = []
    for position, (line, amount) in enumerate(zip(lines, rounded), start=1):
        precise = quantize_metered(line.amount_precise)
        quantity, unit, unit_price = Decimal(1), "", precise
        if line.rule_id is None:
            description = line.service or OTHER_USAGE
            details = {"kind": "direct", "allocation_rows": line.rows}
            if line.quantity is not None and line.quantity > 0 and line.unit:
                quantity, unit = line.quantity, line.unit
                unit_price, basis = _unit_price(line, invoice.team_id, currency, prices)
                details.update(line.item or {})
                details["unit_price_basis"] = basis
        else:
            description = f"Shared costs: {line.rule_name}"
            # The rule's whole pool as the engine recorded it; rows made without a driver record
            # fall back to what the rule handed out in the run.
            pool = quantize_metered(
                Decimal(line.pool_amount) if line.pool_amount is not None
                else pools.get((line.rule_id, currency), Decimal(0))
            )
            # The team's share of the pool, in percent at metered precision (the PDF shows one
            # decimal). A pool whose credits cancel its charges has no share.
            share = quantize_metered(line.amount_precise * 100 / pool) if pool else None
            details = {
                "kind": "allocation",
                "rule_type": line.rule_type,
                "pool_amount": str(pool),
                "share_percent": None if share is None else str(share),
                "source_records": line.pool_records if line.pool_records is not None else line.record_count,
                "allocation_rows": line.rows,
                "users": len(line.users),
            }
            if line.driver_amount is not None:
                details["driver_amount"] = str(quantize_metered(line.driver_amount))
            if line.percentage is not None:
                details["percentage"] = str(line.percentage)
        result.append(
            InvoiceLine(
                invoice=invoice, position=position, description=description[:500], service=line.service,
                rule_id=line.rule_id, rule_name=line.rule_name, rule_type=line.rule_type,
                quantity=quantity, unit=unit, unit_price=unit_price, amount_precise=precise, amount=amount,
                record_count=line.record_count, details=details,
            )
        )
    return result


def _delete_file_on_commit(invoice: Invoice) -> None:
    """Forget ``invoice``'s stored PDF (now stale) and delete the file once the transaction commits."""
    if not invoice.pdf:
        return
    storage, name = invoice.pdf.storage, invoice.pdf.name
    transaction.on_commit(lambda: storage.delete(name))
    invoice.pdf = ""
    invoice.pdf_sha256 = ""


def _save_draft(invoice: Invoice, *, owner: Team, subtotal: Decimal, currency: str) -> bool:
    """Set a draft's amounts and snapshots and save it, its old lines and stale PDF dropped; True if created.

    ``subtotal`` is in the currency's minor units; the tax is the team's rate applied to it,
    rounded once, half-up (:func:`invoice_tax_amount`). The team's name, cost center and billing
    address are snapshots, so the invoice stays readable when the team changes.
    """
    rate = invoice_tax_rate(team=owner)
    tax = invoice_tax_amount(subtotal=subtotal, rate=rate, currency=currency)
    invoice.currency = currency
    invoice.subtotal, invoice.tax_rate, invoice.tax_amount = subtotal, rate, tax
    invoice.total = subtotal + tax
    invoice.team_name, invoice.cost_center = owner.name, owner.cost_center
    invoice.billing_address = billing_settings_get(team=owner).billing_address
    created = invoice.pk is None
    if not created:
        _delete_file_on_commit(invoice)
    invoice.save()
    if not created:
        invoice.lines.all().delete()
    return created


def invoice_generate_for_run(*, run: AllocationRun, team: Team | None = None) -> InvoiceGenerationResult:
    """Create or refresh the draft chargeback invoices of a committed allocation run.

    Args:
        run: a saved, committed ``AllocationRun``; its period ``[period_start, period_end)``
            becomes the invoices' period.
        team: write (and cancel) only this team's invoices. The amounts are still rounded over all
            teams of the run, so the team gets exactly what a full generation would give it.

    Returns:
        The drafts written, a ``list[Invoice]`` ordered by team name (an
        :class:`InvoiceGenerationResult`, which also reports the drafts cancelled and the issued
        invoices skipped). One draft per team whose rounded total is not zero, in the run's
        currency (a run ties out in one currency; a team has one live invoice per period); amounts
        in the currency's minor units, ``total = subtotal + tax_amount``, lines summing exactly to
        ``subtotal``. PDFs are not rendered here: the stale PDF of a refreshed draft is removed
        (the file is deleted after commit) and the caller renders new ones with
        ``invoices.pdf.invoice_store_pdf`` after this transaction commits.

    Refresh: a live draft of the same team, period and kind is updated in place (its
    lines replaced), never duplicated (the partial unique constraint backs this). A team whose
    rounded total is zero, or that the run no longer bills, gets no invoice, and a draft it had is
    set to ``cancelled``. Issued invoices (any status but ``draft`` and ``cancelled``) are never
    changed: they are reported in ``result.skipped``.

    Raises:
        InvoiceGenerationError: the run is unsaved, a dry run, or not committed, or it bills one
            team in two currencies.
    """
    if run.pk is None or run.dry_run:
        raise InvoiceGenerationError("a dry run writes nothing and cannot be invoiced")
    result = InvoiceGenerationResult()
    with transaction.atomic():
        # Lock the run so two generations of it serialise, and re-read its status under the lock.
        run = AllocationRun.objects.select_for_update().get(pk=run.pk)
        if run.status != AllocationRun.Status.COMMITTED:
            raise InvoiceGenerationError(
                f"allocation run #{run.pk} for {run.period_start:%Y-%m} is {run.status}, not committed; "
                "only the period's committed run is invoiced"
            )
        allocations = list(AllocatedCost.objects.filter(run=run).select_related("rule").order_by("pk"))
        amounts = team_amounts(allocations)
        pools = _pool_totals(allocations)
        categories = {a.details["resource_type"] for a in allocations
                      if a.quantity is not None and (a.details or {}).get("resource_type")}
        prices = (
            prices_of_period(period=BillingPeriod(run.period_start, run.period_end), categories=categories)
            if categories else {}
        )
        currencies: dict[int, set[str]] = defaultdict(set)
        for amount in amounts:
            currencies[amount.team_id].add(amount.currency)
        mixed = sorted(team_id for team_id, codes in currencies.items() if len(codes) > 1)
        if mixed:
            # A run ties out in one currency (the engine refuses mixed periods), and a team has one
            # live invoice per period: two currencies for one team cannot be invoiced.
            raise InvoiceGenerationError(
                f"allocation run #{run.pk} bills team(s) {mixed} in more than one currency"
            )
        if team is not None:
            amounts = [a for a in amounts if a.team_id == team.pk]
        billed = {a.team_id: a for a in amounts if a.amount != 0}
        rows_by_team: dict[int, list[AllocatedCost]] = defaultdict(list)
        for allocation in allocations:
            if allocation.team_id in billed:
                rows_by_team[allocation.team_id].append(allocation)

        live = Invoice.objects.filter(
            kind=Invoice.Kind.CHARGEBACK, user__isnull=True, period_start=run.period_start,
            period_end=run.period_end,
        ).exclude(status=Invoice.Status.CANCELLED)
        if team is not None:
            live = live.filter(team=team)
        # Lock the period's live invoices in primary-key order (no deadlock between two runs).
        existing = {i.team_id: i for i in live.select_for_update(of=("self",)).order_by("pk")}
        teams = Team.objects.select_related("billing_settings").in_bulk(list(billed))

        for team_id, invoice in existing.items():
            if team_id in billed:
                continue
            if invoice.status == Invoice.Status.DRAFT:
                invoice.status = Invoice.Status.CANCELLED
                _delete_file_on_commit(invoice)
                invoice.save(update_fields=["status", "pdf", "pdf_sha256", "updated_at"])
                result.cancelled.append(invoice)
            else:
                result.skipped.append(invoice)

        for team_id in sorted(billed, key=lambda pk: (teams[pk].name.lower(), pk)):
            amount, owner = billed[team_id], teams[team_id]
            invoice = existing.get(team_id)
            if invoice is not None and invoice.status != Invoice.Status.DRAFT:
                result.skipped.append(invoice)
                continue
            if invoice is None:
                invoice = Invoice(
                    team=owner, kind=Invoice.Kind.CHARGEBACK, status=Invoice.Status.DRAFT,
                    period_start=run.period_start, period_end=run.period_end,
                )
            invoice.allocation_run = run
            if _save_draft(invoice, owner=owner, subtotal=amount.amount, currency=amount.currency):
                result.created.add(invoice.pk)
            InvoiceLine.objects.bulk_create(
                _line_rows(invoice, _group_lines(rows_by_team[team_id]), amount.amount, pools, prices)
            )
            result.append(invoice)
    if result.skipped:
        logger.warning(
            "billing run %s: %d issued invoice(s) left unchanged: %s", run.pk, len(result.skipped),
            ", ".join(i.display_number for i in result.skipped),
        )
    return result


# --- one invoice for a team or a user and a period (issue 4, section 1) -----------------------------

#: Ledger entry types that a prepaid statement bills: usage drawn from the credit, less refunds.
_STATEMENT_USAGE = ("charge", "hold_capture")
#: Information lines of a prepaid statement: (entry type, description), in the order printed.
_STATEMENT_INFO = (
    ("top_up", "Top-ups"),
    ("grant", "Grants"),
    ("expiry", "Expired grants"),
    ("adjustment", "Adjustments"),
    ("invoice_settlement", "Invoice settlements"),
)


def _period_bounds(period: BillingPeriod) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of the period as aware datetimes at local midnight (``settings.TIME_ZONE``)."""
    return (
        timezone.make_aware(dt.datetime.combine(period.start, dt.time.min)),
        timezone.make_aware(dt.datetime.combine(period.end, dt.time.min)),
    )


def _live_invoice(*, team: Team, user, period: BillingPeriod, kind: str) -> Invoice | None:
    """The live (not cancelled) invoice of (team, user, period, kind), locked, or ``None``."""
    return (
        Invoice.objects.select_for_update(of=("self",))
        .filter(team=team, user=user, period_start=period.start, period_end=period.end, kind=kind)
        .exclude(status=Invoice.Status.CANCELLED).order_by("pk").first()
    )


def _statement_line(invoice: Invoice, position: int, description: str, section: str, *, figure: Decimal | None = None,
                    entries: int = 0, precise: Decimal = Decimal(0), amount: Decimal = Decimal(0),
                    feature_key: str = "") -> InvoiceLine:
    details = {"kind": "statement", "section": section, "entries": entries}
    if figure is not None:
        details["figure"] = str(quantize_metered(figure))
    if feature_key:
        details["feature_key"] = feature_key
    return InvoiceLine(
        invoice=invoice, position=position, description=description[:500], quantity=Decimal(1),
        unit_price=quantize_metered(precise), amount_precise=quantize_metered(precise), amount=amount,
        record_count=entries, details=details,
    )


def _statement_lines(invoice: Invoice, *, wallets: list, period: BillingPeriod, currency: str) -> tuple[list[InvoiceLine], Decimal]:
    """The lines of a prepaid statement and its subtotal (minor units); see :func:`invoice_generate`."""
    start, end = _period_bounds(period)
    wallet_ids = [w.pk for w in wallets]
    opening = Decimal(0)
    for wallet_id in wallet_ids:
        last = (
            LedgerEntry.objects.filter(wallet_id=wallet_id, created_at__lt=start)
            .order_by("-pk").values_list("balance_after", flat=True).first()
        )
        opening += last or Decimal(0)
    entries = list(
        LedgerEntry.objects.filter(wallet_id__in=wallet_ids, created_at__gte=start, created_at__lt=end)
        .exclude(amount=0).order_by("pk").values_list("entry_type", "amount", "feature_key")
    )
    if not entries and opening == 0:
        raise InvoiceGenerationError(
            f"nothing to bill: no ledger activity and no balance in {period} for {invoice.team.name}"
            + (f" / {invoice.user}" if invoice.user_id else "")
        )
    by_type: dict[str, list[Decimal]] = defaultdict(list)
    usage: dict[str, list[Decimal]] = defaultdict(list)
    for entry_type, amount, feature_key in entries:
        if entry_type in _STATEMENT_USAGE:
            usage[feature_key].append(-amount)  # a debit of the wallet is usage billed
        else:
            by_type[entry_type].append(amount)
    closing = opening + sum((amount for _, amount, _ in entries), Decimal(0))

    billed: list[tuple[str, str, Decimal, int]] = [
        (f"Usage: {key or OTHER_USAGE}", key, sum(amounts, Decimal(0)), len(amounts))
        for key, amounts in sorted(usage.items(), key=lambda kv: (kv[0] == "", kv[0].lower()))
    ]
    if by_type.get("refund"):
        billed.append(("Refunds", "", sum(by_type["refund"], Decimal(0)) * -1, len(by_type["refund"])))
    precise_total = sum((b[2] for b in billed), Decimal(0))
    subtotal = to_minor_units(precise_total, currency)
    rounded = round_preserving_sum([b[2] for b in billed], minor_unit(currency), total=subtotal)

    def fmt(value: Decimal) -> str:
        return format_amount(value, currency)

    lines = [_statement_line(invoice, 1, f"Opening balance on {period.start:%Y-%m-%d}: {fmt(opening)}", "opening_balance",
                             figure=opening)]
    for entry_type, label in _STATEMENT_INFO[:2]:
        amounts = by_type.get(entry_type, [])
        total = sum(amounts, Decimal(0))
        lines.append(_statement_line(invoice, len(lines) + 1, f"{label}: {fmt(total)}", entry_type, figure=total,
                                     entries=len(amounts)))
    for (description, key, precise, count), amount in zip(billed, rounded):
        section = "refund" if description == "Refunds" else "usage"
        lines.append(_statement_line(invoice, len(lines) + 1, description, section, entries=count, precise=precise,
                                     amount=amount, feature_key=key))
    for entry_type, label in _STATEMENT_INFO[2:]:
        amounts = by_type.get(entry_type, [])
        if amounts:
            total = sum(amounts, Decimal(0))
            lines.append(_statement_line(invoice, len(lines) + 1, f"{label}: {fmt(total)}", entry_type, figure=total,
                                         entries=len(amounts)))
    last_day = period.end - dt.timedelta(days=1)
    lines.append(_statement_line(invoice, len(lines) + 1, f"Closing balance on {last_day:%Y-%m-%d}: {fmt(closing)}",
                                 "closing_balance", figure=closing))
    return lines, subtotal


def _chargeback_user_rows(run: AllocationRun, team: Team, user) -> tuple[Decimal, str, list[AllocatedCost], dict, Prices]:
    """One user's share of a team's chargeback: (amount in minor units, currency, rows, pools, prices).

    The team's amount is rounded with every team of the run (as the team invoice would be); it is
    then split over the team's users (rows without a user form one more group) by largest
    remainder, so the per-user invoices of a team sum exactly to its team invoice's subtotal.
    """
    allocations = list(AllocatedCost.objects.filter(run=run).select_related("rule").order_by("pk"))
    team_amount = next((a for a in team_amounts(allocations) if a.team_id == team.pk and a.amount != 0), None)
    rows = [a for a in allocations if a.team_id == team.pk]
    groups: dict[int | None, Decimal] = defaultdict(Decimal)
    for row in rows:
        groups[row.user_id] += row.amount
    if team_amount is None or user.pk not in groups:
        raise InvoiceGenerationError(
            f"nothing to bill: allocation run #{run.pk} gives {user} no cost in team {team.name}", param="user"
        )
    keys = sorted(groups, key=lambda k: (k is None, k or 0))
    rounded = dict(zip(keys, round_preserving_sum([groups[k] for k in keys], minor_unit(team_amount.currency),
                                                  total=team_amount.amount)))
    categories = {a.details["resource_type"] for a in rows
                  if a.quantity is not None and (a.details or {}).get("resource_type")}
    prices = prices_of_period(period=BillingPeriod(run.period_start, run.period_end), categories=categories) \
        if categories else {}
    return rounded[user.pk], team_amount.currency, [r for r in rows if r.user_id == user.pk], \
        _pool_totals(allocations), prices


def invoice_generate(
    *, team: Team, period: BillingPeriod, user=None, number: str | None = None, kind: str | None = None,
) -> Invoice:
    """Create or refresh the draft invoice of ``team`` (or of one ``user`` of it) for ``period``.

    Args:
        team: the team billed.
        period: a ``chargeback.periods.BillingPeriod`` (``[start, end)``, whole months).
        user: bill one member of the team only (a per-user invoice); ``None`` for the team.
        number: the caller's own invoice number, kept on the draft and used when it is issued
            (refused at once if another invoice has it).
        kind: ``"chargeback"`` or ``"prepaid_statement"``; by default a prepaid statement for a
            team on a prepaid billing model (``prepaid_team``/``prepaid_user``) that has a wallet in
            its currency, else a chargeback invoice.

    Kinds:
        * **chargeback**: from the period's committed allocation run: one line per service /
          resource type and per allocation rule, each a snapshot (description, quantity, unit, unit
          price, precise and rounded amount). A team invoice is exactly what the billing run writes
          (:func:`invoice_generate_for_run`). A user's invoice bills the run's rows of that user
          in the team: the team's rounded amount is split over its users by largest remainder, so
          a team's per-user invoices sum to its team invoice.
        * **prepaid_statement**: from the ledger of the team's wallets in its currency (a user's
          wallet for a per-user statement, billing model ``prepaid_user``). Lines: opening balance,
          top-ups, grants (information, amount 0, the figure in ``details["figure"]`` and the
          description), then the billed lines, usage by feature key (charges and hold captures)
          and refunds (negative), then expired grants, adjustments and settlements if any, and the
          closing balance (information). The subtotal is the credit used in the period: Σ usage −
          refunds, rounded once to minor units; closing = opening + every movement of the period.
          Entry times are judged in ``settings.TIME_ZONE`` (local midnight to local midnight).

    Amounts: lines in the currency's minor units, summing exactly to ``subtotal`` (largest
    remainder); ``tax_amount`` = the team's tax rate (billing settings, default 0 %) applied to the
    subtotal and rounded once, half-up; ``total = subtotal + tax_amount``. The due date is set at
    issue (``issue_date + payment_terms_days``).

    Refresh: the live draft of the same team, user, period and kind is updated in place (lines
    replaced, stale PDF dropped); never a second live invoice (partial unique constraints back this).

    Returns:
        The draft ``Invoice``.

    Raises:
        InvoiceGenerationError: nothing to bill (no cost for the team or user, no ledger activity);
            no committed allocation run for the period; the live invoice of the period is already
            issued (correct it with a credit note); per-user statement of a team-wallet team.
        DuplicateInvoiceNumber: ``number`` is used by another invoice.
        InvalidInvoiceRequest: a user outside the team, a malformed ``number``, an unknown ``kind``.
    """
    if number is not None:
        number = _clean_number(number)
    if kind is not None and kind not in Invoice.Kind.values:
        raise InvalidInvoiceRequest(f"{kind!r} is not an invoice kind ({', '.join(Invoice.Kind.values)})", param="kind")
    if user is not None and not TeamMembership.objects.filter(team=team, user=user).exists():
        raise InvalidInvoiceRequest(f"user {user} is not a member of team {team.name}", param="user")
    billing = billing_settings_get(team=team)
    prepaid_models = (BillingSettings.BillingModel.PREPAID_TEAM, BillingSettings.BillingModel.PREPAID_USER)
    wallets = Wallet.objects.filter(team=team, currency=team.currency, user=user) if user is not None \
        else Wallet.objects.filter(team=team, currency=team.currency)
    if kind is None:
        prepaid = billing.billing_model in prepaid_models and wallets.exists()
        kind = Invoice.Kind.PREPAID_STATEMENT if prepaid else Invoice.Kind.CHARGEBACK

    with transaction.atomic():
        # Two generations for one team serialise here, so they never race to create two drafts.
        Team.objects.select_for_update().filter(pk=team.pk).first()
        live = _live_invoice(team=team, user=user, period=period, kind=kind)
        if live is not None and live.status != Invoice.Status.DRAFT:
            raise InvoiceGenerationError(
                f"invoice {live.display_number} for {team.name} and {period} is already {live.status}; "
                "correct it with a credit note"
            )
        if number is not None and _number_taken(number, excluding=live.pk if live else None):
            raise DuplicateInvoiceNumber(f"invoice number {number} is already used by another invoice")

        if kind == Invoice.Kind.CHARGEBACK:
            run = allocation_committed_run(period=period)
            if run is None:
                raise InvoiceGenerationError(
                    f"no committed allocation run for {period}; run `manage.py billing_run --period {period}` first"
                )
            if user is None:
                result = invoice_generate_for_run(run=run, team=team)
                if not result:
                    raise InvoiceGenerationError(f"nothing to bill: allocation run #{run.pk} gives {team.name} "
                                                 f"no cost of a minor unit or more in {period}")
                invoice = result[0]
            else:
                AllocationRun.objects.select_for_update().filter(pk=run.pk).first()
                amount, currency, rows, pools, prices = _chargeback_user_rows(run, team, user)
                invoice = live or Invoice(team=team, user=user, kind=kind, status=Invoice.Status.DRAFT,
                                          period_start=period.start, period_end=period.end)
                invoice.allocation_run = run
                _save_draft(invoice, owner=team, subtotal=amount, currency=currency)
                InvoiceLine.objects.bulk_create(_line_rows(invoice, _group_lines(rows), amount, pools, prices))
        else:
            if user is not None and billing.billing_model != BillingSettings.BillingModel.PREPAID_USER:
                raise InvoiceGenerationError(
                    f"{team.name} pays from one team wallet ({billing.billing_model}); per-user statements need "
                    "the prepaid_user billing model", param="user",
                )
            wallet_list = list(wallets.order_by("pk"))
            if not wallet_list:
                raise InvoiceGenerationError(f"nothing to bill: {team.name} has no wallet in {team.currency}")
            invoice = live or Invoice(team=team, user=user, kind=kind, status=Invoice.Status.DRAFT,
                                      period_start=period.start, period_end=period.end)
            invoice.team = team
            lines, subtotal = _statement_lines(invoice, wallets=wallet_list, period=period, currency=team.currency)
            invoice.allocation_run = None
            _save_draft(invoice, owner=team, subtotal=subtotal, currency=team.currency)
            for line in lines:
                line.invoice = invoice
            InvoiceLine.objects.bulk_create(lines)

        if number is not None and invoice.number != number:
            invoice.number = number
            _save_numbered(invoice, ["number", "updated_at"])
    return invoice


def invoices_generate_per_user(*, team: Team, period: BillingPeriod, kind: str | None = None) -> list[Invoice]:
    """One draft per member of ``team`` who has something to bill in ``period`` (see :func:`invoice_generate`).

    Members with nothing to bill are left out. Returns the drafts by username.
    """
    invoices = []
    members = TeamMembership.objects.filter(team=team).select_related("user").order_by("user__username")
    for membership in members:
        try:
            invoices.append(invoice_generate(team=team, period=period, user=membership.user, kind=kind))
        except InvoiceGenerationError:
            continue
    return invoices


# --- lifecycle: issue, send, pay, overdue, cancel (issue 4, section 2) ------------------------------

#: What a status is called in an error message when a move is refused.
_NONE = "none"


def _lock_invoice(pk: int) -> Invoice:
    """Lock the invoice row (``SELECT … FOR UPDATE`` of the invoice only) and re-read it, team joined."""
    return Invoice.objects.select_for_update(of=("self",)).select_related("team").get(pk=pk)


def _allowed_text(current: str) -> str:
    allowed = [
        f"{to} (by a full credit note)" if (current, to) in Invoice.CREDIT_NOTE_ONLY else to
        for to in Invoice.TRANSITIONS.get(current, ())
    ]
    return ", ".join(allowed) or _NONE


def invoice_check_transition(*, invoice: Invoice, to_status: str, by_credit_note: bool = False) -> None:
    """Refuse a status move that ``Invoice.TRANSITIONS`` does not allow: the one place it is checked.

    Args:
        invoice: the invoice as read under its row lock.
        to_status: the requested status (a ``Invoice.Status`` value).
        by_credit_note: the move is made by issuing a full credit note; only then are the moves in
            ``Invoice.CREDIT_NOTE_ONLY`` (an issued invoice to ``cancelled``) allowed.

    Raises:
        InvalidTransition: the move is not allowed; the message names the invoice, its current
            status, the requested one and the allowed ones, e.g. "Invoice INV-20261122-0003 is
            paid; it cannot move to draft (allowed: none)".
        InvalidInvoiceRequest: ``to_status`` is no status at all (``param`` ``status``).
    """
    current = invoice.status
    if to_status not in Invoice.Status.values:
        raise InvalidInvoiceRequest(
            f"{to_status!r} is not an invoice status (statuses: {', '.join(Invoice.Status.values)})", param="status"
        )
    if to_status not in Invoice.TRANSITIONS.get(current, ()):
        raise InvalidTransition(
            f"Invoice {invoice.display_number} is {current}; it cannot move to {to_status} "
            f"(allowed: {_allowed_text(current)})",
            current=current, requested=to_status, param="status",
        )
    if (current, to_status) in Invoice.CREDIT_NOTE_ONLY and not by_credit_note:
        raise InvalidTransition(
            f"Invoice {invoice.display_number} is {current}; it cannot move to {to_status} except by issuing a "
            f"full credit note (allowed: {_allowed_text(current)})",
            current=current, requested=to_status, param="status",
        )


def _clean_number(number: object) -> str:
    if not isinstance(number, str) or not number.strip():
        raise InvalidInvoiceRequest("an invoice number must be non-empty text", param="invoice_number")
    number = number.strip()
    if len(number) > Invoice._meta.get_field("number").max_length:
        raise InvalidInvoiceRequest(
            f"invoice number {number[:20]!r}… is longer than {Invoice._meta.get_field('number').max_length} characters",
            param="invoice_number",
        )
    return number


def _number_taken(number: str, *, excluding: int | None = None) -> bool:
    return Invoice.objects.filter(number=number).exclude(pk=excluding).exists()


def _save_numbered(invoice: Invoice, fields: list[str]) -> None:
    """Save ``invoice``; a number another invoice holds (a race the unique constraint catches) is refused."""
    try:
        with transaction.atomic():
            invoice.save(update_fields=fields)
    except IntegrityError as exc:
        if _number_taken(invoice.number, excluding=invoice.pk):
            raise DuplicateInvoiceNumber(f"invoice number {invoice.number} is already used by another invoice") from exc
        raise


def invoice_issue(
    *, invoice: Invoice, issued_by=None, number: str | None = None, issue_date: dt.date | None = None,
) -> Invoice:
    """Issue a draft invoice (``draft`` → ``pending``): number it, date it, freeze it, store its PDF.

    Args:
        invoice: a draft ``Invoice`` (re-read under its row lock).
        issued_by: the user who issues it (kept in ``issued_by``), or ``None`` for the system.
        number: the caller's own invoice number (text, at most 64 characters); by default the number
            given at generation (``invoice_generate(number=…)``), else the next gap-free number of
            the issue date's year (``settings.BILLING_INVOICE_NUMBER_FORMAT``, default
            ``INV-YYYYMMDD-NNNN``, :mod:`invoices.numbering`).
        issue_date: the date printed on the invoice (default: today, local time zone); the due
            date is ``issue_date + payment_terms_days`` (the team's billing settings, default 30).

    Returns:
        The invoice as stored: ``status`` pending, ``number``, ``issue_date``, ``due_date``,
        ``issued_at``, ``issued_by``, and ``pdf`` / ``pdf_sha256`` of the PDF rendered once, in the
        same transaction (``invoices.pdf.invoice_store_pdf``). From now on its amounts and lines
        never change (model, queryset and, on PostgreSQL, a trigger refuse).

    Raises:
        InvalidTransition: the invoice is not a draft.
        DuplicateInvoiceNumber: ``number`` is used by another invoice (``param`` ``invoice_number``).
        InvalidInvoiceRequest: ``number`` is empty or too long.
        Nothing is written when any error is raised (the sequence number is given back).
    """
    if number is not None:
        number = _clean_number(number)
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.PENDING)
        if locked.total != locked.subtotal + locked.tax_amount:  # PostgreSQL CHECKs it; SQLite does not
            raise InvoiceImmutable(f"invoice {locked.display_number}: total is not subtotal + tax; regenerate it")
        billing = billing_settings_get(team=locked.team)
        issue_date = issue_date or timezone.localdate()
        number = number or locked.number
        if number:
            if _number_taken(number, excluding=locked.pk):
                raise DuplicateInvoiceNumber(f"invoice number {number} is already used by another invoice")
        else:
            number = document_number_next(
                kind=DocumentSequence.Kind.INVOICE, date=issue_date, is_taken=_number_taken
            )
        locked.number = number
        locked.status = Invoice.Status.PENDING
        locked.issue_date = issue_date
        locked.due_date = issue_date + dt.timedelta(days=billing.payment_terms_days)
        locked.issued_at = timezone.now()
        locked.issued_by = issued_by
        if not locked.billing_address:
            locked.billing_address = billing.billing_address
        # The draft's PDF (if any) is replaced: invoice_store_pdf deletes its file after commit.
        locked.pdf_sha256 = ""
        _save_numbered(locked, [
            "number", "status", "issue_date", "due_date", "issued_at", "issued_by", "billing_address",
            "pdf_sha256", "updated_at",
        ])
        issued = invoice_store_pdf(invoice=locked)
    return issued


def invoice_mark_sent(*, invoice: Invoice, by=None) -> Invoice:
    """Record that an issued invoice was sent to the team (``pending`` → ``sent``, ``sent_at`` now).

    Raises:
        InvalidTransition: the invoice is not ``pending``.
    """
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.SENT)
        locked.status, locked.sent_at = Invoice.Status.SENT, timezone.now()
        locked.save(update_fields=["status", "sent_at", "updated_at"])
    return locked


def invoice_mark_paid(*, invoice: Invoice, payment_reference: str, by=None, paid_at: dt.datetime | None = None) -> Invoice:
    """Record the payment of an issued invoice (``pending``/``sent``/``overdue`` → ``paid``).

    Args:
        payment_reference: the bank or transfer reference (text, at most 200 characters; may be
            empty), stored on the invoice.
        by: the user recording the payment; the author of the settlement entry.
        paid_at: when it was paid (aware datetime; default now).

    For a team on the ``postpaid`` billing model the payment also settles its team wallet: one
    ``invoice_settlement`` ledger entry crediting ``amount_due`` (``total − credited_total``, in
    the invoice's currency), idempotent by invoice (``wallets.services.wallet_settle_invoice``).
    Prepaid teams' invoices record the payment only (their credit was bought up front).

    Raises:
        InvalidTransition: the invoice is a draft, already paid or cancelled.
        InvalidInvoiceRequest: ``payment_reference`` is longer than 200 characters.
    """
    payment_reference = (payment_reference or "").strip()
    if len(payment_reference) > Invoice._meta.get_field("payment_reference").max_length:
        raise InvalidInvoiceRequest("payment_reference is longer than 200 characters", param="payment_reference")
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.PAID)
        due = locked.amount_due
        billing = billing_settings_get(team=locked.team)
        if billing.billing_model == BillingSettings.BillingModel.POSTPAID and due > 0:
            wallet_settle_invoice(invoice=locked, amount=due, payment_reference=payment_reference, created_by=by)
        locked.status = Invoice.Status.PAID
        locked.paid_at = paid_at or timezone.now()
        locked.payment_reference = payment_reference
        locked.save(update_fields=["status", "paid_at", "payment_reference", "updated_at"])
    return locked


def invoice_mark_overdue(*, invoice: Invoice, by=None) -> Invoice:
    """Move one issued invoice to ``overdue`` (``pending``/``sent`` → ``overdue``), whatever its due date.

    Raises:
        InvalidTransition: the invoice is not ``pending`` or ``sent``.
    """
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.OVERDUE)
        locked.status = Invoice.Status.OVERDUE
        locked.save(update_fields=["status", "updated_at"])
    return locked


def invoices_mark_overdue(*, today: dt.date | None = None) -> list[Invoice]:
    """Move every ``pending`` or ``sent`` invoice whose due date is before ``today`` to ``overdue``.

    ``today`` defaults to the local date; an invoice is overdue the day after its due date (the
    due date itself is the last day to pay). Idempotent: a second run the same day finds nothing.
    Rows are locked in primary-key order and re-checked under the lock, so a payment recorded at
    the same moment wins or waits, never gets overwritten.

    Returns:
        The invoices moved, by pk.
    """
    today = today or timezone.localdate()
    moved = []
    with transaction.atomic():
        candidates = (
            Invoice.objects.select_for_update(of=("self",))
            .filter(status__in=[Invoice.Status.PENDING, Invoice.Status.SENT], due_date__lt=today)
            .order_by("pk")
        )
        for invoice in candidates:
            invoice_check_transition(invoice=invoice, to_status=Invoice.Status.OVERDUE)
            invoice.status = Invoice.Status.OVERDUE
            invoice.save(update_fields=["status", "updated_at"])
            moved.append(invoice)
    return moved


def invoice_cancel(*, invoice: Invoice, by=None) -> Invoice:
    """Cancel a draft (``draft`` → ``cancelled``); its stored draft PDF is deleted after commit.

    Issued invoices are cancelled only by a full credit note (:func:`credit_note_issue`).

    Raises:
        InvalidTransition: the invoice is issued (the message says a full credit note cancels it),
            or already cancelled.
    """
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        invoice_check_transition(invoice=locked, to_status=Invoice.Status.CANCELLED)
        locked.status = Invoice.Status.CANCELLED
        _delete_file_on_commit(locked)
        locked.save(update_fields=["status", "pdf", "pdf_sha256", "updated_at"])
    return locked


def invoice_transition(*, invoice: Invoice, to_status: str, by=None, payment_reference: str = "") -> Invoice:
    """The one entry point for "change the status" (API ``POST invoices/{id}/status/``, admin actions).

    Dispatches ``pending`` → :func:`invoice_issue`, ``sent`` → :func:`invoice_mark_sent`, ``paid``
    → :func:`invoice_mark_paid` (with ``payment_reference``), ``overdue`` →
    :func:`invoice_mark_overdue`, ``cancelled`` → :func:`invoice_cancel` (drafts only).

    Raises:
        InvalidTransition: ``Invoice.TRANSITIONS`` does not allow the move (``draft`` is never a
            target; an issued invoice is cancelled only by a full credit note).
        InvalidInvoiceRequest: ``to_status`` is not a status.
        and whatever the dispatched service raises.
    """
    if to_status not in Invoice.Status.values:
        invoice_check_transition(invoice=invoice, to_status=to_status)  # raises InvalidInvoiceRequest
    if to_status == Invoice.Status.PENDING:
        return invoice_issue(invoice=invoice, issued_by=by)
    if to_status == Invoice.Status.SENT:
        return invoice_mark_sent(invoice=invoice, by=by)
    if to_status == Invoice.Status.PAID:
        return invoice_mark_paid(invoice=invoice, payment_reference=payment_reference, by=by)
    if to_status == Invoice.Status.OVERDUE:
        return invoice_mark_overdue(invoice=invoice, by=by)
    if to_status == Invoice.Status.CANCELLED:
        return invoice_cancel(invoice=invoice, by=by)
    # draft: no status moves back to draft; let the one check word the refusal.
    with transaction.atomic():
        invoice_check_transition(invoice=_lock_invoice(invoice.pk), to_status=to_status)
    raise AssertionError("unreachable: nothing moves to draft")  # pragma: no cover


# --- credit notes (issue 4, section 3) ---------------------------------------------------------------


def _minor_amount(value: object, currency: str, param: str) -> Decimal:
    """A positive Decimal in whole minor units of ``currency``; floats and sub-cent digits refused."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise InvalidInvoiceRequest(f"{param} must be a decimal amount (a string or Decimal, never a float)", param=param)
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise InvalidInvoiceRequest(f"{param} {value!r} is not a number", param=param) from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidInvoiceRequest(f"{param} must be a positive amount, got {value}", param=param)
    if amount != to_minor_units(amount, currency):
        raise InvalidInvoiceRequest(
            f"{param} {value} has more decimals than {currency}'s minor unit ({minor_unit(currency)})", param=param
        )
    return to_minor_units(amount, currency)


def _credited_per_line(invoice: Invoice) -> dict[int, Decimal]:
    credited: dict[int, Decimal] = defaultdict(Decimal)
    rows = CreditNoteLine.objects.filter(credit_note__invoice=invoice, invoice_line__isnull=False)
    for line_id, amount in rows.values_list("invoice_line_id", "amount"):
        credited[line_id] += amount
    return credited


def _credit_split(invoice: Invoice, left_subtotal: Decimal, left_tax: Decimal, amount: Decimal) -> tuple[Decimal, Decimal]:
    """Split a tax-inclusive ``amount`` into (subtotal, tax) at the invoice's rate, within what is left of each."""
    if amount == left_subtotal + left_tax:
        return left_subtotal, left_tax
    subtotal = to_minor_units(amount * 100 / (100 + invoice.tax_rate), invoice.currency)
    subtotal = min(subtotal, left_subtotal)
    tax = amount - subtotal
    if tax > left_tax:
        tax = left_tax
        subtotal = amount - tax
    return subtotal, tax


def credit_note_issue(
    *, invoice: Invoice, reason: str, amount: Decimal | None = None, lines: Sequence[Mapping[str, Any]] | None = None,
    description: str = "", issued_by=None,
) -> CreditNote:
    """Issue a credit note on an issued invoice: a full credit (cancels it) or a partial one (reduces what is due).

    Args:
        invoice: an issued invoice awaiting payment (``pending``, ``sent`` or ``overdue``).
        reason: a ``CreditNote.Reason`` value: ``duplicated_charge``, ``order_change``,
            ``allocation_correction`` or ``other``.
        amount: a partial credit, tax-inclusive, a positive Decimal in whole minor units of the
            invoice's currency; split into subtotal and tax at the invoice's tax rate.
        lines: a partial credit of invoice lines, ``[{"invoice_line": <InvoiceLine pk>, "amount":
            Decimal}]``, each amount before tax (like the invoice's lines), positive, whole minor
            units, at most what is left of that line; tax is added at the invoice's rate, rounded once.
            With neither ``amount`` nor ``lines`` the credit note credits everything left
            (``total − credited_total``), line by line, and cancels the invoice.
        description: free text printed on the credit note.
        issued_by: the user who issues it.

    Returns:
        The ``CreditNote``, numbered gap-free per year (``settings.BILLING_CREDIT_NOTE_NUMBER_FORMAT``,
        default ``CN-YYYYMMDD-NNNN``), with its lines. The invoice's ``credited_total`` grows by its
        total, checked under the invoice's row lock never to exceed the invoice's ``total``; when
        it reaches it, the invoice becomes ``cancelled``. Its PDF is rendered after commit by
        ``invoices.pdf.credit_note_store_pdf`` when that exists.

    Raises:
        InvalidTransition: the invoice is a draft, paid or cancelled.
        CreditNoteLimitExceeded: the credit exceeds what is left on the invoice (``param``
            ``amount``) or on a line (``param`` ``lines``).
        InvalidInvoiceRequest: both ``amount`` and ``lines``, an unknown reason, a line of another
            invoice, a malformed amount.
    """
    if reason not in CreditNote.Reason.values:
        raise InvalidInvoiceRequest(
            f"{reason!r} is not a credit note reason (reasons: {', '.join(CreditNote.Reason.values)})", param="reason"
        )
    if amount is not None and lines is not None:
        raise InvalidInvoiceRequest("give either amount or lines, not both", param="amount")
    if lines is not None and not lines:
        raise InvalidInvoiceRequest("lines is empty: give at least one line, or neither amount nor lines", param="lines")
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        if locked.status not in Invoice.OPEN_STATUSES:
            raise InvalidTransition(
                f"Invoice {locked.display_number} is {locked.status}; only an issued invoice awaiting payment "
                f"({', '.join(Invoice.OPEN_STATUSES)}) can be credited",
                current=locked.status, requested="credited", param="invoice",
            )
        currency = locked.currency

        def _fmt(value: Decimal) -> str:
            return format_amount(value, currency)

        # Summed in Decimal (SQLite would sum floats); an invoice has a handful of credit notes.
        credited = list(CreditNote.objects.filter(invoice=locked).values_list("subtotal", "tax_amount"))
        left_total = locked.total - locked.credited_total
        left_subtotal = locked.subtotal - sum((s for s, _ in credited), Decimal(0))
        left_tax = locked.tax_amount - sum((t for _, t in credited), Decimal(0))
        invoice_lines = list(locked.lines.order_by("position"))
        per_line = _credited_per_line(locked)
        label = CreditNote.Reason(reason).label
        note_lines: list[tuple[InvoiceLine | None, str, Decimal]] = []

        if left_total <= 0:
            raise CreditNoteLimitExceeded(
                f"invoice {locked.display_number} has nothing left to credit "
                f"(total {_fmt(locked.total)}, credited {_fmt(locked.credited_total)})", param="amount",
            )
        if amount is None and lines is None:
            subtotal, tax = left_subtotal, left_tax
            remaining = [(line, line.amount - per_line[line.pk]) for line in invoice_lines]
            if sum((r for _, r in remaining), Decimal(0)) == subtotal:
                parts = [r for _, r in remaining]
            else:
                # Credits not tied to lines were given before: spread what is left over the lines.
                weights = [max(r, Decimal(0)) for _, r in remaining]
                parts = split(subtotal, weights, minor_unit(currency)) if sum(weights) > 0 else []
            note_lines = [(line, line.description, part) for (line, _), part in zip(remaining, parts) if part != 0]
            if not note_lines and subtotal:
                note_lines = [(None, description or f"Credit: {label}", subtotal)]
        elif amount is not None:
            total = _minor_amount(amount, currency, "amount")
            if total > left_total:
                raise CreditNoteLimitExceeded(
                    f"credit of {_fmt(total)} exceeds what is left on invoice {locked.display_number}: "
                    f"{_fmt(left_total)} (total {_fmt(locked.total)}, credited {_fmt(locked.credited_total)})",
                    param="amount",
                )
            subtotal, tax = _credit_split(locked, left_subtotal, left_tax, total)
            note_lines = [(None, description or f"Credit: {label}", subtotal)]
        else:
            by_pk = {line.pk: line for line in invoice_lines}
            seen: set[int] = set()
            for index, item in enumerate(lines):
                if not isinstance(item, Mapping) or "invoice_line" not in item or "amount" not in item:
                    raise InvalidInvoiceRequest(
                        f"lines[{index}] must be {{'invoice_line': id, 'amount': Decimal}}", param="lines"
                    )
                line_id = item["invoice_line"]
                line_id = getattr(line_id, "pk", line_id)
                line = by_pk.get(line_id) if isinstance(line_id, int) else None
                if line is None:
                    raise InvalidInvoiceRequest(
                        f"lines[{index}]: invoice line {line_id!r} is not a line of invoice {locked.display_number}",
                        param="lines",
                    )
                if line.pk in seen:
                    raise InvalidInvoiceRequest(f"lines[{index}]: invoice line {line.pk} is given twice", param="lines")
                seen.add(line.pk)
                part = _minor_amount(item["amount"], currency, f"lines[{index}].amount")
                left_on_line = line.amount - per_line[line.pk]
                if part > left_on_line:
                    raise CreditNoteLimitExceeded(
                        f"lines[{index}]: credit of {_fmt(part)} exceeds what is left on line {line.position} "
                        f"({line.description}): {_fmt(max(left_on_line, Decimal(0)))}",
                        param="lines",
                    )
                note_lines.append((line, line.description, part))
            subtotal = sum((part for _, _, part in note_lines), Decimal(0))
            if subtotal == left_subtotal:
                tax = left_tax
            else:
                tax = min(invoice_tax_amount(subtotal=subtotal, rate=locked.tax_rate, currency=currency), left_tax)
            if subtotal + tax > left_total:
                raise CreditNoteLimitExceeded(
                    f"credit of {_fmt(subtotal + tax)} (with tax) exceeds what is left on invoice "
                    f"{locked.display_number}: {_fmt(left_total)}", param="lines",
                )

        total = subtotal + tax
        fully_credited = locked.credited_total + total == locked.total
        if fully_credited:
            invoice_check_transition(invoice=locked, to_status=Invoice.Status.CANCELLED, by_credit_note=True)
        issue_date = timezone.localdate()
        note = CreditNote(
            invoice=locked, reason=reason, description=description, currency=currency, subtotal=subtotal,
            tax_amount=tax, total=total, issue_date=issue_date, issued_by=issued_by,
            number=document_number_next(
                kind=DocumentSequence.Kind.CREDIT_NOTE, date=issue_date,
                is_taken=lambda n: CreditNote.objects.filter(number=n).exists(),
            ),
        )
        note.save(force_insert=True)
        CreditNoteLine.objects.bulk_create([
            CreditNoteLine(credit_note=note, position=position, description=text[:500], invoice_line=line, amount=part)
            for position, (line, text, part) in enumerate(note_lines, start=1)
        ])
        locked.credited_total += total
        fields = ["credited_total", "updated_at"]
        if fully_credited:
            locked.status = Invoice.Status.CANCELLED
            fields.append("status")
        locked.save(update_fields=fields)
        invoice.status, invoice.credited_total = locked.status, locked.credited_total

        store = getattr(invoice_pdf, "credit_note_store_pdf", None)
        if store is not None:
            # After commit, in its own transaction: a credit note is valid without its PDF, and a
            # rendering failure is logged (robust) rather than undoing the credit.
            transaction.on_commit(lambda: store(credit_note=note), robust=True)
    return note
