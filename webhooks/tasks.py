"""The ``webhooks`` queue's job: one attempt of one delivery (``webhooks.services.delivery_attempt``).

Deferred by ``webhooks.services`` through Django's connection, in the transaction that records the
event (or the failed attempt before it), so a job exists exactly when its delivery is committed.
Idempotent: the job carries its delivery's ``job_token``; once the delivery succeeded, was replayed
or rescheduled, the token no longer matches and the job does nothing.
"""

from __future__ import annotations

from procrastinate.contrib.django import app

from .services import DELIVER_TASK, QUEUE, delivery_attempt


@app.task(name=DELIVER_TASK, queue=QUEUE)
def webhook_deliver(delivery_id: int, token: str) -> None:
    """Attempt delivery ``delivery_id`` if ``token`` is still its job token."""
    delivery_attempt(delivery_id=delivery_id, token=token)
