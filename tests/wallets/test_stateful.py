"""A hypothesis state machine of random wallet operations against a model of the expected figures.

After every step: the stored balance and reserved equal the ledger's sums and the model's figures,
the before/after chain is unbroken (``ledger_verify``), and available credit never goes below the
floor of a team that blocks on zero balance (0).
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule, run_state_machine_as_test

from tests.factories import TeamFactory
from wallets.errors import InsufficientFunds
from wallets.models import CreditGrant
from wallets.selectors import ledger_verify, wallet_balance_get
from wallets.services.charges import wallet_charge
from wallets.services.holds import hold_capture, hold_release, wallet_hold
from wallets.services.posting import grants_expire, wallet_grant, wallet_refund, wallet_top_up
from wallets.services.wallets import wallet_open

D = Decimal
# Cents, as people write amounts.
amounts = st.decimals(min_value=D("0.01"), max_value=D("40"), places=2)
_machines = itertools.count()


class WalletMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    debits = Bundle("debits")

    def __init__(self):
        super().__init__()
        n = next(_machines)
        self.wallet = wallet_open(team=TeamFactory(slug=f"stateful-{n}", currency="USD"))
        self.keys = itertools.count()
        self.balance = D(0)
        self.reserved = D(0)
        self.refundable: dict[int, Decimal] = {}
        self.now = timezone.now()

    def key(self) -> str:
        return f"sm-{self.wallet.pk}-{next(self.keys)}"

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved

    @rule(amount=amounts)
    def top_up(self, amount):
        wallet_top_up(wallet=self.wallet, amount=amount, idempotency_key=self.key())
        self.balance += amount

    @rule(amount=amounts, expires=st.booleans())
    def grant(self, amount, expires):
        expires_at = self.now + dt.timedelta(days=1) if expires else None
        wallet_grant(wallet=self.wallet, amount=amount, idempotency_key=self.key(), expires_at=expires_at)
        self.balance += amount

    @rule(target=debits, amount=amounts)
    def charge(self, amount):
        try:
            entry = wallet_charge(wallet=self.wallet, amount=amount, idempotency_key=self.key())
        except InsufficientFunds:
            assert amount > self.available
            return None
        assert amount <= self.available
        self.balance -= amount
        self.refundable[entry.pk] = amount
        return entry

    @rule(target=holds, amount=amounts)
    def hold(self, amount):
        try:
            hold = wallet_hold(wallet=self.wallet, amount=amount, idempotency_key=self.key())
        except InsufficientFunds:
            assert amount > self.available
            return None
        self.reserved += amount
        return hold

    @rule(hold=consumes(holds), share=st.sampled_from([D("0.25"), D("0.5"), D(1)]))
    def capture(self, hold, share):
        if hold is None:
            return
        amount = max((hold.amount * share).quantize(D("0.01")), D("0.01"))
        hold_capture(hold=hold, amount=amount, idempotency_key=self.key())
        self.reserved -= hold.amount
        self.balance -= amount

    @rule(hold=consumes(holds))
    def release(self, hold):
        if hold is None:
            return
        hold_release(hold=hold, idempotency_key=self.key())
        self.reserved -= hold.amount

    @rule(entry=debits, share=st.sampled_from([D("0.5"), D(1)]))
    def refund(self, entry, share):
        if entry is None or self.refundable[entry.pk] <= 0:
            return
        amount = max((self.refundable[entry.pk] * share).quantize(D("0.01")), D("0.01"))
        amount = min(amount, self.refundable[entry.pk])
        wallet_refund(entry=entry, amount=amount, idempotency_key=self.key())
        self.refundable[entry.pk] -= amount
        self.balance += amount

    @rule()
    def expire(self):
        self.now += dt.timedelta(days=2)
        expected = sum(
            (g.remaining for g in CreditGrant.objects.filter(wallet=self.wallet, expires_at__lte=self.now)), D(0)
        )
        entries = grants_expire(now=self.now)
        expired = -sum((e.amount for e in entries if e.wallet_id == self.wallet.pk), D(0))
        assert expired <= expected
        self.balance -= expired

    @invariant()
    def ledger_agrees(self):
        figures = wallet_balance_get(wallet_id=self.wallet.pk)
        assert (figures.balance, figures.reserved) == (self.balance, self.reserved)
        [check] = ledger_verify(wallet_ids=[self.wallet.pk])
        assert check.ok, check.problems

    @invariant()
    def available_never_below_floor(self):
        assert wallet_balance_get(wallet_id=self.wallet.pk).available >= 0
        assert 0 <= self.wallet.__class__.objects.get(pk=self.wallet.pk).granted_balance <= max(self.balance, D(0))


@pytest.mark.django_db
def test_wallet_state_machine_keeps_ledger_and_floor():
    run_state_machine_as_test(
        WalletMachine,
        settings=settings(max_examples=30, stateful_step_count=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
