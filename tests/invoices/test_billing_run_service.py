"""``billing_run_execute``: one service behind the command, the admin page and the API."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from chargeback.models import AllocationRun
from chargeback.periods import BillingPeriod
from invoices.models import Invoice
from invoices.services.billing_run import billing_run_execute
from tests.factories import TeamFactory, UsageRecordFactory, UserFactory
from tests.jobs.helpers import run_queued_jobs

pytestmark = pytest.mark.django_db

D = Decimal
SEPTEMBER = BillingPeriod.month("2024-09")


@pytest.fixture
def september(db):
    """September 2024: Search 12.505, Maps 0.255 (the cents of each depend on the other), 3.00 without a team."""
    search, maps = TeamFactory(name="Search", slug="search"), TeamFactory(name="Maps", slug="maps")
    UsageRecordFactory(team=search, cost=D("12.505"))
    UsageRecordFactory(team=maps, cost=D("0.255"))
    UsageRecordFactory(team=None, cost=D("3"))
    return search, maps


def _bill_search_by_command(search, _maps, _user):
    call_command("billing_run", "--period", "2024-09", "--team", "search", "--no-pdf",
                 stdout=io.StringIO(), stderr=io.StringIO())


def _bill_search_by_admin(search, _maps, user):
    client = Client()
    client.force_login(user)
    url = reverse("admin:chargeback_allocationrun_billing_run")
    preview = client.post(url, {"step": "preview", "period": "2024-09", "teams": [search.pk], "render_pdfs": ""})
    form = preview.context["commit_form"]
    client.post(url, {"step": "commit", "period": "2024-09", "teams": [search.pk],
                      "previewed_records": form.initial["previewed_records"],
                      "previewed_total": str(form.initial["previewed_total"]),
                      "previewed_currency": form.initial["previewed_currency"]})
    run_queued_jobs()  # the commit is a background job


def _bill_search_by_api(search, _maps, user):
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/billing-runs/", {"period": "2024-09", "teams": [search.pk], "render_pdfs": False},
                           format="json")
    assert response.status_code == 201, response.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("door", [_bill_search_by_command, _bill_search_by_admin, _bill_search_by_api])
def test_billing_one_team_gives_the_same_run_and_invoice_whichever_door(september, door):
    # Given September's usage, and a finance user
    search, maps = september
    user = UserFactory(is_staff=True, is_superuser=True)

    # When only Search is billed, through the command, the admin page or the API
    door(search, maps, user)

    # Then the month is allocated whole, the run records the team, and only Search gets its invoice,
    # with the cents a run of every team would give it
    run = AllocationRun.objects.get(status=AllocationRun.Status.COMMITTED)
    assert (run.total_cost, run.allocated_cost, run.team_id) == (D("15.76"), D("12.76"), search.pk)
    assert [(i.team_name, i.total, i.status) for i in Invoice.objects.all()] == [("Search", D("12.51"), "draft")]


def test_billing_run_execute_dry_run_reports_every_team_and_writes_nothing(september):
    # When the month is billed as a dry run
    result = billing_run_execute(period=SEPTEMBER, dry_run=True)

    # Then each team's amount, the totals and the tie-out are reported, and nothing is written
    assert [(row.team_name, row.amount, row.precise) for row in result.rows()] == [
        ("Maps", D("0.25"), D("0.255")), ("Search", D("12.51"), D("12.505"))]
    assert result.totals() == {"USD": D("12.76")} and result.billed == 2 and not result.nothing_to_bill
    assert result.tie_out == "allocated 12.76 USD of 15.76 USD, unallocated 3.00 USD"
    assert not AllocationRun.objects.exists() and not Invoice.objects.exists()


def test_billing_run_execute_commits_the_run_with_its_drafts_and_stores_their_pdfs(september):
    # When the month is billed
    result = billing_run_execute(period=SEPTEMBER)

    # Then the run is committed, each team has a new draft with its PDF, and the drafts sum to the allocated cost
    assert result.run.status == AllocationRun.Status.COMMITTED
    assert [(row.team_name, row.amount, row.state) for row in result.rows()] == [
        ("Maps", D("0.25"), "new"), ("Search", D("12.51"), "new")]
    assert all(Invoice.objects.get(pk=i.pk).pdf_sha256 for i in result.invoices)
    assert result.problems == [] and result.warnings == []


def test_billing_runs_api_dry_run_answers_the_summary_and_writes_nothing(september):
    client = APIClient()
    client.force_authenticate(UserFactory(is_staff=True, is_superuser=True))

    response = client.post("/api/v1/billing-runs/", {"period": "2024-09", "dry_run": True}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["allocation_run"] is None and body["tie_out"] == "allocated 12.76 USD of 15.76 USD, unallocated 3.00 USD"
    assert [(t["team_name"], t["amount"], t["state"]) for t in body["teams"]] == [
        ("Maps", "0.25", "would be invoiced"), ("Search", "12.51", "would be invoiced")]
    assert body["totals"] == [{"currency": "USD", "amount": "12.76"}] and body["invoices"] == 2
    assert not AllocationRun.objects.exists()


def test_billing_runs_api_refuses_a_bad_period_and_non_finance_callers(september):
    client = APIClient()
    client.force_authenticate(UserFactory(is_staff=True, is_superuser=True))
    bad = client.post("/api/v1/billing-runs/", {"period": "September"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "period"

    member = APIClient()
    member.force_authenticate(UserFactory())
    assert member.post("/api/v1/billing-runs/", {"period": "2024-09"}, format="json").status_code == 403
    assert not AllocationRun.objects.exists()
