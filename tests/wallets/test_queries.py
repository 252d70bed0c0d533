"""The work of one money movement is pinned: a change that adds a query to the hot path fails here.

A charge is one statement, a call of the SQL function ``wallets_charge`` (migration 0006),
wrapped in a savepoint when the caller has a transaction open (as these tests do). Every other
movement runs through the ORM under the wallet's row lock: claim the key, lock the wallet, insert
the entry, store the wallet's totals, record the result.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing_site.models import IdempotencyRecord
from teams.services import billing_settings_update
from tests.jobs.mail import queued_mails
from tests.wallets.conftest import new_key
from wallets.models import LedgerEntry, Wallet
from wallets.selectors import ledger_verify
from wallets.services.charges import wallet_charge
from wallets.services.posting import wallet_grant, wallet_top_up
from wallets.services.usage_events import usage_event_charge

pytestmark = pytest.mark.django_db

D = Decimal

#: SAVEPOINT, SELECT wallets_charge(…), RELEASE SAVEPOINT (in autocommit: the SELECT alone).
QUERIES_PER_CHARGE = 3
#: SAVEPOINT, claim the key, lock the wallet, insert the entry, store the totals, ask whether a
#: webhook endpoint wants the wallet.topped_up event (none here), record the result, RELEASE SAVEPOINT.
QUERIES_PER_TOP_UP = 8


def _charge(wallet, amount="1", key=None):
    with CaptureQueriesContext(connection) as queries:
        entry = wallet_charge(wallet=wallet, amount=D(amount), idempotency_key=key or new_key("q"),
                              feature_key="bench")
    return entry, queries


def test_wallet_charge_runs_a_fixed_number_of_queries(team, wallet, top_up):
    # given a funded wallet of a team with explicit billing settings (read with the wallet, not apart)
    billing_settings_update(team=team, warning_threshold_type="absolute", warning_threshold_value=D(1),
                            notify_emails="finance@example.com")
    wallet = top_up(wallet, "100")

    # when it is charged twice (the second charge has nothing warmed up by the first to rely on)
    first, q1 = _charge(wallet)
    second, q2 = _charge(wallet)

    # then each charge took the pinned number of queries and the ledger is right
    assert len(q1) == len(q2) == QUERIES_PER_CHARGE, [q["sql"][:80] for q in q2]
    wallet.refresh_from_db()
    assert wallet.balance == D(98) and second.balance_after == D(98)
    assert all(check.ok for check in ledger_verify())


def test_wallet_charge_of_a_team_without_billing_settings_takes_the_same_queries(wallet, top_up):
    # given a team on the default settings (no BillingSettings row)
    wallet = top_up(wallet, "5")
    # when
    entry, queries = _charge(wallet, "5")
    # then the defaults apply (block on zero: exactly the balance may be spent) without another query
    # but the two that ask whether a webhook endpoint wants the wallet.low_balance and
    # wallet.depleted events (none does: nothing more is read)
    assert len(queries) == QUERIES_PER_CHARGE + 2, [q["sql"][:90] for q in queries]
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
    # the charge's statements, less those that write, plus reading the stored record and the entry
    assert len(replay_queries) == 5, [q["sql"][:80] for q in replay_queries]


def test_wallet_charge_spending_grants_adds_the_lots_queries_only(wallet, top_up):
    # given one granted lot of 3 beside purchased credit
    wallet = top_up(wallet, "10")
    wallet_grant(wallet=wallet, amount=D(3), idempotency_key=new_key())
    wallet.refresh_from_db()

    # when a charge spends part of the lot
    _, queries = _charge(wallet, "2")

    # then no more statements (the function spends the lot), and the lot is down by 2
    assert len(queries) == QUERIES_PER_CHARGE
    wallet.refresh_from_db()
    assert wallet.granted_balance == D(1) and wallet.balance == D(11)
    assert all(check.ok for check in ledger_verify())


def test_wallet_charge_crossing_the_threshold_queues_one_mail(team, wallet, top_up, django_capture_on_commit_callbacks):
    # given a warning below 5 and a wallet of 6
    billing_settings_update(team=team, warning_threshold_type="absolute", warning_threshold_value=D(5),
                            notify_emails="finance@example.com")
    wallet = top_up(wallet, "6")

    # when two charges go below the threshold
    with django_capture_on_commit_callbacks(execute=True):
        _charge(wallet, "2")
    with django_capture_on_commit_callbacks(execute=True):
        _charge(wallet, "1")

    # then one e-mail queued (the mail queue sends it once the charge commits), and the wallet
    # remembers it warned
    assert len(queued_mails()) == 1
    assert Wallet.objects.get(pk=wallet.pk).low_balance_warned is True


@pytest.mark.django_db(transaction=True)
def test_wallet_charge_in_autocommit_is_one_statement_on_postgresql(wallet, top_up):
    # given a funded wallet and no transaction open (a service or API worker calling the service)
    wallet = top_up(wallet, "10")
    assert not connection.in_atomic_block

    # when it is charged
    entry, queries = _charge(wallet, "4")

    # then one statement did it all: no BEGIN, no COMMIT, nothing after; and it is committed
    assert len(queries) == 1 and queries[0]["sql"].startswith("SELECT * FROM wallets_charge(")
    assert entry.balance_after == D(6)
    assert Wallet.objects.get(pk=wallet.pk).balance == D(6)
    assert all(check.ok for check in ledger_verify())


def test_usage_event_charge_takes_as_many_queries_for_four_items_as_for_one(team, wallet, top_up, catalog):
    # given a funded team wallet and the demo catalog
    from tests.wallets.conftest import CALL_ITEMS

    top_up(wallet, "10")

    def charge(items):
        with CaptureQueriesContext(connection) as queries:
            event = usage_event_charge(team=team, user=None, feature_key="call", external_reference_id="",
                                       idempotency_key=new_key("event"), items=items)
        return event, queries

    # when one call is charged with one item, then another with the four of the example call
    one, one_queries = charge(CALL_ITEMS[:1])
    four, four_queries = charge(CALL_ITEMS)

    # then the items are priced with one catalog query and recorded with one insert: the count does
    # not grow with the items, and the four-item call costs the example's 0.037 USD
    assert len(four_queries) == len(one_queries), [q["sql"][:60] for q in four_queries]
    assert four.total == D("0.037") and four.status == "charged"
    assert four.items.count() == 4 and all(item.usage_record_id for item in four.items.all())


def test_wallet_top_up_takes_one_statement_per_step_under_the_row_lock(team, wallet):
    # given a team with explicit billing settings (read with the locked wallet, not apart)
    billing_settings_update(team=team, warning_threshold_type="absolute", warning_threshold_value=D(1))

    # when the wallet is topped up
    with CaptureQueriesContext(connection) as queries:
        entry = wallet_top_up(wallet=wallet, amount=D("12.5"), idempotency_key=new_key("top-up"))

    # then one statement per step, the lock taken on the wallet row only, and the ledger is right
    assert len(queries) == QUERIES_PER_TOP_UP, [q["sql"][:80] for q in queries]
    assert "FOR UPDATE OF" in queries[2]["sql"]
    assert entry.balance_after == D("12.5") and Wallet.objects.get(pk=wallet.pk).balance == D("12.5")
    assert all(check.ok for check in ledger_verify())
