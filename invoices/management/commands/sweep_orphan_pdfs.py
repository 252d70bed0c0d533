"""``manage.py sweep_orphan_pdfs``: delete stored PDFs that no invoice or credit note references."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand

from invoices.services.pdf_storage import pdf_orphans_sweep


class Command(BaseCommand):
    help = (
        "Delete the PDF files under MEDIA_ROOT (invoices/, credit_notes/) that no invoice or credit note "
        "references, left by a run killed before it committed. Files younger than --older-than are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=3600, metavar="SECONDS",
                            help="Keep files modified less than this many seconds ago (default 3600).")
        parser.add_argument("--dry-run", action="store_true", help="List the orphans; delete nothing.")

    def handle(self, *args, older_than: int, dry_run: bool, **options):
        orphans = pdf_orphans_sweep(older_than=dt.timedelta(seconds=older_than), dry_run=dry_run)
        for name in orphans:
            self.stdout.write(name)
        verb = "would be deleted" if dry_run else "deleted"
        self.stdout.write(f"{len(orphans)} orphan PDF file(s) {verb}.")
