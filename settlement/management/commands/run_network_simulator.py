"""Serve the bank network or custodian simulator on a loopback port until stopped (demo, bench).

Point ``CLEARHOUSE_BANK_URL`` / ``CLEARHOUSE_CUSTODIAN_URL`` at the printed URL. The house's
accounts from the settings are open; open participants' accounts, move the clock and inject
faults over HTTP, e.g.::

    curl -s -d '{"account": "770001", "currency": "USD", "balance": "1000"}' http://127.0.0.1:18600/sim/open_account
    curl -s -d '{"days": 1}' http://127.0.0.1:18600/sim/advance
    curl -s -d '{"fault": "reject", "code": "AM02"}' http://127.0.0.1:18600/sim/inject
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the local bank network or custodian simulator (HTTP on 127.0.0.1)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("network", choices=["bank", "custodian"])
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument("--instant", action="store_true", help="test clock: settle at once, ignore value dates")

    def handle(self, *args: Any, **options: Any) -> None:
        from rails.networks import network_simulator

        simulator = network_simulator(options["network"])
        simulator.instant = options["instant"]
        simulator.serve_until_stopped(port=options["port"], label=f"{options['network']} simulator", stdout=self.stdout)
