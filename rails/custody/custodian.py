"""The custodian: where it answers and a local simulator of it with the house's account open."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from rails.simulators.custodian import CustodianSimulator


def custodian_url() -> str:
    """The custodian's URL from the settings ("local": a simulator in this process)."""
    return settings.CLEARHOUSE_CUSTODIAN_URL


def custodian_simulator() -> CustodianSimulator:
    """A custodian simulator with the house's custody account open (the account the settings name)."""
    from rails.simulators.custodian import CustodianSimulator

    simulator = CustodianSimulator()
    simulator.open_account(settings.CLEARHOUSE_HOUSE_CUSTODY_ACCOUNT["account"])
    return simulator
