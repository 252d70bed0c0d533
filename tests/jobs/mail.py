"""The e-mails queued on the ``mail`` queue (not yet sent): what a worker will send, read from the
jobs deferred in the test's own transaction."""

from __future__ import annotations

from procrastinate.contrib.django.models import ProcrastinateJob


def queued_mails() -> list[dict]:
    """``[{"subject", "body", "to", "attachments"}]`` of every queued ``mail_send`` job, oldest first."""
    return [job.args for job in ProcrastinateJob.objects.filter(task_name="jobs.tasks.mail_send").order_by("id")]
