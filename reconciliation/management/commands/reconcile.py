"""Record the rails' reports and the chains' new transactions, pass on bank charges, and run a
reconciliation now (what beat does hourly)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from reconciliation.engine import reconciliation_run
from reconciliation.services import RECON, reconciliation_inputs_gather


class Command(BaseCommand):
    help = "Record the rails' fetched reports and the chains' transactions, then run a reconciliation."

    def handle(self, *args: Any, **options: Any) -> None:
        gathered = reconciliation_inputs_gather()
        recorded, chains = gathered["reports"], gathered["chains"]
        run = reconciliation_run(actor=RECON)
        self.stdout.write(
            f"Reports recorded: {recorded['reports']} ({recorded['records']} new records); "
            f"chain transactions imported: {chains or 'no chain lists configured'}; "
            f"bank charges passed on: {gathered['bank_charges'] or 'none'}. "
            f"Reconciliation run {run.pk}: matched {run.totals['matched']}, awaiting {run.totals['awaiting']}, "
            f"breaks {run.totals['breaks'] or 'none'}"
        )
