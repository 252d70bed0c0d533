"""Benchmark: webhook fan-out, deliveries per second to a loopback receiver with 2 workers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_webhooks .venv/bin/python bench/webhooks_fanout.py \
        [--events 1000] [--endpoints 2] [--workers 2] [--concurrency 8]

Creates (drops first) its scratch database, then:

1. starts a receiver on 127.0.0.1 in its own process (a bare asyncio HTTP/1.1 server answering 200
   and counting requests, far faster than the senders), and ``--endpoints`` endpoints pointing at it;
2. the references: bare signed POSTs from one process (``standardwebhooks`` signature, keep-alive
   ``requests`` sessions), as many as the run will deliver, no database: from one thread, and
   from ``WEBHOOKS_SENDERS`` threads (a worker's sender pool);
3. starts ``--workers`` real ``manage.py procrastinate worker --queues=webhooks`` processes
   (``--concurrency`` jobs each), waits until they deliver a warm-up event, then records
   ``--events`` events through ``webhooks.services.event_record`` in one transaction (the outbox:
   events × endpoints deliveries and jobs) and times from its commit until every delivery is
   recorded as succeeded.

It prints the deliveries per second (each a signed POST, its attempt logged, its delivery row
updated; a job claims a batch of ``WEBHOOKS_BATCH_SIZE``) beside the references, the ratios, and the
load average (the machine is shared). Target: ≥ 500 deliveries/s with
2 workers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import ROOT, bench_database, machine_facts  # noqa: E402

BENCH_DB = "bench_webhooks"


def _receive(port_value, count_value, ready) -> None:
    """The loopback receiver: a bare asyncio HTTP/1.1 server (keep-alive, answers 200 "ok"), so that
    it is never what limits the figures (``http.server`` spends ~1 ms of CPU a request)."""
    import asyncio

    counted = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal counted
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                counted += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def publish_count() -> None:
        while True:
            await asyncio.sleep(0.02)
            count_value.value = counted

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
        port_value.value = server.sockets[0].getsockname()[1]
        ready.set()
        await publish_count()

    asyncio.run(serve())


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reference(url: str, count: int) -> tuple[float, float]:
    """Bare signed POSTs from one process and thread: (POSTs per second, CPU seconds per POST)."""
    import datetime as dt

    import requests

    from webhooks.signing import secret_generate, signature_headers

    secret, session = secret_generate(), requests.Session()
    body = json.dumps({"type": "wallet.topped_up", "timestamp": "2026-01-01T00:00:00Z",
                       "data": {"id": 1, "balance": "10.000000000000"}}, separators=(",", ":"))
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(count):
        headers = signature_headers(secret=secret, webhook_id=f"msg_ref{i}", body=body, at=dt.datetime.now(dt.UTC))
        headers["Content-Type"] = "application/json"
        response = session.post(url, data=body.encode(), headers=headers, timeout=10, allow_redirects=False)
        assert response.status_code == 200
    return count / (time.perf_counter() - started), (time.process_time() - cpu) / count


def reference_threaded(url: str, count: int, threads: int) -> float:
    """The same POSTs from one process over ``threads`` threads, a keep-alive session each (what a
    worker's sender pool does, without the database): POSTs per second."""
    import datetime as dt
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from webhooks.signing import secret_generate, signature_headers

    secret, local = secret_generate(), threading.local()
    body = json.dumps({"type": "wallet.topped_up", "timestamp": "2026-01-01T00:00:00Z",
                       "data": {"id": 1, "balance": "10.000000000000"}}, separators=(",", ":"))

    def post(i: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        headers = signature_headers(secret=secret, webhook_id=f"msg_thr{i}", body=body, at=dt.datetime.now(dt.UTC))
        headers["Content-Type"] = "application/json"
        assert session.post(url, data=body.encode(), headers=headers, timeout=10).status_code == 200

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, range(count)))
    return count / (time.perf_counter() - started)


def _succeeded() -> int:
    from webhooks.models import Delivery

    return Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count()


def _wait_for(total: int, timeout: float, workers: list[subprocess.Popen]) -> float:
    started = time.perf_counter()
    while _succeeded() < total:
        if time.perf_counter() - started > timeout:
            sys.exit(f"timed out: {_succeeded()} of {total} deliveries succeeded")
        if any(worker.poll() is not None for worker in workers):
            sys.exit("a worker exited; see its output above")
        time.sleep(0.05)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="jobs each worker runs at once")
    parser.add_argument("--keep", action="store_true", help="reuse the scratch database")
    args = parser.parse_args()

    os.environ["WEBHOOKS_ALLOW_HTTP"] = "true"
    os.environ["WEBHOOKS_ALLOW_PRIVATE"] = "true"
    url_db = bench_database(BENCH_DB, keep=args.keep)
    print(machine_facts())

    from django.db import transaction

    from teams.models import Team
    from webhooks.models import EVENT_TYPES, Delivery, Event
    from webhooks.services import endpoint_create, event_record

    port, count, ready = multiprocessing.Value("i", 0), multiprocessing.Value("l", 0), multiprocessing.Event()
    receiver = multiprocessing.Process(target=_receive, args=(port, count, ready), daemon=True)
    receiver.start()
    ready.wait(10)
    url = f"http://127.0.0.1:{port.value}/hooks"
    total = args.events * args.endpoints

    ref_rate, ref_cpu = reference(url, total)
    print(f"reference: {total:,} bare signed POSTs from one process: {ref_rate:,.0f}/s, "
          f"{ref_cpu * 1000:.2f} ms CPU each (the sender's); load {os.getloadavg()[0]:.2f}")
    from django.conf import settings

    threaded_rate = reference_threaded(url, total, settings.WEBHOOKS_SENDERS)
    print(f"reference: the same from one process over {settings.WEBHOOKS_SENDERS} threads: {threaded_rate:,.0f}/s")

    Event.objects.all().delete()
    team = Team.objects.create(name="Bench", slug="bench-webhooks", currency="USD")
    for i in range(args.endpoints):
        endpoint_create(url=f"{url}/{i}", event_types=list(EVENT_TYPES))

    env = {**os.environ, "DATABASE_URL": url_db, "WEBHOOKS_ALLOW_HTTP": "true", "WEBHOOKS_ALLOW_PRIVATE": "true",
           "LOG_LEVEL": "WARNING"}
    workers = [subprocess.Popen([sys.executable, "manage.py", "procrastinate", "worker", "--queues=webhooks",
                                 f"--concurrency={args.concurrency}"], cwd=ROOT, env=env,
                                start_new_session=True)
               for _ in range(args.workers)]
    try:
        # Warm-up: the workers are listening once they deliver one event.
        event_record("wallet.low_balance", {"id": 0}, team=team)
        _wait_for(args.endpoints, 120, workers)
        Delivery.objects.all().delete()
        Event.objects.all().delete()
        received_before = count.value
        cpu_before = sum(_cpu_seconds(worker.pid) for worker in workers)

        payload = {"id": 1, "team": team.pk, "currency": "USD", "balance": "10.000000000000", "status": "active"}
        recording = time.perf_counter()
        with transaction.atomic():
            for _ in range(args.events):
                event_record("wallet.topped_up", {"wallet": payload}, team=team)
        committed = time.perf_counter()
        done = _wait_for(total, 600, workers)
        worker_cpu = sum(_cpu_seconds(worker.pid) for worker in workers) - cpu_before
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        time.sleep(0.1)  # the receiver publishes its count every 20 ms
        receiver.terminate()

    rate = total / (done - committed)
    print(f"recorded {args.events:,} events × {args.endpoints} endpoints = {total:,} deliveries (outbox rows, one job) "
          f"in {committed - recording:.2f} s ({total / (committed - recording):,.0f} deliveries/s)")
    print(f"delivered by {args.workers} workers (concurrency {args.concurrency}): {total:,} in {done - committed:.2f} s "
          f"= {rate:,.0f} deliveries/s (target ≥ 500/s); receiver counted {count.value - received_before:,}; "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"ratio to the bare signed POSTs of one process: {rate / ref_rate:.2f} (one thread), "
          f"{rate / threaded_rate:.2f} ({settings.WEBHOOKS_SENDERS} threads)")
    print(f"worker CPU: {worker_cpu * 1000 / total:.2f} ms per delivery (reference sender: {ref_cpu * 1000:.2f} ms "
          f"per POST, ratio {worker_cpu / total / ref_cpu:.1f}); the workers alone would deliver "
          f"{total / worker_cpu:,.0f}/s per core they get (PostgreSQL's share not counted)")


if __name__ == "__main__":
    main()
