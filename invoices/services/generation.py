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

Currencies: an allocation run keeps one pool per currency, and step 1 rounds each currency on its
own. A team with costs in several currencies gets **one invoice per currency** by default (as
Stripe invoices one currency at a time). With ``BillingSettings.invoice_currency = team_currency``
it gets one invoice in its own currency instead: each other currency's rounded amount is
converted once (``money.convert``) at the rate of the period's last day
(``invoices.selectors.exchange_rate_find``), and that converted amount is spread over the
currency's lines by largest remainder; every converted line records the rate, its date, source and
derivation (``details["fx"]``), which the line's text and the PDF appendix print. A missing rate
refuses that team (:func:`invoice_plans`), never half of it. A per-user chargeback invoice is one per
currency too (:func:`invoice_generate` with ``user``), never converted.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing_site.money import (
    METERED_QUANTUM,
    convert,
    convert_metered,
    format_amount,
    minor_unit,
    quantize_metered,
    round_preserving_sum,
    to_minor_units,
    unit_price_of,
)
from chargeback.models import AllocatedCost, AllocationRun
from chargeback.periods import BillingPeriod
from chargeback.selectors import allocation_committed_run, prices_of_period
from teams.models import BillingSettings, Team, TeamMembership
from teams.selectors import billing_settings_get
from wallets.models import LedgerEntry, Wallet

from ..errors import DuplicateInvoiceNumber, InvalidInvoiceRequest, InvoiceGenerationError, MissingExchangeRate
from ..models import Invoice, InvoiceLine
from ..numbering import invoice_number_clean, invoice_number_taken, invoice_save_numbered
from ..selectors import FoundRate, exchange_rate_find
from .lifecycle import invoice_check_transition
from .pdf_storage import invoice_pdf_discard

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
            run now gives their team another amount or none; they need a credit note.
        refused: teams not invoiced because a rate their conversion needs is missing
            (:func:`invoice_plans`); their drafts of the period are cancelled, none half-written.
    """

    def __init__(self) -> None:
        super().__init__()
        self.created: set[int] = set()
        self.cancelled: list[Invoice] = []
        self.skipped: list[Invoice] = []
        self.refused: list[dict] = []


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


@dataclass(frozen=True)
class InvoicePart:
    """One currency's share of an invoice: the team's rounded amount in that currency (``source``)
    and, when it is converted, the rate and the converted amount (invoice currency, minor units,
    rounded once by ``money.convert``); unconverted, ``converted == source.amount``."""

    source: TeamAmount
    converted: Decimal
    rate: FoundRate | None = None

    @property
    def precise(self) -> Decimal:
        """The part's metered cost in the invoice's currency (converted at 12 dp; display only)."""
        return self.source.precise if self.rate is None else convert_metered(self.source.precise, self.rate.rate)


@dataclass(frozen=True)
class InvoicePlan:
    """One invoice a run writes: a team, the invoice's currency and its parts (its own currency
    first, then each converted currency by code). ``amount`` is the subtotal in minor units."""

    team_id: int
    currency: str
    parts: tuple[InvoicePart, ...]

    @property
    def amount(self) -> Decimal:
        return sum((part.converted for part in self.parts), Decimal(0))

    @property
    def precise(self) -> Decimal:
        return sum((part.precise for part in self.parts), Decimal(0))

    @property
    def record_count(self) -> int:
        return sum(part.source.record_count for part in self.parts)

    @property
    def billed(self) -> bool:
        """Whether the plan writes an invoice: some part comes to a minor unit or more."""
        return any(part.source.amount for part in self.parts)


def invoice_rate_date(period: BillingPeriod) -> dt.date:
    """The date whose exchange rate converts a period's costs: the period's last day (``end − 1``)."""
    return period.end - dt.timedelta(days=1)


def invoice_plans(
    amounts: Iterable[TeamAmount], *, teams: dict[int, Team], period: BillingPeriod,
) -> tuple[list[InvoicePlan], list[dict]]:
    """Which invoices a run's rounded team amounts become, per the teams' billing settings.

    Args:
        amounts: :func:`team_amounts` of the run (any subset of teams).
        teams: every team of ``amounts`` by pk (their ``billing_settings`` joined, or read here).
        period: the run's period; its last day dates the exchange rates (:func:`invoice_rate_date`).

    Returns:
        ``(plans, refused)``. ``plans``: one :class:`InvoicePlan` per invoice, by team name then
        currency: per currency by default (``BillingSettings.invoice_currency == "per_currency"``),
        or one in ``team.currency`` with the other currencies converted (``"team_currency"``).
        ``refused``: a team whose conversion has no rate is not planned at all, and gets an entry
        ``{"team_id", "team", "currencies": [from, to], "records", "costs", "message"}`` whose
        message names the currency pair and the date (``MissingExchangeRate``).
    """
    by_team: dict[int, list[TeamAmount]] = defaultdict(list)
    for amount in amounts:
        by_team[amount.team_id].append(amount)
    rate_day = invoice_rate_date(period)
    rates: dict[tuple[str, str], FoundRate | MissingExchangeRate] = {}
    plans: list[InvoicePlan] = []
    refused: list[dict] = []
    for team_id in sorted(by_team, key=lambda pk: (teams[pk].name.lower(), pk)):
        team, team_parts = teams[team_id], sorted(by_team[team_id], key=lambda a: a.currency)
        mode = billing_settings_get(team=team).invoice_currency
        if mode != BillingSettings.InvoiceCurrency.TEAM_CURRENCY:
            plans.extend(InvoicePlan(team_id, a.currency, (InvoicePart(a, a.amount),)) for a in team_parts)
            continue
        target = team.currency
        parts, missing = [], None
        for amount in sorted(team_parts, key=lambda a: (a.currency != target, a.currency)):
            if amount.currency == target:
                parts.append(InvoicePart(amount, amount.amount))
                continue
            key = (amount.currency, target)
            if key not in rates:
                try:
                    rates[key] = exchange_rate_find(from_currency=amount.currency, to_currency=target, on=rate_day)
                except MissingExchangeRate as exc:
                    rates[key] = exc
            found = rates[key]
            if isinstance(found, MissingExchangeRate):
                missing = (amount, found)
                break
            parts.append(InvoicePart(amount, convert(amount.amount, found.rate, target), found))
        if missing is not None:
            amount, exc = missing
            records = sum(a.record_count for a in team_parts)
            refused.append({
                "team_id": team_id, "team": team.name, "currencies": [amount.currency, target], "records": records,
                "costs": {a.currency: str(a.precise) for a in team_parts},
                "message": f"{team.name}: invoiced in {target}, but {exc.message} ({records} usage "
                           f"record{'s' if records != 1 else ''} not billed)",
            })
            continue
        plans.append(InvoicePlan(team_id, target, tuple(parts)))
    return plans, refused


def invoice_tax_rate(*, team: Team) -> Decimal:
    """The tax rate of ``team``'s invoices in percent (``Decimal("19")`` for 19 %).

    From the team's billing settings (``BillingSettings.tax_rate``, 0 to 100, default 0).
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
    currency: str | None = None,
) -> list[InvoiceLine]:
    """The unsaved ``InvoiceLine``s of ``invoice``: amounts rounded to sum exactly to ``subtotal``.

    ``currency``: the currency of ``lines`` and ``subtotal`` (by default the invoice's); lines of
    another currency are then converted by :func:`_converted_rows`.
    """
    currency = currency or invoice.currency
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


def _converted_rows(rows: list[InvoiceLine], part: InvoicePart, currency: str) -> list[InvoiceLine]:
    """``rows`` (in the part's own currency, summing to its rounded amount) converted into ``currency``.

    The part's amount was converted once (``part.converted``, ``money.convert``); it is spread over
    the lines by largest remainder on each line's exact ``amount × rate``, so the converted lines sum
    exactly to it, each within one minor unit of its exact value. Precise amounts and unit prices are
    converted at metered precision (display). Each line keeps its original figures and the rate in
    ``details["fx"]`` and says so in its description.
    """
    rate = part.rate
    exact = [row.amount * rate.rate for row in rows]
    amounts = round_preserving_sum(exact, minor_unit(currency), total=part.converted)
    source = part.source.currency
    for row, amount in zip(rows, amounts):
        fx = rate.as_details()
        fx.update(original_amount=str(row.amount), original_currency=source,
                  original_precise=str(row.amount_precise))
        row.details = {**row.details, "fx": fx}
        row.description = (f"{row.description} ({format_amount(row.amount, source)} at "
                           f"{fx['rate']} {currency}/{source})")[:500]
        row.amount = amount
        row.amount_precise = convert_metered(row.amount_precise, rate.rate)
        row.unit_price = convert_metered(row.unit_price, rate.rate)
    return rows


def _plan_rows(invoice: Invoice, plan: InvoicePlan, rows_by_key: dict, pools: dict, prices: Prices) -> list[InvoiceLine]:
    """Every line of ``plan``'s invoice: its own currency's lines, then each converted currency's."""
    result: list[InvoiceLine] = []
    for part in plan.parts:
        source = part.source
        rows = _line_rows(invoice, _group_lines(rows_by_key[(source.team_id, source.currency)]), source.amount,
                          pools, prices, currency=source.currency)
        result.extend(rows if part.rate is None else _converted_rows(rows, part, plan.currency))
    for position, row in enumerate(result, start=1):
        row.position = position
    return result


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
        invoice_pdf_discard(invoice)
    invoice.save()
    if not created:
        invoice.lines.all().delete()
    return created


def invoice_generate_for_run(
    *, run: AllocationRun, team: Team | None = None, teams: Iterable[Team] | None = None,
) -> InvoiceGenerationResult:
    """Create or refresh the draft chargeback invoices of a committed allocation run.

    Args:
        run: a saved, committed ``AllocationRun``; its period ``[period_start, period_end)``
            becomes the invoices' period.
        team: write (and cancel) only this team's invoices. The amounts are still rounded over all
            teams of the run, so the team gets exactly what a full generation would give it.
        teams: the same for several teams (``team`` and ``teams`` together name their union);
            neither, or an empty ``teams``: every team of the run.

    Returns:
        The drafts written, a ``list[Invoice]`` ordered by team name then currency (an
        :class:`InvoiceGenerationResult`, which also reports the drafts cancelled, the issued
        invoices skipped and the teams refused). One draft per :class:`InvoicePlan`
        (:func:`invoice_plans`): per team and currency whose rounded total is not zero, or one per
        team in its own currency with the others converted (``BillingSettings.invoice_currency``);
        amounts in the invoice currency's minor units, ``total = subtotal + tax_amount``, lines
        summing exactly to ``subtotal``. PDFs are not rendered here: the stale PDF of a refreshed draft is removed
        (the file is deleted after commit) and the caller renders new ones with
        ``invoices.services.pdf_storage.invoice_pdf_store`` after this transaction commits.

    Refresh: a live draft of the same team, period and kind is updated in place (its
    lines replaced), never duplicated (the partial unique constraint backs this). A team whose
    rounded total is zero, or that the run no longer bills, gets no invoice, and a draft it had is
    set to ``cancelled``. Issued invoices (any status but ``draft`` and ``cancelled``) are never
    changed: they are reported in ``result.skipped``.

    Raises:
        InvoiceGenerationError: the run is unsaved, a dry run, or not committed.
    """
    if run.pk is None or run.dry_run:
        raise InvoiceGenerationError("a dry run writes nothing and cannot be invoiced")
    chosen = {t.pk for t in teams or ()} | ({team.pk} if team is not None else set())
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
        if chosen:
            amounts = [a for a in amounts if a.team_id in chosen]
        team_by_id = Team.objects.select_related("billing_settings").in_bulk({a.team_id for a in amounts})
        plans, result.refused = invoice_plans(amounts, teams=team_by_id,
                                              period=BillingPeriod(run.period_start, run.period_end))
        billed = {(plan.team_id, plan.currency): plan for plan in plans if plan.billed}
        billed_teams = {team_id for team_id, _currency in billed}
        rows_by_key: dict[tuple[int, str], list[AllocatedCost]] = defaultdict(list)
        for allocation in allocations:
            if allocation.team_id in billed_teams:
                rows_by_key[(allocation.team_id, allocation.currency)].append(allocation)

        live = Invoice.objects.filter(
            kind=Invoice.Kind.CHARGEBACK, user__isnull=True, period_start=run.period_start,
            period_end=run.period_end,
        ).exclude(status=Invoice.Status.CANCELLED)
        if chosen:
            live = live.filter(team_id__in=chosen)
        # Lock the period's live invoices in primary-key order (no deadlock between two runs).
        existing = {(i.team_id, i.currency): i for i in live.select_for_update(of=("self",)).order_by("pk")}

        for key, invoice in existing.items():
            if key in billed:
                continue
            if invoice.status == Invoice.Status.DRAFT:
                invoice_check_transition(invoice=invoice, to_status=Invoice.Status.CANCELLED)
                invoice.status = Invoice.Status.CANCELLED
                invoice_pdf_discard(invoice)
                invoice.save(update_fields=["status", "pdf", "pdf_sha256", "updated_at"])
                result.cancelled.append(invoice)
            else:
                result.skipped.append(invoice)

        for key, plan in billed.items():
            owner = team_by_id[plan.team_id]
            invoice = existing.get(key)
            if invoice is not None and invoice.status != Invoice.Status.DRAFT:
                result.skipped.append(invoice)
                continue
            if invoice is None:
                invoice = Invoice(
                    team=owner, kind=Invoice.Kind.CHARGEBACK, status=Invoice.Status.DRAFT,
                    period_start=run.period_start, period_end=run.period_end,
                )
            invoice.allocation_run = run
            if _save_draft(invoice, owner=owner, subtotal=plan.amount, currency=plan.currency):
                result.created.add(invoice.pk)
            InvoiceLine.objects.bulk_create(_plan_rows(invoice, plan, rows_by_key, pools, prices))
            result.append(invoice)
    if result.skipped:
        logger.warning(
            "billing run %s: %d issued invoice(s) left unchanged: %s", run.pk, len(result.skipped),
            ", ".join(i.display_number for i in result.skipped),
        )
    return result


# --- one invoice for a team or a user and a period ------------------------------------------------

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


@dataclass(frozen=True)
class _UserPart:
    """One user's chargeback in one currency: the amount (minor units) and the run's rows behind it."""

    currency: str
    amount: Decimal
    rows: list[AllocatedCost]


def _chargeback_user_parts(run: AllocationRun, team: Team, user) -> tuple[list[_UserPart], dict, Prices]:
    """One user's share of a team's chargeback, one part per currency: (parts by currency code, pools, prices).

    In each currency, the team's amount is rounded with every team of the run (as the team's
    invoice in that currency is); it is then split over the team's users (rows without a user form
    one more group) by largest remainder, so in each currency the per-user invoices of a team sum
    exactly to its team invoice's subtotal in that currency. Nothing is added across currencies.
    """
    allocations = list(AllocatedCost.objects.filter(run=run).select_related("rule").order_by("pk"))
    team_amounts_by_currency = {a.currency: a for a in team_amounts(allocations)
                                if a.team_id == team.pk and a.amount != 0}
    parts = []
    for currency, team_amount in sorted(team_amounts_by_currency.items()):
        rows = [a for a in allocations if a.team_id == team.pk and a.currency == currency]
        groups: dict[int | None, Decimal] = defaultdict(Decimal)
        for row in rows:
            groups[row.user_id] += row.amount
        if user.pk not in groups:
            continue
        keys = sorted(groups, key=lambda k: (k is None, k or 0))
        rounded = dict(zip(keys, round_preserving_sum([groups[k] for k in keys], minor_unit(currency),
                                                      total=team_amount.amount)))
        parts.append(_UserPart(currency, rounded[user.pk], [r for r in rows if r.user_id == user.pk]))
    if not parts:
        raise InvoiceGenerationError(
            f"nothing to bill: allocation run #{run.pk} gives {user} no cost in team {team.name}", param="user"
        )
    categories = {a.details["resource_type"] for part in parts for a in part.rows
                  if a.quantity is not None and (a.details or {}).get("resource_type")}
    prices = prices_of_period(period=BillingPeriod(run.period_start, run.period_end), categories=categories) \
        if categories else {}
    return parts, _pool_totals(allocations), prices


def _chargeback_user_invoices(*, run: AllocationRun, team: Team, user, period: BillingPeriod) -> list[Invoice]:
    """Write ``user``'s chargeback drafts of ``period``, one per currency (by code), as the team's are.

    The user's live drafts in a currency no longer billed are cancelled; a live invoice already
    issued in a billed currency stops the generation (``InvoiceGenerationError``: correct it with a
    credit note), and the surrounding transaction writes nothing.
    """
    AllocationRun.objects.select_for_update().filter(pk=run.pk).first()
    parts, pools, prices = _chargeback_user_parts(run, team, user)
    live = {
        invoice.currency: invoice
        for invoice in Invoice.objects.select_for_update(of=("self",)).filter(
            team=team, user=user, period_start=period.start, period_end=period.end, kind=Invoice.Kind.CHARGEBACK,
        ).exclude(status=Invoice.Status.CANCELLED).order_by("pk")
    }
    billed = {part.currency for part in parts}
    for currency, invoice in sorted(live.items()):
        if currency not in billed and invoice.status == Invoice.Status.DRAFT:
            invoice_check_transition(invoice=invoice, to_status=Invoice.Status.CANCELLED)
            invoice.status = Invoice.Status.CANCELLED
            invoice_pdf_discard(invoice)
            invoice.save(update_fields=["status", "pdf", "pdf_sha256", "updated_at"])
    invoices = []
    for part in parts:
        invoice = live.get(part.currency)
        if invoice is not None and invoice.status != Invoice.Status.DRAFT:
            raise InvoiceGenerationError(
                f"invoice {invoice.display_number} for {team.name} / {user} and {period} is already "
                f"{invoice.status}; correct it with a credit note"
            )
        invoice = invoice or Invoice(team=team, user=user, kind=Invoice.Kind.CHARGEBACK,
                                     status=Invoice.Status.DRAFT, period_start=period.start, period_end=period.end)
        invoice.allocation_run = run
        _save_draft(invoice, owner=team, subtotal=part.amount, currency=part.currency)
        InvoiceLine.objects.bulk_create(_line_rows(invoice, _group_lines(part.rows), part.amount, pools, prices))
        invoices.append(invoice)
    return invoices


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
        number = invoice_number_clean(number)
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
        if number is not None and invoice_number_taken(number, excluding=live.pk if live else None):
            raise DuplicateInvoiceNumber(f"invoice number {number} is already used by another invoice")

        if kind == Invoice.Kind.CHARGEBACK:
            run = allocation_committed_run(period=period)
            if run is None:
                raise InvoiceGenerationError(
                    f"no committed allocation run for {period}; run `manage.py billing_run --period {period}` first"
                )
            if user is None:
                result = invoice_generate_for_run(run=run, team=team)
                if result.refused:
                    # The transaction rolls back: nothing of the team is half-invoiced.
                    raise MissingExchangeRate(result.refused[0]["message"], param="currency")
                if not result:
                    raise InvoiceGenerationError(f"nothing to bill: allocation run #{run.pk} gives {team.name} "
                                                 f"no cost of a minor unit or more in {period}")
                # Several currencies: the invoice in the team's own currency, else the first by code.
                invoice = next((i for i in result if i.currency == team.currency), result[0])
            else:
                # One invoice per currency, as the team's: the one in the team's currency is returned,
                # else the first by code (``invoices_generate_for_user`` returns them all).
                written = _chargeback_user_invoices(run=run, team=team, user=user, period=period)
                invoice = next((i for i in written if i.currency == team.currency), written[0])
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
            invoice_save_numbered(invoice, ["number", "updated_at"])
    return invoice


def invoices_generate_per_user(*, team: Team, period: BillingPeriod, kind: str | None = None) -> list[Invoice]:
    """The drafts of every member of ``team`` who has something to bill in ``period`` (see :func:`invoice_generate`).

    A member's chargeback is one draft per currency of their costs, as a team's is; members with
    nothing to bill are left out. Returns the drafts by username, then by currency code.
    """
    invoices = []
    members = TeamMembership.objects.filter(team=team).select_related("user").order_by("user__username")
    for membership in members:
        try:
            invoice = invoice_generate(team=team, period=period, user=membership.user, kind=kind)
        except InvoiceGenerationError:
            continue
        invoices.extend(
            Invoice.objects.filter(team=team, user=membership.user, period_start=period.start,
                                   period_end=period.end, kind=invoice.kind, status=Invoice.Status.DRAFT)
            .order_by("currency", "pk")
        )
    return invoices


