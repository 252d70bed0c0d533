"""Prices and allocation rules in the admin: validation in the form, and the audit trail."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from chargeback.models import AllocationRule, Price
from tests.factories import AllocationRuleFactory, AllocationTargetFactory, PriceFactory, TeamFactory

pytestmark = pytest.mark.django_db


def _price_data(**changes):
    data = {"category": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "unit_price": "0.00004",
            "currency": "USD", "team": "", "valid_from_0": "2024-06-01", "valid_from_1": "00:00:00",
            "valid_to_0": "", "valid_to_1": ""}
    data.update(changes)
    return data


def test_price_whose_validity_overlaps_another_period_is_refused_with_the_other_price(finance):
    existing = PriceFactory(valid_from=timezone.make_aware(dt.datetime(2024, 1, 1)))  # open-ended
    response = finance.post(reverse("admin:chargeback_price_add"), _price_data())
    assert response.status_code == 200
    assert f"price #{existing.pk}" in str(response.context["adminform"].form.errors["valid_from"])
    assert Price.objects.count() == 1


def test_price_after_the_previous_period_ends_is_saved(finance):
    PriceFactory(valid_from=timezone.make_aware(dt.datetime(2024, 1, 1)),
                 valid_to=timezone.make_aware(dt.datetime(2024, 6, 1)))
    response = finance.post(reverse("admin:chargeback_price_add"), _price_data())
    assert response.status_code == 302
    assert Price.objects.count() == 2


def test_team_override_may_share_the_period_of_the_global_price(finance):
    PriceFactory(valid_from=timezone.make_aware(dt.datetime(2024, 1, 1)))
    team = TeamFactory()
    response = finance.post(reverse("admin:chargeback_price_add"), _price_data(team=team.pk))
    assert response.status_code == 302
    overrides = finance.get(reverse("admin:chargeback_price_changelist"), {"scope": "override"})
    assert [p.team_id for p in overrides.context["cl"].result_list] == [team.pk]


def test_price_change_is_in_its_history_with_actor_and_old_and_new_value(finance, finance_user):
    price = PriceFactory(valid_from=timezone.make_aware(dt.datetime(2024, 1, 1)), unit_price="0.00003")
    url = reverse("admin:chargeback_price_change", args=[price.pk])
    response = finance.post(url, _price_data(unit_price="0.00005", valid_from_0="2024-01-01"))
    assert response.status_code == 302
    history = finance.get(reverse("admin:chargeback_price_history", args=[price.pk])).content.decode()
    assert finance_user.username in history
    assert "0.00003" in history and "0.00005" in history


def _rule_data(rule_type, targets, **changes):
    data = {"name": "Shared platform", "description": "", "rule_type": rule_type, "enabled": "on", "priority": "100",
            "scope_team": "", "source": "unallocated", "source_team": "", "match_resource_type": "",
            "match_provider": "", "match_service_name": "", "match_tag_key": "", "match_tag_value": "",
            "valid_from": "", "valid_to": "",
            "targets-TOTAL_FORMS": str(len(targets)), "targets-INITIAL_FORMS": "0",
            "targets-MIN_NUM_FORMS": "0", "targets-MAX_NUM_FORMS": "1000"}
    for i, (team, percentage) in enumerate(targets):
        data.update({f"targets-{i}-team": str(team.pk), f"targets-{i}-user": "",
                     f"targets-{i}-percentage": percentage})
    data.update(changes)
    return data


def _errors(response) -> str:
    return " ".join(str(e) for formset in response.context["inline_admin_formsets"]
                    for e in formset.formset.non_form_errors())


def test_fixed_split_not_summing_to_100_is_refused(finance):
    a, b = TeamFactory(), TeamFactory()
    response = finance.post(reverse("admin:chargeback_allocationrule_add"),
                            _rule_data("fixed_split", [(a, "60"), (b, "30")]))
    assert response.status_code == 200
    assert "sum to 90" in _errors(response)
    assert not AllocationRule.objects.exists()


@pytest.mark.parametrize("rule_type", ["fixed_split", "equal_split"])
def test_rule_type_that_needs_targets_is_refused_without_them(finance, rule_type):
    response = finance.post(reverse("admin:chargeback_allocationrule_add"), _rule_data(rule_type, []))
    assert response.status_code == 200
    assert "needs at least one target" in _errors(response)


def test_fixed_split_summing_to_100_is_saved_with_its_creator(finance, finance_user):
    a, b = TeamFactory(), TeamFactory()
    response = finance.post(reverse("admin:chargeback_allocationrule_add"),
                            _rule_data("fixed_split", [(a, "60"), (b, "40")]))
    assert response.status_code == 302
    rule = AllocationRule.objects.get()
    assert rule.created_by == finance_user and rule.targets.count() == 2


def test_rule_history_shows_the_changes_of_its_targets(finance, finance_user):
    a, b = TeamFactory(name="Search"), TeamFactory(name="Maps")
    finance.post(reverse("admin:chargeback_allocationrule_add"), _rule_data("equal_split", [(a, "")]))
    rule = AllocationRule.objects.get()
    target = rule.targets.get()
    data = _rule_data("equal_split", [], **{
        "targets-TOTAL_FORMS": "2", "targets-INITIAL_FORMS": "1",
        "targets-0-id": str(target.pk), "targets-0-rule": str(rule.pk), "targets-0-team": str(a.pk),
        "targets-0-user": "", "targets-0-percentage": "",
        "targets-1-team": str(b.pk), "targets-1-user": "", "targets-1-percentage": "",
    })
    assert finance.post(reverse("admin:chargeback_allocationrule_change", args=[rule.pk]), data).status_code == 302

    history = finance.get(reverse("admin:chargeback_allocationrule_history", args=[rule.pk])).content.decode()
    assert "Maps" in history and finance_user.username in history


def test_by_usage_rule_with_a_percentage_is_refused(finance):
    a = TeamFactory()
    response = finance.post(reverse("admin:chargeback_allocationrule_add"), _rule_data("by_usage", [(a, "50")]))
    assert response.status_code == 200
    assert "fixed splits only" in _errors(response)


def test_existing_rule_targets_render_in_the_change_form(finance):
    target = AllocationTargetFactory(rule=AllocationRuleFactory(rule_type="equal_split"))
    page = finance.get(reverse("admin:chargeback_allocationrule_change", args=[target.rule.pk]))
    assert page.status_code == 200 and target.team.name in page.content.decode()
