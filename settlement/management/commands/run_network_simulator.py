"""Serve the bank network or custodian simulator on a loopback port until stopped (demo, bench).

Point ``CLEARHOUSE_BANK_URL`` / ``CLEARHOUSE_CUSTODIAN_URL`` at the printed URL. The house's
accounts from the settings are open; open participants' accounts, move the clock and inject
faults over HTTP, e.g.::

    curl -s -d '{"account": "770001", "currency": "USD", "balance": "1000"}' http://127.0.0.1:18600/sim/open_account
    curl -s -d '{"days": 1}' http://127.0.0.1:18600/sim/advance
    curl -s -d '{"fault": "reject", "code": "AM02"}' http://127.0.0.1:18600/sim/inject
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the local bank network or custodian simulator (HTTP on 127.0.0.1)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("network", choices=["bank", "custodian"])
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument("--instant", action="store_true", help="test clock: settle at once, ignore value dates")

    def handle(self, *args: Any, **options: Any) -> None:
        from rails.network import network_simulator

        simulator = network_simulator(options["network"])
        simulator.instant = options["instant"]
        url = simulator.serve(options["port"])
        self.stdout.write(f"{options['network']} simulator on {url}", ending="\n")
        self.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        simulator.stop()
