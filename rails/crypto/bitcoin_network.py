"""python-bitcoinlib's process-wide network and the P2PKH address of a key.

Kept apart from ``rails.crypto.bitcoin`` (the rail) so that the keystore (``rails.crypto.signing``)
can derive a Bitcoin address without importing the rail that signs with the keystore.
"""

from __future__ import annotations

from bitcoin import SelectParams
from bitcoin.wallet import P2PKHBitcoinAddress

_network: str | None = None


def select_network(network: str) -> None:
    """python-bitcoinlib keeps the network (address prefixes) process-wide."""
    global _network
    if _network != network:
        SelectParams(network)
        _network = network


def address_for_secret(secret: bytes) -> str:
    from bitcoin.wallet import CBitcoinSecret
    from django.conf import settings

    select_network(settings.CLEARHOUSE_BTC_NETWORK)
    return str(P2PKHBitcoinAddress.from_pubkey(CBitcoinSecret.from_secret_bytes(secret).pub))
