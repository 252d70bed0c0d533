"""Team mappings: a value mapped once charges every later import's rows to its team, with history."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command

from chargeback.errors import TeamMappingError
from chargeback.models import TeamMapping, UsageRecord
from chargeback.services.focus_import import focus_import
from chargeback.services.team_mapping import team_mapping_end, team_mapping_set
from teams.models import Team
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

HEADER = ["Id", "BilledCost", "BillingCurrency", "BillingPeriodStart", "ChargePeriodStart", "ChargeCategory",
          "ServiceName", "ProviderName", "SubAccountId", "SubAccountName", "BillingAccountId", "Tags"]


def _file(path, rows):
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([HEADER, *rows])
    return path


def _row(id_, *, period="2026-05-01", tags='{"team": "dwh"}', sub_id="111", sub_name="prod", account="A1"):
    return [id_, "1.5", "USD", period, period + "T03:00:00Z", "Usage", "EC2", "AWS", sub_id, sub_name, account, tags]


def test_mapping_beats_names_and_several_keys_point_at_one_team(tmp_path):
    # given a team "Data Warehouse" that a tag value, a sub-account id and a billing account all map to
    dwh = TeamFactory(name="Data Warehouse", slug="data-warehouse")
    TeamFactory(name="dwh", slug="dwh")  # a team the tag value would match by name
    team_mapping_set(kind="tag", key="team", value="dwh", team=dwh)
    team_mapping_set(kind="sub_account_id", value="222", team=dwh)
    team_mapping_set(kind="billing_account", value="B9", team=dwh)
    path = _file(tmp_path / "m.csv", [_row("1"), _row("2", tags="NULL", sub_id="222"),
                                      _row("3", tags="NULL", sub_id="3", account="B9"), _row("4", tags="NULL")])

    # when the file is imported
    result = focus_import(path=path, team_tag="team")

    # then the mapped rows go to Data Warehouse, by mapping first; the last row stays unallocated
    assert UsageRecord.objects.filter(team=dwh).count() == 3
    assert UsageRecord.objects.get(external_reference="4").team is None
    assert result.new_teams == []


def test_mapping_history_applies_by_billing_period(tmp_path):
    # given "dwh" mapped to one team, then to another from June on
    old, new = TeamFactory(name="Old DWH", slug="old"), TeamFactory(name="New DWH", slug="new")
    first = team_mapping_set(kind="tag", key="team", value="dwh", team=old)
    team_mapping_set(kind="tag", key="team", value="dwh", team=new, valid_from=dt.date(2026, 6, 1))

    # when May and June rows are imported
    focus_import(path=_file(tmp_path / "h.csv", [_row("1"), _row("2", period="2026-06-01")]), team_tag="team")

    # then each month follows the mapping in force for it, and the first mapping is kept, ended
    assert UsageRecord.objects.get(external_reference="1").team == old
    assert UsageRecord.objects.get(external_reference="2").team == new
    first.refresh_from_db()
    assert first.valid_to == dt.date(2026, 6, 1)
    assert TeamMapping.objects.count() == 2


def test_mapping_refuses_rewriting_history_and_bad_input():
    team = TeamFactory()
    team_mapping_set(kind="tag", key="team", value="x", team=team, valid_from=dt.date(2026, 5, 1))
    with pytest.raises(TeamMappingError) as caught:
        team_mapping_set(kind="tag", key="team", value="x", team=TeamFactory(), valid_from=dt.date(2026, 5, 1))
    assert caught.value.param == "valid_from"
    with pytest.raises(TeamMappingError) as caught:
        team_mapping_set(kind="tag", value="x", team=team)
    assert caught.value.param == "key"
    with pytest.raises(TeamMappingError):
        team_mapping_set(kind="sub_account_id", value="1", team=team, valid_from=dt.date(2026, 5, 2))
    mapping = TeamMapping.objects.get()
    with pytest.raises(TeamMappingError):
        team_mapping_end(mapping=mapping, valid_to=dt.date(2026, 5, 1))


def test_team_mapping_command_sets_lists_and_ends(tmp_path):
    team = TeamFactory(name="Search", slug="search")
    out = io.StringIO()
    call_command("team_mapping", "set", "--tag", "team=srch", "--team", "search", stdout=out)
    call_command("team_mapping", "set", "--sub-account-name", "prod-search", "--team", "search", stdout=out)
    call_command("team_mapping", "list", stdout=out)
    assert "team=srch" in out.getvalue() and "prod-search" in out.getvalue()
    assert TeamMapping.objects.filter(team=team, valid_to=None).count() == 2

    call_command("team_mapping", "end", "--tag", "team=srch", "--before", "2030-01", stdout=out)
    assert TeamMapping.objects.get(value="srch").valid_to == dt.date(2030, 1, 1)

    with pytest.raises(CommandError) as caught:
        call_command("team_mapping", "set", "--tag", "team=x", "--team", "nope", stdout=out)
    assert "nope" in str(caught.value)
    assert Team.objects.count() == 1
