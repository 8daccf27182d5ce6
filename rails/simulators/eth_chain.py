"""A local Ethereum chain for tests and the demo: py-evm through eth-tester, reached by web3.py
through a provider, exactly as a real node is reached over JSON-RPC. Signing, nonces, gas,
receipts and confirmations are real EVM behaviour; only the network is missing.

Fault switches (``LocalChain.faults``) make the node misbehave on purpose:

* ``timeout``     - ``eth_sendRawTransaction`` raises a timeout (the transaction is NOT sent)
* ``timeout_after_send`` - the transaction reaches the chain, but the caller sees a timeout
* ``unavailable`` - every call fails as if the node were down
* ``drop``        - the node accepts the transaction and then loses it from its mempool
* ``double_spend``- just before our transaction arrives, another transaction from the same sender
                    with the same nonce is mined (an attacker holding the key)

plus operations: ``mine(n)``, ``snapshot()`` / ``reorg(snapshot)`` (blocks after the snapshot vanish,
as in a chain reorganisation), ``fund(address, wei)`` and ``auto_mine(on)``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from eth_account import Account
from eth_tester import EthereumTester, PyEVMBackend
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCEndpoint, RPCResponse

from rails.base import RailTimeout, RailUnavailable

FAULTS = ("timeout", "timeout_after_send", "unavailable", "drop", "double_spend")


class FaultInjectingProvider(EthereumTesterProvider):
    def __init__(self, chain: LocalChain) -> None:
        super().__init__(chain.tester)
        self.chain = chain

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        chain = self.chain
        with chain.lock:
            if chain.take("unavailable"):
                raise RailUnavailable("local chain: node unavailable (injected)")
            if method == "eth_sendRawTransaction":
                raw = params[0]
                if chain.take("timeout"):
                    raise RailTimeout("local chain: broadcast timed out (injected)")
                if chain.take("double_spend"):
                    chain.front_run(raw)
                if chain.take("drop"):
                    tx_hash = Web3.keccak(hexstr=raw).to_0x_hex()
                    return RPCResponse(jsonrpc="2.0", id=1, result=tx_hash)  # accepted, then lost
                response = super().make_request(method, params)
                if chain.take("timeout_after_send"):
                    raise RailTimeout("local chain: response lost after the transaction was sent (injected)")
                return response
            return super().make_request(method, params)


class LocalChain:
    def __init__(self) -> None:
        self.tester = EthereumTester(PyEVMBackend())
        self.lock = threading.RLock()
        self.faults: Counter[str] = Counter()
        self.provider = FaultInjectingProvider(self)
        self.w3 = Web3(self.provider)
        # Set by whoever plays the attacker in a double-spend test: signs a conflicting transaction.
        self.attacker_signer: Callable[[dict[str, Any]], bytes] | None = None

    # --- fault switches ---------------------------------------------------------------------
    def inject(self, fault: str, times: int = 1) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        self.faults[fault] += times

    def clear_faults(self) -> None:
        self.faults.clear()

    def take(self, fault: str) -> bool:
        if self.faults[fault] > 0:
            self.faults[fault] -= 1
            return True
        return False

    def front_run(self, raw: str) -> None:
        """Mine a different transaction with the same sender and nonce as ``raw``."""
        if self.attacker_signer is None:
            raise RuntimeError("double_spend fault needs LocalChain.attacker_signer")
        sender = Account.recover_transaction(raw)
        nonce = self.tester.get_nonce(sender)
        conflict = {
            "to": sender,
            "value": 0,
            "nonce": nonce,
            "gas": 21000,
            "chainId": self.w3.eth.chain_id,
            "maxFeePerGas": 3 * 10**9,
            "maxPriorityFeePerGas": 2 * 10**9,
            "type": 2,
        }
        self.tester.send_raw_transaction(Web3.to_hex(self.attacker_signer(conflict | {"from": sender})))

    # --- chain operations -------------------------------------------------------------------
    def mine(self, blocks: int = 1) -> None:
        with self.lock:
            self.tester.mine_blocks(blocks)

    def auto_mine(self, on: bool) -> None:
        with self.lock:
            if on:
                self.tester.enable_auto_mine_transactions()
            else:
                self.tester.disable_auto_mine_transactions()

    def snapshot(self) -> Any:
        with self.lock:
            return self.tester.take_snapshot()

    def reorg(self, snapshot: Any, *, new_blocks: int = 0) -> None:
        """Drop every block after ``snapshot`` (their transactions are gone) and mine new ones."""
        with self.lock:
            self.tester.revert_to_snapshot(snapshot)
            if new_blocks:
                self.tester.mine_blocks(new_blocks)

    def fund(self, address: str, wei: int) -> str:
        """Pay ``wei`` from a genesis account; returns the transaction hash."""
        with self.lock:
            tx = self.tester.send_transaction(
                {"from": self.tester.get_accounts()[0], "to": address, "value": wei, "gas": 21000}
            )
            return tx if isinstance(tx, str) else Web3.to_hex(tx)

    def balance(self, address: str) -> int:
        with self.lock:
            return int(self.tester.get_balance(address))


_chain: LocalChain | None = None
_chain_lock = threading.Lock()


def local_chain() -> LocalChain:
    """The process-wide local chain (created on first use)."""
    global _chain
    with _chain_lock:
        if _chain is None:
            _chain = LocalChain()
        return _chain


def reset_local_chain() -> LocalChain:
    global _chain
    with _chain_lock:
        _chain = LocalChain()
        return _chain
