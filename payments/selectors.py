"""Reads of the payments app: Stripe's recent charges, the product's payments."""

from __future__ import annotations

from .models import Payment
from .stripe_client import field, payments_require, stripe_call, stripe_client, stripe_id


def recent_charges(*, limit: int = 20) -> list[dict]:
    """The latest ``limit`` (1 to 100) charges at Stripe, newest first, as Stripe gives them:
    ``{id, amount (integer minor units), currency (lower case), status, customer, description,
    created (Unix seconds), paid, refunded}``.

    Raises:
        PaymentsNotConfigured, StripeUnavailable.
    """
    payments_require()
    listed = stripe_call(stripe_client().v1.charges.list, params={"limit": max(1, min(int(limit), 100))})
    rows = [{
        "id": charge.id, "amount": int(field(charge, "amount", 0)), "currency": field(charge, "currency", ""),
        "status": field(charge, "status", ""), "customer": stripe_id(field(charge, "customer")) or None,
        "description": field(charge, "description"), "created": int(field(charge, "created", 0)),
        "paid": bool(field(charge, "paid", False)), "refunded": bool(field(charge, "refunded", False)),
    } for charge in listed.data]
    rows.sort(key=lambda row: (-row["created"], row["id"]))
    return rows[:limit]


def payments_of_invoice(*, invoice_id: int):
    """The payment attempts of an invoice, latest first."""
    return Payment.objects.filter(invoice_id=invoice_id).order_by("-attempt", "-pk")
