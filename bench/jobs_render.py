"""Benchmark: invoice PDFs rendered by ``pdf`` jobs on 1, 2 and 4 worker processes, and the jobs'
overhead per PDF against a direct render in one process (target ≤ 5 %).

Run on PostgreSQL only::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_jobs .venv/bin/python bench/jobs_render.py [--invoices N]

The script (re)creates the database ``bench_jobs``, writes ``N`` one-page draft invoices (default
1,000; the load of ``bench/render_invoices.py``), then renders all of them four times:

* **reference**: directly in this process (``invoice_pdf_render_one`` in a loop, the code a job runs);
* **1, 2 and 4 workers**: ``invoices.tasks.invoice_pdfs_defer`` queues ``pdf`` jobs of 8 invoices,
  run by that many ``manage.py procrastinate worker --queues=pdf`` processes started beforehand
  (so start-up is not counted); timed from the deferral to the last job's end.

It prints each time, invoices/s, and the ratio to the reference; the job overhead per PDF is the
1-worker time against the reference, both on one core. The machine has 2 cores, shared: 4 workers
cannot beat 2, and the load average is printed beside each figure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_jobs"


def _workers_ready(count: int, timeout: float = 60) -> None:
    from procrastinate.contrib.django.models import ProcrastinateWorker

    deadline = time.monotonic() + timeout
    while ProcrastinateWorker.objects.count() < count:
        if time.monotonic() > deadline:
            sys.exit(f"{count} workers did not start")
        time.sleep(0.2)


def _by_jobs(ids: list[int], workers: int) -> float:
    import subprocess

    from procrastinate.contrib.django.models import ProcrastinateJob, ProcrastinateWorker

    from invoices.tasks import invoice_pdfs_defer
    from jobs.workers import worker_start

    processes = [worker_start(queues=["pdf"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(workers)]
    try:
        _workers_ready(workers)
        started = time.perf_counter()
        job_ids = invoice_pdfs_defer(invoice_ids=ids)
        while ProcrastinateJob.objects.filter(pk__in=job_ids, status__in=["todo", "doing"]).exists():
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        failed = ProcrastinateJob.objects.filter(pk__in=job_ids).exclude(status="succeeded").count()
        if failed:
            sys.exit(f"{failed} jobs failed")
        return seconds
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        # Stopped workers unregister themselves; wait for it so the next count starts from zero.
        deadline = time.monotonic() + 30
        while ProcrastinateWorker.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=1000, help="one-page invoices to render (default 1,000)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to try (default 1,2,4)")
    args = parser.parse_args()
    media = tempfile.TemporaryDirectory(prefix="bench-jobs-media-")
    os.environ["MEDIA_ROOT"] = media.name
    bench_database(BENCH_DB)
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    print(machine_facts())

    import render_invoices as load  # bench/render_invoices.py: its data set

    from chargeback.periods import BillingPeriod
    from chargeback.services.allocation import allocation_run_execute
    from invoices.models import Invoice
    from invoices.services.generation import invoice_generate_for_run
    from invoices.services.pdf_storage import invoice_pdf_render_one

    load.TEAMS, load.SMALL = args.invoices, 0
    started = time.perf_counter()
    load._load()
    invoice_generate_for_run(run=allocation_run_execute(period=BillingPeriod.month("2024-09")))
    ids = list(Invoice.objects.filter(period_start=BillingPeriod.month("2024-09").start).order_by("pk")
               .values_list("pk", flat=True))
    print(f"{len(ids):,} one-page drafts written in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    for pk in ids:
        outcome = invoice_pdf_render_one(pk)
        assert outcome[1] == "rendered", outcome
    reference = time.perf_counter() - started
    print(f"reference, direct render in one process: {reference:7.1f} s, {len(ids) / reference:5.1f} invoices/s, "
          f"{reference / len(ids) * 1000:.0f} ms a PDF; load {os.getloadavg()[0]:.2f}")

    for workers in (int(w) for w in args.workers.split(",")):
        seconds = _by_jobs(ids, workers)
        line = (f"pdf jobs, {workers} worker{'s' if workers > 1 else ' '}:              {seconds:7.1f} s, "
                f"{len(ids) / seconds:5.1f} invoices/s, ratio to reference {seconds / reference:.3f}")
        if workers == 1:
            line += f" (job overhead per PDF {(seconds - reference) / len(ids) * 1000:+.1f} ms, " \
                    f"{(seconds / reference - 1) * 100:+.1f} %; target ≤ 5 %)"
        print(line + f"; load {os.getloadavg()[0]:.2f}")
    media.cleanup()


if __name__ == "__main__":
    main()
