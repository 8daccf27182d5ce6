"""Which rail settles which chain, from settings (``CLEARHOUSE_CHAIN_RAILS``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from web3 import Web3


def _ethereum() -> Any:
    from rails.crypto.ethereum import EthereumRail

    url = settings.CLEARHOUSE_ETH_RPC_URL
    if url == "local":
        from rails.simulators.eth_chain import local_chain

        return EthereumRail(local_chain().w3)
    return EthereumRail(Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10})))


_FACTORIES = {"ethereum": _ethereum}


def chain_rail(chain: str) -> Any | None:
    """The rail for ``chain``, or None when that chain settles on the internal ledger for now."""
    if chain not in settings.CLEARHOUSE_CHAIN_RAILS:
        return None
    return _cached(chain, settings.CLEARHOUSE_ETH_RPC_URL)


@cache
def _cached(chain: str, _url: str) -> Any:
    return _FACTORIES[chain]()


def reset() -> None:
    _cached.cache_clear()
