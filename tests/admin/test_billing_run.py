"""The "Run billing for a period…" page: a dry-run preview, then commit (allocation and draft invoices).

Commit queues a background job and goes to its progress page; the tests that commit run the job
through a real worker (``run_jobs``), so they commit their data (``transaction=True``).
"""

from decimal import Decimal

import pytest
from django.urls import reverse

from chargeback.models import AllocationRun
from invoices.models import Invoice
from jobs.models import JobProgress
from tests.factories import TeamFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

URL = "admin:chargeback_allocationrun_billing_run"


@pytest.fixture
def september(db):
    """September 2024: Search 12.50, Maps 0.25, and 3.00 without a team."""
    search, maps = TeamFactory(name="Search", slug="search"), TeamFactory(name="Maps", slug="maps")
    UsageRecordFactory(team=search, cost=Decimal("12.5"))
    UsageRecordFactory(team=maps, cost=Decimal("0.25"))
    UsageRecordFactory(team=None, cost=Decimal("3"))
    return search, maps


def _preview(client, **data):
    return client.post(reverse(URL), {"step": "preview", "period": "2024-09", "render_pdfs": "", **data})


def _commit_data(preview) -> dict:
    form = preview.context["commit_form"]
    data = {"step": "commit", "period": form.initial["period"],
            "previewed_records": form.initial["previewed_records"],
            "previewed_total": str(form.initial["previewed_total"]),
            "previewed_currency": form.initial["previewed_currency"]}
    teams = [t.pk for t in form.initial["teams"]]
    if teams:
        data["teams"] = teams
    return data


def test_preview_shows_each_team_the_tie_out_and_unallocated_and_writes_nothing(finance, september):
    response = _preview(finance)
    assert response.status_code == 200
    page = response.content.decode()
    rows = {row["team"].name: row["amount"] for row in response.context["rows"]}
    assert rows == {"Maps": "0.25\u00a0USD", "Search": "12.50\u00a0USD"}
    assert "ties out" in page and "3.00\u00a0USD" in page and "15.75\u00a0USD" in page
    assert not AllocationRun.objects.exists() and not Invoice.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_commit_after_preview_queues_a_job_that_commits_the_run_and_writes_draft_invoices(
        finance, finance_user, september, run_jobs):
    # given a preview; when it is committed
    preview = _preview(finance)
    response = finance.post(reverse(URL), _commit_data(preview))

    # then the browser goes to the job's page, where the job is queued and nothing is written yet
    record = JobProgress.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:jobs_jobprogress_change", args=[record.pk])
    page = finance.get(response["Location"]).content.decode()
    assert 'data-status="queued"' in page and "Billing run 2024-09" in page
    assert not AllocationRun.objects.exists()

    # when a worker runs it
    run_jobs()

    # then the run is committed with its drafts, and the job's page shows the summary and tie-out
    run = AllocationRun.objects.get()
    assert run.status == AllocationRun.Status.COMMITTED and run.created_by == finance_user
    assert sorted((i.team_name, i.total) for i in Invoice.objects.all()) == [
        ("Maps", Decimal("0.25")), ("Search", Decimal("12.50"))]
    page = finance.get(response["Location"]).content.decode()
    assert 'data-status="done"' in page
    assert f"Allocation run #{run.pk} committed for 2024-09" in page and "unallocated 3.00" in page


@pytest.mark.django_db(transaction=True)
def test_second_commit_of_a_period_while_one_waits_is_refused_with_a_clear_message(finance, september):
    # given a billing run of September queued (not started)
    preview = _preview(finance)
    finance.post(reverse(URL), _commit_data(preview))

    # when finance commits September again
    response = finance.post(reverse(URL), _commit_data(preview))

    # then the second is refused, naming the waiting run, and only one job exists
    assert response.status_code == 200
    assert any("already waiting to start" in str(m) for m in response.context["messages"])
    assert JobProgress.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_commit_for_chosen_teams_writes_only_their_invoices(finance, september, run_jobs):
    search, _maps = september
    preview = _preview(finance, teams=[search.pk])
    assert [row["team"].name for row in preview.context["rows"]] == ["Search"]
    finance.post(reverse(URL), _commit_data(preview))
    run_jobs()
    assert [i.team_name for i in Invoice.objects.all()] == ["Search"]


def test_commit_is_refused_when_usage_changed_after_the_preview(finance, september):
    preview = _preview(finance)
    UsageRecordFactory(team=september[0], cost=Decimal("1"))
    response = finance.post(reverse(URL), _commit_data(preview))
    assert response.status_code == 200
    assert any("changed since the preview" in str(m) for m in response.context["messages"])
    assert not AllocationRun.objects.exists()
    assert response.context["rows"][1]["amount"] == "13.50\u00a0USD"


def test_period_without_usage_says_nothing_can_be_billed(finance, db):
    response = _preview(finance, period="2023-01")
    assert response.status_code == 200
    assert "Nothing can be billed for 2023-01" in response.context["refused"]


def test_bad_period_is_a_form_error(finance, db):
    response = _preview(finance, period="September")
    assert response.status_code == 200
    assert "YYYY-MM" in str(response.context["form"].errors["period"])


def test_billing_run_page_is_refused_to_auditors(auditor, september):
    assert auditor.get(reverse(URL)).status_code == 403
    assert _preview(auditor).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_run_page_shows_its_allocations_read_only(finance, september, run_jobs):
    finance.post(reverse(URL), _commit_data(_preview(finance)))
    run_jobs()
    run = AllocationRun.objects.get()
    page = finance.get(reverse("admin:chargeback_allocationrun_change", args=[run.pk])).content.decode()
    assert "Search" in page and "allocations-TOTAL_FORMS" in page
    assert 'name="allocations-0-amount"' not in page


@pytest.mark.django_db(transaction=True)
def test_run_page_shows_its_largest_allocations_and_links_to_every_row(finance, september, monkeypatch, run_jobs):
    from chargeback.admin import _LargestRowsFormSet

    monkeypatch.setattr(_LargestRowsFormSet, "LIMIT", 1)
    finance.post(reverse(URL), _commit_data(_preview(finance)))
    run_jobs()
    run = AllocationRun.objects.get()
    response = finance.get(reverse("admin:chargeback_allocationrun_change", args=[run.pk]))
    [formset] = [f.formset for f in response.context["inline_admin_formsets"]]
    assert [form.instance.team.name for form in formset.forms] == ["Search"]  # the largest, 12.50
    every_row = reverse("admin:chargeback_allocatedcost_changelist") + f"?run__id__exact={run.pk}"
    assert every_row in response.content.decode()
    rows = finance.get(every_row).context["cl"].result_list
    assert sorted(r.team.name for r in rows) == ["Maps", "Search"]


@pytest.mark.django_db(transaction=True)
def test_job_refuses_to_commit_when_usage_changed_after_the_request(finance, september, run_jobs):
    # given a commit queued after the preview, and usage recorded before the job runs
    preview = _preview(finance)
    response = finance.post(reverse(URL), _commit_data(preview))
    UsageRecordFactory(team=september[0], cost=Decimal("1"))

    # when the job runs
    run_jobs()

    # then nothing is committed and the job's page says why
    assert not AllocationRun.objects.exists() and not Invoice.objects.exists()
    page = finance.get(response["Location"]).content.decode()
    assert 'data-status="done"' in page and "changed since the preview; nothing was committed" in page


@pytest.mark.django_db(transaction=True)
def test_preview_of_a_month_in_two_currencies_ties_out_each_and_commit_sees_a_change_in_either(finance, september,
                                                                                               run_jobs):
    # given September also has EUR usage of a team billed in EUR
    euro = TeamFactory(name="Euro", slug="euro", currency="EUR")
    UsageRecordFactory(team=euro, cost=Decimal("4.005"), currency="EUR")
    # when finance previews the month
    preview = _preview(finance)
    page = preview.content.decode()
    # then each currency has its own row of the tie-out table, and both tie out
    assert 'class="pool-EUR"' in page and 'class="pool-USD"' in page
    assert [(p["currency"], p["total"], p["invoiced"], p["ties_out"]) for p in preview.context["pools"]] == [
        ("EUR", "4.005\u00a0EUR", "4.01\u00a0EUR", True), ("USD", "15.75\u00a0USD", "12.75\u00a0USD", True)]
    # and when EUR usage changes after the preview, the commit is refused with the new preview
    data = {**_commit_data(preview), "previewed_pools": preview.context["commit_form"].initial["previewed_pools"]}
    UsageRecordFactory(team=euro, cost=Decimal("1"), currency="EUR")
    response = finance.post(reverse(URL), data, follow=True)
    assert any("changed since the preview" in str(m) for m in response.context["messages"])
    assert not AllocationRun.objects.exists()
    # and committed, the run list shows both currencies' figures
    preview = _preview(finance)
    finance.post(reverse(URL), {**_commit_data(preview),
                                "previewed_pools": preview.context["commit_form"].initial["previewed_pools"]})
    run_jobs()
    assert sorted((i.team_name, i.currency) for i in Invoice.objects.all()) == [
        ("Euro", "EUR"), ("Maps", "USD"), ("Search", "USD")]
    listing = finance.get(reverse("admin:chargeback_allocationrun_changelist")).content.decode()
    # (each in its currency's minor units, the exact metered figure in the tooltip)
    assert 'title="exact: 5.005\u00a0EUR">5.01\u00a0EUR</span>, <span class="money">15.75\u00a0USD</span>' in listing
