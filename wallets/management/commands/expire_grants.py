"""``python manage.py expire_grants``: expire what is left of past-due grants, release expired holds.

Run it regularly (hourly from cron or a scheduler). It is idempotent: a second run finds nothing.
"""

from django.core.management.base import BaseCommand

from wallets.services.holds import holds_release_expired
from wallets.services.posting import grants_expire


class Command(BaseCommand):
    help = "Write expiry entries for what remains of expired credit grants, and release expired holds."

    def add_arguments(self, parser):
        parser.add_argument("--no-holds", action="store_true", help="Do not release expired holds.")

    def handle(self, *args, no_holds=False, **options):
        entries = grants_expire()
        total = sum((-e.amount for e in entries), start=0)
        self.stdout.write(f"Expired {len(entries)} grant lot(s), {total} in total")
        if not no_holds:
            holds = holds_release_expired()
            self.stdout.write(f"Released {len(holds)} expired hold(s)")
