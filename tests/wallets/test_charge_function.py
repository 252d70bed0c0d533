"""``wallet_charge`` is the SQL function ``wallets_charge``; it must do what the Python oracle does.

Hypothesis draws a team's billing settings and a sequence of top-ups, grants, charges, replays,
reused keys and freezes; the same sequence runs on two wallets of two teams with the same
settings, one charged through the function (``wallets.services.charges.wallet_charge``), one through
the oracle (``tests.wallets.charge_oracle.charge_in_python``: the same rules step by step through
the ORM and the posting helpers). After every step both give the same outcome: the same entry
figures or the same error and message, the same balance, reserved, granted credit, granted lots
and warning flag, and the same e-mails.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_site.errors import BillingError
from teams.services import billing_settings_update
from tests.factories import TeamFactory
from tests.jobs.mail import queued_mails
from tests.wallets.charge_oracle import charge_in_python
from wallets.models import CreditGrant, LedgerEntry, Wallet
from wallets.selectors import ledger_verify
from wallets.services.charges import wallet_charge
from wallets.services.posting import wallet_grant, wallet_top_up
from wallets.services.wallets import wallet_freeze, wallet_open, wallet_unfreeze

pytestmark = pytest.mark.django_db

D = Decimal
_teams = itertools.count()

amounts = st.decimals(min_value=D("0.000000000001"), max_value=D("60"), places=12)
cents = st.decimals(min_value=D("0.01"), max_value=D("60"), places=2)
billing = st.fixed_dictionaries({
    "billing_model": st.sampled_from(["prepaid_team", "postpaid", "unlimited"]),
    "block_on_zero_balance": st.booleans(),
    "credit_limit": st.sampled_from([D(0), D("10"), D("25.5")]),
    "warning_threshold_type": st.sampled_from(["percent_of_last_top_up", "absolute"]),
    "warning_threshold_value": st.sampled_from([D(0), D("10"), D("33.333333"), D("20")]),
    "notify_emails": st.sampled_from(["", "finance@example.com"]),
})
operations = st.lists(st.one_of(
    st.tuples(st.just("top_up"), cents),
    st.tuples(st.just("grant"), cents, st.booleans()),
    st.tuples(st.just("charge"), st.one_of(amounts, cents)),
    st.tuples(st.just("charge"), st.one_of(amounts, cents)),
    st.tuples(st.just("replay"), st.integers(min_value=0, max_value=20)),
    st.tuples(st.just("reuse_key"), st.integers(min_value=0, max_value=20), cents),
    st.tuples(st.just("freeze"), st.booleans()),
), min_size=1, max_size=25)


class Side:
    """One wallet and the charge service it is charged through."""

    def __init__(self, name: str, charge, settings_: dict | None):
        team = TeamFactory(slug=f"charge-fn-{name}-{next(_teams)}", currency="USD")
        if settings_ is not None:
            billing_settings_update(team=team, **settings_)
        self.wallet = wallet_open(team=team)
        self.charge_fn = charge
        self.keys: list[tuple[str, Decimal]] = []

    def refreshed(self) -> Wallet:
        return Wallet.objects.get(pk=self.wallet.pk)

    def key(self, label: str) -> str:
        return f"{label}-{len(self.keys)}"  # keys are scoped by team: both sides use the same ones

    def charge(self, amount: Decimal, key: str):
        return self.charge_fn(wallet=self.wallet, amount=amount, idempotency_key=key, feature_key="fn-test",
                              description="equivalence", reference_type="test", reference_id="42",
                              created_by=None, metadata={"n": str(amount)})

    def run(self, op: tuple, captured) -> tuple:
        """Run ``op``; return what a user would see of it, with this wallet's id left out."""
        kind, *args = op
        outbox = len(queued_mails())
        try:
            with captured(execute=True):
                result = self._run(kind, *args)
        except BillingError as exc:
            result = (type(exc).__name__, str(exc).replace(f"wallet {self.wallet.pk} ", "wallet W ")
                      .replace(f"Wallet {self.wallet.pk} ", "Wallet W "), getattr(exc, "available", None))
        wallet = self.refreshed()
        lots = list(CreditGrant.objects.filter(wallet=wallet).order_by("pk").values_list("remaining", flat=True))
        mails = [(m["subject"].split(":")[0], m["body"].split("\n\n", 1)[1]) for m in queued_mails()[outbox:]]
        return (result, wallet.balance, wallet.reserved, wallet.granted_balance, wallet.low_balance_warned, lots,
                mails)

    def _run(self, kind: str, *args):
        if kind == "top_up":
            wallet_top_up(wallet=self.wallet, amount=args[0], idempotency_key=self.key("top-up"))
            self.keys.append(("", D(0)))
            return "ok"
        if kind == "grant":
            expires_at = timezone.now() + timezone.timedelta(days=1) if args[1] else None
            wallet_grant(wallet=self.wallet, amount=args[0], idempotency_key=self.key("grant"),
                         expires_at=expires_at)
            self.keys.append(("", D(0)))
            return "ok"
        if kind == "freeze":
            (wallet_freeze if args[0] else wallet_unfreeze)(wallet=self.wallet)
            return "ok"
        if kind == "charge":
            key = self.key("charge")
            self.keys.append((key, args[0]))
            return _entry_figures(self.charge(args[0], key))
        charged = [(key, amount) for key, amount in self.keys if key]
        if not charged:
            return "nothing to replay"
        key, amount = charged[args[0] % len(charged)]
        if kind == "replay":
            return _entry_figures(self.charge(amount, key))
        return _entry_figures(self.charge(args[1] if args[1] != amount else amount + D("0.01"), key))


def _entry_figures(entry: LedgerEntry) -> tuple:
    stored = LedgerEntry.objects.get(pk=entry.pk)
    returned = (entry.entry_type, entry.amount, entry.balance_before, entry.balance_after, entry.reserved_after,
                entry.currency, entry.idempotency_key, entry.feature_key, entry.description,
                entry.reference_type, entry.reference_id, entry.metadata, entry.replayed)
    # what the service returned is what the ledger holds
    assert returned[:-1] == (stored.entry_type, stored.amount, stored.balance_before, stored.balance_after,
                             stored.reserved_after, stored.currency, stored.idempotency_key,
                             stored.feature_key, stored.description, stored.reference_type, stored.reference_id,
                             stored.metadata)
    return returned


_MAILED = {"block_on_zero_balance": True, "credit_limit": D(0), "notify_emails": "finance@example.com"}
#: Edges random draws rarely hit, as (settings, operations): landing exactly on the threshold (not a
#: crossing), then crossing it; a percent threshold that needs rounding to 12 places; a postpaid team
#: spending into its limit; a threshold whose product has more digits than Decimal's default context.
EDGES = [
    ({**_MAILED, "billing_model": "prepaid_team", "warning_threshold_type": "absolute",
      "warning_threshold_value": D(20)},
     [("top_up", D(30)), ("charge", D(10)), ("charge", D("0.01")), ("charge", D(1))]),
    ({**_MAILED, "billing_model": "prepaid_team", "warning_threshold_type": "percent_of_last_top_up",
      "warning_threshold_value": D("33.333333")},
     [("top_up", D("0.07")), ("charge", D("0.046666666")), ("charge", D("0.000000000001")),
      ("charge", D("0.023333333"))]),
    ({**_MAILED, "billing_model": "postpaid", "credit_limit": D(10), "warning_threshold_type": "absolute",
      "warning_threshold_value": D(0)},
     [("top_up", D(5)), ("charge", D(15)), ("charge", D("0.01")), ("top_up", D(1)), ("charge", D(1))]),
    ({**_MAILED, "billing_model": "prepaid_team", "warning_threshold_type": "percent_of_last_top_up",
      "warning_threshold_value": D("94.338570904412")},
     [("top_up", D("522543169273883.776354259453")), ("charge", D("29583411022279.310186335212")),
      ("charge", D("0.000000000001"))]),
]


def _run_on_both(settings_: dict | None, ops: list[tuple], captured) -> None:
    # given two wallets of two teams with the same billing settings (or none: the defaults)
    by_function = Side("sql", wallet_charge, settings_)
    by_python = Side("py", charge_in_python, settings_)
    for step, op in enumerate(ops):
        # when the same operation runs on both
        seen_sql = by_function.run(op, captured)
        seen_py = by_python.run(op, captured)
        # then both saw the same, and both ledgers are whole
        assert seen_sql == seen_py, f"step {step}: {op}"
    assert all(check.ok for check in ledger_verify(wallet_ids=[by_function.wallet.pk, by_python.wallet.pk]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(settings_=st.one_of(st.none(), billing), ops=operations)
def test_charge_function_does_what_the_oracle_does(settings_, ops, django_capture_on_commit_callbacks):
    # inside the test's transaction: the function runs in a savepoint
    _run_on_both(settings_, ops, django_capture_on_commit_callbacks)


@pytest.mark.parametrize(("settings_", "ops"), EDGES)
def test_charge_function_agrees_with_the_oracle_on_the_edges(settings_, ops, django_capture_on_commit_callbacks):
    _run_on_both(settings_, ops, django_capture_on_commit_callbacks)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("settings_", "ops"), EDGES)
def test_charge_function_agrees_with_the_oracle_in_autocommit(settings_, ops, django_capture_on_commit_callbacks):
    # no transaction open: the function's statement is the transaction, e-mails go at once
    _run_on_both(settings_, ops, django_capture_on_commit_callbacks)


def test_charge_function_refuses_a_missing_wallet_as_the_oracle_does(team):
    # given a wallet object whose row does not exist
    ghost = Wallet(pk=987654321, team=team, currency="USD")

    # when it is charged through either path, then both raise Wallet.DoesNotExist and nothing is kept
    for charge in (wallet_charge, charge_in_python):
        with pytest.raises(Wallet.DoesNotExist):
            charge(wallet=ghost, amount=D(1), idempotency_key=f"ghost-{charge.__name__}", feature_key="", description="",
                   reference_type="", reference_id="", created_by=None, metadata={})
    assert not LedgerEntry.objects.filter(wallet_id=987654321).exists()
