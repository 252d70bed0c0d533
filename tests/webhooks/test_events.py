"""The billing services record their webhook events, with the API's JSON shapes, for the endpoints that want them."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from chargeback.periods import BillingPeriod
from chargeback.services.focus_import import focus_import
from invoices.api.serializers import CreditNoteSerializer, InvoiceSerializer
from invoices.services.billing_run import billing_run_execute
from invoices.services.credit_notes import credit_note_issue
from invoices.services.lifecycle import invoice_issue, invoice_mark_paid, invoices_mark_overdue
from teams.services import billing_settings_update
from tests.factories import TeamFactory, UsageRecordFactory, draft_invoice
from wallets.api.serializers import WalletSerializer
from wallets.errors import InsufficientFunds, WalletFrozen
from wallets.services.charges import wallet_charge
from wallets.services.holds import hold_capture, wallet_hold
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_freeze, wallet_open
from webhooks.models import EVENT_TYPES, Delivery, Event
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture(autouse=True)
def listener(settings):
    """An endpoint of every event type, of every team: events nobody wants are not recorded."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    return endpoint_create(url="https://10.0.0.9/hooks", event_types=list(EVENT_TYPES))


def _json(data) -> dict:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _events(type_: str) -> list[Event]:
    return list(Event.objects.filter(type=type_).order_by("pk"))


def test_invoice_lifecycle_records_issued_paid_and_overdue_with_the_api_shape():
    # given two drafts
    first, second = draft_invoice(amounts=("10.00",)), draft_invoice(amounts=("20.00",))
    # when both are issued, one is paid and the other falls overdue
    first, second = invoice_issue(invoice=first), invoice_issue(invoice=second)
    first = invoice_mark_paid(invoice=first, payment_reference="TRX-1")
    invoices_mark_overdue(today=second.due_date + dt.timedelta(days=1))
    second.refresh_from_db()
    # then each move has its event, whose data is the invoice as the API shows it
    issued = _events("invoice.issued")
    assert [e.data["id"] for e in issued] == [first.pk, second.pk]
    assert issued[0].team_id == first.team_id and issued[0].data["status"] == "pending"
    assert issued[0].data["number"] == first.number and issued[0].data["total"] == "10.00"
    [paid] = _events("invoice.paid")
    assert paid.data == _json(InvoiceSerializer(first).data)
    [overdue] = _events("invoice.overdue")
    assert overdue.data == _json(InvoiceSerializer(second).data) and overdue.data["status"] == "overdue"


def test_credit_note_issued_is_recorded_with_the_api_shape():
    invoice = invoice_issue(invoice=draft_invoice(amounts=("10.00",)))
    note = credit_note_issue(invoice=invoice, reason="other", amount=D("2.50"))
    [event] = _events("credit_note.issued")
    assert event.data == _json(CreditNoteSerializer(note).data)
    assert event.data["total"] == "2.50" and event.team_id == invoice.team_id


def test_wallet_events_topped_up_low_balance_depleted_and_refused():
    # given a team warned below 5 USD, blocking at zero
    team = TeamFactory(currency="USD")
    billing_settings_update(team=team, warning_threshold_type="absolute", warning_threshold_value=D(5),
                            block_on_zero_balance=True)
    wallet = wallet_open(team=team)
    # when it is topped up with 10, charged 6 (below the threshold), 4 (to zero), then 1 (refused)
    wallet_top_up(wallet=wallet, amount=D(10), idempotency_key="t1")
    wallet_charge(wallet=wallet, amount=D(6), idempotency_key="c1")
    wallet_charge(wallet=wallet, amount=D(4), idempotency_key="c2")
    with pytest.raises(InsufficientFunds):
        wallet_charge(wallet=wallet, amount=D(1), idempotency_key="c3", feature_key="chat")
    wallet_freeze(wallet=wallet)
    with pytest.raises(WalletFrozen):
        wallet_charge(wallet=wallet, amount=D(1), idempotency_key="c4")
    # then the events tell the story, each about the team, with the wallet as the API shows it
    [topped_up] = _events("wallet.topped_up")
    assert topped_up.data["wallet"]["balance"] == "10.000000000000"
    assert topped_up.data["ledger_entry"]["amount"] == "10.000000000000"
    [low] = _events("wallet.low_balance")
    assert low.data["balance"] == "4.000000000000" and low.data["warning_threshold"] == "5.000000000000"
    [depleted] = _events("wallet.depleted")
    assert D(depleted.data["balance"]) == 0 and depleted.data["id"] == wallet.pk
    refused = _events("charge.refused")
    assert [e.data["error"]["code"] for e in refused] == ["insufficient_funds", "wallet_frozen"]
    assert refused[0].data["amount"] == "1" and refused[0].data["feature_key"] == "chat"
    assert refused[0].data["wallet"]["id"] == wallet.pk and refused[0].data["currency"] == "USD"
    assert {e.team_id for e in Event.objects.all()} == {team.pk}
    wallet.refresh_from_db()
    assert refused[1].data["wallet"] == _json(WalletSerializer(wallet).data)


def test_wallet_depleted_by_a_posting_debit():
    # given a wallet with 3 USD, no threshold
    team = TeamFactory(currency="USD")
    wallet = wallet_open(team=team)
    wallet_top_up(wallet=wallet, amount=D(3), idempotency_key="t1")
    # when a hold of 3 is captured (a debit posted through the ORM)
    hold = wallet_hold(wallet=wallet, amount=D(3), idempotency_key="h1")
    hold_capture(hold=hold, idempotency_key="cap1")
    # then the wallet is reported depleted once
    assert len(_events("wallet.depleted")) == 1


def test_event_no_endpoint_wants_is_not_recorded(listener):
    # given no endpoint that listens
    listener.delete()
    # when a wallet is topped up
    wallet_top_up(wallet=wallet_open(team=TeamFactory()), amount=D(1), idempotency_key="t1")
    # then nothing was recorded
    assert not Event.objects.exists()


def test_billing_run_committed_is_recorded_with_the_api_shape():
    # given usage of two teams in September
    search, maps = TeamFactory(name="Search", slug="search"), TeamFactory(name="Maps", slug="maps")
    UsageRecordFactory(team=search, cost=D("12.505"))
    UsageRecordFactory(team=maps, cost=D("0.255"))
    # when the month is billed (a dry run records nothing)
    billing_run_execute(period=BillingPeriod.month("2024-09"), dry_run=True)
    assert not _events("billing_run.committed")
    result = billing_run_execute(period=BillingPeriod.month("2024-09"))
    # then one event carries the run's summary as POST /api/v1/billing-runs/ answers it
    [event] = _events("billing_run.committed")
    assert event.data["period"] == "2024-09" and event.data["allocation_run"] == result.run.pk
    assert event.data["invoices"] == 2 and {t["team_name"] for t in event.data["teams"]} == {"Search", "Maps"}
    assert event.data["total_cost"] == "12.760000000000" and event.team_id is None


def test_usage_import_completed_is_recorded_with_counts_and_costs(tmp_path: Path):
    # given a FOCUS file of two rows
    header = ["BilledCost", "BillingCurrency", "BillingPeriodStart", "ChargeCategory", "ChargePeriodStart",
              "ProviderName", "ServiceName", "Tags"]
    rows = [["1.5", "USD", "2024-09-01T00:00:00Z", "Usage", "2024-09-02T00:00:00Z", "AWS", "Amazon S3",
             '{"business_unit": "checkout"}'],
            ["2.25", "USD", "2024-09-01T00:00:00Z", "Usage", "2024-09-03T00:00:00Z", "AWS", "Amazon EC2",
             '{"business_unit": "checkout"}']]
    path = tmp_path / "september.csv"
    path.write_text("".join(",".join('"' + v.replace('"', '""') + '"' for v in line) + "\n"
                            for line in [header, *rows]))
    # when it is imported
    focus_import(path=path)
    # then the event has the counts and costs, and no server path
    [event] = _events("usage.import_completed")
    assert event.data["file"] == "september.csv"
    assert (event.data["rows_read"], event.data["rows_imported"], event.data["rows_duplicate"]) == (2, 2, 0)
    assert event.data["periods"] == [{"billing_period_start": "2024-09-01", "currency": "USD", "rows": 2,
                                      "billed_cost": "3.750000000000", "unallocated_rows": 0,
                                      "unallocated_cost": "0"}]
    assert str(tmp_path) not in json.dumps(event.data)


def test_endpoint_of_one_team_gets_only_its_events_and_of_all_teams_every_one(settings, listener):
    # given an endpoint for one team, one for all teams, one for another event type, one disabled
    mine, other = TeamFactory(currency="USD"), TeamFactory(currency="USD")
    url = "http://127.0.0.1:9/hooks"
    settings.WEBHOOKS_ALLOW_HTTP = True
    team_only = endpoint_create(url=url, event_types=["wallet.topped_up"], team=mine)
    every_team = endpoint_create(url=url, event_types=["wallet.topped_up", "invoice.issued"])
    endpoint_create(url=url, event_types=["invoice.paid"])
    disabled = endpoint_create(url=url, event_types=["wallet.topped_up"])
    disabled.is_active = False
    disabled.save()
    # when both teams top up
    for team in (mine, other):
        wallet_top_up(wallet=wallet_open(team=team), amount=D(1), idempotency_key=f"t-{team.pk}")
    # then the team's endpoint got its own event only, the all-teams endpoint both
    deliveries = Delivery.objects.select_related("event").exclude(endpoint=listener)
    assert [d.event.team_id for d in deliveries.filter(endpoint=team_only)] == [mine.pk]
    assert sorted(d.event.team_id for d in deliveries.filter(endpoint=every_team)) == sorted([mine.pk, other.pk])
    assert deliveries.count() == 3
