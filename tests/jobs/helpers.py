"""Helpers for tests of jobs: run the committed queued jobs in this process (the ``run_jobs``
fixture's work, for helpers that get no fixtures)."""

from __future__ import annotations

from procrastinate.contrib.django import app

from jobs.progress import progress_connections_close


def run_queued_jobs(queues: list[str] | None = None, concurrency: int = 1) -> None:
    """Run the queued jobs through a real Procrastinate worker in this process until none is left.

    The jobs must be committed (a ``transaction=True`` test). The worker uses its own connector, as
    ``manage.py procrastinate worker`` does (Django's connection hands JSON back as text).
    """
    with app.replace_connector(app.connector.get_worker_connector()) as worker_app:
        worker_app.run_worker(queues=queues, wait=False, concurrency=concurrency,
                              install_signal_handlers=False, listen_notify=False)
    progress_connections_close()
