"""Every billing list and detail page of the admin at 1440 × 900, with the demo's data, as finance sees it.

One browser, one logged-in page: each changelist and the change page of its first row are opened,
screenshotted into ``test-artifacts/admin/screens/`` (gitignored) for people to look at, and held to
what a reader notices first: no column cut off (the page and the result table fit their width), no
amount broken over two lines (every ``.money`` stays on one line and says ``nowrap``), and amounts
right-aligned in their columns.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

from chargeback.services.team_mapping import team_mapping_set
from invoices.models import ExchangeRate, Invoice
from invoices.services.jobs import invoice_pdfs_zip_request
from payments.models import Dunning, DunningAttempt, DunningPolicy, Payment, StripeEvent
from teams.models import Team
from teams.services import api_key_create
from tests.admin.test_browser import PASSWORD
from webhooks.models import Endpoint
from webhooks.services import event_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

#: The billing apps whose every model the finance admin shows.
BILLING_APPS = {"teams", "chargeback", "wallets", "invoices", "subscriptions", "payments", "webhooks", "jobs",
                "billing_site"}

#: Run in the page: what is cut off or wrapped, as sentences (an empty list when all is well).
PROBLEMS_JS = """
() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    problems.push(`the page is ${root.scrollWidth}px wide in a ${root.clientWidth}px window`);
  }
  const table = document.querySelector('#result_list');
  if (table) {
    const box = table.closest('.results') || table.parentElement;
    if (table.scrollWidth > box.clientWidth + 1) {
      const heads = [...table.querySelectorAll('thead th')].filter(
        th => th.getBoundingClientRect().right > box.getBoundingClientRect().right + 1);
      problems.push(`the result table is ${table.scrollWidth}px in ${box.clientWidth}px; cut off: ` +
                    heads.map(th => th.innerText.trim()).join(', '));
    }
  }
  for (const el of document.querySelectorAll('.money')) {
    if (!el.offsetParent) continue;  // hidden (a collapsed fieldset)
    const style = getComputedStyle(el);
    const lines = el.getClientRects().length;
    const lineHeight = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.4;
    if (style.whiteSpace !== 'nowrap' || lines > 1 || el.getBoundingClientRect().height > lineHeight * 1.6) {
      problems.push(`the amount "${el.innerText}" wraps`);
    }
    const cell = el.closest('#result_list td');
    if (cell && !['right', 'end'].includes(getComputedStyle(cell).textAlign)) {
      problems.push(`the amount "${el.innerText}" is not right-aligned`);
    }
  }
  return problems;
}
"""


def _billing_models():
    return sorted(
        ((model, model_admin) for model, model_admin in admin.site._registry.items()
         if model._meta.app_label in BILLING_APPS),
        key=lambda pair: (pair[0]._meta.app_label, pair[0]._meta.model_name),
    )


def _what_the_demo_leaves_out(user) -> None:
    """A row of each billing model the demo does not fill: an exchange rate, an API key, a team
    mapping, a webhook endpoint with an event and its delivery, a queued job, and a declined card
    payment with its dunning and Stripe event."""
    search = Team.objects.get(slug="search")
    ExchangeRate.objects.create(date=dt.date(2026, 10, 30), from_currency="EUR", to_currency="USD",
                                rate=Decimal("1.0842"), source="manual")
    api_key_create(team=search, name="CI reporting", created_by=user)
    team_mapping_set(kind="tag", key="team", value="search-eu", team=search, created_by=user, note="EU account")
    Endpoint.objects.create(url="https://hooks.example.com/billing", event_types=["invoice.issued", "invoice.paid"],
                            team=search, secret="whsec_test", created_by=user)
    invoice = Invoice.objects.filter(team=search).first()
    event_record("invoice.issued", {"id": invoice.pk, "total": "40.53", "currency": "USD", "lines": []}, team=search)
    invoice_pdfs_zip_request(invoices=[invoice], name="october", created_by=user)
    # Payments as Stripe leaves them (the demo runs without Stripe): a declined invoice payment, its
    # dunning with one retry, and the webhook event that reported it.
    now = dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.timezone.utc)
    payment = Payment.objects.create(
        team=search, kind=Payment.Kind.INVOICE, status=Payment.Status.FAILED, amount=invoice.total,
        currency=invoice.currency, invoice=invoice, idempotency_key=f"invoice-{invoice.pk}-attempt-1",
        stripe_payment_intent_id="pi_3QdemoDeclined", stripe_customer_id="cus_QdemoSearch",
        failure_code="card_declined", failure_message="Your card was declined.")
    policy = DunningPolicy.objects.get_or_create(pk=1)[0]
    dunning = Dunning.objects.create(
        invoice=invoice, team=search, amount=invoice.total, currency=invoice.currency, retry_days=policy.retry_days,
        final_action=policy.final_action, freeze_wallet=policy.freeze_wallet, started_at=now, attempts=1,
        next_attempt_at=now + dt.timedelta(days=3))
    DunningAttempt.objects.create(dunning=dunning, number=1, scheduled_for=now + dt.timedelta(days=1),
                                  status=DunningAttempt.Status.FAILED, payment=payment, failure_code="card_declined",
                                  failure_message="Your card was declined.", mailed=True)
    StripeEvent.objects.create(event_id="evt_1QdemoFailed", type="payment_intent.payment_failed",
                               object_id="pi_3QdemoDeclined", created=now, team=search,
                               result="Invoice payment failed: card_declined; dunning started",
                               payload={"id": "evt_1QdemoFailed", "type": "payment_intent.payment_failed"})


def test_every_billing_list_and_detail_page_fits_1440_wide_and_no_amount_wraps(
        browser, live_server, finance_user, artifacts):
    # given the demo's month: teams, usage, a committed billing run, invoices, wallets, subscriptions
    call_command("demo", "--rows", "200", stdout=io.StringIO(), stderr=io.StringIO())
    _what_the_demo_leaves_out(finance_user)
    folder = artifacts / "screens"
    folder.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", finance_user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")

    # when finance opens each list and the first row's page
    problems, seen = {}, []
    for model, _model_admin in _billing_models():
        opts = model._meta
        name = f"{opts.app_label}-{opts.model_name}"
        urls = [(f"{name}-list", reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))]
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append((f"{name}-detail", reverse(f"admin:{opts.app_label}_{opts.model_name}_change",
                                                   args=[first.pk])))
        for label, url in urls:
            response = page.goto(f"{live_server.url}{url}")
            assert response.status == 200, f"{url} answered {response.status}"
            page.screenshot(path=str(folder / f"{label}.png"), full_page=label.endswith("-detail"))
            seen.append(label)
            found = page.evaluate(PROBLEMS_JS)
            if found:
                problems[label] = found
    context.close()

    # then every page was seen, and none has a column cut off or an amount on two lines
    missing = [f"{m._meta.app_label}-{m._meta.model_name}-detail" for m, _ in _billing_models()
               if f"{m._meta.app_label}-{m._meta.model_name}-detail" not in seen]
    assert missing == []
    assert problems == {}
