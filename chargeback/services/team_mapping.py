"""Team mappings: which team a FOCUS tag, sub-account or billing account belongs to, with their history.

A mapping is never edited: ``team_mapping_set`` ends the one in force (``valid_to``) and adds the new
one; ``team_mapping_end`` ends one. The FOCUS import reads them (``chargeback.focus.teams.MappingIndex``).
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils.text import slugify

from chargeback.errors import TeamMappingError
from chargeback.focus.teams import normalized
from chargeback.models import TeamMapping
from teams.models import Team

#: ``valid_from`` of a first mapping when none is given: it applies to every billing period.
SINCE_ALWAYS = dt.date(2000, 1, 1)


def _month_start(day: dt.date, param: str) -> dt.date:
    if day.day != 1:
        raise TeamMappingError(f"{day:%Y-%m-%d} is not the first day of a month (mappings apply to whole "
                               "billing periods)", param=param)
    return day


def team_mapping_set(*, kind: str, value: str, team: Team, key: str = "", valid_from: dt.date | None = None,
                     created_by=None, note: str = "") -> TeamMapping:
    """Map ``value`` (of ``kind``; for a tag, the tag ``key``) to ``team`` from billing period ``valid_from`` on.

    Args:
        kind: a ``TeamMapping.Kind`` (``tag``, ``sub_account_id``, ``sub_account_name``, ``billing_account``).
        value: the value exactly as FOCUS files write it (``Tags`` value, ``SubAccountId``, …).
        key: the ``Tags`` key, for ``kind="tag"`` only.
        valid_from: first of the first month the mapping applies to (inclusive). Default: every month
            (``SINCE_ALWAYS``) for a value never mapped, the current month for a value mapped already.

    Returns the mapping in force afterwards (the existing one when it names ``team`` already).

    Raises:
        TeamMappingError: an unknown kind, a tag without key (or a key for another kind), an empty
            value, a ``valid_from`` not on the first of a month, or not after the start of the
            mapping in force (history is appended, never rewritten). Nothing is written.
    """
    with transaction.atomic(durable=True):
        return _set(kind=kind, value=value, team=team, key=key, valid_from=valid_from, created_by=created_by,
                    note=note)


def team_mapping_check(*, kind: str, value: str, team: Team, key: str = "", valid_from: dt.date | None = None,
                       lock: bool = False) -> tuple[TeamMapping | None, dt.date | None]:
    """The checks of ``team_mapping_set``, without writing (the admin form runs them to show errors in
    the form). Returns the mapping in force for the value (locked with ``lock``) and the ``valid_from``
    to use (``None`` when the value is mapped to ``team`` already). Raises ``TeamMappingError``."""
    key, value = key.strip(), value.strip()
    if kind not in TeamMapping.Kind.values:
        raise TeamMappingError(f"{kind!r} is not a mapping kind ({', '.join(TeamMapping.Kind.values)})", param="kind")
    if (kind == TeamMapping.Kind.TAG) != bool(key):
        raise TeamMappingError("a tag mapping needs its tag key; other kinds take none", param="key")
    if not value:
        raise TeamMappingError("the value to map is empty", param="value")
    found = TeamMapping.objects.filter(kind=kind, key=key, value=value, valid_to=None)
    current = (found.select_for_update(of=("self",)) if lock else found.select_related("team")).first()
    if current is not None and current.team_id == team.pk:
        return current, None
    if valid_from is None:
        valid_from = SINCE_ALWAYS if current is None else dt.date.today().replace(day=1)
    valid_from = _month_start(valid_from, "valid_from")
    if current is not None and valid_from <= current.valid_from:
        raise TeamMappingError(
            f"{value!r} is mapped to {current.team} since {current.valid_from:%Y-%m}; a new mapping must "
            "start in a later month", param="valid_from")
    return current, valid_from


def _set(*, kind, value, team, key, valid_from, created_by, note) -> TeamMapping:
    current, valid_from = team_mapping_check(kind=kind, value=value, team=team, key=key, valid_from=valid_from,
                                             lock=True)
    key, value = key.strip(), value.strip()
    if valid_from is None:
        return current
    if current is not None:
        current.valid_to = valid_from
        current.save(update_fields=["valid_to"])
    return TeamMapping.objects.create(kind=kind, key=key, value=value, team=team, valid_from=valid_from,
                                      created_by=created_by, note=note[:200])


def team_mapping_end(*, mapping: TeamMapping, valid_to: dt.date) -> TeamMapping:
    """End ``mapping`` before billing period ``valid_to`` (first of a month, exclusive): later months are
    matched by name again (or by a newer mapping).

    Raises ``TeamMappingError`` when it has ended already, or ``valid_to`` is not after its start.
    """
    valid_to = _month_start(valid_to, "valid_to")
    with transaction.atomic(durable=True):
        mapping = TeamMapping.objects.select_for_update(of=("self",)).get(pk=mapping.pk)
        if mapping.valid_to is not None:
            raise TeamMappingError(f"the mapping ended already (before {mapping.valid_to:%Y-%m})", param="valid_to")
        if valid_to <= mapping.valid_from:
            raise TeamMappingError(f"the mapping starts in {mapping.valid_from:%Y-%m}; it must end after",
                                   param="valid_to")
        mapping.valid_to = valid_to
        mapping.save(update_fields=["valid_to"])
    return mapping


def team_mapping_create_team(*, kind: str, value: str, currency: str, key: str = "", created_by=None) -> TeamMapping:
    """Create a team named ``value`` (slug from ``slugify``, made unique with ``-2``, ``-3``…, invoiced
    in ``currency``) and map ``value`` to it for every billing period: finance's "create a team" for an
    unmapped value in the upload preview.

    Raises ``TeamMappingError`` as ``team_mapping_set`` does, or when a team of that name (up to
    case, spacing or punctuation) exists already: map the value to it instead.
    """
    plain = normalized(value)
    for name in Team.objects.values_list("name", flat=True):
        if normalized(name) == plain:
            raise TeamMappingError(f"a team named {name!r} exists already: map {value!r} to it", param="value")
    with transaction.atomic(durable=True):
        base = slugify(value)[:92].strip("-") or "team"
        taken = set(Team.objects.filter(slug__startswith=base).values_list("slug", flat=True))
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        team = Team.objects.create(name=value.strip()[:200], slug=slug, currency=currency)
        return _set(kind=kind, key=key, value=value, team=team, valid_from=None, created_by=created_by,
                    note="created in the FOCUS upload preview")
