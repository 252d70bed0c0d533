"""Every write of the webhooks app: endpoints, the outbox of events, and the delivery of each.

- :func:`event_record` is called by the billing services, inside the transaction of the change it
  reports. It writes the :class:`~webhooks.models.Event`, a :class:`~webhooks.models.Delivery` per
  matching endpoint (due at once) and, once per transaction, a ``webhooks`` job, all in that
  transaction (Procrastinate's jobs are rows of the same database, deferred through Django's
  connection). Rolled back, nothing is sent; committed, a job will claim every delivery.
- :func:`deliveries_send` is the job's body: it claims a batch of due deliveries
  (``FOR UPDATE SKIP LOCKED``, :func:`deliveries_claim`), sends them at once over keep-alive
  sessions, then logs every attempt and moves every delivery in one transaction; a failure is
  retried with exponential back-off (:func:`retry_delay`), about three days in all; an endpoint
  failing for longer than ``WEBHOOKS_DISABLE_AFTER_HOURS`` is disabled and finance is e-mailed
  (through the ``mail`` queue). A periodic job (every minute) claims what a lost worker left.
- :func:`delivery_replay` sends a delivery again (the admin's "Replay" action).

Settings (``billing_site/settings.py``, "Webhooks"): ``WEBHOOKS_ALLOW_HTTP``,
``WEBHOOKS_ALLOW_PRIVATE`` (the SSRF guard, ``webhooks.guard``), ``WEBHOOKS_TIMEOUT_SECONDS``,
``WEBHOOKS_RETRY_BASE_SECONDS``, ``WEBHOOKS_MAX_ATTEMPTS``, ``WEBHOOKS_DISABLE_AFTER_HOURS``,
``WEBHOOKS_ALERT_EMAILS``, ``WEBHOOKS_BATCH_SIZE``, ``WEBHOOKS_SENDERS``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from procrastinate import manager, tasks
from procrastinate.contrib.django.django_connector import DjangoConnector

from jobs.queues import WEBHOOKS as WEBHOOKS_QUEUE
from jobs.tasks import mail_queue
from teams.models import Team
from teams.selectors import FINANCE_GROUP

from .errors import EndpointUrlRefused, UnknownEventType
from .guard import endpoint_url_check
from .models import EVENT_TYPES, Delivery, DeliveryAttempt, Endpoint, Event
from .payloads import payload_render
from .signing import secret_generate, signature_headers

logger = logging.getLogger(__name__)

#: The Procrastinate task that claims and sends a batch (``webhooks.tasks.webhook_deliver``) and its queue.
DELIVER_TASK = "webhooks.deliver"
QUEUE = WEBHOOKS_QUEUE
#: Each retry waits this many times longer than the one before (the first waits the base).
RETRY_FACTOR = 3
#: No retry waits longer than a day.
RETRY_CAP_SECONDS = 24 * 3600
#: What an attempt keeps of the response body and of an error, in characters.
EXCERPT_CHARS = 500

# Jobs are deferred through Django's own connection, in the caller's transaction, from the web
# process and from a worker alike (a worker's app connector is a separate pool).
_job_manager = manager.JobManager(DjangoConnector())


def _deferrer(**options: Any):
    return tasks.configure_task(name=DELIVER_TASK, job_manager=_job_manager, queue=QUEUE, **options)


def _event_types_check(event_types: Iterable[str]) -> list[str]:
    event_types = list(dict.fromkeys(event_types))
    if not event_types:
        raise UnknownEventType("event_types must name at least one event type")
    unknown = [name for name in event_types if name not in EVENT_TYPES]
    if unknown:
        raise UnknownEventType(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return event_types


# --- Endpoints ---------------------------------------------------------------------------------------


def endpoint_create(*, url: str, event_types: Iterable[str], team: Team | None = None, description: str = "",
                    is_active: bool = True, created_by=None) -> Endpoint:
    """Register an endpoint with a new secret.

    Args:
        url: where to POST (checked by ``webhooks.guard.endpoint_url_check``).
        event_types: keys of ``webhooks.models.EVENT_TYPES``.
        team: only this team's events; ``None``: every team's.
        is_active: ``False`` registers it disabled (no deliveries until enabled).

    Returns:
        The endpoint; its ``secret`` is for the caller to show once, and is never shown again.

    Raises:
        EndpointUrlRefused: the SSRF guard refuses ``url``.
        UnknownEventType: an event type is unknown, or none is given.
    """
    endpoint = Endpoint(url=endpoint_url_check(url), event_types=_event_types_check(event_types), team=team,
                        description=description, is_active=is_active, secret=secret_generate(),
                        created_by=created_by)
    with transaction.atomic():
        endpoint.save()
    return endpoint


def endpoint_update(*, endpoint: Endpoint, url: str, event_types: Iterable[str], team: Team | None,
                    description: str = "", is_active: bool = True) -> Endpoint:
    """Change an endpoint's URL, event types, team, description or state (the secret stays).

    Enabling a disabled endpoint clears its failure record and queues a job, so the deliveries
    that waited while it was disabled go out (those that failed are replayed by hand). Raises as
    :func:`endpoint_create`.
    """
    endpoint.url, endpoint.event_types = endpoint_url_check(url), _event_types_check(event_types)
    endpoint.team, endpoint.description = team, description
    enabled = is_active and not endpoint.is_active
    if enabled:
        endpoint.failing_since, endpoint.disabled_at, endpoint.disabled_reason = None, None, ""
    endpoint.is_active = is_active
    with transaction.atomic():
        endpoint.save()
        if enabled:
            _deferrer().defer()
    return endpoint


def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Delete ``endpoint`` with its deliveries and their attempts (the events stay: other endpoints
    may have them). A batch in flight to it is sent, and its log dropped."""
    with transaction.atomic():
        Endpoint.objects.filter(pk=endpoint.pk).delete()


def endpoint_secret_rotate(*, endpoint: Endpoint) -> Endpoint:
    """Give ``endpoint`` a new secret (the old one stops signing at once); the caller shows it once."""
    with transaction.atomic():
        locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.secret = secret_generate()
        locked.save(update_fields=["secret"])
    return locked


def _finance_addresses() -> list[str]:
    users = get_user_model().objects.filter(is_active=True).filter(Q(groups__name=FINANCE_GROUP) | Q(is_superuser=True))
    addresses = set(users.exclude(email="").values_list("email", flat=True))
    return sorted(addresses | set(settings.WEBHOOKS_ALERT_EMAILS))


def endpoint_disable(*, endpoint: Endpoint, reason: str) -> Endpoint:
    """Disable ``endpoint`` (no new deliveries; pending ones wait) and e-mail finance: the e-mail is
    queued on the ``mail`` queue in this transaction (``jobs.tasks.mail_queue``), sent once it commits.

    Finance is the ``finance`` group's active users and superusers with an address, and
    ``settings.WEBHOOKS_ALERT_EMAILS``. Idempotent: an endpoint disabled already is left as it is.
    """
    with transaction.atomic():
        locked = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        if not locked.is_active:
            return locked
        locked.is_active, locked.disabled_at, locked.disabled_reason = False, timezone.now(), reason[:300]
        locked.save(update_fields=["is_active", "disabled_at", "disabled_reason"])
        recipients = _finance_addresses()
        if recipients:
            subject = f"Webhook endpoint disabled: {locked.url}"
            body = (f"The webhook endpoint {locked.url} (id {locked.pk}) was disabled: {reason}\n\n"
                    f"Its pending deliveries wait. Fix the receiver and enable the endpoint in the admin: "
                    f"they go out then. Replay the failed ones.")
            mail_queue(subject=subject, body=body, to=recipients)
    logger.warning("webhook endpoint %s disabled: %s", locked.pk, reason)
    return locked


# --- The outbox --------------------------------------------------------------------------------------


def _endpoints_for(event_type: str, team_id: int | None) -> list[int]:
    endpoints = Endpoint.objects.filter(is_active=True, event_types__contains=[event_type])
    team_match = Q(team__isnull=True) | Q(team_id=team_id) if team_id is not None else Q(team__isnull=True)
    return list(endpoints.filter(team_match).values_list("pk", flat=True))


def event_record(type: str, payload: Any, *, team: Team | int | None = None) -> Event | None:
    """Record an event and queue its delivery to every active endpoint that wants it.

    Args:
        type: a key of ``webhooks.models.EVENT_TYPES`` (``"invoice.issued"``).
        payload: the event's ``data``: a model instance whose app registered its API serializer
            (``webhooks.payloads``), or a dict of such instances and JSON values, or a function
            returning one (called only when an endpoint wants the event).
        team: the team the event concerns (endpoints of that team and of all teams get it), or
            ``None`` (endpoints of all teams only).

    Call it inside the transaction of the change (the outbox): the event, its deliveries and their
    jobs commit or roll back with it. Outside a transaction it opens its own. An event no active
    endpoint wants costs one query and is not recorded (its payload is not even rendered).

    Returns:
        The ``Event`` (``delivery_count``: the deliveries queued), or ``None`` when no endpoint wants it.

    Raises:
        UnknownEventType: ``type`` is not an event type (a bug in the caller).
    """
    if type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {type}", param="type")
    team_id = team.pk if isinstance(team, Team) else team
    with transaction.atomic() if not connection.in_atomic_block else contextlib.nullcontext():
        endpoint_ids = _endpoints_for(type, team_id)
        if not endpoint_ids:
            return None
        event = Event.objects.create(webhook_id=f"msg_{uuid.uuid4().hex}", type=type, team_id=team_id,
                                     data=payload_render(payload), created_at=timezone.now())
        deliveries = Delivery.objects.bulk_create(
            [Delivery(event=event, endpoint_id=pk, next_attempt_at=event.created_at) for pk in endpoint_ids])
        _send_job_once_per_transaction()
    event.delivery_count = len(deliveries)
    return event


def _send_job_queued() -> None:
    """Marks, among the transaction's on-commit callbacks, that it has queued a ``webhooks`` job."""


def _send_job_once_per_transaction() -> None:
    """Defer one ``webhooks`` job per transaction, however many events it records: the job claims
    every due delivery, batch after batch (:func:`deliveries_claim`).

    The mark is an on-commit callback (it does nothing), so it is dropped with the job when a
    savepoint that deferred it rolls back, and the next event of the transaction defers again.
    """
    if any(func is _send_job_queued for _, func, _ in connection.run_on_commit):
        return
    _deferrer().defer()
    transaction.on_commit(_send_job_queued)


# --- Delivery ----------------------------------------------------------------------------------------


def retry_delay(attempts: int) -> dt.timedelta:
    """How long to wait after the ``attempts``-th failed attempt (1, 2, …) before the next one.

    ``base × 3^(attempts − 1)``, at most a day: with the default base of 10 s and 12 attempts the
    waits are 10 s, 30 s, 1.5 min, 4.5 min, 13.5 min, 40.5 min, 2 h, 6 h, 18.2 h, 24 h, 24 h, about
    3.1 days from the first attempt to the last (Standard Webhooks asks for exponential back-off).
    """
    seconds = settings.WEBHOOKS_RETRY_BASE_SECONDS * RETRY_FACTOR ** (attempts - 1)
    return dt.timedelta(seconds=min(seconds, RETRY_CAP_SECONDS))


_local = threading.local()


def _session() -> requests.Session:
    """One HTTP session per thread, so a sender keeps its connections to receivers alive."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.headers["User-Agent"] = "billing-webhooks/1"
    return session


_senders: ThreadPoolExecutor | None = None
_senders_lock = threading.Lock()


def _sender_pool() -> ThreadPoolExecutor:
    """The process's pool of ``WEBHOOKS_SENDERS`` threads that send a batch's POSTs at once, each
    with its keep-alive session (shared by the jobs a worker runs concurrently)."""
    global _senders
    with _senders_lock:
        if _senders is None:
            _senders = ThreadPoolExecutor(max_workers=settings.WEBHOOKS_SENDERS, thread_name_prefix="webhook-send")
        return _senders


def _post(url: str, secret: str, webhook_id: str, body: str) -> tuple[int | None, str, str]:
    """POST ``body`` to ``url``, signed: (status code or None, error or "", response excerpt)."""
    try:
        endpoint_url_check(url)
    except EndpointUrlRefused as exc:
        return None, str(exc), ""
    headers = signature_headers(secret=secret, webhook_id=webhook_id, body=body, at=timezone.now())
    headers["Content-Type"] = "application/json"
    try:
        response = _session().post(url, data=body.encode(), headers=headers, allow_redirects=False,
                                   timeout=settings.WEBHOOKS_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS], ""
    excerpt = response.text[:EXCERPT_CHARS]
    if 200 <= response.status_code < 300:
        return response.status_code, "", excerpt
    return response.status_code, f"HTTP {response.status_code}", excerpt


@dataclass(frozen=True)
class _Outcome:
    """What one attempt of a claimed delivery gave."""

    delivery_id: int
    endpoint_id: int
    token: str
    started_at: dt.datetime
    duration_ms: int
    status_code: int | None
    error: str
    excerpt: str

    @property
    def succeeded(self) -> bool:
        return not self.error


def _lease_seconds() -> float:
    """How long a claimed batch is a job's own: every POST of it timing out, one after another, and a
    minute more (1,060 s with the defaults). The sender threads are shared by the jobs a worker runs
    at once, so a batch may wait behind others' POSTs; one after another bounds that for up to
    ``WEBHOOKS_SENDERS`` jobs at once. A worker lost half-way leaves its batch to a claim after that."""
    return settings.WEBHOOKS_TIMEOUT_SECONDS * settings.WEBHOOKS_BATCH_SIZE + 60


_CLAIM_SQL = """
    UPDATE webhooks_delivery AS d
       SET next_attempt_at = now() + make_interval(secs => %(lease)s), job_token = gen_random_uuid()
      FROM (SELECT due.id FROM webhooks_delivery AS due
              JOIN webhooks_endpoint AS endpoint ON endpoint.id = due.endpoint_id
             WHERE due.status = 'pending' AND due.next_attempt_at <= now() AND endpoint.is_active
             ORDER BY due.next_attempt_at, due.id
             LIMIT %(limit)s
               FOR UPDATE OF due SKIP LOCKED) AS claimed
     WHERE d.id = claimed.id
 RETURNING d.id, d.job_token
"""


def deliveries_claim(*, limit: int | None = None) -> dict[int, str]:
    """Claim up to ``limit`` (``WEBHOOKS_BATCH_SIZE``) due deliveries for this job: pending, due
    (``next_attempt_at`` passed), of an active endpoint, oldest first.

    One statement, ``FOR UPDATE SKIP LOCKED``: jobs running at once claim disjoint batches. Each
    claimed delivery gets a new ``job_token`` (what this job will record its attempt against) and
    ``next_attempt_at`` moves past the lease (:func:`_lease_seconds`), so no other job claims it
    meanwhile. When the batch is full, the next job is deferred in the same transaction, for another
    worker (or thread) to claim the next batch while this one sends. Returns ``{delivery id: token}``.
    """
    limit = limit or settings.WEBHOOKS_BATCH_SIZE
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, {"lease": _lease_seconds(), "limit": limit})
            claimed = {pk: str(token) for pk, token in cursor.fetchall()}
        if len(claimed) == limit:
            _deferrer().defer()
    return claimed


def deliveries_send(*, limit: int | None = None) -> int:
    """The ``webhooks`` job's body: claim a batch (:func:`deliveries_claim`), POST each delivery,
    signed, over the sender threads' keep-alive sessions, then log every attempt and move every
    delivery in one transaction (:func:`_outcomes_record`). Returns how many were attempted.

    Deliveries of a batch go out at once: the order in which a receiver gets events is not
    promised (it never was across retries; each body has its ``timestamp``).
    """
    claimed = deliveries_claim(limit=limit)
    if not claimed:
        return 0
    deliveries = list(Delivery.objects.filter(pk__in=claimed).select_related("endpoint", "event")
                      .only("pk", "endpoint__url", "endpoint__secret", "event__webhook_id", "event__type",
                            "event__created_at", "event__data"))
    bodies: dict[int, str] = {}
    for delivery in deliveries:
        if delivery.event_id not in bodies:
            bodies[delivery.event_id] = json.dumps(delivery.event.envelope(), separators=(",", ":"),
                                                   ensure_ascii=False)

    def send(delivery: Delivery) -> _Outcome:
        started_at, started = timezone.now(), time.perf_counter()
        status_code, error, excerpt = _post(delivery.endpoint.url, delivery.endpoint.secret,
                                            delivery.event.webhook_id, bodies[delivery.event_id])
        duration_ms = round((time.perf_counter() - started) * 1000)
        if error:
            logger.info("webhook delivery %s (event %s, endpoint %s) attempt: %s in %d ms (%s)", delivery.pk,
                        delivery.event.webhook_id, delivery.endpoint_id, status_code or "no response",
                        duration_ms, error)
        return _Outcome(delivery.pk, delivery.endpoint_id, claimed[delivery.pk], started_at, duration_ms,
                        status_code, error, excerpt)

    outcomes = list(_sender_pool().map(send, deliveries))
    succeeded = sum(outcome.succeeded for outcome in outcomes)
    logger.info("webhook batch: %d deliveries attempted, %d succeeded", len(outcomes), succeeded)
    _outcomes_record(outcomes)
    return len(outcomes)


def _outcomes_record(outcomes: list[_Outcome]) -> None:
    """Log each attempt and move each delivery, in one transaction, under the deliveries' row locks.

    Per delivery, as its attempt says: a 2xx succeeds it; anything else, if the delivery is still
    this job's (same token, pending), schedules the next attempt after :func:`retry_delay` (a job is
    deferred for that time, in this transaction) or, after ``WEBHOOKS_MAX_ATTEMPTS``, fails it. A
    delivery replayed meanwhile keeps its new schedule; its attempt is logged all the same. An
    endpoint with a success has its failure record cleared; one with failures only has it started,
    and is disabled (:func:`endpoint_disable`) once it lasts ``WEBHOOKS_DISABLE_AFTER_HOURS``.
    """
    by_id = {outcome.delivery_id: outcome for outcome in outcomes}
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        locked = list(Delivery.objects.select_for_update().filter(pk__in=by_id).order_by("pk")
                      .only("pk", "endpoint_id", "status", "attempt_count", "job_token", "next_attempt_at",
                            "last_status_code", "delivered_at"))
        now = timezone.now()
        attempts, retry_at = [], set()
        for delivery in locked:
            outcome = by_id[delivery.pk]
            delivery.attempt_count += 1
            attempts.append(DeliveryAttempt(
                delivery_id=delivery.pk, number=delivery.attempt_count, started_at=outcome.started_at,
                duration_ms=outcome.duration_ms, status_code=outcome.status_code, succeeded=outcome.succeeded,
                error=outcome.error[:EXCERPT_CHARS], response_excerpt=outcome.excerpt))
            delivery.last_status_code = outcome.status_code
            current = str(delivery.job_token) == outcome.token and delivery.status == Delivery.Status.PENDING
            if outcome.succeeded:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = Delivery.Status.SUCCEEDED, now, None
            elif current and delivery.attempt_count < settings.WEBHOOKS_MAX_ATTEMPTS:
                delivery.job_token, delivery.next_attempt_at = uuid.uuid4(), now + retry_delay(delivery.attempt_count)
                retry_at.add(delivery.next_attempt_at.replace(microsecond=0) + dt.timedelta(seconds=1))
            elif current:
                delivery.status, delivery.next_attempt_at = Delivery.Status.FAILED, None
        Delivery.objects.bulk_update(locked, ["attempt_count", "last_status_code", "status", "delivered_at",
                                              "next_attempt_at", "job_token"])
        DeliveryAttempt.objects.bulk_create(attempts)
        for at in sorted(retry_at):
            _deferrer(**({"schedule_at": at} if at > now + dt.timedelta(seconds=1) else {})).defer()
        ok = {outcome.endpoint_id for outcome in outcomes if outcome.succeeded}
        first_failure: dict[int, dt.datetime] = {}
        for outcome in outcomes:
            if not outcome.succeeded and outcome.endpoint_id not in ok:
                first_failure[outcome.endpoint_id] = min(first_failure.get(outcome.endpoint_id, outcome.started_at),
                                                         outcome.started_at)
        if ok:
            Endpoint.objects.filter(pk__in=ok, failing_since__isnull=False).update(failing_since=None)
        for endpoint_id, since in first_failure.items():
            Endpoint.objects.filter(pk=endpoint_id, failing_since__isnull=True).update(failing_since=since)
        limit = dt.timedelta(hours=settings.WEBHOOKS_DISABLE_AFTER_HOURS)
        last_error = {o.endpoint_id: o.error for o in outcomes if not o.succeeded}
        for endpoint in Endpoint.objects.filter(pk__in=first_failure, is_active=True, failing_since__isnull=False):
            if now - endpoint.failing_since >= limit:
                endpoint_disable(endpoint=endpoint, reason=f"every attempt has failed since "
                                 f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC (last: {last_error[endpoint.pk]})")


def _commit_without_waiting_for_disk() -> None:
    """``SET LOCAL synchronous_commit TO OFF`` for the transaction that logs a batch's attempts.

    The log of an attempt is not money: if the database server crashed in the fraction of a second
    before the WAL reaches disk, the attempts are forgotten and the deliveries are sent again once
    their lease ends (receivers drop duplicates by ``webhook-id``). The job's own completion,
    committed right after by Procrastinate, waits for the disk and so flushes this commit with it.
    Never used for the transaction that records an event (that commit is the caller's, and waits).
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def delivery_replay(*, delivery: Delivery) -> Delivery:
    """Send ``delivery`` again now, whatever its status (the admin's "Replay"): it becomes pending
    with a new job; a retry already scheduled becomes stale. Its attempts stay logged.

    Raises:
        EndpointUrlRefused: the endpoint's URL no longer passes the SSRF guard.
    """
    with transaction.atomic():
        locked = Delivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        endpoint_url_check(locked.endpoint.url)
        locked.status, locked.job_token, locked.next_attempt_at = Delivery.Status.PENDING, uuid.uuid4(), timezone.now()
        locked.delivered_at = None
        locked.save(update_fields=["status", "job_token", "next_attempt_at", "delivered_at"])
        _deferrer().defer()
    return locked
