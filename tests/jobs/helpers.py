"""Helpers for tests of jobs: run the committed queued jobs in this process (the ``run_jobs``
fixture's work, for helpers that get no fixtures)."""

from __future__ import annotations

import threading

from procrastinate.contrib.django import app

from jobs.progress import progress_connections_close


def run_queued_jobs(queues: list[str] | None = None, concurrency: int = 1) -> None:
    """Run the queued jobs through a real Procrastinate worker in this process until none is left.

    The jobs must be committed (a ``transaction=True`` test). The worker uses its own connector, as
    ``manage.py procrastinate worker`` does (Django's connection hands JSON back as text).
    """
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with app.replace_connector(app.connector.get_worker_connector()) as worker_app:
                worker_app.run_worker(queues=queues, wait=False, concurrency=concurrency,
                                      install_signal_handlers=False, listen_notify=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failures.append(exc)

    # In a thread of its own: the worker runs its own asyncio loop, and the browser tests leave one
    # running in the main thread for the rest of the session (asyncio.run() refuses to nest).
    thread = threading.Thread(target=work, name="in-process-worker")
    thread.start()
    thread.join()
    progress_connections_close()
    if failures:
        raise failures[0]
