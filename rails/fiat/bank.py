"""The bank network: where it answers and a local simulator of it with the house's accounts open."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from rails.simulators.bank import BankSimulator


def bank_url() -> str:
    """The bank network's URL from the settings ("local": a simulator in this process)."""
    return settings.CLEARHOUSE_BANK_URL


def bank_simulator() -> BankSimulator:
    """A bank network simulator with the house's accounts open (the accounts the settings name)."""
    from rails.simulators.bank import BankSimulator

    house = settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS
    simulator = BankSimulator(ach_settlement_account=house.get("USD", {}).get("account", ""))
    for currency, account in house.items():
        simulator.open_account(
            account.get("iban") or account["account"], currency=currency, name=settings.CLEARHOUSE_HOUSE_NAME
        )
    return simulator
