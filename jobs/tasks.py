"""The jobs app's own periodic task: retrying the jobs of workers that died.

A worker killed half-way (``kill -9``, a machine lost) leaves its job in ``doing``. Procrastinate
knows it by the worker's missing heartbeat; this task, on the ``periodic`` queue every minute, puts
those jobs back to ``todo`` so another worker retries them (Procrastinate's documented recipe for
stalled jobs). Every product job is idempotent, so the retry has one effect.
"""

from __future__ import annotations

from procrastinate.contrib.django import app

from . import queues

#: A worker whose heartbeat (every 10 s) is older than this is taken for dead.
STALLED_AFTER_SECONDS = 30


@app.periodic(cron="* * * * *", periodic_id="retry_stalled_jobs")
@app.task(queue=queues.PERIODIC, name="jobs.tasks.retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context, timestamp: int) -> None:
    """Put back to ``todo`` the jobs whose worker stopped sending heartbeats."""
    for stalled in await context.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS):
        await context.app.job_manager.retry_job(stalled)
