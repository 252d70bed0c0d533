"""Background jobs on Procrastinate: the queues, the ``job`` decorator, progress and the admin's Jobs page.

The ground floor of the jobs: it imports no billing app; each app keeps its tasks in its own
``tasks.py`` (found by ``procrastinate.contrib.django``) and uses :func:`jobs.tasks.job` from here.
See docs/jobs.md.
"""
