"""Every write of the webhooks app: endpoints, the outbox of events, and the delivery of each.

- :func:`event_record` is called by the billing services, inside the transaction of the change it
  reports. It writes the :class:`~webhooks.models.Event`, a :class:`~webhooks.models.Delivery` per
  matching endpoint and a ``webhooks`` job per delivery, all in that transaction (Procrastinate's
  jobs are rows of the same database, deferred through Django's connection). Rolled back, nothing
  is sent; committed, every delivery has its job.
- :func:`delivery_attempt` is the job's body: one signed POST, its attempt logged, and on failure
  the next attempt scheduled with exponential back-off (:func:`retry_delay`), about three days in
  all; an endpoint failing for longer than ``WEBHOOKS_DISABLE_AFTER_HOURS`` is disabled and
  finance is e-mailed.
- :func:`delivery_replay` sends a delivery again (the admin's "Replay" action).

Settings (``billing_site/settings.py``, "Webhooks"): ``WEBHOOKS_ALLOW_HTTP``,
``WEBHOOKS_ALLOW_PRIVATE`` (the SSRF guard, ``webhooks.guard``), ``WEBHOOKS_TIMEOUT_SECONDS``,
``WEBHOOKS_RETRY_BASE_SECONDS``, ``WEBHOOKS_MAX_ATTEMPTS``, ``WEBHOOKS_DISABLE_AFTER_HOURS``,
``WEBHOOKS_ALERT_EMAILS``.
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
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from procrastinate import manager, tasks
from procrastinate.contrib.django.django_connector import DjangoConnector

from jobs.queues import WEBHOOKS as WEBHOOKS_QUEUE
from teams.models import Team
from teams.selectors import FINANCE_GROUP

from .errors import EndpointUrlRefused, UnknownEventType
from .guard import endpoint_url_check
from .models import EVENT_TYPES, Delivery, DeliveryAttempt, Endpoint, Event
from .payloads import payload_render
from .signing import secret_generate, signature_headers

logger = logging.getLogger(__name__)

#: The Procrastinate task that delivers (``webhooks.tasks.webhook_deliver``) and its queue.
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
                    created_by=None) -> Endpoint:
    """Register an endpoint with a new secret.

    Args:
        url: where to POST (checked by ``webhooks.guard.endpoint_url_check``).
        event_types: keys of ``webhooks.models.EVENT_TYPES``.
        team: only this team's events; ``None``: every team's.

    Returns:
        The endpoint; its ``secret`` is for the caller to show once, and is never shown again.

    Raises:
        EndpointUrlRefused: the SSRF guard refuses ``url``.
        UnknownEventType: an event type is unknown, or none is given.
    """
    endpoint = Endpoint(url=endpoint_url_check(url), event_types=_event_types_check(event_types), team=team,
                        description=description, secret=secret_generate(), created_by=created_by)
    with transaction.atomic():
        endpoint.save()
    return endpoint


def endpoint_update(*, endpoint: Endpoint, url: str, event_types: Iterable[str], team: Team | None,
                    description: str = "", is_active: bool = True) -> Endpoint:
    """Change an endpoint's URL, event types, team, description or state (the secret stays).

    Enabling a disabled endpoint clears its failure record. Raises as :func:`endpoint_create`.
    """
    endpoint.url, endpoint.event_types = endpoint_url_check(url), _event_types_check(event_types)
    endpoint.team, endpoint.description = team, description
    if is_active and not endpoint.is_active:
        endpoint.failing_since, endpoint.disabled_at, endpoint.disabled_reason = None, None, ""
    endpoint.is_active = is_active
    with transaction.atomic():
        endpoint.save()
    return endpoint


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
    """Disable ``endpoint`` (no new deliveries; pending ones wait) and e-mail finance, after commit.

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
                    f"Its pending deliveries wait. Fix the receiver, enable the endpoint in the admin "
                    f"and replay the failed deliveries.")
            transaction.on_commit(
                lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients), robust=True)
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
        _deferrer().batch_defer(*({"delivery_id": d.pk, "token": str(d.job_token)} for d in deliveries))
    event.delivery_count = len(deliveries)
    return event


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
    """One HTTP session per thread, so a worker keeps its connections to receivers alive."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.headers["User-Agent"] = "billing-webhooks/1"
    return session


def _post(endpoint: Endpoint, event: Event) -> tuple[int | None, str, str]:
    """POST ``event`` to ``endpoint``, signed: (status code or None, error or "", response excerpt)."""
    try:
        endpoint_url_check(endpoint.url)
    except EndpointUrlRefused as exc:
        return None, str(exc), ""
    body = json.dumps(event.envelope(), separators=(",", ":"), ensure_ascii=False)
    headers = signature_headers(secret=endpoint.secret, webhook_id=event.webhook_id, body=body, at=timezone.now())
    headers["Content-Type"] = "application/json"
    try:
        response = _session().post(endpoint.url, data=body.encode(), headers=headers, allow_redirects=False,
                                   timeout=settings.WEBHOOKS_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS], ""
    excerpt = response.text[:EXCERPT_CHARS]
    if 200 <= response.status_code < 300:
        return response.status_code, "", excerpt
    return response.status_code, f"HTTP {response.status_code}", excerpt


def delivery_attempt(*, delivery_id: int, token: str) -> Delivery | None:
    """Make one attempt of a delivery (the ``webhooks`` job's body); returns it, or ``None`` when the
    job is stale (the delivery succeeded, was replayed or rescheduled since, or is gone).

    The POST happens outside any transaction; then, under the delivery's row lock, the attempt is
    logged (number, start, duration in ms, status code, error) and the delivery moves: a 2xx
    succeeds it; anything else schedules the next attempt after :func:`retry_delay` (a new job,
    deferred in that transaction) or, after ``WEBHOOKS_MAX_ATTEMPTS``, fails it. An endpoint whose
    failures have lasted ``WEBHOOKS_DISABLE_AFTER_HOURS`` is disabled (:func:`endpoint_disable`).
    A disabled endpoint's delivery waits, unattempted, for a replay.
    """
    delivery = Delivery.objects.select_related("endpoint", "event").filter(pk=delivery_id).first()
    if (delivery is None or str(delivery.job_token) != token or delivery.status != Delivery.Status.PENDING
            or not delivery.endpoint.is_active):
        return None
    started_at, started = timezone.now(), time.perf_counter()
    status_code, error, excerpt = _post(delivery.endpoint, delivery.event)
    duration_ms = round((time.perf_counter() - started) * 1000)
    succeeded = not error
    logger.info("webhook delivery %s (event %s, endpoint %s) attempt: %s in %d ms%s", delivery.pk,
                delivery.event.webhook_id, delivery.endpoint_id, status_code or "no response", duration_ms,
                f" ({error})" if error else "")
    if succeeded and _succeeded_fast(delivery, token, started_at, duration_ms, status_code, excerpt):
        return delivery
    disable = None
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
        locked.attempt_count += 1
        DeliveryAttempt.objects.create(delivery=locked, number=locked.attempt_count, started_at=started_at,
                                       duration_ms=duration_ms, status_code=status_code, succeeded=succeeded,
                                       error=error[:EXCERPT_CHARS], response_excerpt=excerpt)
        locked.last_status_code = status_code
        current = str(locked.job_token) == token and locked.status == Delivery.Status.PENDING
        now = timezone.now()
        if succeeded:
            locked.status, locked.delivered_at, locked.next_attempt_at = Delivery.Status.SUCCEEDED, now, None
            Endpoint.objects.filter(pk=locked.endpoint_id, failing_since__isnull=False).update(failing_since=None)
        else:
            Endpoint.objects.filter(pk=locked.endpoint_id, failing_since__isnull=True).update(failing_since=started_at)
            if current and locked.attempt_count < settings.WEBHOOKS_MAX_ATTEMPTS:
                wait = retry_delay(locked.attempt_count)
                locked.job_token, locked.next_attempt_at = uuid.uuid4(), now + wait
                _deferrer(schedule_in={"seconds": wait.total_seconds()}).defer(
                    delivery_id=locked.pk, token=str(locked.job_token))
            elif current:
                locked.status, locked.next_attempt_at = Delivery.Status.FAILED, None
            failing_since = Endpoint.objects.values_list("failing_since", flat=True).get(pk=locked.endpoint_id)
            if failing_since and now - failing_since >= dt.timedelta(hours=settings.WEBHOOKS_DISABLE_AFTER_HOURS):
                disable = f"every attempt has failed since {failing_since:%Y-%m-%d %H:%M} UTC (last: {error})"
        locked.save(update_fields=["attempt_count", "last_status_code", "status", "delivered_at", "next_attempt_at",
                                   "job_token"])
        if disable:
            endpoint_disable(endpoint=delivery.endpoint, reason=disable)
    return locked


def _commit_without_waiting_for_disk() -> None:
    """``SET LOCAL synchronous_commit TO OFF`` for the transaction that logs an attempt.

    The log of an attempt is not money: if the database server crashed in the fraction of a second
    before the WAL reaches disk, the attempt is forgotten and the delivery is simply sent again
    (receivers drop duplicates by ``webhook-id``). The job's own completion, committed right after
    by Procrastinate, waits for the disk and so flushes this commit with it: the attempt costs no
    fsync of its own. A retry deferred here is lost only together with the attempt, and then the
    unfinished job is run again (Procrastinate's stalled-job recovery) with its token still valid.
    Never used for the transaction that records an event (that commit is the caller's, and waits).
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _succeeded_fast(delivery: Delivery, token: str, started_at: dt.datetime, duration_ms: int, status_code: int,
                    excerpt: str) -> bool:
    """The common case in two statements: a success of the delivery as it was read (same token,
    still pending, no attempt since). ``False`` when it changed meanwhile (the locked path decides)."""
    number = delivery.attempt_count + 1
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        moved = Delivery.objects.filter(
            pk=delivery.pk, job_token=token, status=Delivery.Status.PENDING, attempt_count=delivery.attempt_count,
        ).update(status=Delivery.Status.SUCCEEDED, attempt_count=number, last_status_code=status_code,
                 delivered_at=timezone.now(), next_attempt_at=None)
        if not moved:
            return False
        DeliveryAttempt.objects.create(delivery_id=delivery.pk, number=number, started_at=started_at,
                                       duration_ms=duration_ms, status_code=status_code, succeeded=True,
                                       response_excerpt=excerpt)
        if delivery.endpoint.failing_since is not None:
            Endpoint.objects.filter(pk=delivery.endpoint_id).update(failing_since=None)
    delivery.status, delivery.attempt_count = Delivery.Status.SUCCEEDED, number
    return True


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
        _deferrer().defer(delivery_id=locked.pk, token=str(locked.job_token))
    return locked
