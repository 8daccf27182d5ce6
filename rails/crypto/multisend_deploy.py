"""Where the multisend contract is: ``settings.CLEARHOUSE_ETH_MULTISEND``, or on a development
chain a deployment made on first use.

The development deployment is the first transaction of a fixed development key
(``DEV_DEPLOYER_KEY``, funded from the node's first unlocked account), so its address is the
same for every process sharing one anvil and is found again without any shared store: a second
process sees the code there and uses it. Production (``CLEARHOUSE_PRODUCTION``) never deploys.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.types import Wei

from rails.crypto.contracts import MultisendError, deploy
from rails.crypto.contracts.multisend import artifact

# A well-known development key (never holds real funds): keccak of a fixed phrase.
DEV_DEPLOYER_KEY = "0x" + keccak(b"clearhouse multisend development deployer").hex()
DEV_FUNDING_WEI = 10**17
WAIT_SECONDS = 30.0


def _web3(target: Any) -> Web3:
    return target.w3 if hasattr(target, "w3") else target


def _has_multisend_code(w3: Web3, address: str) -> bool:
    return HexBytes(w3.eth.get_code(to_checksum_address(address))) == HexBytes(artifact()["bytecode_runtime"])


def dev_multisend_address() -> str:
    """Where the development deployment is (or will be) on any chain."""
    from eth_utils import to_bytes
    from rlp import encode  # type: ignore[import-untyped]

    deployer = Account.from_key(DEV_DEPLOYER_KEY).address
    return to_checksum_address(keccak(encode([to_bytes(hexstr=deployer), 0]))[-20:])


def multisend_ensure(rail_or_web3: Any) -> str:
    """The multisend contract's address for this chain, deploying it on a development chain when
    the setting is empty. Production without the setting is a configuration error."""
    configured = settings.CLEARHOUSE_ETH_MULTISEND
    if configured:
        return to_checksum_address(configured)
    if settings.CLEARHOUSE_PRODUCTION:
        raise ImproperlyConfigured("CLEARHOUSE_ETH_MULTISEND must be set in production (no deployment there)")
    w3 = _web3(rail_or_web3)
    address = dev_multisend_address()
    if _has_multisend_code(w3, address):
        return address
    deployer = Account.from_key(DEV_DEPLOYER_KEY)
    if w3.eth.get_transaction_count(deployer.address, "latest") > 0:
        # another process is deploying right now, or the first deployment failed
        return _wait_for_code(w3, address)
    if w3.eth.get_balance(deployer.address) < DEV_FUNDING_WEI // 2:
        funding = w3.eth.send_transaction(
            {"from": w3.eth.accounts[0], "to": deployer.address, "value": Wei(DEV_FUNDING_WEI), "gas": 21_000}
        )
        w3.eth.wait_for_transaction_receipt(funding, timeout=WAIT_SECONDS)
    try:
        deployed = deploy(w3, deployer)
    except (MultisendError, ValueError):
        return _wait_for_code(w3, address)  # lost a race with another process: its deployment counts
    if deployed != address:
        raise MultisendError(f"multisend deployed at {deployed}, expected {address}")
    return address


def _wait_for_code(w3: Web3, address: str) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if _has_multisend_code(w3, address):
            return address
        time.sleep(0.2)
    raise MultisendError(f"no multisend at {address}; the development deployer's first transaction did not deploy it")
