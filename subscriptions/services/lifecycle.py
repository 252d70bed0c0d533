"""Subscription lifecycle: create, cancel, change plan, trial end, and the one check of a status move."""

from __future__ import annotations

import datetime as dt

from teams.models import Team

from ..models import Plan, Subscription


def subscription_check_transition(*, subscription: Subscription, to_status: str) -> None:
    """Refuse a status move ``Subscription.TRANSITIONS`` does not allow (``SubscriptionTransitionError``, 409)."""
    raise NotImplementedError


def subscription_create(*, team: Team, plan: Plan, user=None, trial: bool | None = None,
                        trial_days: int | None = None, start: dt.datetime | None = None,
                        time_zone: str = "UTC") -> Subscription:
    """Subscribe a team (or one member, ``user``) to ``plan``; bill the first period unless it is a trial."""
    raise NotImplementedError


def subscription_cancel(*, subscription: Subscription, at_period_end: bool = True,
                        at: dt.datetime | None = None, prorate: bool = True) -> Subscription:
    """Cancel at the period end (default), or now with a prorated credit for the unused time."""
    raise NotImplementedError


def subscription_change_plan(*, subscription: Subscription, plan: Plan, at: dt.datetime | None = None,
                             when: str | None = None, proration: str = "second") -> Subscription:
    """Move to ``plan``: an upgrade now with proration lines, a downgrade at the period end by default."""
    raise NotImplementedError


def subscription_trial_end(*, subscription: Subscription, at: dt.datetime | None = None) -> Subscription:
    """End the trial: ``trialing`` → ``active``, a new period from ``at`` billed in advance."""
    raise NotImplementedError


def subscription_trial_extend(*, subscription: Subscription, trial_end: dt.datetime) -> Subscription:
    """Move a trialing subscription's ``trial_end`` (and its period end) later."""
    raise NotImplementedError


def subscription_transition(*, subscription: Subscription, to_status: str) -> Subscription:
    """Move the status (``past_due``, ``unpaid``, back to ``active``), checked; for the payments code."""
    raise NotImplementedError
