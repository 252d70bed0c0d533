"""A team's billing settings: the one write of them (the billing model, limits, warning, e-mails)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from teams.models import BillingSettings, Team
from wallets.errors import InvalidRequest


def billing_settings_update(*, team: Team, **changes: Any) -> BillingSettings:
    """Create or change a team's billing settings; fields as on :class:`BillingSettings`.

    Raises :class:`InvalidRequest` for an unknown field and ``ValidationError`` for invalid values
    (bad e-mail address, threshold out of range).
    """
    allowed = {
        f.name for f in BillingSettings._meta.concrete_fields if f.name not in {"id", "team", "updated_at"}
    }
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidRequest(f"unknown billing settings: {', '.join(sorted(unknown))}", param=sorted(unknown)[0])
    with transaction.atomic():
        billing = BillingSettings.objects.select_for_update().filter(team=team).first() or BillingSettings(team=team)
        for name, value in changes.items():
            setattr(billing, name, value)
        billing.full_clean(exclude=["team"] if billing._state.adding else None)
        billing.save()
    team.billing_settings = billing
    return billing
