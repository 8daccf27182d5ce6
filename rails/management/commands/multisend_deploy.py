"""``manage.py multisend_deploy``: make sure the multisend contract is on the Ethereum chain of
``CLEARHOUSE_ETH_RPC_URL`` and print its address (the demo and benchmarks export it as
``CLEARHOUSE_ETH_MULTISEND`` for the processes they start)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from rails.crypto.multisend_deploy import multisend_ensure
from rails.crypto.registry import chain_rail_of


class Command(BaseCommand):
    help = "Deploy the multisend contract on a development chain if needed and print its address."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(multisend_ensure(chain_rail_of("ethereum")))
