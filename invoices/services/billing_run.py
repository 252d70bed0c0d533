"""The month-end billing run: allocate a period, write each team's draft invoice, store the PDFs.

:func:`billing_run_execute` is the one service behind every door: the ``billing_run`` command,
the admin's "Run billing for a period…" and the API's ``POST /api/v1/billing-runs/``. Each door
only reads its input and shows the :class:`BillingRunResult`, so one team billed through any of
them gets the same allocation run and the same invoice (``docs/billing-run.md``).

Figures: invoice amounts in the currency's minor units (largest remainder over every team of the
run, per currency, ``invoices.services.generation.team_amounts``); allocation totals and the
tie-out lines at metered precision (12 decimal places), written exactly, so ``allocated +
unallocated = total`` to the last digit, **one line per currency** (a run keeps one pool per
currency and never adds two currencies together).

One team's data never stops another team's billing: every currency is allocated and invoiced
(one invoice per team and currency, or converted into the team's currency when its billing
settings say so). A team whose conversion has no exchange rate is the one left out: every other
team is billed, and the result lists the teams not billed and why (``BillingRunResult.refused``,
outcome ``partly_billed``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from procrastinate.exceptions import AlreadyEnqueued

from billing_site.idempotency import idempotency_claim
from billing_site.models import IdempotencyRecord
from billing_site.money import format_amount, format_metered, to_minor_units
from chargeback.models import AllocationCurrencyTotal, AllocationRun
from chargeback.periods import BillingPeriod
from chargeback.selectors import allocation_currency_totals
from chargeback.services.allocation import allocation_run_create, allocation_run_execute
from jobs.progress import job_defer
from teams.models import Team
from webhooks.services import event_record

from ..errors import BillingRunBusy
from ..models import Invoice
from .generation import InvoicePlan, invoice_generate_for_run, invoice_plans, team_amounts
from .pdf_storage import PDF_ORPHAN_GRACE, invoice_pdf_store, pdf_orphans_sweep

#: The idempotency scope of billing runs committed by background jobs (key: the job's).
BILLING_RUN_IDEMPOTENCY_SCOPE = "jobs:billing_run"


@dataclass(frozen=True)
class BillingRunRow:
    """One team's line of a billing run's summary.

    ``amount`` is the invoice total (a real run; tax included) or the amount that would be
    invoiced (a dry run), in the currency's minor units; ``precise`` the team's metered cost and
    ``team`` the team itself (dry run only). ``state`` says what happened: ``new``, ``refreshed``, ``issued: not changed``,
    ``cancelled`` (nothing left to bill), or for a dry run ``would be invoiced`` / ``rounds to zero``.
    """

    team_id: int
    team_name: str
    currency: str
    amount: Decimal | None
    state: str
    precise: Decimal | None = None
    record_count: int = 0
    invoice: Invoice | None = None
    team: Team | None = None


@dataclass
class BillingRunResult:
    """What a billing run did (or, for a dry run, would do).

    Attributes:
        period: the billing period ``[start, end)``.
        dry_run: nothing was written.
        run: the committed ``AllocationRun``, or the dry run's unsaved one (with ``run.preview``).
        teams: the teams asked for (empty: every team).
        amounts: each chosen team's ``InvoicePlan`` (team, invoice currency, parts converted or
            not; rounded with every team of the run); dry run only.
        team_by_id: the teams of ``amounts``, by pk; dry run only.
        invoices: the drafts written (new or refreshed), by team name, their PDFs stored when asked.
        created: pks of the drafts created by this run.
        cancelled: drafts cancelled because their team has nothing left to bill.
        skipped: issued invoices left unchanged (they need a credit note if the run bills otherwise).
        warnings: the allocation's warnings (pools a rule could not split, usage voided since the
            period's last committed run), then one per skipped invoice.
        problems: broken invariants (the drafts do not sum to the allocated cost rounded); empty normally.

    ``refused`` lists the teams not billed, and why (a conversion without an exchange rate; for
    runs made before pools were per currency, ``run.refused``); with any, ``outcome`` is
    ``partly_billed``.
    """

    period: BillingPeriod
    dry_run: bool
    run: AllocationRun
    teams: list[Team] = field(default_factory=list)
    amounts: list[InvoicePlan] = field(default_factory=list)
    team_by_id: dict[int, Team] = field(default_factory=dict)
    invoices: list[Invoice] = field(default_factory=list)
    created: set[int] = field(default_factory=set)
    cancelled: list[Invoice] = field(default_factory=list)
    skipped: list[Invoice] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[dict]:
        """The teams not billed, and why: ``[{"team_id", "team", "currencies", "records", "costs", "message"}]``.

        A team invoiced in its own currency whose other currency has no exchange rate on the
        period's last day (the message names the pair and the date; ``currencies`` is ``[from,
        to]``): none of its invoices is written. The run keeps the list (``AllocationRun.refused``,
        shown under "Not billed" on its admin page). Empty when every team could be billed. A run
        asked for some teams lists only those of them.
        """
        chosen = {team.pk for team in self.teams}
        return [entry for entry in self.run.refused or () if not chosen or entry.get("team_id") in chosen]

    @property
    def outcome(self) -> str:
        """``billed`` (every team's usage), or ``partly_billed`` (some teams' usage left out: ``refused``)."""
        return "partly_billed" if self.refused else "billed"

    @property
    def tie_out(self) -> str:
        """``allocated X of Y, unallocated Z``, one line per currency: each pool written exactly."""
        return billing_run_tie_out(self.run)

    @property
    def pools(self) -> list[AllocationCurrencyTotal]:
        """The run's pools, one per currency (``chargeback.selectors.allocation_currency_totals``)."""
        return allocation_currency_totals(self.run)

    def converted(self) -> list[dict]:
        """The amounts converted into another currency, one per (invoice, source currency):
        ``{"team", "from", "to", "amount", "converted", "rate", "rate_date", "source", "derivation"}``
        (amounts in minor units of ``from`` and ``to``). A dry run's come from its plans."""
        found = []
        if self.dry_run:
            for plan in self.amounts:
                for part in plan.parts:
                    if part.rate is not None and part.source.amount:
                        found.append({"team": self.team_by_id[plan.team_id].name, "from": part.source.currency,
                                      "to": plan.currency, "amount": part.source.amount, "converted": part.converted,
                                      **_rate_fields(part.rate.as_details())})
            return found
        for invoice in self.invoices:
            by_source: dict[str, list] = {}
            for line in invoice.lines.all():
                fx = (line.details or {}).get("fx")
                if fx:
                    entry = by_source.setdefault(fx["from"], [Decimal(0), Decimal(0), fx])
                    entry[0] += Decimal(fx["original_amount"])
                    entry[1] += line.amount
            for code, (amount, converted, fx) in sorted(by_source.items()):
                found.append({"team": invoice.team_name, "from": code, "to": invoice.currency, "amount": amount,
                              "converted": converted, **_rate_fields(fx)})
        return found

    def invoiced_by_source_currency(self) -> dict[str, Decimal]:
        """``{currency: Σ}`` of what the run's invoices bill from each currency's pool, in its own
        minor units (a converted line counts in the currency it was converted from). Without tax."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        if self.dry_run:
            for plan in self.amounts:
                for part in plan.parts:
                    totals[part.source.currency] += part.source.amount
            return dict(sorted(totals.items()))
        for invoice in self.live_invoices:
            for line in invoice.lines.all():
                fx = (line.details or {}).get("fx")
                if fx:
                    totals[fx["from"]] += Decimal(fx["original_amount"])
                else:
                    totals[invoice.currency] += line.amount
        return dict(sorted(totals.items()))

    @property
    def live_invoices(self) -> list[Invoice]:
        """The period's live invoices of the chosen teams: the drafts written, then the issued ones left."""
        return self.invoices + self.skipped

    @property
    def billed(self) -> int:
        """How many invoices the run writes (a dry run: would write): amounts of a minor unit or more."""
        return sum(1 for a in self.amounts if a.amount) if self.dry_run else len(self.invoices)

    @property
    def nothing_to_bill(self) -> bool:
        """No team's cost comes to a minor unit: no invoice was (or would be) written or left standing."""
        return not self.billed if self.dry_run else not self.invoices and not self.skipped

    def totals(self) -> dict[str, Decimal]:
        """``{currency: total}`` invoiced (tax included) or, for a dry run, that would be invoiced."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        if self.dry_run:
            for plan in self.amounts:
                totals[plan.currency] += plan.amount
        else:
            for invoice in self.live_invoices:
                totals[invoice.currency] += invoice.total
        return dict(sorted(totals.items()))

    def rows(self) -> list[BillingRunRow]:
        """One row per team: a dry run's by team name; a real run's drafts, then skipped, then cancelled."""
        if self.dry_run:
            return [
                BillingRunRow(
                    team_id=a.team_id, team_name=self.team_by_id[a.team_id].name, currency=a.currency,
                    amount=a.amount, precise=a.precise, record_count=a.record_count, team=self.team_by_id[a.team_id],
                    state="would be invoiced" if a.amount else "rounds to zero",
                )
                for a in sorted(self.amounts, key=lambda a: (self.team_by_id[a.team_id].name.lower(), a.team_id,
                                                              a.currency))
            ]
        rows = [
            BillingRunRow(team_id=i.team_id, team_name=i.team_name, currency=i.currency, amount=i.total,
                          state="new" if i.pk in self.created else "refreshed", invoice=i)
            for i in self.invoices
        ]
        rows += [BillingRunRow(team_id=i.team_id, team_name=i.team_name, currency=i.currency, amount=i.total,
                               state="issued: not changed", invoice=i) for i in self.skipped]
        rows += [BillingRunRow(team_id=i.team_id, team_name=i.team_name, currency=i.currency, amount=None,
                               state="cancelled", invoice=i) for i in self.cancelled]
        return rows


def billing_run_tie_out(run: AllocationRun) -> str:
    """``allocated X of Y, unallocated Z`` for each currency of ``run``, one line per currency (by
    code), each figure written exactly in its currency: ``allocated 12.76 USD of 15.76 USD,
    unallocated 3.00 USD``. Figures of two currencies are never added."""
    return "\n".join(
        f"allocated {format_metered(pool.allocated_cost, pool.currency)} of "
        f"{format_metered(pool.total_cost, pool.currency)}, "
        f"unallocated {format_metered(pool.unallocated_cost, pool.currency)}"
        for pool in allocation_currency_totals(run)
    )


def _rate_fields(fx: dict) -> dict:
    return {key: fx.get(key) for key in ("rate", "rate_date", "source", "derivation")}


def billing_run_converted_line(entry: dict) -> str:
    """One conversion as the command and the admin print it:
    ``Data: 120.00 EUR → 130.51 USD at 1.0876 (ECB, 2024-09-30, direct)``."""
    return (f"{entry['team']}: {format_amount(entry['amount'], entry['from'])} → "
            f"{format_amount(entry['converted'], entry['to'])} at {entry['rate']} {entry['to']}/{entry['from']} "
            f"({entry['source']}, {entry['rate_date']}, {entry['derivation']})")


def billing_run_execute(
    *,
    period: BillingPeriod,
    teams: Iterable[Team] | None = None,
    render_pdfs: bool = True,
    dry_run: bool = False,
    created_by=None,
    progress: Callable[[list[Invoice]], Iterable[Invoice]] | None = None,
    idempotency_key: str | None = None,
) -> BillingRunResult:
    """Bill ``period``: allocate it, write the chosen teams' draft invoices, store their PDFs.

    Args:
        period: the calendar month billed, ``[start, end)``; usage belongs to it by
            ``billing_period_start`` (FOCUS ``BillingPeriodStart``).
        teams: write (and cancel) only these teams' invoices; ``None`` or empty: every team. The
            whole period is allocated whatever ``teams`` says, because shares (by usage…) and the
            rounding of one team depend on every team: a team billed alone gets exactly what a
            run of every team gives it. With exactly one team the run records it (``run.team``).
        render_pdfs: store each written draft's PDF (``invoice_pdf_store``), after the run commits;
            then delete orphan PDFs older than ``PDF_ORPHAN_GRACE`` (``pdf_orphans_sweep``), such as
            those of an earlier run killed while rendering.
        dry_run: allocate in memory and report what would be invoiced; nothing is written.
        created_by: the user running it (stored on the allocation run).
        progress: wraps the list of drafts while their PDFs render (the command's progress bar).
        idempotency_key: commit once per key (a background job passes its job's key): a second
            call with the key, such as the retry of a job killed after the commit, writes nothing
            and returns the run the first call committed with its drafts (a key is kept 24 hours,
            ``billing_site.idempotency``).

    Returns:
        A :class:`BillingRunResult`: the run, the chosen teams' invoice plans (dry run), the drafts
        written (one per team and currency, or one converted per team), those cancelled and the
        issued invoices left unchanged, warnings, the tie-out lines (one per currency), the
        conversions made (``converted()``), and the teams not billed (``refused``: a conversion
        without an exchange rate; the other teams are billed; ``outcome`` says
        ``partly_billed``). A refused team's drafts of the period, if any, are cancelled like any
        team the run no longer bills.

    Raises:
        NothingToAllocate: the period has no usage.
        AllocationError (and its subclasses ``RuleConfigurationError``, ``StaleAllocationRun``):
            the allocation failed; nothing is written.
        InvoiceGenerationError: the run cannot be invoiced; nothing is written.

    The allocation and the drafts are written in one ``transaction.atomic(durable=True)``: the run
    is committed (superseding the period's previous one) only with its invoices. PDFs are rendered
    after that commit, each in its own transaction, so a rendering failure never undoes the run.
    """
    chosen = sorted({team.pk: team for team in teams or ()}.values(), key=lambda t: t.pk)
    chosen_ids = {team.pk for team in chosen}
    single = chosen[0] if len(chosen) == 1 else None
    if dry_run:
        # The whole period, whatever the teams: the rounding of one team depends on all teams.
        run = allocation_run_create(period=period, dry_run=True, created_by=created_by)
        amounts = [a for a in team_amounts(run.preview) if not chosen_ids or a.team_id in chosen_ids]
        team_by_id = Team.objects.select_related("billing_settings").in_bulk([a.team_id for a in amounts])
        plans, run.refused = invoice_plans(amounts, teams=team_by_id, period=period)
        result = BillingRunResult(period=period, dry_run=True, run=run, teams=chosen, amounts=plans,
                                  team_by_id=team_by_id)
        result.warnings = _run_warnings(run)
        return result

    with transaction.atomic(durable=True):
        replayed = False
        if idempotency_key is not None:
            record, replayed = idempotency_claim(
                scope=BILLING_RUN_IDEMPOTENCY_SCOPE, key=idempotency_key, operation="billing_run",
                params={"period": period.label, "teams": [team.pk for team in chosen]},
            )
        if replayed:
            run = AllocationRun.objects.get(pk=record.result_id)
            result = _replayed_result(period=period, run=run, teams=chosen)
        else:
            run = allocation_run_execute(period=period, team=single, created_by=created_by)
            generated = invoice_generate_for_run(run=run, teams=chosen)
            if generated.refused:
                # The run records whom it did not bill, and why (its admin page lists them).
                run.refused = generated.refused
                AllocationRun.objects.filter(pk=run.pk).update(refused=run.refused)
            if idempotency_key is not None:
                IdempotencyRecord.objects.filter(pk=record.pk).update(result_type="allocation_run",
                                                                      result_id=str(run.pk))
            result = BillingRunResult(
                period=period, dry_run=False, run=run, teams=chosen, invoices=list(generated),
                created=set(generated.created), cancelled=list(generated.cancelled), skipped=list(generated.skipped),
            )
            event_record("billing_run.committed", result, team=single)
    if render_pdfs and result.invoices:
        drafts = progress(result.invoices) if progress is not None else result.invoices
        result.invoices = [invoice_pdf_store(invoice=invoice) for invoice in drafts]
        # A run killed while rendering left files that no row names; the rerun removes those past
        # the grace period (younger ones may belong to a transaction still running elsewhere).
        pdf_orphans_sweep(older_than=PDF_ORPHAN_GRACE)
    result.warnings = _run_warnings(run) + [
        f"{invoice.display_number} ({invoice.team_name}) was issued before this run and was not changed; "
        "correct it with a credit note if this run bills the team differently"
        for invoice in result.skipped
    ]
    if not chosen and not result.skipped and not result.refused:
        # Every minor unit allocated is on some invoice, currency by currency: what the drafts bill
        # from each pool (converted lines counted in their own currency) is its allocated cost rounded.
        invoiced = result.invoiced_by_source_currency()
        for pool in result.pools:
            expected = to_minor_units(pool.allocated_cost, pool.currency)
            got = invoiced.get(pool.currency, Decimal(0))
            if got != expected:
                result.problems.append(f"the invoices bill {got} {pool.currency} of the {pool.currency} pool, "
                                       f"not its allocated cost rounded ({expected} {pool.currency})")
    return result


def _replayed_result(*, period: BillingPeriod, run: AllocationRun, teams: list[Team]) -> BillingRunResult:
    """The result of a run committed by an earlier call with the same idempotency key, read back."""
    invoices = Invoice.objects.filter(allocation_run=run).select_related("team").order_by("team_name", "pk")
    if teams:
        invoices = invoices.filter(team__in=teams)
    drafts, skipped, cancelled = [], [], []
    for invoice in invoices:
        if invoice.status == Invoice.Status.DRAFT:
            drafts.append(invoice)
        elif invoice.status == Invoice.Status.CANCELLED:
            cancelled.append(invoice)
        else:
            skipped.append(invoice)
    return BillingRunResult(period=period, dry_run=False, run=run, teams=teams, invoices=drafts,
                            cancelled=cancelled, skipped=skipped)


def billing_run_lock_name(period: BillingPeriod) -> str:
    """The job lock of ``period``'s billing runs: one runs at a time, the next waits for it."""
    return f"billing-run:{period.label}"


def billing_run_request(*, period: BillingPeriod, teams: Iterable[Team] = (), render_pdfs: bool = True,
                        created_by=None, previewed: dict | None = None):
    """Queue a billing run of ``period`` as a background job (``invoices.tasks.billing_run_commit``).

    Args:
        period, teams, render_pdfs, created_by: as :func:`billing_run_execute`.
        previewed: ``{"currency", "total" (str, metered precision), "records"}`` of the dry run the
            user saw; the job commits only if the period's usage is still that.

    Returns:
        The job's ``jobs.models.JobProgress`` (its admin page follows the job).

    Raises:
        BillingRunBusy: a billing run of ``period`` is already waiting to start. One that is
            running does not refuse the request: the new job waits for it (the period's job lock).
    """
    chosen = sorted({team.pk for team in teams or ()})
    lock = billing_run_lock_name(period)
    try:
        with transaction.atomic(durable=True):
            return job_defer(
                "invoices.tasks.billing_run_commit", title=f"Billing run {period.label}", created_by=created_by, lock=lock,
                queueing_lock=lock, period=period.label, team_ids=chosen, render_pdfs=render_pdfs,
                created_by_id=getattr(created_by, "pk", None), previewed=previewed,
            )
    except AlreadyEnqueued:
        raise BillingRunBusy(
            f"A billing run of {period.label} is already waiting to start; follow it on the Jobs page, "
            "or request again once it has started."
        ) from None


def _run_warnings(run: AllocationRun) -> list[str]:
    return [warning.get("message", str(warning)) if isinstance(warning, dict) else str(warning)
            for warning in run.warnings or []]
