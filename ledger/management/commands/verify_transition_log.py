from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ledger.services.audit import transition_log_verify


class Command(BaseCommand):
    help = "Verify the hash chain of the transition log; exits non-zero if it is broken."

    def handle(self, *args: Any, **options: Any) -> None:
        report = transition_log_verify()
        if not report.ok:
            for problem in report.problems:
                self.stderr.write(problem)
            raise CommandError(f"transition log chain is BROKEN ({len(report.problems)} problem(s))")
        self.stdout.write(self.style.SUCCESS(f"transition log intact: {report.checked} rows verified"))
