"""The bounds of stored amounts and the one Decimal context that keeps sums exact (billing_site.money)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_site.money import (
    AmountOutOfRange,
    check_within_bound,
    metered_cost,
    quantize_metered,
)

D = Decimal


@pytest.mark.parametrize("value", [D(10) ** 18, -(D(10) ** 18), D("1E+40")])
def test_a_figure_at_or_past_the_bound_is_refused_naming_the_field(value):
    with pytest.raises(AmountOutOfRange) as refused:
        check_within_bound(value, param="amount", what="the balance of wallet 3")
    assert (refused.value.param, refused.value.code, refused.value.http_status) == ("amount", "amount_out_of_range", 422)
    assert "the balance of wallet 3" in refused.value.message


def test_metered_cost_multiplies_exactly_and_rounds_once():
    # an 18-digit quantity × a 13-digit price: Python's 28 digits would round the product, then fail to quantize it
    quantity, price = D("123456789012345678"), D("1.000000000001")
    assert metered_cost(quantity, price) == D("123456789012469134.789012345678")
    # half-up, once, at the twelfth place
    assert metered_cost(D("99999999999999.5"), D("1.000000000001")) == D("100000000000099.500000000000")
    assert quantize_metered(D("999999999999999999.9999999999994")) == D("999999999999999999.999999999999")
