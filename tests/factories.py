"""factory-boy factories for plain rows. Money movements go through services, never through these."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from chargeback.models import AllocatedCost, AllocationRule, AllocationRun, AllocationTarget, Price, UsageRecord
from invoices.models import Invoice, InvoiceLine
from teams.models import Team, TeamMembership


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests-only")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")
    cost_center = factory.Sequence(lambda n: f"CC-{1000 + n}")
    currency = "USD"


class TeamMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TeamMembership

    user = factory.SubFactory(UserFactory)
    team = factory.SubFactory(TeamFactory)
    role = TeamMembership.Role.MEMBER


class UsageRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageRecord

    team = factory.SubFactory(TeamFactory)
    resource_type = "compute"
    provider = "AWS"
    service_name = "Amazon Elastic Compute Cloud"
    unit = "Hours"
    quantity = Decimal("1")
    cost = Decimal("1.000000000000")
    currency = "USD"
    occurred_at = factory.LazyFunction(lambda: timezone.make_aware(dt.datetime(2024, 9, 15, 12, 0)))
    billing_period_start = factory.LazyAttribute(lambda r: r.occurred_at.date().replace(day=1))
    source = UsageRecord.Source.API
    idempotency_key = factory.Sequence(lambda n: f"usage-{n}")


class PriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Price

    category = "llm"
    provider = "openai"
    model = "gpt-4"
    unit = "token"
    unit_price = Decimal("0.00003")
    currency = "USD"
    valid_from = factory.LazyFunction(lambda: timezone.make_aware(dt.datetime(2024, 1, 1)))


class AllocationRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AllocationRule

    name = factory.Sequence(lambda n: f"Rule {n}")
    rule_type = AllocationRule.RuleType.EQUAL_SPLIT
    source = AllocationRule.Source.UNALLOCATED


class AllocationTargetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AllocationTarget

    rule = factory.SubFactory(AllocationRuleFactory)
    team = factory.SubFactory(TeamFactory)


class AllocationRunFactory(factory.django.DjangoModelFactory):
    """A committed run for September 2024 with no rows; real runs come from the allocation services."""

    class Meta:
        model = AllocationRun

    period_start = dt.date(2024, 9, 1)
    period_end = dt.date(2024, 10, 1)
    status = AllocationRun.Status.COMMITTED
    currency = "USD"


class AllocatedCostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AllocatedCost

    run = factory.SubFactory(AllocationRunFactory)
    team = factory.SubFactory(TeamFactory)
    service = "Amazon Elastic Compute Cloud"
    amount = Decimal("1.000000000000")
    currency = "USD"
    record_count = 1


class InvoiceFactory(factory.django.DjangoModelFactory):
    """A draft invoice row; invoices with lines and totals come from the invoice services."""

    class Meta:
        model = Invoice

    team = factory.SubFactory(TeamFactory)
    team_name = factory.LazyAttribute(lambda i: i.team.name)
    cost_center = factory.LazyAttribute(lambda i: i.team.cost_center)
    period_start = dt.date(2024, 9, 1)
    period_end = dt.date(2024, 10, 1)
    currency = "USD"


class InvoiceLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InvoiceLine

    invoice = factory.SubFactory(InvoiceFactory)
    position = factory.Sequence(lambda n: n + 1)
    description = "Amazon Elastic Compute Cloud"
    service = "Amazon Elastic Compute Cloud"
    amount_precise = Decimal("1.000000000000")
    amount = Decimal("1.00")


# --- invoices: lifecycle, credit notes ---------------------------------------------------------------


def draft_invoice(*, team=None, amounts=("10.00",), tax_rate=Decimal(0), **fields) -> Invoice:
    """A draft invoice with one line per amount (minor units, as text), its subtotal, tax and total tied out.

    Tax is ``tax_rate`` percent of the subtotal rounded once, half-up (``billing_site.money``), as the
    generation does. Each call makes a new team unless ``team`` is given (one live invoice per team
    and period).
    """
    from billing_site.money import to_minor_units

    team = team or TeamFactory()
    currency = fields.pop("currency", "USD")
    subtotal = sum((Decimal(a) for a in amounts), Decimal(0))
    tax = to_minor_units(subtotal * Decimal(tax_rate) / 100, currency)
    invoice = InvoiceFactory(team=team, currency=currency, subtotal=subtotal, tax_rate=Decimal(tax_rate),
                             tax_amount=tax, total=subtotal + tax, **fields)
    for position, amount in enumerate(amounts, start=1):
        InvoiceLineFactory(invoice=invoice, position=position, description=f"Service {position}",
                           service=f"Service {position}", amount_precise=Decimal(amount), amount=Decimal(amount))
    return invoice
