"""``manage.py collect_invoices [--limit N]``: charge the open invoices of teams with automatic collection
that were never charged (``payments.services.collection.invoices_collect_open``).

Issuing an invoice queues its collection already; this catches invoices issued before a team turned
automatic collection on. A failed payment is left to dunning. Refused without Stripe configured.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing_site.errors import BillingError
from payments.services.collection import invoices_collect_open


class Command(BaseCommand):
    help = "Charge the default card of teams with automatic collection for their open invoices never charged."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="At most this many invoices.")

    def handle(self, *args, limit=None, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be 1 or more")
        try:
            payments = invoices_collect_open(limit=limit)
        except BillingError as exc:
            raise CommandError(str(exc)) from exc
        succeeded = sum(1 for p in payments if p.status == "succeeded")
        self.stdout.write(f"{len(payments)} invoice(s) charged: {succeeded} paid, {len(payments) - succeeded} not paid")
