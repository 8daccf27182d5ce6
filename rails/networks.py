"""The message networks by name, "bank" (``rails.fiat``) and "custodian" (``rails.custody``): one
client per network and URL, and the process-wide simulator serving a network whose URL is "local"."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from rails.custody.custodian import custodian_simulator, custodian_url
from rails.fiat.bank import bank_simulator, bank_url
from rails.messaging import NetworkClient

_clients: dict[str, NetworkClient] = {}
_simulators: dict[str, Any] = {}
_lock = threading.Lock()


def _url(network: str) -> str:
    return {"bank": bank_url, "custodian": custodian_url}[network]()


def network_simulator(network: str) -> Any:
    """A simulator for ``network`` with the house's accounts open (the accounts the settings name)."""
    if network == "bank":
        return bank_simulator()
    return custodian_simulator()


def local_network(network: str) -> Any:
    """The process-wide simulator of ``network`` serving on a loopback port (URL "local")."""
    with _lock:
        if network not in _simulators:
            simulator = network_simulator(network)
            simulator.serve()
            _simulators[network] = simulator
        return _simulators[network]


def network_client(network: str) -> NetworkClient:
    url = _url(network)
    if url == "local":
        url = local_network(network).url
    key = f"{network}:{url}"
    with _lock:
        if key not in _clients:
            _clients[key] = NetworkClient(url, timeout=settings.CLEARHOUSE_RAIL_TIMEOUT_SECONDS)
        return _clients[key]


def reset() -> None:
    """Forget clients and stop local simulators (tests start each with fresh networks)."""
    with _lock:
        _clients.clear()
        for simulator in _simulators.values():
            simulator.stop()
        _simulators.clear()
