"""Ethereum rail: web3.py + eth-account over JSON-RPC (or the in-process local chain).

Native ETH transfers, EIP-1559 (type 2) transactions. The network fee is paid by the sender's
wallet, so the settlement books it too (see ``settlement.crypto.pipeline``) and ledger balances
stay equal to on-chain balances.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests
from eth_account import Account
from eth_utils import is_address, to_checksum_address
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError

from rails.base import RailRejected, RailTimeout, RailUnavailable, SignedTransfer, TransferStatus
from rails.crypto.eth_payouts import EthereumPayouts, already_known, decode_multisend
from rails.crypto.eth_rpc import norm_receipt
from rails.crypto.signing import keystore

WEI = 18
TRANSFER_GAS = 21_000
PRIORITY_FEE_WEI = 10**9  # 1 gwei tip


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Map transport failures of any provider onto the rail's transient errors."""
    try:
        return fn(*args, **kwargs)
    except (RailTimeout, RailUnavailable):
        raise
    except requests.exceptions.Timeout as exc:
        raise RailTimeout(str(exc)) from exc
    except (requests.exceptions.ConnectionError, ConnectionError, OSError) as exc:
        raise RailUnavailable(str(exc)) from exc


class EthereumRail(EthereumPayouts):
    decimals = WEI
    symbol = "ETH"
    base_unit = "wei"
    chain = "ethereum"

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self._chain_id: int | None = None

    @staticmethod
    def valid_address(address: str) -> bool:
        return bool(is_address(address))

    def confirmed_nonce(self, address: str) -> int:
        return int(_call(self.w3.eth.get_transaction_count, to_checksum_address(address), "latest"))

    def fee_reserve(self) -> Decimal:
        """Most a plain transfer may cost now: gas x (2 x base fee + tip). Held from the sender
        on the ledger before signing; the transaction's fee cap is derived from it, so the real
        fee can never exceed what was reserved."""
        return self.from_base_units(TRANSFER_GAS * self.max_fee_per_gas())

    def max_fee_per_gas(self) -> int:
        """Twice the latest block's base fee plus the tip, in wei: what a reserve is built on."""
        latest = _call(self.w3.eth.get_block, "latest")
        return int(latest["baseFeePerGas"]) * 2 + PRIORITY_FEE_WEI

    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(_call(lambda: self.w3.eth.chain_id))
        return self._chain_id

    def sign_transfer(
        self,
        *,
        from_address: str,
        to_address: str,
        amount: Decimal,
        nonce: int,
        fee_cap: Decimal,
        state: dict[str, Any] | None = None,
        reference: str = "",
    ) -> SignedTransfer:
        max_fee = self.to_base_units(fee_cap) // TRANSFER_GAS
        transaction = {
            "type": 2,
            "chainId": self.chain_id(),
            "nonce": nonce,
            "to": to_checksum_address(to_address),
            "value": self.to_base_units(amount),
            "gas": TRANSFER_GAS,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": min(PRIORITY_FEE_WEI, max_fee),
        }
        raw = keystore().sign_eth_transaction(from_address, transaction)
        return SignedTransfer(
            tx_hash=Web3.keccak(raw).to_0x_hex(),
            raw=Web3.to_hex(raw),
            nonce=nonce,
            fee_cap=self.from_base_units(TRANSFER_GAS * max_fee),
        )

    def broadcast(self, raw: str) -> str:
        """Send a signed transaction. Sending the same bytes again is harmless: the chain keys it
        by hash and nonce, so a rebroadcast can never pay twice."""
        try:
            return _call(self.w3.eth.send_raw_transaction, raw).to_0x_hex()
        except (RailTimeout, RailUnavailable):
            raise
        except (Web3RPCError, ValueError) as exc:
            if already_known(str(exc)):
                # already in the mempool or a block (ours or a conflicting one): status() decides
                return Web3.keccak(hexstr=raw).to_0x_hex()
            raise RailRejected(str(exc)) from exc
        except Exception as exc:
            if already_known(str(exc)):
                return Web3.keccak(hexstr=raw).to_0x_hex()
            raise RailRejected(f"{type(exc).__name__}: {exc}") from exc

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return _call(self.w3.eth.get_transaction_receipt, tx_hash)
        except TransactionNotFound:
            return None

    def status(self, *, tx_hash: str, sender: str, raw: str = "") -> TransferStatus:
        """Two calls when the transaction is in a block (receipt, head); the sender's nonce only
        when it is not, read *before* a second look for the receipt: a transaction mined between
        the two reads is then found, never mistaken for a double spend."""
        receipt = self._receipt(tx_hash)
        sender_nonce = None
        if receipt is None or receipt.get("blockNumber") is None:
            sender_nonce = self.confirmed_nonce(sender)
            receipt = self._receipt(tx_hash)
        if receipt is None or receipt.get("blockNumber") is None:
            try:
                _call(self.w3.eth.get_transaction, tx_hash)
                in_mempool = True
            except TransactionNotFound:
                in_mempool = False
            return TransferStatus(found=in_mempool, sender_nonce=sender_nonce)
        head = int(_call(lambda: self.w3.eth.block_number))
        fee_wei = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        return TransferStatus(
            found=True,
            confirmations=head - int(receipt["blockNumber"]) + 1,
            block_number=int(receipt["blockNumber"]),
            succeeded=receipt["status"] == 1,
            fee=self.from_base_units(fee_wei),
            sender_nonce=sender_nonce,
        )

    def head(self) -> int:
        return int(_call(lambda: self.w3.eth.block_number))

    def transactions(self, *, addresses: set[str], first_block: int, last_block: int) -> list[dict[str, Any]]:
        """Every transaction of blocks ``first_block..last_block`` that sends from or pays to one
        of ``addresses`` (any case), with its value, block, confirmations, time and outcome: the
        chain's own list, for reconciliation. Receipts are fetched only for those transactions."""
        ours = {a.lower() for a in addresses}
        head = self.head()
        found = []
        for number in range(first_block, last_block + 1):
            block = _call(self.w3.eth.get_block, number, full_transactions=True)
            for tx in block["transactions"]:
                sender, receiver = str(tx["from"]), str(tx.get("to") or "")
                if sender.lower() not in ours and receiver.lower() not in ours:
                    continue
                receipt = norm_receipt(_call(self.w3.eth.get_transaction_receipt, tx["hash"]))
                assert receipt is not None  # noqa: S101 - the transaction is in this block
                row = {
                    "tx_hash": tx["hash"].to_0x_hex(),
                    "from": sender,
                    "to": receiver,
                    "amount": self.from_base_units(int(tx["value"])),
                    "block": number,
                    "confirmations": head - number + 1,
                    "timestamp": int(block["timestamp"]),
                    "succeeded": receipt["status"] == 1,
                }
                data = bytes(tx.get("input", tx.get("data", b"")))
                if receipt["status"] == 1 and self.is_multisend_receipt(receipt):
                    # a payout transaction: one row per settlement it paid
                    for index, reference, to, amount in self._payout_rows(receipt, receiver, data):
                        found.append(row | {"to": to, "amount": amount, "index": index, "reference": reference})
                elif receipt["status"] != 1 and (meant := decode_multisend(data)) is not None:
                    # a reverted payout transaction paid nobody: one failed row per payout it carried
                    for index, (to, wei, reference) in enumerate(meant):
                        amount = self.from_base_units(wei)
                        found.append(row | {"to": to, "amount": amount, "index": index, "reference": reference})
                else:
                    found.append(row)
        return found

    def balance(self, address: str) -> Decimal:
        return self.from_base_units(int(_call(self.w3.eth.get_balance, to_checksum_address(address))))

    @staticmethod
    def new_address_for_key(private_key: str) -> str:
        return Account.from_key(private_key).address
