"""Defining, deferring and following background jobs.

Define a task in an app's ``tasks.py``::

    from jobs import queues
    from jobs.progress import Progress, job

    @job(queue=queues.PDF, retry=3)
    def invoice_pdf_render(progress: Progress, *, invoice_id: int) -> dict:
        progress.step("rendering PDF", total=1)
        ...
        progress.advance()
        return {"message": "PDF stored"}          # shown on the job's page

Defer it from a service, inside the transaction that writes the data it needs (the job is a row of
the same database, so it commits or rolls back with that data)::

    from jobs.progress import job_defer
    record = job_defer(invoice_pdf_render, title="PDF of INV-1", created_by=user, invoice_id=invoice.pk)
    # record: the JobProgress row; its page is reverse("admin:jobs_jobprogress_change", args=[record.pk])

Plain ``procrastinate.contrib.django.app.task`` tasks work too (they just have no progress row).
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import psycopg
import psycopg.types.json
from django.db import connections, transaction
from procrastinate import JobContext, RetryStrategy
from procrastinate.contrib.django import app

from .models import JobProgress

T = TypeVar("T")

#: The default retry of product jobs: 5 attempts, exponential back-off from 2 s (2, 4, 8, 16 s).
DEFAULT_RETRY = RetryStrategy(max_attempts=5, exponential_wait=2)

#: Progress is written at most this often (seconds), and always at a step's end.
WRITE_EVERY = 0.5

_local = threading.local()
_opened: list[psycopg.Connection] = []
_opened_lock = threading.Lock()


def _progress_connection() -> psycopg.Connection:
    """An autocommit connection of this thread to the default database, for progress rows only.

    Progress must be visible while the job's own transaction is still open (a billing run writes
    its drafts in one transaction), so it cannot go through the job's connection.
    """
    params = connections["default"].settings_dict
    key = (params["HOST"], params["PORT"], params["NAME"])
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed or getattr(_local, "key", None) != key:
        conn = psycopg.connect(
            host=params["HOST"] or None, port=params["PORT"] or None, user=params["USER"] or None,
            password=params["PASSWORD"] or None, dbname=params["NAME"], autocommit=True,
        )
        _local.conn, _local.key = conn, key
        with _opened_lock:
            _opened.append(conn)
    return conn


def progress_connections_close() -> None:
    """Close every thread's progress connection (a test's end, a worker's shutdown)."""
    with _opened_lock:
        while _opened:
            _opened.pop().close()


class Progress:
    """What a running job tells the admin: its step, ``done`` of ``total`` (in ``unit``).

    Writes go to the job's :class:`~jobs.models.JobProgress` row on a connection of their own, at
    most every ``WRITE_EVERY`` seconds. A task called directly (not by a worker: ``job_id`` is
    ``None``, e.g. from a test or a command) gets a Progress that writes nothing.
    """

    def __init__(self, job_id: int | None):
        self.job_id = job_id
        self.step_name = ""
        self.done = 0
        self.total: int | None = None
        self.unit = ""
        self._written = 0.0

    def step(self, name: str, *, total: int | None = None, unit: str = "", done: int = 0) -> None:
        """Start a step: ``name`` ("rendering PDFs"), how many items it has, what they are."""
        self.step_name, self.total, self.unit, self.done = name, total, unit, done
        self._write(force=True)

    def advance(self, n: int = 1) -> None:
        """``n`` more items of the step are done."""
        self.done += n
        self._write(force=self.total is not None and self.done >= self.total)

    def set(self, done: int, total: int | None = None) -> None:
        """The step's count is now ``done`` (of ``total``, if given)."""
        self.done = done
        if total is not None:
            self.total = total
        self._write()

    def iterate(self, items: Iterable[T], *, name: str, total: int | None = None, unit: str = "") -> Iterator[T]:
        """Yield ``items``, counting each one as done (a progress bar over a loop)."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        self.step(name, total=total, unit=unit)
        for item in items:
            yield item
            self.advance()

    def _write(self, *, force: bool = False, **fields: Any) -> None:
        if self.job_id is None:
            return
        now = time.monotonic()
        if not force and not fields and now - self._written < WRITE_EVERY:
            return
        self._written = now
        values = {"step": self.step_name[:200], "done": self.done, "total": self.total, "unit": self.unit, **fields}
        columns = ", ".join(f"{name} = %({name})s" for name in values)
        _progress_connection().execute(
            f"UPDATE jobs_jobprogress SET {columns}, updated_at = now() WHERE job_id = %(job_id)s",  # noqa: S608
            {**values, "job_id": self.job_id},
        )


def job(*, queue: str, retry: int | RetryStrategy | bool = DEFAULT_RETRY, **task_options: Any):
    """Declare a product job: a Procrastinate task on ``queue`` that reports progress and outcome.

    The decorated function takes a :class:`Progress` first, then keyword arguments (JSON values:
    ids, not model instances), and returns ``None`` or a JSON object that the job's page shows
    (``{"message": str, "lines": [str], "download": url}``). Its exception marks the attempt failed
    (the error is kept on the job's row) and Procrastinate retries it per ``retry``. Every job must
    be idempotent: a retry after a crash half-way must have one effect (reuse unique constraints
    and the product's idempotency keys). ``task_options`` go to ``app.task`` (``lock``,
    ``queueing_lock``, ``priority``…); the task's name is ``<module>.<function>``.
    """

    def decorator(func: Callable[..., Any]):
        @functools.wraps(func)
        def run(context: JobContext, **kwargs: Any) -> Any:
            job_id = context.job.id if context.job is not None else None
            _record_start(job_id, context)
            try:
                result = func(Progress(job_id), **kwargs)
            except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised for Procrastinate
                _record_end(job_id, error="".join(traceback.format_exception_only(type(exc), exc)).strip())
                raise
            _record_end(job_id, result=result if isinstance(result, dict) else None)
            return result

        return app.task(queue=queue, retry=retry, pass_context=True, name=f"{func.__module__}.{func.__name__}",
                        **task_options)(run)

    return decorator


def job_defer(task: Any, *, title: str, created_by=None, lock: str | None = None,
              queueing_lock: str | None = None, parent_job_id: int | None = None, **kwargs: Any) -> JobProgress:
    """Defer ``task`` with ``kwargs`` and create its progress row, in the current transaction.

    ``task``: the task, or its name. Called inside a service's ``transaction.atomic``, the job exists only if that transaction
    commits. ``lock``: jobs with the same lock run one at a time, in order (Procrastinate's locks);
    ``queueing_lock``: a second job with it is refused while one waits (raises
    ``procrastinate.exceptions.AlreadyEnqueued``). ``parent_job_id``: the job this one works for
    (its progress page counts this one's). Returns the :class:`JobProgress` row.
    """
    options = {key: value for key, value in (("lock", lock), ("queueing_lock", queueing_lock)) if value}
    # By name (``"invoices.tasks.billing_run_commit"``), a service needs not import the tasks module
    # that imports it.
    deferrer = app.configure_task(task, allow_unknown=False, **options) if isinstance(task, str) else (
        task.configure(**options))
    with transaction.atomic():
        job_id = deferrer.defer(**kwargs)
        parent = JobProgress.objects.filter(job_id=parent_job_id).first() if parent_job_id else None
        return JobProgress.objects.create(job_id=job_id, title=title[:200], created_by=created_by, parent=parent)


def _record_start(job_id: int | None, context: JobContext) -> None:
    if job_id is None:
        return
    title = context.task.name.rsplit(".", 1)[-1].replace("_", " ") if context.task else "job"
    _progress_connection().execute(
        "INSERT INTO jobs_jobprogress (job_id, title, step, done, unit, error, started_at, updated_at) "
        "VALUES (%(job_id)s, %(title)s, '', 0, '', '', now(), now()) "
        "ON CONFLICT (job_id) DO UPDATE SET started_at = now(), finished_at = NULL, updated_at = now()",
        {"job_id": job_id, "title": title},
    )


def _record_end(job_id: int | None, *, result: dict | None = None, error: str = "") -> None:
    if job_id is None:
        return
    _progress_connection().execute(
        "UPDATE jobs_jobprogress SET result = %(result)s, error = %(error)s, finished_at = now(), "
        "updated_at = now() WHERE job_id = %(job_id)s",
        {"job_id": job_id, "result": psycopg.types.json.Jsonb(result) if result is not None else None,
         "error": error},
    )


def job_parent_advance(parent_job_id: int | None, n: int, *, step: str = "") -> tuple[int, int | None]:
    """Count ``n`` more items done on the parent job's row (a PDF job on its billing run's), at once
    and on the progress connection. Returns the parent's ``(done, total)`` after the increment;
    ``(0, None)`` without a parent."""
    if parent_job_id is None:
        return 0, None
    row = _progress_connection().execute(
        "UPDATE jobs_jobprogress SET done = done + %(n)s, step = COALESCE(NULLIF(%(step)s, ''), step), "
        "updated_at = now() WHERE job_id = %(job_id)s RETURNING done, total",
        {"n": n, "step": step, "job_id": parent_job_id},
    ).fetchone()
    return (row[0], row[1]) if row else (0, None)


def job_parent_result_update(parent_job_id: int | None, values: dict) -> None:
    """Merge ``values`` into the parent job's ``result`` (the zip of a billing run's PDFs)."""
    if parent_job_id is None:
        return
    _progress_connection().execute(
        "UPDATE jobs_jobprogress SET result = COALESCE(result, '{}'::jsonb) || %(values)s, updated_at = now() "
        "WHERE job_id = %(job_id)s",
        {"values": psycopg.types.json.Jsonb(values), "job_id": parent_job_id},
    )


def job_progress_get(*, pk: int) -> JobProgress:
    """The progress row ``pk`` with its Procrastinate job (status, attempts)."""
    return JobProgress.objects.select_related("job").get(pk=pk)

