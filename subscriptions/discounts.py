"""Discounts: what a coupon takes off a period's fee, as a pure function of plain values.

A coupon (``subscriptions.models.Coupon``, Stripe's shape) takes ``percent_off`` percent of the fee,
or ``amount_off`` in the fee's currency, off the **fee** of each period its discount covers
(``SubscriptionDiscount.applies_to``): never more than the fee, so a discount never makes a fee
negative. Exact at metered precision (12 decimal places, half-up once); the invoice rounds the
discount line with its fee line (``subscriptions.services.invoicing``), MRR divides the
discounted fee by the period's months (``subscriptions.mrr.monthly_amount``).
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from billing_site.money import MONEY_CONTEXT, quantize_metered

ZERO = Decimal(0)
HUNDRED = Decimal(100)

#: The same rule in SQL, over a fee column ``{fee}`` and the coupon's columns ``{c}.percent_off``,
#: ``{c}.amount_off`` (0 without a coupon): ``subscriptions.selectors_mrr`` uses it.
DISCOUNT_SQL = ("CASE WHEN {c}.percent_off IS NOT NULL THEN ROUND({fee} * {c}.percent_off / 100, 12) "
                "WHEN {c}.amount_off IS NOT NULL THEN LEAST({c}.amount_off, {fee}) ELSE 0 END")


def discount_amount(*, fee: Decimal, percent_off: Decimal | None = None, amount_off: Decimal | None = None) -> Decimal:
    """What a coupon takes off ``fee``: ``fee × percent_off / 100`` or ``min(amount_off, fee)``.

    Args:
        fee: a period's fee (≥ 0), a Decimal in the coupon's currency for ``amount_off``.
        percent_off: 0 < p ≤ 100, or ``None``.
        amount_off: > 0 in the fee's currency, or ``None``.

    Returns:
        The discount, ``0 ≤ d ≤ fee``, at metered precision (half-up); 0 without a coupon.

    Raises:
        TypeError: a float; ValueError: a negative fee or a percent outside (0, 100].
    """
    for value in (fee, percent_off, amount_off):
        if value is not None and not isinstance(value, Decimal):
            raise TypeError(f"discount figures are Decimals, got {type(value).__name__}")
    if fee < 0:
        raise ValueError(f"a fee is not negative, got {fee}")
    with localcontext(MONEY_CONTEXT):
        if percent_off is not None:
            if not ZERO < percent_off <= HUNDRED:
                raise ValueError(f"percent_off is in (0, 100], got {percent_off}")
            return min(quantize_metered(fee * percent_off / HUNDRED), fee)
        if amount_off is not None:
            return min(quantize_metered(amount_off), fee)
    return ZERO
