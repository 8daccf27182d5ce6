from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from common.actors import SystemActor
from settlement.services.instructions import trades_settle_due_internal


class Command(BaseCommand):
    help = "Settle every due trade on the internal ledger (delivery versus payment)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=10_000)

    def handle(self, *args: Any, **options: Any) -> None:
        outcome = trades_settle_due_internal(
            on_date=timezone.now().date(), actor=SystemActor("settle-due"), limit=options["limit"]
        )
        self.stdout.write(f"Trades settled: {outcome['settled']}, failed: {outcome['failed']}")
