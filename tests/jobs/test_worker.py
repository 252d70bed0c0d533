"""The job engine itself: deferred jobs run on a real worker, progress and outcome are recorded."""

from __future__ import annotations

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
