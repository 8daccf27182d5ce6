"""Ethereum payouts: one transaction pays many settlements through the multisend contract.

References on chain. The contract's ``Sent`` event carries a 32-byte reference per transfer:
``payout_reference_bytes32(reference)`` = keccak-256 of the reference's ASCII bytes (any length
up to 64 fits). So that the reference itself can be read back from the chain, the call data
carries the references after the ABI-encoded argument (the contract reads only its argument):
``REFS_MAGIC`` then, per payout in order, one length byte and the ASCII bytes. ``payouts_in``
returns a reference only when its keccak equals the event's; otherwise it returns the event's
32 bytes as ``0x`` hex (a multisend built by someone else).

Gas. A batch of ``n`` gets ``GAS_BASE + n * GAS_PER_PAYOUT`` gas: measured ~61k for one payout
and ~38k per payout to a new account (~12.7k to an existing one), plus up to ~1k of reference
call data. ``max_payouts`` = 500 keeps a batch of new accounts (~21M gas) under a 30M block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from rails.base import (
    BaseUnits,
    Payout,
    RailError,
    RailRejected,
    RailTimeout,
    RailUnavailable,
    SignedTransfer,
    TransferStatus,
)
from rails.crypto.contracts import MAX_TRANSFERS, decode_events
from rails.crypto.contracts.multisend import event_topic
from rails.crypto.eth_rpc import BatchRpc, norm_receipt
from rails.crypto.signing import keystore

GAS_BASE = 65_000
GAS_PER_PAYOUT = 42_000
MAX_PAYOUTS = 500
REFS_MAGIC = b"CHREFS1"
_ABI_HEAD = 4 + 32 + 32  # selector, offset of the array, its length
_ABI_ITEM = 96  # (address, uint256, bytes32)
MULTISEND_SELECTOR = bytes(keccak(b"multisend((address,uint256,bytes32)[])"))[:4]


def payout_reference_bytes32(reference: str) -> bytes:
    """The 32 bytes the ``Sent`` event carries for ``reference``: keccak-256 of its ASCII."""
    return bytes(keccak(reference.encode("ascii")))


def payout_gas(n: int) -> int:
    return GAS_BASE + n * GAS_PER_PAYOUT


def encode_multisend(payouts: Sequence[Payout], to_wei: Callable[[Decimal], int]) -> tuple[bytes, int]:
    """The ABI call data of ``multisend(transfers)`` and its value, encoded by hand: the argument
    is a dynamic array of static tuples, so the layout is fixed (selector, offset 0x20, length,
    then 3 words per transfer). Same bytes as ``contracts.build_call``, ~20x faster."""
    if not 0 < len(payouts) <= MAX_TRANSFERS:
        raise ValueError(f"{len(payouts)} transfers; 1 to {MAX_TRANSFERS} per call")
    out = bytearray(MULTISEND_SELECTOR)
    out += (32).to_bytes(32, "big") + len(payouts).to_bytes(32, "big")
    total = 0
    for p in payouts:
        recipient = bytes.fromhex(p.to_address.removeprefix("0x"))
        if len(recipient) != 20 or not any(recipient):
            raise ValueError(f"invalid recipient {p.to_address!r}")
        wei = to_wei(p.amount)
        total += wei
        out += recipient.rjust(32, b"\0") + wei.to_bytes(32, "big") + payout_reference_bytes32(p.reference)
    return bytes(out), total


def decode_multisend(call_data: bytes) -> list[tuple[str, int, str]] | None:
    """(recipient, wei, reference) per transfer of multisend call data built by ``sign_payouts``
    (the reference read from the appended list, or the event's 32 bytes as hex), or None when
    the data is not a multisend call. What a reverted payout transaction meant to pay."""
    if call_data[:4] != MULTISEND_SELECTOR or len(call_data) < _ABI_HEAD:
        return None
    count = int.from_bytes(call_data[36:68], "big")
    if len(call_data) < _ABI_HEAD + count * _ABI_ITEM:
        return None
    references = decode_references(call_data, count)
    rows: list[tuple[str, int, str]] = []
    for i in range(count):
        item = call_data[_ABI_HEAD + i * _ABI_ITEM : _ABI_HEAD + (i + 1) * _ABI_ITEM]
        digest = item[64:96]
        reference = "0x" + digest.hex()
        if references is not None and payout_reference_bytes32(references[i]) == digest:
            reference = references[i]
        rows.append((str(to_checksum_address(item[12:32])), int.from_bytes(item[32:64], "big"), reference))
    return rows


def encode_references(references: Sequence[str]) -> bytes:
    out = bytearray(REFS_MAGIC)
    for reference in references:
        raw = reference.encode("ascii")
        out += bytes([len(raw)]) + raw
    return bytes(out)


def decode_references(call_data: bytes, count: int) -> list[str] | None:
    """The references appended after a multisend argument of ``count`` items, or None."""
    tail = call_data[_ABI_HEAD + count * _ABI_ITEM :]
    if not tail.startswith(REFS_MAGIC):
        return None
    pos, found = len(REFS_MAGIC), []
    for _ in range(count):
        if pos >= len(tail):
            return None
        size = tail[pos]
        raw = tail[pos + 1 : pos + 1 + size]
        if len(raw) != size:
            return None
        try:
            found.append(raw.decode("ascii"))
        except UnicodeDecodeError:
            return None
        pos += 1 + size
    return found


KNOWN_MARKERS = ("nonce", "already known", "already imported", "known transaction")


def already_known(message: str) -> bool:
    """The node's answer to a raw transaction it has (or whose nonce is used): not a rejection."""
    lowered = message.lower()
    return any(marker in lowered for marker in KNOWN_MARKERS)


def _as_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _rejection(message: str) -> RailError | None:
    if already_known(message):
        return None  # ours or a conflicting one is in the mempool or a block: status decides
    return RailRejected(message)


class EthereumPayouts(BaseUnits):
    """Mixed into EthereumRail: ``sign_payouts``, ``broadcast_many``, ``status_many``, ``payouts_in``."""

    max_payouts = MAX_PAYOUTS
    w3: Web3

    if TYPE_CHECKING:  # provided by EthereumRail

        def chain_id(self) -> int: ...
        def max_fee_per_gas(self) -> int: ...
        def confirmed_nonce(self, address: str) -> int: ...

    _rpc_batch: BatchRpc | None = None
    _multisend: str | None = None

    @property
    def rpc(self) -> BatchRpc:
        if self._rpc_batch is None:
            self._rpc_batch = BatchRpc(self.w3)
        return self._rpc_batch

    def multisend_address(self) -> str:
        """settings.CLEARHOUSE_ETH_MULTISEND, or the development deployment (see multisend_ensure)."""
        if self._multisend is None:
            from rails.crypto.multisend_deploy import multisend_ensure

            self._multisend = multisend_ensure(self.w3)
        return self._multisend

    def payout_fee_reserve(self) -> Decimal:
        """Per payout: a batch of one at twice today's base fee plus the tip; n payouts cost at
        most n times this because ``payout_gas(n) <= n * payout_gas(1)``."""
        return self.from_base_units(self.max_fee_per_gas() * payout_gas(1))

    def recipients_with_code(self, addresses: Sequence[str]) -> list[str]:
        unique = list(dict.fromkeys(str(to_checksum_address(a)) for a in addresses))
        answers = self.rpc.call_many([("eth_getCode", [a, "latest"]) for a in unique])
        with_code: list[str] = []
        for address, (code, error) in zip(unique, answers, strict=True):
            if error is not None:
                raise RailUnavailable(f"eth_getCode {address}: {error}")
            if len(HexBytes(code or "0x")):
                with_code.append(address)
        return with_code

    def sign_payouts(
        self,
        *,
        from_address: str,
        payouts: Sequence[Payout],
        nonce: int,
        fee_cap: Decimal,
        state: dict[str, Any] | None = None,
    ) -> SignedTransfer:
        if not 0 < len(payouts) <= self.max_payouts:
            raise RailRejected(f"{len(payouts)} payouts; one transaction carries 1 to {self.max_payouts}")
        try:
            data, value = encode_multisend(payouts, self.to_base_units)
        except ValueError as exc:
            raise RailRejected(str(exc)) from exc
        contracts = self.recipients_with_code([p.to_address for p in payouts])
        if contracts:
            raise RailRejected(f"multisend refuses recipients with code: {', '.join(contracts)}")
        gas = payout_gas(len(payouts))
        max_fee = self.to_base_units(fee_cap) // gas
        if max_fee <= 0:
            raise RailRejected(f"fee cap {fee_cap} ETH does not pay {gas} gas")
        transaction = {
            "type": 2,
            "chainId": self.chain_id(),
            "nonce": nonce,
            "to": self.multisend_address(),
            "value": value,
            "data": data + encode_references([p.reference for p in payouts]),
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": min(10**9, max_fee),
        }
        raw = keystore().sign_eth_transaction(from_address, transaction)
        return SignedTransfer(
            tx_hash=Web3.keccak(raw).to_0x_hex(),
            raw=Web3.to_hex(raw),
            nonce=nonce,
            fee_cap=self.from_base_units(gas * max_fee),
        )

    def broadcast_many(self, raws: Sequence[str]) -> list[RailError | None]:
        """One JSON-RPC batch of ``eth_sendRawTransaction``; None = accepted or already known."""
        answers = self.rpc.call_many([("eth_sendRawTransaction", [raw]) for raw in raws])
        return [None if error is None else _rejection(error) for _, error in answers]

    def status_many(self, txs: Sequence[tuple[str, str, str]]) -> list[TransferStatus]:
        """As ``status`` for each: one round trip (receipts + head) when all are in blocks; for
        the rest, their senders' nonces are read *before* a second look for their receipts, so
        a transaction mined in between is found, never taken for a double spend."""
        if not txs:
            return []
        calls = [("eth_getTransactionReceipt", [h]) for h, _, _ in txs] + [("eth_blockNumber", [])]
        answers = self._checked(self.rpc.call_many(calls))
        head = _as_int(answers[-1])
        receipts = [norm_receipt(r) for r in answers[:-1]]
        missing = [i for i, r in enumerate(receipts) if r is None]
        nonces: dict[int, int] = {}
        in_mempool: dict[int, bool] = {}
        if missing:
            counts = self._checked(
                self.rpc.call_many(
                    [("eth_getTransactionCount", [to_checksum_address(txs[i][1]), "latest"]) for i in missing]
                )
            )
            nonces = {i: _as_int(c) for i, c in zip(missing, counts, strict=True)}
            second = self._checked(
                self.rpc.call_many(
                    [("eth_getTransactionReceipt", [txs[i][0]]) for i in missing]
                    + [("eth_getTransactionByHash", [txs[i][0]]) for i in missing]
                    + [("eth_blockNumber", [])]
                )
            )
            head = _as_int(second[-1])  # a receipt found in this look may be newer than the first head
            for k, i in enumerate(missing):
                receipts[i] = norm_receipt(second[k])
                in_mempool[i] = second[len(missing) + k] is not None
        out = []
        for i, receipt in enumerate(receipts):
            if receipt is None:
                out.append(TransferStatus(found=in_mempool.get(i, False), sender_nonce=nonces.get(i)))
                continue
            out.append(
                TransferStatus(
                    found=True,
                    confirmations=head - receipt["blockNumber"] + 1,
                    block_number=receipt["blockNumber"],
                    succeeded=receipt["status"] == 1,
                    fee=self.from_base_units(receipt["gasUsed"] * receipt["effectiveGasPrice"]),
                    sender_nonce=nonces.get(i),
                )
            )
        return out

    @staticmethod
    def _checked(answers: list[tuple[Any, str | None]]) -> list[Any]:
        for _, error in answers:
            if error is not None:
                raise RailUnavailable(f"JSON-RPC error: {error}")
        return [result for result, _ in answers]

    def payouts_in(self, tx_hash: str) -> list[tuple[int, str, str, Decimal]]:
        """(index, reference, to_address, amount) per payout of a mined multisend, from its
        receipt's events and its call data; [] when it reverted (it paid nobody). A transaction
        not in a block raises RailTimeout (ask again once it is)."""
        receipt, tx = self._checked(
            self.rpc.call_many([("eth_getTransactionReceipt", [tx_hash]), ("eth_getTransactionByHash", [tx_hash])])
        )
        receipt = norm_receipt(receipt)
        if receipt is None or tx is None:
            raise RailTimeout(f"{tx_hash} is not in a block")
        if receipt["status"] != 1:
            return []
        return self._payout_rows(receipt, str(tx["to"]), HexBytes(tx["input"]))

    def _payout_rows(self, receipt: dict[str, Any], to: str, data: bytes) -> list[tuple[int, str, str, Decimal]]:
        events = decode_events(receipt, to)  # type: ignore[arg-type]
        references = decode_references(bytes(data), len(events))
        rows = []
        for index, (digest, recipient, amount) in enumerate(events):
            reference = "0x" + digest.hex()
            if references is not None and payout_reference_bytes32(references[index]) == digest:
                reference = references[index]
            rows.append((index, reference, str(recipient), self.from_base_units(amount)))
        return rows

    def is_multisend_receipt(self, receipt: dict[str, Any]) -> bool:
        topic = event_topic()
        to = receipt["to"].lower()
        return any(
            log["address"].lower() == to and log["topics"] and HexBytes(log["topics"][0]) == topic
            for log in receipt["logs"]
        )
