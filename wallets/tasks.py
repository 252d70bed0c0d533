"""Periodic jobs of wallets (``periodic`` queue; docs/jobs.md): grant expiry and the purge of old
idempotency records, the work of ``manage.py expire_grants`` and ``purge_idempotency_records``.
Both are idempotent: an expired lot or a released hold is not touched again, a purged record is gone.
"""

from __future__ import annotations

from procrastinate.contrib.django import app

from billing_site.idempotency import IDEMPOTENCY_RETENTION, idempotency_records_purge
from jobs import queues

from .services.holds import holds_release_expired
from .services.posting import grants_expire


@app.periodic(cron="5 * * * *", periodic_id="expire_grants")
@app.task(queue=queues.PERIODIC, name="wallets.tasks.expire_grants_hourly")
def expire_grants_hourly(timestamp: int) -> None:
    """Every hour at :05: expire what is left of grants past ``expires_at``, release expired holds."""
    grants_expire()
    holds_release_expired()


@app.periodic(cron="40 3 * * *", periodic_id="purge_idempotency_records")
@app.task(queue=queues.PERIODIC, name="wallets.tasks.purge_idempotency_records_daily")
def purge_idempotency_records_daily(timestamp: int) -> None:
    """Every day at 03:40: delete idempotency records older than 24 hours (Stripe keeps keys a day)."""
    idempotency_records_purge(older_than=IDEMPOTENCY_RETENTION)
