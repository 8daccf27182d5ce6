"""Generate (or regenerate) the daily settlement report now (what beat does at 23:55 UTC)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from common.actors import SystemActor
from ops.daily_report import daily_report_build


class Command(BaseCommand):
    help = "Generate the daily settlement report of a day (default: today, UTC)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--day", type=date.fromisoformat, default=None, help="YYYY-MM-DD")

    def handle(self, *args: Any, **options: Any) -> None:
        report = daily_report_build(day=options["day"] or timezone.now().date(), actor=SystemActor("command"))
        f = report.figures
        self.stdout.write(
            f"Daily report {report.day}: settled {f['settled_count']}, failed {f['failed_count']}, "
            f"fees earned {[(x['asset'], x['earned']) for x in f['fees'] if Decimal(x['earned'])]}, "
            f"costs passed on {[(x['asset'], x['passed_on']) for x in f['fees'] if Decimal(x['passed_on'])]}, "
            f"generated in {report.seconds:.2f} s"
        )
        for row in f["settled"]:  # per rail (chain, netted, ledger) and asset, as the admin's report shows
            self.stdout.write(
                f"  settled {row['rail']} {row['asset']}: {row['count']} legs, {row['value']} {row['asset']}"
            )
