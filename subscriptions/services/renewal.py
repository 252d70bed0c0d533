"""Renewal: bill each subscription whose period has ended, once per subscription and period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..models import Subscription, SubscriptionPeriod


@dataclass
class RenewalResult:
    """What one renewal pass did: counts, and the refusals by subscription id."""

    renewed: int = 0
    canceled: int = 0
    skipped: int = 0
    invoices: int = 0
    lines: int = 0
    errors: dict[int, str] = field(default_factory=dict)


def subscription_renew(*, subscription: Subscription, at: dt.datetime | None = None) -> list[SubscriptionPeriod]:
    """Renew one subscription through every period boundary up to ``at``; idempotent."""
    raise NotImplementedError


def subscriptions_renew_due(*, at: dt.datetime | None = None, batch_size: int = 1000) -> RenewalResult:
    """Renew every subscription whose ``current_period_end <= at``, in batches; the command's service."""
    raise NotImplementedError
