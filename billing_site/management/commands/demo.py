"""``python manage.py demo [--focus PATH] [--period YYYY-MM]``: a ready-to-explore billing month.

Creates a development admin user (its name and password are printed), the demo price catalog,
a few teams with members, a realistic FOCUS 1.0 cost file from the deterministic generator (or
imports the FOCUS file given with ``--focus``), AI usage priced from the catalog, the allocation
rules, prepaid and postpaid wallets with today's charges, and then runs the month-end billing run for the demo month. Running it again changes
nothing but the admin password: every step is idempotent.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import tempfile
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify

from chargeback.focus.generator import write_focus_file
from chargeback.focus.results import FocusImportError
from chargeback.models import AllocationRule, AllocationTarget, Price
from chargeback.periods import BillingPeriod, PeriodError
from chargeback.services.focus_import import focus_import
from chargeback.services.usage import usage_record_create
from subscriptions.models import Plan, Subscription
from subscriptions.selectors_mrr import subscription_stats
from subscriptions.services.discounts import coupon_create
from subscriptions.services.lifecycle import subscription_cancel, subscription_change_plan, subscription_create
from subscriptions.services.plans import plan_create
from subscriptions.services.renewal import subscriptions_renew_due
from teams.models import Team, TeamMembership
from teams.services import billing_settings_update
from wallets.errors import InsufficientFunds
from wallets.models import LedgerEntry, UsageEvent, Wallet
from wallets.services.holds import wallet_hold
from wallets.services.posting import wallet_grant, wallet_top_up
from wallets.services.usage_events import usage_event_charge
from wallets.services.wallets import wallet_open

#: The month the generated demo data covers.
DEMO_PERIOD = "2026-10"

#: The catalog of the example call ``DEMO_CALL_ITEMS`` (category, provider, model, unit, unit price in
#: USD); the tests, the API benchmark and the demo all price from it.
EXAMPLE_PRICES = [
    ("stt", "openai", "whisper-1", "second", Decimal("0.0001")),
    ("llm", "openai", "gpt-4", "token", Decimal("0.00003")),
    ("tts", "openai", "tts-1", "character", Decimal("0.000015")),
    ("telephony", "twilio", "voice", "minute", Decimal("0.013")),
]

#: The demo price catalog: the example's, and GPU time.
DEMO_PRICES = [*EXAMPLE_PRICES, ("gpu", "internal", "a100", "second", Decimal("0.00085"))]

#: AI usage of the demo month: (team slug, category, provider, model, unit, quantity range).
DEMO_AI_USAGE = [
    ("support", "stt", "openai", "whisper-1", "second", (30, 900)),
    ("support", "telephony", "twilio", "voice", "minute", (1, 25)),
    ("support", "tts", "openai", "tts-1", "character", (200, 4000)),
    ("search", "llm", "openai", "gpt-4", "token", (500, 12000)),
    ("ml-platform", "llm", "openai", "gpt-4", "token", (2000, 40000)),
    ("ml-platform", "gpu", "internal", "a100", "second", (60, 3600)),
]

#: Display names and cost centers of the demo teams (the FOCUS import names a team by its tag value).
DEMO_TEAMS = {
    "checkout": ("Checkout", "CC-4100"),
    "search": ("Search", "CC-4200"),
    "recommendations": ("Recommendations", "CC-4210"),
    "payments": ("Payments", "CC-4300"),
    "identity": ("Identity & Access", "CC-4400"),
    "ml-platform": ("ML Platform", "CC-5100"),
    "data-warehouse": ("Data Warehouse", "CC-5200"),
    "mobile-app": ("Mobile App", "CC-6100"),
    "marketing-site": ("Marketing Site", "CC-7100"),
    "logistics": ("Logistics", "CC-8100"),
    "support": ("Customer Support", "CC-8200"),
    "platform": ("Platform Engineering", "CC-9000"),
}

#: The example call, one item of each kind: 0.006 + 0.015 + 0.003 + 0.013 = 0.037 USD with ``EXAMPLE_PRICES``.
DEMO_CALL_ITEMS = [
    {"category": "stt", "provider": "openai", "model": "whisper-1", "unit": "second", "quantity": Decimal(60)},
    {"category": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": Decimal(500)},
    {"category": "tts", "provider": "openai", "model": "tts-1", "unit": "character", "quantity": Decimal(200)},
    {"category": "telephony", "provider": "twilio", "model": "voice", "unit": "minute", "quantity": Decimal(1)},
]

DEMO_MEMBERS = {
    "support": ["ana", "ben"],
    "search": ["chloe", "dev"],
    "ml-platform": ["emil", "farah", "gus"],
}


class Command(BaseCommand):
    help = "Load demo data (admin user, catalog, teams, FOCUS costs, AI usage, rules) and run the billing run."

    def add_arguments(self, parser):
        parser.add_argument("--focus", metavar="PATH", help="Import this FOCUS 1.0 file instead of generating one.")
        parser.add_argument("--period", metavar="YYYY-MM", help="The month to bill (default: the demo month, or "
                            "the billing period most rows of --focus belong to).")
        parser.add_argument("--rows", type=int, default=5000, help="Rows of the generated FOCUS file.")
        parser.add_argument("--no-billing-run", action="store_true", help="Load the data only.")
        parser.add_argument("--host", default="127.0.0.1:8000", metavar="HOST:PORT",
                            help="Where the app will be served, for the closing message (make demo passes HOST).")

    def handle(self, *args, **options):
        self._admin_user()
        self._catalog()
        if options["focus"]:
            result = self._import(Path(options["focus"]))
            period = options["period"] or self._main_period(result)
        else:
            period = options["period"] or DEMO_PERIOD
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"demo-focus-{period}.csv"
                write_focus_file(path, rows=options["rows"], period=period, seed=42)
                self._import(path)
        try:
            billing_period = BillingPeriod.month(period)
        except PeriodError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        self._teams_and_ai_usage(billing_period)
        self._portal_users()
        self._rules()
        self._wallets()
        if not options["no_billing_run"]:
            self.stdout.write(self.style.MIGRATE_HEADING(f"Month-end billing run for {billing_period}"))
            call_command("billing_run", "--period", billing_period.label, stdout=self.stdout, stderr=self.stderr)
        self._subscriptions()
        self.stdout.write(self.style.SUCCESS(f"Demo ready: http://{options['host']}/admin/ (credentials above)."))
        self.stdout.write(self.style.SUCCESS(f"Team portal: http://{options['host']}/portal/ (team users above)."))

    # --- steps ---------------------------------------------------------------------------------

    def _admin_user(self) -> None:
        """A superuser for the development machine; the password is new on every run and printed."""
        username = os.environ.get("DEMO_ADMIN_USERNAME", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(self.style.SUCCESS(f"Admin user: {username}  password: {password}"))

    def _portal_users(self) -> None:
        """A password for the demo teams' users, so they can log in to the team portal; new on every
        run (or ``DEMO_MEMBER_PASSWORD``) and printed. The first user of each team is its team lead."""
        password = os.environ.get("DEMO_MEMBER_PASSWORD") or secrets.token_urlsafe(12)
        users = get_user_model().objects.filter(username__in=[u for names in DEMO_MEMBERS.values() for u in names])
        for user in users:
            user.set_password(password)
            user.save(update_fields=["password"])
        leads = ", ".join(names[0] for names in DEMO_MEMBERS.values())
        members = ", ".join(name for names in DEMO_MEMBERS.values() for name in names[1:])
        self.stdout.write(self.style.SUCCESS(
            f"Team users (leads: {leads}; members: {members})  password: {password}"))

    def _catalog(self) -> None:
        valid_from = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        for category, provider, model, unit, unit_price in DEMO_PRICES:
            Price.objects.get_or_create(
                category=category, provider=provider, model=model, unit=unit, team=None, valid_from=valid_from,
                defaults={"unit_price": unit_price, "currency": settings.BILLING_DEFAULT_CURRENCY},
            )
        self.stdout.write(f"Price catalog: {Price.objects.count()} prices")

    def _import(self, path: Path):
        try:
            result = focus_import(path=path, create_teams=True)
        except FocusImportError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        self.stdout.write(
            f"FOCUS import of {path.name}: {result.rows_read} rows read, {result.rows_imported} imported, "
            f"{result.rows_duplicate} already there, {result.teams_created} teams created"
        )
        return result

    @staticmethod
    def _main_period(result) -> str:
        """The billing period (``YYYY-MM``) that carries the largest part of the file's BilledCost."""
        if not result.billed_cost:
            raise CommandError("The FOCUS file has no rows to bill.", returncode=2)
        return f"{max(result.billed_cost, key=lambda start: abs(result.billed_cost[start])):%Y-%m}"

    def _teams_and_ai_usage(self, period: BillingPeriod) -> None:
        """Members for the demo teams, and a month of AI usage priced from the catalog."""
        users = get_user_model().objects
        with transaction.atomic():
            for slug, (name, cost_center) in DEMO_TEAMS.items():
                Team.objects.update_or_create(slug=slug, defaults={"name": name, "cost_center": cost_center})
            for slug, usernames in DEMO_MEMBERS.items():
                team, _ = Team.objects.get_or_create(slug=slug, defaults={"name": slug.replace("-", " ").title()})
                for i, username in enumerate(usernames):
                    user, _ = users.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
                    role = TeamMembership.Role.MANAGER if i == 0 else TeamMembership.Role.MEMBER
                    TeamMembership.objects.get_or_create(user=user, team=team, defaults={"role": role})

        rng = random.Random(7)
        days = (period.end - period.start).days
        count = 0
        with transaction.atomic():
            for slug, category, provider, model, unit, (low, high) in DEMO_AI_USAGE:
                team = Team.objects.get(slug=slug)
                members = list(users.filter(team_memberships__team=team).order_by("pk"))
                for n in range(60):
                    occurred_at = dt.datetime.combine(
                        period.start + dt.timedelta(days=rng.randrange(days)), dt.time(rng.randrange(24)), dt.UTC
                    )
                    usage_record_create(
                        team=team, user=rng.choice(members), resource_type=category, provider=provider, model=model,
                        unit=unit, quantity=Decimal(rng.randint(low, high)), occurred_at=occurred_at,
                        idempotency_key=f"demo-{period.label}-{slug}-{category}-{n}",
                        feature_key=f"{slug}-assistant", agent_id=f"{slug}-agent",
                    )
                    count += 1
        self.stdout.write(f"AI usage: {count} records priced from the catalog")

    def _wallets(self) -> None:
        """Prepaid credit in use: a team wallet, per-user wallets, a postpaid team and a low balance.

        Through the wallet services only, with fixed idempotency keys. The charges are today's (they
        do not touch the demo month's invoices); a second run finds the wallets and adds nothing.
        """
        slugs = ["support", "search", "ml-platform", "checkout"]
        if Wallet.objects.filter(team__slug__in=slugs).exists():
            self.stdout.write("Wallets: already loaded")
            return
        teams = {t.slug: t for t in Team.objects.filter(slug__in=slugs)}
        members = {slug: list(get_user_model().objects.filter(team_memberships__team=teams[slug]).order_by("username"))
                   for slug in ("support", "search")}
        rng = random.Random(11)
        rejected = 0

        def charge(team, user, feature_key, n, items):
            nonlocal rejected
            try:
                usage_event_charge(team=team, user=user, feature_key=feature_key,
                                   external_reference_id=f"{feature_key}-{n:04d}",
                                   idempotency_key=f"demo-{team.slug}-{feature_key}-{n}", items=items)
            except InsufficientFunds:
                rejected += 1  # recorded as a rejected usage event, with its reason

        # Customer Support: one team wallet, a purchase, pilot credits (spent first), calls, a hold.
        support = teams["support"]
        billing_settings_update(team=support, billing_model="prepaid_team", warning_threshold_type="absolute",
                                warning_threshold_value=Decimal(25))
        wallet = wallet_open(team=support)
        wallet_top_up(wallet=wallet, amount=Decimal(200), idempotency_key="demo-support-top-up-1",
                      reference_id="PO-2026-118", description="Purchase order PO-2026-118")
        wallet_grant(wallet=wallet, amount=Decimal(5), idempotency_key="demo-support-grant-1",
                     expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC), description="Voice pilot credits")
        for n in range(120):
            charge(support, rng.choice(members["support"]), "voice-assistant", n, DEMO_CALL_ITEMS)
        wallet_hold(wallet=wallet, amount=Decimal(15), idempotency_key="demo-support-hold-1",
                    description="Nightly transcription batch")

        # Search: a wallet per member; dev's small top-up runs out and later calls are refused.
        search = teams["search"]
        billing_settings_update(team=search, billing_model="prepaid_user")
        for user, amount in zip(members["search"], (Decimal(25), Decimal(5))):
            user_wallet = wallet_open(team=search, user=user)
            wallet_top_up(wallet=user_wallet, amount=amount, idempotency_key=f"demo-search-top-up-{user.username}")
            for n in range(30):
                tokens = Decimal(rng.randint(2000, 20000))
                charge(search, user, f"query-rewrite-{user.username}", n,
                       [{"category": "llm", "provider": "openai", "model": "gpt-4", "unit": "token", "quantity": tokens}])

        # ML Platform: postpaid, spends on credit up to its limit and settles by invoice.
        ml = teams["ml-platform"]
        billing_settings_update(team=ml, billing_model="postpaid", credit_limit=Decimal(2000))
        wallet_open(team=ml)
        for n in range(40):
            seconds = Decimal(rng.randint(600, 7200))
            charge(ml, None, "fine-tuning", n,
                   [{"category": "gpu", "provider": "internal", "model": "a100", "unit": "second", "quantity": seconds}])

        # Checkout: below its warning threshold (50 % of the last top-up) — on the dashboard.
        checkout = teams["checkout"]
        billing_settings_update(team=checkout, billing_model="prepaid_team", warning_threshold_value=Decimal(50))
        wallet = wallet_open(team=checkout)
        wallet_top_up(wallet=wallet, amount=Decimal(5), idempotency_key="demo-checkout-top-up-1")
        for n in range(220):
            charge(checkout, None, "fraud-check", n, DEMO_CALL_ITEMS[1:2])  # 500 gpt-4 tokens: 0.015 USD

        self.stdout.write(
            f"Wallets: {Wallet.objects.count()} wallets, {LedgerEntry.objects.count()} ledger entries, "
            f"{UsageEvent.objects.filter(status=UsageEvent.Status.CHARGED).count()} charged usage events, "
            f"{rejected} refused for insufficient funds (kept as rejected events)"
        )

    def _rules(self) -> None:
        """Shared costs: the untagged pool by usage, the platform team's costs by fixed shares."""
        with transaction.atomic():
            AllocationRule.objects.get_or_create(
                name="Untagged cloud costs, by usage",
                defaults={
                    "rule_type": AllocationRule.RuleType.BY_USAGE, "source": AllocationRule.Source.UNALLOCATED,
                    "priority": 100,
                    "description": "Costs without a business_unit tag, shared in proportion to each team's own "
                                   "usage cost in the month (AWS split charge PROPORTIONAL).",
                },
            )
            platform = Team.objects.filter(slug=slugify("platform")).first()
            shares = [("checkout", "50"), ("search", "30"), ("ml-platform", "20")]
            receivers = {t.slug: t for t in Team.objects.filter(slug__in=[s for s, _ in shares])}
            if platform and len(receivers) == len(shares):
                rule, created = AllocationRule.objects.get_or_create(
                    name="Platform services, fixed shares",
                    defaults={
                        "rule_type": AllocationRule.RuleType.FIXED_SPLIT, "source": AllocationRule.Source.TEAM,
                        "source_team": platform, "priority": 50,
                        "description": "The platform team's costs, split 50/30/20 as agreed with the product teams.",
                    },
                )
                if created:
                    for slug, percentage in shares:
                        AllocationTarget.objects.create(rule=rule, team=receivers[slug], percentage=Decimal(percentage))
        self.stdout.write(f"Allocation rules: {AllocationRule.objects.filter(enabled=True).count()} enabled")

    def _subscriptions(self) -> None:
        """Plans and half a year of subscriptions, through the services, so the dashboard shows real MRR.

        A 14-day trial ending within the week, monthly subscriptions with overage this period, a
        yearly enterprise plan, a launch coupon that ran out a month ago, a cancellation 40 days
        ago and an upgrade in the middle of the current period. Each past step runs the renewal up to its instant first, as the periodic
        job would have. Teams without billing settings are made postpaid (billed by invoice).
        """
        if Plan.objects.filter(code="pro-monthly").exists():
            self.stdout.write("Subscriptions: already loaded")
            return
        inference = {"meter": "inference", "resource_type": "llm", "unit": "token", "charge_model": "standard",
                     "price": Decimal("2.00"), "price_per_units": Decimal(1000)}
        starter = plan_create(code="starter-monthly", name="Starter", tier="starter", currency="USD", fee=Decimal(19),
                              trial_days=14, charges=[{**inference, "included_units": Decimal(500)}])
        pro = plan_create(code="pro-monthly", name="Professional", tier="professional", currency="USD",
                          fee=Decimal(49), charges=[{**inference, "included_units": Decimal(5000)}])
        plan_create(code="pro-yearly", name="Professional (yearly)", tier="professional", currency="USD",
                    fee=Decimal(490), interval="year", charges=[{**inference, "included_units": Decimal(5000)}])
        enterprise = plan_create(
            code="enterprise-yearly", name="Enterprise", tier="enterprise", currency="USD", fee=Decimal(12000),
            interval="year", minimum_commitment=Decimal(12000),
            charges=[{**inference, "included_units": Decimal(1_000_000), "charge_model": "graduated",
                      "tiers": [{"up_to": Decimal(1_000_000), "unit_price": Decimal("0.0015")},
                                {"up_to": None, "unit_price": Decimal("0.001")}]}])
        teams = {t.slug: t for t in Team.objects.all()}
        for slug in ("recommendations", "payments", "data-warehouse", "mobile-app", "logistics", "identity"):
            if not hasattr(teams[slug], "billing_settings"):
                billing_settings_update(team=teams[slug], billing_model="postpaid", credit_limit=Decimal(50000))
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        day = dt.timedelta(days=1)

        def start(slug, plan, days_ago, **kwargs):
            return subscription_create(team=teams[slug], plan=plan, start=now - days_ago * day, **kwargs)

        start("recommendations", pro, 180)
        mobile = start("mobile-app", pro, 150)
        start("ml-platform", enterprise, 150)
        # A launch coupon (20 % off for 3 months): the chart shows its discounted MRR, then the expansion back.
        launch = coupon_create(code="launch-20", name="Launch", percent_off=Decimal(20), duration="repeating",
                               duration_in_months=3)
        start("payments", pro, 120, coupon=launch)
        warehouse = start("data-warehouse", starter, 90, trial=False)
        start("logistics", pro, 75)
        subscriptions_renew_due(at=now - 40 * day)
        subscription_cancel(subscription=Subscription.objects.get(pk=mobile.pk), at_period_end=False, at=now - 40 * day)
        subscriptions_renew_due(at=now - day)
        subscription_change_plan(subscription=Subscription.objects.get(pk=warehouse.pk), plan=pro, when="now",
                                 at=now - day)
        subscriptions_renew_due(at=now)
        start("identity", starter, 9)  # a 14-day trial: ends in 5 days
        # Usage of this period beyond the included units: overage on the next renewal invoice.
        for slug, tokens in (("recommendations", 8200), ("logistics", 6400), ("data-warehouse", 1200)):
            usage_record_create(team=teams[slug], resource_type="llm", provider="openai", model="gpt-4", unit="token",
                                quantity=Decimal(tokens), occurred_at=now - dt.timedelta(hours=2),
                                idempotency_key=f"demo-subscription-usage-{slug}", feature_key=f"{slug}-assistant")
        stats = subscription_stats()
        self.stdout.write(
            f"Subscriptions: {Plan.objects.count()} plans, {stats.total_customers} customers "
            f"({stats.active_subscriptions} active, {stats.trial_subscriptions} trialing), "
            f"MRR {stats.reporting.monthly_revenue} {stats.reporting.currency}"
        )
