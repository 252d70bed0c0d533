"""Usage records in the admin: read-only, filtered, and the "Import FOCUS file" page."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chargeback.models import TeamMapping, UsageRecord
from teams.models import Team
from tests.factories import TeamFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

HEADER = ("BilledCost,BillingCurrency,BillingPeriodStart,ChargeCategory,ChargePeriodStart,ProviderName,ServiceName,"
          "SubAccountName,Tags,Id")


def _focus_file(*rows: str, name="september.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, ("\n".join((HEADER, *rows)) + "\n").encode(), content_type="text/csv")


GOOD = [
    '12.5,USD,2024-09-01,Usage,2024-09-03T00:00:00Z,AWS,Amazon EC2,prod,"{""business_unit"": ""Search""}",row-1',
    '0.25,USD,2024-09-01,Usage,2024-09-04T00:00:00Z,AWS,Amazon S3,prod,"{""business_unit"": ""Maps""}",row-2',
    '3,USD,2024-09-01,Usage,2024-09-05T00:00:00Z,AWS,Amazon RDS,shared,{},row-3',
]
BAD = 'abc,USD,2024-09-01,Usage,2024-09-05T00:00:00Z,AWS,Amazon RDS,shared,{},row-4'


def test_usage_cannot_be_added_or_changed_and_filters_by_unallocated_pool(finance):
    UsageRecordFactory(team=TeamFactory(name="Search"), service_name="Amazon EC2")
    UsageRecordFactory(team=None, service_name="Shared NAT")
    assert finance.get(reverse("admin:chargeback_usagerecord_add")).status_code == 403
    response = finance.get(reverse("admin:chargeback_usagerecord_changelist"), {"team": "none"})
    assert [r.service_name for r in response.context["cl"].result_list] == ["Shared NAT"]


@pytest.mark.parametrize(("params", "expected"), [
    ({"provider": "GCP"}, ["BigQuery"]),
    ({"resource_type": "llm"}, ["gpt"]),
    ({"source__exact": "focus_import"}, ["BigQuery"]),
    ({"period": "2024-08"}, ["gpt"]),
])
def test_usage_filters_by_provider_resource_type_source_and_period(finance, params, expected):
    import datetime as dt

    from django.utils import timezone

    UsageRecordFactory(provider="GCP", service_name="BigQuery", source="focus_import")
    UsageRecordFactory(provider="openai", resource_type="llm", service_name="gpt",
                       occurred_at=timezone.make_aware(dt.datetime(2024, 8, 2)))
    response = finance.get(reverse("admin:chargeback_usagerecord_changelist"), params)
    assert [r.service_name for r in response.context["cl"].result_list] == expected


def test_usage_bad_period_filter_is_not_a_server_error(finance):
    response = finance.get(reverse("admin:chargeback_usagerecord_changelist"), {"period": "Sept"})
    assert response.status_code in (200, 302)


def test_focus_import_previews_rows_and_team_mapping_before_writing_anything(finance):
    TeamFactory(name="Search", slug="search")
    response = finance.post(reverse("admin:chargeback_usagerecord_import_focus"),
                            {"step": "upload", "file": _focus_file(*GOOD), "team_tag": "business_unit",
                             "skip_bad_rows": "on"})
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview["total"] == 3 and preview["unallocated"] == 1
    mapping = {entry.key: (entry.team.name if entry.team else None) for entry in preview["teams"]}
    assert mapping == {"Maps": None, "Search": "Search"}
    assert [entry.key for entry in preview["unmapped"]] == ["Maps"]
    assert "leave unallocated" in response.content.decode()
    assert not UsageRecord.objects.exists()


def test_focus_import_writes_the_rows_and_reports_each_bad_row(finance):
    url = reverse("admin:chargeback_usagerecord_import_focus")
    preview = finance.post(url, {"step": "upload", "file": _focus_file(*GOOD, BAD), "team_tag": "business_unit",
                                 "skip_bad_rows": "on"})
    token = preview.context["token"]

    unmapped = preview.context["preview"]["unmapped"][0]
    done = finance.post(url, {"step": "import", "token": token, "file_name": "september.csv",
                              "team_tag": "business_unit", "subaccount_fallback": "False", "skip_bad_rows": "True",
                              "value_1": unmapped.key, "source_1": unmapped.source,
                              "choice_1": f"new:{unmapped.currency}"})

    assert done.status_code == 200
    result = done.context["result"]
    assert (result.rows_imported, result.rows_skipped) == (3, 1)
    assert "row 4" in done.content.decode().lower() or ">4<" in done.content.decode()
    assert "BilledCost" in done.content.decode()
    assert UsageRecord.objects.count() == 3
    assert Team.objects.filter(name="Maps").exists()


def test_focus_import_of_a_file_without_a_required_column_shows_the_column(finance):
    bad = SimpleUploadedFile("bad.csv", b"BilledCost,BillingCurrency\n1,USD\n", content_type="text/csv")
    response = finance.post(reverse("admin:chargeback_usagerecord_import_focus"),
                            {"step": "upload", "file": bad, "team_tag": "business_unit"})
    assert response.status_code == 200
    assert "BillingPeriodStart" in str(response.context["form"].errors["file"])
    assert not UsageRecord.objects.exists()


def test_focus_import_refusing_bad_rows_writes_nothing_and_says_where(finance):
    url = reverse("admin:chargeback_usagerecord_import_focus")
    preview = finance.post(url, {"step": "upload", "file": _focus_file(*GOOD, BAD), "team_tag": "business_unit"})
    done = finance.post(url, {"step": "import", "token": preview.context["token"], "file_name": "september.csv",
                              "team_tag": "business_unit", "subaccount_fallback": "False", "skip_bad_rows": "False"})
    assert done.status_code == 200
    assert "row 4" in done.context["error"] and "BilledCost" in done.context["error"]
    assert "september.csv" in done.context["error"]
    assert not UsageRecord.objects.exists()


def test_focus_import_with_a_forged_token_is_refused(finance):
    response = finance.post(reverse("admin:chargeback_usagerecord_import_focus"),
                            {"step": "import", "token": "../../etc/passwd"})
    assert response.status_code == 403


def test_focus_import_page_is_refused_to_auditors(auditor):
    assert auditor.get(reverse("admin:chargeback_usagerecord_import_focus")).status_code == 403


def test_focus_import_preview_maps_a_value_to_an_existing_team_once(finance):
    # given a team "Maps Platform" and a file whose rows say "Maps"
    maps = TeamFactory(name="Maps Platform", slug="maps-platform")
    url = reverse("admin:chargeback_usagerecord_import_focus")
    preview = finance.post(url, {"step": "upload", "file": _focus_file(*GOOD), "team_tag": "business_unit"})
    entry = next(e for e in preview.context["preview"]["unmapped"] if e.key == "Maps")

    # when finance maps it to that team in the preview and imports
    finance.post(url, {"step": "import", "token": preview.context["token"], "file_name": "s.csv",
                       "team_tag": "business_unit", "subaccount_fallback": "False", "skip_bad_rows": "False",
                       "value_1": entry.key, "source_1": entry.source, "choice_1": f"map:{maps.pk}"})

    # then the rows are the team's, the choice is a mapping, and the next preview shows it mapped
    assert UsageRecord.objects.filter(team=maps).count() == entry.rows
    assert TeamMapping.objects.get(value="Maps").team == maps
    again = finance.post(url, {"step": "upload", "file": _focus_file(*GOOD), "team_tag": "business_unit"})
    assert "Maps" not in [e.key for e in again.context["preview"]["unmapped"]]
    assert Team.objects.filter(name="Maps").count() == 0
