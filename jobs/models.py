"""What a background job reports about itself: its progress while it runs, then its result or error.

Procrastinate keeps the job itself (``procrastinate_jobs``: queue, status, attempts, lock); this
table keeps, per job, what finance wants to read: a title, the step and how far it got ("rendering
PDFs 37 / 64"), the result shown on the progress page and the error of the last failed attempt.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from procrastinate.contrib.django.models import ProcrastinateJob


class JobProgress(models.Model):
    """One job's progress and outcome.

    Invariants: one row per Procrastinate job (``job`` is unique; the row is written by the job's
    own task through :class:`jobs.progress.Progress`, on a connection of its own so it is seen while
    the job's transaction is still open). ``done <= total`` when ``total`` is known. ``result`` is a
    JSON object the job's progress page shows (its ``message``, ``lines``, ``download``); ``error``
    the last failed attempt's exception, cleared when an attempt succeeds.
    """

    job = models.OneToOneField(
        ProcrastinateJob, on_delete=models.DO_NOTHING, db_constraint=False, related_name="progress",
        help_text="The Procrastinate job (procrastinate_jobs.id).",
    )
    title = models.CharField(max_length=200, help_text='What the job does, e.g. "Billing run 2026-10".')
    step = models.CharField(max_length=200, blank=True, help_text='The current step, e.g. "rendering PDFs".')
    done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(null=True, blank=True)
    unit = models.CharField(max_length=20, blank=True, help_text='What is counted: "", "rows", "bytes".')
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                               related_name="children",
                               help_text="The job this one works for (a billing run's PDF jobs): its page "
                                         "counts theirs.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "job"
        verbose_name_plural = "jobs"
        ordering = ["-job_id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(done__gte=0), name="jobprogress_done_not_negative"),
        ]

    def __str__(self) -> str:
        return f"#{self.job_id} {self.title}"

    @property
    def percent(self) -> int | None:
        """How far the job got, 0–100, or ``None`` when its total is unknown."""
        if not self.total:
            return None
        return min(100, int(self.done * 100 / self.total))

    @property
    def counter(self) -> str:
        """``37 / 64``, ``1.2 M of 3.4 M rows``: the progress as the page writes it."""
        if self.total is None:
            return f"{_short(self.done)} {self.unit}".strip()
        if self.total >= 100_000:
            return f"{_short(self.done)} of {_short(self.total)} {self.unit}".strip()
        return f"{self.done} / {self.total} {self.unit}".strip()


def _short(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} M"
    if n >= 10_000:
        return f"{n / 1000:.0f} k"
    return str(n)
