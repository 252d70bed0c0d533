"""Benchmark: the ``pdf`` jobs' own cost per PDF against a direct render (target ≤ 5 %), measured
interleaved, and invoice PDFs rendered by 1, 2 and 4 worker processes.

Run on PostgreSQL only::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_jobs .venv/bin/python bench/jobs_render.py \
        [--invoices 40] [--rounds 3] [--workers 1,2,4]

The script (re)creates its database, writes ``N`` one-page draft invoices (the load of
``bench/render_invoices.py``), then:

* **overhead, interleaved**: one ``manage.py procrastinate worker --queues=pdf`` is started and
  warmed up (start-up is not counted); then, ``--rounds`` times over the ``N`` PDFs, block by block
  of ``--block`` invoices, A: the block rendered directly in this process (``invoice_pdf_render_one``
  in a loop, the code a job runs), B: the same block as ``pdf`` jobs of 8 invoices
  (``invoices.tasks.invoice_pdfs_defer``) run by that worker, timed from the deferral to the last
  job's end (the jobs' events). A and B alternate every block (ABBA), so a change of the shared
  machine's load within a round hits both alike (with whole rounds alternated, a two-minute phase
  of each at 1,000 invoices, the load moved between them and the ratio with it); the ratio is B's
  total over A's, with each round's beside it, and the same in CPU seconds (the worker's against
  this process's). Each block's jobs pay their own deferral and the worker's wake-up, which a
  long queue of jobs would not.
* **workers** (``--workers``, empty to skip): the same jobs on 1, 2 and 4 worker processes, each
  beside a direct render run just before it. The machine has 2 cores, shared: 4 workers cannot beat
  2, and the load average is printed beside each figure.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _setup import bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_jobs"


def _workers_ready(count: int, timeout: float = 300) -> None:
    from procrastinate.contrib.django.models import ProcrastinateWorker

    deadline = time.monotonic() + timeout
    while ProcrastinateWorker.objects.count() < count:
        if time.monotonic() > deadline:
            sys.exit(f"{count} workers did not start")
        time.sleep(0.2)


def _workers_start(count: int) -> list[subprocess.Popen]:
    from jobs.workers import worker_start

    processes = [worker_start(queues=["pdf"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(count)]
    _workers_ready(count)
    return processes


def _workers_stop(processes: list[subprocess.Popen]) -> None:
    from procrastinate.contrib.django.models import ProcrastinateWorker

    for process in processes:
        process.terminate()
    for process in processes:
        process.wait()
    # Stopped workers unregister themselves; wait for it so the next count starts from zero.
    deadline = time.monotonic() + 30
    while ProcrastinateWorker.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _by_jobs(ids: list[int]) -> float:
    """Defer the PDFs of ``ids`` as ``pdf`` jobs and wait for the running workers to finish them:
    seconds from the deferral to the last job's end, by the jobs' own events (the database's clock),
    so the wait loop's polling (every 0.25 s) neither adds to the figure nor wakes the machine often."""
    from django.db import connection
    from procrastinate.contrib.django.models import ProcrastinateJob

    from invoices.tasks import invoice_pdfs_defer

    job_ids = invoice_pdfs_defer(invoice_ids=ids)
    while ProcrastinateJob.objects.filter(pk__in=job_ids, status__in=["todo", "doing"]).exists():
        time.sleep(0.25)
    failed = ProcrastinateJob.objects.filter(pk__in=job_ids).exclude(status="succeeded").count()
    if failed:
        sys.exit(f"{failed} jobs failed")
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXTRACT(EPOCH FROM max(at) FILTER (WHERE type = 'succeeded') "
                       "- min(at) FILTER (WHERE type = 'deferred')) FROM procrastinate_events WHERE job_id = ANY(%s)",
                       [job_ids])
        return float(cursor.fetchone()[0])


def _direct(ids: list[int]) -> float:
    """Render the PDFs of ``ids`` in this process: seconds."""
    from invoices.services.pdf_storage import invoice_pdf_render_one

    started = time.perf_counter()
    for pk in ids:
        outcome = invoice_pdf_render_one(pk)
        assert outcome[1] == "rendered", outcome
    return time.perf_counter() - started


def _load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=40, help="one-page invoices to render (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds of the overhead (default 3)")
    parser.add_argument("--block", type=int, default=40,
                        help="invoices per A/B block within a round (default 40: 5 jobs of 8)")
    parser.add_argument("--workers", default="", help="worker counts to time, e.g. 1,2,4 (default: none)")
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

    load.TEAMS, load.SMALL = args.invoices, 0
    started = time.perf_counter()
    load._load()
    invoice_generate_for_run(run=allocation_run_execute(period=BillingPeriod.month("2024-09")))
    ids = list(Invoice.objects.filter(period_start=BillingPeriod.month("2024-09").start).order_by("pk")
               .values_list("pk", flat=True))
    print(f"{len(ids):,} one-page drafts written in {time.perf_counter() - started:.1f} s")

    # Overhead: A (direct) and B (jobs on one warm worker), alternated block by block.
    blocks = [ids[start:start + args.block] for start in range(0, len(ids), args.block)]
    workers = _workers_start(1)
    try:
        _direct(ids[:2])
        _by_jobs(ids[:2])  # both warm: fonts, templates, connections
        direct, jobs, direct_cpu, jobs_cpu = [], [], [], []
        for round_ in range(1, args.rounds + 1):
            load_a = _load()
            times = {"direct": 0.0, "jobs": 0.0, "direct_cpu": 0.0, "jobs_cpu": 0.0}
            for number, block in enumerate(blocks):
                # ABBA: the order flips every block, so neither side always runs first.
                for side in ("direct", "jobs") if number % 2 == 0 else ("jobs", "direct"):
                    if side == "direct":
                        cpu = time.process_time()
                        times["direct"] += _direct(block)
                        times["direct_cpu"] += time.process_time() - cpu
                    else:
                        cpu = _cpu_seconds(workers[0].pid)
                        times["jobs"] += _by_jobs(block)
                        times["jobs_cpu"] += _cpu_seconds(workers[0].pid) - cpu
            direct.append(times["direct"])
            jobs.append(times["jobs"])
            direct_cpu.append(times["direct_cpu"])
            jobs_cpu.append(times["jobs_cpu"])
            print(f"round {round_}: direct {direct[-1]:6.2f} s, {direct_cpu[-1]:6.2f} s CPU; jobs on 1 worker "
                  f"{jobs[-1]:6.2f} s, worker {jobs_cpu[-1]:6.2f} s CPU; ratio {jobs[-1] / direct[-1]:.3f}, "
                  f"CPU {jobs_cpu[-1] / direct_cpu[-1]:.3f} (load {load_a:.2f} → {_load():.2f})")
    finally:
        _workers_stop(workers)
    ratio = sum(jobs) / sum(direct)
    per_pdf = (sum(jobs) - sum(direct)) / (len(ids) * args.rounds) * 1000
    print(f"reference, direct render in one process: {sum(direct) / args.rounds:6.2f} s per round, "
          f"{len(ids) * args.rounds / sum(direct):5.1f} invoices/s")
    print(f"pdf jobs, 1 worker:                       {sum(jobs) / args.rounds:6.2f} s per round, "
          f"{len(ids) * args.rounds / sum(jobs):5.1f} invoices/s")
    print(f"ratio (jobs / direct, {args.rounds} interleaved rounds): {ratio:.3f}; median of the rounds "
          f"{statistics.median(j / d for j, d in zip(jobs, direct, strict=True)):.3f}; job overhead per PDF "
          f"{per_pdf:+.1f} ms ({(ratio - 1) * 100:+.1f} %; target ≤ 5 %)")
    print(f"CPU ratio (the worker's CPU / this process's, PostgreSQL's share in neither): "
          f"{sum(jobs_cpu) / sum(direct_cpu):.3f}, {(sum(jobs_cpu) - sum(direct_cpu)) / (len(ids) * args.rounds) * 1000:+.1f} "
          f"ms per PDF")

    for count in (int(w) for w in args.workers.split(",") if w.strip()):
        reference = _direct(ids)
        load_a = _load()
        workers = _workers_start(count)
        try:
            seconds = _by_jobs(ids)
        finally:
            _workers_stop(workers)
        print(f"pdf jobs, {count} worker{'s' if count > 1 else ' '}: {seconds:7.1f} s, {len(ids) / seconds:5.1f} "
              f"invoices/s (load {_load():.2f}); direct just before: {reference:7.1f} s (load {load_a:.2f}); "
              f"ratio {seconds / reference:.3f}")
    media.cleanup()


if __name__ == "__main__":
    main()
