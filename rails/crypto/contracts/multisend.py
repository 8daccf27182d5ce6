"""The Ethereum multisend contract (``multisend.vy``): one chain transaction pays many settlements.

Runtime needs only the committed artifact ``multisend.json`` (ABI, creation and runtime bytecode,
compiler version and the source's SHA-256); vyper is a development requirement. After editing the
source, rewrite the artifact with ``python -m rails.crypto.contracts`` (the test suite
recompiles the source and fails when the artifact does not match it).

``build_call`` gives the unsigned call (``to``, ``data``, ``value``) for the caller to add nonce,
gas and fees, sign and store before broadcast, as for any other transfer; ``decode_events`` reads
one ``(reference, recipient, amount)`` per transfer back from the receipt, in log order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import is_address, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.types import ChecksumAddress, TxParams, TxReceipt, Wei

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "multisend.vy"
ARTIFACT = HERE / "multisend.json"
MAX_TRANSFERS = 1000  # the DynArray bound in multisend.vy
EVENT_SIGNATURE = "Sent(bytes32,address,uint256)"
DEPLOY_GAS = 500_000


class MultisendError(ValueError):
    """A batch the contract would refuse, or a receipt that is not a successful multisend."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """One payment: ``amount`` in wei to ``recipient``; ``reference`` is the settlement's 32 bytes."""

    recipient: str
    amount: int
    reference: bytes


@cache
def artifact() -> dict[str, Any]:
    return json.loads(ARTIFACT.read_text())


def event_topic() -> HexBytes:
    return HexBytes(Web3.keccak(text=EVENT_SIGNATURE))


def source_sha256() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def compile_source() -> dict[str, Any]:
    """Compile ``multisend.vy`` with the installed vyper (development only) into artifact form."""
    import vyper  # a development requirement, imported here only: runtime needs just the artifact

    out = vyper.compile_code(SOURCE.read_text(), output_formats=["abi", "bytecode", "bytecode_runtime"])
    return {
        "contract": "multisend",
        "compiler": f"vyper {vyper.__version__}",
        "source_sha256": source_sha256(),
        "max_transfers": MAX_TRANSFERS,
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "bytecode_runtime": out["bytecode_runtime"],
    }


def _send(web3: Web3, sender: Any, tx: TxParams) -> TxReceipt:
    """Send from an unlocked node account (an address) or a local key (an eth-account account)."""
    if hasattr(sender, "sign_transaction"):
        tx = tx | {
            "from": sender.address,
            "nonce": web3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": web3.eth.chain_id,
            "gasPrice": web3.eth.gas_price,
        }
        tx_hash = web3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    else:
        tx_hash = web3.eth.send_transaction(tx | {"from": to_checksum_address(sender)})
    return web3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)


def deploy(web3: Web3, sender: Any) -> ChecksumAddress:
    """Deploy the committed bytecode from ``sender``; returns the contract's address once mined,
    after checking the code on chain is exactly the committed runtime bytecode."""
    receipt = _send(web3, sender, {"data": HexBytes(artifact()["bytecode"]), "gas": DEPLOY_GAS})
    address = receipt.get("contractAddress")
    if receipt["status"] != 1 or address is None:
        raise MultisendError(f"multisend deployment failed: {receipt['transactionHash'].hex()}")
    if HexBytes(web3.eth.get_code(address)) != HexBytes(artifact()["bytecode_runtime"]):
        raise MultisendError(f"code at {address} is not the committed multisend runtime bytecode")
    return to_checksum_address(address)


def _checked(transfers: Sequence[Transfer]) -> list[tuple[ChecksumAddress, int, bytes]]:
    """The batch as ABI tuples, refusing locally what the contract would revert on."""
    if not transfers:
        raise MultisendError("empty batch")
    if len(transfers) > MAX_TRANSFERS:
        raise MultisendError(f"{len(transfers)} transfers; at most {MAX_TRANSFERS} per call")
    rows = []
    for t in transfers:
        if not is_address(t.recipient) or int(t.recipient, 16) == 0:
            raise MultisendError(f"invalid recipient {t.recipient!r}")
        if not isinstance(t.amount, int) or isinstance(t.amount, bool) or not 0 < t.amount < 2**256:
            raise MultisendError(f"amount must be a positive integer of wei, got {t.amount!r}")
        if not isinstance(t.reference, bytes) or len(t.reference) != 32:
            raise MultisendError(f"reference must be 32 bytes, got {t.reference!r}")
        rows.append((to_checksum_address(t.recipient), t.amount, t.reference))
    return rows


def build_call(web3: Web3, contract: str, transfers: Sequence[Transfer]) -> TxParams:
    """The unsigned call paying ``transfers``: ``to``, ``data`` and ``value`` (= the sum of the
    amounts). The caller adds ``from``, ``nonce``, ``gas``, fees and ``chainId`` and signs it."""
    rows = _checked(transfers)
    value = sum(amount for _, amount, _ in rows)
    instance = web3.eth.contract(address=to_checksum_address(contract), abi=artifact()["abi"])
    data = instance.encode_abi("multisend", args=[rows])
    return {"to": to_checksum_address(contract), "data": HexBytes(data), "value": Wei(value)}


def recipients_with_code(web3: Web3, recipients: Iterable[str]) -> list[ChecksumAddress]:
    """The recipients the contract would refuse (they have code); one ``eth_getCode`` each."""
    return [to_checksum_address(r) for r in dict.fromkeys(recipients) if len(web3.eth.get_code(to_checksum_address(r)))]


def decode_events(receipt: TxReceipt, contract: str) -> list[tuple[bytes, ChecksumAddress, int]]:
    """``(reference, recipient, amount)`` per transfer, in log order, from a successful multisend
    receipt. Only logs emitted by ``contract`` with the ``Sent`` topic count; a reverted receipt
    raises (a reverted batch paid nobody)."""
    if receipt["status"] != 1:
        raise MultisendError(f"transaction {HexBytes(receipt['transactionHash']).to_0x_hex()} reverted")
    address, topic = to_checksum_address(contract), event_topic()
    events = []
    for log in sorted(receipt["logs"], key=lambda entry: entry["logIndex"]):
        topics = [HexBytes(t) for t in log["topics"]]
        if to_checksum_address(log["address"]) != address or not topics or topics[0] != topic:
            continue
        if len(topics) != 3:
            raise MultisendError(f"malformed Sent log at index {log['logIndex']}")
        (amount,) = abi_decode(["uint256"], HexBytes(log["data"]))
        events.append((bytes(topics[1]), to_checksum_address(topics[2][-20:]), int(amount)))
    return events


def write_artifact() -> None:
    ARTIFACT.write_text(json.dumps(compile_source(), indent=2) + "\n")
