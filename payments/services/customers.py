"""The team's Stripe customer: one per team, created on first need."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from teams.models import BillingSettings, Team

from ..stripe_client import payments_require, stripe_call, stripe_client


def customer_idempotency_key(team: Team) -> str:
    """Stripe's ``Idempotency-Key`` of a team's customer creation: derived from the team id only."""
    return f"customer-team-{team.pk}"


def _settings_row(team: Team) -> BillingSettings:
    """The team's billing settings row, created with the defaults when the team has none yet."""
    try:
        with transaction.atomic():
            row, _ = BillingSettings.objects.get_or_create(team=team)
    except IntegrityError:  # created by a concurrent request between the read and the insert
        row = BillingSettings.objects.get(team=team)
    return row


def customer_get(*, team: Team) -> str:
    """The team's Stripe customer id, or ``""`` when it has none yet (no call to Stripe)."""
    return BillingSettings.objects.filter(team=team).values_list("stripe_customer_id", flat=True).first() or ""


def customer_ensure(*, team: Team) -> str:
    """The team's Stripe customer id (``cus_…``), created in Stripe on first need.

    The customer's ``name`` is the team's name, its ``email`` the first of the billing settings'
    ``notify_emails`` (if any), its ``metadata`` ``{"team_id", "team_slug"}``. The id is stored on
    ``BillingSettings.stripe_customer_id`` (the team's row is created with the defaults if missing).

    Never twice, even under concurrent requests: the settings row is locked (``FOR NO KEY UPDATE``:
    plain reads, the charge path's included, are not blocked) and re-read before Stripe is asked, so
    a second request waits and finds the id; the Stripe call carries the idempotency key
    ``customer-team-<id>`` (a retry after a lost answer gets the same customer from Stripe), and the
    column is unique. The lock is held during that one call, once in the team's life.

    Raises:
        PaymentsNotConfigured: no ``STRIPE_SECRET_KEY``.
        StripeUnavailable: Stripe did not answer (nothing stored; a retry is safe).
    """
    payments_require()
    existing = customer_get(team=team)
    if existing:
        return existing
    _settings_row(team)
    client = stripe_client()
    with transaction.atomic(durable=True):
        row = BillingSettings.objects.select_for_update(no_key=True).select_related("team").get(team=team)
        if row.stripe_customer_id:
            return row.stripe_customer_id
        params = {"name": row.team.name, "metadata": {"team_id": str(team.pk), "team_slug": row.team.slug}}
        emails = row.notify_email_list
        if emails:
            params["email"] = emails[0]
        customer = stripe_call(client.v1.customers.create, params=params,
                               idempotency_key=customer_idempotency_key(team))
        row.stripe_customer_id = customer.id
        row.save(update_fields=["stripe_customer_id", "updated_at"])
    return customer.id
