"""Close the open netting windows now and drive their settlement plans until they settle or stop
(the demo's stand-in for Celery beat: window close, report polling and the sweeper)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand

from common.actors import SystemActor
from netting.models import NettedInstruction, NettedStatus, NettingWindow, WindowStatus
from netting.pipeline import netted_advance, rail_reports_fetch
from netting.services import window_close
from rails.base import RailError


class Command(BaseCommand):
    help = "Close open netting windows and settle their plans through the bank and custodian."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--timeout", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        actor = SystemActor("settle-windows")
        windows = [window_close(window=w, actor=actor) for w in NettingWindow.objects.filter(status=WindowStatus.OPEN)]
        for window in windows:
            self.stdout.write(
                f"{window}: {window.gross_legs} legs -> {window.net_payments} net payments "
                f"({(window.reduction or 0):.0%} fewer)"
            )
        deadline = time.monotonic() + options["timeout"]
        open_states = [NettedStatus.PENDING, NettedStatus.LOCKED, NettedStatus.SUBMITTED]
        while time.monotonic() < deadline:
            ids = list(
                NettedInstruction.objects.filter(status__in=[NettedStatus.PENDING, NettedStatus.LOCKED]).values_list(
                    "pk", flat=True
                )
            )
            netted_advance(ids=ids, actor=actor)
            for network in ("bank", "custodian"):
                try:
                    rail_reports_fetch(network=network, actor=actor)
                except RailError as exc:
                    self.stderr.write(f"{network}: {exc}")
            if not NettedInstruction.objects.filter(status__in=open_states).exists():
                break
            time.sleep(0.5)
        counts = Counter(NettedInstruction.objects.values_list("status", flat=True))
        self.stdout.write(f"Net payments: {dict(counts)}")
