"""The team models' move to the teams app keeps every row, key and grant, forwards and backwards.

The database is migrated back to the state before the move, rows are written with the models of
that state, and the move is run forwards and then backwards, reading the rows through the models
of each state.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("chargeback", "0006_usage_user_index_only_where_a_user_is_set"),
    ("wallets", "0007_ledger_entry_wallet_index_covered_by_newest"),
    ("invoices", "0004_issued_invoices_immutable_on_postgresql"),
    ("teams", None),
    ("billing_site", None),
]
#: Where each moved model lives before and after the move.
HOMES = {"Team": ("chargeback", "teams"), "TeamMembership": ("chargeback", "teams"),
         "ApiKey": ("chargeback", "teams"), "BillingSettings": ("wallets", "teams"),
         "IdempotencyRecord": ("wallets", "billing_site")}


def _migrate(targets):
    """Migrate to ``targets`` and return the historical apps of the state reached."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    # An app migrated to zero (None) is simply absent from the state of the others' targets.
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _model(apps, name: str, *, moved: bool):
    return apps.get_model(HOMES[name][1 if moved else 0], name)


def _charge_function_body() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('wallets_charge'::regproc)")
        return cursor.fetchone()[0]


def _content_type_ids(apps, *, moved: bool) -> dict[str, int]:
    ContentType = apps.get_model("contenttypes", "ContentType")
    return {
        name: ContentType.objects.get(app_label=HOMES[name][1 if moved else 0], model=name.lower()).pk
        for name in HOMES
    }


def _assert_rows(apps, ids: dict, *, moved: bool) -> None:
    Team = _model(apps, "Team", moved=moved)
    team = Team.objects.get(pk=ids["team"])
    assert (team.slug, team.currency, team.parent_id) == ("acme", "EUR", ids["parent"])
    membership = _model(apps, "TeamMembership", moved=moved).objects.get(pk=ids["membership"])
    assert (membership.team_id, membership.user_id, membership.role) == (team.pk, ids["user"], "manager")
    key = _model(apps, "ApiKey", moved=moved).objects.get(pk=ids["api_key"])
    assert (key.team_id, key.prefix, key.key_hash) == (team.pk, "abcd1234", "f" * 64)
    billing = _model(apps, "BillingSettings", moved=moved).objects.get(pk=ids["billing"])
    assert (billing.team_id, billing.billing_model, billing.credit_limit) == (team.pk, "postpaid", Decimal("250"))
    record = _model(apps, "IdempotencyRecord", moved=moved).objects.get(pk=ids["record"])
    assert (record.scope, record.key, record.response) == (f"team:{team.pk}", "key-1", {"ok": True})
    # The other apps' rows still reach the team through their foreign keys, both ways.
    wallet = apps.get_model("wallets", "Wallet").objects.select_related("team__billing_settings").get(pk=ids["wallet"])
    assert wallet.team.slug == "acme" and wallet.team.billing_settings.pk == billing.pk
    usage = apps.get_model("chargeback", "UsageRecord").objects.select_related("team").get(pk=ids["usage"])
    assert usage.team.pk == team.pk
    assert list(Team.objects.filter(memberships__user_id=ids["user"]).values_list("pk", flat=True)) == [team.pk]
    assert set(Team.objects.get(pk=ids["parent"]).children.values_list("pk", flat=True)) == {team.pk}


@pytest.mark.django_db(transaction=True)
def test_team_models_move_to_teams_with_their_rows_forwards_and_backwards():
    latest = _latest()
    content_types_now = _content_type_ids(_migrate(latest), moved=True)
    try:
        # given the database before the move, with a team and everything that hangs on it
        apps = _migrate(BEFORE)
        assert "wallets_billingsettings" in _charge_function_body()
        assert _content_type_ids(apps, moved=False) == content_types_now
        User = apps.get_model("auth", "User")
        user = User.objects.create(username="mover")
        Team = _model(apps, "Team", moved=False)
        parent = Team.objects.create(name="Group", slug="group", currency="EUR")
        team = Team.objects.create(name="Acme", slug="acme", currency="EUR", parent=parent)
        ids = {
            "user": user.pk, "parent": parent.pk, "team": team.pk,
            "membership": _model(apps, "TeamMembership", moved=False).objects.create(
                team=team, user=user, role="manager").pk,
            "api_key": _model(apps, "ApiKey", moved=False).objects.create(
                team=team, name="agent", prefix="abcd1234", key_hash="f" * 64).pk,
            "billing": _model(apps, "BillingSettings", moved=False).objects.create(
                team=team, billing_model="postpaid", credit_limit=Decimal("250"), payment_terms_days=30).pk,
            "record": _model(apps, "IdempotencyRecord", moved=False).objects.create(
                scope=f"team:{team.pk}", key="key-1", operation="top_up", fingerprint="0" * 64,
                response={"ok": True}).pk,
            "wallet": apps.get_model("wallets", "Wallet").objects.create(team=team, currency="EUR").pk,
            "usage": apps.get_model("chargeback", "UsageRecord").objects.create(
                team=team, resource_type="llm", cost=Decimal("1.5"), currency="EUR",
                occurred_at=dt.datetime(2024, 9, 15, tzinfo=dt.UTC), billing_period_start=dt.date(2024, 9, 1),
                source="api", idempotency_key="u-1").pk,
        }
        _assert_rows(apps, ids, moved=False)

        # when the move runs forwards, then the rows are the teams app's, on its tables
        apps = _migrate(latest)
        _assert_rows(apps, ids, moved=True)
        assert _model(apps, "Team", moved=True)._meta.db_table == "teams_team"
        assert _content_type_ids(apps, moved=True) == content_types_now
        body = _charge_function_body()
        assert "teams_billingsettings" in body and "billing_site_idempotencyrecord" in body
        assert "wallets_billingsettings" not in body and "wallets_idempotencyrecord" not in body

        # when it runs backwards, then the rows are back in the old apps' tables
        apps = _migrate(BEFORE)
        _assert_rows(apps, ids, moved=False)
        assert _model(apps, "Team", moved=False)._meta.db_table == "chargeback_team"
        assert _content_type_ids(apps, moved=False) == content_types_now
        assert "wallets_billingsettings" in _charge_function_body()
    finally:
        _migrate(latest)
