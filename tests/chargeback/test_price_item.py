"""``price_item`` / ``price_items``: the one place ``quantity × unit price`` is applied."""

import datetime as dt
from decimal import Decimal

import pytest

from chargeback.errors import AllocationError, PriceNotFound
from chargeback.models import AllocationRun
from chargeback.selectors import price_item, price_items
from chargeback.services.allocation import allocation_run_check_transition
from tests.factories import PriceFactory, TeamFactory

pytestmark = pytest.mark.django_db

D = Decimal
GPT4 = ("llm", "openai", "gpt-4", "token")
AT = dt.datetime(2024, 9, 15, 12, tzinfo=dt.UTC)


def test_price_item_costs_quantity_times_the_team_override():
    team = TeamFactory()
    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=D("0.00003"))
    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=D("0.000012345678"),
                 team=team)

    priced = price_item(team=team, item=GPT4, quantity=D("1234567"), at=AT)

    assert priced.unit_price == D("0.000012345678")
    assert priced.amount == D("15.241566651426")  # 1,234,567 × 0.000012345678, exact at 12 places
    assert priced.currency == "USD" and priced.price.team_id == team.pk


def test_price_item_without_a_valid_price_names_the_item():
    with pytest.raises(PriceNotFound, match="llm/openai/gpt-4/token"):
        price_item(team=None, item=GPT4, quantity=D(1), at=AT)


def test_price_items_prices_each_line_at_its_own_time_and_leaves_unpriced_lines_empty():
    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=D("0.00003"),
                 valid_from=dt.datetime(2024, 9, 1, tzinfo=dt.UTC), valid_to=dt.datetime(2024, 9, 16, tzinfo=dt.UTC))
    PriceFactory(category="llm", provider="openai", model="gpt-4", unit="token", unit_price=D("0.00002"),
                 valid_from=dt.datetime(2024, 9, 16, tzinfo=dt.UTC))
    later = AT + dt.timedelta(days=5)

    first, second, none = price_items(team=None, lines=[
        (GPT4, D(1000), AT), (GPT4, D(1000), later), (("tts", "x", "y", "character"), D(1), AT)])

    assert (first.amount, second.amount, none) == (D("0.03"), D("0.02"), None)


def test_allocation_run_check_transition_follows_the_pipeline_on_the_model():
    run = AllocationRun(pk=7, status=AllocationRun.Status.SUPERSEDED)
    with pytest.raises(AllocationError, match="#7 is superseded; it cannot become committed"):
        allocation_run_check_transition(run=run, to_status=AllocationRun.Status.COMMITTED)
    allocation_run_check_transition(run=AllocationRun(status="draft"), to_status="committed")
