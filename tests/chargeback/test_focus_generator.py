"""The deterministic demo FOCUS generator: same seed, same bytes; its files import to its own totals."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from chargeback.focus.generator import BUSINESS_UNITS, FOCUS_COLUMNS, write_focus_file
from chargeback.models import UsageRecord
from chargeback.periods import PeriodError
from chargeback.services.focus_import import focus_import
from teams.models import Team

pytestmark = pytest.mark.django_db

# A field as the FOCUS sample writes it: the bare word NULL, a bare number, or a quoted text.
_FIELD = re.compile(r'NULL|-?\d+(\.\d+)?|"([^"]|"")*"')


def test_generator_same_seed_writes_identical_bytes(tmp_path):
    # given two files made with the same seed, plain and gzip, and one with another seed
    a = write_focus_file(tmp_path / "a.csv", rows=500, period="2026-10", seed=42)
    b = write_focus_file(tmp_path / "b.csv", rows=500, period="2026-10", seed=42)
    gz_a = write_focus_file(tmp_path / "a.csv.gz", rows=500, period="2026-10", seed=42, gzip=True)
    gz_b = write_focus_file(tmp_path / "b.csv.gz", rows=500, period="2026-10", seed=42, gzip=True)
    other = write_focus_file(tmp_path / "c.csv", rows=500, period="2026-10", seed=43)

    # then the same seed gives the same bytes (gzip too) and the same totals; another seed differs
    assert a.path.read_bytes() == b.path.read_bytes()
    assert gz_a.path.read_bytes() == gz_b.path.read_bytes()
    assert gzip.decompress(gz_a.path.read_bytes()) == a.path.read_bytes()
    assert a.total_billed_cost == b.total_billed_cost
    assert other.path.read_bytes() != a.path.read_bytes()


def test_generator_shorter_file_is_a_prefix_of_a_longer_one(tmp_path):
    # given a 200-row and a 1,000-row file of the same seed
    short = write_focus_file(tmp_path / "short.csv", rows=200, period="2026-10", seed=7)
    long = write_focus_file(tmp_path / "long.csv", rows=1000, period="2026-10", seed=7)

    # then the short file's rows are the long file's first rows (rows do not depend on the row count)
    short_lines = short.path.read_text().splitlines()
    assert long.path.read_text().splitlines()[: len(short_lines)] == short_lines


def test_generator_writes_the_sample_columns_and_quoting(tmp_path, focus_sample):
    # given a generated file and the real sample
    generated = write_focus_file(tmp_path / "g.csv", rows=2000, period="2026-10", seed=42)
    with focus_sample.open(newline="", encoding="utf-8") as f:
        sample_header = next(csv.reader(f))

    # then it has the sample's 44 columns in the sample's order, written with the same conventions
    lines = generated.path.read_text(encoding="utf-8").splitlines()
    assert next(csv.reader([lines[0]])) == sample_header == list(FOCUS_COLUMNS)
    assert len(lines) == 2001
    for line in lines[1:50]:
        assert re.fullmatch(rf"({_FIELD.pattern})(,({_FIELD.pattern}))*", line), line
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert all(len(r) == 44 for r in rows)
    # and its content is realistic: three providers, hourly charge periods in the month, 11-place costs
    assert {r["ProviderName"] for r in rows} == {"AWS", "Microsoft", "Google Cloud"}
    assert {r["BillingPeriodStart"] for r in rows} == {"2026-10-01 00:00:00"}
    assert {r["BillingPeriodEnd"] for r in rows} == {"2026-11-01 00:00:00"}
    assert all(r["ChargePeriodStart"] >= "2026-10-01" and r["ChargePeriodEnd"] <= "2026-11-01 00:00:00"
               for r in rows)
    assert all(r["ChargePeriodStart"].endswith(":00:00") for r in rows)
    assert all(re.fullmatch(r"-?\d+\.\d{11}", r["BilledCost"]) for r in rows)
    assert len({r["SubAccountName"] for r in rows}) > 5
    assert len({r["ServiceName"] for r in rows}) > 10
    assert len({r["Id"] for r in rows}) == 2000


def test_generator_mixes_tagged_untagged_and_credit_rows(tmp_path):
    # given a 20,000-row generated file
    generated = write_focus_file(tmp_path / "g.csv", rows=20_000, period="2026-10", seed=42)

    # then most rows carry a business_unit from the fixed list, some none, and a few are negative credits
    by_bu = generated.billed_cost_by_business_unit
    assert set(by_bu) == set(BUSINESS_UNITS) | {None}
    assert Decimal(0) < generated.untagged_billed_cost < generated.total_billed_cost / 5
    assert generated.charge_categories["Usage"] > 19_800
    assert generated.charge_categories["Credit"] > 0 and generated.charge_categories["Adjustment"] > 0
    assert generated.negative_rows == generated.charge_categories["Credit"] + generated.charge_categories["Adjustment"]
    assert sum(by_bu.values()) == generated.total_billed_cost


def test_generator_file_imports_to_the_generators_totals(tmp_path):
    # given a generated gzip file of 3,000 rows
    generated = write_focus_file(tmp_path / "g.csv.gz", rows=3000, period="2026-10", seed=42, gzip=True)

    # when it is imported (twice)
    result = focus_import(create_teams=True, path=generated.path)
    again = focus_import(create_teams=True, path=generated.path)

    # then every row is imported, BilledCost sums to the generator's total, per business unit too
    assert result.rows_imported == 3000 and again.rows_duplicate == 3000
    costs = UsageRecord.objects.values_list("team__name", "cost")
    total = sum((cost for _, cost in costs), Decimal(0))
    assert total == generated.total_billed_cost == result.billed_cost[dt.date(2026, 10, 1)]
    per_team: dict[str | None, Decimal] = {}
    for name, cost in costs:
        per_team[name] = per_team.get(name, Decimal(0)) + cost
    assert per_team == generated.billed_cost_by_business_unit
    assert sorted(Team.objects.values_list("slug", flat=True)) == sorted(BUSINESS_UNITS)
    assert UsageRecord.objects.filter(cost__lt=0).count() == generated.negative_rows


def test_generate_focus_command_writes_the_file_and_its_total(tmp_path):
    # given a path
    path = tmp_path / "demo.csv"
    out = io.StringIO()

    # when the command generates 300 rows for 2024-09
    call_command("generate_focus", str(path), "--rows", "300", "--period", "2024-09", "--seed", "5", stdout=out)

    # then the file is the generator's, and the printed total is its exact sum of BilledCost
    expected = write_focus_file(tmp_path / "same.csv", rows=300, period="2024-09", seed=5)
    assert path.read_bytes() == expected.path.read_bytes()
    assert f"Sum of BilledCost: {expected.total_billed_cost} USD" in out.getvalue()
    assert "300 rows, billing period 2024-09" in out.getvalue()


def test_generate_focus_bad_period_exits_2(tmp_path):
    with pytest.raises(CommandError) as caught:
        call_command("generate_focus", str(tmp_path / "x.csv"), "--period", "2026-13", stdout=io.StringIO())
    assert caught.value.returncode == 2 and "2026-13" in str(caught.value)


def test_generator_rejects_a_bad_period(tmp_path):
    with pytest.raises(PeriodError):
        write_focus_file(tmp_path / "x.csv", rows=1, period="October")
