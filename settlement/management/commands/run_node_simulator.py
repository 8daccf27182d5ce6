"""Serve a Bitcoin or Solana node simulator on a loopback port until stopped (demo, manual tests).

Workers in other processes reach it exactly like a node: point ``CLEARHOUSE_BTC_RPC_URL`` /
``CLEARHOUSE_SOL_RPC_URL`` at the printed URL. Faults can be injected from anywhere with the
``sim_inject`` RPC, e.g.::

    curl -s -d '{"jsonrpc":"2.0","id":1,"method":"sim_inject","params":["drop",1]}' http://127.0.0.1:18443
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve a local Bitcoin or Solana node simulator (JSON-RPC on 127.0.0.1)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("chain", choices=["bitcoin", "solana"])
        parser.add_argument("--port", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["chain"] == "bitcoin":
            from rails.simulators.bitcoin_node import BitcoinNodeSimulator

            simulator: Any = BitcoinNodeSimulator()
        else:
            from rails.simulators.solana_node import SolanaNodeSimulator

            simulator = SolanaNodeSimulator()
        simulator.serve_until_stopped(
            port=options["port"], label=f"{options['chain']} node simulator", stdout=self.stdout
        )
