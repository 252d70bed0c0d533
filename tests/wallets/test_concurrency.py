"""Concurrency on PostgreSQL: row locks keep balances exact, idempotency keys give one effect.

Real threads, each with its own database connection (closed at the end of the thread). The server
allows 100 connections and other suites share it, so at most 50 threads run at once; they start
together behind a barrier so the requests really race.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from billing_site.models import IdempotencyRecord
from tests.wallets.conftest import new_key
from wallets.errors import InsufficientFunds
from wallets.models import LedgerEntry, Wallet
from wallets.selectors import ledger_verify
from wallets.services.charges import wallet_charge
from wallets.services.holds import hold_capture, wallet_hold
from wallets.services.posting import wallet_top_up

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
THREADS = 50


def _race(calls: int, threads: int, fn):
    """Run ``fn(i)`` for ``i`` in ``range(calls)`` on ``threads`` threads started together."""
    barrier = threading.Barrier(threads)

    def worker(worker_id: int):
        results = []
        try:
            barrier.wait(timeout=30)
            for i in range(worker_id, calls, threads):
                try:
                    results.append(fn(i))
                except Exception as exc:  # noqa: BLE001 - the test sorts outcomes
                    results.append(exc)
        finally:
            connection.close()
        return results

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [r for rs in pool.map(worker, range(threads)) for r in rs]


def test_concurrent_charges_never_overdraw_a_wallet(wallet):
    # given 50 in a wallet that blocks on zero balance
    wallet_top_up(wallet=wallet, amount=D(50), idempotency_key=new_key())
    wallet = Wallet.objects.get(pk=wallet.pk)

    # when 100 charges of 1 race on 50 threads
    results = _race(100, THREADS, lambda i: wallet_charge(
        wallet=wallet, amount=D(1), idempotency_key=f"race-{i}"))

    # then exactly 50 succeed, the rest are refused for funds, and the ledger agrees
    charged = [r for r in results if isinstance(r, LedgerEntry)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert (len(charged), len(refused)) == (50, 50), [r for r in results if isinstance(r, Exception)][:3]
    wallet.refresh_from_db()
    assert wallet.balance == 0
    balances = LedgerEntry.objects.filter(wallet=wallet).values_list("balance_after", flat=True)
    assert min(balances) == 0
    assert all(check.ok for check in ledger_verify())


def test_concurrent_calls_with_one_idempotency_key_have_one_effect(wallet):
    # given
    wallet_top_up(wallet=wallet, amount=D(50), idempotency_key=new_key())
    wallet = Wallet.objects.get(pk=wallet.pk)

    # when 50 callers send the same charge with the same key at once
    results = _race(THREADS, THREADS, lambda i: wallet_charge(
        wallet=wallet, amount=D("2.5"), idempotency_key="one-key"))

    # then one entry, and every caller got it
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    assert {r.pk for r in results} == {LedgerEntry.objects.get(wallet=wallet, entry_type="charge").pk}
    assert IdempotencyRecord.objects.filter(key="one-key").count() == 1
    wallet.refresh_from_db()
    assert wallet.balance == D("47.5")
    assert all(check.ok for check in ledger_verify())


def test_concurrent_holds_and_captures_keep_reserved_exact(wallet):
    # given 30 in the wallet
    wallet_top_up(wallet=wallet, amount=D(30), idempotency_key=new_key())
    wallet = Wallet.objects.get(pk=wallet.pk)

    # when 50 threads each try to hold 1 and capture half of it
    def hold_and_capture(i):
        hold = wallet_hold(wallet=wallet, amount=D(1), idempotency_key=f"hold-{i}")
        return hold_capture(hold=hold, amount=D("0.5"), idempotency_key=f"capture-{i}")

    results = _race(THREADS, THREADS, hold_and_capture)

    # then every hold ended captured, nothing stays reserved, and balance + captures tie out
    captured = [r for r in results if not isinstance(r, Exception)]
    assert all(isinstance(r, InsufficientFunds) for r in results if isinstance(r, Exception))
    wallet.refresh_from_db()
    assert wallet.reserved == 0
    assert wallet.balance == D(30) - D("0.5") * len(captured)
    assert all(check.ok for check in ledger_verify())
