"""Draft invoices from a committed allocation run: grouping, rounding tie-out, refresh in place."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from billing_site.money import to_minor_units
from chargeback.models import AllocationRule, AllocationRun
from chargeback.periods import BillingPeriod
from chargeback.services.allocation import allocation_run_execute
from chargeback.services.usage import usage_record_create
from invoices.errors import InvoiceGenerationError
from invoices.models import Invoice
from invoices.services.generation import invoice_generate_for_run, invoice_tax_amount
from tests.factories import (
    AllocatedCostFactory,
    AllocationRuleFactory,
    AllocationRunFactory,
    InvoiceFactory,
    PriceFactory,
    TeamFactory,
    UsageRecordFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

D = Decimal


def committed_run(rows, *, supersede=True):
    """A committed September 2024 run whose ``AllocatedCost`` rows are ``rows``.

    ``rows`` are dicts of ``AllocatedCostFactory`` fields (team, amount, rule, service, user,
    record_count). The run's totals tie out (everything allocated). A committed run of the period
    before it is superseded first, as the allocation services do.
    """
    if supersede:
        AllocationRun.objects.filter(status=AllocationRun.Status.COMMITTED).update(
            status=AllocationRun.Status.SUPERSEDED
        )
    total = sum((r["amount"] for r in rows), D(0))
    run = AllocationRunFactory(total_cost=total, allocated_cost=total, unallocated_cost=D(0), record_count=len(rows))
    for row in rows:
        fields = {"service": "" if row.get("rule") else "Amazon Elastic Compute Cloud", **row}
        AllocatedCostFactory(run=run, **fields)
    return run


def lines_of(invoice):
    return list(invoice.lines.order_by("position"))


def test_invoice_generate_for_run_groups_lines_by_rule_and_service():
    # Given a team with direct EC2 costs of two users, direct S3 costs, and a rule's share split per user
    team = TeamFactory(name="Checkout", cost_center="CC-4711")
    ana, ben = UserFactory(), UserFactory()
    rule = AllocationRuleFactory(name="Untagged pool", rule_type=AllocationRule.RuleType.BY_USAGE)
    # (the engine's driver record: the whole pool and its records, on each row of the split)
    pool = {"rule_type": "by_usage", "pool_amount": "5.000000000000", "source_records": 7}
    run = committed_run([
        {"team": team, "user": ana, "service": "Amazon Elastic Compute Cloud", "amount": D("3.250000000000"), "record_count": 4},
        {"team": team, "user": ben, "service": "Amazon Elastic Compute Cloud", "amount": D("1.500000000000"), "record_count": 2},
        {"team": team, "service": "Amazon Simple Storage Service", "amount": D("0.750000000000"), "record_count": 3},
        {"team": team, "user": ana, "rule": rule, "amount": D("0.600000000000"), "record_count": 7, "details": pool},
        {"team": team, "user": ben, "rule": rule, "amount": D("0.400000000000"), "record_count": 7, "details": pool},
        {"team": TeamFactory(), "rule": rule, "amount": D("4.000000000000"), "record_count": 7, "details": pool},
    ])

    # When its invoice is generated
    invoices = invoice_generate_for_run(run=run, team=team)

    # Then one draft has one line per service and one for the rule, with its share of the pool
    assert len(invoices) == 1
    invoice = invoices[0]
    assert (invoice.status, invoice.team_name, invoice.cost_center) == ("draft", "Checkout", "CC-4711")
    assert invoice.allocation_run == run
    lines = lines_of(invoice)
    assert [(l.description, l.amount, l.record_count) for l in lines] == [
        ("Amazon Elastic Compute Cloud", D("4.75"), 6),
        ("Amazon Simple Storage Service", D("0.75"), 3),
        ("Shared costs: Untagged pool", D("1.00"), 7),
    ]
    shared = lines[2]
    assert (shared.rule_name, shared.rule_type, shared.quantity, shared.unit_price) == (
        "Untagged pool", "by_usage", D(1), D("1.000000000000")
    )
    assert D(shared.details["share_percent"]) == D("20")
    assert D(shared.details["pool_amount"]) == D("5")
    assert (invoice.subtotal, invoice.tax_amount, invoice.total) == (D("6.50"), D("0.00"), D("6.50"))


def record_api_usage(team, user, quantity, *, day=15, model="gpt-4"):
    """One LLM usage record of September 2024, priced from the catalog by the usage service."""
    return usage_record_create(
        team=team, user=user, resource_type="llm", provider="openai", model=model, unit="token",
        quantity=D(quantity), occurred_at=dt.datetime(2024, 9, day, 12, tzinfo=dt.UTC),
        idempotency_key=f"llm-{model}-{user.pk}-{quantity}-{day}",
    )


def test_invoice_line_of_api_usage_shows_its_quantity_unit_and_catalog_unit_price():
    # Given a team whose two members used gpt-4 (priced at 0.00003 USD a token) and an EC2 cost
    team = TeamFactory(name="ML Platform")
    ana, ben = UserFactory(), UserFactory()
    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=D("0.00003"))
    record_api_usage(team, ana, "1000000")
    record_api_usage(team, ana, "200000", day=20)
    record_api_usage(team, ben, "34567")
    UsageRecordFactory(team=team, cost=D("12.5"), quantity=D("720"), unit="Hours")
    run = allocation_run_execute(period=BillingPeriod.month("2024-09"))

    # When its invoice is generated
    (invoice,) = invoice_generate_for_run(run=run)

    # Then the AI usage is one line with the month's tokens, the unit and the catalog price per token
    lines = lines_of(invoice)
    assert [(l.description, l.quantity, l.unit, l.unit_price, l.amount) for l in lines] == [
        ("Amazon Elastic Compute Cloud", D(1), "", D("12.5"), D("12.50")),
        ("LLM · openai gpt-4", D("1234567"), "token", D("0.00003"), D("37.04")),
    ]
    usage_line = lines[1]
    assert (usage_line.amount_precise, usage_line.record_count) == (D("37.03701"), 3)
    assert usage_line.details["unit_price_basis"] == "catalog"
    assert invoice.subtotal == D("49.54")


def test_invoice_line_unit_price_is_the_average_when_the_price_changed_in_the_period():
    # Given gpt-4 at 0.00003 USD a token until 16 September, then 0.00006
    team, ana = TeamFactory(), UserFactory()
    PriceFactory(unit_price=D("0.00003"), valid_to=dt.datetime(2024, 9, 16, tzinfo=dt.UTC))
    PriceFactory(unit_price=D("0.00006"), valid_from=dt.datetime(2024, 9, 16, tzinfo=dt.UTC))
    record_api_usage(team, ana, "1000", day=10)
    record_api_usage(team, ana, "2000", day=20)
    run = allocation_run_execute(period=BillingPeriod.month("2024-09"))

    # When its invoice is generated
    (invoice,) = invoice_generate_for_run(run=run)

    # Then the line shows 3,000 tokens for 0.15 USD, at the average price of 0.00005 USD a token
    (line,) = lines_of(invoice)
    assert (line.quantity, line.unit, line.amount_precise, line.unit_price) == (
        D("3000"), "token", D("0.15"), D("0.00005")
    )
    assert line.details["unit_price_basis"] == "average"


def test_invoice_generate_for_run_rounds_teams_together_to_the_run_total():
    # Given three teams of 0.335 USD each: rounded alone they would make 1.02, the run is 1.005 → 1.01
    teams = [TeamFactory(name=f"T{i}") for i in range(3)]
    run = committed_run([{"team": t, "amount": D("0.335000000000")} for t in teams])

    # When the run is invoiced
    invoices = invoice_generate_for_run(run=run)

    # Then the invoices sum exactly to the allocated total rounded to cents, each within a cent
    assert sum(i.total for i in invoices) == to_minor_units(run.allocated_cost, "USD") == D("1.01")
    assert sorted(i.subtotal for i in invoices) == [D("0.33"), D("0.34"), D("0.34")]


def test_invoice_generate_for_run_rounds_lines_to_the_invoice_subtotal():
    # Given one team with three lines of 0.335 in services that round up alone, and a tiny credit
    team = TeamFactory()
    services = ["Amazon EC2", "Amazon S3", "Amazon RDS"]
    rows = [{"team": team, "service": s, "amount": D("0.335000000000")} for s in services]
    rows.append({"team": team, "service": "Credits", "amount": D("-0.004000000000")})
    run = committed_run(rows)

    # When it is invoiced
    (invoice,) = invoice_generate_for_run(run=run)

    # Then its lines sum exactly to its subtotal, the rounded Σ of the precise amounts
    lines = lines_of(invoice)
    assert invoice.subtotal == D("1.00")  # 1.001 rounded
    assert sum(l.amount for l in lines) == invoice.subtotal
    assert sum(l.amount_precise for l in lines) == D("1.001")
    assert all(abs(l.amount - l.amount_precise) < D("0.01") for l in lines)


def test_invoice_generate_for_run_refreshes_the_draft_in_place():
    # Given a team's draft from a first run
    team = TeamFactory()
    first = committed_run([{"team": team, "amount": D("10.000000000000")}])
    (draft,) = invoice_generate_for_run(run=first)

    # When the period is allocated again with other costs and invoiced again
    second = committed_run([
        {"team": team, "amount": D("7.000000000000")},
        {"team": team, "service": "Amazon S3", "amount": D("2.500000000000")},
    ])
    (refreshed,) = invoice_generate_for_run(run=second)

    # Then the same draft carries the new lines and totals; there is still one live invoice
    assert refreshed.pk == draft.pk
    draft.refresh_from_db()
    assert (draft.total, draft.allocation_run_id) == (D("9.50"), second.pk)
    assert [l.amount for l in lines_of(draft)] == [D("7.00"), D("2.50")]
    assert Invoice.objects.exclude(status="cancelled").filter(team=team).count() == 1


def test_invoice_generate_for_run_is_repeatable_without_doubling():
    # Given a run invoiced once
    team = TeamFactory()
    run = committed_run([{"team": team, "amount": D("4.200000000000")}])
    invoice_generate_for_run(run=run)

    # When it is invoiced again
    invoice_generate_for_run(run=run)

    # Then the team still has one invoice with the same lines
    (invoice,) = Invoice.objects.all()
    assert invoice.total == D("4.20")
    assert invoice.lines.count() == 1


def test_invoice_generate_for_run_skips_teams_that_round_to_zero_and_cancels_their_draft():
    # Given a team billed in a first run, whose costs round to nothing in the second
    big, small = TeamFactory(name="Big"), TeamFactory(name="Small")
    first = committed_run([{"team": big, "amount": D("1")}, {"team": small, "amount": D("2")}])
    invoice_generate_for_run(run=first)
    second = committed_run([
        {"team": big, "amount": D("1.004000000000")}, {"team": small, "amount": D("0.001000000000")},
    ])

    # When the second run is invoiced
    result = invoice_generate_for_run(run=second)

    # Then only the big team has a live invoice; the small team's draft is cancelled, not deleted
    assert [i.team_name for i in result] == ["Big"]
    assert result[0].total == D("1.01")
    stale = Invoice.objects.get(team=small)
    assert stale.status == Invoice.Status.CANCELLED
    assert [i.pk for i in result.cancelled] == [stale.pk]


def test_invoice_generate_for_run_gives_no_invoice_to_a_team_whose_credits_cancel_its_costs():
    # Given a team whose credit equals its charge
    team = TeamFactory()
    other = TeamFactory()
    run = committed_run([
        {"team": team, "amount": D("5")}, {"team": team, "service": "Credit", "amount": D("-5")},
        {"team": other, "amount": D("1")},
    ])

    # When the run is invoiced
    invoices = invoice_generate_for_run(run=run)

    # Then that team gets no invoice
    assert [i.team_id for i in invoices] == [other.pk]
    assert not Invoice.objects.filter(team=team).exists()


def test_invoice_generate_for_run_for_one_team_gives_the_amounts_of_a_full_run():
    # Given five teams whose rounding depends on each other
    teams = [TeamFactory(name=f"Team {i}") for i in range(5)]
    amounts = [D("0.125000000000"), D("0.125000000000"), D("0.125000000000"), D("0.115000000000"), D("2.005")]
    run = committed_run([{"team": t, "amount": a} for t, a in zip(teams, amounts)])

    # When each team is invoiced on its own, and then all teams together
    single = {t.pk: invoice_generate_for_run(run=run, team=t)[0].total for t in teams}
    full = {i.team_id: i.total for i in invoice_generate_for_run(run=run)}

    # Then every team gets the same amount both ways, and the amounts tie out to the run
    assert single == full
    assert sum(full.values()) == to_minor_units(run.allocated_cost, "USD")


def test_invoice_generate_for_run_for_one_team_leaves_other_teams_alone():
    # Given two teams with drafts
    a, b = TeamFactory(), TeamFactory()
    run = committed_run([{"team": a, "amount": D("1")}, {"team": b, "amount": D("2")}])
    invoice_generate_for_run(run=run)
    second = committed_run([{"team": a, "amount": D("3")}])

    # When only team a is invoiced from a run in which team b has nothing
    invoice_generate_for_run(run=second, team=a)

    # Then b's draft stays as it was
    assert Invoice.objects.get(team=b).status == Invoice.Status.DRAFT
    assert Invoice.objects.get(team=a).total == D("3.00")


def test_invoice_generate_for_run_never_touches_an_issued_invoice():
    # Given an issued invoice for the team and period
    team = TeamFactory()
    issued = InvoiceFactory(team=team, status=Invoice.Status.PENDING, number="INV-20241001-0001",
                            subtotal=D("8.00"), total=D("8.00"), issue_date=dt.date(2024, 10, 1),
                            due_date=dt.date(2024, 10, 31), issued_at=timezone.now())
    run = committed_run([{"team": team, "amount": D("9")}])

    # When the run is invoiced
    result = invoice_generate_for_run(run=run)

    # Then nothing is written for that team and the issued invoice is reported as skipped
    assert list(result) == []
    assert [i.pk for i in result.skipped] == [issued.pk]
    issued.refresh_from_db()
    assert (issued.status, issued.total, issued.lines.count()) == ("pending", D("8.0000"), 0)
    assert Invoice.objects.filter(team=team).count() == 1


def test_invoice_generate_for_run_refuses_a_run_that_is_not_committed():
    # Given a superseded run
    run = committed_run([{"team": TeamFactory(), "amount": D("1")}])
    AllocationRun.objects.filter(pk=run.pk).update(status=AllocationRun.Status.SUPERSEDED)

    # When / then it cannot be invoiced
    with pytest.raises(InvoiceGenerationError, match="superseded, not committed"):
        invoice_generate_for_run(run=run)
    assert not Invoice.objects.exists()


def test_invoice_tax_amount_rounds_the_tax_once_half_up():
    # Given / when a 19 % tax on 10.05 USD (1.9095) / then it is rounded once to 1.91
    assert invoice_tax_amount(subtotal=D("10.05"), rate=D("19"), currency="USD") == D("1.91")
    assert invoice_tax_amount(subtotal=D("10.05"), rate=D("0"), currency="USD") == D("0.00")


# --- invoice_generate: one team or one user, chargeback or prepaid statement ------------------------

SEPTEMBER = BillingPeriod.month("2024-09")


def test_invoice_generate_chargeback_refreshes_the_one_live_draft():
    # Given a team billed 9.00 by the period's committed run
    from invoices.services.generation import invoice_generate

    team = TeamFactory()
    committed_run([{"team": team, "amount": D("9")}])

    # When its invoice is generated twice
    first = invoice_generate(team=team, period=SEPTEMBER)
    again = invoice_generate(team=team, period=SEPTEMBER)

    # Then one chargeback draft of 9.00 exists, refreshed in place
    assert first.pk == again.pk
    assert (again.kind, again.status, again.total) == ("chargeback", "draft", D("9.00"))
    assert Invoice.objects.filter(team=team).count() == 1


def test_invoice_generate_applies_the_team_tax_rate_rounded_once():
    from invoices.services.generation import invoice_generate
    from teams.services import billing_settings_update

    team = TeamFactory()
    billing_settings_update(team=team, billing_model="postpaid", tax_rate=D("19"))
    committed_run([{"team": team, "amount": D("6.005")}, {"team": team, "amount": D("4.004")}])

    invoice = invoice_generate(team=team, period=SEPTEMBER)

    # 10.009 → subtotal 10.01; 10.01 × 19 % = 1.9019 → 1.90, rounded once on the subtotal
    assert (invoice.subtotal, invoice.tax_rate, invoice.tax_amount, invoice.total) == (
        D("10.01"), D("19"), D("1.90"), D("11.91"))


def test_invoice_generate_refuses_a_period_without_a_committed_run():
    from invoices.services.generation import invoice_generate

    with pytest.raises(InvoiceGenerationError, match="no committed allocation run for 2024-09") as refused:
        invoice_generate(team=TeamFactory(), period=SEPTEMBER, kind="chargeback")
    assert refused.value.code == "invoice_generation_error"


def test_invoice_generate_refuses_a_team_with_nothing_to_bill():
    from invoices.services.generation import invoice_generate

    committed_run([{"team": TeamFactory(), "amount": D("5")}])
    with pytest.raises(InvoiceGenerationError, match="nothing to bill"):
        invoice_generate(team=TeamFactory(), period=SEPTEMBER)


def test_invoice_generate_never_replaces_an_issued_invoice():
    from invoices.services.generation import invoice_generate
    from invoices.services.lifecycle import invoice_issue

    team = TeamFactory()
    committed_run([{"team": team, "amount": D("9")}])
    issued = invoice_issue(invoice=invoice_generate(team=team, period=SEPTEMBER), issue_date=dt.date(2024, 10, 2))

    with pytest.raises(InvoiceGenerationError, match=f"{issued.number} .* is already pending; correct it with a credit note"):
        invoice_generate(team=team, period=SEPTEMBER)
    assert Invoice.objects.filter(team=team).count() == 1


def test_invoice_generate_keeps_the_callers_number_for_the_issue():
    from invoices.errors import DuplicateInvoiceNumber
    from invoices.services.generation import invoice_generate
    from invoices.services.lifecycle import invoice_issue

    team, other = TeamFactory(), TeamFactory()
    committed_run([{"team": team, "amount": D("9")}, {"team": other, "amount": D("1")}])

    draft = invoice_generate(team=team, period=SEPTEMBER, number="PO-2024-77")
    assert draft.display_number == f"DRAFT-{draft.pk}"  # not issued yet
    with pytest.raises(DuplicateInvoiceNumber):
        invoice_generate(team=other, period=SEPTEMBER, number="PO-2024-77")

    assert invoice_issue(invoice=draft).number == "PO-2024-77"


def test_invoice_generate_per_user_bills_each_users_rows_and_ties_out_to_the_team():
    # Given a team whose run rows belong to two members and to nobody in particular
    from invoices.services.generation import invoice_generate, invoices_generate_per_user
    from tests.factories import TeamMembershipFactory

    team = TeamFactory()
    ana = TeamMembershipFactory(team=team, user=UserFactory(username="ana")).user
    ben = TeamMembershipFactory(team=team, user=UserFactory(username="ben")).user
    TeamMembershipFactory(team=team, user=UserFactory(username="cyd"))  # nothing to bill
    committed_run([
        {"team": team, "user": ana, "amount": D("1.005")},
        {"team": team, "user": ben, "amount": D("1.005")},
        {"team": team, "amount": D("1.000")},
        {"team": TeamFactory(), "user": UserFactory(), "amount": D("7")},
    ])

    # When per-user invoices are generated
    invoices = invoices_generate_per_user(team=team, period=SEPTEMBER)

    # Then ana and ben get one invoice each (cyd none) with their own rows, and with the unassigned
    # share the amounts sum exactly to the team's rounded amount (3.01)
    assert [i.user for i in invoices] == [ana, ben]
    assert [i.subtotal for i in invoices] == [D("1.01"), D("1.00")]
    team_invoice = invoice_generate(team=team, period=SEPTEMBER)
    assert team_invoice.subtotal == D("3.01")
    assert all(sum(li.amount for li in i.lines.all()) == i.subtotal for i in invoices)
    # And generating ana's again refreshes hers
    assert invoice_generate(team=team, period=SEPTEMBER, user=ana).pk == invoices[0].pk


def test_per_user_invoices_are_one_per_currency_and_each_ties_out_to_that_currencys_team_invoice():
    # Given a USD team whose members have costs in USD and in EUR, and a cost of nobody in particular
    from invoices.services.generation import invoice_generate, invoices_generate_per_user
    from tests.factories import TeamMembershipFactory

    team = TeamFactory(currency="USD")
    ana = TeamMembershipFactory(team=team, user=UserFactory(username="ana")).user
    ben = TeamMembershipFactory(team=team, user=UserFactory(username="ben")).user
    committed_run([
        {"team": team, "user": ana, "amount": D("2.004"), "currency": "USD"},
        {"team": team, "amount": D("0.5"), "currency": "USD"},
        {"team": team, "user": ana, "amount": D("3.335"), "currency": "EUR"},
        {"team": team, "user": ben, "amount": D("1.000"), "currency": "EUR"},
        {"team": TeamFactory(), "amount": D("7"), "currency": "USD"},
    ])

    # When per-user invoices are generated
    invoices = invoices_generate_per_user(team=team, period=SEPTEMBER)

    # Then ana gets two invoices, one per currency, and ben one in EUR; nothing is added across
    # currencies (ana's 2.00 USD and 3.34 EUR never make one invoice of 5.34)
    assert [(i.user, i.currency, i.subtotal) for i in invoices] == [
        (ana, "EUR", D("3.34")), (ana, "USD", D("2.00")), (ben, "EUR", D("1.00")),
    ]
    for invoice in invoices:
        lines = invoice.lines.all()
        assert sum(li.amount for li in lines) == invoice.subtotal
    ana_eur = invoices[0]
    assert sum(li.amount_precise for li in ana_eur.lines.all()) == D("3.335")
    # And in each currency the members' invoices (plus the share of nobody) sum exactly to the
    # team's invoice in that currency: EUR 3.34 + 1.00 = 4.34; USD 2.00 + 0.50 = 2.50
    invoice_generate(team=team, period=SEPTEMBER)
    team_invoices = {i.currency: i.subtotal for i in Invoice.objects.filter(team=team, user__isnull=True)}
    assert team_invoices == {"USD": D("2.50"), "EUR": D("4.34")}
    assert sum(i.subtotal for i in invoices if i.currency == "EUR") == team_invoices["EUR"]
    # And generating ana's again refreshes both drafts and answers the one in the team's currency
    again = invoice_generate(team=team, period=SEPTEMBER, user=ana)
    assert (again.pk, again.currency) == (invoices[1].pk, "USD")
    assert Invoice.objects.filter(user=ana).exclude(status=Invoice.Status.CANCELLED).count() == 2


def test_per_user_invoices_of_an_allocated_month_sum_to_each_currencys_allocated_cost():
    # Given one member's usage in USD and in EUR, allocated by the allocation service
    from chargeback.selectors import allocation_currency_totals
    from invoices.services.generation import invoices_generate_per_user
    from tests.factories import TeamMembershipFactory

    team = TeamFactory(currency="USD")
    ana = TeamMembershipFactory(team=team, user=UserFactory(username="ana")).user
    for cost, currency in ((D("1.234"), "USD"), (D("0.5"), "USD"), (D("5.6789"), "EUR")):
        UsageRecordFactory(team=team, user=ana, cost=cost, currency=currency)
    run = allocation_run_execute(period=SEPTEMBER)
    allocated = {pool.currency: pool.allocated_cost for pool in allocation_currency_totals(run)}

    # When her per-user invoices are generated
    invoices = invoices_generate_per_user(team=team, period=SEPTEMBER)

    # Then she gets one invoice per currency, each exactly that currency's allocated cost in cents
    assert {i.currency: i.subtotal for i in invoices} == {
        code: to_minor_units(amount, code) for code, amount in allocated.items()
    } == {"USD": D("1.73"), "EUR": D("5.68")}


def test_per_user_draft_of_a_currency_no_longer_billed_is_cancelled():
    # Given ana's drafts in USD and EUR
    from invoices.services.generation import invoice_generate
    from tests.factories import TeamMembershipFactory

    team = TeamFactory(currency="USD")
    ana = TeamMembershipFactory(team=team, user=UserFactory(username="ana")).user
    committed_run([{"team": team, "user": ana, "amount": D("1"), "currency": "USD"},
                   {"team": team, "user": ana, "amount": D("2"), "currency": "EUR"}])
    invoice_generate(team=team, period=SEPTEMBER, user=ana)
    eur = Invoice.objects.get(user=ana, currency="EUR")

    # When the month is allocated again without her EUR cost
    committed_run([{"team": team, "user": ana, "amount": D("1"), "currency": "USD"}])
    invoice_generate(team=team, period=SEPTEMBER, user=ana)

    # Then her EUR draft is cancelled and her USD draft stays the only live one
    eur.refresh_from_db()
    assert eur.status == Invoice.Status.CANCELLED
    assert list(Invoice.objects.filter(user=ana).exclude(status=Invoice.Status.CANCELLED)
                .values_list("currency", "subtotal")) == [("USD", D("1.00"))]


def test_invoice_generate_refuses_a_user_outside_the_team():
    from invoices.errors import InvalidInvoiceRequest
    from invoices.services.generation import invoice_generate

    team = TeamFactory()
    committed_run([{"team": team, "amount": D("1")}])
    with pytest.raises(InvalidInvoiceRequest) as refused:
        invoice_generate(team=team, period=SEPTEMBER, user=UserFactory())
    assert refused.value.param == "user"


def test_invoice_generate_prepaid_statement_from_the_ledger():
    # Given a prepaid team wallet with 100 before September, then top-ups, a grant, charges by
    # feature and a refund in September
    import time_machine

    from invoices.services.generation import invoice_generate
    from wallets.services.charges import wallet_charge
    from wallets.services.posting import wallet_grant, wallet_refund, wallet_top_up
    from wallets.services.wallets import wallet_open

    team = TeamFactory(currency="USD")
    wallet = wallet_open(team=team)
    with time_machine.travel(dt.datetime(2024, 8, 20, 12, tzinfo=dt.UTC), tick=False):
        wallet_top_up(wallet=wallet, amount=D(100), idempotency_key="aug")
    with time_machine.travel(dt.datetime(2024, 9, 10, 12, tzinfo=dt.UTC), tick=False):
        wallet_top_up(wallet=wallet, amount=D(50), idempotency_key="sep")
        wallet_grant(wallet=wallet, amount=D(10), idempotency_key="promo")
        chat = wallet_charge(wallet=wallet, amount=D("30.123456"), feature_key="chat", idempotency_key="c1")
        wallet_charge(wallet=wallet, amount=D("5"), feature_key="transcribe", idempotency_key="c2")
        wallet_refund(entry=chat, amount=D(2), idempotency_key="r1")
    with time_machine.travel(dt.datetime(2024, 10, 1, 0, 0, 1, tzinfo=dt.UTC), tick=False):
        wallet_charge(wallet=wallet, amount=D(1), feature_key="chat", idempotency_key="october")

    # When the September statement is generated
    statement = invoice_generate(team=team, period=SEPTEMBER)

    # Then it lists the balances and movements, and bills the credit used: 30.12 + 5.00 − 2.00
    assert statement.kind == "prepaid_statement"
    lines = [(li.description, li.amount, li.details.get("figure")) for li in statement.lines.order_by("position")]
    assert lines == [
        ("Opening balance on 2024-09-01: 100.00 USD", D(0), "100.000000000000"),
        ("Top-ups: 50.00 USD", D(0), "50.000000000000"),
        ("Grants: 10.00 USD", D(0), "10.000000000000"),
        ("Usage: chat", D("30.12"), None),
        ("Usage: transcribe", D("5.00"), None),
        ("Refunds", D("-2.00"), None),
        ("Closing balance on 2024-09-30: 126.88 USD", D(0), "126.876544000000"),
    ]
    assert (statement.subtotal, statement.total) == (D("33.12"), D("33.12"))


def test_invoice_generate_prepaid_statement_refuses_a_quiet_period():
    from invoices.services.generation import invoice_generate
    from wallets.services.wallets import wallet_open

    team = TeamFactory()
    wallet_open(team=team)
    with pytest.raises(InvoiceGenerationError, match="no ledger activity"):
        invoice_generate(team=team, period=SEPTEMBER)


def test_invoice_generate_per_user_statement_needs_user_wallets():
    from invoices.services.generation import invoice_generate
    from tests.factories import TeamMembershipFactory
    from wallets.services.wallets import wallet_open

    team = TeamFactory()
    member = TeamMembershipFactory(team=team).user
    wallet_open(team=team)
    with pytest.raises(InvoiceGenerationError, match="per-user statements need the prepaid_user billing model"):
        invoice_generate(team=team, period=SEPTEMBER, user=member, kind="prepaid_statement")
