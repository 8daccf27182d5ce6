"""Solana rail: solders builds and signs system-program transfers; JSON-RPC request bodies are
solders' own RPC request types, POSTed to a validator (or the local LiteSVM simulator).

A Solana transaction carries a recent blockhash instead of a nonce. The stored signed bytes can
be re-sent any number of times while that blockhash is valid (the signature is the transaction
id, so it can land only once). Once the blockhash has expired and the cluster does not know the
signature, the transaction can never land: only then may the pipeline sign a replacement
(``TransferStatus.expired``), so there is never a window where two versions could both land.

Every transfer carries an SPL Memo with the settlement reference: it makes each transaction unique
(two equal transfers signed against the same blockhash would otherwise be byte-identical, and
the cluster would take the second for the first) and puts our reference on chain for
reconciliation.

Fees are the base fee per signature (no priority fee is added); the amount is fixed at signing.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import requests
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.config import RpcSendTransactionConfig
from solders.rpc.requests import (
    GetBalance,
    GetLatestBlockhash,
    GetSignatureStatuses,
    IsBlockhashValid,
    SendRawTransaction,
)
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from rails.base import RailRejected, RailTimeout, RailUnavailable, SignedTransfer, TransferStatus
from rails.crypto.signing import keystore
from rails.crypto.sol_payouts import SolanaPayouts

LAMPORT_DECIMALS = 9
FEE_PER_SIGNATURE = 5000
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")


class SolanaRail(SolanaPayouts):
    decimals = LAMPORT_DECIMALS
    symbol = "SOL"
    base_unit = "lamport"
    chain = "solana"

    def __init__(self, url: str, *, timeout: float = 10) -> None:
        self.url = url
        self.timeout = timeout

    def rpc(self, body: Any) -> Any:
        """POST one solders request body; the ``result`` or a mapped rail error."""
        try:
            response = requests.post(
                self.url,
                data=body.to_json() if hasattr(body, "to_json") else body,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.exceptions.Timeout as exc:
            raise RailTimeout(f"solana node: {type(body).__name__} timed out") from exc
        except (requests.exceptions.ConnectionError, OSError) as exc:
            raise RailUnavailable(f"solana node: {type(body).__name__} failed: {exc}") from exc
        if response.status_code >= 500:
            raise RailUnavailable(f"solana node answered HTTP {response.status_code}")
        reply = response.json()
        if reply.get("error"):
            raise _RpcFailure(reply["error"])
        return reply.get("result")

    @staticmethod
    def valid_address(address: str) -> bool:
        try:
            Pubkey.from_string(address)
        except ValueError:
            return False
        return True

    def fee_reserve(self) -> Decimal:
        return self.from_base_units(FEE_PER_SIGNATURE)

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
        if not reference:
            raise ValueError("a Solana transfer needs a reference (it makes the transaction unique)")
        if self.to_base_units(fee_cap) < FEE_PER_SIGNATURE:
            raise RailRejected(f"the fee reserve {fee_cap} SOL is below the network fee")
        blockhash = Hash.from_string(self.rpc(GetLatestBlockhash())["value"]["blockhash"])
        payer = Pubkey.from_string(from_address)
        instruction = transfer(
            TransferParams(
                from_pubkey=payer, to_pubkey=Pubkey.from_string(to_address), lamports=self.to_base_units(amount)
            )
        )
        memo = Instruction(MEMO_PROGRAM, reference.encode(), [AccountMeta(payer, True, False)])
        tx = keystore().sign_solana_message(from_address, Message([instruction, memo], payer), blockhash)
        return SignedTransfer(
            tx_hash=str(tx.signatures[0]),
            raw=bytes(tx).hex(),
            nonce=nonce,
            fee_cap=self.from_base_units(FEE_PER_SIGNATURE * len(tx.signatures)),
        )

    def broadcast(self, raw: str) -> str:
        tx = Transaction.from_bytes(bytes.fromhex(raw))
        body = SendRawTransaction(bytes(tx), RpcSendTransactionConfig(skip_preflight=True))
        try:
            return str(self.rpc(body))
        except _RpcFailure as exc:
            if "blockhash not found" in exc.message.lower():
                return str(tx.signatures[0])  # expired: status() says so and the pipeline re-signs
            raise RailRejected(f"solana node refused the transaction: {exc.message}") from exc

    def status(self, *, tx_hash: str, sender: str, raw: str = "") -> TransferStatus:
        try:
            statuses = self.rpc(GetSignatureStatuses([Signature.from_string(tx_hash)]))
        except _RpcFailure as exc:
            raise RailUnavailable(f"solana node: {exc.message}") from exc
        entry = (statuses.get("value") or [None])[0]
        if entry is None:
            if not raw:
                return TransferStatus(found=False)
            return TransferStatus(found=False, expired=self._expired(raw), conflicted=self._unfunded(raw, sender))
        return self.status_of(entry)

    def status_of(self, entry: dict[str, Any]) -> TransferStatus:
        """The status of a signature the cluster knows (one ``getSignatureStatuses`` entry)."""
        depth = entry.get("confirmations")
        confirmations = 32 if depth is None else int(depth)
        return TransferStatus(
            found=True,
            confirmations=confirmations,
            block_number=int(entry["slot"]),
            succeeded=entry.get("err") is None,
            fee=self.from_base_units(FEE_PER_SIGNATURE),
        )

    def _expired(self, raw: str) -> bool:
        blockhash = Transaction.from_bytes(bytes.fromhex(raw)).message.recent_blockhash
        return not self.rpc(IsBlockhashValid(blockhash))["value"]

    def _unfunded(self, raw: str, sender: str) -> bool:
        """Our transfer has not landed and the sender no longer holds what it moves plus the fee:
        the funds were spent by someone else (the ledger never locks more than the wallet has)."""
        tx = Transaction.from_bytes(bytes.fromhex(raw))
        lamports = 0
        for ix in tx.message.instructions:
            data = bytes(ix.data)  # system Transfer: u32 index 2, then u64 lamports, little endian
            if tx.message.account_keys[ix.program_id_index] == SYSTEM_PROGRAM_ID and data[:4] == b"\x02\0\0\0":
                lamports += int.from_bytes(data[4:12], "little")
        balance = self.to_base_units(self.balance(sender))
        return balance < lamports + FEE_PER_SIGNATURE * len(tx.signatures)

    def balance(self, address: str) -> Decimal:
        return self.from_base_units(int(self.rpc(GetBalance(Pubkey.from_string(address)))["value"]))

    def _call(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        try:
            return self.rpc(body)
        except _RpcFailure as exc:
            raise RailUnavailable(f"solana node: {method}: {exc.message}") from exc

    def head(self) -> int:
        return int(self._call("getSlot"))

    def transactions(self, *, addresses: set[str], first_block: int, last_block: int) -> list[dict[str, Any]]:
        """Every transaction of slots ``first_block..last_block`` that involves one of
        ``addresses``: the chain's own list, for reconciliation (``getSignaturesForAddress`` per
        wallet, then ``getTransaction``). Amounts come from the balance changes: a transfer from
        our wallet is what the other accounts gained (its fee excluded), ``from`` the fee payer; a
        payment in is what our first credited wallet gained. A failed transaction moved nothing
        but its fee (amount 0, ``succeeded`` false)."""
        ours = set(addresses)
        head = self.head()
        signatures: dict[str, int] = {}
        for address in sorted(ours):
            for entry in self._call("getSignaturesForAddress", address, {"limit": 1000}) or []:
                if first_block <= int(entry["slot"]) <= last_block:
                    signatures[entry["signature"]] = int(entry["slot"])
        found = []
        for signature, slot in sorted(signatures.items(), key=lambda item: (item[1], item[0])):
            tx = self._call("getTransaction", signature, {"encoding": "json", "commitment": "confirmed"})
            if tx is None:
                continue  # rolled back since it was listed: the next scan will not see it either
            keys = list(tx["transaction"]["message"]["accountKeys"])
            meta = tx["meta"]
            gained = [post - pre for pre, post in zip(meta["preBalances"], meta["postBalances"], strict=True)]
            succeeded = meta.get("err") is None
            payer = keys[0] if len(keys) > 1 else ""
            if payer in ours and succeeded:
                _, rows = self._landed_payouts(signature)
                if rows is not None:  # a payout transaction: one row per settlement it paid
                    for index, reference, to, paid in rows:
                        found.append(
                            {
                                "tx_hash": signature,
                                "from": payer,
                                "to": to,
                                "amount": self.from_base_units(paid),
                                "block": slot,
                                "confirmations": head - slot + 1,
                                "timestamp": int(tx.get("blockTime") or 0),
                                "succeeded": True,
                                "index": index,
                                "reference": reference,
                            }
                        )
                    continue
            if payer in ours:
                others = [(k, g) for k, g in zip(keys, gained, strict=True) if k != payer and g > 0]
                receiver = others[0][0] if others else (keys[1] if len(keys) > 1 else "")
                sender, lamports = payer, sum(g for _, g in others)
            else:
                credited = [(k, g) for k, g in zip(keys, gained, strict=True) if k in ours and g > 0]
                if not credited:
                    continue
                (receiver, lamports), sender = credited[0], payer
            found.append(
                {
                    "tx_hash": signature,
                    "from": sender,
                    "to": receiver,
                    "amount": self.from_base_units(lamports if succeeded else 0),
                    "block": slot,
                    "confirmations": head - slot + 1,
                    "timestamp": int(tx.get("blockTime") or 0),
                    "succeeded": succeeded,
                }
            )
        return found


class _RpcFailure(Exception):
    def __init__(self, error: dict) -> None:
        self.code = error.get("code")
        self.message = str(error.get("message", error))
        super().__init__(self.message)
