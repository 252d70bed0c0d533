"""Background jobs of the payments app (docs/jobs.md, docs/payments.md)."""

from __future__ import annotations

from jobs import queues
from jobs.progress import Progress, job

from .services.collection import invoice_collect as invoice_collect_service
from .services.dunning import dunning_settle


@job(queue=queues.BILLING)
def invoice_collect(progress: Progress, *, invoice_id: int) -> dict:
    """Charge an issued invoice's team card off-session (``payments.services.collection.invoice_collect``).

    Idempotent: a retry resumes the same attempt (its Stripe idempotency key), a paid invoice is left alone.
    """
    payment = invoice_collect_service(invoice_id=invoice_id)
    if payment is None:
        return {"message": "nothing to collect"}
    return {"message": f"payment {payment.pk}: {payment.status}"}


@job(queue=queues.BILLING)
def dunning_end(progress: Progress, *, invoice_id: int) -> dict:
    """End the dunning of an invoice paid or cancelled by any door (``payments.services.dunning.dunning_settle``):
    the subscription active again, the wallets the dunning froze unfrozen. Idempotent."""
    dunning = dunning_settle(invoice_id=invoice_id)
    if dunning is None:
        return {"message": "no open dunning"}
    return {"message": f"dunning {dunning.pk}: {dunning.status}"}
