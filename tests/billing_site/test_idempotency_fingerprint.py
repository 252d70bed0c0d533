"""The one-pass fingerprint of a JSON body's parameters is the canonical fingerprint, byte for byte.

``request_fingerprint_json`` (the usage batch's) must give the digest ``request_fingerprint`` gives,
so a key stored by either matches a retry fingerprinted by the other: Decimals equal by value
(``1.50`` = ``1.5``), keys in any order, nested lists and objects, times and model instances.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing_site.idempotency import request_fingerprint, request_fingerprint_json

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.datetimes(timezones=st.just(dt.timezone.utc)),
)
json_like = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=20)


@given(params=st.dictionaries(st.text(max_size=6), json_like, max_size=5))
def test_request_fingerprint_json_is_the_canonical_fingerprint(params):
    # given parameters with string keys, as a parsed JSON body has; then both digests agree
    assert request_fingerprint_json("usage_batch", params) == request_fingerprint("usage_batch", params)


def test_request_fingerprint_json_compares_decimals_by_value():
    # given the same batch with a quantity written two ways, and keys in another order
    first = {"team": 1, "records": [{"quantity": Decimal("1.50"), "idempotency_key": "a"}]}
    second = {"records": [{"idempotency_key": "a", "quantity": Decimal("1.5")}], "team": 1}
    # then one fingerprint; another quantity, another fingerprint
    assert request_fingerprint_json("usage_batch", first) == request_fingerprint_json("usage_batch", second)
    third = {"team": 1, "records": [{"quantity": Decimal("1.51"), "idempotency_key": "a"}]}
    assert request_fingerprint_json("usage_batch", first) != request_fingerprint_json("usage_batch", third)
