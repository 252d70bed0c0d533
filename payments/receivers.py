"""What the payments app does when invoices tell it something (``invoices.signals``).

Connected in ``PaymentsConfig.ready``. Receivers only defer jobs, in the sender's transaction.
"""

from __future__ import annotations

from django.dispatch import receiver

from invoices.models import Invoice
from invoices.signals import invoices_issued, invoices_paid
from jobs.progress import job_defer

from .models import Dunning
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


@receiver(invoices_paid, dispatch_uid="payments.invoices_paid_end_dunning")
def invoices_paid_end_dunning(sender, *, invoice_ids, **kwargs) -> None:
    """Queue the end of the dunning (``payments.tasks.dunning_end``) of each paid invoice that has an
    open one: an invoice marked paid by hand, or paid by a card outside a retry. One query; nothing
    when no dunning is open. The job reverses what the dunning did (subscription active, wallets
    unfrozen) right after the payment commits; ``run_dunning`` would otherwise do it at its next run."""
    open_ = (Dunning.objects.filter(invoice_id__in=invoice_ids, status__in=[Dunning.Status.ACTIVE,
                                                                             Dunning.Status.EXHAUSTED])
             .order_by("invoice_id").values_list("invoice_id", flat=True))
    for invoice_id in open_:
        job_defer("payments.tasks.dunning_end", title=f"End the dunning of invoice {invoice_id}", invoice_id=invoice_id)
