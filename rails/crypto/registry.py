"""Which rail settles which chain, from settings (``CLEARHOUSE_CHAIN_RAILS``)."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from django.conf import settings
from web3 import Web3


def _ethereum(url: str) -> Any:
    from rails.crypto.ethereum import EthereumRail

    if url == "local":
        from rails.simulators.eth_chain import local_chain

        return EthereumRail(local_chain().w3)
    return EthereumRail(
        Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": settings.CLEARHOUSE_RPC_TIMEOUT_SECONDS}))
    )


def _bitcoin(url: str) -> Any:
    from rails.crypto.bitcoin import BitcoinRail

    if url == "local":
        url = local_simulator("bitcoin").url
    return BitcoinRail(url, network=settings.CLEARHOUSE_BTC_NETWORK, timeout=settings.CLEARHOUSE_RPC_TIMEOUT_SECONDS)


def _solana(url: str) -> Any:
    from rails.crypto.solana import SolanaRail

    if url == "local":
        url = local_simulator("solana").url
    return SolanaRail(url, timeout=settings.CLEARHOUSE_RPC_TIMEOUT_SECONDS)


_FACTORIES = {"ethereum": _ethereum, "bitcoin": _bitcoin, "solana": _solana}


def rpc_url(chain: str) -> str:
    return {
        "ethereum": settings.CLEARHOUSE_ETH_RPC_URL,
        "bitcoin": settings.CLEARHOUSE_BTC_RPC_URL,
        "solana": settings.CLEARHOUSE_SOL_RPC_URL,
    }[chain]


def chain_rail(chain: str) -> Any | None:
    """The rail for ``chain``, or None when that chain settles on the internal ledger."""
    if chain not in settings.CLEARHOUSE_CHAIN_RAILS:
        return None
    return _cached(chain, rpc_url(chain))


def chain_rail_of(chain: str) -> Any:
    """The rail of ``chain`` where something is known to move on chain (a transfer, a wallet to
    fund, an on-chain asset): a chain without one is a configuration error, said as such."""
    rail = chain_rail(chain)
    if rail is None:
        raise ValueError(f"{chain} has no rail: it settles on the internal ledger (CLEARHOUSE_CHAIN_RAILS)")
    return rail


@cache
def _cached(chain: str, url: str) -> Any:
    return _FACTORIES[chain](url)


# --- in-process node simulators ("local" URLs) -------------------------------------------------------

_simulators: dict[str, Any] = {}
_simulators_lock = threading.Lock()


def local_simulator(chain: str) -> Any:
    """The process-wide node simulator for ``chain``, serving on a loopback port (started once)."""
    with _simulators_lock:
        if chain not in _simulators:
            if chain == "bitcoin":
                from rails.simulators.bitcoin_node import BitcoinNodeSimulator

                simulator: Any = BitcoinNodeSimulator()
            elif chain == "solana":
                from rails.simulators.solana_node import SolanaNodeSimulator

                simulator = SolanaNodeSimulator()
            else:
                raise ValueError(f"no local simulator for {chain}")
            simulator.serve()
            _simulators[chain] = simulator
        return _simulators[chain]


def reset() -> None:
    """Forget cached rails and stop local simulators (tests start each from a clean chain)."""
    _cached.cache_clear()
    with _simulators_lock:
        for simulator in _simulators.values():
            simulator.stop()
        _simulators.clear()
