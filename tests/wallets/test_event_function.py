"""``usage_event_charge`` in one call of ``wallets_usage_event_charge`` must do what the step-by-step oracle does.

Hypothesis draws a catalog (global prices, the teams' overrides, an expired one, an item without a
price, a price in another currency), a team's billing settings (allowed providers included) and a
sequence of top-ups, grants, usage events, replays, reused keys, freezes and price changes; the same
sequence runs on two teams with the same settings and overrides, one charged through the service
(``wallets.services.usage_events.usage_event_charge``: one call of the SQL function in the common
case, the steps otherwise), one through the oracle (``tests.wallets.event_oracle``: today's steps
through the ORM). After every step both give the same outcome: the same event, items, usage records
and ledger entry, or the same error and message; the same stored idempotent response; the same
balance, reserved, granted credit and lots, warning flag and e-mails. What the service returned is
what the database holds, item by item, as the API serializes it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_site.errors import BillingError
from billing_site.models import IdempotencyRecord
from chargeback.models import Price, UsageRecord
from teams.models import Team
from teams.selectors import billing_settings_get
from teams.services import billing_settings_update
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory
from tests.wallets.event_oracle import event_charge_in_python
from wallets.api.serializers import UsageEventSerializer
from wallets.models import CreditGrant, UsageEvent, Wallet
from wallets.selectors import ledger_verify
from wallets.services.posting import wallet_grant, wallet_top_up
from wallets.services.usage_events import usage_event_charge
from wallets.services.wallets import wallet_freeze, wallet_open, wallet_unfreeze

pytestmark = pytest.mark.django_db

D = Decimal
_teams = itertools.count()

#: Five catalog items: four priced by the drawn catalog, the last never (PriceNotFound).
ITEMS = [("llm", "openai", "gpt-4o", "token"), ("stt", "deepgram", "nova-2", "second"),
         ("tts", "elevenlabs", "turbo", "character"), ("telephony", "twilio", "pstn", "minute"),
         ("gpu", "runpod", "a100", "hour")]
unit_prices = st.sampled_from([D(0), D("0.000002"), D("0.0125"), D("0.3"), D("1.000000000001"), D("0.00000000003"),
                               D("7")])
quantities = st.sampled_from([D(0), D(1), D(7), D(1000), D("0.5"), D("123.456789"), D(10) ** 9])
catalog = st.fixed_dictionaries({
    "global": st.lists(unit_prices, min_size=4, max_size=4),
    "overrides": st.lists(st.one_of(st.none(), st.tuples(unit_prices, st.booleans())), min_size=4, max_size=4),
    "euro_item": st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
})
billing = st.fixed_dictionaries({
    "billing_model": st.sampled_from(["prepaid_team", "postpaid", "unlimited", "prepaid_user"]),
    "block_on_zero_balance": st.booleans(),
    "credit_limit": st.sampled_from([D(0), D("10"), D("25.5")]),
    "warning_threshold_type": st.sampled_from(["percent_of_last_top_up", "absolute"]),
    "warning_threshold_value": st.sampled_from([D(0), D("10"), D("33.333333")]),
    "notify_emails": st.sampled_from(["", "finance@example.com"]),
    "allowed_providers": st.sampled_from([[], ["openai", "deepgram", "elevenlabs", "twilio", "runpod"],
                                          ["OpenAI", "Deepgram", "ElevenLabs", "Twilio"], ["openai"]]),
})
event_items = st.lists(st.tuples(st.integers(min_value=0, max_value=4), quantities), min_size=1, max_size=4)
cents = st.decimals(min_value=D("0.01"), max_value=D("60"), places=2)
operations = st.lists(st.one_of(
    st.tuples(st.just("top_up"), cents),
    st.tuples(st.just("grant"), cents, st.booleans()),
    st.tuples(st.just("event"), event_items, st.booleans(), st.sampled_from(["", "call-1"])),
    st.tuples(st.just("event"), event_items, st.booleans(), st.just("")),
    st.tuples(st.just("replay"), st.integers(min_value=0, max_value=20)),
    st.tuples(st.just("reuse_key"), st.integers(min_value=0, max_value=20), event_items),
    st.tuples(st.just("freeze"), st.booleans()),
    st.tuples(st.just("price_change"), st.integers(min_value=0, max_value=3), unit_prices),
), min_size=1, max_size=12)


def _items(example: int) -> list[tuple[str, str, str, str]]:
    """:data:`ITEMS` with models of their own for one example (the examples share the test's transaction)."""
    return [(category, provider, f"{model}-{example}", unit) for category, provider, model, unit in ITEMS]


def _catalog_create(drawn: dict, team: Team | None, at: dt.datetime, items: list) -> None:
    """The global rows (team None) or ``team``'s overrides of the drawn catalog."""
    for i, item in enumerate(items[:4]):
        currency = "EUR" if drawn["euro_item"] == i else "USD"
        if team is None:
            Price.objects.create(category=item[0], provider=item[1], model=item[2], unit=item[3],
                                 unit_price=drawn["global"][i], currency=currency, valid_from=at)
        elif drawn["overrides"][i] is not None:
            unit_price, expired = drawn["overrides"][i]
            Price.objects.create(team=team, category=item[0], provider=item[1], model=item[2], unit=item[3],
                                 unit_price=unit_price, currency=currency, valid_from=at,
                                 valid_to=at + dt.timedelta(seconds=1) if expired else None)


class Side:
    """One team, its member, the wallet its events debit, and the charge service it is charged through."""

    def __init__(self, name: str, charge, settings_: dict | None, drawn: dict, at: dt.datetime, items: list):
        self.team = TeamFactory(slug=f"event-fn-{name}-{next(_teams)}", currency="USD")
        self.user = TeamMembershipFactory(team=self.team, user=UserFactory()).user
        if settings_ is not None:
            billing_settings_update(team=self.team, **settings_)
        _catalog_create(drawn, self.team, at, items)
        self.items = items
        uses_user_wallets = billing_settings_get(team=Team.objects.get(pk=self.team.pk)).uses_user_wallets
        self.wallet = wallet_open(team=self.team, user=self.user if uses_user_wallets else None)
        self.charge_fn = charge
        self.events: list[tuple[str, list, bool, str]] = []
        self.steps = 0

    def key(self, label: str) -> str:
        self.steps += 1
        return f"{label}-{self.steps}"  # keys are scoped by team: both sides use the same ones

    def charge(self, key: str, items: list, with_user: bool, reference: str):
        lines = [{"category": self.items[i][0], "provider": self.items[i][1], "model": self.items[i][2],
                  "unit": self.items[i][3], "quantity": q} for i, q in items]
        return self.charge_fn(team=Team.objects.get(pk=self.team.pk), user=self.user if with_user else None,
                              feature_key="fn-test", external_reference_id=reference, idempotency_key=key,
                              items=lines, metadata={"n": len(lines)})

    def normal(self, text: str) -> str:
        """``text`` with this side's team, user and wallet named alike on both sides, and no times."""
        return (re.sub(r" at \d{4}-\d\d-\d\dT[0-9:.+]+: ", " at TIME: ", text).replace(repr(self.team.slug), "'T'").replace(f"team {self.team.slug}", "team T")
                .replace(f"Wallet {self.wallet.pk} ", "Wallet W ").replace(f"wallet {self.wallet.pk} ", "wallet W ")
                .replace(f"User {self.user.pk} ", "User U ").replace(f"user {self.user} ", "user U "))

    def run(self, op: tuple, captured) -> tuple:
        kind, *args = op
        outbox = len(mail.outbox)
        try:
            with captured(execute=True):
                result = self._run(kind, *args)
        except BillingError as exc:
            event = getattr(exc, "event", None)
            result = (type(exc).__name__, self.normal(str(exc)), getattr(exc, "param", None),
                      getattr(exc, "available", None), self.event_figures(event, returned=False) if event else None)
        wallet = Wallet.objects.get(pk=self.wallet.pk)
        lots = list(CreditGrant.objects.filter(wallet=wallet).order_by("pk").values_list("remaining", flat=True))
        mails = [(m.subject.split(":")[0], self.normal(m.body.split("\n\n", 1)[1])) for m in mail.outbox[outbox:]]
        return (result, wallet.balance, wallet.reserved, wallet.granted_balance, wallet.low_balance_warned, lots,
                mails)

    def _run(self, kind: str, *args):
        if kind == "top_up":
            wallet_top_up(wallet=self.wallet, amount=args[0], idempotency_key=self.key("top-up"))
            return "ok"
        if kind == "grant":
            expires_at = timezone.now() + dt.timedelta(days=1) if args[1] else None
            wallet_grant(wallet=self.wallet, amount=args[0], idempotency_key=self.key("grant"), expires_at=expires_at)
            return "ok"
        if kind == "freeze":
            (wallet_freeze if args[0] else wallet_unfreeze)(wallet=self.wallet)
            return "ok"
        if kind == "event":
            key = self.key("event")
            self.events.append((key, *args))
            return self.event_figures(self.charge(key, *args))
        if not self.events:
            return "nothing to replay"
        key, items, with_user, reference = self.events[args[0] % len(self.events)]
        if kind == "replay":
            return self.event_figures(self.charge(key, items, with_user, reference))
        return self.event_figures(self.charge(key, args[1] if args[1] != items else [*items, (0, D(1))],
                                              with_user, reference))

    def event_figures(self, event: UsageEvent, *, returned: bool = True) -> tuple:
        """What a user sees of ``event``, ids named alike; checks the stored rows are what was returned."""
        stored = UsageEvent.objects.get(pk=event.pk)
        data = UsageEventSerializer(event).data
        if returned:  # the API's answer, built from what the service returned, is the database's
            assert data == UsageEventSerializer(stored).data
        entry = stored.ledger_entry
        records = UsageRecord.objects.filter(usage_event_item__event=stored).order_by("usage_event_item__position")
        response = IdempotencyRecord.objects.get(scope=f"team:{self.team.pk}", key=stored.idempotency_key).response
        entry_figures = None
        if entry is not None:
            assert (entry.reference_type, entry.reference_id) == ("usage_event", str(stored.pk))
            entry_figures = (entry.entry_type, entry.amount, entry.balance_before, entry.balance_after,
                             entry.reserved_after, entry.currency, entry.idempotency_key, entry.feature_key,
                             entry.description.replace(f"Usage event {stored.pk}", "Usage event E"), entry.created_by_id == self.user.pk,
                             entry.wallet_id == self.wallet.pk)
            assert response["ledger_entry"] == entry.pk
        assert response["id"] == stored.pk
        return (
            stored.status, stored.total, stored.currency, stored.rejection_code, self.normal(stored.rejection_reason),
            stored.user_id == self.user.pk, stored.wallet_id == self.wallet.pk, stored.feature_key,
            stored.external_reference_id, stored.metadata, getattr(event, "replayed", None),
            [(i["position"], i["category"], i["provider"], i["model"], i["unit"], i["quantity"], i["unit_price"],
              i["cost"], i["currency"], i["usage_record"] is not None) for i in data["items"]],
            [(r.resource_type, r.provider, r.model, r.unit, r.quantity, r.cost, r.currency, r.source,
              r.occurred_at == stored.created_at, r.billing_period_start, r.feature_key, r.external_reference,
              r.idempotency_key.rsplit("-", 1)[1], r.metadata == {"usage_event_id": stored.pk},
              r.user_id == (self.user.pk if stored.user_id else None), r.status) for r in records],
            entry_figures,
            {k: self.normal(v) if isinstance(v, str) else v for k, v in response.items()
             if k not in ("id", "ledger_entry")},
        )


def _differences(a, b) -> list:
    """The innermost parts where two outcomes differ, for the failure message."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        return [d for x, y in zip(a, b) for d in _differences(x, y)]
    return [] if a == b else [(a, b)]


def _run_on_both(settings_: dict | None, drawn: dict, ops: list[tuple], captured) -> None:
    # given two teams with the same settings and overrides over one global catalog
    at, items = timezone.now() - dt.timedelta(days=1), _items(next(_teams))
    _catalog_create(drawn, None, at, items)
    by_function = Side("sql", usage_event_charge, settings_, drawn, at, items)
    by_python = Side("py", event_charge_in_python, settings_, drawn, at, items)
    for step, op in enumerate(ops):
        if op[0] == "price_change":  # one global price changes for both, from now on
            item, now = items[op[1]], timezone.now()
            old = Price.objects.get(team=None, category=item[0], provider=item[1], model=item[2], unit=item[3],
                                    valid_to=None)
            Price.objects.filter(pk=old.pk).update(valid_to=now)
            Price.objects.create(category=item[0], provider=item[1], model=item[2], unit=item[3], unit_price=op[2],
                                 currency=old.currency, valid_from=now)
            continue
        # when the same operation runs on both
        seen_sql = by_function.run(op, captured)
        seen_py = by_python.run(op, captured)
        # then both saw the same, and both ledgers are whole
        assert seen_sql == seen_py, f"step {step}: {op}: {_differences(seen_sql, seen_py)}"
    assert all(check.ok for check in ledger_verify(wallet_ids=[by_function.wallet.pk, by_python.wallet.pk]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(settings_=st.one_of(st.none(), billing), drawn=catalog, ops=operations)
def test_event_function_does_what_the_oracle_does(settings_, drawn, ops, django_capture_on_commit_callbacks):
    # inside the test's transaction: the function runs in a savepoint
    _run_on_both(settings_, drawn, ops, django_capture_on_commit_callbacks)


#: The common case and its neighbours, which random draws may miss: a charge in one call, its replay,
#: a price change seen by the next call, a refusal for funds recorded and replayed, a threshold crossed.
_CALL = [(0, D(1000)), (1, D(7)), (2, D("0.5")), (3, D(1))]
EDGES = [
    (None, [("top_up", D(50)), ("event", _CALL, False, "call-1"), ("replay", 0), ("price_change", 0, D("0.3")),
            ("event", _CALL, False, ""), ("reuse_key", 1, [(0, D(1))]), ("event", [(0, D(10) ** 9)], False, ""),
            ("replay", 2)]),
    ({"billing_model": "prepaid_team", "block_on_zero_balance": True, "credit_limit": D(0),
      "warning_threshold_type": "absolute", "warning_threshold_value": D(45), "notify_emails": "finance@example.com",
      "allowed_providers": []},
     [("top_up", D(50)), ("event", [(3, D(1))], False, ""), ("event", [(3, D(1))], False, ""),
      ("event", [(3, D(1))], False, "")]),
    ({"billing_model": "prepaid_user", "block_on_zero_balance": True, "credit_limit": D(0),
      "warning_threshold_type": "percent_of_last_top_up", "warning_threshold_value": D(10), "notify_emails": "",
      "allowed_providers": []},
     [("event", _CALL, False, ""), ("top_up", D(20)), ("event", _CALL, True, ""), ("replay", 1)]),
]
_EDGE_CATALOG = {"global": [D("0.000006"), D("0.0125"), D("0.3"), D("7")], "overrides": [None] * 4, "euro_item": None}


@pytest.mark.parametrize(("settings_", "ops"), EDGES)
def test_event_function_agrees_with_the_oracle_on_the_edges(settings_, ops, django_capture_on_commit_callbacks):
    _run_on_both(settings_, _EDGE_CATALOG, ops, django_capture_on_commit_callbacks)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("settings_", "ops"), EDGES)
def test_event_function_agrees_with_the_oracle_in_autocommit(settings_, ops, django_capture_on_commit_callbacks):
    # no transaction open: the function's statement is the transaction
    _run_on_both(settings_, _EDGE_CATALOG, ops, django_capture_on_commit_callbacks)


def test_usage_event_charge_is_one_call_and_its_answer_reads_nothing(team, wallet, top_up, catalog):
    # given a funded team wallet and the example call's catalog
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.wallets.conftest import CALL_ITEMS

    top_up(wallet, "10")
    # when the four-item call is charged and its answer serialized
    with CaptureQueriesContext(connection) as queries:
        event = usage_event_charge(team=team, user=None, feature_key="call", external_reference_id="",
                                   idempotency_key="one-call", items=CALL_ITEMS)
        data = UsageEventSerializer(event).data
    # then one statement did it all (the test's savepoint around it aside) and the answer is the call's
    sent = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(sent) == 1 and sent[0].startswith("SELECT * FROM wallets_usage_event_charge("), sent
    assert (data["status"], data["total"], len(data["items"])) == ("charged", "0.037000000000", 4)


def test_usage_event_charge_sees_a_price_change_at_once(team, wallet, top_up, catalog):
    # given a charge priced from the catalog
    from tests.wallets.conftest import CALL_ITEMS

    top_up(wallet, "10")
    first = usage_event_charge(team=team, user=None, feature_key="call", external_reference_id="",
                               idempotency_key="before", items=CALL_ITEMS[:1])
    # when the item's price changes now
    old = Price.objects.get(pk=first.items.all()[0].price_id)
    now = timezone.now()
    Price.objects.filter(pk=old.pk).update(valid_to=now)
    new = Price.objects.create(category=old.category, provider=old.provider, model=old.model, unit=old.unit,
                               unit_price=old.unit_price * 2, currency=old.currency, valid_from=now)
    second = usage_event_charge(team=team, user=None, feature_key="call", external_reference_id="",
                                idempotency_key="after", items=CALL_ITEMS[:1])
    # then the next charge is priced at the new price
    [item] = second.items.all()
    assert (item.price_id, item.unit_price, second.total) == (new.pk, new.unit_price, first.total * 2)
