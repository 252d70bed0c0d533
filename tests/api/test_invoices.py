"""Invoices, credit notes and reports through HTTP."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from invoices.models import CreditNote, Invoice
from invoices.services.lifecycle import invoice_issue
from tests.factories import UsageRecordFactory, draft_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice_a(team_a):
    return draft_invoice(team=team_a, amounts=("10.00", "2.50"))


def _committed_period(finance, team_a, team_b):
    UsageRecordFactory(team=team_a, cost=Decimal("10.004"))
    UsageRecordFactory(team=team_b, cost=Decimal("30"))
    response = finance.post("/api/v1/allocations/", {"period_start": "2024-09-01", "period_end": "2024-10-01"},
                            format="json")
    assert response.status_code == 201, response.json()


def test_invoice_generated_by_finance_from_the_committed_run(finance, team_a, team_b):
    _committed_period(finance, team_a, team_b)
    response = finance.post("/api/v1/invoices/", {"team": team_a.pk, "period_start": "2024-09-01",
                                                  "period_end": "2024-10-01"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["total"], body["currency"]) == ("draft", "10.00", "USD")
    assert [line["amount"] for line in body["lines"]] == ["10.00"]


def test_invoice_generation_without_a_committed_run_answers_422(finance, team_a):
    response = finance.post("/api/v1/invoices/", {"team": team_a.pk, "period_start": "2030-01-01",
                                                  "period_end": "2030-02-01", "kind": "chargeback"}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invoice_generation_error"


def test_invoice_generation_by_a_member_answers_403(member, team_a):
    response = member.post("/api/v1/invoices/", {"team": team_a.pk, "period_start": "2024-09-01",
                                                 "period_end": "2024-10-01"}, format="json")
    assert response.status_code == 403


def test_invoice_list_and_detail_are_scoped_to_the_team(member, invoice_a, team_b):
    other = draft_invoice(team=team_b)
    listed = member.get("/api/v1/invoices/").json()["results"]
    assert [i["id"] for i in listed] == [invoice_a.pk]
    detail = member.get(f"/api/v1/invoices/{invoice_a.pk}/").json()
    assert [line["amount"] for line in detail["lines"]] == ["10.00", "2.50"]
    assert detail["total"] == "12.50"
    assert member.get(f"/api/v1/invoices/{other.pk}/").status_code == 404
    assert member.get(f"/api/v1/invoices/{other.pk}/pdf/").status_code == 404


def test_invoice_status_issue_then_pay(finance, invoice_a):
    issued = finance.post(f"/api/v1/invoices/{invoice_a.pk}/status/", {"status": "pending"}, format="json")
    assert issued.status_code == 200, issued.json()
    assert issued.json()["status"] == "pending"
    assert issued.json()["number"].startswith("INV-")
    paid = finance.post(f"/api/v1/invoices/{invoice_a.pk}/status/", {"status": "paid", "payment_reference": "BANK-7"},
                        format="json")
    assert (paid.json()["status"], paid.json()["amount_due"]) == ("paid", "0.00")


def test_invoice_status_refused_move_answers_409_naming_both_statuses(finance, invoice_a):
    response = finance.post(f"/api/v1/invoices/{invoice_a.pk}/status/", {"status": "paid", "payment_reference": "x"},
                            format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_transition"
    assert "draft" in error["message"] and "paid" in error["message"]


def test_invoice_status_paid_without_reference_names_payment_reference(finance, invoice_a):
    invoice_issue(invoice=invoice_a)
    response = finance.post(f"/api/v1/invoices/{invoice_a.pk}/status/", {"status": "paid"}, format="json")
    # each field is well-formed; paid needs a reference the other moves do not: 422
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "payment_reference"


def test_invoice_status_unknown_status_names_status(finance, invoice_a):
    response = finance.post(f"/api/v1/invoices/{invoice_a.pk}/status/", {"status": "settled"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "status"


def test_invoice_status_by_a_member_answers_403(member, invoice_a):
    response = member.post(f"/api/v1/invoices/{invoice_a.pk}/status/", {"status": "pending"}, format="json")
    assert response.status_code == 403


def test_invoice_pdf_is_named_after_the_invoice_number(member, invoice_a):
    issued = invoice_issue(invoice=invoice_a)
    response = member.get(f"/api/v1/invoices/{invoice_a.pk}/pdf/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{issued.number}.pdf"'
    assert b"".join(response.streaming_content).startswith(b"%PDF")


def test_invoice_pdf_of_a_draft_is_rendered_as_a_draft(member, invoice_a):
    response = member.get(f"/api/v1/invoices/{invoice_a.pk}/pdf/")
    assert response.status_code == 200
    assert "draft" in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF")


def test_credit_note_partial_then_full_cancels_the_invoice(finance, invoice_a):
    invoice_issue(invoice=invoice_a)
    partial = finance.post(f"/api/v1/invoices/{invoice_a.pk}/credit-notes/",
                           {"reason": "order_change", "amount": "2.50"}, format="json")
    assert partial.status_code == 201, partial.json()
    assert (partial.json()["total"], partial.json()["currency"]) == ("2.50", "USD")
    full = finance.post(f"/api/v1/invoices/{invoice_a.pk}/credit-notes/", {"reason": "duplicated_charge"}, format="json")
    assert full.status_code == 201
    assert full.json()["total"] == "10.00"
    assert Invoice.objects.get(pk=invoice_a.pk).status == "cancelled"


def test_credit_note_beyond_the_invoice_answers_422(finance, invoice_a):
    invoice_issue(invoice=invoice_a)
    response = finance.post(f"/api/v1/invoices/{invoice_a.pk}/credit-notes/",
                            {"reason": "other", "amount": "99.00"}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "credit_exceeds_invoice"
    assert not CreditNote.objects.exists()


def test_credit_note_on_a_line_of_another_invoice_names_the_line(finance, invoice_a, team_b):
    invoice_issue(invoice=invoice_a)
    foreign = draft_invoice(team=team_b).lines.get()
    response = finance.post(f"/api/v1/invoices/{invoice_a.pk}/credit-notes/",
                            {"reason": "other", "lines": [{"invoice_line": foreign.pk, "amount": "1.00"}]},
                            format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "lines[0].invoice_line"


def test_credit_note_replayed_by_header_issues_one(finance, invoice_a):
    invoice_issue(invoice=invoice_a)
    payload = {"reason": "order_change", "amount": "1.00"}
    first = finance.post(f"/api/v1/invoices/{invoice_a.pk}/credit-notes/", payload, format="json",
                         HTTP_IDEMPOTENCY_KEY="cn-1")
    again = finance.post(f"/api/v1/invoices/{invoice_a.pk}/credit-notes/", payload, format="json",
                         HTTP_IDEMPOTENCY_KEY="cn-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert CreditNote.objects.count() == 1


def test_team_report_sums_usage_allocations_and_invoices(finance, member, team_a, team_b):
    _committed_period(finance, team_a, team_b)
    finance.post("/api/v1/invoices/", {"team": team_a.pk, "period_start": "2024-09-01", "period_end": "2024-10-01"},
                 format="json")
    response = member.get(f"/api/v1/reports/teams/{team_a.pk}/", {"period_start": "2024-09-01",
                                                                  "period_end": "2024-10-01"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["total_cost"] == [{"currency": "USD", "amount": "10.004000000000"}]
    assert [a["amount"] for a in body["allocations"]] == ["10.004000000000"]
    assert [i["total"] for i in body["invoices"]] == ["10.00"]
    assert member.get(f"/api/v1/reports/teams/{team_b.pk}/", {"period_start": "2024-09-01",
                                                              "period_end": "2024-10-01"}).status_code == 404


def test_user_report_for_the_user_and_their_manager_only(member, manager, outsider, member_user, team_a):
    UsageRecordFactory(team=team_a, user=member_user, cost=Decimal("4"))
    query = {"period_start": "2024-09-01", "period_end": "2024-10-01"}
    mine = member.get(f"/api/v1/reports/users/{member_user.pk}/", query)
    assert mine.json()["total_cost"] == [{"currency": "USD", "amount": "4.000000000000"}]
    assert manager.get(f"/api/v1/reports/users/{member_user.pk}/", query).status_code == 200
    assert outsider.get(f"/api/v1/reports/users/{member_user.pk}/", query).status_code == 404


def test_credit_note_by_lines_shows_each_line_with_its_currency(finance, invoice_a):
    invoice_issue(invoice=invoice_a)
    line = invoice_a.lines.order_by("position").first()
    response = finance.post(f"/api/v1/invoices/{invoice_a.pk}/credit-notes/",
                            {"reason": "allocation_correction", "lines": [{"invoice_line": line.pk, "amount": "4.00"}]},
                            format="json")
    assert response.status_code == 201, response.json()
    assert [(l["invoice_line"], l["amount"], l["currency"]) for l in response.json()["lines"]] == [
        (line.pk, "4.00", "USD")]
    assert Invoice.objects.get(pk=invoice_a.pk).amount_due == Decimal("8.50")


def test_invoice_list_period_filter_keeps_only_that_month(finance, team_a):
    # given a team's invoices for September and October 2024
    september = draft_invoice(team=team_a, period_start=dt.date(2024, 9, 1), period_end=dt.date(2024, 10, 1))
    draft_invoice(team=team_a, period_start=dt.date(2024, 10, 1), period_end=dt.date(2024, 11, 1))
    # when finance lists September's
    listed = finance.get("/api/v1/invoices/?period=2024-09").json()["results"]
    # then only September's invoice is there
    assert [row["id"] for row in listed] == [september.pk]


def test_invoice_list_malformed_period_answers_400_naming_the_filter(finance):
    response = finance.get("/api/v1/invoices/?period=2024-13")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "period"


def test_allocation_list_malformed_period_answers_400_naming_the_filter(finance):
    response = finance.get("/api/v1/allocations/?period=September")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "period"
