"""The ``webhooks`` queue's jobs: each claims a batch of due deliveries and sends it
(``webhooks.services.deliveries_send``).

``webhooks.deliver`` is deferred by ``webhooks.services`` through Django's connection, in the
transaction that records events (once per transaction), replays a delivery or schedules a retry,
and by a job whose batch was full (the next batch). ``webhooks.sweep`` runs every minute and claims
whatever is due and has no job: a batch whose worker was lost (its lease ended), a retry whose
job went missing. Idempotent: a job only claims deliveries that are pending, due, and no other
job's; one that finds none does nothing.
"""

from __future__ import annotations

from procrastinate.contrib.django import app

from .services import DELIVER_TASK, QUEUE, deliveries_send


@app.task(name=DELIVER_TASK, queue=QUEUE)
def webhook_deliver(**legacy) -> None:
    """Claim and send one batch of due deliveries. (Jobs queued by an earlier version carry a
    ``delivery_id`` and ``token``: they claim a batch all the same.)"""
    deliveries_send()


@app.periodic(cron="* * * * *", periodic_id="webhooks_sweep")
@app.task(name="webhooks.sweep", queue=QUEUE)
def webhook_sweep(timestamp: int) -> None:
    """Every minute: send what is due with no job to send it (a full batch defers the next)."""
    deliveries_send()
