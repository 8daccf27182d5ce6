"""Solana payouts: one transaction pays many settlements.

Layout (``payouts_in`` and ``transactions`` rely on it): system-program transfer instruction
``i`` pays payout ``i``, in order; then one SPL Memo whose text is ``MEMO_MARKER`` and the
references, one per line, in the same order (references are printable ASCII, so no line break
inside one). A single transfer's memo is a bare reference, never starting with the marker.

Size. A Solana transaction is at most 1,232 bytes (one packet). Each payout takes a 32-byte
account key, a 17-byte transfer instruction and its reference line, so 20 payouts with
references do not fit: ``max_payouts`` is 8, what fits with 64-character references; with
references of ~20 characters ``payouts_that_fit`` says 14. ``sign_payouts`` refuses anything over
the packet size, so no transaction a validator would drop is ever signed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import requests
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.config import RpcSendTransactionConfig
from solders.rpc.requests import GetLatestBlockhash, GetSignatureStatuses, SendRawTransaction
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

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
from rails.crypto.signing import keystore

MAX_PAYOUTS = 8
PACKET_DATA_SIZE = 1232
MEMO_MARKER = "clearhouse-payouts/1"
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
_FIXED_BYTES = 1 + 64 + 3 + 1 + 3 * 32 + 32 + 1 + 6 + len(MEMO_MARKER)  # one signature, header, keys, memo
_PER_PAYOUT = 32 + 17 + 1  # key, transfer instruction, line break


def payouts_that_fit(reference_lengths: Sequence[int]) -> int:
    """How many payouts (to distinct new recipients) with these reference lengths fit one packet."""
    size, n = _FIXED_BYTES, 0
    for length in reference_lengths:
        size += _PER_PAYOUT + length
        if size > PACKET_DATA_SIZE:
            break
        n += 1
    return n


def decode_payouts(raw: bytes) -> list[tuple[int, str, str, int]] | None:
    """(index, reference, recipient, lamports) per payout of a payout transaction, or None."""
    tx = Transaction.from_bytes(raw)
    keys = tx.message.account_keys
    transfers: list[tuple[str, int]] = []
    memo: str | None = None
    for ix in tx.message.instructions:
        program, data = keys[ix.program_id_index], bytes(ix.data)
        if program == SYSTEM_PROGRAM_ID and data[:4] == b"\x02\0\0\0" and len(ix.accounts) == 2:
            transfers.append((str(keys[ix.accounts[1]]), int.from_bytes(data[4:12], "little")))
        elif program == MEMO_PROGRAM:
            memo = data.decode("utf-8", errors="replace")
    if memo is None:
        return None
    lines = memo.split("\n")
    if lines[0] != MEMO_MARKER or len(lines) - 1 != len(transfers):
        return None
    return [(i, lines[i + 1], to, lamports) for i, (to, lamports) in enumerate(transfers)]


class SolanaPayouts(BaseUnits):
    """Mixed into SolanaRail: ``sign_payouts``, ``broadcast_many``, ``status_many``, ``payouts_in``."""

    max_payouts = MAX_PAYOUTS
    url: str
    timeout: float

    if TYPE_CHECKING:  # provided by SolanaRail

        def rpc(self, body: Any) -> Any: ...
        def _call(self, method: str, *params: Any) -> Any: ...
        def fee_reserve(self) -> Decimal: ...
        def status(self, *, tx_hash: str, sender: str, raw: str = "") -> TransferStatus: ...
        def status_of(self, entry: dict[str, Any]) -> TransferStatus: ...

    def payout_fee_reserve(self) -> Decimal:
        """One signature's fee per payout: a payout transaction has one signature whatever its size."""
        return self.fee_reserve()

    def rpc_many(self, bodies: Sequence[Any]) -> list[tuple[Any, dict[str, Any] | None]]:
        """One JSON-RPC batch request of solders request bodies: (result, error) per body."""
        if not bodies:
            return []
        batch = []
        for i, body in enumerate(bodies):
            item = json.loads(body.to_json()) if hasattr(body, "to_json") else dict(body)
            batch.append(item | {"id": i})
        try:
            response = requests.post(
                self.url, data=json.dumps(batch), headers={"Content-Type": "application/json"}, timeout=self.timeout
            )
        except requests.exceptions.Timeout as exc:
            raise RailTimeout("solana node: batch timed out") from exc
        except (requests.exceptions.ConnectionError, OSError) as exc:
            raise RailUnavailable(f"solana node: batch failed: {exc}") from exc
        if response.status_code >= 500:
            raise RailUnavailable(f"solana node answered HTTP {response.status_code}")
        answers = response.json()
        if not isinstance(answers, list):
            raise RailUnavailable(f"solana node: batch answered {str(answers)[:200]}")
        by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
        if any(i not in by_id for i in range(len(bodies))):
            raise RailUnavailable("solana node: batch answer incomplete")
        return [(by_id[i].get("result"), by_id[i].get("error")) for i in range(len(bodies))]

    def sign_payouts(
        self,
        *,
        from_address: str,
        payouts: Sequence[Payout],
        nonce: int,
        fee_cap: Decimal,
        state: dict[str, Any] | None = None,
    ) -> SignedTransfer:
        """``state`` may carry a ``blockhash`` to sign against (saves a call per transaction)."""
        from rails.crypto.solana import FEE_PER_SIGNATURE

        if not 0 < len(payouts) <= self.max_payouts:
            raise RailRejected(f"{len(payouts)} payouts; one transaction carries 1 to {self.max_payouts}")
        if self.to_base_units(fee_cap) < FEE_PER_SIGNATURE:
            raise RailRejected(f"the fee reserve {fee_cap} SOL is below the network fee")
        payer = Pubkey.from_string(from_address)
        try:
            instructions = [
                transfer(
                    TransferParams(
                        from_pubkey=payer,
                        to_pubkey=Pubkey.from_string(p.to_address),
                        lamports=self.to_base_units(p.amount),
                    )
                )
                for p in payouts
            ]
        except ValueError as exc:
            raise RailRejected(f"invalid payout: {exc}") from exc
        memo = "\n".join([MEMO_MARKER, *(p.reference for p in payouts)])
        instructions.append(Instruction(MEMO_PROGRAM, memo.encode(), [AccountMeta(payer, True, False)]))
        blockhash_text = (state or {}).get("blockhash") or self.rpc(GetLatestBlockhash())["value"]["blockhash"]
        tx = keystore().sign_solana_message(
            from_address, Message(instructions, payer), Hash.from_string(blockhash_text)
        )
        raw = bytes(tx)
        if len(raw) > PACKET_DATA_SIZE:
            raise RailRejected(f"{len(payouts)} payouts make a {len(raw)}-byte transaction; at most {PACKET_DATA_SIZE}")
        return SignedTransfer(
            tx_hash=str(tx.signatures[0]),
            raw=raw.hex(),
            nonce=nonce,
            fee_cap=self.from_base_units(FEE_PER_SIGNATURE * len(tx.signatures)),
        )

    def broadcast_many(self, raws: Sequence[str]) -> list[RailError | None]:
        bodies = [SendRawTransaction(bytes.fromhex(raw), RpcSendTransactionConfig(skip_preflight=True)) for raw in raws]
        out: list[RailError | None] = []
        for _, error in self.rpc_many(bodies):
            message = "" if error is None else str(error.get("message", error))
            if error is None or "blockhash not found" in message.lower():
                out.append(None)  # accepted, known, or expired (status says so)
            else:
                out.append(RailRejected(f"solana node refused the transaction: {message}"))
        return out

    def status_many(self, txs: Sequence[tuple[str, str, str]]) -> list[TransferStatus]:
        """One ``getSignatureStatuses`` for all; the expiry / funds checks only for unknown ones."""
        if not txs:
            return []
        from rails.crypto.solana import _RpcFailure

        try:
            statuses = self.rpc(GetSignatureStatuses([Signature.from_string(h) for h, _, _ in txs]))
        except _RpcFailure as exc:
            raise RailUnavailable(f"solana node: {exc.message}") from exc
        out = []
        for (tx_hash, sender, raw), entry in zip(txs, statuses.get("value") or [], strict=True):
            if entry is None:
                out.append(self.status(tx_hash=tx_hash, sender=sender, raw=raw))
            else:
                out.append(self.status_of(entry))
        return out

    def _landed_payouts(self, signature: str) -> tuple[dict[str, Any], list[tuple[int, str, str, int]] | None]:
        tx = self._call("getTransaction", signature, {"encoding": "base64", "commitment": "confirmed"})
        if tx is None:
            raise RailTimeout(f"{signature} has not landed")
        encoded = tx["transaction"]
        if not isinstance(encoded, list):
            return tx, None
        return tx, decode_payouts(base64.b64decode(encoded[0]))

    def payouts_in(self, tx_hash: str) -> list[tuple[int, str, str, Decimal]]:
        """(index, reference, to_address, amount) per transfer instruction, references from the
        memo; [] when the transaction failed (it moved nothing but its fee)."""
        tx, rows = self._landed_payouts(tx_hash)
        if rows is None:
            raise RailRejected(f"{tx_hash} is not a payout transaction")
        if tx["meta"].get("err") is not None:
            return []
        return [(i, reference, to, self.from_base_units(lamports)) for i, reference, to, lamports in rows]
