"""Jobs that crash and jobs that collide, on real worker processes and PostgreSQL.

A worker killed (SIGKILL) in the middle of a billing run or of a FOCUS import leaves nothing
half-written, since each writes in one transaction that PostgreSQL rolls back with the dead
connection; the job, found stalled by its missing heartbeat, is retried by another worker and ends
with the figures a clean run gives. Two billing runs of one period never run at once.
"""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest
from django.db import connection
from django.db.models import Sum
from procrastinate.contrib.django.models import ProcrastinateJob

from chargeback.focus.generator import write_focus_file
from chargeback.focus.uploads import focus_upload_path
from chargeback.models import AllocatedCost, AllocationRun, UsageRecord
from chargeback.periods import BillingPeriod
from chargeback.services.allocation import _COMMIT_LOCK_KEY
from chargeback.services.focus_import import focus_import, focus_upload_request
from invoices.errors import BillingRunBusy
from invoices.models import Invoice
from invoices.services.billing_run import billing_run_execute, billing_run_request
from jobs.models import JobProgress
from jobs.workers import database_url
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

OCTOBER = BillingPeriod.month("2026-10")


def _wait(condition, *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _status(job_id: int) -> str:
    return ProcrastinateJob.objects.get(pk=job_id).status


@pytest.fixture
def user():
    return UserFactory(username="fiona")


@pytest.fixture
def october_usage(tmp_path):
    """October 2026: 400 generated FOCUS rows over the generator's teams, imported."""
    generated = write_focus_file(tmp_path / "october.csv", rows=400, period="2026-10", seed=7)
    focus_import(path=generated.path, create_teams=True)
    return generated


@pytest.fixture
def commit_lock():
    """Another session holding the allocation commit lock: a billing run that reaches its commit
    waits there, inside its transaction, with its allocation written but not committed."""
    blocker = psycopg.connect(database_url(connection.settings_dict), autocommit=True)
    blocker.execute("SELECT pg_advisory_lock(%s)", [_COMMIT_LOCK_KEY])

    def waiting() -> bool:
        # A bigint advisory key shows as (classid, objid) = its high and low 32 bits.
        return blocker.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = %s AND objid = %s",
            [_COMMIT_LOCK_KEY >> 32, _COMMIT_LOCK_KEY & 0xFFFFFFFF]).fetchone()[0] > 0

    def release() -> None:
        blocker.execute("SELECT pg_advisory_unlock_all()")

    blocker.waiting, blocker.release = waiting, release
    yield blocker
    blocker.close()


def test_worker_killed_half_way_through_a_billing_run_leaves_nothing_and_the_retry_ties_out(
        worker_process, october_usage, commit_lock, user):
    # given the tie-out a clean run of October gives
    expected = billing_run_execute(period=OCTOBER, dry_run=True).tie_out

    # when a worker takes the billing run and is killed while its transaction is open (the run and
    # its allocations written, the commit waiting for its lock)
    record = billing_run_request(period=OCTOBER, created_by=user)
    worker = worker_process.start(queues=["billing"])
    _wait(commit_lock.waiting, what="the billing run to reach its commit")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    commit_lock.release()

    # then nothing of it is in the database, and the job is left running with a dead worker
    assert not AllocationRun.objects.exists() and not AllocatedCost.objects.exists()
    assert not Invoice.objects.exists()
    assert _status(record.job_id) == "doing"

    # when the stalled job is found (its worker's heartbeat stops) and another worker retries it
    time.sleep(2.5)
    assert worker_process.retry_stalled(seconds_since_heartbeat=2) == [record.job_id]
    worker_process.start(queues=["billing", "pdf"])
    worker_process.wait_for(record.job_id, timeout=120)

    # then one committed run with the tie-out of a clean run, its drafts, and their PDFs
    record.refresh_from_db()
    run = AllocationRun.objects.get()
    assert run.status == AllocationRun.Status.COMMITTED
    assert record.result["tie_out"] == expected and f"Allocation run #{run.pk}" in record.result["message"]
    drafts = Invoice.objects.filter(allocation_run=run)
    assert drafts.exists()
    _wait(lambda: not drafts.filter(pdf_sha256="").exists(), timeout=120, what="the PDFs")
    assert ProcrastinateJob.objects.get(pk=record.job_id).attempts == 2


def test_worker_killed_half_way_through_an_import_leaves_nothing_and_the_retry_imports_the_file_whole(
        worker_process, user):
    # given an uploaded FOCUS file of 80,000 rows
    token = "f" * 32
    path = focus_upload_path(token)
    path.parent.mkdir(parents=True, exist_ok=True)
    generated = write_focus_file(path, rows=80_000, period="2026-10", seed=11)
    record = focus_upload_request(task="chargeback.tasks.focus_upload_import", title="Import of october.csv",
                                  created_by=user, token=token, file_name="october.csv",
                                  team_tag="business_unit", subaccount_fallback=False, skip_bad_rows=False,
                                  total_rows=generated.rows)

    # when the worker is killed once the import has read some 10,000 rows (its transaction open)
    worker = worker_process.start(queues=["imports"])
    _wait(lambda: JobProgress.objects.get(pk=record.pk).done >= 10_000, what="the import to be under way")
    assert _status(record.job_id) == "doing"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()

    # then no usage row is written, and the upload is still there
    assert not UsageRecord.objects.exists() and path.exists()

    # when the stalled job is retried by another worker
    time.sleep(2.5)
    assert worker_process.retry_stalled(seconds_since_heartbeat=2) == [record.job_id]
    worker_process.start(queues=["imports"])
    worker_process.wait_for(record.job_id, timeout=180)

    # then every row is imported once, and the usage sums to the file's BilledCost exactly
    record.refresh_from_db()
    assert record.result["rows_imported"] == generated.rows
    assert UsageRecord.objects.count() == generated.rows
    assert UsageRecord.objects.aggregate(total=Sum("cost"))["total"] == generated.total_billed_cost
    assert not path.exists()


def test_two_billing_runs_of_one_period_never_run_at_once(worker_process, october_usage, commit_lock, user):
    # given a billing run of October running (held at its commit) on one of two workers
    first = billing_run_request(period=OCTOBER, render_pdfs=False, created_by=user)
    worker_process.start(queues=["billing"])
    worker_process.start(queues=["billing"])
    _wait(lambda: commit_lock.waiting() and _status(first.job_id) == "doing",
          what="the first run to reach its commit")

    # when a second one is requested: it is queued, and waits though a worker is free
    second = billing_run_request(period=OCTOBER, render_pdfs=False, created_by=user)
    time.sleep(2)
    assert (_status(first.job_id), _status(second.job_id)) == ("doing", "todo")

    # and a third, while the second waits, is refused with a clear message
    with pytest.raises(BillingRunBusy, match="already waiting to start"):
        billing_run_request(period=OCTOBER, render_pdfs=False, created_by=user)

    # when the first goes on, the second runs after it
    commit_lock.release()
    worker_process.wait_for(first.job_id)
    worker_process.wait_for(second.job_id)

    # then two runs were committed one after the other, the second superseding the first
    runs = list(AllocationRun.objects.order_by("pk"))
    assert [run.status for run in runs] == [AllocationRun.Status.SUPERSEDED, AllocationRun.Status.COMMITTED]
    assert runs[0].allocated_cost + runs[0].unallocated_cost == runs[0].total_cost == runs[1].total_cost
    assert Invoice.objects.filter(allocation_run=runs[1]).exists()
