"""Benchmark: the month-end billing run for 200 teams with PDFs (target: median ≤ 0.25 s per one-page PDF).

Run on PostgreSQL only (the production database)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_billing .venv/bin/python bench/billing_run_pdf.py

The script (re)creates the database ``bench_billing`` on the server of ``DATABASE_URL`` (dropping it
first; whatever database name the URL carries, only ``bench_billing`` is touched), migrates it, and
records September 2024 usage through ``usage_record_create``: 200 teams, each with three services
of direct cloud cost, plus an untagged pool shared by a ``by_usage`` rule. It then runs what
``billing_run`` runs, timing each step: ``allocation_run_execute``, ``invoice_generate_for_run``,
and ``invoice_pdf_store`` for every draft (render + SHA-256 + file write + row update). It prints
the median and p95 seconds per one-page invoice PDF (wall clock, and the process's CPU time, which
is what the wall time comes to on an otherwise idle core), the PDF pages, and the totals. Then it adds a
team with 500 services and times the PDF of its 500-line invoice (median of 3 renders).

PDFs are written under a temporary ``MEDIA_ROOT`` that is removed at the end.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_billing"
TEAMS = 200
SERVICES = ["Amazon Elastic Compute Cloud", "Amazon Simple Storage Service", "Amazon Relational Database Service"]
RECORDS_PER_SERVICE = 2
POOL_RECORDS = 100
BIG_LINES = 500


def _load() -> None:
    """200 teams with three services each, and an untagged pool for a by_usage rule, via the services."""
    from django.db import transaction

    from chargeback.models import AllocationRule
    from chargeback.services.usage import usage_record_create
    from teams.models import Team

    at = dt.datetime(2024, 9, 15, 12, tzinfo=dt.UTC)
    with transaction.atomic():
        for t in range(1, TEAMS + 1):
            team = Team.objects.create(name=f"Team {t:03d}", slug=f"team-{t:03d}", cost_center=f"CC-{1000 + t}")
            for s, service in enumerate(SERVICES):
                for r in range(RECORDS_PER_SERVICE):
                    cost = Decimal(t * 7919 + s * 104729 + r * 15485863 % 1000003) / Decimal(100000)
                    usage_record_create(
                        team=team, resource_type="compute", provider="AWS", unit="Hours", quantity=Decimal(1),
                        occurred_at=at, idempotency_key=f"bench-{t}-{s}-{r}", cost=cost + Decimal("0.000000000007"),
                    )
        for r in range(POOL_RECORDS):
            usage_record_create(
                team=None, resource_type="compute", provider="AWS", unit="Hours", quantity=Decimal(1),
                occurred_at=at, idempotency_key=f"bench-pool-{r}", cost=Decimal(r + 1) / Decimal(7),
            )
        AllocationRule.objects.create(
            name="Untagged cloud costs, by usage", rule_type=AllocationRule.RuleType.BY_USAGE,
            source=AllocationRule.Source.UNALLOCATED,
        )


def _big_team() -> None:
    from chargeback.services.usage import usage_record_create
    from teams.models import Team

    at = dt.datetime(2024, 9, 20, 12, tzinfo=dt.UTC)
    team = Team.objects.create(name="Data Platform (500 services)", slug="big", cost_center="CC-9999")
    for n in range(BIG_LINES):
        usage_record_create(
            team=team, resource_type=f"service-{n:03d}", provider="AWS", unit="Hours", quantity=Decimal(1),
            occurred_at=at, idempotency_key=f"bench-big-{n}", cost=Decimal(n + 1) + Decimal("0.123456789012"),
        )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    media = tempfile.TemporaryDirectory(prefix="bench-billing-media-")
    os.environ["MEDIA_ROOT"] = media.name
    import logging

    bench_database(BENCH_DB)
    print(machine_facts())
    # WeasyPrint warns once per font when HarfBuzz-Subset is missing; the figure below says so anyway.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    from pypdf import PdfReader

    from billing_site.money import format_metered
    from chargeback.periods import BillingPeriod
    from chargeback.services.allocation import allocation_run_execute
    from invoices.pdf import invoice_render_pdf
    from invoices.selectors import invoice_get_with_lines
    from invoices.services.generation import invoice_generate_for_run
    from invoices.services.pdf_storage import invoice_pdf_store
    from teams.models import Team

    try:
        from weasyprint.text.ffi import harfbuzz_subset
    except ImportError:  # pragma: no cover - older WeasyPrint
        harfbuzz_subset = None

    started = time.perf_counter()
    _load()
    print(f"loaded {TEAMS} teams, {TEAMS * len(SERVICES) * RECORDS_PER_SERVICE + POOL_RECORDS} usage records "
          f"in {time.perf_counter() - started:.1f} s")
    print(f"font subsetting: {'HarfBuzz' if harfbuzz_subset else 'fontTools (install libharfbuzz-subset0)'}")

    period = BillingPeriod.month("2024-09")
    wall = time.perf_counter()
    t0 = time.perf_counter()
    run = allocation_run_execute(period=period)
    t_alloc = time.perf_counter() - t0
    t0 = time.perf_counter()
    invoices = invoice_generate_for_run(run=run)
    t_generate = time.perf_counter() - t0
    seconds, cpu, pages = [], [], []
    for invoice in invoices:
        t0, c0 = time.perf_counter(), time.process_time()
        stored = invoice_pdf_store(invoice=invoice)
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        with stored.pdf.open("rb") as handle:
            pages.append(len(PdfReader(handle).pages))
    t_wall = time.perf_counter() - wall
    one_page = [s for s, p in zip(seconds, pages) if p == 1]
    one_page_cpu = [c for c, p in zip(cpu, pages) if p == 1]

    print(f"allocation_run_execute: {t_alloc:.2f} s ({run.record_count} records; "
          f"allocated {format_metered(run.allocated_cost, run.currency)} of {format_metered(run.total_cost, run.currency)}, "
          f"unallocated {format_metered(run.unallocated_cost, run.currency)})")
    print(f"invoice_generate_for_run: {t_generate:.2f} s ({len(invoices)} draft invoices)")
    print(f"PDFs: {len(seconds)} rendered and stored in {sum(seconds):.1f} s; pages per PDF: "
          f"{min(pages)}–{max(pages)}; one-page PDFs: {len(one_page)}")
    print(f"seconds per one-page invoice PDF: median {statistics.median(one_page):.3f}, "
          f"p95 {_percentile(one_page, 0.95):.3f}, min {min(one_page):.3f}, max {max(one_page):.3f} "
          f"(target: median ≤ 0.25)")
    print(f"CPU seconds of this process per one-page invoice PDF (what the wall time is on an idle core): "
          f"median {statistics.median(one_page_cpu):.3f}, p95 {_percentile(one_page_cpu, 0.95):.3f}; "
          f"load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"billing run total (allocate + generate + {len(seconds)} PDFs): {t_wall:.1f} s")

    _big_team()
    big = Team.objects.get(slug="big")
    run = allocation_run_execute(period=period, team=big)
    (invoice,) = invoice_generate_for_run(run=run, team=big)
    invoice = invoice_get_with_lines(pk=invoice.pk)
    renders, renders_cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        pdf = invoice_render_pdf(invoice)
        renders.append(time.perf_counter() - t0)
        renders_cpu.append(time.process_time() - c0)
    print(f"500-line invoice PDF ({invoice.lines.count()} lines, {len(PdfReader(io.BytesIO(pdf)).pages)} pages, "
          f"{len(pdf) // 1024} KiB): median {statistics.median(renders):.2f} s of 3 renders "
          f"(min {min(renders):.2f}, max {max(renders):.2f}); CPU median {statistics.median(renders_cpu):.2f} s; "
          f"load average {os.getloadavg()[0]:.2f} (target: ≤ 5 s)")
    media.cleanup()


if __name__ == "__main__":
    main()
