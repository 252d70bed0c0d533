"""The job engine itself: deferred jobs run on a real worker, progress and outcome are recorded."""

from __future__ import annotations

import os

from procrastinate.contrib.django.models import ProcrastinateJob

from jobs.models import JobProgress
from jobs.progress import job_defer
from jobs.tasks import retry_stalled_jobs


def test_job_deferred_runs_on_an_in_process_worker(run_jobs):
    # given a job deferred by a committed transaction
    job_id = retry_stalled_jobs.defer(timestamp=0)

    # when a worker runs the periodic queue
    run_jobs(queues=["periodic"])

    # then the job is done
    assert ProcrastinateJob.objects.get(pk=job_id).status == "succeeded"


def test_job_runs_on_a_worker_process(worker_process):
    # given a worker process on the test database
    worker_process.start(queues=["periodic"])

    # when a job is deferred
    job_id = retry_stalled_jobs.defer(timestamp=0)

    # then the process runs it
    worker_process.wait_for(job_id)


def test_job_rolled_back_is_never_run(run_jobs):
    # given a job deferred in a transaction that rolls back
    from django.db import transaction

    try:
        with transaction.atomic():
            job_defer(retry_stalled_jobs, title="never", timestamp=0)
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass

    # then there is neither job nor progress row to run or show
    run_jobs(queues=["periodic"])
    # (the worker defers its own periodic jobs; none is the rolled-back one)
    assert not ProcrastinateJob.objects.filter(args={"timestamp": 0}).exists()
    assert not JobProgress.objects.exists()


def _backends(cursor) -> set[int]:
    cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
    return {pid for (pid,) in cursor.fetchall()}


def test_worker_keeps_its_database_connection_between_jobs_and_survives_losing_it(worker_process):
    from django.db import connection

    from invoices.tasks import mark_overdue_daily

    # given a worker process, idle, with the connections it polls with
    worker_process.start(queues=["periodic"])
    with connection.cursor() as cursor:
        worker_process.wait_for(retry_stalled_jobs.defer(timestamp=0))
        before = _backends(cursor)

        # when it runs a job that reads and writes through the ORM
        worker_process.wait_for(mark_overdue_daily.defer(timestamp=1))

        # then the job's connection is kept for the next job, not closed after this one
        kept = _backends(cursor) - before
        assert kept, "the worker closed its database connection after the job"

        # and when that connection is lost while the worker is idle (a server restart, an idle
        # timeout), the next job still succeeds on a new one
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(kept)])
        worker_process.wait_for(mark_overdue_daily.defer(timestamp=2))
        assert _backends(cursor) - before - kept


def test_only_job_workers_keep_connections_by_default():
    import subprocess
    import sys

    from django.conf import settings

    probe = ("import django, os, sys; sys.argv = ['manage.py'] + sys.argv[1:]; "
             "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'billing_site.settings'); django.setup(); "
             "from django.conf import settings; print(settings.DATABASES['default']['CONN_MAX_AGE'])")
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_CONN_MAX_AGE"}

    def conn_max_age(*argv: str) -> int:
        run = subprocess.run([sys.executable, "-c", probe, *argv], cwd=settings.BASE_DIR, env=env,
                             capture_output=True, text=True, check=True)
        return int(run.stdout.strip())

    assert conn_max_age("procrastinate", "worker", "--queues=pdf") == 300
    assert conn_max_age("runserver") == 0
