"""The team of a FOCUS row: team keys (tag values, sub-account names) resolved to teams, created on first sight."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils.text import slugify

from chargeback.focus.results import FocusImportResult
from teams.models import Team

_SLUG_MAX = 100


class TeamResolver:
    """Resolves team keys (tag values, sub-account names) to team ids, creating teams on first sight.

    A key names the team whose ``name`` equals it case-insensitively (the oldest such team); else a
    team is created with ``name`` = the key and a slug from ``slugify(key)``, made unique with
    ``-2``, ``-3``… when another team has it. The currency of a new team is the ``BillingCurrency``
    of the first row naming it.
    """

    def __init__(self, result: FocusImportResult) -> None:
        self.result = result
        self.ids: dict[str, int] = {}

    def prefetch(self, keys: Iterable[str]) -> None:
        wanted = {k.lower(): k for k in keys if k not in self.ids}
        if not wanted:
            return
        found = (
            Team.objects.annotate(lname=Lower("name"))
            .filter(lname__in=list(wanted))
            .order_by("-pk")
            .values_list("lname", "pk")
        )
        by_lower = dict(found)  # descending pk, so the oldest team wins
        for lower, key in wanted.items():
            if lower in by_lower:
                self.ids[key] = by_lower[lower]

    def resolve(self, key: str, currency: str) -> int:
        team_id = self.ids.get(key)
        if team_id is None:
            team = Team.objects.filter(name__iexact=key).order_by("pk").first()
            team_id = team.pk if team is not None else self._create(key, currency)
            self.ids[key] = team_id
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
            return team.pk
