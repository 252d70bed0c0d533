"""No tenant can hurt another: currencies, negative costs, finance's adjustments and voids, and runs that
bill every team whose data is good."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from billing_site.errors import IdempotencyError
from billing_site.money import METERED_QUANTUM, split
from chargeback.errors import InvalidUsage, StaleAllocationRun, UsageRecordVoid
from chargeback.models import AllocationRun, UsageRecord
from chargeback.periods import BillingPeriod
from chargeback.selectors import allocation_currency_totals, allocation_rows, allocation_team_totals, usage_summary
from chargeback.services.allocation import allocation_run_commit, allocation_run_create, allocation_run_execute
from chargeback.services.usage import (
    usage_adjustment_record,
    usage_record_create,
    usage_record_void,
    usage_records_create,
)
from teams.errors import CurrencyNotAllowed
from teams.services import billing_settings_update
from tests.factories import AllocationRuleFactory, TeamFactory, UsageRecordFactory, UserFactory

pytestmark = pytest.mark.django_db

SEPT = BillingPeriod.month("2024-09")
AT = dt.datetime(2024, 9, 15, 12, 0, tzinfo=dt.UTC)
D = Decimal


def record(team, **kwargs):
    params = dict(team=team, resource_type="gpu", provider="lambda", unit="hour", quantity=D(1), occurred_at=AT,
                  idempotency_key="u-1", cost=D("12.34"))
    params.update(kwargs)
    return usage_record_create(**params)


@pytest.fixture
def finance_user(db):
    return UserFactory(username="fiona")


# --- currency ---------------------------------------------------------------------------------


def test_usage_in_a_currency_the_team_is_not_billed_in_is_refused_naming_currency():
    team = TeamFactory(slug="search")
    with pytest.raises(CurrencyNotAllowed, match="'search' is billed in USD, not EUR") as caught:
        record(team, currency="EUR")
    assert caught.value.param == "currency" and caught.value.http_status == 422
    assert not UsageRecord.objects.exists()


def test_usage_in_an_extra_currency_of_the_team_is_recorded():
    team = TeamFactory()
    billing_settings_update(team=team, extra_currencies=["EUR", "GBP"])
    assert record(team, currency="EUR").currency == "EUR"
    with pytest.raises(CurrencyNotAllowed, match="billed in USD, EUR, GBP, not CHF"):
        record(team, currency="CHF", idempotency_key="u-2")


@pytest.mark.parametrize("codes", [["eur"], ["EURO"], "EUR", [1]])
def test_billing_settings_extra_currencies_must_be_upper_case_iso_codes(codes):
    with pytest.raises(ValidationError, match="extra_currencies"):
        billing_settings_update(team=TeamFactory(), extra_currencies=codes)


def test_usage_batch_row_in_another_currency_is_refused_naming_the_row():
    rows = [dict(resource_type="gpu", quantity=D(1), occurred_at=AT, idempotency_key=f"b-{i}", cost=D(1),
                 currency=currency) for i, currency in enumerate(["USD", "JPY"])]
    with pytest.raises(CurrencyNotAllowed) as caught:
        usage_records_create(team=TeamFactory(), records=rows)
    assert caught.value.param == "records[1].currency" and str(caught.value).startswith("records[1]: ")
    assert not UsageRecord.objects.exists()


# --- negative cost ----------------------------------------------------------------------------


@pytest.mark.parametrize("cost", [D(-100), D("-0"), D("-0.000"), -5])
def test_usage_with_a_negative_cost_is_refused_naming_cost(cost):
    with pytest.raises(InvalidUsage, match="cost must not be negative") as caught:
        record(TeamFactory(), cost=cost)
    assert caught.value.param == "cost"
    assert not UsageRecord.objects.exists()


def test_usage_of_source_adjustment_is_only_finances():
    with pytest.raises(InvalidUsage, match="usage_adjustment_record"):
        record(TeamFactory(), source=UsageRecord.Source.ADJUSTMENT)


# --- adjustments ------------------------------------------------------------------------------


def test_adjustment_credits_the_team_in_its_month_and_is_audited(finance_user):
    # given a team with 20 of usage in September
    team = TeamFactory(name="Search")
    UsageRecordFactory(team=team, cost=D(20))
    # when finance credits it 12.34 with a reason
    adjustment = usage_adjustment_record(team=team, amount=D("-12.34"), currency="USD", reason="outage credit",
                                         created_by=finance_user, period=SEPT)
    # then the month's allocation bills it 7.66, with an "Adjustment" line
    run = allocation_run_execute(period=SEPT)
    assert allocation_team_totals(run) == {team.pk: D("7.66")}
    assert {r.service: r.amount for r in allocation_rows(run)}["Adjustment"] == D("-12.34")
    assert (adjustment.source, adjustment.billing_period_start, adjustment.metadata["reason"]) == (
        "adjustment", dt.date(2024, 9, 1), "outage credit")
    # and the audit trail names who, how much and why
    entry = LogEntry.objects.get_for_object(adjustment).get()
    assert entry.actor == finance_user and entry.changes_dict["reason"] == [None, "outage credit"]


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"reason": "  "}, "reason"),
    ({"amount": D(0)}, "amount"),
    ({"amount": D("0.0000000000001")}, "amount"),
])
def test_adjustment_without_a_reason_or_amount_is_refused(finance_user, kwargs, param):
    params = dict(team=TeamFactory(), amount=D(-5), currency="USD", reason="credit", created_by=finance_user,
                  period=SEPT)
    with pytest.raises(InvalidUsage) as caught:
        usage_adjustment_record(**{**params, **kwargs})
    assert caught.value.param == param
    assert not UsageRecord.objects.exists()


def test_adjustment_in_a_currency_the_team_is_not_billed_in_is_refused(finance_user):
    with pytest.raises(CurrencyNotAllowed):
        usage_adjustment_record(team=TeamFactory(), amount=D(-5), currency="EUR", reason="credit",
                                created_by=finance_user, period=SEPT)


def test_adjustment_sent_twice_with_its_key_is_recorded_once(finance_user):
    team = TeamFactory()
    params = dict(team=team, amount=D(-5), currency="USD", reason="credit", created_by=finance_user, period=SEPT,
                  idempotency_key="form-1")
    first = usage_adjustment_record(**params)
    again = usage_adjustment_record(**params)
    assert again.pk == first.pk and again.replayed
    with pytest.raises(IdempotencyError, match="cost"):
        usage_adjustment_record(**{**params, "amount": D(-6)})
    assert UsageRecord.objects.count() == 1


def test_database_refuses_an_adjustment_without_a_reason():
    with pytest.raises(IntegrityError, match="usage_adjustment_has_reason"), transaction.atomic():
        UsageRecordFactory(source=UsageRecord.Source.ADJUSTMENT, metadata={})


# --- void -------------------------------------------------------------------------------------


def test_void_record_leaves_the_next_allocation_and_is_kept_with_its_reason(finance_user):
    # given two records of one team
    team = TeamFactory()
    UsageRecordFactory(team=team, cost=D(3))
    wrong = UsageRecordFactory(team=team, cost=D(100))
    # when finance voids the wrong one
    voided = usage_record_void(record=wrong, reason="posted twice", voided_by=finance_user)
    # then it is kept, void, and the allocation no longer counts it
    assert (voided.status, voided.void_reason, voided.voided_by) == ("void", "posted twice", finance_user)
    assert voided.voided_at is not None
    run = allocation_run_create(period=SEPT)
    assert (run.total_cost, run.record_count) == (D(3), 1)
    assert UsageRecord.objects.filter(pk=wrong.pk).exists()
    # and the summaries do not count it either
    assert usage_summary(records=UsageRecord.objects.all())["totals"][0]["cost"] == D(3)
    # and the audit trail names who and why
    entry = LogEntry.objects.get_for_object(wrong).get()
    assert entry.actor == finance_user
    assert entry.changes_dict == {"status": ["active", "void"], "void_reason": ["", "posted twice"]}


def test_void_after_a_committed_run_shows_in_the_next_run_as_a_difference(finance_user):
    # given September committed with 12.34 of usage that was wrong
    team = TeamFactory()
    UsageRecordFactory(team=team, cost=D(10))
    wrong = UsageRecordFactory(team=team, cost=D("12.34"))
    first = allocation_run_execute(period=SEPT)
    assert first.total_cost == D("22.34")
    # when it is voided, and the month run again
    usage_record_void(record=wrong, reason="test traffic", voided_by=finance_user)
    second = allocation_run_execute(period=SEPT)
    # then the committed history is kept, the new run is lower by the voided cost, and says so
    first.refresh_from_db()
    assert (first.status, first.total_cost) == (AllocationRun.Status.SUPERSEDED, D("22.34"))
    assert second.total_cost == first.total_cost - D("12.34")
    messages = [w["message"] for w in second.warnings]
    assert messages == [f"1 usage record voided since the last committed run (#{first.pk}): −12.34 USD"]
    # and a third run (nothing voided since the second) has no such warning
    assert allocation_run_execute(period=SEPT).warnings == []


def test_void_between_draft_and_commit_makes_the_draft_stale(finance_user):
    team = TeamFactory()
    UsageRecordFactory(team=team, cost=D(1))
    wrong = UsageRecordFactory(team=team, cost=D(2))
    draft = allocation_run_create(period=SEPT)
    usage_record_void(record=wrong, reason="wrong", voided_by=finance_user)
    with pytest.raises(StaleAllocationRun):
        allocation_run_commit(run=draft)


def test_void_twice_without_a_reason_or_of_a_wallet_charge_is_refused(finance_user):
    wrong = UsageRecordFactory()
    with pytest.raises(InvalidUsage, match="reason is required"):
        usage_record_void(record=wrong, reason=" ", voided_by=finance_user)
    usage_record_void(record=wrong, reason="wrong", voided_by=finance_user)
    with pytest.raises(UsageRecordVoid, match=f"usage record #{wrong.pk} was voided"):
        usage_record_void(record=wrong, reason="again", voided_by=finance_user)
    charged = UsageRecordFactory(source=UsageRecord.Source.CHARGE)
    with pytest.raises(InvalidUsage, match="refund the wallet"):
        usage_record_void(record=charged, reason="wrong", voided_by=finance_user)
    charged.refresh_from_db()
    assert charged.status == UsageRecord.Status.ACTIVE


def test_database_refuses_a_void_record_without_a_reason():
    record_ = UsageRecordFactory()
    with pytest.raises(IntegrityError, match="usage_void_has_reason"), transaction.atomic():
        UsageRecord.objects.filter(pk=record_.pk).update(status="void")


# --- one team's data never stops another team's run ------------------------------------------


def test_run_allocates_the_team_with_usage_in_two_currencies_in_both_pools():
    # given team A has EUR and USD usage, B and C only USD, and a by-usage rule over the untagged pool
    a, b, c = TeamFactory(name="Alpha"), TeamFactory(name="Beta"), TeamFactory(name="Gamma")
    UsageRecordFactory(team=a, cost=D(50))
    UsageRecordFactory(team=a, cost=D(7), currency="EUR")
    UsageRecordFactory(team=b, cost=D(3))
    UsageRecordFactory(team=c, cost=D(1))
    UsageRecordFactory(team=None, cost=D(2))
    AllocationRuleFactory(rule_type="by_usage")
    # when the month is allocated
    run = allocation_run_execute(period=SEPT)
    # then nobody is left out: the USD pool is shared by the USD usage of A, B and C, EUR stays A's
    assert (run.currency, run.total_cost, run.record_count, run.refused) == ("USD", D(56), 5, [])
    shares = split(D(2), [D(50), D(3), D(1)], METERED_QUANTUM)
    assert allocation_team_totals(run) == {a.pk: D(50) + shares[0], b.pk: D(3) + shares[1], c.pk: D(1) + shares[2]}
    assert allocation_team_totals(run, currency="EUR") == {a.pk: D(7)}


def test_run_keeps_usage_without_a_team_in_its_own_currency_unallocated():
    team = TeamFactory()
    UsageRecordFactory(team=team, cost=D(1))
    UsageRecordFactory(team=None, cost=D(9), currency="EUR")
    run = allocation_run_create(period=SEPT)
    assert (run.total_cost, run.unallocated_cost) == (D(1), D(0))
    eur = next(p for p in allocation_currency_totals(run) if p.currency == "EUR")
    assert (eur.total_cost, eur.allocated_cost, eur.unallocated_cost) == (D(9), D(0), D(9))


def test_run_repeats_the_default_currency_pool_else_the_one_with_most_records():
    eur_a, eur_b = TeamFactory(currency="EUR"), TeamFactory(currency="EUR")
    for team in (eur_a, eur_b):
        UsageRecordFactory(team=team, cost=D(1), currency="EUR")
    UsageRecordFactory(team=TeamFactory(), cost=D(100))
    assert (allocation_run_create(period=SEPT).currency) == "USD"
    UsageRecord.objects.filter(currency="USD").delete()
    UsageRecordFactory(team=TeamFactory(currency="JPY"), cost=D(500), currency="JPY")
    run = allocation_run_create(period=SEPT)
    assert (run.currency, run.total_cost) == ("EUR", D(2))


def test_commit_is_stale_when_a_team_gets_usage_in_another_currency():
    a = TeamFactory()
    UsageRecordFactory(team=a, cost=D(1))
    UsageRecordFactory(team=TeamFactory(), cost=D(1))
    draft = allocation_run_create(period=SEPT)
    UsageRecordFactory(team=a, cost=D(1), currency="EUR")
    with pytest.raises(StaleAllocationRun, match="2 records, 2.000000000000 USD then; 1 record, 1.000000000000 EUR"):
        allocation_run_commit(run=draft)
