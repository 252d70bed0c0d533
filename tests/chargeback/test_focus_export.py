"""FOCUS out: a month's allocated costs as FOCUS CSV or Parquet, Σ equal to the invoices, from every door."""

from __future__ import annotations

import csv
import io
import json
from decimal import ROUND_HALF_UP, Decimal

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chargeback.focus.export import EXPORT_COLUMNS
from chargeback.models import AllocatedCost, AllocationRule, AllocationRun
from chargeback.services.focus_import import focus_import
from invoices.models import Invoice
from teams.groups import billing_groups_sync
from teams.selectors import FINANCE_GROUP
from tests.factories import TeamMembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def billed_september(focus_sample):
    """The FOCUS sample imported and billed (no PDFs), with a by_usage rule for its untagged pool."""
    focus_import(path=focus_sample, create_teams=True)
    AllocationRule.objects.create(name="Untagged cloud costs, by usage", rule_type=AllocationRule.RuleType.BY_USAGE,
                                  source=AllocationRule.Source.UNALLOCATED)
    call_command("billing_run", "--period", "2024-09", "--no-pdf", stdout=io.StringIO(), stderr=io.StringIO())
    return Invoice.objects.filter(period_start="2024-09-01").exclude(status=Invoice.Status.CANCELLED)


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_export_focus_csv_one_row_per_allocated_line_summing_to_the_invoices(billed_september, tmp_path):
    # when the month is exported as FOCUS CSV
    path = tmp_path / "sept.csv"
    call_command("export_focus", "2024-09", "--output", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    rows = _csv_rows(path.read_bytes())

    # then there is one row per allocated line, every FOCUS 1.0 column, and team and rule in x_ columns
    allocations = AllocatedCost.objects.filter(run__status=AllocationRun.Status.COMMITTED)
    assert len(rows) == allocations.count() > 0
    assert set(EXPORT_COLUMNS) <= set(rows[0])
    by_id = {a.pk: a for a in allocations.select_related("team", "rule")}
    for row in rows:
        allocation = by_id[int(row["x_AllocatedCostId"])]
        assert row["x_Team"] == allocation.team.slug == json.loads(row["Tags"])["team"]
        assert row["x_Rule"] == (allocation.rule.name if allocation.rule else "")
        assert Decimal(row["BilledCost"]) == allocation.amount
    # and Σ BilledCost, rounded to cents, equals the invoices' subtotals
    total = sum(Decimal(r["BilledCost"]) for r in rows)
    assert total.quantize(Decimal("0.01"), ROUND_HALF_UP) == sum(i.subtotal for i in billed_september)
    assert {r["x_Rule"] for r in rows} >= {"Untagged cloud costs, by usage"}


def test_export_focus_parquet_reads_back_to_the_same_rows(billed_september, tmp_path):
    csv_path, parquet_path = tmp_path / "s.csv", tmp_path / "s.parquet"
    call_command("export_focus", "2024-09", "--output", str(csv_path), stdout=io.StringIO(), stderr=io.StringIO())
    call_command("export_focus", "2024-09", "--format", "parquet", "--output", str(parquet_path),
                 stdout=io.StringIO(), stderr=io.StringIO())
    table = pq.read_table(parquet_path)
    rows = _csv_rows(csv_path.read_bytes())
    assert table.num_rows == len(rows)
    assert sum(table.column("BilledCost").to_pylist()) == sum(Decimal(r["BilledCost"]) for r in rows)
    # and the export imports again as FOCUS 1.0 Parquet: the round trip keeps every row and cent
    result = focus_import(path=parquet_path, team_tag="team")
    assert result.file_format == "parquet" and result.rows_read == len(rows)


def _api_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def _finance_user(**extra):
    billing_groups_sync()
    user = UserFactory(username="fiona-finance", **extra)
    user.groups.add(Group.objects.get(name=FINANCE_GROUP))
    return user


def test_focus_export_api_is_scoped_to_the_callers_teams(billed_september):
    invoice = billed_september.first()
    finance = _api_client(_finance_user())
    member = _api_client(TeamMembershipFactory(team=invoice.team, user=UserFactory(username="mia")).user)

    everything = finance.get(reverse("focus-export"), {"period": "2024-09"})
    mine = member.get(reverse("focus-export"), {"period": "2024-09", "file_format": "csv"})

    assert everything.status_code == 200 and mine.status_code == 200
    all_rows = _csv_rows(b"".join(everything.streaming_content))
    my_rows = _csv_rows(b"".join(mine.streaming_content))
    assert {r["x_Team"] for r in my_rows} == {invoice.team.slug}
    assert len(all_rows) > len(my_rows)
    bad = finance.get(reverse("focus-export"), {"period": "Sept", "file_format": "xls"})
    assert bad.status_code == 400


def test_focus_export_from_the_admin(billed_september, client):
    client.force_login(_finance_user(is_staff=True))
    finance_client = client
    run = AllocationRun.objects.get(status=AllocationRun.Status.COMMITTED)
    response = finance_client.post(reverse("admin:chargeback_allocationrun_changelist"),
                                   {"action": "export_focus_csv", "_selected_action": [run.pk]})
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('focus-2024-09.csv"')
    rows = _csv_rows(b"".join(response.streaming_content) if response.streaming else response.content)
    assert len(rows) == AllocatedCost.objects.filter(run=run).count()
