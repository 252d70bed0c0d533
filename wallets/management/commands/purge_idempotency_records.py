"""``python manage.py purge_idempotency_records``: drop idempotency records older than the retention."""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from billing_site.errors import InvalidRequest
from billing_site.idempotency import idempotency_records_purge


class Command(BaseCommand):
    help = "Delete idempotency records older than --hours (default and minimum 24, as Stripe keeps keys)."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=int, default=24)

    def handle(self, *args, hours=24, **options):
        try:
            deleted = idempotency_records_purge(older_than=dt.timedelta(hours=hours))
        except InvalidRequest as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Deleted {deleted} idempotency record(s) older than {hours} hours")
