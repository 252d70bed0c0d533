"""Who sees whose money, and the reads of teams, their members and their billing settings.

One definition of access, used by the API (``billing_site.api.scoping``), the admin
(``billing_site.admin_mixins``) and every app's reads alike:

* ``finance`` (and superusers) see and change all billing data;
* ``auditor`` sees all billing data and changes nothing;
* anybody else sees the teams they are a member of, and a manager also the members' wallets.

Staff outside the two groups see nothing of billing, whatever model permissions they were given.
"""

from __future__ import annotations

from django.db.models import QuerySet

from teams.errors import CurrencyNotAllowed
from teams.models import BillingSettings, Team, TeamMembership

__all__ = [
    "AUDITOR_GROUP",
    "FINANCE_GROUP",
    "billing_settings_get",
    "team_currency_check",
    "team_ids_managed_by",
    "team_ids_of_member",
    "team_list_for_user",
    "user_is_auditor",
    "user_is_finance",
    "user_is_member",
    "user_sees_all_teams",
]

FINANCE_GROUP = "finance"
"""Members of this group (and superusers) see and change all billing data."""

AUDITOR_GROUP = "auditor"
"""Members of this group see all billing data and change nothing."""


def _group_names(user) -> frozenset[str]:
    # Cached on the user object: permission checks ask several times per request.
    names = getattr(user, "_billing_group_names", None)
    if names is None:
        names = frozenset(user.groups.values_list("name", flat=True)) if user.pk else frozenset()
        user._billing_group_names = names
    return names


def _is_active_person(user) -> bool:
    return user is not None and user.is_authenticated and user.is_active


def user_is_finance(user) -> bool:
    """True for an active superuser or an active member of the ``finance`` group."""
    if not _is_active_person(user):
        return False
    return user.is_superuser or FINANCE_GROUP in _group_names(user)


def user_is_auditor(user) -> bool:
    """True for an active member of the read-only ``auditor`` group."""
    if not _is_active_person(user):
        return False
    return AUDITOR_GROUP in _group_names(user)


def user_sees_all_teams(user) -> bool:
    """Finance and auditors see every team's money; everybody else only their own teams'."""
    return user_is_finance(user) or user_is_auditor(user)


def team_list_for_user(*, user) -> QuerySet[Team]:
    """The teams whose money ``user`` may see: all for finance and auditors, else the user's teams.

    An anonymous or inactive user sees none. Use it to scope every query of billing data by team
    (``team__in=team_list_for_user(user=…)``), so another team's rows are simply not found (404).
    """
    if not _is_active_person(user):
        return Team.objects.none()
    if user_sees_all_teams(user):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user)


def team_ids_managed_by(*, user) -> set[int]:
    """Ids of the teams where ``user`` is a manager (who may also see the members' wallets)."""
    if not _is_active_person(user):
        return set()
    return set(
        TeamMembership.objects.filter(user=user, role=TeamMembership.Role.MANAGER).values_list("team_id", flat=True)
    )


def team_ids_of_member(*, user) -> set[int]:
    """Ids of the teams ``user`` is a member of, whatever the role (one query)."""
    return set(TeamMembership.objects.filter(user=user).values_list("team_id", flat=True))


def user_is_member(*, user, team: Team) -> bool:
    """Whether ``user`` belongs to ``team`` (as member or manager)."""
    return TeamMembership.objects.filter(team=team, user=user).exists()


def billing_settings_get(*, team: Team) -> BillingSettings:
    """The team's billing settings, or an unsaved ``BillingSettings(team=team)`` with the defaults.

    Defaults (documented on the model): prepaid team wallet, block on zero balance, warning at 10 %
    of the last top-up, no notify addresses, all providers allowed, tax 0 %, net 30 days.
    """
    try:
        return team.billing_settings
    except BillingSettings.DoesNotExist:
        return BillingSettings(team=team)


def team_currency_check(*, team: Team, currency: str, param: str = "currency") -> str:
    """``currency`` if ``team`` may be billed in it, else :class:`~teams.errors.CurrencyNotAllowed`.

    A team is billed in its own ``currency`` and in the ``extra_currencies`` of its billing settings
    (``BillingSettings.billing_currencies``): usage and charges in any other currency would make its
    month impossible to invoice, so they are refused at the door (HTTP 422, ``param`` as given).
    ``currency`` is an upper-case ISO 4217 code, already checked for its form by the caller.
    """
    if currency == team.currency:  # the common case, without reading the billing settings
        return currency
    allowed = billing_settings_get(team=team).billing_currencies()
    if currency not in allowed:
        raise CurrencyNotAllowed(
            f"team {team.slug!r} is billed in {', '.join(allowed)}, not {currency}: usage and charges in "
            f"{currency} cannot be billed to it (finance may add {currency} to its billing settings' extra currencies)",
            param=param,
        )
    return currency
