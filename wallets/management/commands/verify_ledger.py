"""``python manage.py verify_ledger``: prove every wallet's stored figures agree with its ledger."""

from django.core.management.base import BaseCommand, CommandError

from wallets.selectors import ledger_verify


class Command(BaseCommand):
    help = (
        "Check every wallet: stored balance = sum of its ledger entries, reserved = open holds, granted "
        "balance = grants remaining, and an unbroken before/after chain (by pk). Exits 1 on any mismatch."
    )

    def add_arguments(self, parser):
        parser.add_argument("--wallet", type=int, action="append", dest="wallets", help="Only this wallet (repeatable).")

    def handle(self, *args, wallets=None, **options):
        results = ledger_verify(wallet_ids=wallets)
        bad = [r for r in results if not r.ok]
        for result in bad:
            self.stdout.write(self.style.ERROR(f"wallet {result.wallet_id}: MISMATCH ({result.entry_count} entries)"))
            for problem in result.problems:
                self.stdout.write(f"  - {problem}")
        entries = sum(r.entry_count for r in results)
        summary = f"{len(results)} wallets, {entries} ledger entries checked: {len(bad)} with mismatches"
        if bad:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
