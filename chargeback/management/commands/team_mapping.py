"""``python manage.py team_mapping list|set|end``: which FOCUS value belongs to which team.

    team_mapping list [--all]
    team_mapping set (--tag KEY=VALUE | --sub-account-id ID | --sub-account-name NAME | --billing-account ID)
                     --team SLUG [--from YYYY-MM] [--note TEXT]
    team_mapping end (--tag KEY=VALUE | …) --before YYYY-MM

Writes go through ``chargeback.services.team_mapping``; a refusal exits with code 2 and its message.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chargeback.errors import TeamMappingError
from chargeback.models import TeamMapping
from chargeback.periods import BillingPeriod, PeriodError
from chargeback.services.team_mapping import team_mapping_end, team_mapping_set
from teams.models import Team


def _value_arguments(parser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tag", metavar="KEY=VALUE", help="A Tags key and value.")
    which.add_argument("--sub-account-id", metavar="ID", help="A SubAccountId.")
    which.add_argument("--sub-account-name", metavar="NAME", help="A SubAccountName.")
    which.add_argument("--billing-account", metavar="ID", help="A BillingAccountId.")


def _value(options) -> tuple[str, str, str]:
    """(kind, key, value) from the options."""
    if options["tag"] is not None:
        key, sep, value = options["tag"].partition("=")
        if not sep:
            raise CommandError("--tag takes KEY=VALUE", returncode=2)
        return TeamMapping.Kind.TAG, key.strip(), value
    for option, kind in (("sub_account_id", TeamMapping.Kind.SUB_ACCOUNT_ID),
                         ("sub_account_name", TeamMapping.Kind.SUB_ACCOUNT_NAME),
                         ("billing_account", TeamMapping.Kind.BILLING_ACCOUNT)):
        if options[option] is not None:
            return kind, "", options[option]
    raise CommandError("name the value to map", returncode=2)


def _month(text: str | None):
    if text is None:
        return None
    try:
        return BillingPeriod.month(text).start
    except PeriodError as exc:
        raise CommandError(str(exc), returncode=2) from None


class Command(BaseCommand):
    help = "List, set or end team mappings (FOCUS tag, sub-account or billing account → team)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="The mappings in force (--all: with their history).")
        listing.add_argument("--all", action="store_true")
        setting = sub.add_parser("set", help="Map a value to a team (ends the mapping in force, if any).")
        _value_arguments(setting)
        setting.add_argument("--team", required=True, metavar="SLUG")
        setting.add_argument("--from", dest="valid_from", metavar="YYYY-MM")
        setting.add_argument("--note", default="")
        ending = sub.add_parser("end", help="End the mapping of a value before a month.")
        _value_arguments(ending)
        ending.add_argument("--before", required=True, metavar="YYYY-MM")

    def handle(self, *args, **options):
        action = options["action"]
        if action == "list":
            mappings = TeamMapping.objects.select_related("team").order_by("kind", "key", "value", "valid_from")
            if not options["all"]:
                mappings = mappings.filter(valid_to=None)
            for m in mappings:
                what = f"{m.key}={m.value}" if m.kind == TeamMapping.Kind.TAG else f"{m.kind} {m.value}"
                until = f"{m.valid_to:%Y-%m}" if m.valid_to else "…"
                self.stdout.write(f"{what} → {m.team.slug}  [{m.valid_from:%Y-%m}, {until})")
            return
        kind, key, value = _value(options)
        try:
            if action == "set":
                team = Team.objects.filter(slug=options["team"]).first()
                if team is None:
                    raise CommandError(f"no team with slug {options['team']!r}", returncode=2)
                mapping = team_mapping_set(kind=kind, key=key, value=value, team=team,
                                           valid_from=_month(options["valid_from"]), note=options["note"])
                self.stdout.write(self.style.SUCCESS(f"Mapped: {mapping}"))
            else:
                mapping = TeamMapping.objects.filter(kind=kind, key=key, value=value, valid_to=None).first()
                if mapping is None:
                    raise CommandError(f"{value!r} has no mapping in force", returncode=2)
                team_mapping_end(mapping=mapping, valid_to=_month(options["before"]))
                self.stdout.write(self.style.SUCCESS(f"Ended before {options['before']}: {mapping}"))
        except TeamMappingError as exc:
            raise CommandError(exc.message, returncode=2) from exc
