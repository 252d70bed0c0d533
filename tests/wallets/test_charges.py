"""Quotes, multi-item usage-event charges, low-balance e-mails, usage history and statistics."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from billing_site.errors import IdempotencyError, InvalidRequest
from chargeback.errors import PriceNotFound
from chargeback.models import UsageRecord
from teams.services import billing_settings_update
from tests.factories import PriceFactory, UserFactory
from tests.jobs.mail import queued_mails
from tests.wallets.conftest import CALL_ITEMS, new_key
from wallets import selectors
from wallets.errors import InsufficientFunds, InvalidAmount, ProviderNotAllowed, WalletFrozen
from wallets.models import LedgerEntry, UsageEvent, Wallet
from wallets.services.charges import wallet_charge
from wallets.services.holds import wallet_hold
from wallets.services.posting import wallet_top_up
from wallets.services.usage_events import quote, usage_event_charge
from wallets.services.wallets import wallet_freeze, wallet_open

pytestmark = pytest.mark.django_db

D = Decimal


def _charge(team, user=None, key=None, items=CALL_ITEMS, feature_key="voice-bot", **kwargs):
    return usage_event_charge(
        team=team, user=user, feature_key=feature_key, external_reference_id="call-1",
        idempotency_key=key or new_key("event"), items=items, **kwargs,
    )


def test_quote_prices_the_issue_example_at_0_037_usd(team, catalog):
    # when
    priced = quote(team=team, items=CALL_ITEMS)
    # then
    assert [i.cost for i in priced.items] == [D("0.006"), D("0.015"), D("0.003"), D("0.013")]
    assert [i.unit_price for i in priced.items] == [D("0.0001"), D("0.00003"), D("0.000015"), D("0.013")]
    assert priced.total == D("0.037") and priced.currency == "USD"
    assert not UsageEvent.objects.exists() and not LedgerEntry.objects.exists()


def test_quote_uses_the_team_override_first(team, catalog):
    # given the team's own price for gpt-4
    PriceFactory(team=team, category="llm", provider="openai", model="gpt-4", unit="token",
                 unit_price=D("0.00001"), valid_from=timezone.make_aware(dt.datetime(2024, 1, 1)))
    # when
    priced = quote(team=team, items=CALL_ITEMS)
    # then 500 tokens cost 0.005 instead of 0.015
    assert priced.items[1].cost == D("0.005")
    assert priced.total == D("0.027")


def test_quote_refuses_unknown_items_disallowed_providers_and_bad_quantities(team, catalog):
    with pytest.raises(PriceNotFound, match="llm/openai/gpt-5/token") as exc:
        quote(team=team, items=[{**CALL_ITEMS[1], "model": "gpt-5"}])
    assert exc.value.code == "price_not_found"
    with pytest.raises(InvalidAmount) as exc:
        quote(team=team, items=[{**CALL_ITEMS[0], "quantity": 1.5}])
    assert exc.value.param == "items[0].quantity"
    with pytest.raises(InvalidAmount):
        quote(team=team, items=[{**CALL_ITEMS[0], "quantity": D(-1)}])
    with pytest.raises(InvalidRequest) as exc:
        quote(team=team, items=[{"category": "stt", "quantity": D(1)}])
    assert exc.value.param == "items[0].provider"
    billing_settings_update(team=team, allowed_providers=["openai"])
    with pytest.raises(ProviderNotAllowed) as exc:
        quote(team=team, items=CALL_ITEMS)
    assert exc.value.code == "provider_not_allowed" and exc.value.param == "items[3].provider"


def test_usage_event_charge_debits_one_entry_and_records_usage(team, wallet, top_up, catalog, member):
    # given
    top_up(wallet, "1")
    # when
    event = _charge(team, user=member, metadata={"call_sid": "CA1"})
    # then one charged event, one ledger entry, four chargeback usage records
    assert (event.status, event.total, event.currency) == ("charged", D("0.037"), "USD")
    entry = event.ledger_entry
    assert (entry.entry_type, entry.amount, entry.reference_type, entry.reference_id) == (
        "charge", D("-0.037"), "usage_event", str(event.pk))
    assert LedgerEntry.objects.filter(wallet=wallet, entry_type="charge").count() == 1
    items = list(event.items.order_by("position"))
    assert [i.cost for i in items] == [D("0.006"), D("0.015"), D("0.003"), D("0.013")]
    records = UsageRecord.objects.filter(source="charge").order_by("pk")
    assert [(r.resource_type, r.cost, r.team_id, r.user_id) for r in records] == [
        (i.category, i.cost, team.pk, member.pk) for i in items]
    assert all(i.usage_record_id for i in items)
    assert records[0].feature_key == "voice-bot" and records[0].external_reference == "call-1"
    wallet.refresh_from_db()
    assert wallet.balance == D("0.963")


def test_usage_event_charge_replay_returns_the_first_event(team, wallet, top_up, catalog):
    # given
    top_up(wallet, "1")
    first = _charge(team, key="evt-1")
    # when
    again = _charge(team, key="evt-1")
    # then
    assert again.pk == first.pk
    assert UsageEvent.objects.count() == 1 and UsageRecord.objects.count() == 4
    wallet.refresh_from_db()
    assert wallet.balance == D("0.963")
    with pytest.raises(IdempotencyError):
        _charge(team, key="evt-1", items=CALL_ITEMS[:2])


def test_usage_event_charge_insufficient_funds_records_a_rejected_event(team, wallet, top_up, catalog):
    # given 0.03 in the wallet, a call costs 0.037
    top_up(wallet, "0.03")
    # when
    with pytest.raises(InsufficientFunds) as exc:
        _charge(team, key="evt-poor")
    # then the attempt is kept, rejected, with its items; nothing moved and no usage was recorded
    event = exc.value.event
    assert exc.value.code == "insufficient_funds" and exc.value.available == D("0.03")
    assert event.pk and UsageEvent.objects.get(pk=event.pk).status == "rejected"
    assert event.rejection_code == "insufficient_funds" and "0.037" in event.rejection_reason
    assert event.items.count() == 4 and not event.items.filter(usage_record__isnull=False).exists()
    assert not UsageRecord.objects.exists()
    wallet.refresh_from_db()
    assert wallet.balance == D("0.03")
    assert LedgerEntry.objects.filter(wallet=wallet).count() == 1
    # a replay answers the same way without a second event
    with pytest.raises(InsufficientFunds) as again:
        _charge(team, key="evt-poor")
    assert again.value.event.pk == event.pk and again.value.available == D("0.03")
    assert UsageEvent.objects.count() == 1


def test_usage_event_charge_without_block_goes_negative(team, wallet, catalog):
    # given an empty wallet and no block on zero balance
    billing_settings_update(team=team, block_on_zero_balance=False)
    # when
    event = _charge(team)
    # then
    assert event.status == "charged"
    wallet.refresh_from_db()
    assert wallet.balance == D("-0.037")


def test_usage_event_charge_on_frozen_wallet_is_rejected_and_kept(team, wallet, top_up, catalog):
    # given
    top_up(wallet, "1")
    wallet_freeze(wallet=wallet)
    # when / then
    with pytest.raises(WalletFrozen) as exc:
        _charge(team)
    assert exc.value.event.status == "rejected" and exc.value.event.rejection_code == "wallet_frozen"
    assert Wallet.objects.get(pk=wallet.pk).balance == D(1)


def test_usage_event_charge_refuses_a_provider_the_team_may_not_use(team, wallet, top_up, catalog):
    # given
    top_up(wallet, "1")
    billing_settings_update(team=team, allowed_providers=["OpenAI"])
    # when / then: twilio is refused, nothing recorded; openai alone goes through
    with pytest.raises(ProviderNotAllowed, match="twilio"):
        _charge(team)
    assert not UsageEvent.objects.exists()
    assert _charge(team, items=CALL_ITEMS[:3]).total == D("0.024")


def test_usage_event_charge_prepaid_user_debits_the_users_wallet(team, member, catalog):
    # given a per-user team; the member's wallet funded
    billing_settings_update(team=team, billing_model="prepaid_user")
    user_wallet = wallet_open(team=team, user=member)
    wallet_top_up(wallet=user_wallet, amount=D(1), idempotency_key=new_key())
    # when
    event = _charge(team, user=member)
    # then
    assert event.wallet_id == user_wallet.pk
    assert Wallet.objects.get(pk=user_wallet.pk).balance == D("0.963")
    with pytest.raises(InvalidRequest, match="user is required"):
        _charge(team, user=None)
    with pytest.raises(InvalidRequest, match="not a member"):
        _charge(team, user=UserFactory())


@pytest.mark.django_db(transaction=True)
def test_low_balance_email_sent_once_per_crossing_and_rearmed_by_top_up(team, wallet, top_up, run_jobs):
    # given a warning at 20 % of the last top-up, two addresses
    billing_settings_update(team=team, warning_threshold_type="percent_of_last_top_up",
                            warning_threshold_value=D(20), notify_emails="ops@example.com, cfo@example.com")
    top_up(wallet, "10")
    # when the balance goes 10 → 5 → 1.5 (crossing 2) → 1 (each charge commits), and the mail worker runs
    for amount in ("5", "3.5", "0.5"):
        wallet_charge(wallet=wallet, amount=D(amount), idempotency_key=new_key())
    assert mail.outbox == []  # sent from the mail queue, not by the charge
    run_jobs(queues=["mail"])
    # then exactly one e-mail
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com", "cfo@example.com"]
    assert "Low credit balance" in mail.outbox[0].subject and "Balance:   1.5 USD" in mail.outbox[0].body
    # when a top-up lifts it above the threshold again (now 20 % of 9 = 1.8), and a charge crosses again
    top_up(wallet, "9")
    assert not Wallet.objects.get(pk=wallet.pk).low_balance_warned
    wallet_charge(wallet=wallet, amount=D("8.5"), idempotency_key=new_key())
    run_jobs(queues=["mail"])
    # then a second e-mail
    assert len(mail.outbox) == 2


def test_low_balance_email_not_sent_when_notify_is_off(team, wallet, top_up):
    # given an absolute threshold of 5, notifications off
    billing_settings_update(team=team, warning_threshold_type="absolute", warning_threshold_value=D(5),
                            notify_emails="ops@example.com", notify_on_warning=False)
    top_up(wallet, "10")
    # when
    wallet_charge(wallet=wallet, amount=D(6), idempotency_key=new_key())
    # then the state is recorded, but no mail is queued
    assert Wallet.objects.get(pk=wallet.pk).low_balance_warned
    assert queued_mails() == []


def test_low_balance_email_not_sent_for_a_refused_charge(team, wallet, top_up, django_capture_on_commit_callbacks):
    # given an absolute threshold of 5 and 10 in the wallet
    billing_settings_update(team=team, warning_threshold_type="absolute", warning_threshold_value=D(5),
                            notify_emails="ops@example.com")
    top_up(wallet, "10")
    # when a charge that would cross is refused
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(InsufficientFunds):
        wallet_charge(wallet=wallet, amount=D(11), idempotency_key=new_key())
    # then nothing was scheduled or queued
    assert callbacks == [] and queued_mails() == []


def test_usage_event_summary_groups_in_the_database(team, wallet, top_up, catalog, member):
    # given two charged events on two features and one rejected
    top_up(wallet, "0.08")
    _charge(team, feature_key="voice-bot", user=member)
    _charge(team, feature_key="summary", items=CALL_ITEMS[1:2])
    with pytest.raises(InsufficientFunds):
        _charge(team, feature_key="voice-bot")
    # when
    summary = selectors.usage_event_summary(team=team)
    # then
    assert summary["event_count"] == 3 and summary["charged_count"] == 2
    assert summary["total_cost"] == D("0.052")
    assert {r["feature_key"]: r["cost"] for r in summary["by_feature"]} == {"summary": D("0.015"), "voice-bot": D("0.037")}
    assert {r["status"]: r["count"] for r in summary["by_status"]} == {"charged": 2, "rejected": 1}
    assert {r["provider"]: r["cost"] for r in summary["by_provider"]} == {"openai": D("0.039"), "twilio": D("0.013")}
    assert {r["resource_type"]: r["cost"] for r in summary["by_resource_type"]}["llm"] == D("0.030")
    assert selectors.usage_event_list(team=team, provider="twilio", status="charged").count() == 1
    assert selectors.usage_event_list(team=team, user=member).count() == 1


def test_usage_statistics_day_month_year_series(team, wallet, top_up, catalog):
    # given two charges today
    top_up(wallet, "1")
    _charge(team)
    _charge(team, feature_key="other", items=CALL_ITEMS[3:])
    today = timezone.now().astimezone(dt.timezone.utc).date()
    # when
    by_day = selectors.usage_statistics(team=team, granularity="day", year=today.year, month=today.month)
    by_month = selectors.usage_statistics(team=team, granularity="month", year=today.year)
    by_year = selectors.usage_statistics(team=team, granularity="year")
    # then
    assert by_day["total_cost"] == D("0.050") and by_day["transaction_count"] == 2
    assert len(by_day["series"]) in (28, 29, 30, 31)
    assert [p for p in by_day["series"] if p["count"]] == [{"period": today, "cost": D("0.050"), "count": 2}]
    assert len(by_month["series"]) == 12 and by_month["series"][today.month - 1]["cost"] == D("0.050")
    assert by_year["series"] == [{"period": dt.date(today.year, 1, 1), "cost": D("0.050"), "count": 2}]
    assert {r["provider"]: r["cost"] for r in by_month["by_provider"]} == {"openai": D("0.024"), "twilio": D("0.026")}
    with pytest.raises(InvalidRequest):
        selectors.usage_statistics(team=team, granularity="week")


def test_wallet_balance_get_reads_stored_figures(team, wallet, top_up):
    # given
    top_up(wallet, "3")
    wallet_hold(wallet=wallet, amount=D(1), idempotency_key=new_key())
    # when
    balance = selectors.wallet_balance_get(wallet_id=wallet.pk)
    # then
    assert (balance.balance, balance.reserved, balance.available, balance.currency) == (D(3), D(1), D(2), "USD")
