"""What a principal may see and write, by team.

Views scope ``get_queryset`` through :func:`visible_team_ids` (``teams.selectors`` for people, the
key's team for a service): another team's object is simply not found (404). Writes by members
(usage, charges) go only to teams they belong to (:func:`member_team_ids`).
"""

from __future__ import annotations

from rest_framework import exceptions

from billing_site.api.auth import is_api_key
from billing_site.errors import TeamRequired
from teams.models import Team
from teams.selectors import team_ids_of_member, team_list_for_user, user_is_auditor, user_is_finance


def is_finance(request) -> bool:
    """A person in the ``finance`` group (or a superuser); never a key."""
    return not is_api_key(request) and user_is_finance(request.user)


def sees_all_teams(request) -> bool:
    return not is_api_key(request) and (user_is_finance(request.user) or user_is_auditor(request.user))


def visible_team_ids(request) -> set[int] | None:
    """Ids of the teams whose money the caller may read; ``None`` means every team (finance, auditors).

    A key sees its own team; a person, ``teams.selectors.team_list_for_user``.
    """
    cached = getattr(request, "_billing_visible_teams", False)
    if cached is not False:
        return cached
    if is_api_key(request):
        ids: set[int] | None = {request.user.team.pk}
    elif sees_all_teams(request):
        ids = None
    else:
        ids = set(team_list_for_user(user=request.user).values_list("pk", flat=True))
    request._billing_visible_teams = ids
    return ids


def member_team_ids(request) -> set[int] | None:
    """Ids of the teams the caller may *write* usage and charges for; ``None`` = any (finance).

    A key: its team. Finance: any team. Anybody else: the teams they are a member of (auditors
    read everything but write nothing).
    """
    if is_api_key(request):
        return {request.user.team.pk}
    if is_finance(request):
        return None
    return team_ids_of_member(user=request.user)


def scope_by_team(queryset, request, field: str = "team"):
    """Filter ``queryset`` to the caller's visible teams (on ``field``)."""
    ids = visible_team_ids(request)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{field}__in": ids})


def team_for_write(request, team: Team | None, *, param: str = "team") -> Team:
    """The team a write acts for: the key's team, or ``team`` from the body, checked against the caller.

    A member who belongs to exactly one team may leave it out. Another team's id answers 404
    (as if it did not exist); leaving it out when the caller's teams do not say which is
    :class:`~billing_site.errors.TeamRequired` (422) naming ``param``.
    """
    if is_api_key(request):
        key_team = request.user.team
        if team is not None and team.pk != key_team.pk:
            raise exceptions.NotFound(f"No team {team.pk}.")
        return key_team
    allowed = member_team_ids(request)
    if team is None:
        if allowed is not None and len(allowed) == 1:
            return Team.objects.get(pk=next(iter(allowed)))
        raise TeamRequired(f"{param}: Say which team (you belong to several teams or none).", param=param)
    if allowed is not None and team.pk not in allowed:
        visible = visible_team_ids(request)
        if visible is not None and team.pk not in visible:
            raise exceptions.NotFound(f"No team {team.pk}.")
        raise exceptions.PermissionDenied("Only the team's members and finance write its usage and charges.")
    return team


def team_for_read(request, team: Team | None, *, param: str = "team") -> Team:
    """The team a per-team read is about: ``team``, or the caller's only team. 404 outside the scope."""
    ids = visible_team_ids(request)
    if team is None:
        if ids is not None and len(ids) == 1:
            return Team.objects.get(pk=next(iter(ids)))
        raise TeamRequired(f"{param}: Say which team (you see several teams or none).", param=param)
    if ids is not None and team.pk not in ids:
        raise exceptions.NotFound(f"No team {team.pk}.")
    return team
