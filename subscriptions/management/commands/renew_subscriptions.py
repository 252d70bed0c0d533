"""``manage.py renew_subscriptions [--at ISO] [--batch-size N] [--render-pdfs]``: bill every due subscription.

Calls ``subscriptions.services.renewal.subscriptions_renew_due`` (the same service a periodic job
will call): idempotent per subscription and period, so running it twice bills nothing twice.
"""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing_site.errors import BillingError
from invoices.models import Invoice
from invoices.services.pdf_storage import invoice_pdf_store
from subscriptions.services.renewal import subscriptions_renew_due


class Command(BaseCommand):
    help = "Renew the subscriptions whose period has ended: invoice the fee in advance and the overage in arrears."

    def add_arguments(self, parser):
        parser.add_argument("--at", help="Renew up to this instant (ISO 8601, e.g. 2024-02-01T00:00:00Z); default now.")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--render-pdfs", action="store_true", help="Render the PDFs of the invoices written.")

    def handle(self, *args, at=None, batch_size=1000, render_pdfs=False, **options):
        if at:
            try:
                at = dt.datetime.fromisoformat(at)
            except ValueError:
                raise CommandError(f"--at {at!r} is not an ISO 8601 instant") from None
            if timezone.is_naive(at):
                raise CommandError("--at needs a time zone, e.g. 2024-02-01T00:00:00Z")
        started = timezone.now()
        try:
            result = subscriptions_renew_due(at=at, batch_size=batch_size)
        except BillingError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"renewed {result.renewed}, canceled {result.canceled}, invoices {result.invoices}, lines {result.lines}"
            + (f", past due {len(result.past_due)}" if result.past_due else "")
        )
        if render_pdfs:
            pending = Invoice.objects.filter(kind=Invoice.Kind.SUBSCRIPTION, pdf="", created_at__gte=started)
            count = 0
            for invoice in pending.iterator():
                invoice_pdf_store(invoice=invoice)
                count += 1
            self.stdout.write(f"rendered {count} PDFs")
