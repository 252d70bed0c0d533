"""The team of a FOCUS row: finance's team mappings first, then the team a tag value names by slug or name.

``MappingIndex`` holds the ``TeamMapping`` rows for the parser (pure dictionary lookups, no query per
row); a row it maps carries the team key ``mapped_key(team_id)``. Other team keys (the value of the
team tag, or ``SubAccountName`` with the fallback) are resolved by ``TeamResolver``, once per
distinct key.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from chargeback.focus.results import FocusImportResult
from chargeback.models import TeamMapping
from teams.models import Team

_SLUG_MAX = 100
#: Team keys of mapped rows start with a NUL character, which no FOCUS value can hold (refused on reading).
_MAPPED = "\x00team:"


def mapped_key(team_id: int) -> str:
    """The team key of a row that a mapping gives to team ``team_id``."""
    return f"{_MAPPED}{team_id}"


def normalized(name: str) -> str:
    """``name`` without case, spacing or punctuation: "Data Warehouse", "data-warehouse" and
    "data_warehouse" are one name (``datawarehouse``)."""
    return re.sub(r"[\W_]+", "", name.casefold())


class MappingIndex:
    """The team mappings, for lookups by the parser: ``team(kind, key, value, period)`` → team id or None.

    A mapping applies to the billing periods in ``[valid_from, valid_to)``; a value has few rows of
    history, so each lookup walks a short list.
    """

    def __init__(self, mappings: Iterable[TeamMapping] = ()) -> None:
        self.by_value: dict[tuple[str, str, str], list[tuple[dt.date, dt.date | None, int]]] = {}
        self.tag_keys: set[str] = set()
        self.kinds: set[str] = set()
        for m in mappings:
            self.by_value.setdefault((m.kind, m.key, m.value), []).append((m.valid_from, m.valid_to, m.team_id))
            self.kinds.add(m.kind)
            if m.kind == TeamMapping.Kind.TAG:
                self.tag_keys.add(m.key)

    @classmethod
    def load(cls) -> MappingIndex:
        return cls(TeamMapping.objects.only("kind", "key", "value", "team_id", "valid_from", "valid_to"))

    def __bool__(self) -> bool:
        return bool(self.by_value)

    def team(self, kind: str, key: str, value: str, period: dt.date) -> int | None:
        for start, end, team_id in self.by_value.get((kind, key, value), ()):
            if start <= period and (end is None or period < end):
                return team_id
        return None


class TeamResolver:
    """Resolves team keys (tag values, sub-account names) to team ids, once per distinct key.

    In order: a key from a mapping (``mapped_key``) is its team; a key equal to a team's ``slug``,
    or to its ``name`` up to case, is that team (the oldest, if several). A key whose ``normalized``
    form equals an existing team's name or slug is never made a second team: it stays unallocated
    and is reported in ``result.unmapped`` with the team it resembles, for finance to map. Other keys
    create a team only with ``create_teams`` (``name`` = the key, a slug from ``slugify(key)``, the
    ``BillingCurrency`` of the first row naming it); without, they stay unallocated and are reported.
    Keys normalizing to a team created by this same import join that team.
    """

    def __init__(self, result: FocusImportResult, *, create_teams: bool = False) -> None:
        self.result = result
        self.create_teams = create_teams
        self.ids: dict[str, int | None] = {}
        self._loaded = False
        self._slug: dict[str, int] = {}
        self._name: dict[str, int] = {}  # casefolded name → the oldest team's id
        self._normal: dict[str, str] = {}  # normalized name or slug → the oldest team's name
        self._created: dict[str, int] = {}  # normalized name → id, teams created by this import

    def _load(self) -> None:
        if not self._loaded:
            for team_id, name, slug in Team.objects.order_by("pk").values_list("pk", "name", "slug"):
                self._add(team_id, name, slug)
            self._loaded = True

    def _add(self, team_id: int, name: str, slug: str) -> None:
        self._slug.setdefault(slug, team_id)
        self._name.setdefault(name.casefold(), team_id)
        for form in (normalized(name), normalized(slug)):
            if form:
                self._normal.setdefault(form, name)

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read the teams (once, on the first block naming any)."""
        self._load()

    def resolve(self, key: str, currency: str) -> int | None:
        if key in self.ids:
            return self.ids[key]
        team_id = self._resolve(key, currency)
        self.ids[key] = team_id
        return team_id

    def _resolve(self, key: str, currency: str) -> int | None:
        if key.startswith(_MAPPED):
            return int(key[len(_MAPPED):])
        self._load()
        team_id = self._slug.get(key) or self._name.get(key.casefold())
        if team_id is not None:
            return team_id
        plain = normalized(key)
        if plain in self._created:
            return self._created[plain]
        if plain in self._normal:
            self.result.unmapped_resembles[key] = self._normal[plain]
            return None
        if not self.create_teams or not plain:
            return None
        team_id = self._create(key, currency)
        self._created[plain] = team_id
        return team_id

    def _create(self, name: str, currency: str) -> int:
        base = slugify(name)[: _SLUG_MAX - 8].strip("-") or "team"
        taken = set(Team.objects.filter(slug__startswith=base).values_list("slug", flat=True))
        suffix = 1
        while True:
            slug = base if suffix == 1 else f"{base}-{suffix}"
            suffix += 1
            if slug in taken:
                continue
            try:
                # A savepoint, so a slug taken meanwhile by another writer costs one retry, not the import.
                with transaction.atomic():
                    team = Team.objects.create(name=name, slug=slug, currency=currency)
            except IntegrityError:
                taken.add(slug)
                continue
            self.result.new_teams.append(name)
            self._add(team.pk, name, slug)
            return team.pk
