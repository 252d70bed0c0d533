"""Background jobs of the payments app (docs/jobs.md, docs/payments.md)."""

from __future__ import annotations

from jobs import queues
from jobs.progress import Progress, job

from .services.collection import invoice_collect as invoice_collect_service


@job(queue=queues.BILLING)
def invoice_collect(progress: Progress, *, invoice_id: int) -> dict:
    """Charge an issued invoice's team card off-session (``payments.services.collection.invoice_collect``).

    Idempotent: a retry resumes the same attempt (its Stripe idempotency key), a paid invoice is left alone.
    """
    payment = invoice_collect_service(invoice_id=invoice_id)
    if payment is None:
        return {"message": "nothing to collect"}
    return {"message": f"payment {payment.pk}: {payment.status}"}
