"""No orphan PDFs: a billing run killed (SIGKILL) while rendering, then rerun, leaves no unreferenced file.

Real processes: ``manage.py billing_run`` on the test database. To kill it at the worst moment, a
file written and its row not yet committed, the test holds ``LOCK TABLE invoices_invoice IN SHARE
MODE``: the run's PDF transaction still locks its row and writes its file, then waits to save the
row; the test sees the unreferenced file and kills the run there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from invoices.models import CreditNote, Invoice
from tests.conftest import database_url
from tests.factories import TeamFactory, UsageRecordFactory

TWO_HOURS = 2 * 3600


def referenced() -> set[str]:
    return {*Invoice.objects.exclude(pdf="").values_list("pdf", flat=True),
            *CreditNote.objects.exclude(pdf="").values_list("pdf", flat=True)}


def on_disk(media: Path) -> set[str]:
    return {p.relative_to(media).as_posix() for p in media.rglob("*.pdf")}


def command_env(media: Path) -> dict[str, str]:
    db = connection.settings_dict
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "billing_site.settings", "MEDIA_ROOT": str(media),
            "DATABASE_URL": database_url(db)}


def billing_run(media: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", "billing_run", "--period", "2024-09"], cwd=settings.BASE_DIR,
                            env=command_env(media), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"billing_run ended before {what}: {process.communicate()[0]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def lock_connection() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                           password=db["PASSWORD"] or None, dbname=db["NAME"])


def kill_while_rendering(media: Path) -> set[str]:
    """Start a billing run, kill it with a PDF written but its row not committed; return the orphans."""
    run = billing_run(media)
    try:
        # The drafts commit first; then the table is locked against their PDF rows being saved.
        wait_for(lambda: Invoice.objects.filter(period_start="2024-09-01").exists(), "drafts", run)
        with lock_connection() as locker:
            locker.execute("LOCK TABLE invoices_invoice IN SHARE MODE")
            wait_for(lambda: on_disk(media) - referenced(), "PDF file without its row", run)
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    return on_disk(media) - referenced()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_billing_run_killed_while_rendering_then_rerun_leaves_no_orphan_pdf(tmp_path):
    # Given usage of four teams in September 2024
    for name in ("Atlas", "Borealis", "Cygnus", "Draco"):
        UsageRecordFactory(team=TeamFactory(name=name), cost="12.345000000000")
    media = tmp_path / "media"

    # When the billing run is killed (SIGKILL) with a PDF written and its row not committed
    orphans = kill_while_rendering(media)
    assert orphans, "the run was not killed between writing a PDF and committing it"
    # and, once that file is past the grace period, the run is made again
    for name in on_disk(media):
        os.utime(media / name, (time.time() - TWO_HOURS, time.time() - TWO_HOURS))
    rerun = subprocess.run([sys.executable, "manage.py", "billing_run", "--period", "2024-09"], cwd=settings.BASE_DIR,
                           env=command_env(media), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    # Then every PDF on disk belongs to an invoice, and every invoice's PDF is on disk
    drafts = Invoice.objects.filter(period_start="2024-09-01")
    assert drafts.count() == 4 and all(i.pdf for i in drafts)
    assert on_disk(media) == referenced()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sweep_removes_exactly_the_orphans_and_keeps_young_ones(tmp_path, settings):
    # Given a killed run's orphan, and the run made again (the orphan is too young to be swept by it)
    for name in ("Atlas", "Borealis"):
        UsageRecordFactory(team=TeamFactory(name=name), cost="3.000000000000")
    media = tmp_path / "media"
    settings.MEDIA_ROOT = media
    orphans = kill_while_rendering(media)
    assert orphans
    rerun = subprocess.run([sys.executable, "manage.py", "billing_run", "--period", "2024-09"], cwd=settings.BASE_DIR,
                           env=command_env(media), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    kept = referenced()
    assert on_disk(media) == kept | orphans

    # When the sweep runs with its default grace period / then the young orphans stay
    out = StringIO()
    call_command("sweep_orphan_pdfs", stdout=out)
    assert on_disk(media) == kept | orphans and "0 orphan PDF file(s) deleted." in out.getvalue()

    # When it lists, then deletes, files older than 0 s / then exactly the orphans go
    out = StringIO()
    call_command("sweep_orphan_pdfs", "--older-than", "0", "--dry-run", stdout=out)
    assert set(out.getvalue().splitlines()[:-1]) == orphans and on_disk(media) == kept | orphans
    call_command("sweep_orphan_pdfs", "--older-than", "0", stdout=StringIO())
    assert on_disk(media) == kept
