"""The references of allocated costs (run, rule, team, user), enforced in the database by statement-level
triggers (``chargeback/migrations/0012_allocated_cost_references.sql``) instead of row-by-row foreign keys."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, connections, transaction

from chargeback.models import AllocatedCost
from tests.factories import AllocatedCostFactory, AllocationRuleFactory, AllocationRunFactory, TeamFactory, UserFactory

D = Decimal


@pytest.mark.django_db
@pytest.mark.parametrize("column", ["run_id", "rule_id", "team_id", "user_id"])
def test_an_allocated_cost_naming_no_parent_is_refused(column):
    # given a run, a rule, a team and a user that exist
    fields = {"run_id": AllocationRunFactory().pk, "rule_id": AllocationRuleFactory().pk,
              "team_id": TeamFactory().pk, "user_id": UserFactory().pk}
    # when a row names an id that is no row of the parent table
    fields[column] = 987654
    # then the database refuses it, naming the column
    with pytest.raises(IntegrityError, match=rf"\({column}\)=\(987654\) is not present"), transaction.atomic():
        AllocatedCost.objects.create(amount=D("1"), currency="USD", **fields)


@pytest.mark.django_db
def test_a_copy_of_many_rows_is_checked_as_a_whole():
    # given many rows of which one names a missing team, written with COPY as the allocation does
    run, team = AllocationRunFactory(), TeamFactory()
    rows = [(run.pk, team.pk, "1")] * 500 + [(run.pk, 987654, "1")]
    # then the whole statement is refused
    with pytest.raises(IntegrityError, match=r"\(team_id\)=\(987654\)"), transaction.atomic():
        with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(
            "COPY chargeback_allocatedcost (run_id, team_id, amount, currency, service, unit, record_count, details) "
            "FROM STDIN"
        ) as copy:
            for run_id, team_id, amount in rows:
                copy.write_row((run_id, team_id, amount, "USD", "", "", 1, "{}"))
    assert not AllocatedCost.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("table", ["teams_team", "auth_user", "chargeback_allocationrule", "chargeback_allocationrun"])
def test_deleting_a_parent_still_named_is_refused_in_the_database(table):
    # given an allocated cost naming a run, a rule, a team and a user
    row = AllocatedCostFactory(rule=AllocationRuleFactory(), user=UserFactory())
    parent_id = {"teams_team": row.team_id, "auth_user": row.user_id, "chargeback_allocationrule": row.rule_id,
                 "chargeback_allocationrun": row.run_id}[table]
    # when the parent is deleted in SQL, past the ORM's PROTECT
    with pytest.raises(IntegrityError, match=f'delete on table "{table}".*key \\(id\\)=\\({parent_id}\\)'), \
            transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [parent_id])


@pytest.mark.django_db
def test_deleting_a_run_deletes_its_rows_first():
    # given a run with rows
    row = AllocatedCostFactory()
    # when the run is deleted through the ORM (on_delete=CASCADE)
    row.run.delete()
    # then its rows went with it, and the database allowed it
    assert not AllocatedCost.objects.exists()


def _delete_team(team_id, outcome, started):
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            started.set()
            cursor.execute("DELETE FROM teams_team WHERE id = %s", [team_id])
        outcome.append("deleted")
    except IntegrityError as exc:
        outcome.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_team_named_by_rows_being_written_cannot_be_deleted_until_they_commit():
    # given a transaction that has written a row naming a team (and so locked the team)
    team, run = TeamFactory(), AllocationRunFactory()
    outcome, started = [], threading.Event()
    with transaction.atomic():
        AllocatedCost.objects.create(run=run, team=team, amount=D("1"), currency="USD")
        # when another transaction deletes the team
        deleter = threading.Thread(target=_delete_team, args=(team.pk, outcome, started))
        deleter.start()
        started.wait(timeout=10)
        time.sleep(0.5)
        # then it waits for the lock
        assert deleter.is_alive() and outcome == []
    deleter.join(timeout=30)
    # and once the row is committed, the deletion is refused
    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
    assert AllocatedCost.objects.filter(team=team).count() == 1


def _write_row(run_id, team_id, outcome, started):
    try:
        with transaction.atomic():
            started.set()
            AllocatedCost.objects.create(run_id=run_id, team_id=team_id, amount=D("1"), currency="USD")
        outcome.append("written")
    except IntegrityError as exc:
        outcome.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_row_naming_a_team_deleted_meanwhile_is_refused():
    # given a transaction that has deleted a team but not committed yet
    team, run = TeamFactory(), AllocationRunFactory()
    outcome, started = [], threading.Event()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM teams_team WHERE id = %s", [team.pk])
        # when another transaction writes a row naming it
        writer = threading.Thread(target=_write_row, args=(run.pk, team.pk, outcome, started))
        writer.start()
        started.wait(timeout=10)
        time.sleep(0.5)
        # then the writer waits for the deletion to end
        assert writer.is_alive() and outcome == []
    writer.join(timeout=30)
    # and once it is committed, the row is refused: no allocated cost names a missing team
    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
    assert "(team_id)" in str(outcome[0])
    assert not AllocatedCost.objects.exists()
