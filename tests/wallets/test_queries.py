"""The work of one charge is pinned: a change that adds a query to the hot path fails here.

On PostgreSQL a charge is BEGIN, one statement that claims the idempotency key and locks the wallet
(with its team and billing settings), one that inserts the entry, stores the wallet's totals and
records the result, and COMMIT. On SQLite the same steps run one ORM statement each.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.wallets.conftest import new_key
from wallets import services
from wallets.models import IdempotencyRecord, LedgerEntry, Wallet
from wallets.selectors import ledger_verify

pytestmark = pytest.mark.django_db

D = Decimal

#: BEGIN, claim + lock, entry + totals + record, COMMIT.
POSTGRES_QUERIES_PER_CHARGE = 4
#: BEGIN (savepoint-free atomic), claim, lock, entry, wallet, record, COMMIT.
SQLITE_QUERIES_PER_CHARGE = 7


def _queries_per_charge() -> int:
    return POSTGRES_QUERIES_PER_CHARGE if connection.vendor == "postgresql" else SQLITE_QUERIES_PER_CHARGE


def _charge(wallet, amount="1", key=None):
    with CaptureQueriesContext(connection) as queries:
        entry = services.wallet_charge(wallet=wallet, amount=D(amount), idempotency_key=key or new_key("q"),
                                       feature_key="bench")
    return entry, queries


def test_wallet_charge_runs_a_fixed_number_of_queries(team, wallet, top_up):
    # given a funded wallet of a team with explicit billing settings (read with the wallet, not apart)
    services.billing_settings_update(team=team, warning_threshold_type="absolute", warning_threshold_value=D(1),
                                     notify_emails="finance@example.com")
    wallet = top_up(wallet, "100")

    # when it is charged twice (the second charge has nothing warmed up by the first to rely on)
    first, q1 = _charge(wallet)
    second, q2 = _charge(wallet)

    # then each charge took the pinned number of queries and the ledger is right
    assert len(q1) == len(q2) == _queries_per_charge(), [q["sql"][:80] for q in q2]
    wallet.refresh_from_db()
    assert wallet.balance == D(98) and second.balance_after == D(98)
    assert all(check.ok for check in ledger_verify())


def test_wallet_charge_of_a_team_without_billing_settings_takes_the_same_queries(wallet, top_up):
    # given a team on the default settings (no BillingSettings row)
    wallet = top_up(wallet, "5")
    # when
    entry, queries = _charge(wallet, "5")
    # then the defaults apply (block on zero: exactly the balance may be spent) without another query
    assert len(queries) == _queries_per_charge()
    assert entry.balance_after == 0


def test_wallet_charge_records_the_result_it_replays(wallet, top_up):
    # given
    wallet = top_up(wallet, "10")
    # when
    entry, _ = _charge(wallet, "2.5", key="pinned-key")
    replayed, replay_queries = _charge(wallet, "2.5", key="pinned-key")

    # then the record names the entry and keeps the API's JSON with the entry's own id and figures
    record = IdempotencyRecord.objects.get(key="pinned-key")
    assert (record.result_type, record.result_id) == ("ledger_entry", str(entry.pk))
    assert record.response["id"] == entry.pk
    assert D(record.response["amount"]) == D("-2.5")
    assert D(record.response["balance_after"]) == D("7.5")
    # and the replay is the same entry, moving nothing
    assert replayed.pk == entry.pk
    assert LedgerEntry.objects.filter(wallet=wallet, entry_type="charge").count() == 1
    assert Wallet.objects.get(pk=wallet.pk).balance == D("7.5")
    # BEGIN, the claim (with the lock on PostgreSQL), the stored record, the entry, COMMIT
    assert len(replay_queries) == 5, [q["sql"][:80] for q in replay_queries]


def test_wallet_charge_spending_grants_adds_the_lots_queries_only(wallet, top_up):
    # given one granted lot of 3 beside purchased credit
    wallet = top_up(wallet, "10")
    services.wallet_grant(wallet=wallet, amount=D(3), idempotency_key=new_key())
    wallet.refresh_from_db()

    # when a charge spends part of the lot
    _, queries = _charge(wallet, "2")

    # then two more queries (read the lots, update the one spent), and the lot is down by 2
    assert len(queries) == _queries_per_charge() + 2
    wallet.refresh_from_db()
    assert wallet.granted_balance == D(1) and wallet.balance == D(11)
    assert all(check.ok for check in ledger_verify())


def test_wallet_charge_crossing_the_threshold_mails_once_after_commit(team, wallet, top_up, django_capture_on_commit_callbacks):
    # given a warning below 5 and a wallet of 6
    services.billing_settings_update(team=team, warning_threshold_type="absolute", warning_threshold_value=D(5),
                                     notify_emails="finance@example.com")
    wallet = top_up(wallet, "6")

    # when two charges go below the threshold
    with django_capture_on_commit_callbacks(execute=True):
        _charge(wallet, "2")
    with django_capture_on_commit_callbacks(execute=True):
        _charge(wallet, "1")

    # then one e-mail, and the wallet remembers it warned
    assert len(mail.outbox) == 1
    assert Wallet.objects.get(pk=wallet.pk).low_balance_warned is True
