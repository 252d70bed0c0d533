"""Finance's corrections of usage in the admin: "Void…" (kept, marked, left out) and "Record an adjustment…"."""

from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from chargeback.models import AllocationRun, UsageRecord
from invoices.models import Invoice
from teams.services import billing_settings_update
from tests.factories import TeamFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:chargeback_usagerecord_changelist"


def _void(client, records, reason=None):
    data = {"action": "void_records", ACTION_CHECKBOX_NAME: [r.pk for r in records]}
    if reason is not None:
        data.update(apply="1", reason=reason)
    return client.post(reverse(CHANGELIST), data, follow=reason is not None)


def test_void_asks_for_a_reason_then_voids_and_the_list_marks_the_row(finance, finance_user):
    wrong, kept = UsageRecordFactory(cost=Decimal("100")), UsageRecordFactory()
    # when finance chooses "Void…" for one record, the reason form is shown and nothing changes yet
    form = _void(finance, [wrong])
    assert form.status_code == 200 and "void-form" in form.content.decode()
    wrong.refresh_from_db()
    assert wrong.status == UsageRecord.Status.ACTIVE
    # when it gives the reason
    response = _void(finance, [wrong], reason="posted twice by a test key")
    # then the record is void, kept with the reason and who voided it, and the list marks it
    wrong.refresh_from_db()
    assert (wrong.status, wrong.void_reason, wrong.voided_by) == ("void", "posted twice by a test key", finance_user)
    assert any("1 usage record(s) voided" in str(m) for m in response.context["messages"])
    page = finance.get(reverse(CHANGELIST)).content.decode()
    assert "VOID" in page and '<del><span class="money">100.00\u00a0USD</span></del>' in page
    voided = finance.get(reverse(CHANGELIST), {"status__exact": "void"})
    assert [r.pk for r in voided.context["cl"].result_list] == [wrong.pk]
    kept.refresh_from_db()
    assert kept.status == UsageRecord.Status.ACTIVE


def test_void_without_a_reason_is_refused_in_the_form(finance):
    wrong = UsageRecordFactory()
    response = finance.post(reverse(CHANGELIST), {"action": "void_records", ACTION_CHECKBOX_NAME: [wrong.pk],
                                                   "apply": "1", "reason": "   "})
    assert response.status_code == 200 and response.context["form"].errors
    wrong.refresh_from_db()
    assert wrong.status == UsageRecord.Status.ACTIVE


def test_auditors_cannot_void(auditor):
    wrong = UsageRecordFactory()
    _void(auditor, [wrong], reason="no")
    wrong.refresh_from_db()
    assert wrong.status == UsageRecord.Status.ACTIVE
    assert "void_records" not in auditor.get(reverse(CHANGELIST)).content.decode()


def test_finance_records_a_negative_adjustment_with_a_reason(finance, finance_user):
    team = TeamFactory(name="Search")
    url = reverse("admin:chargeback_usagerecord_adjustment")
    form = finance.get(url)
    key = form.context["form"].initial["idempotency_key"]
    data = {"team": team.pk, "period": "2024-09", "amount": "-12.34", "currency": "", "reason": "outage credit",
            "idempotency_key": key}
    response = finance.post(url, data, follow=True)
    assert response.status_code == 200
    adjustment = UsageRecord.objects.get()
    assert (adjustment.source, adjustment.cost, adjustment.currency, adjustment.metadata["reason"]) == (
        "adjustment", Decimal("-12.34"), "USD", "outage credit")
    # sending the same form again records nothing more
    finance.post(url, data)
    assert UsageRecord.objects.count() == 1


def test_adjustment_in_a_currency_the_team_is_not_billed_in_is_refused_on_the_form(finance):
    team = TeamFactory()
    url = reverse("admin:chargeback_usagerecord_adjustment")
    response = finance.post(url, {"team": team.pk, "period": "2024-09", "amount": "-5", "currency": "EUR",
                                  "reason": "credit", "idempotency_key": "k-1"})
    assert response.status_code == 200
    assert "currency" in response.context["form"].errors
    assert not UsageRecord.objects.exists()


def test_adjustment_page_is_refused_to_auditors(auditor):
    assert auditor.get(reverse("admin:chargeback_usagerecord_adjustment")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_billing_run_page_lists_the_teams_not_billed(finance, run_jobs):
    a, b = TeamFactory(name="Alpha"), TeamFactory(name="Beta")
    billing_settings_update(team=a, invoice_currency="team_currency", extra_currencies=["EUR"])
    UsageRecordFactory(team=a, cost=Decimal("1"))
    UsageRecordFactory(team=a, cost=Decimal("2"), currency="EUR")
    UsageRecordFactory(team=b, cost=Decimal("3"))
    url = reverse("admin:chargeback_allocationrun_billing_run")
    preview = finance.post(url, {"step": "preview", "period": "2024-09", "render_pdfs": ""})
    assert "Alpha: invoiced in USD, but no exchange rate EUR→USD on 2024-09-30" in preview.content.decode()
    form = preview.context["commit_form"]
    response = finance.post(url, {"step": "commit", "period": "2024-09",
                                  "previewed_records": form.initial["previewed_records"],
                                  "previewed_total": str(form.initial["previewed_total"]),
                                  "previewed_currency": form.initial["previewed_currency"],
                                  "previewed_pools": form.initial["previewed_pools"]})
    run_jobs()
    job_page = finance.get(response["Location"]).content.decode()
    assert "Not billed: Alpha" in job_page
    assert [i.team_name for i in Invoice.objects.all()] == ["Beta"]
    run_page = finance.get(reverse("admin:chargeback_allocationrun_change", args=[AllocationRun.objects.get().pk]))
    assert "no exchange rate EUR→USD on 2024-09-30" in run_page.content.decode()  # the run's page, "Not billed"
    assert AllocationRun.objects.get().refused[0]["team"] == "Alpha"
