"""The jobs app's own tasks: retrying the jobs of workers that died, and sending e-mail.

A worker killed half-way (``kill -9``, a machine lost) leaves its job in ``doing``. Procrastinate
knows it by the worker's missing heartbeat; this task, on the ``periodic`` queue every minute, puts
those jobs back to ``todo`` so another worker retries them (Procrastinate's documented recipe for
stalled jobs). Every product job is idempotent, so the retry has one effect.
"""

from __future__ import annotations

from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.core.mail import EmailMessage
from django.core.management import call_command, get_commands
from procrastinate.contrib.django import app

from . import queues
from .progress import Progress, job, job_defer

#: A worker whose heartbeat (every 10 s) is older than this is taken for dead.
STALLED_AFTER_SECONDS = 30


@app.periodic(cron="* * * * *", periodic_id="retry_stalled_jobs")
@app.task(queue=queues.PERIODIC, name="jobs.tasks.retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context, timestamp: int) -> None:
    """Put back to ``todo`` the jobs whose worker stopped sending heartbeats."""
    await stalled_jobs_retry(context.app.job_manager, seconds_since_heartbeat=STALLED_AFTER_SECONDS)


async def stalled_jobs_retry(job_manager, *, seconds_since_heartbeat: float = STALLED_AFTER_SECONDS) -> list[int]:
    """Put the ``doing`` jobs of workers silent for ``seconds_since_heartbeat`` back to ``todo``
    (``retry_stalled_jobs``'s work, callable from a test or a shell); returns their ids."""
    retried = []
    for stalled in await job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat):
        await job_manager.retry_job(stalled)
        retried.append(stalled.id)
    return retried


@job(queue=queues.MAIL)
def mail_send(progress: Progress, *, subject: str, body: str, to: list[str],
              attachments: list[dict] | None = None) -> dict:
    """Send one e-mail through Django's mail backend.

    ``attachments``: ``[{"name": storage name, "filename": str, "mimetype": str}]``, read from the
    default storage when the mail is sent. Delivery is at least once: a worker killed after the
    SMTP server took the message but before the job was marked done sends it again on retry.
    """
    message = EmailMessage(subject, body, django_settings.DEFAULT_FROM_EMAIL, to)
    for attachment in attachments or ():
        with default_storage.open(attachment["name"], "rb") as stored:
            message.attach(attachment["filename"], stored.read(), attachment.get("mimetype"))
    message.send()
    return {"message": f"Sent to {', '.join(to)}: {subject}"}


def mail_queue(*, subject: str, body: str, to: list[str], attachments: list[dict] | None = None) -> None:
    """Queue an e-mail on the ``mail`` queue, in the current transaction: it is sent only if that
    transaction commits (a rolled-back charge never warns). Nothing is queued without recipients."""
    if to:
        job_defer(mail_send, title=f"E-mail: {subject}"[:200], subject=subject, body=body, to=list(to),
                  attachments=list(attachments or ()))


#: Commands of capabilities built elsewhere (subscription renewals, dunning retries), run on a
#: schedule once their app provides them: ``{command name: cron}``. A command not installed yet is
#: skipped; an app may instead declare its own ``@app.periodic`` task in its ``tasks.py``.
PERIODIC_COMMANDS = {
    "renew_subscriptions": "0 * * * *",
    "run_dunning": "30 * * * *",
}


def _periodic_command(name: str, cron: str):
    @app.periodic(cron=cron, periodic_id=f"command:{name}")
    @app.task(queue=queues.PERIODIC, name=f"jobs.tasks.command_{name}")
    def run(timestamp: int) -> None:
        if name in get_commands():
            call_command(name)

    run.__doc__ = f"Run ``manage.py {name}`` ({cron}) if the command exists."
    return run


for _name, _cron in PERIODIC_COMMANDS.items():
    _periodic_command(_name, _cron)
