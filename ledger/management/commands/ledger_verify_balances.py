from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ledger.services.integrity import ledger_verify_balances


class Command(BaseCommand):
    help = "Check that every ledger balance equals the sum of its postings; exits non-zero if not."

    def handle(self, *args: Any, **options: Any) -> None:
        report = ledger_verify_balances()
        if not report.ok:
            for problem in report.problems():
                self.stderr.write(problem)
            raise CommandError(f"ledger integrity check FAILED ({len(report.problems())} problem(s))")
        self.stdout.write(self.style.SUCCESS(f"ledger intact: {report.accounts} account balances match their postings"))
