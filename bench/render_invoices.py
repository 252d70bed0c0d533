"""Benchmark: ``render_invoices`` on two cores: invoices per second, and peak memory at 200 and 1,000 invoices.

Run on PostgreSQL only (the production database)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_render .venv/bin/python bench/render_invoices.py

The script (re)creates the database ``bench_render`` (see ``bench/_setup.py``: only a benchmark
database is ever dropped), records usage through ``usage_record_create`` for 1,000 teams in
September 2024 (three services each, plus an untagged pool shared by a ``by_usage`` rule) and for
the first 200 of them in August 2024, allocates both months and writes one draft per team and
month (``allocation_run_execute``, ``invoice_generate_for_run``): every invoice is one page.

Then it runs ``manage.py render_invoices`` in this process, as finance would: August (200
invoices) with ``--workers 1`` and ``--workers 2``, then September (1,000 invoices) with
``--workers 2``. For each run it prints invoices per second (wall clock, from the command's start
to its last PDF stored) and the peak memory of the batch: the proportional set size (PSS,
``/proc/<pid>/smaps_rollup``: shared pages counted once across the forked workers) of this process
and its worker processes summed, sampled every 0.1 s, and the peak resident size of the largest
worker. Memory is flat when the 1,000-invoice figures match the 200-invoice ones.

PDFs are written under a temporary ``MEDIA_ROOT`` that is removed at the end.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_render"
TEAMS = 1000
SMALL = 200
SERVICES = ["Amazon Elastic Compute Cloud", "Amazon Simple Storage Service", "Amazon Relational Database Service"]
POOL_RECORDS = 50


def _load() -> None:
    """1,000 teams with three services in September 2024, the first 200 also in August, and a shared pool."""
    from django.db import transaction

    from chargeback.models import AllocationRule
    from chargeback.services.usage import usage_record_create
    from teams.models import Team

    months = {"2024-09": (dt.datetime(2024, 9, 15, 12, tzinfo=dt.UTC), TEAMS),
              "2024-08": (dt.datetime(2024, 8, 15, 12, tzinfo=dt.UTC), SMALL)}
    with transaction.atomic():
        teams = [Team.objects.create(name=f"Team {t:04d}", slug=f"team-{t:04d}", cost_center=f"CC-{1000 + t}")
                 for t in range(1, TEAMS + 1)]
        for month, (at, count) in months.items():
            for t, team in enumerate(teams[:count], start=1):
                for s, _service in enumerate(SERVICES):
                    usage_record_create(
                        team=team, resource_type="compute", provider="AWS", unit="Hours", quantity=Decimal(1),
                        occurred_at=at, idempotency_key=f"bench-{month}-{t}-{s}",
                        cost=Decimal(t * 7919 + s * 104729) / Decimal(100000) + Decimal("0.000000000007"),
                    )
            for r in range(POOL_RECORDS):
                usage_record_create(
                    team=None, resource_type="compute", provider="AWS", unit="Hours", quantity=Decimal(1),
                    occurred_at=at, idempotency_key=f"bench-{month}-pool-{r}", cost=Decimal(r + 1) / Decimal(7),
                )
        AllocationRule.objects.create(
            name="Untagged cloud costs, by usage", rule_type=AllocationRule.RuleType.BY_USAGE,
            source=AllocationRule.Source.UNALLOCATED,
        )


def _children(pid: int) -> list[int]:
    pids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def _kib(pid: int, field: str, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Samples this process and its children every ``interval`` s: peak summed PSS, peak RSS of one child."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_pss_kib = 0
        self.peak_worker_rss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            children = _children(me)
            total = _kib(me, "Pss", "smaps_rollup") + sum(_kib(c, "Pss", "smaps_rollup") for c in children)
            self.peak_pss_kib = max(self.peak_pss_kib, total)
            for child in children:
                self.peak_worker_rss_kib = max(self.peak_worker_rss_kib, _kib(child, "VmRSS", "status"))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _batch(period: str, workers: int, expected: int) -> str:
    from django.core.management import call_command

    with MemorySampler() as memory:
        started = time.perf_counter()
        out = io.StringIO()
        call_command("render_invoices", "--period", period, "--workers", str(workers), stdout=out, stderr=io.StringIO())
        seconds = time.perf_counter() - started
    assert f"Rendered {expected:,} PDFs" in out.getvalue(), out.getvalue()
    worker = f"largest worker peak RSS {memory.peak_worker_rss_kib / 1024:.0f} MiB" if workers > 1 else "no workers"
    return (f"{expected:>5,} invoices, {workers} worker{'s' if workers > 1 else ''}: {seconds:6.1f} s, "
            f"{expected / seconds:5.1f} invoices/s; peak memory (PSS, all processes) "
            f"{memory.peak_pss_kib / 1024:.0f} MiB, {worker}; load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    global TEAMS, SMALL
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=TEAMS, help="September's invoices (default 1,000)")
    parser.add_argument("--small", type=int, default=SMALL, help="August's invoices (default 200)")
    args = parser.parse_args()
    TEAMS, SMALL = args.teams, min(args.small, args.teams)
    media = tempfile.TemporaryDirectory(prefix="bench-render-media-")
    os.environ["MEDIA_ROOT"] = media.name
    import logging

    bench_database(BENCH_DB)
    print(machine_facts())
    logging.getLogger("weasyprint").setLevel(logging.ERROR)

    from chargeback.periods import BillingPeriod
    from chargeback.services.allocation import allocation_run_execute
    from invoices.models import Invoice
    from invoices.services.generation import invoice_generate_for_run

    started = time.perf_counter()
    _load()
    for month in ("2024-08", "2024-09"):
        invoice_generate_for_run(run=allocation_run_execute(period=BillingPeriod.month(month)))
    counts = {m: Invoice.objects.filter(period_start=BillingPeriod.month(m).start).count() for m in ("2024-08", "2024-09")}
    print(f"loaded and invoiced in {time.perf_counter() - started:.1f} s: {counts['2024-08']} August drafts, "
          f"{counts['2024-09']} September drafts (one page each)")

    print(_batch("2024-08", 1, counts["2024-08"]))
    print(_batch("2024-08", 2, counts["2024-08"]))
    print(_batch("2024-09", 2, counts["2024-09"]))
    media.cleanup()


if __name__ == "__main__":
    main()
