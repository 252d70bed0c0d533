"""The usage batch's column-at-a-time checks give what the one-by-one checks give, or leave the batch to them.

``POST usage/batch/`` checks its 1,000 records a column at a time (``_records_columns`` in the API,
``_usage_rows_plain`` in the service) and falls back to the record-by-record checks, which name the
first bad field, whenever a column check fails. Hypothesis draws batches mixing good and bad values
of every field; the fast pass must never accept a batch the one-by-one pass refuses, and what it
accepts must be the same rows.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from chargeback.api.serializers import _records_columns, _records_one_by_one
from chargeback.services.usage import _usage_rows_checked_one_by_one, _usage_rows_plain

TEXT = st.one_of(
    st.sampled_from(["llm", " openai ", "", "  ", "gpt-4", "x" * 60, "x" * 256, "tab\there", "back\\slash"]),
    st.text(max_size=8), st.none(), st.integers(-2, 2), st.just(["list"]),
)
NUMBER = st.one_of(
    st.sampled_from(["1000", "0", "-0", "-1", "1.5", "1e3", "1E+3", "0.000000000001", "0.0000000000001", "lots", "NaN",
                     "Infinity", "1" * 19, "1" * 18, "1." + "0" * 12, " 7 ", ""]),
    st.integers(-3, 10 ** 19), st.decimals(allow_nan=True, allow_infinity=True, places=None),
    st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False), st.just({}),
)
TIME = st.one_of(
    st.sampled_from(["2024-10-15T12:00:00Z", "2024-10-15T12:00:00+16:00", "2024-10-15T12:00:00", "soon",
                     "0001-01-01T00:00:00+01:00", "2024-10-15 12:00:00-05:00", "2024-02-30T00:00:00Z"]),
    st.none(), st.integers(0, 3),
)
FIELDS = {
    "agent_id": TEXT, "resource_type": TEXT, "provider": TEXT, "model": TEXT, "unit": TEXT,
    "idempotency_key": TEXT, "feature_key": TEXT, "external_reference": TEXT,
    "quantity": NUMBER, "cost": NUMBER,
    "currency": st.one_of(st.sampled_from(["USD", "EUR", "usd", "US", "USD\n", "ÄÖÜ"]), st.none(), st.integers(0, 1)),
    "occurred_at": TIME,
    "metadata": st.one_of(st.none(), st.just({}), st.just({"a": {"b": 1}}), st.just("x"), st.just([1])),
    "user": st.one_of(st.none(), st.integers(1, 3), st.booleans(), st.just("1")),
    "colour": st.just("red"),
}
GOOD = {"resource_type": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": "1000",
        "occurred_at": "2024-10-15T12:00:00Z", "idempotency_key": "k"}


@st.composite
def batches(draw):
    """A batch of mostly good records, some of whose fields are replaced or left out."""
    records = []
    for i in range(draw(st.integers(1, 6))):
        record = {**GOOD, "idempotency_key": f"k-{i}"}
        for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=3)):
            if draw(st.booleans()) and name in record:
                del record[name]
            else:
                record[name] = draw(FIELDS[name])
        records.append(record)
    if draw(st.integers(0, 9)) == 0:
        records[draw(st.integers(0, len(records) - 1))] = draw(st.sampled_from([[], "record", None]))
    return records


def _one_by_one(raw):
    try:
        return _records_one_by_one(raw)
    except serializers.ValidationError as exc:
        return exc.detail


@settings(max_examples=400, deadline=None)
@given(batches())
def test_batch_columns_check_accepts_only_what_the_one_by_one_check_accepts_and_gives_the_same_rows(raw):
    # when the batch is checked a column at a time
    fast = _records_columns(raw)
    # then it is either left to the one-by-one check, or its rows and users are exactly that check's
    if fast is not None:
        assert _one_by_one(raw) == fast
        for fast_row, slow_row in zip(fast[0], _records_one_by_one(raw)[0]):
            assert list(fast_row) == list(slow_row)  # the same fields in the same order
            for name, value in fast_row.items():
                assert type(value) is type(slow_row[name])
                assert str(value) == str(slow_row[name])  # the same digits (1.0 stays 1.0)


def test_batch_columns_check_takes_a_batch_of_good_records():
    raw = [{**GOOD, "idempotency_key": f"k-{i}", "metadata": {"a": 1}, "currency": "USD", "cost": "0.5", "user": 2}
           for i in range(3)] + [{**GOOD, "idempotency_key": "k-3"}]
    assert _records_columns(raw) == _records_one_by_one(raw)


def test_batch_columns_check_leaves_a_bad_record_to_the_one_by_one_check_which_names_it():
    raw = [{**GOOD, "idempotency_key": f"k-{i}"} for i in range(3)]
    raw[2]["quantity"] = "-1"
    assert _records_columns(raw) is None
    assert _one_by_one(raw) == {"records": {2: {"quantity": ["Ensure this value is greater than or equal to 0."]}}}


UTC = dt.timezone.utc
ROW_VALUES = {
    "quantity": st.one_of(st.sampled_from([Decimal("1000"), Decimal("-0"), Decimal("-1"), Decimal("NaN"),
                                           Decimal("1E+3"), Decimal("sNaN")]), st.integers(-1, 3), st.just(1.5),
                          st.none()),
    "cost": st.one_of(st.none(), st.just(Decimal("0.5"))),
    "currency": st.one_of(st.none(), st.sampled_from(["USD", "usd", "EURO", "ÄÖÜ", "12A"])),
    "resource_type": st.sampled_from(["llm", "", None]),
    "idempotency_key": st.sampled_from(["k", "", None]),
    "occurred_at": st.one_of(st.sampled_from([dt.datetime(2024, 10, 15, tzinfo=UTC), dt.datetime(2024, 10, 15),
                                              dt.date(2024, 10, 15), "2024-10-15T12:00:00Z"]), st.none()),
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional=ROW_VALUES), min_size=1, max_size=4))
def test_service_rows_called_plain_are_unchanged_by_the_one_by_one_check(records):
    rows = [{"resource_type": "llm", "idempotency_key": f"k-{i}", "quantity": Decimal(1),
             "occurred_at": dt.datetime(2024, 10, 15, tzinfo=UTC), **record} for i, record in enumerate(records)]
    # when the service finds the rows plain, the one-by-one check accepts them and changes nothing
    if _usage_rows_plain(rows):
        checked = _usage_rows_checked_one_by_one(rows)
        assert checked == rows
        assert [[str(v) for v in row.values()] for row in checked] == [[str(v) for v in row.values()] for row in rows]
