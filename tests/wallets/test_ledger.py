"""The ledger is append-only (model, queryset, admin, and on PostgreSQL a trigger); verify_ledger."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from tests.factories import UserFactory
from tests.wallets.conftest import new_key
from wallets.errors import LedgerImmutable
from wallets.models import LedgerEntry, Wallet
from wallets.services.charges import wallet_charge
from wallets.services.holds import hold_capture, wallet_hold
from wallets.services.posting import wallet_adjust, wallet_grant, wallet_refund, wallet_top_up
from wallets.services.wallets import wallet_open

D = Decimal


@pytest.fixture
def entry(wallet):
    return wallet_top_up(wallet=wallet, amount=D(10), idempotency_key=new_key())


@pytest.mark.django_db
def test_ledger_entry_save_of_existing_row_is_refused(entry):
    # when / then
    entry.amount = D(1000)
    with pytest.raises(LedgerImmutable, match="append-only"):
        entry.save()
    assert LedgerEntry.objects.get(pk=entry.pk).amount == D(10)


@pytest.mark.django_db
def test_ledger_entry_delete_is_refused(entry):
    with pytest.raises(LedgerImmutable):
        entry.delete()
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.django_db
def test_ledger_queryset_update_and_delete_are_refused(entry):
    with pytest.raises(LedgerImmutable):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=D(1))
    with pytest.raises(LedgerImmutable):
        LedgerEntry.objects.filter(pk=entry.pk).delete()
    assert LedgerEntry.objects.get(pk=entry.pk).amount == D(10)


@pytest.mark.django_db
def test_ledger_admin_offers_no_add_change_or_delete(client, entry):
    # given a superuser
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    change_url = reverse("admin:wallets_ledgerentry_change", args=[entry.pk])
    # when
    changelist = client.get(reverse("admin:wallets_ledgerentry_changelist"))
    posted = client.post(change_url, {"amount": "1000", "entry_type": "top_up"})
    deleted = client.post(reverse("admin:wallets_ledgerentry_delete", args=[entry.pk]), {"post": "yes"})
    added = client.get(reverse("admin:wallets_ledgerentry_add"))
    bulk = client.post(reverse("admin:wallets_ledgerentry_changelist"),
                       {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"})
    # then the list shows, nothing else is allowed, the row is unchanged
    assert changelist.status_code == 200
    assert b"delete_selected" not in changelist.content
    assert posted.status_code == 403
    assert deleted.status_code == 403
    assert added.status_code == 403
    assert bulk.status_code in (200, 302)
    assert LedgerEntry.objects.get(pk=entry.pk).amount == D(10)


@pytest.mark.django_db
def test_verify_ledger_passes_on_ledgers_built_by_services(wallet, team, member):
    # given every kind of movement, on two wallets
    wallet_top_up(wallet=wallet, amount=D(10), idempotency_key=new_key())
    wallet_grant(wallet=wallet, amount=D(2), idempotency_key=new_key(),
                 expires_at=timezone.now() + dt.timedelta(hours=1))
    charge = wallet_charge(wallet=wallet, amount=D(3), idempotency_key=new_key())
    wallet_refund(entry=charge, amount=D(1), idempotency_key=new_key())
    hold = wallet_hold(wallet=wallet, amount=D(4), idempotency_key=new_key())
    hold_capture(hold=hold, amount=D(1), idempotency_key=new_key())
    wallet_hold(wallet=wallet, amount=D(1), idempotency_key=new_key())
    wallet_adjust(wallet=wallet, amount=D(-1), idempotency_key=new_key(), description="fix")
    other = wallet_open(team=team, user=member)
    wallet_top_up(wallet=other, amount=D(5), idempotency_key=new_key())
    out = StringIO()
    # when
    call_command("verify_ledger", stdout=out)
    # then
    assert "2 wallets, 10 ledger entries checked: 0 with mismatches" in out.getvalue()


@pytest.mark.django_db
def test_verify_ledger_detects_a_tampered_balance_and_exits_non_zero(wallet):
    # given a ledger of 10 and a stored balance changed behind the services' back
    wallet_top_up(wallet=wallet, amount=D(10), idempotency_key=new_key())
    Wallet.objects.filter(pk=wallet.pk).update(balance=D(1000))
    out = StringIO()
    # when / then
    with pytest.raises(CommandError, match="1 with mismatches") as exc:
        call_command("verify_ledger", stdout=out)
    assert exc.value.returncode == 1
    assert f"wallet {wallet.pk}: MISMATCH" in out.getvalue()
    assert "balance 1000" in out.getvalue() and "ledger sum 10" in out.getvalue()


@pytest.mark.django_db
def test_expire_grants_command_writes_expiry_entries(wallet):
    # given a grant that expired a second ago
    wallet_grant(wallet=wallet, amount=D(2), idempotency_key=new_key(),
                 expires_at=timezone.now() + dt.timedelta(milliseconds=50))
    import time

    time.sleep(0.1)
    out = StringIO()
    # when
    call_command("expire_grants", stdout=out)
    # then
    assert "Expired 1 grant lot(s), 2" in out.getvalue()
    wallet.refresh_from_db()
    assert wallet.balance == 0
    assert LedgerEntry.objects.filter(wallet=wallet, entry_type="expiry", amount=D(-2)).exists()


# --- PostgreSQL: the trigger -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ledger_trigger_rejects_update_and_delete_through_the_orm(entry):
    # _base_manager bypasses the model's own refusal: only the trigger stands in the way
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry._base_manager.filter(pk=entry.pk).update(amount=D(1000), balance_after=D(1000))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry._base_manager.filter(pk=entry.pk).delete()
    assert LedgerEntry.objects.get(pk=entry.pk).amount == D(10)


@pytest.mark.django_db(transaction=True)
def test_ledger_trigger_rejects_update_and_delete_in_raw_sql(entry):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE wallets_ledgerentry SET description = 'edited' WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM wallets_ledgerentry WHERE id = %s", [entry.pk])
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), min(description) FROM wallets_ledgerentry WHERE id = %s", [entry.pk])
        assert cursor.fetchone() == (1, "")


@pytest.mark.django_db(transaction=True)
def test_ledger_check_rejects_a_broken_before_after_chain(wallet):
    # an insert that bypasses save() still cannot break balance_after = balance_before + amount
    with pytest.raises(DatabaseError, match="ledger_entry_balance_chain"), transaction.atomic():
        LedgerEntry.objects.bulk_create([LedgerEntry(
            wallet=wallet, entry_type="top_up", amount=D(1), balance_before=D(0), balance_after=D(5), currency="USD",
        )])
