"""MeteredSum adds metered amounts exactly, with 12 decimal places."""

from decimal import Decimal

import pytest
from django.db.models import Value
from django.db.models.functions import Coalesce

from billing_site.db import MeteredSum
from chargeback.models import UsageRecord
from tests.factories import TeamFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db


def test_metered_sum_adds_amounts_that_floats_cannot_hold_exactly():
    # Given costs whose float sum carries noise past the 12th decimal (0.1 + 0.2 != 0.3 in binary)
    costs = [Decimal("0.1"), Decimal("0.2"), Decimal("0.000000800000"), Decimal("123.456789012345")] * 250
    team = TeamFactory()
    for cost in costs:
        UsageRecordFactory(team=team, cost=cost)
    # When they are summed in the database
    total = UsageRecord.objects.aggregate(total=MeteredSum("cost"))["total"]
    grouped = UsageRecord.objects.values("team").annotate(total=MeteredSum("cost")).get()["total"]
    # Then the sum is exactly the Decimal sum, with 12 places
    assert total == grouped == sum(costs) == Decimal("30939.197453086250")
    assert total.as_tuple().exponent == -12


def test_metered_sum_of_no_rows_is_none_and_coalesces_to_zero():
    result = UsageRecord.objects.aggregate(
        total=MeteredSum("cost"), zero=Coalesce(MeteredSum("cost"), Value(Decimal(0)))
    )
    assert result["total"] is None
    assert result["zero"] == 0


def test_metered_sum_keeps_credits_negative():
    team = TeamFactory()
    for cost in ["-0.000000000001", "-5.25", "1.000000000000"]:
        UsageRecordFactory(team=team, cost=Decimal(cost))
    assert UsageRecord.objects.aggregate(total=MeteredSum("cost"))["total"] == Decimal("-4.250000000001")


def test_metered_sum_adds_a_month_of_llm_tokens_beyond_a_64_bit_count_of_quanta():
    # 20 million tokens is 2 × 10^19 quanta of 10^-12: more than a 64-bit integer holds.
    team = TeamFactory()
    quantities = [Decimal("10000000.123456"), Decimal("10000000.000001"), Decimal("0.5")]
    for quantity in quantities:
        UsageRecordFactory(team=team, quantity=quantity)
    total = UsageRecord.objects.aggregate(total=MeteredSum("quantity"))["total"]
    assert total == Decimal("20000000.623457")


def test_metered_sum_of_an_expression_with_parameters():
    from django.db.models import Case, When

    team = TeamFactory()
    UsageRecordFactory(team=team, cost=Decimal("2.5"), resource_type="llm")
    UsageRecordFactory(team=team, cost=Decimal("1.25"), resource_type="gpu")
    only_llm = Case(When(resource_type="llm", then="cost"), default=Value(Decimal(0)))
    assert UsageRecord.objects.aggregate(total=MeteredSum(only_llm))["total"] == Decimal("2.5")


def test_metered_sum_is_exact_for_values_of_every_magnitude():
    import random

    rng = random.Random(20240901)
    team = TeamFactory()
    costs = []
    for _ in range(300):
        integer_digits = rng.randint(0, 9)
        places = min(12, 15 - max(integer_digits, 1))
        cost = Decimal(rng.randint(-(10 ** (integer_digits + places)), 10 ** (integer_digits + places))).scaleb(-places)
        costs.append(cost)
        UsageRecordFactory(team=team, cost=cost)
    assert UsageRecord.objects.aggregate(total=MeteredSum("cost"))["total"] == sum(costs)
