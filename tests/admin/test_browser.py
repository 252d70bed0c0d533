"""The finance admin in a real browser (Playwright + Debian's Chromium), as a finance person uses it.

Log in, run a billing run with its preview and commit, download an invoice's PDF, top up a wallet
with one form submitted twice, and see the dashboard's charts drawn. Screenshots of the dashboard
and an invoice page land in ``test-artifacts/admin/`` (gitignored) for people to look at.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from decimal import Decimal

import pytest
from django.utils import timezone

from chargeback.models import AllocationRun
from chargeback.periods import BillingPeriod
from chargeback.services.allocation import allocation_run_execute
from invoices.models import Invoice
from invoices.services.lifecycle import invoice_issue, invoice_mark_overdue
from teams.models import Team
from tests.admin.conftest import new_key
from tests.factories import TeamFactory, UsageRecordFactory, draft_invoice
from wallets.models import LedgerEntry
from wallets.services.charges import wallet_charge
from wallets.services.posting import wallet_top_up
from wallets.services.wallets import wallet_open

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory


@pytest.fixture
def logged_in(page, live_server, finance_user):
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", finance_user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return page


def _usage(team, cost, day):
    UsageRecordFactory(team=team, cost=Decimal(cost),
                       occurred_at=timezone.make_aware(dt.datetime.combine(day, dt.time(12))))


def _job_done(page, *, timeout: float = 120_000) -> str:
    """Wait on a job's progress page (it reloads itself) until the job and those working for it are
    done; return the page's text."""
    page.wait_for_selector("#job-status[data-status=done]", timeout=timeout)
    page.wait_for_function("!document.querySelector('meta[http-equiv=refresh]')", timeout=timeout)
    return page.inner_text("#content")


def test_browser_billing_run_then_issue_an_invoice_and_download_its_pdf(logged_in, live_server, artifacts,
                                                                         worker_process):
    page = logged_in
    worker_process.start()
    search, maps = TeamFactory(name="Search", slug="search"), TeamFactory(name="Maps", slug="maps")
    _usage(search, "1234.5", dt.date(2024, 9, 3))
    _usage(maps, "99.99", dt.date(2024, 9, 4))
    _usage(None, "10", dt.date(2024, 9, 5))

    page.goto(f"{live_server.url}/admin/chargeback/allocationrun/")
    page.click("text=Run billing for a period…")
    page.fill("#id_period", "2024-09")
    page.click("input[name=preview]")
    page.wait_for_selector("#preview-teams")
    assert "1,234.50\u00a0USD" in page.inner_text("#preview-teams")
    assert "ties out" in page.inner_text("#tie-out")
    assert not AllocationRun.objects.exists()

    page.click("text=Commit the run and write the invoices")
    assert "committed for 2024-09" in _job_done(page)
    assert AllocationRun.objects.get().status == "committed"

    invoice = Invoice.objects.get(team=search)
    page.goto(f"{live_server.url}/admin/invoices/invoice/{invoice.pk}/change/")
    page.click("a.lifecycle-issue")
    page.wait_for_selector("#lifecycle-invoices")
    page.click("#lifecycle-form input[type=submit]")
    assert "Issue: 1 invoice(s) done" in _job_done(page)
    invoice.refresh_from_db()
    assert invoice.status == "pending" and invoice.number
    assert invoice.number in page.inner_text("#content")
    page.goto(f"{live_server.url}/admin/invoices/invoice/{invoice.pk}/change/")
    page.screenshot(path=str(artifacts / "invoice.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click("#content .object-tools a.pdf-download")
    download = download_info.value
    assert download.suggested_filename == f"{invoice.number}.pdf"
    target = artifacts / download.suggested_filename
    download.save_as(target)
    assert target.read_bytes().startswith(b"%PDF")


def test_browser_billing_run_progress_page_then_download_the_zip_of_its_pdfs(logged_in, live_server, artifacts,
                                                                              worker_process):
    # given September usage of twelve teams, and a worker beside the web server
    page = logged_in
    teams = [TeamFactory(name=f"Team {n:02d}", slug=f"team-{n:02d}") for n in range(1, 13)]
    for n, team in enumerate(teams, start=1):
        _usage(team, f"{n}00.25", dt.date(2024, 9, 3))
    worker_process.start()

    # when finance previews and commits the run
    page.goto(f"{live_server.url}/admin/chargeback/allocationrun/billing-run/")
    page.fill("#id_period", "2024-09")
    page.check("#id_render_pdfs")
    page.click("input[name=preview]")
    page.wait_for_selector("#preview-teams")
    page.click("text=Commit the run and write the invoices")

    # then the browser is on the job's progress page, which follows the run to its end
    page.wait_for_selector("#job-status")
    assert "/admin/jobs/jobprogress/" in page.url and "Billing run 2024-09" in page.inner_text("#content")
    text = _job_done(page)
    page.screenshot(path=str(artifacts / "billing-run-job.png"), full_page=True)
    run = AllocationRun.objects.get()
    assert f"Allocation run #{run.pk} committed for 2024-09" in text and "rendering PDFs 12 / 12" in text

    # and the zip of the run's twelve PDFs downloads from it
    with page.expect_download() as download_info:
        page.click("#job-download")
    download = download_info.value
    target = artifacts / download.suggested_filename
    download.save_as(target)
    with zipfile.ZipFile(target) as archive:
        names = sorted(archive.namelist())
        assert len(names) == 12 and all(archive.read(name).startswith(b"%PDF") for name in names)
    drafts = Invoice.objects.filter(allocation_run=run)
    assert sorted(f"{invoice.display_number}.pdf" for invoice in drafts) == names


def test_browser_top_up_form_submitted_twice_moves_money_once(logged_in, live_server):
    page = logged_in
    wallet = wallet_open(team=TeamFactory(name="Search", slug="search"))
    wallet_top_up(wallet=wallet, amount=Decimal(10), idempotency_key=new_key())

    page.goto(f"{live_server.url}/admin/wallets/wallet/")
    page.check(f"input[name=_selected_action][value='{wallet.pk}']")
    page.select_option("select[name=action]", "top_up_action")
    page.click("button[name=index]")
    page.wait_for_selector("#credit-form")
    page.fill("#id_amount", "250")
    page.fill("#id_reference_id", "PO-2024-17")
    # The same rendered form sent twice, as a double click or a resubmission would.
    statuses = page.evaluate("""async () => {
        const form = document.getElementById('credit-form');
        const send = () => fetch(window.location.href, {method: 'POST', body: new FormData(form)});
        const first = await send();
        const second = await send();
        return [first.status, second.status];
    }""")
    assert statuses == [200, 200]  # both followed the redirect to the wallet list
    page.click("#credit-form input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert "already submitted" in page.inner_text(".messagelist")

    assert LedgerEntry.objects.filter(wallet=wallet, reference_id="PO-2024-17").count() == 1
    wallet.refresh_from_db()
    assert wallet.balance == Decimal(260)


def test_browser_dashboard_draws_both_charts(logged_in, live_server, artifacts):
    page = logged_in
    today = timezone.now().date()
    last_month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=5)
    for name, costs in [("Search", ("420", "380")), ("Maps", ("150", "210")), ("Ads", ("90", "60"))]:
        team = TeamFactory(name=name, slug=name.lower())
        _usage(team, costs[0], today.replace(day=1))
        _usage(team, costs[1], last_month)
    _usage(None, "33", today.replace(day=1))
    # Something in every list: last month billed, a wallet running low, an overdue invoice.
    allocation_run_execute(period=BillingPeriod(last_month.replace(day=1), today.replace(day=1)))
    low = wallet_open(team=Team.objects.get(slug="search"))
    wallet_top_up(wallet=low, amount=Decimal(100), idempotency_key=new_key())
    wallet_charge(wallet=low, amount=Decimal(95), idempotency_key=new_key())
    late = invoice_issue(invoice=draft_invoice(team=Team.objects.get(slug="maps"),
                                                                amounts=("1250.00",)),
                                          issue_date=today - dt.timedelta(days=60))
    invoice_mark_overdue(invoice=late)

    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#dashboard[data-charts-drawn=true]")
    drawn = page.evaluate("""() => ['team-chart', 'month-chart'].map(id => {
        const canvas = document.getElementById(id);
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) painted++; }
        return {width: canvas.width, height: canvas.height, painted};
    })""")
    assert all(chart["width"] > 100 and chart["height"] > 100 and chart["painted"] > 1000 for chart in drawn), drawn
    labels = page.evaluate("() => window.billingCharts.team.data.labels")
    assert labels[:3] == ["Search", "Maps", "Ads"]
    assert late.number in page.inner_text("#overdue-invoices") and "1,250.00\u00a0USD" in page.inner_text("#overdue-invoices")
    assert "Search" in page.inner_text("#low-wallets") and "ties out" in page.inner_text("#latest-runs")
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
