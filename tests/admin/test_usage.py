"""Usage records in the admin: read-only, filtered, and the "Import FOCUS file" page."""

import gzip
import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chargeback.models import TeamMapping, UsageRecord
from chargeback.tasks import remove_abandoned_focus_uploads
from jobs.models import JobProgress
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


URL_IMPORT = "admin:chargeback_usagerecord_import_focus"


def _upload(client, run_jobs, upload, **options):
    """Upload → the preview job's page; run the job; return (its JobProgress, the preview page)."""
    response = client.post(reverse(URL_IMPORT), {"step": "upload", "file": upload, "team_tag": "business_unit",
                                                 **options})
    assert response.status_code == 302, response.content.decode()[:2000]
    record = JobProgress.objects.get(pk=int(response["Location"].rstrip("/").split("/")[-2]))
    run_jobs(queues=["imports"])
    record.refresh_from_db()
    preview = client.get(reverse(URL_IMPORT) + f"?preview_job={record.job_id}") if "preview" in (
        record.result or {}) else None
    return record, preview


def _import(client, run_jobs, preview, skip_bad_rows="True", **choices):
    """Post the preview's "Import" form (with finance's team ``choices``); run the import job; return its JobProgress."""
    form = {"step": "import", "token": preview.context["token"], "file_name": "september.csv",
            "team_tag": "business_unit", "subaccount_fallback": "False", "skip_bad_rows": skip_bad_rows,
            "total_rows": str(preview.context["preview"]["total"]), **choices}
    response = client.post(reverse(URL_IMPORT), form)
    assert response.status_code == 302
    run_jobs(queues=["imports"])
    return JobProgress.objects.get(pk=int(response["Location"].rstrip("/").split("/")[-2]))


@pytest.mark.django_db(transaction=True)
def test_focus_import_previews_rows_and_team_mapping_before_writing_anything(finance, run_jobs):
    # given a team named in the file; when the file is uploaded and its preview job runs
    TeamFactory(name="Search", slug="search")
    record, preview = _upload(finance, run_jobs, _focus_file(*GOOD), skip_bad_rows="on")

    # then the job's page links to the preview, which maps the teams and lists the unmapped; nothing is written
    page = finance.get(reverse("admin:jobs_jobprogress_change", args=[record.pk])).content.decode()
    assert "3 data rows" in page and "Review the preview and import" in page
    assert preview.status_code == 200
    data = preview.context["preview"]
    assert data["total"] == 3 and data["unallocated"] == 1
    mapping = {entry["key"]: (entry["team"]["name"] if entry["team"] else None) for entry in data["teams"]}
    assert mapping == {"Maps": None, "Search": "Search"}
    assert [entry["key"] for entry in data["unmapped"]] == ["Maps"]
    assert "leave unallocated" in preview.content.decode()
    assert not UsageRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_focus_import_writes_the_rows_and_reports_each_bad_row(finance, run_jobs):
    _record, preview = _upload(finance, run_jobs, _focus_file(*GOOD, BAD), skip_bad_rows="on")

    # finance creates the unmapped value's team in the preview
    unmapped = preview.context["preview"]["unmapped"][0]
    record = _import(finance, run_jobs, preview, value_1=unmapped["key"], source_1=unmapped["source"],
                     choice_1=f"new:{unmapped['currency']}")

    page = finance.get(reverse("admin:jobs_jobprogress_change", args=[record.pk])).content.decode()
    assert "3 rows imported, 0 already imported, 1 skipped" in page
    assert "row 4" in page.lower() and "BilledCost" in page
    assert UsageRecord.objects.count() == 3
    assert Team.objects.filter(name="Maps").exists()
    assert not list((Path(settings.MEDIA_ROOT) / "focus_uploads").glob("*.csv"))  # the upload is removed


@pytest.mark.django_db(transaction=True)
def test_focus_import_of_a_gzipped_file_is_read_as_it_comes(finance, run_jobs):
    body = ("\n".join((HEADER, *GOOD)) + "\n").encode()
    upload = SimpleUploadedFile("september.csv.gz", gzip.compress(body), content_type="application/gzip")
    _record, preview = _upload(finance, run_jobs, upload)
    record = _import(finance, run_jobs, preview)
    assert record.result["rows_imported"] == 3 and UsageRecord.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_focus_import_of_a_file_without_a_required_column_shows_the_column(finance, run_jobs):
    bad = SimpleUploadedFile("bad.csv", b"BilledCost,BillingCurrency\n1,USD\n", content_type="text/csv")
    record, preview = _upload(finance, run_jobs, bad)
    assert preview is None and record.result["refused"]
    assert "BillingPeriodStart" in record.result["message"] and "bad.csv" in record.result["message"]
    assert not UsageRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_focus_import_refusing_bad_rows_writes_nothing_and_says_where(finance, run_jobs):
    _record, preview = _upload(finance, run_jobs, _focus_file(*GOOD, BAD))
    record = _import(finance, run_jobs, preview, skip_bad_rows="False")
    message = record.result["message"]
    assert record.result["refused"] and "row 4" in message and "BilledCost" in message
    assert "september.csv" in message
    assert not UsageRecord.objects.exists()


def test_focus_upload_larger_than_the_limit_is_refused_and_not_kept(finance, settings):
    # given a limit of 100 bytes
    settings.FOCUS_UPLOAD_MAX_BYTES = 100

    # when a larger file is uploaded
    response = finance.post(reverse(URL_IMPORT), {"step": "upload", "file": _focus_file(*GOOD),
                                                 "team_tag": "business_unit"})

    # then the form says so, no job is queued and nothing of the file is kept
    assert response.status_code == 200
    assert "larger than the upload limit of 100" in str(response.context["form"].errors["file"])
    assert not JobProgress.objects.exists()
    assert not list((Path(settings.MEDIA_ROOT) / "focus_uploads").glob("*.csv"))


def test_abandoned_focus_uploads_are_removed_after_a_day(settings):
    # given an upload of two days ago and one of an hour ago
    folder = Path(settings.MEDIA_ROOT) / "focus_uploads"
    folder.mkdir(parents=True)
    old, recent = folder / ("a" * 32 + ".csv"), folder / ("b" * 32 + ".csv")
    old.write_text(HEADER)
    recent.write_text(HEADER)
    now = time.time()
    os.utime(old, (now - 2 * 86400, now - 2 * 86400))
    os.utime(recent, (now - 3600, now - 3600))

    # when the periodic clean-up runs
    remove_abandoned_focus_uploads(timestamp=int(now))

    # then only the abandoned one is gone
    assert not old.exists() and recent.exists()


def test_focus_import_with_a_forged_token_is_refused(finance):
    response = finance.post(reverse("admin:chargeback_usagerecord_import_focus"),
                            {"step": "import", "token": "../../etc/passwd"})
    assert response.status_code == 403


def test_focus_import_page_is_refused_to_auditors(auditor):
    assert auditor.get(reverse("admin:chargeback_usagerecord_import_focus")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_focus_import_preview_maps_a_value_to_an_existing_team_once(finance, run_jobs):
    # given a team "Maps Platform" and a file whose rows say "Maps"
    maps = TeamFactory(name="Maps Platform", slug="maps-platform")
    _record, preview = _upload(finance, run_jobs, _focus_file(*GOOD))
    entry = next(e for e in preview.context["preview"]["unmapped"] if e["key"] == "Maps")

    # when finance maps it to that team in the preview and imports
    _import(finance, run_jobs, preview, skip_bad_rows="False", value_1=entry["key"], source_1=entry["source"],
            choice_1=f"map:{maps.pk}")

    # then the rows are the team's, the choice is a mapping, and the next preview shows it mapped
    assert UsageRecord.objects.filter(team=maps).count() == entry["rows"]
    assert TeamMapping.objects.get(value="Maps").team == maps
    _record, again = _upload(finance, run_jobs, _focus_file(*GOOD))
    assert "Maps" not in [e["key"] for e in again.context["preview"]["unmapped"]]
    assert Team.objects.filter(name="Maps").count() == 0
