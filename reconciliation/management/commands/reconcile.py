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
        posted = recorded.get("bank_charges_posted", 0) + gathered["bank_charges"].get("posted", 0)
        short = gathered["bank_charges"].get("short", 0)
        run = reconciliation_run(actor=RECON)
        self.stdout.write(
            f"Reports recorded: {recorded['reports']} ({recorded['records']} new records); "
            f"chain transactions imported: {chains or 'no chain lists configured'}; "
            f"bank charges passed on: {posted}" + (f" ({short} waiting for funds)" if short else "") + ". "
            f"Reconciliation run {run.pk}: matched {run.totals['matched']}, awaiting {run.totals['awaiting']}, "
            f"breaks {run.totals['breaks'] or 'none'}"
        )
