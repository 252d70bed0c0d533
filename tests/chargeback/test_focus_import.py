"""FOCUS 1.0 import: the real sample against its README figures, the variety of real files, bad input."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import Count

from chargeback.focus.results import FocusImportError
from chargeback.models import UsageRecord
from chargeback.services.focus_import import focus_import
from teams.models import Team
from tests.factories import TeamFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

SEPTEMBER = dt.date(2024, 9, 1)
OCTOBER = dt.date(2024, 10, 1)

# A minimal FOCUS file: the required columns and the ones team mapping and identity use.
HEADER = ["Id", "BilledCost", "EffectiveCost", "BillingCurrency", "BillingPeriodStart", "ChargePeriodStart",
          "ChargeCategory", "ServiceName", "ProviderName", "SubAccountName", "Tags"]


def _row(id_="1", cost="1.50000000000", *, currency="USD", period="2024-09-01 00:00:00",
         start="2024-09-18 22:00:00", category="Usage", service="Amazon Elastic Compute Cloud",
         provider="AWS", sub_account="Atlas Orion", tags='{"business_unit": "checkout"}', effective="NULL"):
    return [id_, cost, effective, currency, period, start, category, service, provider, sub_account, tags]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """Write a CSV the way the FOCUS sample is written: values quoted, NULL bare."""
    def field(value: str) -> str:
        return value if value == "NULL" else '"' + value.replace('"', '""') + '"'

    lines = [",".join(field(h) for h in header)] + [",".join(field(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _costs(**filters) -> Decimal:
    return sum(UsageRecord.objects.filter(**filters).values_list("cost", flat=True), Decimal(0))


def _sample_rows(sample: Path) -> tuple[list[str], list[list[str]]]:
    with sample.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, list(reader)


# --- the real sample ---------------------------------------------------------------------------


def test_focus_import_sample_matches_readme_figures(focus_sample):
    # given the real FOCUS sample (1,000 rows, September 2024)
    # when it is imported with the default tag mapping
    result = focus_import(create_teams=True, path=focus_sample)

    # then every row is imported and the figures of its README hold, to the last digit
    assert (result.rows_read, result.rows_imported, result.rows_duplicate, result.rows_skipped) == (1000, 1000, 0, 0)
    assert UsageRecord.objects.filter(source="focus_import").count() == 1000
    categories = dict(UsageRecord.objects.values_list("charge_category").annotate(n=Count("pk")))
    assert categories == {"Usage": 997, "Adjustment": 2, "Credit": 1}
    assert _costs() == Decimal("20.52022672899")
    assert UsageRecord.objects.filter(cost__lt=0).count() == 13
    assert UsageRecord.objects.filter(billing_period_start=SEPTEMBER).count() == 999
    assert _costs(billing_period_start=SEPTEMBER) == Decimal("20.28022672899")
    assert _costs(billing_period_start=OCTOBER) == Decimal("0.24")
    assert _costs(billing_period_start=SEPTEMBER, team__isnull=False) == Decimal("20.00606224233")
    assert _costs(billing_period_start=SEPTEMBER, team__isnull=True) == Decimal("0.27416448666")
    assert result.billed_cost == {SEPTEMBER: Decimal("20.28022672899"), OCTOBER: Decimal("0.24")}
    assert result.periods[(SEPTEMBER, "USD")].unallocated_cost == Decimal("0.27416448666")
    # ChargePeriodStart of every row is in September 2024, even the one billed in October
    assert UsageRecord.objects.filter(occurred_at__gte=dt.datetime(2024, 9, 1, tzinfo=dt.UTC),
                                      occurred_at__lt=dt.datetime(2024, 10, 1, tzinfo=dt.UTC)).count() == 1000


def test_focus_import_sample_creates_one_team_per_business_unit(focus_sample):
    # given the sample, whose Tags carry 301 distinct business_unit values (300 in 2024-09, one more
    # only on the row billed in 2024-10)
    # when it is imported
    result = focus_import(create_teams=True, path=focus_sample)

    # then each value became one team, named after it, and 660 rows are charged to a team
    assert result.teams_created == 301 == Team.objects.count()
    assert UsageRecord.objects.filter(team__isnull=False).count() == 660
    september = UsageRecord.objects.filter(billing_period_start=SEPTEMBER, team__isnull=False)
    assert september.values("team").distinct().count() == 300
    vienna = Team.objects.get(name="ViennaAI")
    assert vienna.slug == "viennaai" and vienna.currency == "USD"
    assert all(r.tags["business_unit"] == r.team.name for r in UsageRecord.objects.filter(team__isnull=False)
               .select_related("team"))
    # and the untagged rows stay in the unallocated pool: 51 with other Tags, 289 without
    untagged = UsageRecord.objects.filter(team__isnull=True)
    assert untagged.count() == 340
    assert untagged.filter(tags={}).count() == 289
    # 102 of the 300 business units sum to exactly zero in 2024-09 (README)
    per_team = Counter()
    for team_id, cost in september.values_list("team", "cost"):
        per_team[team_id] += cost
    assert sum(1 for total in per_team.values() if total == 0) == 102


def test_focus_import_sample_maps_columns_to_usage_record(focus_sample):
    # given the sample's first row (Id 11472, an SQS request charge without Tags)
    # when the sample is imported
    focus_import(create_teams=True, path=focus_sample)

    # then its FOCUS columns are on the usage record, and a few more in metadata
    record = UsageRecord.objects.get(external_reference="11472")
    assert record.idempotency_key == "id:AWS:1234567890123:11472"
    assert record.source == "focus_import" and record.resource_type == "cloud"
    assert record.cost == Decimal("0.0000008") and record.effective_cost == Decimal("0")
    assert record.currency == "USD" and record.charge_category == "Usage"
    assert record.provider == "AWS" and record.service_name == "Amazon Simple Queue Service"
    assert record.sub_account_name == "Atlas Nimbus"
    assert record.resource_id.startswith("arn:ats:sqs:us-test-2:")
    assert record.occurred_at == dt.datetime(2024, 9, 18, 22, tzinfo=dt.UTC)
    assert record.billing_period_start == SEPTEMBER
    assert record.tags == {} and record.team is None
    assert record.quantity == Decimal("2") and record.unit == "Requests"
    assert record.metadata["ChargePeriodEnd"] == "2024-09-18 23:00:00"
    assert record.metadata["RegionId"] == "us-west-2"
    assert record.metadata["SkuId"] == "G95FST5FTYV3JSRX"
    assert record.metadata["ConsumedQuantity"] == "2.000000000000000"
    credit = UsageRecord.objects.get(charge_category="Credit")
    assert credit.cost == Decimal("-2.6137")


def test_focus_import_reimport_adds_nothing(focus_sample):
    # given the sample imported once
    focus_import(create_teams=True, path=focus_sample)
    records, teams = UsageRecord.objects.count(), Team.objects.count()

    # when it is imported again
    again = focus_import(create_teams=True, path=focus_sample)

    # then nothing is added: every row is a duplicate, no team is created
    assert (again.rows_read, again.rows_imported, again.rows_duplicate) == (1000, 0, 1000)
    assert again.teams_created == 0
    assert (UsageRecord.objects.count(), Team.objects.count()) == (records, teams)
    assert _costs() == Decimal("20.52022672899")


def test_focus_import_subaccount_fallback_maps_untagged_rows(focus_sample):
    # given the sample, whose untagged rows all carry a SubAccountName
    # when it is imported with the SubAccountName fallback
    result = focus_import(create_teams=True, path=focus_sample, subaccount_fallback=True)

    # then the untagged rows go to teams named after their sub-account; tagged rows keep their tag's team
    assert result.rows_unallocated == 0
    assert UsageRecord.objects.filter(team__isnull=True).count() == 0
    first = UsageRecord.objects.select_related("team").get(external_reference="11472")
    assert first.team.name == "Atlas Nimbus"
    tagged = UsageRecord.objects.select_related("team").get(external_reference="19384")
    assert tagged.team.name == "ViennaAI"
    assert _costs(billing_period_start=SEPTEMBER, team__isnull=False) == Decimal("20.28022672899")


def test_import_focus_command_prints_summary(focus_sample):
    # given the sample
    out = io.StringIO()

    # when the command imports it
    call_command("import_focus", "--create-teams", str(focus_sample), "--no-progress", stdout=out)

    # then the summary gives the counts, the teams created and BilledCost per billing period
    text = out.getvalue()
    assert "1,000 rows read, 1,000 imported, 0 duplicate" in text
    assert "Teams created: 301" in text
    assert "2024-09" in text and "20.28022672899 USD" in text and "(999 rows;" in text
    assert "2024-10" in text and "0.24000000000 USD" in text
    assert "unallocated 0.27416448666" in text


def test_focus_import_gzip_sample_gives_the_same_figures(focus_sample, tmp_path):
    # given the sample compressed with gzip, once named .csv.gz and once without the suffix
    data = focus_sample.read_bytes()
    named = tmp_path / "focus.csv.gz"
    named.write_bytes(gzip.compress(data))
    unnamed = tmp_path / "focus-compressed.csv"
    unnamed.write_bytes(gzip.compress(data))

    # when the first is imported, then the second
    first = focus_import(create_teams=True, path=named)
    second = focus_import(create_teams=True, path=unnamed)

    # then the gzip file reads like the plain one (recognised by its magic bytes), and is the same data
    assert first.rows_imported == 1000 and _costs() == Decimal("20.52022672899")
    assert second.rows_duplicate == 1000


def test_focus_import_any_column_order_gives_the_same_rows(focus_sample, tmp_path):
    # given the sample with its columns in reverse order
    header, rows = _sample_rows(focus_sample)
    reversed_path = tmp_path / "reversed.csv"
    with reversed_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header[::-1])
        writer.writerows(row[::-1] for row in rows)

    # when it is imported, then the original
    result = focus_import(create_teams=True, path=reversed_path)
    again = focus_import(create_teams=True, path=focus_sample)

    # then it imports the same figures, and the original is recognised as the same rows
    assert result.rows_imported == 1000 and _costs() == Decimal("20.52022672899")
    assert result.teams_created == 301
    assert again.rows_duplicate == 1000


def test_focus_import_rows_without_id_are_identified_by_their_values(tmp_path):
    # given a file without Id in which two lines are identical
    header = [h for h in HEADER if h != "Id"]
    rows = [_row()[1:], _row()[1:], _row(cost="2.00000000000")[1:]]
    path = _write_csv(tmp_path / "no-id.csv", header, rows)
    reordered = tmp_path / "no-id-reordered.csv"
    _write_csv(reordered, header[::-1], [r[::-1] for r in rows])

    # when it is imported, then again, then with its columns in another order
    first = focus_import(create_teams=True, path=path)
    second = focus_import(create_teams=True, path=path)
    third = focus_import(create_teams=True, path=reordered)

    # then both identical lines are kept once each, and a re-import (in any column order) adds nothing
    assert first.rows_imported == 3
    assert second.rows_duplicate == 3 and third.rows_duplicate == 3
    keys = sorted(UsageRecord.objects.values_list("idempotency_key", flat=True))
    assert all(k.startswith("row:") for k in keys)
    per_hash = Counter(k.rsplit(":", 1)[0] for k in keys)
    assert sorted(per_hash.values()) == [1, 2]
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == ["1", "1", "2"]
    assert _costs() == Decimal("5")


def test_focus_import_same_id_in_two_accounts_are_two_rows(tmp_path):
    # given two files from different providers whose Id columns happen to use the same values
    aws = _write_csv(tmp_path / "aws.csv", HEADER, [_row(id_="7")])
    azure = _write_csv(tmp_path / "azure.csv", HEADER, [_row(id_="7", provider="Microsoft",
                                                             service="Virtual Machines")])

    # when both are imported
    focus_import(create_teams=True, path=aws)
    result = focus_import(create_teams=True, path=azure)

    # then the Ids do not collide: the row identity is namespaced by provider and billing account
    assert result.rows_imported == 1
    assert UsageRecord.objects.count() == 2


def test_focus_import_reads_iso8601_timestamps_with_z_and_offsets(tmp_path):
    # given timestamps written as ISO 8601 with Z, with an offset, and naive
    path = _write_csv(tmp_path / "iso.csv", HEADER, [
        _row("1", start="2024-09-18T22:00:00Z", period="2024-09-01T00:00:00Z"),
        _row("2", start="2024-09-18T22:00:00+02:00", period="2024-09-01T00:00:00+02:00"),
        _row("3", start="2024-09-18 22:00:00", period="2024-09-01 00:00:00"),
        _row("4", start="2024-09-30T23:30:00-05:00", period="2024-10-01T00:00:00Z"),
    ])

    # when it is imported
    focus_import(create_teams=True, path=path)

    # then every time is stored in UTC (naive ones read as UTC) and the billing period is the date written
    got = {r.external_reference: (r.occurred_at, r.billing_period_start) for r in UsageRecord.objects.all()}
    assert got["1"] == (dt.datetime(2024, 9, 18, 22, tzinfo=dt.UTC), SEPTEMBER)
    assert got["2"] == (dt.datetime(2024, 9, 18, 20, tzinfo=dt.UTC), SEPTEMBER)
    assert got["3"] == (dt.datetime(2024, 9, 18, 22, tzinfo=dt.UTC), SEPTEMBER)
    assert got["4"] == (dt.datetime(2024, 10, 1, 4, 30, tzinfo=dt.UTC), OCTOBER)


def test_focus_import_null_variants_are_missing_values(tmp_path):
    # given NULL, null and empty fields in optional columns, bare or quoted
    path = tmp_path / "nulls.csv"
    path.write_text(
        ",".join(HEADER) + "\n"
        '1,1.0,NULL,USD,2024-09-01 00:00:00,2024-09-02 00:00:00,Usage,S3,AWS,NULL,NULL\n'
        '2,2.0,null,USD,2024-09-01 00:00:00,2024-09-02 00:00:00,Usage,S3,AWS,null,null\n'
        '3,3.0,,USD,2024-09-01 00:00:00,2024-09-02 00:00:00,Usage,S3,AWS,,\n'
        '4,4.0,"",USD,2024-09-01 00:00:00,2024-09-02 00:00:00,Usage,S3,AWS,"",""\n'
        '5,-5.0,-4.5,USD,2024-09-01 00:00:00,2024-09-02 00:00:00,credit,S3,AWS,Acme,"{""business_unit"": ""x""}"\n',
        encoding="utf-8",
    )

    # when it is imported with the SubAccountName fallback
    result = focus_import(create_teams=True, path=path, subaccount_fallback=True)

    # then the missing values are empty (no team, no tags, no EffectiveCost); the last row is a credit
    assert result.rows_imported == 5 and result.rows_unallocated == 4
    for record in UsageRecord.objects.exclude(external_reference="5"):
        assert (record.effective_cost, record.tags, record.sub_account_name, record.team) == (None, {}, "", None)
    credit = UsageRecord.objects.get(external_reference="5")
    assert (credit.cost, credit.effective_cost, credit.charge_category) == (Decimal("-5"), Decimal("-4.5"), "Credit")
    assert credit.team.name == "x"
    assert _costs() == Decimal("5")


def test_focus_import_teams_match_by_slug_and_name_and_are_never_made_twice(tmp_path):
    # given an existing team "Checkout" and tags whose values differ only in case, spacing or punctuation
    checkout = TeamFactory(name="Checkout", slug="checkout")
    TeamFactory(name="Data Warehouse", slug="dwh")
    path = _write_csv(tmp_path / "teams.csv", HEADER, [
        _row("1", tags='{"business_unit": "checkout"}'),
        _row("2", tags='{"business_unit": "Vienna AI"}'),
        _row("3", tags='{"business_unit": "vienna-ai"}'),
        _row("4", tags='{"business_unit": "Vienna AI"}'),
        _row("5", tags='{"business_unit": "data_warehouse"}'),
    ])

    # when the file is imported with --create-teams
    result = focus_import(create_teams=True, path=path)

    # then the existing team is used (by slug), one team is created for both spellings of Vienna AI,
    # and "data_warehouse" is not made a second Data Warehouse: it is left unallocated and reported
    assert result.new_teams == ["Vienna AI"]
    assert UsageRecord.objects.get(external_reference="1").team == checkout
    assert UsageRecord.objects.filter(team__slug="vienna-ai").count() == 3
    assert UsageRecord.objects.get(external_reference="5").team is None
    assert result.unmapped_resembles == {"data_warehouse": "Data Warehouse"}
    assert result.unmapped["data_warehouse"].rows == 1
    assert Team.objects.count() == 3


def test_focus_import_without_create_teams_leaves_unknown_values_unallocated(tmp_path):
    # given a file naming a team that does not exist
    path = _write_csv(tmp_path / "t.csv", HEADER, [_row("1", cost="2.5"), _row("2", cost="1.25")])

    # when it is imported without --create-teams
    out = io.StringIO()
    call_command("import_focus", str(path), "--no-progress", stdout=out)

    # then no team is made, the rows are unallocated, and the summary lists the value, rows and cost
    assert Team.objects.count() == 0 and UsageRecord.objects.filter(team=None).count() == 2
    assert "'checkout': 2 rows, 3.75 USD" in out.getvalue()


def test_focus_import_team_tag_option_chooses_the_tag_key(tmp_path):
    # given rows tagged with a cost-center key
    path = _write_csv(tmp_path / "cc.csv", HEADER, [_row("1", tags='{"cost_center": "CC-42", "business_unit": "b"}')])

    # when imported with --team-tag cost_center
    call_command("import_focus", "--create-teams", str(path), "--team-tag", "cost_center", "--no-progress", stdout=io.StringIO())

    # then the team is named after that tag's value
    assert UsageRecord.objects.get().team.name == "CC-42"


def test_focus_import_reports_progress(tmp_path):
    # given a file of 12,000 rows and a progress callback
    rows = [_row(str(i)) for i in range(12_000)]
    path = _write_csv(tmp_path / "many.csv", HEADER, rows)
    seen: list[int] = []

    # when it is imported
    focus_import(create_teams=True, path=path, progress=seen.append)

    # then the callback was told about every row read, a few thousand at a time
    assert sum(seen) == 12_000 and len(seen) >= 2


# --- bad input ---------------------------------------------------------------------------------


def _assert_fails_cleanly(path: Path, *fragments: str) -> str:
    """Run the command on ``path``: exit code 2, a message naming ``fragments``, nothing written."""
    with pytest.raises(CommandError) as caught:
        call_command("import_focus", "--create-teams", str(path), "--no-progress", stdout=io.StringIO())
    message = str(caught.value)
    assert caught.value.returncode == 2
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert UsageRecord.objects.count() == 0
    assert Team.objects.count() == 0
    return message


def test_import_focus_missing_required_column_exits_2(tmp_path):
    # given a file without BilledCost
    header = [h for h in HEADER if h != "BilledCost"]
    path = _write_csv(tmp_path / "no-cost.csv", header, [_row()[:1] + _row()[2:]])

    # when / then the command stops at the header, naming the file and the column
    _assert_fails_cleanly(path, str(path), "line 1", "column BilledCost", "required column missing")


def test_import_focus_bad_decimal_in_row_n_exits_2_and_writes_nothing(tmp_path):
    # given a file whose third data row has a BilledCost that is not a number, after good tagged rows
    path = _write_csv(tmp_path / "bad-cost.csv", HEADER, [_row("1"), _row("2"), _row("3", cost="12,50"), _row("4")])

    # when / then: exit 2, the message names file, row 3 (line 4) and column, and no row or team is written
    _assert_fails_cleanly(path, str(path), "row 3 (line 4)", "column BilledCost", "'12,50'")


def test_import_focus_bad_timestamp_exits_2(tmp_path):
    path = _write_csv(tmp_path / "bad-time.csv", HEADER, [_row("1"), _row("2", start="18/09/2024 22:00")])
    _assert_fails_cleanly(path, str(path), "row 2 (line 3)", "column ChargePeriodStart", "'18/09/2024 22:00'")


def test_import_focus_bad_tags_json_exits_2(tmp_path):
    path = _write_csv(tmp_path / "bad-tags.csv", HEADER, [_row("1"), _row("2", tags='{"business_unit": checkout}')])
    _assert_fails_cleanly(path, str(path), "row 2 (line 3)", "column Tags", "not valid JSON")


def test_import_focus_tags_not_an_object_exits_2(tmp_path):
    path = _write_csv(tmp_path / "list-tags.csv", HEADER, [_row("1", tags='["checkout"]')])
    _assert_fails_cleanly(path, "row 1 (line 2)", "column Tags", "JSON object")


def test_import_focus_bad_currency_exits_2(tmp_path):
    path = _write_csv(tmp_path / "bad-currency.csv", HEADER, [_row("1"), _row("2", currency="US$")])
    _assert_fails_cleanly(path, "row 2 (line 3)", "column BillingCurrency", "ISO 4217")


def test_import_focus_missing_required_value_exits_2(tmp_path):
    path = _write_csv(tmp_path / "null-service.csv", HEADER, [_row("1", service="NULL")])
    _assert_fails_cleanly(path, "row 1 (line 2)", "column ServiceName", "required value is missing")


def test_import_focus_billing_period_not_a_month_start_exits_2(tmp_path):
    path = _write_csv(tmp_path / "mid-month.csv", HEADER, [_row("1", period="2024-09-15 00:00:00")])
    _assert_fails_cleanly(path, "row 1 (line 2)", "column BillingPeriodStart", "first day of a month")


def test_import_focus_row_with_wrong_field_count_exits_2(tmp_path):
    path = _write_csv(tmp_path / "short.csv", HEADER, [_row("1"), _row("2")[:-2]])
    _assert_fails_cleanly(path, "row 2 (line 3)", "has 9 values, the header has 11 columns")


def test_import_focus_nonexistent_file_exits_2(tmp_path):
    _assert_fails_cleanly(tmp_path / "nowhere.csv", str(tmp_path / "nowhere.csv"), "no such file")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
        ("nul.csv", b"Id,BilledCost\x00\x00\n", "NUL character"),
        ("latin1.csv", ",".join(HEADER).encode() + b"\n1,1.0,NULL,USD,2024-09-01,2024-09-02,Usage,Caf\xe9,AWS,,\n",
         "not UTF-8"),
        ("truncated.csv.gz", None, "cannot read the file"),
        ("fake.csv.gz", b"Id,BilledCost\n", "not gzip-compressed"),
        ("empty.csv", b"", "empty"),
    ],
)
def test_import_focus_unreadable_file_exits_2(tmp_path, name, content, expected):
    # given a file that is not a readable FOCUS CSV
    path = tmp_path / name
    if content is None:  # a gzip file cut in the middle of its data rows
        whole = _write_csv(tmp_path / "whole.csv", HEADER, [_row(str(i), cost=f"{i}.5") for i in range(20_000)])
        compressed = gzip.compress(whole.read_bytes())
        whole.unlink()
        content = compressed[: len(compressed) // 2]
    path.write_bytes(content)

    # when / then the command exits 2 naming the file and what is wrong, and writes nothing
    _assert_fails_cleanly(path, str(path), expected)


def test_import_focus_directory_exits_2(tmp_path):
    _assert_fails_cleanly(tmp_path, str(tmp_path), "directory")


def test_focus_import_error_names_file_row_and_column(tmp_path):
    # given a bad decimal in the second row
    path = _write_csv(tmp_path / "bad.csv", HEADER, [_row("1"), _row("2", effective="abc")])

    # when the service imports it
    with pytest.raises(FocusImportError) as caught:
        focus_import(create_teams=True, path=path)

    # then the error carries where it happened, for callers other than the command
    error = caught.value
    assert (error.file, error.row, error.line, error.column) == (str(path), 2, 3, "EffectiveCost")


def test_import_focus_skip_bad_rows_imports_the_rest_and_reports_each(tmp_path):
    # given five rows, two of them bad
    path = _write_csv(tmp_path / "some-bad.csv", HEADER, [
        _row("1"), _row("2", cost="abc"), _row("3"), _row("4", start="yesterday"), _row("5"),
    ])
    out = io.StringIO()

    # when imported with --skip-bad-rows
    call_command("import_focus", "--create-teams", str(path), "--skip-bad-rows", "--no-progress", stdout=out)

    # then the three good rows are imported and each skipped row is reported with its row and column
    assert sorted(UsageRecord.objects.values_list("external_reference", flat=True)) == ["1", "3", "5"]
    text = out.getvalue()
    assert "5 rows read, 3 imported, 0 duplicate (imported before), 2 skipped" in text
    assert "row 2 (line 3), column BilledCost: 'abc' is not a decimal amount" in text
    assert "row 4 (line 5), column ChargePeriodStart: 'yesterday' is not a timestamp" in text


def test_focus_import_skip_bad_rows_still_stops_at_a_missing_column(tmp_path):
    # given a file without ChargeCategory
    header = [h for h in HEADER if h != "ChargeCategory"]
    path = _write_csv(tmp_path / "no-category.csv", header, [])

    # when / then skipping bad rows does not make a file without a required column importable
    with pytest.raises(FocusImportError, match="column ChargeCategory"):
        focus_import(create_teams=True, path=path, skip_bad_rows=True)


def test_import_focus_exit_code_is_2_from_the_shell(tmp_path):
    # given a file that does not exist
    missing = tmp_path / "missing.csv"
    # (a database that does not exist: the command must fail before it needs one)
    env = {**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/unused"}

    # when manage.py import_focus runs in a shell
    completed = subprocess.run(
        [sys.executable, "manage.py", "import_focus", str(missing), "--no-progress"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )

    # then it exits with code 2 and one line naming the file
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"CommandError: {missing}: no such file"


def test_focus_import_keeps_special_characters_exactly(tmp_path):
    # given values with a backslash, a tab, a line break inside quotes, quotes and non-ASCII text
    service = 'Storage\\Blob "hot"\ttier\nUS-East – Zürich'
    tags = '{"business_unit": "Équipe \\\\ data", "note": "a\\tb"}'
    path = _write_csv(tmp_path / "special.csv", HEADER, [_row("1", service=service, tags=tags), _row("2", cost="x")])

    # when it is imported, skipping the bad row after the multi-line one
    result = focus_import(create_teams=True, path=path, skip_bad_rows=True)

    # then every character arrives as written, and the bad row's physical line counts the line break
    record = UsageRecord.objects.select_related("team").get()
    assert record.service_name == service
    assert record.tags == {"business_unit": "Équipe \\ data", "note": "a\tb"}
    assert record.team.name == "Équipe \\ data" and record.team.slug == "equipe-data"
    assert [(e.row, e.line, e.column) for e in result.skipped] == [(2, 4, "BilledCost")]


def test_focus_import_metadata_as_written_and_missing_values_left_out(tmp_path):
    # given metadata columns holding special characters, quotes, the missing-value spellings and a
    # " NULL " that is a value (with spaces); the first two rows without Id (identified by hash)
    header = HEADER + ["ChargeDescription", "RegionId", "SkuId", "ServiceCategory", "SubAccountId"]
    description = 'Blob \\ "hot"\ttier\r\nZürich \\N'
    rows = [_row("NULL", "1.0") + [description, "null", "", " NULL ", "Null"],
            _row("", "2.0") + ["plain", "eu-west-1", "SKU\\1", "Storage", "NULL"],
            _row("3", "3.0") + ['say "hi"', "r", "s", "c", "a"],
            _row("4", "4.0") + ["Zürich – 100 %s", "r", "s", "c", "a"]]
    path = _write_csv(tmp_path / "metadata.csv", header, rows)

    # when it is imported
    result = focus_import(create_teams=True, path=path)

    # then metadata holds exactly the values written, and no key for a missing one
    assert result.rows_imported == 4
    first, second, third, fourth = UsageRecord.objects.order_by("cost")
    assert first.metadata == {"ChargeDescription": description, "ServiceCategory": " NULL "}
    assert second.metadata == {"ChargeDescription": "plain", "RegionId": "eu-west-1", "SkuId": "SKU\\1",
                               "ServiceCategory": "Storage"}
    assert third.metadata == {"ChargeDescription": 'say "hi"', "RegionId": "r", "SkuId": "s",
                              "ServiceCategory": "c", "SubAccountId": "a"}
    assert fourth.metadata["ChargeDescription"] == "Zürich – 100 %s" and len(fourth.metadata) == 5
    assert first.idempotency_key.startswith("row:") and first.external_reference == ""


def test_focus_import_bad_value_in_a_later_block_rolls_back_earlier_blocks(tmp_path):
    # given a file read in blocks of 2 rows (on PostgreSQL each block is inserted while the next is
    # parsed), whose good first blocks name teams, and whose 7th row (the 4th block) has a bad cost
    rows = [_row(str(i), tags=f'{{"business_unit": "unit-{i}"}}') for i in range(1, 7)]
    rows += [_row("7", cost="12,50"), _row("8")]
    path = _write_csv(tmp_path / "late-bad.csv", HEADER, rows)

    # when it is imported
    with pytest.raises(FocusImportError) as caught:
        focus_import(create_teams=True, path=path, block_rows=2)

    # then the error is the one a whole-file import gives, and nothing of the earlier blocks is left
    error = caught.value
    assert (error.row, error.line, error.column) == (7, 8, "BilledCost")
    assert "'12,50' is not a decimal amount" in str(error)
    assert UsageRecord.objects.count() == 0
    assert Team.objects.count() == 0

    # and with --skip-bad-rows the same small blocks import every good row, once
    result = focus_import(create_teams=True, path=path, block_rows=2, skip_bad_rows=True)
    assert (result.rows_read, result.rows_imported, result.rows_skipped) == (8, 7, 1)
    assert result.teams_created == 7  # unit-1 … unit-6 and checkout (row 8)
    again = focus_import(create_teams=True, path=path, block_rows=2, skip_bad_rows=True)
    assert (again.rows_imported, again.rows_duplicate) == (0, 7)


def test_focus_import_rows_without_id_across_blocks_get_file_wide_ordinals(tmp_path):
    # given identical rows without Id spread over several blocks of 2 rows
    header = [h for h in HEADER if h != "Id"]
    same = _row()[1:]
    path = _write_csv(tmp_path / "no-id.csv", header, [same, _row(cost="2.0")[1:], same, same, same])

    # when it is imported in small blocks, then again
    first = focus_import(create_teams=True, path=path, block_rows=2)
    again = focus_import(create_teams=True, path=path, block_rows=2)

    # then all five are kept (the 4 copies get ordinals 1 to 4) and the re-import adds nothing
    assert first.rows_imported == 5 and again.rows_duplicate == 5
    keys = sorted(UsageRecord.objects.values_list("idempotency_key", flat=True))
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == ["1", "1", "2", "3", "4"]


def test_focus_import_reimport_in_blocks_counts_every_row_as_duplicate(tmp_path):
    # given a file of 3 blocks of 2 rows, imported once (on PostgreSQL each block is COPYed
    # straight into the usage table, since none of its rows exists yet)
    rows = [_row(str(i), cost=f"{i}.25", tags=f'{{"business_unit": "unit-{i % 2}"}}') for i in range(1, 7)]
    path = _write_csv(tmp_path / "blocks.csv", HEADER, rows)
    first = focus_import(create_teams=True, path=path, block_rows=2)

    # when the same file is imported again
    again = focus_import(create_teams=True, path=path, block_rows=2)

    # then the first import wrote every row, and the second counts every row as a duplicate
    assert (first.rows_imported, first.rows_duplicate, first.teams_created) == (6, 0, 2)
    assert (again.rows_read, again.rows_imported, again.rows_duplicate) == (6, 0, 6)
    assert UsageRecord.objects.count() == 6
    assert _costs() == Decimal("22.5")
    assert set(UsageRecord.objects.values_list("team__name", flat=True)) == {"unit-0", "unit-1"}


def test_focus_import_partial_overlap_imports_only_the_new_rows(tmp_path):
    # given rows 1 to 6 imported, and a second file with rows 4 to 11: its first blocks overlap the
    # first file, its later blocks are new
    first = _write_csv(tmp_path / "first.csv", HEADER, [_row(str(i), cost=f"{i}") for i in range(1, 7)])
    second = _write_csv(tmp_path / "second.csv", HEADER, [_row(str(i), cost=f"{i}") for i in range(4, 12)])
    focus_import(create_teams=True, path=first, block_rows=2)

    # when the second file is imported in blocks of 2 rows (4-5, 6-7, 8-9, 10-11)
    result = focus_import(create_teams=True, path=second, block_rows=2)

    # then the 3 rows seen before are duplicates, the 5 new ones are imported, each row once
    assert (result.rows_read, result.rows_imported, result.rows_duplicate) == (8, 5, 3)
    assert sorted(int(r) for r in UsageRecord.objects.values_list("external_reference", flat=True)) == list(
        range(1, 12))
    assert _costs() == Decimal(sum(range(1, 12)))
    # and a third, fully new file after the overlap is imported whole
    third = _write_csv(tmp_path / "third.csv", HEADER, [_row(str(i), cost="1") for i in range(12, 17)])
    assert focus_import(create_teams=True, path=third, block_rows=2).rows_imported == 5


def test_focus_import_same_id_twice_in_a_file_keeps_the_first(tmp_path):
    # given a file in which the Id 2 appears twice within one block, then again in a later block
    rows = [_row("1"), _row("2", cost="2"), _row("2", cost="99"), _row("3"), _row("4"), _row("2", cost="77")]
    path = _write_csv(tmp_path / "same-id.csv", HEADER, rows)

    # when it is imported in blocks of 3 rows
    result = focus_import(create_teams=True, path=path, block_rows=3)

    # then the later copies are duplicates of the first: the row identity is the Id
    assert (result.rows_read, result.rows_imported, result.rows_duplicate) == (6, 4, 2)
    assert UsageRecord.objects.get(external_reference="2").cost == Decimal("2")
    # and BilledCost per period still sums every good row of the file, as read
    assert result.billed_cost == {SEPTEMBER: Decimal("1.5") * 3 + 2 + 99 + 77}


def test_focus_import_leaves_foreign_keys_checked_and_rows_on_existing_teams(tmp_path):
    # given a file naming two new teams and an existing one, in blocks of one row (on PostgreSQL
    # the fast path may COPY without the per-row foreign key triggers and check each team instead)
    TeamFactory(name="Search")
    rows = [_row("1"), _row("2", tags='{"business_unit": "search"}'), _row("3", tags='{"business_unit": "ads"}')]
    path = _write_csv(tmp_path / "teams.csv", HEADER, rows)

    # when it is imported
    result = focus_import(create_teams=True, path=path, block_rows=1)

    # then every row is on an existing team
    assert (result.rows_imported, result.teams_created) == (3, 2)
    assert set(UsageRecord.objects.values_list("team__name", flat=True)) == {"checkout", "Search", "ads"}
    # and afterwards the session checks foreign keys as before: triggers on, a missing team refused
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageRecordFactory(team_id=10**12)
