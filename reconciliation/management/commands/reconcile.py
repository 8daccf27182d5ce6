"""Record the rails' reports and run a reconciliation now (what beat does hourly)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from reconciliation.engine import reconciliation_run
from reconciliation.services import RECON, rail_reports_record


class Command(BaseCommand):
    help = "Record the rails' fetched reports as external records, then run a reconciliation."

    def handle(self, *args: Any, **options: Any) -> None:
        recorded = rail_reports_record()
        run = reconciliation_run(actor=RECON)
        self.stdout.write(
            f"Reports recorded: {recorded['reports']} ({recorded['records']} new records). "
            f"Reconciliation run {run.pk}: matched {run.totals['matched']}, awaiting {run.totals['awaiting']}, "
            f"breaks {run.totals['breaks'] or 'none'}"
        )
