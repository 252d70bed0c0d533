"""What the payments app does when invoices tell it something (``invoices.signals``).

Connected in ``PaymentsConfig.ready``. Receivers only defer jobs, in the sender's transaction.
"""

from __future__ import annotations

from django.dispatch import receiver

from invoices.models import Invoice
from invoices.signals import invoices_issued
from jobs.progress import job_defer

from .stripe_client import payments_configured


@receiver(invoices_issued, dispatch_uid="payments.invoices_issued_collect")
def invoices_issued_collect(sender, *, invoice_ids, **kwargs) -> None:
    """Queue the automatic collection (``payments.tasks.invoice_collect``, one job per invoice) of the
    issued invoices whose team has automatic collection and a Stripe customer, when payments are
    configured. One query for all of them; nothing at all when payments are not configured. The jobs
    commit with the issue or not at all, and run after it, outside its transaction and locks."""
    if not payments_configured() or not invoice_ids:
        return
    due = (Invoice.objects.filter(pk__in=invoice_ids, total__gt=0, team__billing_settings__automatic_collection=True)
           .exclude(team__billing_settings__stripe_customer_id="").order_by("pk").values_list("pk", "number"))
    for pk, number in due:
        job_defer("payments.tasks.invoice_collect", title=f"Collect invoice {number}", invoice_id=pk)
