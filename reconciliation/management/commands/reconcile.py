"""Record the rails' reports and the chains' new transactions, and run a reconciliation now
(what beat does hourly)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from reconciliation.engine import reconciliation_run
from reconciliation.services import RECON, chain_lists_fetch, rail_reports_record


class Command(BaseCommand):
    help = "Record the rails' fetched reports and the chains' transactions, then run a reconciliation."

    def handle(self, *args: Any, **options: Any) -> None:
        recorded = rail_reports_record()
        chains = chain_lists_fetch()
        run = reconciliation_run(actor=RECON)
        self.stdout.write(
            f"Reports recorded: {recorded['reports']} ({recorded['records']} new records); "
            f"chain transactions imported: {chains or 'no chain lists configured'}. "
            f"Reconciliation run {run.pk}: matched {run.totals['matched']}, awaiting {run.totals['awaiting']}, "
            f"breaks {run.totals['breaks'] or 'none'}"
        )
