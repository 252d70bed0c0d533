"""Benchmark: ``GET /api/v1/admin/billing/stats/`` at 100,000 subscriptions, p99 ≤ 100 ms.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_subscriptions_stats \\
        .venv/bin/python bench/subscriptions_stats.py [--subscriptions 100000] [--requests 1000] [--keep]

Recreates the database (PostgreSQL only; ``--keep`` reuses what an earlier run loaded), creates 8
plans through ``subscriptions.services.plans.plan_create`` (4 tiers, monthly and yearly, USD and
EUR) and inserts ``--subscriptions`` subscriptions, one per team, with SQL ``generate_series``
(statuses: 70 % active, 10 % trialing, 5 % past due, 5 % unpaid, 10 % canceled; a billed period
each; a coupon's discount on one in ten), then ``ANALYZE``. It times, in the same run and process, through Django's test client as a
finance user (token authentication, the whole DRF stack):

* the stats endpoint (3 queries: counts by status and plan, the plans, the discounts of the
  current periods); ``--explain`` prints ``EXPLAIN (ANALYZE, BUFFERS)`` of each first;
* the reference: ``GET /api/v1/billing/subscription/?team=<id>`` of a finance user, a minimal
  authenticated endpoint (a team and a subscription read by key), and a plain
  ``SELECT COUNT(*)`` of the subscriptions table through the same connection;

and prints p50, p99 and the ratio of the stats endpoint to each reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, machine_facts  # noqa: E402

PLANS = [
    # code, tier, currency, fee, interval
    ("starter-m", "starter", "USD", "19", "month"),
    ("starter-y", "starter", "USD", "190", "year"),
    ("pro-m", "professional", "USD", "49", "month"),
    ("pro-y", "professional", "USD", "490", "year"),
    ("ent-y", "enterprise", "USD", "12000", "year"),
    ("trial-m", "trial", "USD", "0", "month"),
    ("pro-eur-m", "professional", "EUR", "45", "month"),
    ("ent-eur-y", "enterprise", "EUR", "11000", "year"),
]


def _time(fn, n: int) -> tuple[float, float]:
    for _ in range(min(50, n)):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.median(samples) * 1000, samples[min(n - 1, int(0.99 * n))] * 1000


def load(count: int) -> None:
    from django.db import connection

    from subscriptions.services.plans import plan_create

    plan_ids = []
    for code, tier, currency, fee, interval in PLANS:
        plan = plan_create(code=code, name=code.replace("-", " ").title(), tier=tier, currency=currency,
                           fee=Decimal(fee), interval=interval,
                           charges=[{"meter": "inference", "resource_type": "llm", "included_units": Decimal(500),
                                     "price": Decimal("2.00"), "price_per_units": Decimal(1000)}])
        plan_ids.append(plan.pk)
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO teams_team (name, slug, cost_center, currency, is_active, created_at)
            SELECT 'Bench team ' || g, 'bench-team-' || g, '', 'USD', true, now() FROM generate_series(1, %s) g
            """, [count])
        # Status by g % 20: 0-13 active, 14-15 trialing, 16 past_due, 17 unpaid, 18-19 canceled.
        cursor.execute(
            """
            WITH t AS (SELECT id, row_number() OVER (ORDER BY id) AS g FROM teams_team WHERE slug LIKE 'bench-team-%%')
            INSERT INTO subscriptions_subscription (team_id, user_id, plan_id, pending_plan_id, status, started_at,
                billing_anchor, time_zone, current_period_start, current_period_end, trial_end, cancel_at_period_end,
                canceled_at, ended_at, created_at, updated_at)
            SELECT t.id, NULL, (%s::bigint[])[1 + (t.g * 7) %% %s],
                NULL, s.status, now() - interval '20 days', now() - interval '20 days', 'UTC',
                now() - interval '20 days', now() + interval '10 days',
                CASE WHEN s.status = 'trialing' THEN now() + interval '10 days' END, false,
                CASE WHEN s.status = 'canceled' THEN now() - interval '1 day' END,
                CASE WHEN s.status = 'canceled' THEN now() - interval '1 day' END, now(), now()
            FROM t CROSS JOIN LATERAL (SELECT CASE
                WHEN t.g %% 20 < 14 THEN 'active' WHEN t.g %% 20 < 16 THEN 'trialing' WHEN t.g %% 20 = 16 THEN 'past_due'
                WHEN t.g %% 20 = 17 THEN 'unpaid' ELSE 'canceled' END AS status) s
            """, [plan_ids, len(plan_ids)])
        cursor.execute(
            """
            INSERT INTO subscriptions_subscriptionperiod (subscription_id, plan_id, period_start, period_end, is_trial,
                fee, currency, usage, created_at)
            SELECT s.id, s.plan_id, s.current_period_start, s.current_period_end, s.status = 'trialing', p.fee,
                p.currency, '{}'::jsonb, now()
            FROM subscriptions_subscription s JOIN subscriptions_plan p ON p.id = s.plan_id
            """)
        # Discounts on one subscription in ten: three coupons (20 % forever, 10.00 off for 3 months, 50 % once).
        cursor.execute(
            """
            INSERT INTO subscriptions_coupon (code, name, percent_off, amount_off, currency, duration,
                duration_in_months, status, created_at, updated_at)
            VALUES ('bench-20', 'Bench 20 percent', 20, NULL, '', 'forever', NULL, 'active', now(), now()),
                   ('bench-10usd', 'Bench 10 USD', NULL, 10, 'USD', 'repeating', 3, 'active', now(), now()),
                   ('bench-half', 'Bench half', 50, NULL, '', 'once', NULL, 'active', now(), now())
            """)
        cursor.execute(
            """
            INSERT INTO subscriptions_subscriptiondiscount (subscription_id, coupon_id, start, "end", created_at)
            SELECT s.id, c.id, s.current_period_start,
                   CASE c.duration WHEN 'forever' THEN NULL WHEN 'repeating' THEN s.current_period_start + interval '3 months'
                                   ELSE s.current_period_end END, now()
            FROM subscriptions_subscription s
            JOIN subscriptions_coupon c ON c.code = (ARRAY['bench-20', 'bench-10usd', 'bench-half'])[1 + (s.id / 10) % 3]
            WHERE s.id % 10 = 3
            """)
        cursor.execute(
            """
            UPDATE subscriptions_subscription s SET discount_coupon_id = d.coupon_id
            FROM subscriptions_subscriptiondiscount d WHERE d.subscription_id = s.id
            """)
        cursor.execute("ANALYZE teams_team; ANALYZE subscriptions_subscription; ANALYZE subscriptions_subscriptionperiod;"
                       " ANALYZE subscriptions_subscriptiondiscount")
    print(f"inserted {count:,} teams, subscriptions and billed periods with generate_series in "
          f"{time.perf_counter() - t0:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="Reuse the data of an earlier run.")
    parser.add_argument("--explain", action="store_true", help="Print EXPLAIN ANALYZE of the stats' queries.")
    args = parser.parse_args()
    name = "bench_subscriptions_stats"
    bench_database(name, keep=args.keep)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from subscriptions.models import Subscription
    from teams.models import Team

    settings.ALLOWED_HOSTS = ["*"]
    settings.API_THROTTLE_RATES = {"principal": "10000000/min", "money": "10000000/min"}
    print(f"admin/billing/stats benchmark on database {name}: {machine_facts()}")
    if not args.keep:
        load(args.subscriptions)
    user, _ = get_user_model().objects.get_or_create(username="bench-finance")
    user.groups.add(Group.objects.get_or_create(name="finance")[0])
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    team = Team.objects.filter(subscriptions__status="active").order_by("pk").first()
    total = Subscription.objects.count()

    response = client.get("/api/v1/admin/billing/stats/")
    assert response.status_code == 200, response.content
    body = response.json()
    print(f"{total:,} subscriptions: {body['total_customers']:,} customers, {body['active_subscriptions']:,} active, "
          f"{body['trial_subscriptions']:,} trialing; MRR {body['monthly_revenue']} {body['currency']}"
          + "".join(f", {c['monthly_revenue']} {c['currency']}" for c in body["other_currencies"]))

    if args.explain:
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            client.get("/api/v1/admin/billing/stats/")
        with connection.cursor() as cursor:
            for q in queries.captured_queries:
                if not q["sql"].lstrip().upper().startswith("SELECT") or "authtoken" in q["sql"] or "auth_" in q["sql"]:
                    continue
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + q["sql"])
                print("\n".join(row[0] for row in cursor.fetchall()) + "\n")

    def stats():
        assert client.get("/api/v1/admin/billing/stats/").status_code == 200

    def reference():
        assert client.get(f"/api/v1/billing/subscription/?team={team.pk}").status_code == 200

    def count():
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM subscriptions_subscription")
            cursor.fetchone()

    figures = {}
    for label, fn in (("GET admin/billing/stats/", stats), ("reference: GET billing/subscription/", reference),
                      ("reference: SELECT COUNT(*) of subscriptions", count)):
        figures[label] = _time(fn, args.requests)
        p50, p99 = figures[label]
        print(f"{label:<46} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({args.requests} requests)")
    stats_p50, stats_p99 = figures["GET admin/billing/stats/"]
    for label, (p50, p99) in list(figures.items())[1:]:
        print(f"stats / {label[11:]}: p50 ×{stats_p50 / p50:.2f}, p99 ×{stats_p99 / p99:.2f}")
    print(f"target p99 ≤ 100 ms: {'met' if stats_p99 <= 100 else 'NOT met'} ({stats_p99:.1f} ms)")


if __name__ == "__main__":
    main()
