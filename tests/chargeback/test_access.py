"""Who sees whose money: the one scoping rule shared by the API and the admin."""

import pytest
from django.contrib.auth.models import Group

from teams.models import TeamMembership
from teams.selectors import team_ids_managed_by, team_list_for_user, user_is_auditor, user_is_finance
from tests.factories import TeamFactory, TeamMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_team_list_for_user_member_sees_only_own_teams():
    # given two teams and a member of one
    mine, other = TeamFactory(), TeamFactory()
    member = UserFactory()
    TeamMembershipFactory(user=member, team=mine)
    # when / then
    assert list(team_list_for_user(user=member)) == [mine]
    assert other not in team_list_for_user(user=member)


def test_team_list_for_user_finance_and_auditor_see_all_teams():
    teams = {TeamFactory(), TeamFactory()}
    finance, auditor = UserFactory(), UserFactory()
    finance.groups.add(Group.objects.get_or_create(name="finance")[0])
    auditor.groups.add(Group.objects.get_or_create(name="auditor")[0])
    assert user_is_finance(finance) and not user_is_auditor(finance)
    assert user_is_auditor(auditor) and not user_is_finance(auditor)
    assert set(team_list_for_user(user=finance)) == teams
    assert set(team_list_for_user(user=auditor)) == teams


def test_team_list_for_user_inactive_or_staff_without_group_sees_nothing():
    team = TeamFactory()
    staff = UserFactory(is_staff=True)
    inactive = UserFactory(is_active=False)
    TeamMembershipFactory(user=inactive, team=team)
    assert not user_is_finance(staff)
    assert list(team_list_for_user(user=staff)) == []
    assert list(team_list_for_user(user=inactive)) == []


def test_team_ids_managed_by_lists_only_manager_roles():
    led, joined = TeamFactory(), TeamFactory()
    user = UserFactory()
    TeamMembershipFactory(user=user, team=led, role=TeamMembership.Role.MANAGER)
    TeamMembershipFactory(user=user, team=joined)
    assert team_ids_managed_by(user=user) == {led.pk}
