"""The money-moving services: happy paths, refusals, idempotency, grants, holds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from billing_site.errors import IdempotencyError, InvalidRequest
from billing_site.idempotency import idempotency_records_purge
from billing_site.models import IdempotencyRecord
from teams.services import billing_settings_update
from tests.wallets.conftest import new_key
from wallets.errors import HoldNotOpen, InsufficientFunds, InvalidAmount, WalletFrozen
from wallets.models import CreditGrant, Hold, LedgerEntry, Wallet
from wallets.selectors import ledger_verify, wallet_balance_get
from wallets.services.charges import wallet_charge
from wallets.services.holds import hold_capture, hold_release, holds_release_expired, wallet_hold
from wallets.services.posting import grants_expire, wallet_adjust, wallet_grant, wallet_refund, wallet_top_up
from wallets.services.wallets import wallet_freeze, wallet_open, wallet_unfreeze

pytestmark = pytest.mark.django_db

D = Decimal


def _entries(wallet):
    return list(LedgerEntry.objects.filter(wallet=wallet).order_by("pk"))


def test_wallet_top_up_credits_balance_with_one_entry(wallet):
    # when
    entry = wallet_top_up(wallet=wallet, amount=D("50.00"), idempotency_key="t1", reference_id="pay_1")
    # then
    wallet.refresh_from_db()
    assert wallet.balance == D("50")
    assert wallet.last_top_up_amount == D("50")
    assert (entry.entry_type, entry.amount, entry.balance_before, entry.balance_after) == ("top_up", D(50), 0, D(50))
    assert entry.reference_type == "external_payment" and entry.reference_id == "pay_1"
    assert ledger_verify()[0].ok


def test_wallet_charge_debits_balance_and_keeps_the_chain(wallet, top_up):
    # given
    top_up(wallet, "10")
    # when
    first = wallet_charge(wallet=wallet, amount=D("0.037"), idempotency_key="c1", feature_key="voice-bot")
    second = wallet_charge(wallet=wallet, amount=D("1.000000000001"), idempotency_key="c2")
    # then
    wallet.refresh_from_db()
    assert wallet.balance == D("10") - D("0.037") - D("1.000000000001")
    assert first.amount == D("-0.037") and first.feature_key == "voice-bot"
    assert second.balance_before == first.balance_after
    assert second.balance_after == wallet.balance


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0.5, "float"),
        (D(0), "greater than zero"),
        (D("-1"), "greater than zero"),
        (D("0.0000000000001"), "12 decimal places"),
        (D("NaN"), "finite"),
        ("5", "must be a Decimal"),
        (D(10) ** 16, "below"),
    ],
)
def test_wallet_charge_refuses_invalid_amounts_naming_the_field(wallet, top_up, amount, message):
    # given
    top_up(wallet, "10")
    # when / then
    with pytest.raises(InvalidAmount, match=message) as exc:
        wallet_charge(wallet=wallet, amount=amount, idempotency_key=new_key())
    assert exc.value.code == "invalid_amount" and exc.value.param == "amount"
    assert "amount" in str(exc.value)
    wallet.refresh_from_db()
    assert wallet.balance == D(10)


def test_wallet_charge_refuses_insufficient_funds_and_moves_nothing(wallet, top_up):
    # given
    top_up(wallet, "5")
    # when
    with pytest.raises(InsufficientFunds) as exc:
        wallet_charge(wallet=wallet, amount=D("5.01"), idempotency_key="too-much")
    # then
    assert exc.value.code == "insufficient_funds"
    assert exc.value.available == D(5) and exc.value.requested == D("5.01")
    wallet.refresh_from_db()
    assert wallet.balance == D(5)
    assert len(_entries(wallet)) == 1
    # the refused request left no idempotency record: the same key works once funds arrive
    assert not IdempotencyRecord.objects.filter(key="too-much").exists()
    top_up(wallet, "1")
    wallet_charge(wallet=wallet, amount=D("5.01"), idempotency_key="too-much")
    wallet.refresh_from_db()
    assert wallet.balance == D("0.99")


def test_wallet_charge_without_block_on_zero_lets_balance_go_negative(team, wallet, top_up):
    # given
    billing_settings_update(team=team, block_on_zero_balance=False)
    top_up(wallet, "1")
    # when
    wallet_charge(wallet=wallet, amount=D("3"), idempotency_key=new_key())
    # then
    wallet.refresh_from_db()
    assert wallet.balance == D(-2)
    assert ledger_verify()[0].ok


def test_wallet_charge_postpaid_spends_up_to_the_credit_limit(team, wallet):
    # given a postpaid team with 100 of credit and an empty wallet
    billing_settings_update(team=team, billing_model="postpaid", credit_limit=D(100))
    # when
    wallet_charge(wallet=wallet, amount=D(100), idempotency_key=new_key())
    # then the limit is reached and the next cent is refused
    with pytest.raises(InsufficientFunds):
        wallet_charge(wallet=wallet, amount=D("0.01"), idempotency_key=new_key())
    assert wallet_balance_get(wallet_id=wallet.pk).available == 0
    wallet.refresh_from_db()
    assert wallet.balance == D(-100)


def test_wallet_charge_unlimited_team_is_never_refused(team, wallet):
    # given
    billing_settings_update(team=team, billing_model="unlimited")
    # when
    wallet_charge(wallet=wallet, amount=D(1000), idempotency_key=new_key())
    # then
    wallet.refresh_from_db()
    assert wallet.balance == D(-1000)


def test_wallet_charge_refused_on_frozen_wallet_until_unfrozen(wallet, top_up):
    # given
    top_up(wallet, "10")
    wallet_freeze(wallet=wallet)
    # when / then
    with pytest.raises(WalletFrozen) as exc:
        wallet_charge(wallet=wallet, amount=D(1), idempotency_key=new_key())
    assert exc.value.code == "wallet_frozen"
    with pytest.raises(WalletFrozen):
        wallet_hold(wallet=wallet, amount=D(1), idempotency_key=new_key())
    # a frozen wallet still takes credit
    top_up(wallet, "1")
    wallet_unfreeze(wallet=wallet)
    wallet_charge(wallet=wallet, amount=D(1), idempotency_key=new_key())
    wallet.refresh_from_db()
    assert (wallet.status, wallet.balance) == ("active", D(10))


def test_idempotent_replay_returns_the_first_entry_and_moves_nothing(wallet, top_up):
    # given
    top_up(wallet, "10")
    first = wallet_charge(wallet=wallet, amount=D(2), idempotency_key="charge-42")
    # when
    again = wallet_charge(wallet=wallet, amount=D("2.000"), idempotency_key="charge-42")
    # then
    assert again.pk == first.pk
    wallet.refresh_from_db()
    assert wallet.balance == D(8)
    record = IdempotencyRecord.objects.get(key="charge-42")
    assert record.result_type == "ledger_entry" and record.result_id == str(first.pk)
    assert record.response["amount"] == str(first.amount)


def test_idempotency_key_reused_with_other_parameters_is_refused(wallet, top_up):
    # given
    top_up(wallet, "10")
    wallet_charge(wallet=wallet, amount=D(2), idempotency_key="charge-43")
    # when / then: another amount, and another operation, with the same key
    with pytest.raises(IdempotencyError) as exc:
        wallet_charge(wallet=wallet, amount=D(3), idempotency_key="charge-43")
    assert exc.value.code == "idempotency_error"
    with pytest.raises(IdempotencyError):
        wallet_top_up(wallet=wallet, amount=D(2), idempotency_key="charge-43")
    wallet.refresh_from_db()
    assert wallet.balance == D(8)


def test_idempotency_keys_are_scoped_per_team(wallet, top_up):
    # given another team's wallet
    from tests.factories import TeamFactory

    other = wallet_open(team=TeamFactory())
    # when both use one key
    wallet_top_up(wallet=wallet, amount=D(1), idempotency_key="shared")
    wallet_top_up(wallet=other, amount=D(1), idempotency_key="shared")
    # then both moved
    assert Wallet.objects.get(pk=other.pk).balance == D(1)
    assert Wallet.objects.get(pk=wallet.pk).balance == D(1)


def test_wallet_refund_credits_up_to_what_was_charged(wallet, top_up):
    # given
    top_up(wallet, "10")
    charge = wallet_charge(wallet=wallet, amount=D(4), idempotency_key=new_key())
    # when
    wallet_refund(entry=charge, amount=D(3), idempotency_key=new_key())
    # then one more unit is refundable, not two
    with pytest.raises(InvalidAmount, match="left to refund"):
        wallet_refund(entry=charge, amount=D(2), idempotency_key=new_key())
    refund = wallet_refund(entry=charge, amount=D(1), idempotency_key=new_key())
    assert refund.reference_type == "ledger_entry" and refund.reference_id == str(charge.pk)
    wallet.refresh_from_db()
    assert wallet.balance == D(10)


def test_wallet_refund_refuses_an_entry_that_is_not_a_debit(wallet):
    # given
    top_up_entry = wallet_top_up(wallet=wallet, amount=D(5), idempotency_key=new_key())
    # when / then
    with pytest.raises(InvalidRequest, match="only charges and captures"):
        wallet_refund(entry=top_up_entry, amount=D(1), idempotency_key=new_key())


def test_wallet_adjust_moves_either_way_with_a_reason(wallet, top_up):
    # given
    top_up(wallet, "10")
    # when
    wallet_adjust(wallet=wallet, amount=D("-12"), idempotency_key=new_key(), description="Double top-up")
    wallet_adjust(wallet=wallet, amount=D("0.5"), idempotency_key=new_key(), description="Goodwill")
    # then a correction is never refused for funds, and zero or no reason are
    wallet.refresh_from_db()
    assert wallet.balance == D("-1.5")
    with pytest.raises(InvalidAmount):
        wallet_adjust(wallet=wallet, amount=D(0), idempotency_key=new_key(), description="x")
    with pytest.raises(InvalidRequest):
        wallet_adjust(wallet=wallet, amount=D(1), idempotency_key=new_key(), description=" ")
    assert ledger_verify()[0].ok


def test_granted_credit_is_consumed_first_soonest_expiring_first(wallet, top_up):
    # given purchased 10, a grant of 3 without expiry and one of 2 expiring soon
    top_up(wallet, "10")
    soon = timezone.now() + dt.timedelta(days=1)
    late_grant = wallet_grant(wallet=wallet, amount=D(3), idempotency_key=new_key())
    soon_grant = wallet_grant(wallet=wallet, amount=D(2), idempotency_key=new_key(), expires_at=soon)
    # when
    wallet_charge(wallet=wallet, amount=D("2.5"), idempotency_key=new_key())
    # then the expiring lot went first, then half a unit of the other
    assert CreditGrant.objects.get(entry=soon_grant).remaining == 0
    assert CreditGrant.objects.get(entry=late_grant).remaining == D("2.5")
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.granted_balance, wallet.purchased_balance) == (D("12.5"), D("2.5"), D(10))
    assert ledger_verify()[0].ok


def test_wallet_grant_refuses_an_expiry_in_the_past(wallet):
    with pytest.raises(InvalidRequest) as exc:
        wallet_grant(wallet=wallet, amount=D(1), idempotency_key=new_key(),
                     expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert exc.value.param == "expires_at"


def test_grants_expire_removes_what_is_left_once(wallet, top_up):
    # given a grant of 5 of which 2 are spent, expiring in an hour
    top_up(wallet, "10")
    grant = wallet_grant(wallet=wallet, amount=D(5), idempotency_key=new_key(),
                         expires_at=timezone.now() + dt.timedelta(hours=1))
    wallet_charge(wallet=wallet, amount=D(2), idempotency_key=new_key())
    # when the hour has passed (twice)
    later = timezone.now() + dt.timedelta(hours=2)
    first = grants_expire(now=later)
    second = grants_expire(now=later)
    # then the 3 left expired once and purchased credit is untouched
    assert [(e.entry_type, e.amount) for e in first] == [("expiry", D(-3))]
    assert second == []
    lot = CreditGrant.objects.get(entry=grant)
    assert lot.remaining == 0 and lot.expired_at == later
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.granted_balance) == (D(10), D(0))
    assert ledger_verify()[0].ok


def test_grants_expire_spares_credit_backing_an_open_hold(wallet):
    # given only granted credit, 4 of it held
    wallet_grant(wallet=wallet, amount=D(5), idempotency_key=new_key(),
                 expires_at=timezone.now() + dt.timedelta(hours=1))
    hold = wallet_hold(wallet=wallet, amount=D(4), idempotency_key=new_key())
    later = timezone.now() + dt.timedelta(hours=2)
    # when it expires, then only the unheld 1 goes; available never drops below zero
    assert [e.amount for e in grants_expire(now=later)] == [D(-1)]
    assert wallet_balance_get(wallet_id=wallet.pk).available == 0
    # and once the hold is captured in part, the rest expires on the next run
    hold_capture(hold=hold, amount=D(3), idempotency_key=new_key())
    assert [e.amount for e in grants_expire(now=later)] == [D(-1)]
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.reserved, wallet.granted_balance) == (D(0), D(0), D(0))
    assert ledger_verify()[0].ok


def test_hold_reserves_then_partial_capture_releases_the_rest(wallet, top_up):
    # given
    top_up(wallet, "10")
    # when
    hold = wallet_hold(wallet=wallet, amount=D(6), idempotency_key=new_key(), feature_key="gpu")
    # then available drops, balance does not
    balance = wallet_balance_get(wallet_id=wallet.pk)
    assert (balance.balance, balance.reserved, balance.available) == (D(10), D(6), D(4))
    with pytest.raises(InsufficientFunds):
        wallet_charge(wallet=wallet, amount=D(5), idempotency_key=new_key())
    # when captured in part
    hold = hold_capture(hold=hold, amount=D("2.5"), idempotency_key=new_key())
    # then 2.5 is debited and 3.5 released
    assert (hold.status, hold.captured_amount, hold.released_amount) == ("captured", D("2.5"), D("3.5"))
    balance = wallet_balance_get(wallet_id=wallet.pk)
    assert (balance.balance, balance.reserved, balance.available) == (D("7.5"), D(0), D("7.5"))
    types = [(e.entry_type, e.amount, e.reserved_delta) for e in _entries(wallet)][1:]
    assert types == [("hold", 0, D(6)), ("hold_capture", D("-2.5"), D("-2.5")), ("hold_release", 0, D("-3.5"))]
    assert ledger_verify()[0].ok


def test_hold_capture_refuses_more_than_the_hold_and_a_second_capture(wallet, top_up):
    # given
    top_up(wallet, "10")
    hold = wallet_hold(wallet=wallet, amount=D(2), idempotency_key=new_key())
    # when / then
    with pytest.raises(InvalidAmount, match="exceeds the hold"):
        hold_capture(hold=hold, amount=D(3), idempotency_key=new_key())
    hold_capture(hold=hold, idempotency_key=new_key())
    with pytest.raises(HoldNotOpen):
        hold_capture(hold=hold, idempotency_key=new_key())
    with pytest.raises(HoldNotOpen):
        hold_release(hold=hold, idempotency_key=new_key())
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.reserved) == (D(8), D(0))


def test_hold_release_returns_the_whole_amount(wallet, top_up):
    # given
    top_up(wallet, "10")
    hold = wallet_hold(wallet=wallet, amount=D(7), idempotency_key=new_key())
    # when
    hold = hold_release(hold=hold, idempotency_key=new_key())
    # then
    assert (hold.status, hold.released_amount) == ("released", D(7))
    assert wallet_balance_get(wallet_id=wallet.pk).available == D(10)


def test_hold_refused_beyond_available(wallet, top_up):
    top_up(wallet, "1")
    with pytest.raises(InsufficientFunds):
        wallet_hold(wallet=wallet, amount=D(2), idempotency_key=new_key())
    assert not Hold.objects.exists()


def test_holds_release_expired_releases_open_holds_past_due(wallet, top_up):
    # given
    top_up(wallet, "10")
    wallet_hold(wallet=wallet, amount=D(3), idempotency_key=new_key(),
                expires_at=timezone.now() + dt.timedelta(minutes=5))
    # when
    released = holds_release_expired(now=timezone.now() + dt.timedelta(minutes=6))
    # then
    assert [h.status for h in released] == ["released"]
    assert wallet_balance_get(wallet_id=wallet.pk).reserved == 0


def test_wallet_open_is_one_live_wallet_per_owner(team, member):
    # when
    team_wallet = wallet_open(team=team)
    again = wallet_open(team=team)
    user_wallet = wallet_open(team=team, user=member)
    # then
    assert team_wallet.pk == again.pk
    assert user_wallet.pk != team_wallet.pk and user_wallet.user == member


def test_wallet_open_refuses_a_user_outside_the_team(team):
    from tests.factories import UserFactory

    with pytest.raises(InvalidRequest) as exc:
        wallet_open(team=team, user=UserFactory())
    assert exc.value.param == "user"


def test_billing_settings_update_validates_emails(team):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        billing_settings_update(team=team, notify_emails="ok@example.com, not-an-address")
    billing = billing_settings_update(team=team, notify_emails="a@example.com, b@example.com")
    assert billing.notify_email_list == ["a@example.com", "b@example.com"]


def test_idempotency_records_purge_keeps_at_least_a_day(wallet):
    # given
    wallet_top_up(wallet=wallet, amount=D(1), idempotency_key="old")
    # when / then
    with pytest.raises(InvalidRequest):
        idempotency_records_purge(older_than=dt.timedelta(hours=1))
    assert idempotency_records_purge(now=timezone.now()) == 0
    assert idempotency_records_purge(now=timezone.now() + dt.timedelta(hours=25)) == 1
