"""Benchmark: renewing N subscriptions with usage; renewals/s, peak memory at two sizes, a second run writes nothing.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_subscriptions \\
        .venv/bin/python bench/subscriptions_renewal.py [--sizes 10000 100000] [--batch-size 1000]

For each size N: a fresh scratch database gets N teams (postpaid), N monthly subscriptions from
1 January 2024 on three plans (each with an ``inference`` meter, 500 units included, standard /
graduated / package charges) and two usage records per subscription in January (one beyond the
included units for half of them). Then, each step in its own process so that its peak RSS
(``ru_maxrss``) is its own:

1. ``renew``: ``subscriptions.services.renewal.subscriptions_renew_due(at=2024-02-01)``, the
   service of ``manage.py renew_subscriptions``: N invoices (fee of February in advance, overage of
   January in arrears), their lines and N billed periods written, numbered and issued; PDFs are not
   rendered (``render_invoices`` does that, bench/render_invoices.py).
2. ``again``: the same call a second time; it must renew nothing and write no row.
3. ``reference``: the rows alone, measured in the same run: ``bulk_create`` of N invoices and their
   lines (the same count) in batches of the same size, rolled back. The ratio renewal / reference
   says what the renewal costs beyond writing its rows.

Target: ≥ 500 renewals/s on 2 cores (100,000 in under 200 s), peak memory flat from 10,000 to 100,000.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_subscriptions"
UTC = dt.UTC
JAN, FEB, MAR = (dt.datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 3))
D = Decimal


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds of this process (user + system): steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def setup(n: int, batch: int) -> dict:
    """N teams, subscriptions, billed January periods and 2N usage records (bulk rows: the fixture, not the subject)."""
    from chargeback.models import UsageRecord
    from subscriptions.models import Subscription, SubscriptionPeriod
    from subscriptions.services.plans import plan_create
    from teams.models import BillingSettings, Team

    charge = {"meter": "inference", "resource_type": "llm", "unit": "token", "included_units": D(500)}
    plans = [
        plan_create(code="starter", name="Starter", tier="starter", currency="USD", fee=D("19.00"),
                    charges=[{**charge, "price": D("2.00"), "price_per_units": D(1000)}]),
        plan_create(code="pro", name="Professional", tier="professional", currency="USD", fee=D("49.00"),
                    charges=[{**charge, "charge_model": "graduated", "tiers": [
                        {"up_to": D(1000), "unit_price": D("0.002")}, {"up_to": None, "unit_price": D("0.001")}]}]),
        plan_create(code="team", name="Team", tier="enterprise", currency="USD", fee=D("199.00"),
                    charges=[{**charge, "charge_model": "package", "price": D("1.00"), "package_size": D(100)}]),
    ]
    started = time.perf_counter()
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        teams = Team.objects.bulk_create(
            [Team(name=f"Team {i}", slug=f"team-{i}", currency="USD") for i in range(lo, hi)])
        BillingSettings.objects.bulk_create([BillingSettings(team=t, billing_model="postpaid") for t in teams])
        subs = Subscription.objects.bulk_create([
            Subscription(team=t, plan=plans[i % 3], status="active", started_at=JAN, billing_anchor=JAN,
                         current_period_start=JAN, current_period_end=FEB)
            for i, t in zip(range(lo, hi), teams)])
        SubscriptionPeriod.objects.bulk_create([
            SubscriptionPeriod(subscription=s, plan_id=s.plan_id, period_start=JAN, period_end=FEB,
                               fee=plans[i % 3].fee, currency="USD") for i, s in zip(range(lo, hi), subs)])
        usage = []
        for i, t in zip(range(lo, hi), teams):
            for k, quantity in enumerate((D(400), D(185 + (i % 2) * 1000))):
                when = JAN + dt.timedelta(days=5 + 10 * k, seconds=i % 86400)
                usage.append(UsageRecord(team=t, resource_type="llm", provider="openai", unit="token",
                                         quantity=quantity, cost=D(0), currency="USD", occurred_at=when,
                                         billing_period_start=when.date().replace(day=1), source="api",
                                         idempotency_key=f"u-{i}-{k}"))
        UsageRecord.objects.bulk_create(usage)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"setup_s": time.perf_counter() - started}


def counts() -> dict:
    from invoices.models import Invoice, InvoiceLine
    from subscriptions.models import SubscriptionPeriod

    return {"invoices": Invoice.objects.count(), "lines": InvoiceLine.objects.count(),
            "periods": SubscriptionPeriod.objects.count()}


def renew(batch: int) -> dict:
    from subscriptions.services.renewal import subscriptions_renew_due

    before = counts()
    started, cpu = time.perf_counter(), cpu_s()
    result = subscriptions_renew_due(at=FEB, batch_size=batch)
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
    after = counts()
    return {"seconds": seconds, "cpu_s": cpu, "renewed": result.renewed, "invoices": result.invoices, "lines": result.lines,
            "written": {k: after[k] - before[k] for k in after}, "peak_mib": peak_mib()}


def reference(n: int, batch: int, lines_per_invoice: float) -> dict:
    """The same number of invoice and line rows written by ``bulk_create`` alone, then rolled back."""
    from django.db import transaction

    from invoices.models import Invoice, InvoiceLine
    from teams.models import Team

    team_ids = list(Team.objects.order_by("pk").values_list("pk", flat=True)[:n])
    per = max(1, round(lines_per_invoice))
    started, cpu = time.perf_counter(), cpu_s()

    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            for lo in range(0, n, batch):
                invoices = Invoice.objects.bulk_create([
                    Invoice(team_id=t, kind="subscription", status="draft", period_start=FEB.date(),
                            period_end=MAR.date(), currency="USD", subtotal=D("49.17"), total=D("49.17"),
                            team_name=f"Team {t}") for t in team_ids[lo:lo + batch]])
                InvoiceLine.objects.bulk_create([
                    InvoiceLine(invoice=inv, position=p + 1, description="Reference line", amount_precise=D("49"),
                                amount=D("49"), details={"kind": "subscription", "section": "fee"})
                    for inv in invoices for p in range(per)])
            seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
            raise Rollback
    except Rollback:
        pass
    return {"seconds": seconds, "cpu_s": cpu}


def step(name: str, n: int, batch: int, extra: float = 0.0) -> dict:
    """Run one step in its own process; its JSON answer."""
    out = subprocess.run([sys.executable, __file__, "--step", name, "--n", str(n), "--batch-size", str(batch),
                          "--extra", str(extra)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--step")
    parser.add_argument("--n", type=int)
    parser.add_argument("--extra", type=float, default=0.0)
    args = parser.parse_args()
    if args.step:
        fresh = args.step == "setup"
        bench_database(BENCH_DB, keep=not fresh)
        if args.step == "setup":
            answer = setup(args.n, args.batch_size)
        elif args.step in ("renew", "again"):
            answer = renew(args.batch_size)
        else:
            answer = reference(args.n, args.batch_size, args.extra)
        print(json.dumps(answer))
        return

    for index, n in enumerate(args.sizes):
        s = step("setup", n, args.batch_size)
        if index == 0:
            bench_database(BENCH_DB, keep=True)
            print(machine_facts())
            print(f"batch size {args.batch_size}")
        first = step("renew", n, args.batch_size)
        second = step("again", n, args.batch_size)
        ref = step("reference", n, args.batch_size, first["lines"] / max(first["invoices"], 1))
        rate = first["renewed"] / first["seconds"]
        ref_rate = n / ref["seconds"]
        print(f"N={n:,} (setup {s['setup_s']:.0f} s)")
        print(f"  renewal:   {first['renewed']:,} renewed in {first['seconds']:.1f} s = {rate:,.0f} renewals/s "
              f"(Python CPU {first['cpu_s']:.1f} s); written {first['written']}; peak RSS {first['peak_mib']:.0f} MiB")
        print(f"  reference: bulk_create of {n:,} invoices + their lines alone: {ref['seconds']:.1f} s = "
              f"{ref_rate:,.0f} invoices/s (Python CPU {ref['cpu_s']:.1f} s); "
              f"renewal / reference time = {first['seconds'] / ref['seconds']:.2f}")
        print(f"  second run: renewed {second['renewed']}, written {second['written']} (must be all zero); "
              f"peak RSS {second['peak_mib']:.0f} MiB")
        print(f"  target ≥ 500 renewals/s: {'met' if rate >= 500 else 'MISSED'}")


if __name__ == "__main__":
    main()
